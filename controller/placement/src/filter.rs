//! The filters: which constraint, if any, keeps a host from taking a VM.
//!
//! It exists so the indexed planner, the naive planner, `verify` and the refusal counts all judge
//! a host by the same function, in the same order: a host is counted under the first constraint it
//! fails, so the counts of a refusal add up to the number of hosts.

use serde::{Deserialize, Serialize};

use crate::capacity::{vcpus_within_cap, within_cap};
use crate::host::Host;
use crate::model::{HostState, PlacementRequest};

/// One reason a host cannot take a VM, in the order the filters apply: first the static ones (what
/// the host is: `Arch` to `MissingPool`), then the dynamic ones (what it holds: `AntiAffinity` to
/// `DiskCap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    Arch,
    Site,
    Maintenance,
    Offline,
    Fenced,
    /// The VM already runs there (a move must go elsewhere).
    CurrentHost,
    /// Listed in the request's `exclude_hosts`.
    Excluded,
    Firmware,
    Zones,
    /// The host lacks a pool the VM's volumes need.
    MissingPool,
    AntiAffinity,
    VcpuCap,
    MemoryCap,
    DiskCap,
}

impl Constraint {
    pub const ALL: [Constraint; 14] = [
        Constraint::Arch,
        Constraint::Site,
        Constraint::Maintenance,
        Constraint::Offline,
        Constraint::Fenced,
        Constraint::CurrentHost,
        Constraint::Excluded,
        Constraint::Firmware,
        Constraint::Zones,
        Constraint::MissingPool,
        Constraint::AntiAffinity,
        Constraint::VcpuCap,
        Constraint::MemoryCap,
        Constraint::DiskCap,
    ];
}

/// A request made ready for filtering: its volumes summed per pool, where the VM is now.
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    pub request: &'a PlacementRequest,
    /// The host the VM is placed on now, for a move.
    pub current_host: Option<&'a str>,
    /// (pool, bytes) sorted by pool, each pool once.
    pub pool_demand: Vec<(&'a str, u64)>,
    pub cap_percent: u8,
}

impl<'a> Prepared<'a> {
    pub fn new(request: &'a PlacementRequest, current_host: Option<&'a str>, cap_percent: u8) -> Self {
        let mut pool_demand: Vec<(&str, u64)> = Vec::with_capacity(request.volumes.len());
        for volume in &request.volumes {
            match pool_demand.iter_mut().find(|(pool, _)| *pool == volume.pool) {
                Some((_, bytes)) => *bytes = bytes.saturating_add(volume.size_bytes),
                None => pool_demand.push((volume.pool.as_str(), volume.size_bytes)),
            }
        }
        pool_demand.sort_unstable();
        Self { request, current_host, pool_demand, cap_percent }
    }
}

/// The first constraint `host` fails for the prepared request, or `None` when it fits.
pub(crate) fn first_failure(host: &Host, prepared: &Prepared<'_>) -> Option<Constraint> {
    static_failure(host, prepared).or_else(|| dynamic_failure(host, prepared))
}

/// The first static constraint `host` fails: what the host is, whatever it holds.
fn static_failure(host: &Host, prepared: &Prepared<'_>) -> Option<Constraint> {
    let request = prepared.request;
    let spec = &host.spec;
    if spec.arch != request.arch {
        return Some(Constraint::Arch);
    }
    if request.site.as_ref().is_some_and(|site| *site != spec.site) {
        return Some(Constraint::Site);
    }
    match spec.state {
        HostState::Ready => {}
        HostState::Maintenance => return Some(Constraint::Maintenance),
        HostState::Offline => return Some(Constraint::Offline),
        HostState::Fenced => return Some(Constraint::Fenced),
    }
    if prepared.current_host == Some(spec.id.as_str()) {
        return Some(Constraint::CurrentHost);
    }
    if request.exclude_hosts.contains(&spec.id) {
        return Some(Constraint::Excluded);
    }
    if !spec.firmware_profiles.contains(&request.firmware) {
        return Some(Constraint::Firmware);
    }
    if !request.zones.iter().all(|zone| spec.zones.contains(zone)) {
        return Some(Constraint::Zones);
    }
    if prepared.pool_demand.iter().any(|(pool, _)| !spec.pools.contains_key(*pool)) {
        return Some(Constraint::MissingPool);
    }
    None
}

/// The first dynamic constraint `host` fails, given it passes the static ones: anti-affinity, then
/// the cap on vCPU, memory and each requested pool's disk.
pub(crate) fn dynamic_failure(host: &Host, prepared: &Prepared<'_>) -> Option<Constraint> {
    let (request, spec, cap) = (prepared.request, &host.spec, prepared.cap_percent);
    if request.anti_affinity_group.as_ref().is_some_and(|group| host.groups.contains_key(group)) {
        return Some(Constraint::AntiAffinity);
    }
    let vcpus = host.vcpus.saturating_add(u64::from(request.vcpus));
    if !vcpus_within_cap(vcpus, spec.cpus, spec.vcpu_overcommit_percent, cap) {
        return Some(Constraint::VcpuCap);
    }
    if !within_cap(host.memory_mib.saturating_add(request.memory_mib), spec.memory_mib, cap) {
        return Some(Constraint::MemoryCap);
    }
    for (pool, bytes) in &prepared.pool_demand {
        let (Some(allocated), Some(spec_pool)) = (host.pool_allocated_bytes(pool), spec.pools.get(*pool)) else {
            return Some(Constraint::MissingPool);
        };
        if !within_cap(allocated.saturating_add(*bytes), spec_pool.capacity_bytes, cap) {
            return Some(Constraint::DiskCap);
        }
    }
    None
}
