//! The replicated resources as the API shows them and the state machine stores them.
//!
//! Each resource has a server-assigned `id`, an operator-chosen `name`, and a `revision` (the Raft log
//! index that last changed it) from which its ETag is derived. These types must stay encodable by the
//! binary codec: no `flatten`, no untagged or internally tagged enums, no skipped fields.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A department's resource ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// What a tenant has allocated against its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// A government department: owns zones, volumes and VMs, bounded by its quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub description: String,
    pub quota: Quota,
    pub usage: Usage,
    pub created_at: String,
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// Ordinary zone: reachable as zone policies allow.
    Normal,
    /// Nothing in or out (DR drill bubbles); no policy may name it.
    Isolated,
}

/// Traffic between two NICs of one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntraZone {
    #[default]
    Allow,
    Deny,
}

/// A security zone: a network VMs attach to; traffic between zones needs a zone policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub kind: ZoneKind,
    /// IPv4 network in CIDR notation, e.g. `10.10.0.0/24`.
    pub cidr: String,
    /// VXLAN network identifier: the operator's, else the lowest free one from 10000 (assigned at
    /// create). `None` for a zone carried by a VLAN (and zones created before VNIs were assigned).
    pub vni: Option<u32>,
    /// 802.1Q VLAN carrying the zone between hosts (on each agent's `--vlan-trunk`) instead of a
    /// VXLAN; given by the operator at create, never assigned.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The MTU of the zone's network (its devices, the VMs' taps, DHCP option 26); `None`: the
    /// default for its carrier ([`crate::agent::DEFAULT_VXLAN_MTU`], [`crate::agent::DEFAULT_VLAN_MTU`]).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Whether two NICs of the zone may talk to each other (default allow).
    #[serde(default)]
    pub intra_zone: IntraZone,
    pub created_at: String,
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    Allow,
}

/// An allowed flow from one zone to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZonePolicy {
    pub id: String,
    pub name: String,
    pub from_zone: String,
    pub to_zone: String,
    pub protocol: Protocol,
    /// Normalised port list, e.g. `22,80,8000-8100`; empty for icmp/any.
    pub ports: String,
    pub action: PolicyAction,
    pub created_at: String,
    pub revision: u64,
}

/// A point-in-time copy of a volume, recorded in desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSnapshot {
    pub name: String,
    pub created_at: String,
}

/// How an image file is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    #[default]
    Qcow2,
    Raw,
}

/// A disk image a volume is made from: fetched by the host that makes the volume, refused unless its
/// SHA-256 matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// `file:///path` (on the host) or `http(s)://...`.
    pub url: String,
    /// Lowercase hex SHA-256 of the image file.
    pub sha256: String,
    #[serde(default)]
    pub format: DiskFormat,
}

/// A block volume in a storage pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub size_gib: u64,
    pub pool: String,
    /// The image this volume was made bootable from, if any.
    pub image: Option<String>,
    /// The volume this one was cloned from, if any.
    pub cloned_from: Option<String>,
    /// The VM the volume is attached to, if any.
    pub attached_to: Option<String>,
    /// The image the volume starts from (`VolumeCreate.source`), if any.
    pub source: Option<ImageSource>,
    /// The host holding the volume: bound when its first VM is placed (a VM's volumes are placed
    /// with it), kept after that VM is deleted; set by the controller.
    pub host: Option<String>,
    pub snapshots: Vec<VolumeSnapshot>,
    pub created_at: String,
    pub revision: u64,
}

/// One network interface of a VM; `mac` and `ip` are assigned by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Nic {
    pub zone: String,
    pub mac: String,
    pub ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    Stopped,
}

/// A virtual machine as desired by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vm {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub arch: String,
    pub firmware: String,
    pub volumes: Vec<String>,
    pub nics: Vec<Nic>,
    pub anti_affinity_group: Option<String>,
    /// The host the VM is placed on; set by the controller's placement.
    pub host: Option<String>,
    /// Desired power state.
    pub power: PowerState,
    /// Bumped by each reboot request so the agent can see a new one.
    pub reboot_count: u64,
    /// Restarted on another host when its host fails (after the host is fenced). Only a VM whose
    /// volumes are all on shared pools can be; one with a local volume is reported down instead.
    #[serde(default = "default_true")]
    pub ha: bool,
    /// Set while the VM moves from another host to `host` (operator migration or a drain).
    #[serde(default)]
    pub migration: Option<VmMove>,
    pub created_at: String,
    pub revision: u64,
}

fn default_true() -> bool {
    true
}

/// A move of a VM in progress: from `from_host` to the VM's `host`. Both hosts keep the VM's
/// capacity booked until the target reports it arrived; then the controller finishes the move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmMove {
    pub from_host: String,
    /// Live (the running VM moves with libvirt's migration) or cold (the stopped VM is defined on
    /// the target, its local volumes imported from the source's exports).
    pub live: bool,
    /// Why: `operator` (`POST /v1/vms/{id}/migrate`) or `maintenance` (a drain of `from_host`).
    pub reason: String,
    /// RFC 3339 time the move was committed.
    pub started_at: String,
    /// Local volumes a cold move copies: where the target downloads each from.
    pub imports: Vec<VolumeImport>,
}

/// A volume a cold move copies from the source host's export (verified by its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeImport {
    pub volume: String,
    /// `http(s)://` URL of the flattened export on the source agent.
    pub url: String,
    pub sha256: String,
    /// The export's name on the source agent (deleted there when the move finishes).
    pub export: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Ready,
    Maintenance,
    Offline,
    Fenced,
}

/// A hypervisor host, registered by its agent joining the cluster (`POST /v1/hosts/join`).
///
/// Only state *transitions* are replicated (ready ↔ offline, decided by the leader's leases;
/// maintenance and fenced, set by operators): heartbeats stay in the leader's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    /// The agent's `--host-id`.
    pub id: String,
    pub name: String,
    pub site: String,
    pub arch: String,
    pub state: HostState,
    /// Why the host is in its state (e.g. `no heartbeat within the 10000 ms lease`).
    pub state_reason: String,
    /// RFC 3339 time of the last state change.
    pub state_since: String,
    /// The agent's API (`http(s)://HOST:PORT`).
    pub agent_url: String,
    pub inventory: crate::hosts::HostInventory,
    pub joined_at: String,
    /// The generation of this host's desired state (the revision that last changed it).
    pub desired_generation: u64,
    pub revision: u64,
}

/// One accepted (or refused at commit time) mutation, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Monotonic sequence number (the Raft log index of the mutation).
    pub seq: u64,
    pub time: String,
    pub caller: String,
    pub action: String,
    pub target: String,
    /// `ok`, or the error code of a refusal decided at commit time.
    pub outcome: String,
}

/// The ETag of a resource revision, quoted as HTTP wants it.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}
