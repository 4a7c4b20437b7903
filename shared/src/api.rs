//! Request and response bodies of the operator HTTP API (see `docs/INTERFACE.md`).
//!
//! Requests reject unknown fields so a typo is a 400 naming it rather than a silently ignored
//! setting. Request types are also embedded in Raft commands, so they stay codec-safe.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::resources::{ImageSource, IntraZone, PolicyAction, PowerState, Protocol, Quota, ZoneKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub quota: Quota,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub quota: Option<Quota>,
}

fn default_zone_kind() -> ZoneKind {
    ZoneKind::Normal
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneCreate {
    pub name: String,
    pub tenant: String,
    #[serde(default = "default_zone_kind")]
    pub kind: ZoneKind,
    pub cidr: String,
    /// Default: the lowest VNI from 10000 that no zone uses (unless `vlan` is given).
    #[serde(default)]
    pub vni: Option<u32>,
    /// Carry the zone between hosts on this 802.1Q VLAN (1-4094) instead of a VXLAN.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// MTU of the zone's network, 576-9000 (default: 1450 on a VXLAN, which leaves room for its 50
    /// bytes of headers on a 1500-byte underlay; 1500 on a VLAN).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// `allow` (default) or `deny` traffic between the zone's own NICs.
    #[serde(default)]
    pub intra_zone: IntraZone,
}

fn default_action() -> PolicyAction {
    PolicyAction::Allow
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZonePolicyCreate {
    #[serde(default)]
    pub name: Option<String>,
    pub from_zone: String,
    pub to_zone: String,
    pub protocol: Protocol,
    /// `22,80,8000-8100`; must be empty for `icmp` and `any`.
    #[serde(default)]
    pub ports: String,
    #[serde(default = "default_action")]
    pub action: PolicyAction,
}

fn default_pool() -> String {
    "default".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    pub name: String,
    pub tenant: String,
    pub size_gib: u64,
    #[serde(default = "default_pool")]
    pub pool: String,
    #[serde(default)]
    pub image: Option<String>,
    /// A bootable copy of the image at this URL (verified against its SHA-256 by the host that
    /// makes the volume), grown to `size_gib`; instead of `image` while there is no image catalogue.
    #[serde(default)]
    pub source: Option<ImageSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeResize {
    pub size_gib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSnapshotCreate {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeClone {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicRequest {
    pub zone: String,
}

fn default_arch() -> String {
    "x86_64".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmCreate {
    pub name: String,
    pub tenant: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Firmware profile; defaults to the architecture's plain profile (`x86_64-bios`, ...).
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub nics: Vec<NicRequest>,
    #[serde(default)]
    pub anti_affinity_group: Option<String>,
    /// Desired power at creation (default `running`); a `stopped` VM is placed (it holds its host's
    /// capacity) but not started.
    #[serde(default)]
    pub power: Option<PowerState>,
    /// Restart it elsewhere when its host fails (default `true`; possible only when all its
    /// volumes are on shared pools).
    #[serde(default)]
    pub ha: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmMigrate {
    /// The target host; the planner chooses one (within the cap) when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// `true`: move the running VM live; `false`: move the stopped VM cold. Default: live when
    /// it is running, cold when it is stopped.
    #[serde(default)]
    pub live: Option<bool>,
}

/// `POST /v1/hosts/{id}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostMaintenance {
    /// `true` drains the host (every VM moves elsewhere within the cap, or nothing is done);
    /// `false` returns it to service without moving VMs back.
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberAdd {
    pub id: u64,
    /// `HOST:PORT` the new member listens on.
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    /// `leader`, `follower` (voter) or `learner`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    pub site: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub members: Vec<Member>,
    /// The member that answered.
    pub this_id: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
}

/// Every list endpoint answers `{"items": [...]}` so paging can be added without breaking clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}
