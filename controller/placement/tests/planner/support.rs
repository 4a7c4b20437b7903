//! Builders for small clusters and requests, with defaults that fit unless a test says otherwise.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use hci_placement::*;

pub const GIB: u64 = 1 << 30;

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// A ready x86_64 host in site `s0`: 8 CPUs at 1:1, 16 GiB, bios and uefi, zone `z0`, a 100 GiB
/// `local` pool.
pub fn host(id: &str) -> HostSpec {
    HostSpec {
        id: id.to_string(),
        site: "s0".to_string(),
        arch: "x86_64".to_string(),
        state: HostState::Ready,
        firmware_profiles: set(&["x86_64-bios", "x86_64-uefi"]),
        zones: set(&["z0"]),
        cpus: 8,
        vcpu_overcommit_percent: 100,
        memory_mib: 16384,
        pools: BTreeMap::from([("local".to_string(), PoolSpec { capacity_bytes: 100 * GIB, allocated_bytes: 0 })]),
    }
}

/// 1 vCPU, 1 GiB, x86_64 bios, zone `z0`, tenant `t0`, no volumes.
pub fn request(vm: &str) -> PlacementRequest {
    PlacementRequest {
        vm: vm.to_string(),
        tenant: "t0".to_string(),
        vcpus: 1,
        memory_mib: 1024,
        arch: "x86_64".to_string(),
        firmware: "x86_64-bios".to_string(),
        site: None,
        zones: set(&["z0"]),
        anti_affinity_group: None,
        volumes: Vec::new(),
        exclude_hosts: BTreeSet::new(),
    }
}

pub fn unlimited() -> Resources {
    Resources { vcpus: u64::MAX, memory_mib: u64::MAX, disk_bytes: u64::MAX }
}

/// A view of `hosts` with tenant `t0` unlimited.
pub fn view_of(hosts: impl IntoIterator<Item = HostSpec>) -> ClusterView {
    let mut view = ClusterView::new();
    for spec in hosts {
        view.upsert_host(spec);
    }
    view.set_tenant_limit("t0", unlimited());
    view
}

/// Places and applies; panics with the refusal if the request does not fit.
pub fn place_and_apply(view: &mut ClusterView, request: &PlacementRequest, policy: &Policy) -> Decision {
    let decision = place(view, request, policy).unwrap_or_else(|refusal| panic!("{refusal}"));
    view.apply(&decision).unwrap_or_else(|error| panic!("{error}"));
    decision
}

pub fn spread() -> Policy {
    Policy::default()
}

pub fn pack() -> Policy {
    Policy::default().with_strategy(Strategy::Pack)
}
