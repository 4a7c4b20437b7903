//! One host in the view: its spec plus what the placed VMs hold on it.
//!
//! It exists so allocation is only ever changed by booking or unbooking a whole VM (see `apply`),
//! which keeps every sum exact and every undo an exact inverse. Readers get `&Host` only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::capacity::{load_ppm, vcpus_within_cap, within_cap};
use crate::model::{HostSpec, PlacementRequest};

/// A host with its allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub(crate) spec: HostSpec,
    /// The id, shared with the index's keys.
    pub(crate) key: Arc<str>,
    pub(crate) vcpus: u64,
    pub(crate) memory_mib: u64,
    /// Bytes of placed VMs' volumes by pool, on top of each pool's baseline.
    pub(crate) placed_pool_bytes: BTreeMap<String, u64>,
    /// Anti-affinity group → how many of its members run here.
    pub(crate) groups: BTreeMap<String, u32>,
    pub(crate) vms: BTreeSet<String>,
    /// `load_ppm` as of the last change (kept by `refresh_load`).
    pub(crate) load: u64,
}

impl Host {
    pub(crate) fn new(spec: HostSpec) -> Self {
        let mut host = Self {
            key: Arc::from(spec.id.as_str()),
            spec,
            vcpus: 0,
            memory_mib: 0,
            placed_pool_bytes: BTreeMap::new(),
            groups: BTreeMap::new(),
            vms: BTreeSet::new(),
            load: 0,
        };
        host.refresh_load();
        host
    }

    /// Recomputes the cached load; called after every change of spec or allocation.
    pub(crate) fn refresh_load(&mut self) {
        self.load = self.computed_load();
    }

    /// The load computed from the spec and allocation (what the cache must equal).
    pub(crate) fn computed_load(&self) -> u64 {
        let spec = &self.spec;
        load_ppm(self.vcpus, self.memory_mib, spec.cpus, spec.vcpu_overcommit_percent, spec.memory_mib)
    }

    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// vCPUs of the VMs placed here.
    pub fn allocated_vcpus(&self) -> u64 {
        self.vcpus
    }

    /// Memory of the VMs placed here.
    pub fn allocated_memory_mib(&self) -> u64 {
        self.memory_mib
    }

    /// The pool's baseline plus the placed VMs' volumes in it; `None` if the host has no such pool.
    pub fn pool_allocated_bytes(&self, pool: &str) -> Option<u64> {
        let baseline = self.spec.pools.get(pool)?.allocated_bytes;
        Some(baseline.saturating_add(self.placed_bytes(pool)))
    }

    fn placed_bytes(&self, pool: &str) -> u64 {
        self.placed_pool_bytes.get(pool).copied().unwrap_or(0)
    }

    /// Anti-affinity group → members placed here.
    pub fn anti_affinity_groups(&self) -> &BTreeMap<String, u32> {
        &self.groups
    }

    /// Ids of the VMs placed here.
    pub fn vms(&self) -> &BTreeSet<String> {
        &self.vms
    }

    /// The busiest dimension's utilisation (vCPU against overcommit, or memory), in parts per
    /// million of capacity: what spread minimises and pack maximises.
    pub fn load_ppm(&self) -> u64 {
        self.load
    }

    /// Whether every dimension (vCPU, memory, each pool's disk) is within `cap_percent`.
    pub fn within_cap(&self, cap_percent: u8) -> bool {
        let spec = &self.spec;
        vcpus_within_cap(self.vcpus, spec.cpus, spec.vcpu_overcommit_percent, cap_percent)
            && within_cap(self.memory_mib, spec.memory_mib, cap_percent)
            && spec.pools.iter().all(|(name, pool)| {
                within_cap(
                    pool.allocated_bytes.saturating_add(self.placed_bytes(name)),
                    pool.capacity_bytes,
                    cap_percent,
                )
            })
    }

    /// Adds a VM's vCPUs, memory, volumes and group membership.
    pub(crate) fn book(&mut self, request: &PlacementRequest) {
        self.vcpus = self.vcpus.saturating_add(u64::from(request.vcpus));
        self.memory_mib = self.memory_mib.saturating_add(request.memory_mib);
        // Only non-zero sums are kept, so a book/unbook pair leaves the maps exactly as they were.
        for volume in request.volumes.iter().filter(|volume| volume.size_bytes > 0) {
            let bytes = self.placed_pool_bytes.entry(volume.pool.clone()).or_insert(0);
            *bytes = bytes.saturating_add(volume.size_bytes);
        }
        if let Some(group) = &request.anti_affinity_group {
            *self.groups.entry(group.clone()).or_insert(0) += 1;
        }
        self.vms.insert(request.vm.clone());
    }

    /// Removes what `book` added for the same request (entries that drop to zero disappear).
    pub(crate) fn unbook(&mut self, request: &PlacementRequest) {
        self.vcpus = self.vcpus.saturating_sub(u64::from(request.vcpus));
        self.memory_mib = self.memory_mib.saturating_sub(request.memory_mib);
        for volume in &request.volumes {
            decrement(&mut self.placed_pool_bytes, &volume.pool, volume.size_bytes);
        }
        if let Some(group) = &request.anti_affinity_group {
            decrement(&mut self.groups, group, 1);
        }
        self.vms.remove(&request.vm);
    }
}

fn decrement<N>(map: &mut BTreeMap<String, N>, key: &str, by: N)
where
    N: Copy + Default + PartialEq + std::ops::Sub<Output = N> + PartialOrd,
{
    if let Some(value) = map.get_mut(key) {
        *value = if *value > by { *value - by } else { N::default() };
        if *value == N::default() {
            map.remove(key);
        }
    }
}
