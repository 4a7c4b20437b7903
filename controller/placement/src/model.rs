//! The planner's vocabulary: what a host offers, what a VM asks for, what a tenant may hold.
//!
//! It exists so the controller can describe its hosts, tenants and VMs to the planner in plain data
//! (serde, so decisions can travel in Raft commands) without the planner knowing the controller's
//! tables. These types carry no allocation state; that lives in the `ClusterView`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Whether a host takes new VMs. Only `Ready` hosts do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Ready,
    Maintenance,
    Offline,
    Fenced,
}

/// One storage pool of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub capacity_bytes: u64,
    /// Bytes held by things the planner does not place (volumes of no placed VM, images): the
    /// baseline the placed VMs' volumes are added to.
    pub allocated_bytes: u64,
}

/// A host as its inventory and the operator describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    pub id: String,
    pub site: String,
    pub arch: String,
    pub state: HostState,
    /// Firmware profiles this host can run.
    pub firmware_profiles: BTreeSet<String>,
    /// Security zones whose network is reachable on this host.
    pub zones: BTreeSet<String>,
    /// Physical CPU threads.
    pub cpus: u32,
    /// vCPUs per CPU thread, in percent: 100 = 1:1, 400 = 4:1.
    pub vcpu_overcommit_percent: u32,
    pub memory_mib: u64,
    /// By pool name.
    pub pools: BTreeMap<String, PoolSpec>,
}

/// An amount of what tenants are charged for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_bytes: u64,
}

impl Resources {
    pub(crate) fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_sub(other.vcpus),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            disk_bytes: self.disk_bytes.saturating_sub(other.disk_bytes),
        }
    }

    pub(crate) fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_add(other.vcpus),
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
        }
    }
}

/// One volume the VM needs on its host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeDemand {
    pub pool: String,
    pub size_bytes: u64,
}

/// What one VM needs from a host. The same shape serves a first placement and a move (migration,
/// evacuation, HA restart): when `vm` is already placed in the view, a decision for it moves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    pub vm: String,
    pub tenant: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub arch: String,
    pub firmware: String,
    /// The site the VM must run in; any site when `None`.
    pub site: Option<String>,
    /// Zones the VM has NICs in; the host must reach every one.
    pub zones: BTreeSet<String>,
    /// No two members of a group run on one host.
    pub anti_affinity_group: Option<String>,
    pub volumes: Vec<VolumeDemand>,
    /// Hosts the VM must not go to (e.g. a migration's target must differ from these). A VM that is
    /// already placed never goes back to its current host.
    pub exclude_hosts: BTreeSet<String>,
}

impl PlacementRequest {
    /// What the tenant is charged for this VM: its vCPUs, memory and the bytes of its volumes.
    pub fn footprint(&self) -> Resources {
        let disk_bytes = self.volumes.iter().fold(0u64, |sum, volume| sum.saturating_add(volume.size_bytes));
        Resources { vcpus: u64::from(self.vcpus), memory_mib: self.memory_mib, disk_bytes }
    }
}

/// A tenant's ceiling, and what its placed VMs hold against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantAccount {
    pub limit: Resources,
    /// The sum of the footprints of the tenant's placed VMs (kept by `apply` and `release`).
    pub used: Resources,
}

/// A VM the view holds, on the host it was placed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedVm {
    pub host: String,
    pub request: PlacementRequest,
}
