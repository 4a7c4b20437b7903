//! The synthetic site: hosts, tenants and VM requests with the mix of constraints a city cloud has.
//!
//! Hosts: 4 sites; 88 % x86_64 (bios, uefi, 70 % also secure boot), 10 % aarch64, 2 % ppc64le;
//! three sizes (64–128 CPUs, 512–1024 GiB); overcommit 2:1, 3:1 or 4:1; 96 % ready, the rest in maintenance, offline or fenced.
//! Each site has 30 zones every host reaches and 10 restricted ones (DMZ-like) that 20 % of its
//! hosts reach. Pools: `local` everywhere, `ceph` on 70 % of hosts, each with a baseline in use.
//! VMs: 1–16 vCPUs, 2–64 GiB (1 % 64 vCPUs and 768 GiB, which rarely fit); 60 % pinned to a site; 1–2 zones (15 % a restricted one); 30 % in an
//! anti-affinity group of 2–5; 1–3 volumes of 20–200 GiB in `local` or `ceph`; 200 tenants, 5 %
//! of them with tight quotas.

use std::collections::{BTreeMap, BTreeSet};

use hci_placement::{HostSpec, HostState, PlacementRequest, PoolSpec, Resources, VolumeDemand};

use crate::rng::Rng;

pub const SITES: [&str; 4] = ["north", "south", "east", "west"];
const GENERAL_ZONES: u64 = 30;
const RESTRICTED_ZONES: u64 = 10;
pub const TENANTS: u64 = 200;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

const ARCHES: [(u64, &str); 3] = [(88, "x86_64"), (10, "aarch64"), (2, "ppc64le")];

fn zone(site: &str, n: u64) -> String {
    format!("{site}-z{n:02}")
}

fn firmware_of(arch: &str, rng: &mut Rng) -> BTreeSet<String> {
    let names: &[&str] = match arch {
        "x86_64" if rng.chance(70) => &["x86_64-bios", "x86_64-uefi", "x86_64-uefi-secureboot"],
        "x86_64" => &["x86_64-bios", "x86_64-uefi"],
        "aarch64" => &["aarch64-uefi"],
        _ => &["ppc64le-pseries"],
    };
    names.iter().map(|name| name.to_string()).collect()
}

pub fn host(i: usize, rng: &mut Rng) -> HostSpec {
    let site = rng.pick(&SITES).to_string();
    let arch = rng.weighted(&ARCHES).to_string();
    let (cpus, memory_gib) = *rng.weighted(&[(40, (64u32, 512u64)), (40, (96, 768)), (20, (128, 1024))]);
    let mut zones: BTreeSet<String> = (0..GENERAL_ZONES).map(|n| zone(&site, n)).collect();
    for n in GENERAL_ZONES..GENERAL_ZONES + RESTRICTED_ZONES {
        if rng.chance(20) {
            zones.insert(zone(&site, n));
        }
    }
    let mut pools = BTreeMap::new();
    let local = (4 + rng.below(13)) * TIB;
    pools.insert("local".to_string(), PoolSpec { capacity_bytes: local, allocated_bytes: local * rng.below(30) / 100 });
    if rng.chance(70) {
        let ceph = 40 * TIB;
        pools
            .insert("ceph".to_string(), PoolSpec { capacity_bytes: ceph, allocated_bytes: ceph * rng.below(30) / 100 });
    }
    let state = *rng.weighted(&[
        (96, HostState::Ready),
        (2, HostState::Maintenance),
        (1, HostState::Offline),
        (1, HostState::Fenced),
    ]);
    HostSpec {
        id: format!("host-{i:05}"),
        site,
        firmware_profiles: firmware_of(&arch, rng),
        arch,
        state,
        zones,
        cpus,
        vcpu_overcommit_percent: *rng.pick(&[200, 300, 400]),
        memory_mib: memory_gib * 1024,
        pools,
    }
}

/// Tenant limits: most roomy, 5 % tight enough to refuse now and then.
pub fn tenant_limit(rng: &mut Rng) -> Resources {
    if rng.chance(5) {
        Resources { vcpus: 400 + rng.below(400), memory_mib: 1024 * (1024 + rng.below(2048)), disk_bytes: 60 * TIB }
    } else {
        Resources { vcpus: 100_000, memory_mib: 1024 * 1024 * 1024, disk_bytes: 100_000 * TIB }
    }
}

pub fn tenant(n: u64) -> String {
    format!("dept-{n:03}")
}

/// One VM's request; `groups` counts the anti-affinity groups handed out so far.
pub fn request(vm: String, rng: &mut Rng, groups: &mut u64) -> PlacementRequest {
    let arch = rng.weighted(&ARCHES).to_string();
    let firmware = match arch.as_str() {
        "x86_64" => rng.weighted(&[(40, "x86_64-bios"), (40, "x86_64-uefi"), (20, "x86_64-uefi-secureboot")]),
        "aarch64" => &"aarch64-uefi",
        _ => &"ppc64le-pseries",
    }
    .to_string();
    let (vcpus, memory_gib) = *rng.weighted(&[
        (30, (1u32, 2u64)),
        (35, (2, 4)),
        (20, (4, 8)),
        (9, (8, 16)),
        (5, (16, 64)),
        // Rarely fits: only on the largest hosts, and only while they are nearly empty.
        (1, (64, 768)),
    ]);
    let zone_site = rng.pick(&SITES);
    let site = rng.chance(60).then(|| zone_site.to_string());
    let mut zones = BTreeSet::from([zone(zone_site, rng.below(GENERAL_ZONES))]);
    if rng.chance(40) {
        zones.insert(zone(zone_site, rng.below(GENERAL_ZONES)));
    }
    if rng.chance(15) {
        zones.insert(zone(zone_site, GENERAL_ZONES + rng.below(RESTRICTED_ZONES)));
    }
    let anti_affinity_group = rng.chance(30).then(|| {
        // Groups of 2–5 members: a new group every ~3.5 members.
        if *groups == 0 || rng.chance(28) {
            *groups += 1;
        }
        format!("group-{:05}", *groups)
    });
    let volumes = (0..1 + rng.below(3))
        .map(|_| VolumeDemand {
            pool: rng.weighted(&[(60, "local"), (40, "ceph")]).to_string(),
            size_bytes: (20 + rng.below(180)) * GIB,
        })
        .collect();
    PlacementRequest {
        vm,
        tenant: tenant(rng.below(TENANTS)),
        vcpus,
        memory_mib: memory_gib * 1024,
        arch,
        firmware,
        site,
        zones,
        anti_affinity_group,
        volumes,
        exclude_hosts: BTreeSet::new(),
    }
}
