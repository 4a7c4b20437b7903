//! Shared by the firewall tests that move real packets: network namespaces standing in for hosts and
//! VMs, built and torn down by a guard, and the zone layout of issue #5's test matrix.
//!
//! Each simulated host is a netns with IP forwarding on; each VM is a netns whose `eth0` is one end
//! of a veth pair, the other end (the "tap") sits in its host's netns with a /32 route to the VM and
//! proxy ARP (the routed design the firewall assumes: the tap identifies the VM). Two hosts are
//! joined by a veth pair `fab0` with /32 routes to each other's VMs (the fabric; no VXLAN yet).
//! Names carry the test process id, so parallel runs never collide; everything is deleted on drop,
//! also when a test fails.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hci_agent::firewall::model::{FirewallModel, Interface, Policy, Zone};
use hci_shared::names::{parse_cidr, PortRange};
use hci_shared::resources::Protocol;

pub const FABRIC: &str = "fab0";

/// Runs a command, returning its stdout; an error names the command and its stderr.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Skips (returns false) where the test cannot run: not root, or no nft/ip/socat/ping/python3.
pub fn can_run() -> bool {
    let root = run(&["id", "-u"]).map(|u| u.trim() == "0").unwrap_or(false);
    let tools = ["nft", "ip", "socat", "ping", "python3"]
        .iter()
        .all(|t| run(&["sh", "-c", &format!("command -v {t}")]).is_ok());
    if !(root && tools) {
        eprintln!("SKIPPED: needs root and nft, ip, socat, ping (scripts/install-deps.sh)");
    }
    root && tools
}

/// Polls `check` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: &'static str,
    pub host: usize,
    pub zone: &'static str,
    pub ip: &'static str,
}

impl VmSpec {
    pub fn tap(&self) -> String {
        format!("t-{}", self.name)
    }
    pub fn interface(&self) -> Interface {
        Interface { ifname: self.tap(), zone: self.zone.into(), ip: self.ip.parse().expect("ip") }
    }
}

/// Namespaces of one test: deleted (and their listeners killed) on drop.
pub struct Lab {
    prefix: String,
    pub hosts: Vec<String>,
    pub vms: Vec<(VmSpec, String)>,
    listeners: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let vms = self.vms.iter().map(|(_, ns)| ns);
        tear_down(&mut self.listeners, vms.chain(&self.hosts));
    }
}

/// Kills `listeners`, then deletes `namespaces` (VMs before their hosts).
pub fn tear_down<'a>(listeners: &mut [Child], namespaces: impl Iterator<Item = &'a String>) {
    for child in listeners {
        let _ = child.kill();
        let _ = child.wait();
    }
    for ns in namespaces {
        let _ = run(&["ip", "netns", "del", ns]);
    }
}

impl Lab {
    /// `hosts` host namespaces (joined by the fabric when there are two) and the VMs of `vms`.
    pub fn new(tag: &str, hosts: usize, vms: &[VmSpec]) -> Lab {
        let prefix = format!("hf{}{tag}", std::process::id());
        let mut lab = Lab { prefix: prefix.clone(), hosts: Vec::new(), vms: Vec::new(), listeners: Vec::new() };
        for h in 0..hosts {
            let ns = format!("{prefix}h{h}");
            must(&["ip", "netns", "add", &ns]);
            lab.hosts.push(ns.clone());
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            for setting in
                ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
            {
                must(&["ip", "netns", "exec", &ns, "sysctl", "-qw", setting]);
            }
        }
        if hosts == 2 {
            let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
            must(&["ip", "-n", &a, "link", "add", FABRIC, "type", "veth", "peer", "name", FABRIC, "netns", &b]);
            for (ns, addr) in [(&a, "192.168.250.1/30"), (&b, "192.168.250.2/30")] {
                must(&["ip", "-n", ns, "addr", "add", addr, "dev", FABRIC]);
                must(&["ip", "-n", ns, "link", "set", FABRIC, "up"]);
            }
        }
        for vm in vms {
            lab.add_vm(vm);
        }
        lab
    }

    pub fn add_vm(&mut self, vm: &VmSpec) {
        let host = self.hosts[vm.host].clone();
        let ns = format!("{}v{}", self.prefix, self.vms.len());
        must(&["ip", "netns", "add", &ns]);
        self.vms.push((vm.clone(), ns.clone()));
        let tap = vm.tap();
        must(&["ip", "-n", &host, "link", "add", &tap, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &ns, "addr", "add", &format!("{}/32", vm.ip), "dev", "eth0"]);
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", &ns, "route", "add", "default", "dev", "eth0"]);
        must(&["ip", "-n", &host, "link", "set", &tap, "up"]);
        // Proxy ARP answering at once (by default it waits up to 0.8 s).
        for setting in [format!("net.ipv4.conf.{tap}.proxy_arp=1"), format!("net.ipv4.neigh.{tap}.proxy_delay=0")] {
            must(&["ip", "netns", "exec", &host, "sysctl", "-qw", &setting]);
        }
        must(&["ip", "-n", &host, "route", "add", &format!("{}/32", vm.ip), "dev", &tap]);
        if self.hosts.len() == 2 {
            let other = self.hosts[1 - vm.host].clone();
            let via = if vm.host == 0 { "192.168.250.1" } else { "192.168.250.2" };
            must(&["ip", "-n", &other, "route", "add", &format!("{}/32", vm.ip), "via", via]);
        }
        self.listeners.extend(start_listeners(&ns));
    }

    pub fn vm_ns(&self, name: &str) -> &str {
        &self.vms.iter().find(|(vm, _)| vm.name == name).unwrap_or_else(|| panic!("no vm {name}")).1
    }

    pub fn vm(&self, name: &str) -> &VmSpec {
        &self.vms.iter().find(|(vm, _)| vm.name == name).unwrap_or_else(|| panic!("no vm {name}")).0
    }

    /// The firewall model of host `h`: the shared zones and policies, its own VMs' taps.
    pub fn host_model(&self, h: usize, zones: &[Zone], policies: &[Policy]) -> FirewallModel {
        FirewallModel {
            zones: zones.to_vec(),
            policies: policies.to_vec(),
            interfaces: self.vms.iter().filter(|(vm, _)| vm.host == h).map(|(vm, _)| vm.interface()).collect(),
            fabric_ifaces: if self.hosts.len() == 2 { vec![FABRIC.into()] } else { Vec::new() },
        }
    }
}

/// A TCP listener on 8080 (socat) and a UDP echo on 5353 (python: socat's forking UDP server
/// loses datagrams that arrive together) in the VM namespace `ns`, up before this returns.
pub fn start_listeners(ns: &str) -> Vec<Child> {
    let udp_echo = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5353))\n\
                    while True:\n    _, peer = s.recvfrom(256)\n    s.sendto(b'reached\\n', peer)\n";
    let servers: [(&[&str], &str, &str); 2] = [
        (&["socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo reached"], "-Hltn", ":8080"),
        (&["python3", "-c", udp_echo], "-Hlun", ":5353"),
    ];
    let mut children = Vec::new();
    for (server, ss_flags, port) in servers {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("listener");
        children.push(child);
        wait_until(Duration::from_secs(5), "a listener", || {
            run(&["ip", "netns", "exec", ns, "ss", ss_flags]).is_ok_and(|out| out.contains(port))
        });
    }
    children
}

/// One way of knocking on a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// TCP to a port: reached when it connects or is refused (RST), blocked when it times out.
    Tcp(u16),
    /// A datagram to the UDP echo on 5353: reached when the answer comes back.
    Udp,
    /// One echo request.
    Icmp,
}

/// Whether `probe` from the VM namespace `from_ns` (optionally from source address `bind`) reaches
/// `to`, waiting at most `timeout` for an answer.
pub fn reaches(from_ns: &str, to: Ipv4Addr, probe: Probe, bind: Option<&str>, timeout: Duration) -> bool {
    let secs = format!("{:.1}", timeout.as_secs_f64());
    let bind = bind.map(|b| format!(",bind={b}")).unwrap_or_default();
    let args: Vec<String> = match probe {
        Probe::Tcp(port) => {
            vec![
                "socat".into(),
                format!("-T{secs}"),
                "-".into(),
                format!("TCP:{to}:{port},connect-timeout={secs}{bind}"),
            ]
        }
        // After stdin's end socat waits up to -t for the answer.
        Probe::Udp => vec!["socat".into(), format!("-t{secs}"), "-".into(), format!("UDP:{to}:5353{bind}")],
        Probe::Icmp => vec!["ping".into(), "-c1".into(), "-W".into(), secs.clone(), "-q".into(), to.to_string()],
    };
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", from_ns])
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Ok(mut child) = command.spawn() else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"knock\n");
    }
    let Ok(out) = child.wait_with_output() else { return false };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match probe {
        Probe::Tcp(_) => out.status.success() || stderr.contains("refused"),
        Probe::Udp => stdout.contains("reached"),
        Probe::Icmp => out.status.success(),
    }
}

pub fn zone(name: &str, cidr: &str, isolated: bool, deny_intra_zone: bool) -> Zone {
    Zone { name: name.into(), isolated, cidr: parse_cidr(cidr).expect("cidr"), deny_intra_zone }
}

pub fn policy(name: &str, from: &str, to: &str, protocol: Protocol, ports: &[(u16, u16)]) -> Policy {
    Policy {
        name: name.into(),
        from_zone: from.into(),
        to_zone: to.into(),
        protocol,
        ports: ports.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect(),
    }
}

/// Issue #5's matrix: three normal zones (db denies intra-zone traffic), one isolated zone, and
/// policies web→app TCP 8080, app→db UDP 5353, web→db ICMP.
pub fn matrix_zones() -> Vec<Zone> {
    vec![
        zone("web", "10.1.0.0/24", false, false),
        zone("app", "10.2.0.0/24", false, false),
        zone("db", "10.3.0.0/24", false, true),
        zone("iso", "10.9.0.0/24", true, false),
    ]
}

pub fn matrix_policies() -> Vec<Policy> {
    vec![
        policy("web-app", "web", "app", Protocol::Tcp, &[(8080, 8080)]),
        policy("app-db", "app", "db", Protocol::Udp, &[(5353, 5353)]),
        policy("web-db-ping", "web", "db", Protocol::Icmp, &[]),
    ]
}
