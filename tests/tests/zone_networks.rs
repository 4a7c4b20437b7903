//! Zone networks end to end with real guests (issue #5, docs/networks.md): two simulated hosts, each
//! a network namespace with its own libvirt (so the taps of its VMs are created there), its own
//! `hci-agent --underlay-address` and an underlay link to the other host. The agents get desired
//! states with zones, a policy and the two-host fabric, and boot four test guests (two per host)
//! whose NICs take their IPAM addresses by DHCP from their agent (`hci.ip=dhcp`; its answers are in
//! its log), except one that carries a static `hci.ip`/`hci.gw` of its own. Each guest
//! probes others over TCP every second (`hci.probe`) and prints the outcomes on its console:
//! same-zone across hosts over VXLAN works, the allowed cross-zone policy works, a port the policy
//! does not name and a pair with no policy are dropped (and counted), and the isolated zone
//! reaches nothing. Then a flushed table is restored by the agent (counted as drift), and a deleted
//! VM's route goes. Needs root, nft and `scripts/libvirt/up.sh`; builds the test guest on first use.

use std::time::{Duration, Instant};

use hci_shared::agent::{
    FabricHost, HostDesired, HostNetwork, NetworkPolicy, NetworkZone, NicDesired, VmDesired, VolumeDesired,
    VolumeSource,
};
use hci_shared::resources::{PowerState, Protocol};
use hci_tests::agent::{test_guest_image, AgentProc, LibvirtHost};
use hci_tests::netns::Netns;
use hci_tests::wait::poll;

const BOOT: Duration = Duration::from_secs(300);

fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Guest {
    id: &'static str,
    host: usize,
    zone: &'static str,
    ip: &'static str,
    /// Takes its address by DHCP (else from its own static OEM strings).
    dhcp: bool,
    /// (target, reached?) probed from this guest.
    probes: &'static [(&'static str, bool)],
}

const GUESTS: [Guest; 4] = [
    Guest {
        id: "web-a",
        host: 0,
        zone: "web",
        ip: "10.61.0.10",
        dhcp: true,
        probes: &[
            ("10.61.0.20:8080", true),  // same zone, across hosts (VXLAN)
            ("10.62.0.20:8080", true),  // policy web-app, across hosts
            ("10.62.0.20:7", false),    // a port the policy does not name
            ("10.69.0.10:8080", false), // into the isolated zone, same host
        ],
    },
    Guest {
        id: "iso-a",
        host: 0,
        zone: "drill",
        ip: "10.69.0.10",
        dhcp: false,
        probes: &[("10.61.0.10:8080", false), ("10.61.0.20:8080", false)],
    },
    Guest { id: "web-b", host: 1, zone: "web", ip: "10.61.0.20", dhcp: true, probes: &[("10.61.0.10:8080", true)] },
    Guest {
        id: "app-b",
        host: 1,
        zone: "app",
        ip: "10.62.0.20",
        dhcp: true,
        probes: &[("10.61.0.20:8080", false), ("10.61.0.10:8080", false)],
    },
];

/// The guest's MAC (the console prints it, lowercase, as the DHCP server matched it).
fn mac(g: &Guest) -> String {
    let n = GUESTS.iter().position(|x| x.id == g.id).expect("guest");
    format!("52:54:00:6e:{:02x}:{n:02x}", g.host)
}

fn underlay(h: usize) -> String {
    format!("192.168.253.{}", h + 1)
}

fn network(hosts: &[String]) -> HostNetwork {
    let zone = |name: &str, n: u8, isolated| {
        let cidr = hci_shared::names::parse_cidr(&format!("10.{n}.0.0/24")).expect("cidr");
        NetworkZone::new(name, cidr, 10_000 + u32::from(n), isolated, false)
    };
    HostNetwork {
        zones: vec![zone("web", 61, false), zone("app", 62, false), zone("drill", 69, true)],
        policies: vec![NetworkPolicy {
            name: "web-app".into(),
            from_zone: "web".into(),
            to_zone: "app".into(),
            protocol: Protocol::Tcp,
            ports: "8080".into(),
        }],
        fabric: hosts
            .iter()
            .enumerate()
            .map(|(h, id)| FabricHost { host_id: id.clone(), underlay_ip: underlay(h) })
            .collect(),
    }
}

fn desired(hosts: &[String], h: usize, generation: u64, except: &[&str]) -> HostDesired {
    let mine: Vec<&Guest> = GUESTS.iter().filter(|g| g.host == h && !except.contains(&g.id)).collect();
    let volumes = mine
        .iter()
        .map(|g| VolumeDesired {
            id: format!("boot-{}", g.id),
            pool: "default".into(),
            size_gib: 1,
            source: VolumeSource::Image(test_guest_image()),
            snapshots: vec![],
            rollback: None,
        })
        .collect();
    let vms = mine
        .iter()
        .map(|g| {
            let probes: Vec<&str> = g.probes.iter().map(|(t, _)| *t).collect();
            let mut oem_strings = vec![format!("hci.probe={}", probes.join(",")), "hci.heartbeat=0".into()];
            if !g.dhcp {
                let gateway = format!("{}.1", g.ip.rsplit_once('.').map(|(net, _)| net).expect("dotted"));
                oem_strings.extend([format!("hci.ip={}/24", g.ip), format!("hci.gw={gateway}")]);
            }
            VmDesired {
                id: g.id.into(),
                name: g.id.into(),
                vcpus: 1,
                memory_mib: 256,
                arch: "x86_64".into(),
                firmware: "x86_64-bios".into(),
                disks: vec![format!("boot-{}", g.id)],
                nics: vec![NicDesired { mac: mac(g), zone: g.zone.into(), ip: g.ip.into() }],
                power: PowerState::Running,
                reboot_count: 0,
                oem_strings,
                migration: None,
                snapshots: vec![],
                revert: None,
            }
        })
        .collect();
    HostDesired {
        volumes,
        vms,
        network: Some(network(hosts)),
        ..hci_shared::hosts::empty_desired(&hosts[h], generation)
    }
}

/// (ok lines, fail lines) of `target` on a console.
fn outcomes(console: &str, target: &str) -> (usize, usize) {
    let ok = console.lines().filter(|l| l.contains(&format!("HCI-PROBE {target} ok"))).count();
    let fail = console.lines().filter(|l| l.contains(&format!("HCI-PROBE {target} fail"))).count();
    (ok, fail)
}

fn counter(ns: &str, name: &str) -> u64 {
    let listing = run(&["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "hci", name]);
    let packets = listing.split("packets ").nth(1).and_then(|rest| rest.split_whitespace().next());
    packets.and_then(|p| p.parse().ok()).unwrap_or_default()
}

fn metric(agent: &AgentProc, name: &str) -> f64 {
    hci_tests::agent::metric(&agent.metrics(), name).unwrap_or_else(|| panic!("agent metric {name} missing"))
}

/// Whether `agent`'s DHCP server offered `ip` and acked it (its log says so).
fn dhcp_answered(agent: &AgentProc, ip: &str) -> bool {
    let log = agent.log();
    let answered =
        |kind: &str| log.lines().any(|l| l.contains("dhcp: answered") && l.contains(&format!("kind={kind} ip={ip} ")));
    answered("Offer") && answered("Ack")
}

/// Host ids `<prefix><pid>a`, `...b` and their namespaces, joined by an underlay link `ul0` with
/// the addresses `underlay_of(0)`, `underlay_of(1)` (jumbo frames: VXLAN adds 50 bytes).
fn two_hosts(prefix: &str, underlay_of: impl Fn(usize) -> String) -> (Vec<String>, Vec<Netns>) {
    let tag = std::process::id() % 100_000;
    let hosts: Vec<String> = ["a", "b"].iter().map(|h| format!("{prefix}{tag}{h}")).collect();
    let namespaces: Vec<Netns> = (0..2).map(|_| Netns::create()).collect();
    let (a, b) = (&namespaces[0].name, &namespaces[1].name);
    run(&["ip", "-n", a, "link", "add", "ul0", "mtu", "9000", "type", "veth", "peer", "name", "ul0", "netns", b]);
    for (h, ns) in [a, b].into_iter().enumerate() {
        run(&["ip", "-n", ns, "addr", "add", &format!("{}/24", underlay_of(h)), "dev", "ul0"]);
        run(&["ip", "-n", ns, "link", "set", "ul0", "up"]);
    }
    (hosts, namespaces)
}

#[test]
fn guests_on_two_hosts_reach_what_their_zones_allow_and_nothing_else() {
    let started = Instant::now();
    let (hosts, namespaces) = two_hosts("zn", underlay);
    {
        let libvirt: Vec<LibvirtHost> =
            (0..2).map(|h| LibvirtHost::up_in_netns(&hosts[h], &namespaces[h].name)).collect();
        let agents: Vec<AgentProc> = (0..2)
            .map(|h| {
                let args = ["--underlay-address".to_string(), underlay(h)];
                AgentProc::start_in_netns(&libvirt[h], &args, &namespaces[h].name, namespaces[h].ns_ip)
            })
            .collect();
        for (h, agent) in agents.iter().enumerate() {
            assert_eq!(agent.put_desired(&desired(&hosts, h, 1, &[])), 200);
        }
        for agent in &agents {
            agent.wait_converged(1, BOOT, |_| Ok(()));
        }
        eprintln!("both hosts converged (4 guests defined and running) after {:?}", started.elapsed());
        let host_of = |id: &str| GUESTS.iter().find(|g| g.id == id).map(|g| g.host).expect("guest");
        for g in &GUESTS {
            let console = agents[g.host].wait_console(g.id, "HCI-NET-UP", BOOT);
            assert!(console.contains(&format!("HCI-NET-UP eth0 {}/24 {}", g.ip, mac(g))), "{}: {console}", g.id);
            // Those on DHCP got it from their agent (offered, then acked); the static one asked nothing.
            assert_eq!(dhcp_answered(&agents[g.host], g.ip), g.dhcp, "{}: {}", g.id, agents[g.host].log_tail());
            // DHCP also told them their zone's MTU (a VXLAN zone's 1450); the static one keeps 1500.
            let mtu = if g.dhcp { 1450 } else { 1500 };
            assert!(console.contains(&format!("{} mtu {mtu}", mac(g))), "{}: {console}", g.id);
        }
        eprintln!("every guest configured its address (three by DHCP) after {:?}", started.elapsed());
        // Every allowed probe gets through.
        for g in &GUESTS {
            for (target, _) in g.probes.iter().filter(|(_, reached)| *reached) {
                agents[g.host].wait_console(g.id, &format!("HCI-PROBE {target} ok"), Duration::from_secs(120));
            }
        }
        eprintln!("every allowed flow connected after {:?}", started.elapsed());
        // Every denied one has failed three more times since, and never connected.
        let fails_then: Vec<Vec<usize>> = GUESTS
            .iter()
            .map(|g| {
                let console = agents[g.host].console(g.id);
                g.probes.iter().map(|(t, _)| outcomes(&console, t).1).collect()
            })
            .collect();
        for (g, then) in GUESTS.iter().zip(&fails_then) {
            for ((target, reached), before) in g.probes.iter().zip(then) {
                if *reached {
                    continue;
                }
                poll(&format!("{} → {target} to fail three more times", g.id), Duration::from_secs(120), || {
                    let (ok, fail) = outcomes(&agents[host_of(g.id)].console(g.id), target);
                    if ok > 0 {
                        panic!("{} reached {target}, which its zones do not allow", g.id);
                    }
                    if fail >= before + 3 {
                        Ok(())
                    } else {
                        Err(format!("{fail} failures"))
                    }
                });
            }
        }
        eprintln!("every denied flow stayed blocked after {:?}", started.elapsed());
        let (ns_a, ns_b) = (&namespaces[0].name, &namespaces[1].name);
        assert!(counter(ns_a, "policy_web-app") > 0, "the policy counts what it allows");
        assert!(counter(ns_a, "drop_default") > 0, "host a counts what it drops (web-a → app-b:7, iso-a → web-*)");
        assert!(counter(ns_b, "drop_default") > 0, "host b counts what it drops (app-b → web-*)");
        for agent in &agents {
            assert!(metric(agent, "hci_agent_firewall_full_applies_total") >= 1.0);
        }
        // An offer and an ack per DHCP guest (one on host a, two on host b), at least.
        assert!(metric(&agents[0], "hci_agent_dhcp_replies_total") >= 2.0);
        assert!(metric(&agents[1], "hci_agent_dhcp_replies_total") >= 4.0);

        // Someone flushes host b's table: the agent restores it within seconds and counts it.
        let flushed = Instant::now();
        run(&["ip", "netns", "exec", ns_b, "nft", "flush", "table", "inet", "hci"]);
        poll("the flushed table to be restored", Duration::from_secs(10), || {
            let listing = run(&["ip", "netns", "exec", ns_b, "nft", "list", "table", "inet", "hci"]);
            if listing.contains("ct state established,related accept") && listing.contains("goto from_web") {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        eprintln!("flushed table restored after {:?}", flushed.elapsed());
        poll("the drift metric", Duration::from_secs(5), || {
            let events = metric(&agents[1], "hci_agent_firewall_drift_events_total");
            if events >= 1.0 {
                Ok(())
            } else {
                Err(format!("{events}"))
            }
        });
        let fails = outcomes(&agents[1].console("app-b"), "10.61.0.20:8080").1;
        poll("app-b → web-b to fail again after the restore", Duration::from_secs(60), || {
            let (_, now) = outcomes(&agents[1].console("app-b"), "10.61.0.20:8080");
            if now >= fails + 2 {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        });

        // iso-a is deleted: its domain, tap and route go; the others keep their routes.
        assert_eq!(agents[0].put_desired(&desired(&hosts, 0, 2, &["iso-a"])), 200);
        agents[0].wait_converged(2, Duration::from_secs(120), |r| {
            if r.vms.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} VMs", r.vms.len()))
            }
        });
        assert!(!libvirt[0].domains().iter().any(|d| d.contains("iso-a")), "iso-a's domain is gone");
        poll("iso-a's route to go", Duration::from_secs(30), || {
            let routes = run(&["ip", "-n", ns_a, "route", "show", "proto", "72"]);
            if !routes.contains("10.69.0.10 ") && routes.contains("10.61.0.10 ") {
                Ok(())
            } else {
                Err(routes)
            }
        });
    }
    eprintln!("test done in {:?}", started.elapsed());
}

/// The same data plane fed by the controller: agents in namespaces join a real 3-member cluster
/// with `--underlay-address` (reported in their inventory), zones (VNIs assigned), a policy and two
/// VMs (spread by anti-affinity) are created with `hcictl`; each host's feed carries the network,
/// each guest takes the address IPAM gave it by DHCP from its agent, and both hosts build the zones' VXLAN devices
/// (flooding to each other), the VMs' routes and the firewall sets.
#[test]
fn the_controllers_feed_builds_the_zone_networks_on_every_host() {
    use hci_tests::site::{hcictl, wait_actual};
    use hci_tests::Cluster;

    let started = Instant::now();
    let underlay_of = |h: usize| format!("192.168.254.{}", h + 1);
    let (hosts, namespaces) = two_hosts("zs", underlay_of);
    let (a, b) = (&namespaces[0].name, &namespaces[1].name);
    let cluster =
        Cluster::builder(3).arg("--host-lease-ms").arg("2000").arg("--ha-restart-margin-ms").arg("600000").start();
    let tokens = tempfile::tempdir().expect("tempdir");
    let libvirt: Vec<LibvirtHost> = (0..2).map(|h| LibvirtHost::up_in_netns(&hosts[h], &namespaces[h].name)).collect();
    let agents: Vec<AgentProc> = (0..2)
        .map(|h| {
            let ns = &namespaces[h];
            let token = hcictl(&cluster, &["host", "join-token", "create"]);
            let file = tokens.path().join(&hosts[h]);
            std::fs::write(&file, token["token"].as_str().expect("token")).expect("token file");
            let controllers: Vec<String> = cluster.ids().iter().map(|id| ns.host_url(cluster.port(*id))).collect();
            let mut args = vec![
                "--controller".to_string(),
                controllers.join(","),
                "--token-file".into(),
                file.display().to_string(),
                "--underlay-address".into(),
                underlay_of(h),
            ];
            // The second host also carries VLAN zones (on its underlay link as the trunk).
            if h == 1 {
                args.extend(["--vlan-trunk".to_string(), "ul0".into()]);
            }
            AgentProc::start_in_netns(&libvirt[h], &args, &ns.name, ns.ns_ip)
        })
        .collect();
    let api = cluster.api();
    for (h, id) in hosts.iter().enumerate() {
        poll(&format!("host {id} ready with its underlay address"), Duration::from_secs(60), || {
            let r = api.try_get(1, &format!("/v1/hosts/{id}"))?;
            let inventory = &r.json["inventory"];
            let trunk = if h == 1 { serde_json::json!("ul0") } else { serde_json::Value::Null };
            if r.json["state"] == "ready"
                && inventory["underlay_ip"] == underlay_of(h).as_str()
                && inventory["zone_networks"] == true
                && inventory["vlan_trunk"] == trunk
            {
                Ok(())
            } else {
                Err(r.text)
            }
        });
    }
    let cli = |args: &[&str]| hcictl(&cluster, args);
    cli(&["tenant", "create", "zs", "--vcpus", "8", "--memory-mib", "8192", "--disk-gib", "20"]);
    let web = cli(&["zone", "create", "web", "--tenant", "zs", "--cidr", "10.71.0.0/24"]);
    let app = cli(&["zone", "create", "app", "--tenant", "zs", "--cidr", "10.72.0.0/24", "--intra-zone", "deny"]);
    assert_eq!((web["vni"].as_u64(), app["vni"].as_u64()), (Some(10_000), Some(10_001)), "{web} {app}");
    assert_eq!(app["intra_zone"], "deny");
    let policy =
        cli(&["zone-policy", "create", "--from", "web", "--to", "app", "--protocol", "tcp", "--ports", "8080"]);
    let policy = policy["id"].as_str().expect("policy id").to_string();
    let image = test_guest_image();
    let url = image.source.clone();
    let mut vms = Vec::new();
    for (name, zone) in [("w1", "web"), ("p1", "app")] {
        let volume = format!("boot-{name}");
        cli(&[
            "volume",
            "create",
            &volume,
            "--tenant",
            "zs",
            "--size-gib",
            "1",
            "--source-url",
            &url,
            "--source-sha256",
            &image.sha256,
        ]);
        let vm = cli(&[
            "vm",
            "create",
            name,
            "--tenant",
            "zs",
            "--vcpus",
            "1",
            "--memory-mib",
            "256",
            "--volume",
            &volume,
            "--nic",
            zone,
            "--anti-affinity-group",
            "spread",
        ]);
        vms.push(vm);
    }
    let mut taps_on: Vec<Vec<(String, String)>> = vec![Vec::new(), Vec::new()];
    for vm in &vms {
        let id = vm["id"].as_str().expect("id");
        let placed = wait_actual(api, id, "running", BOOT);
        let host = placed["host"].as_str().expect("host");
        let h = hosts.iter().position(|x| x == host).expect("one of ours");
        let ip = vm["nics"][0]["ip"].as_str().expect("ip").to_string();
        let console = agents[h].wait_console(id, "HCI-NET-UP", BOOT);
        assert!(console.contains(&format!("HCI-NET-UP eth0 {ip}/24")), "{id}: {console}");
        assert!(dhcp_answered(&agents[h], &ip), "{id} takes {ip} by DHCP: {}", agents[h].log_tail());
        let zone = vm["nics"][0]["zone"].as_str().expect("zone").to_string();
        taps_on[h].push((ip, zone));
    }
    assert!(taps_on.iter().all(|t| t.len() == 1), "anti-affinity spreads the VMs: {taps_on:?}");
    eprintln!("both guests up with their IPAM addresses after {:?}", started.elapsed());
    for (h, ns) in [a, b].into_iter().enumerate() {
        let other = underlay_of(1 - h);
        for vni in ["10000", "10001"] {
            let dev = format!("vx-{vni}");
            let link = run(&["ip", "-n", ns, "-d", "link", "show", &dev]);
            assert!(link.contains(&format!("vxlan id {vni} local {}", underlay_of(h))), "{link}");
            let fdb = run(&["ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", &dev]);
            assert!(fdb.contains(&format!("00:00:00:00:00:00 dst {other}")), "{fdb}");
        }
        let routes = run(&["ip", "-n", ns, "route", "show", "proto", "72"]);
        for (ip, zone) in &taps_on[h] {
            // The VM's /32 goes through its tap (libvirt's, named by the agent), a member of its zone's set.
            let route =
                routes.lines().find(|l| l.starts_with(&format!("{ip} dev hci"))).unwrap_or_else(|| panic!("{routes}"));
            let tap = route.split_whitespace().nth(2).expect("dev");
            let set = run(&["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "hci", &format!("zone_{zone}")]);
            assert!(set.contains(tap), "{set}");
        }
        assert!(routes.contains("10.71.0.0/24 dev vx-10000") && routes.contains("10.72.0.0/24 dev vx-10001"));
        let table = run(&["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "hci"]);
        assert!(
            table.contains("goto pair_web_app") && table.contains("pair_web_web") && !table.contains("pair_app_app"),
            "web allows intra-zone traffic, app denies it: {table}"
        );
    }
    // Deleting the policy reaches every host: its chain and counter go from both tables.
    cli(&["zone-policy", "delete", &policy]);
    for ns in [a, b] {
        poll("the policy to leave the table", Duration::from_secs(30), || {
            let table = run(&["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "hci"]);
            if table.contains("pair_web_app") {
                Err("still there".into())
            } else {
                Ok(())
            }
        });
    }
    // Placement knows which host carries which zone: a zone on a VLAN goes only to the host with
    // a trunk (created stopped: placed and booked, not started), while its VXLAN zones go to both.
    let lan = cli(&["zone", "create", "lan", "--tenant", "zs", "--cidr", "10.73.0.0/24", "--vlan", "300"]);
    assert_eq!((lan["vlan"].as_u64(), lan["vni"].as_u64()), (Some(300), None), "{lan}");
    let stopped_vm = |name: &str, zone: &str| {
        let args = ["vm", "create", name, "--tenant", "zs", "--vcpus", "1", "--memory-mib", "64", "--nic", zone];
        cli(&[&args[..], &["--stopped"]].concat())
    };
    for name in ["l1", "l2", "l3"] {
        let vm = stopped_vm(name, "lan");
        assert_eq!(vm["host"], hosts[1].as_str(), "{name} in the VLAN zone goes to the host with the trunk: {vm}");
    }
    let w = stopped_vm("w9", "web");
    assert_eq!(w["host"], hosts[0].as_str(), "spread puts a VXLAN-zone VM on the emptier host: {w}");
    eprintln!("test done in {:?}", started.elapsed());
}
