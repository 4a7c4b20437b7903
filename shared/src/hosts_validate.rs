//! Static validation of the host endpoints' bodies (join tokens, joins, heartbeats, the desired
//! feed's parameters): everything that can be judged from the request alone.
//!
//! The state machine runs the join check again at apply time (a join is a Raft command), so a body
//! that reached the log by any path is held to the same rules. Every refusal is a 400 whose message
//! starts with the offending field.

use crate::error::ApiError;
use crate::hosts::*;
use crate::names::check_name;
use crate::validate::ARCHES;

/// At most this many pools a host may report.
pub const MAX_POOLS: usize = 64;
/// At most this many VMs a heartbeat may report.
pub const MAX_REPORTED_VMS: usize = 4096;
/// Longest reported VM error kept.
pub const MAX_REPORTED_ERROR: usize = 4096;
/// Longest agent URL accepted.
pub const MAX_URL_LEN: usize = 256;
/// Longest free-text inventory field (libvirt version, accelerator, backend).
const MAX_TEXT: usize = 64;
/// Upper bounds that no real host reaches; they keep sums in the controller far from overflow.
pub const MAX_HOST_CPUS: u32 = 1 << 16;
pub const MAX_HOST_MEMORY_MIB: u64 = 1 << 32;
const ACCELERATORS: &[&str] = &["kvm", "tcg"];

fn name(field: &str, value: &str) -> Result<(), ApiError> {
    check_name(value).map_err(|why| ApiError::invalid(field, why))
}

/// Identifiers the agent's build defines (pool backends, firmware profiles such as `x86_64-bios`):
/// 1-63 of `a-z 0-9 - _`.
fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("'{value}' is not 1-63 of a-z, 0-9, '-' and '_'")))
    }
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("'{value}' is not one of {}", allowed.join(", "))))
    }
}

fn text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_TEXT || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(field, format!("must be 1-{MAX_TEXT} printable ASCII characters")));
    }
    Ok(())
}

/// `http(s)://HOST:PORT` with an optional path; no spaces, no control characters, no user info.
pub fn agent_url(field: &str, url: &str) -> Result<(), ApiError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let bad = |why: &str| Err(ApiError::invalid(field, format!("'{url}' {why}")));
    let Some(rest) = rest else { return bad("is not an http:// or https:// URL") };
    if url.len() > MAX_URL_LEN || !url.bytes().all(|b| b.is_ascii_graphic()) || rest.contains('@') {
        return bad(&format!("is not a plain URL of at most {MAX_URL_LEN} printable characters"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else { return bad("has no :PORT") };
    if host.is_empty() || host == "[]" {
        return bad("has no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("has no valid port"),
    }
}

pub fn join_token_create(r: &JoinTokenCreate) -> Result<(), ApiError> {
    if let Some(site) = &r.site {
        name("site", site)?;
    }
    if let Some(ttl) = r.ttl_seconds {
        if !(1..=MAX_JOIN_TOKEN_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::invalid("ttl_seconds", format!("{ttl} is outside 1-{MAX_JOIN_TOKEN_TTL_SECONDS}")));
        }
    }
    Ok(())
}

pub fn host_join(r: &HostJoin) -> Result<(), ApiError> {
    name("host_id", &r.host_id)?;
    name("site", &r.site)?;
    one_of("arch", &r.arch, ARCHES)?;
    agent_url("agent_url", &r.agent_url)?;
    let inv = &r.inventory;
    if !(1..=MAX_HOST_CPUS).contains(&inv.cpus) {
        return Err(ApiError::invalid("inventory.cpus", format!("{} is outside 1-{MAX_HOST_CPUS}", inv.cpus)));
    }
    if !(1..=MAX_HOST_MEMORY_MIB).contains(&inv.memory_mib) {
        return Err(ApiError::invalid(
            "inventory.memory_mib",
            format!("{} is outside 1-{MAX_HOST_MEMORY_MIB}", inv.memory_mib),
        ));
    }
    one_of("inventory.accelerator", &inv.accelerator, ACCELERATORS)?;
    text("inventory.libvirt_version", &inv.libvirt_version)?;
    if inv.pools.len() > MAX_POOLS {
        return Err(ApiError::invalid("inventory.pools", format!("at most {MAX_POOLS} pools")));
    }
    for (i, pool) in inv.pools.iter().enumerate() {
        name(&format!("inventory.pools[{i}].name"), &pool.name)?;
        if inv.pools[..i].iter().any(|p| p.name == pool.name) {
            return Err(ApiError::invalid(
                &format!("inventory.pools[{i}].name"),
                format!("'{}' is listed twice", pool.name),
            ));
        }
        // Backends and profiles are names the agent's build knows; a newer agent may know more.
        identifier(&format!("inventory.pools[{i}].backend"), &pool.backend)?;
    }
    if inv.firmware_profiles.len() > MAX_POOLS {
        return Err(ApiError::invalid("inventory.firmware_profiles", format!("at most {MAX_POOLS} profiles")));
    }
    for (i, profile) in inv.firmware_profiles.iter().enumerate() {
        let field = format!("inventory.firmware_profiles[{i}]");
        identifier(&field, profile)?;
        if inv.firmware_profiles[..i].contains(profile) {
            return Err(ApiError::invalid(&field, format!("'{profile}' is listed twice")));
        }
    }
    if let Some(ip) = &inv.underlay_ip {
        let parsed: Result<std::net::Ipv4Addr, _> = ip.parse();
        if parsed.is_err() || parsed.is_ok_and(|a| a.is_unspecified() || a.is_multicast() || a.is_broadcast()) {
            return Err(ApiError::invalid("inventory.underlay_ip", format!("'{ip}' is not a unicast IPv4 address")));
        }
    }
    if let Some(trunk) = &inv.vlan_trunk {
        crate::names::check_interface_name(trunk).map_err(|why| ApiError::invalid("inventory.vlan_trunk", why))?;
    }
    Ok(())
}

pub fn heartbeat(r: &HostHeartbeat) -> Result<(), ApiError> {
    if r.usage.pools.len() > MAX_POOLS {
        return Err(ApiError::invalid("usage.pools", format!("at most {MAX_POOLS} pools")));
    }
    for (i, pool) in r.usage.pools.iter().enumerate() {
        name(&format!("usage.pools[{i}].name"), &pool.name)?;
    }
    if r.vms.len() > MAX_REPORTED_VMS {
        return Err(ApiError::invalid("vms", format!("at most {MAX_REPORTED_VMS} vms")));
    }
    for (i, vm) in r.vms.iter().enumerate() {
        if vm.id.is_empty() || vm.id.len() > 64 {
            return Err(ApiError::invalid(&format!("vms[{i}].id"), "is not a vm id"));
        }
        if vm.last_error.as_ref().is_some_and(|e| e.len() > MAX_REPORTED_ERROR) {
            return Err(ApiError::invalid(
                &format!("vms[{i}].last_error"),
                format!("at most {MAX_REPORTED_ERROR} bytes"),
            ));
        }
    }
    if let Some(converged) = r.converged_generation {
        if converged > r.desired_generation {
            return Err(ApiError::invalid(
                "converged_generation",
                format!("{converged} is newer than desired_generation {}", r.desired_generation),
            ));
        }
    }
    Ok(())
}

pub fn desired_params(p: &DesiredParams) -> Result<u64, ApiError> {
    let wait = p.wait_ms.unwrap_or(DEFAULT_DESIRED_WAIT_MS);
    if wait > MAX_DESIRED_WAIT_MS {
        return Err(ApiError::invalid("wait_ms", format!("{wait} is outside 0-{MAX_DESIRED_WAIT_MS}")));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn join() -> HostJoin {
        HostJoin {
            host_id: "h1".into(),
            site: "primary".into(),
            arch: "x86_64".into(),
            agent_url: "http://10.0.0.1:7100".into(),
            inventory: HostInventory {
                cpus: 8,
                memory_mib: 16384,
                accelerator: "kvm".into(),
                libvirt_version: "9.0.0".into(),
                pools: vec![HostPool {
                    name: "default".into(),
                    backend: "dir-qcow2".into(),
                    capacity_bytes: 1,
                    allocation_bytes: 0,
                    available_bytes: 1,
                }],
                firmware_profiles: vec!["x86_64-bios".into()],
                underlay_ip: Some("192.168.10.1".into()),
                zone_networks: true,
                vlan_trunk: Some("bond0".into()),
            },
        }
    }

    #[test]
    fn a_real_join_passes() {
        host_join(&join()).expect("valid");
        let mut j = join();
        j.agent_url = "https://[fd00::1]:7100/".into();
        host_join(&j).expect("IPv6 with a path");
    }

    #[test]
    fn each_bad_join_field_is_named() {
        type Edit = Box<dyn Fn(&mut HostJoin)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|j| j.host_id = "H 1".into()), "host_id"),
            (Box::new(|j| j.site = String::new()), "site"),
            (Box::new(|j| j.arch = "sparc".into()), "arch"),
            (Box::new(|j| j.agent_url = "ftp://x:1".into()), "agent_url"),
            (Box::new(|j| j.agent_url = "http://x".into()), "agent_url"),
            (Box::new(|j| j.agent_url = "http://u@x:1".into()), "agent_url"),
            (Box::new(|j| j.agent_url = "http://x:0".into()), "agent_url"),
            (Box::new(|j| j.agent_url = "http://:80".into()), "agent_url"),
            (Box::new(|j| j.inventory.cpus = 0), "inventory.cpus"),
            (Box::new(|j| j.inventory.memory_mib = 0), "inventory.memory_mib"),
            (Box::new(|j| j.inventory.accelerator = "xen".into()), "inventory.accelerator"),
            (Box::new(|j| j.inventory.underlay_ip = Some("10.0.0.256".into())), "inventory.underlay_ip"),
            (Box::new(|j| j.inventory.vlan_trunk = Some("eth0/1".into())), "inventory.vlan_trunk"),
            (Box::new(|j| j.inventory.libvirt_version = "9 0".into()), "inventory.libvirt_version"),
            (Box::new(|j| j.inventory.pools[0].name = "A".into()), "inventory.pools[0].name"),
            (Box::new(|j| j.inventory.pools[0].backend = "NFS".into()), "inventory.pools[0].backend"),
            (Box::new(|j| j.inventory.firmware_profiles.push("x86_64-bios".into())), "inventory.firmware_profiles[1]"),
            (Box::new(|j| j.inventory.pools.push(j.inventory.pools[0].clone())), "inventory.pools[1].name"),
            (Box::new(|j| j.inventory.firmware_profiles.push("Bogus!".into())), "inventory.firmware_profiles[1]"),
        ];
        for (edit, field) in cases {
            let mut j = join();
            edit(&mut j);
            let e = host_join(&j).expect_err(field);
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
        }
    }

    #[test]
    fn tokens_heartbeats_and_feed_params() {
        join_token_create(&JoinTokenCreate::default()).expect("defaults");
        let e = join_token_create(&JoinTokenCreate { site: None, ttl_seconds: Some(0) }).expect_err("ttl 0");
        assert_eq!(e.field.as_deref(), Some("ttl_seconds"));
        let e = join_token_create(&JoinTokenCreate { site: Some("DR".into()), ttl_seconds: None }).expect_err("site");
        assert_eq!(e.field.as_deref(), Some("site"));
        let hb = HostHeartbeat { desired_generation: 3, converged_generation: Some(4), ..Default::default() };
        assert_eq!(heartbeat(&hb).expect_err("converged ahead").field.as_deref(), Some("converged_generation"));
        assert_eq!(desired_params(&DesiredParams::default()), Ok(DEFAULT_DESIRED_WAIT_MS));
        let p = DesiredParams { wait_ms: Some(MAX_DESIRED_WAIT_MS + 1), ..Default::default() };
        assert_eq!(desired_params(&p).expect_err("too long").field.as_deref(), Some("wait_ms"));
    }
}
