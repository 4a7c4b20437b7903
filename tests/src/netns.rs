//! A network namespace for one process under test (an agent cut off from the rest of the site): a
//! veth pair `10.213.X.Y/30`, this machine's side `.1`, the namespace's side `.2`, and TCP to the
//! `.1` address from inside forwarded to this machine's loopback (nftables DNAT, `route_localnet`),
//! so a process in the namespace reaches every loopback server the tests start (controllers, other
//! agents) at `host_ip:PORT` without them listening anywhere else.
//!
//! [`Netns::cut`] takes the namespace's side of the link down (every connection out fails at once;
//! unix sockets, such as libvirt's, are not network-scoped and keep working), [`Netns::drop_tcp_to`]
//! black-holes chosen ports only, [`Netns::restore`] undoes both. Dropping it removes the namespace, the veth pair and the nftables table.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::wait::poll;

static NEXT: AtomicU32 = AtomicU32::new(0);
/// The nftables table (inside the namespace) of [`Netns::drop_tcp_to`].
const CUT_TABLE: &str = "hci_cut";

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[track_caller]
fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Debug)]
pub struct Netns {
    pub name: String,
    /// This machine's end of the veth pair.
    pub host_dev: String,
    /// The namespace's end.
    pub ns_dev: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    table: String,
}

impl Netns {
    /// A fresh namespace, linked and forwarding to loopback. Panics (after cleaning up) on failure.
    pub fn create() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        // A /30 of 10.213.0.0/16 from the pid and a counter, skipping any already on this machine.
        let used = must(&["ip", "-4", "-o", "addr", "show"]);
        let mut slot = (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 16_000;
        let (host_ip, ns_ip) = loop {
            let base = slot * 4;
            let host_ip = Ipv4Addr::new(10, 213, (base >> 8) as u8, (base & 0xff) as u8 + 1);
            if !used.contains(&format!(" {host_ip}/")) {
                break (host_ip, Ipv4Addr::new(10, 213, (base >> 8) as u8, (base & 0xff) as u8 + 2));
            }
            slot = (slot + 1) % 16_000;
        };
        let ns = Self {
            name: format!("hci-t{tag}"),
            host_dev: format!("hv{tag}a"),
            ns_dev: format!("hv{tag}b"),
            host_ip,
            ns_ip,
            table: format!("hci_netns_{tag}"),
        };
        if let Err(e) = ns.set_up() {
            drop(ns);
            panic!("creating a network namespace: {e}");
        }
        ns
    }

    fn set_up(&self) -> Result<(), String> {
        let (host_cidr, ns_cidr) = (format!("{}/30", self.host_ip), format!("{}/30", self.ns_ip));
        run(&["ip", "netns", "add", &self.name])?;
        run(&["ip", "link", "add", &self.host_dev, "type", "veth", "peer", "name", &self.ns_dev])?;
        run(&["ip", "link", "set", &self.ns_dev, "netns", &self.name])?;
        run(&["ip", "addr", "add", &host_cidr, "dev", &self.host_dev])?;
        run(&["ip", "link", "set", &self.host_dev, "up"])?;
        run(&["ip", "-n", &self.name, "addr", "add", &ns_cidr, "dev", &self.ns_dev])?;
        run(&["ip", "-n", &self.name, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &self.name, "link", "set", &self.ns_dev, "up"])?;
        run(&["sysctl", "-qw", &format!("net.ipv4.conf.{}.route_localnet=1", self.host_dev)])?;
        run(&["nft", "add", "table", "ip", &self.table])?;
        run(&["nft", "add", "chain", "ip", &self.table, "pre", "{ type nat hook prerouting priority -100; }"])?;
        let host_ip = self.host_ip.to_string();
        // One rule: DNAT everything for host_ip arriving on the veth to loopback (ports unchanged).
        run(&[
            "nft",
            "add",
            "rule",
            "ip",
            &self.table,
            "pre",
            "iifname",
            &self.host_dev,
            "ip",
            "daddr",
            &host_ip,
            "dnat",
            "to",
            "127.0.0.1",
        ])?;
        self.wait_link();
        Ok(())
    }

    /// `ip netns exec NAME program`: a command to run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `http://host_ip:PORT` as seen from inside: this machine's loopback port `port`.
    pub fn host_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.host_ip)
    }

    /// Cuts the namespace off: its end of the link goes down.
    pub fn cut(&self) {
        must(&["ip", "-n", &self.name, "link", "set", &self.ns_dev, "down"]);
    }

    /// Drops every TCP packet from the namespace to `host_ip` on `ports` (connections, open ones
    /// included, hang as in a black hole); the rest goes through.
    pub fn drop_tcp_to(&self, ports: &[u16]) {
        let ports = format!("{{ {} }}", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "));
        let host_ip = self.host_ip.to_string();
        let nft = |args: &[&str]| must(&[&["ip", "netns", "exec", &self.name, "nft"][..], args].concat());
        nft(&["add", "table", "inet", CUT_TABLE]);
        nft(&["add", "chain", "inet", CUT_TABLE, "out", "{ type filter hook output priority 0; }"]);
        nft(&["add", "rule", "inet", CUT_TABLE, "out", "ip", "daddr", &host_ip, "tcp", "dport", &ports, "drop"]);
    }

    /// Undoes [`Netns::cut`] and [`Netns::drop_tcp_to`], and waits until the link carries traffic.
    pub fn restore(&self) {
        let _ = run(&["ip", "netns", "exec", &self.name, "nft", "delete", "table", "inet", CUT_TABLE]);
        must(&["ip", "-n", &self.name, "link", "set", &self.ns_dev, "up"]);
        self.wait_link();
    }

    fn wait_link(&self) {
        let target = self.host_ip.to_string();
        poll(&format!("{} to reach {target}", self.name), Duration::from_secs(10), || {
            run(&["ip", "netns", "exec", &self.name, "ping", "-c1", "-W1", &target]).map(|_| ())
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["nft", "delete", "table", "ip", &self.table]);
        // Deleting the namespace destroys its end of the veth pair, and with it this end.
        let _ = run(&["ip", "netns", "delete", &self.name]);
        let _ = run(&["ip", "link", "delete", &self.host_dev]);
    }
}
