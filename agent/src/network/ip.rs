//! The real [`NetworkDataPlane`]: `ip -j` and `bridge -j` to read and change links, routes and
//! VXLAN flood entries, `/proc/sys` (or `sysctl` inside another namespace) for sysctls.
//!
//! It exists apart from the planning so that tests can point it into a network namespace
//! (`ip netns exec NAME ...`), as the firewall's `NftFirewall` does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::Value;

use super::plan::{Link, Observed, Op, Route, Vlan, Vxlan, ROUTE_PROTO, VXLAN_PREFIX};
use super::{NetError, NetworkDataPlane};

/// How to run `ip`, `bridge` and `sysctl`: directly, or through `ip netns exec NS`.
#[derive(Debug, Clone, Default)]
pub struct IpDataPlane {
    netns: Option<String>,
}

impl IpDataPlane {
    /// This process's network namespace.
    pub fn host() -> Self {
        Self::default()
    }

    /// Network namespace `netns` (through `ip netns exec`).
    pub fn in_netns(netns: &str) -> Self {
        IpDataPlane { netns: Some(netns.to_string()) }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String, NetError> {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        let output = command.args(args).output().map_err(|e| NetError(format!("running {program}: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(NetError(format!("{program} {}: {}", args.join(" "), stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn json(&self, program: &str, args: &[&str]) -> Result<Vec<Value>, NetError> {
        let text = self.run(program, args)?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|e| NetError(format!("{program} {}: bad JSON: {e}", args.join(" "))))
    }

    fn read_sysctl(&self, key: &str) -> Option<String> {
        match &self.netns {
            None => std::fs::read_to_string(format!("/proc/sys/{key}")).ok().map(|v| v.trim().to_string()),
            Some(_) => self.run("sysctl", &["-n", key]).ok().map(|v| v.trim().to_string()),
        }
    }

    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        match &self.netns {
            None => std::fs::write(format!("/proc/sys/{key}"), value)
                .map_err(|e| NetError(format!("writing /proc/sys/{key}: {e}"))),
            Some(_) => self.run("sysctl", &["-qw", &format!("{key}={value}")]).map(|_| ()),
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn link_of(v: &Value) -> Link {
    let up = v.get("flags").and_then(Value::as_array).is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
    let info_of = |kind: &str| {
        v.get("linkinfo").filter(|i| str_of(i, "info_kind") == Some(kind)).and_then(|i| i.get("info_data"))
    };
    let vxlan = info_of("vxlan").map(|d| Vxlan {
        vni: d.get("id").and_then(Value::as_u64).unwrap_or_default() as u32,
        local: str_of(d, "local").and_then(|l| l.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: d.get("port").and_then(Value::as_u64).unwrap_or_default() as u16,
    });
    // A VLAN's lower device is `link` (the name; absent when it is in another namespace).
    let vlan = info_of("vlan").map(|d| Vlan {
        id: d.get("id").and_then(Value::as_u64).unwrap_or_default() as u16,
        lower: str_of(v, "link").unwrap_or_default().to_string(),
    });
    let mtu = v.get("mtu").and_then(Value::as_u64).unwrap_or_default() as u32;
    Link { up, vxlan, vlan, mtu }
}

impl NetworkDataPlane for IpDataPlane {
    fn observe(&self, sysctls: &[String]) -> Result<Observed, NetError> {
        let mut out = Observed::default();
        for link in self.json("ip", &["-d", "-j", "link", "show"])? {
            if let Some(name) = str_of(&link, "ifname") {
                out.links.insert(name.to_string(), link_of(&link));
            }
        }
        let proto = ROUTE_PROTO.to_string();
        for route in self.json("ip", &["-4", "-j", "route", "show", "table", "main", "proto", &proto])? {
            if let (Some(dst), Some(dev)) = (str_of(&route, "dst"), str_of(&route, "dev")) {
                // A host route is listed without its /32.
                let dst = if dst.contains('/') { dst.to_string() } else { format!("{dst}/32") };
                out.routes.insert(Route { dst, dev: dev.to_string() });
            }
        }
        // One listing of the local table: the gateways the agent routes (protocol 72) and the
        // host's own addresses (any other protocol), which it never takes over.
        for route in self.json("ip", &["-4", "-j", "route", "show", "table", "local", "type", "local"])? {
            let Some(dst) = str_of(&route, "dst").and_then(|d| d.parse::<Ipv4Addr>().ok()) else { continue };
            if str_of(&route, "protocol") == Some(proto.as_str()) {
                out.local_addresses.insert(dst);
            } else {
                out.foreign_local.insert(dst);
            }
        }
        // One fdb listing for every VXLAN device of the agent's: their flood entries (all-zero MAC).
        for (name, link) in &out.links {
            if name.starts_with(VXLAN_PREFIX) && link.vxlan.is_some() {
                out.flood.insert(name.clone(), BTreeSet::new());
            }
        }
        if !out.flood.is_empty() {
            for entry in self.json("bridge", &["-j", "fdb", "show"])? {
                let (Some(dev), Some("00:00:00:00:00:00")) = (str_of(&entry, "ifname"), str_of(&entry, "mac")) else {
                    continue;
                };
                if let Some(flood) = out.flood.get_mut(dev) {
                    flood.extend(str_of(&entry, "dst").and_then(|d| d.parse::<Ipv4Addr>().ok()));
                }
            }
        }
        let values: BTreeMap<String, String> =
            sysctls.iter().filter_map(|key| Some((key.clone(), self.read_sysctl(key)?))).collect();
        out.sysctls = values;
        Ok(out)
    }

    fn apply(&self, op: &Op) -> Result<(), NetError> {
        let proto = ROUTE_PROTO.to_string();
        match op {
            Op::AddVxlan { name, vxlan } => {
                let (vni, local, port) = (vxlan.vni.to_string(), vxlan.local.to_string(), vxlan.port.to_string());
                self.run(
                    "ip",
                    &[
                        "link",
                        "add",
                        name,
                        "type",
                        "vxlan",
                        "id",
                        &vni,
                        "local",
                        &local,
                        "dstport",
                        &port,
                        "nolearning",
                    ],
                )?;
            }
            Op::AddVlan { name, vlan } => {
                let id = vlan.id.to_string();
                self.run("ip", &["link", "add", "link", &vlan.lower, "name", name, "type", "vlan", "id", &id])?;
            }
            Op::DeleteLink { name } => {
                self.run("ip", &["link", "del", name])?;
            }
            Op::SetUp { name } => {
                self.run("ip", &["link", "set", name, "up"])?;
            }
            Op::SetMtu { name, mtu } => {
                self.run("ip", &["link", "set", name, "mtu", &mtu.to_string()])?;
            }
            Op::Sysctl { key, value } => self.write_sysctl(key, value)?,
            Op::AddFlood { dev, dst } => {
                let dst = dst.to_string();
                self.run("bridge", &["fdb", "append", "00:00:00:00:00:00", "dst", &dst, "dev", dev])?;
            }
            Op::DeleteFlood { dev, dst } => {
                let dst = dst.to_string();
                self.run("bridge", &["fdb", "del", "00:00:00:00:00:00", "dst", &dst, "dev", dev])?;
            }
            Op::ReplaceRoute(route) => {
                self.run("ip", &["route", "replace", &route.dst, "dev", &route.dev, "proto", &proto])?;
            }
            Op::DeleteRoute(route) => {
                self.run("ip", &["route", "del", &route.dst, "dev", &route.dev, "proto", &proto])?;
            }
            Op::AddLocal(address) | Op::DeleteLocal(address) => {
                let verb = if matches!(op, Op::AddLocal(_)) { "replace" } else { "del" };
                let dst = format!("{address}/32");
                self.run("ip", &["route", verb, "local", &dst, "dev", "lo", "table", "local", "proto", &proto])?;
            }
        }
        Ok(())
    }
}
