//! The host side of the operator API: join tokens, an agent joining the cluster, its heartbeats and
//! the per-host desired-state feed (`/v1/hosts/...`).
//!
//! It exists so the controller (which serves these endpoints) and the agent (which calls them) share
//! one definition of every body. The agent's own API (`/agent/v1`) lives in [`crate::agent`]; the
//! replicated host record is [`crate::resources::Host`]. Join bodies are embedded in Raft commands,
//! so they stay codec-safe (no flatten, no untagged enums, no skipped fields).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::{HostDesired, HostInfo, HostReport, PoolInfo, VmRunState};
use crate::resources::{Host, HostState, PowerState, Vm};

/// Default lifetime of a join token.
pub const DEFAULT_JOIN_TOKEN_TTL_SECONDS: u64 = 3600;
/// Longest lifetime of a join token (7 days).
pub const MAX_JOIN_TOKEN_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// Default and longest wait of a desired-state long poll.
pub const DEFAULT_DESIRED_WAIT_MS: u64 = 25_000;
pub const MAX_DESIRED_WAIT_MS: u64 = 60_000;

/// `POST /v1/hosts/join-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreate {
    /// The site the joining host must say it is in (default: this cluster's site).
    #[serde(default)]
    pub site: Option<String>,
    /// Lifetime in seconds (1-604800, default 3600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The answer to `POST /v1/hosts/join-tokens`. The token is shown once; only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenCreated {
    /// Give it to one agent (`--token-file`); it works once, until `expires_at`.
    pub token: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    pub site: String,
}

/// One storage pool as a host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPool {
    pub name: String,
    /// `dir-qcow2`, `lvm-thin` or `rbd`.
    pub backend: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub available_bytes: u64,
}

/// What a host offers: reported when it joins (and again at every re-join).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostInventory {
    pub cpus: u32,
    pub memory_mib: u64,
    /// `kvm` or `tcg`.
    pub accelerator: String,
    pub libvirt_version: String,
    pub pools: Vec<HostPool>,
    /// Firmware profiles this host can run (checked against libvirt's domain capabilities).
    pub firmware_profiles: Vec<String>,
    /// The IPv4 address the host's zone VXLAN devices send from (`hci-agent --underlay-address`).
    #[serde(default)]
    pub underlay_ip: Option<String>,
    /// The agent builds zone networks and the firewall. When false (an agent that leaves the host's
    /// networking alone) placement assumes the host carries every zone.
    #[serde(default)]
    pub zone_networks: bool,
    /// The device VLAN zones are stacked on (`hci-agent --vlan-trunk`): the host carries VLAN zones.
    #[serde(default)]
    pub vlan_trunk: Option<String>,
}

/// `POST /v1/hosts/join`, authenticated by a join token (first join) or by the host's own
/// credential (a restart: updates the inventory, needs no new token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostJoin {
    /// The agent's `--host-id` (a DNS label, unique in the site).
    pub host_id: String,
    pub site: String,
    pub arch: String,
    /// Where the controller and other agents reach this agent's API (`http(s)://HOST:PORT`).
    pub agent_url: String,
    pub inventory: HostInventory,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostJoined {
    pub host: Host,
    /// The host's own credential, present only when it was issued by this join (a token join): the
    /// agent keeps it (its data dir, mode 0600) and sends it as its bearer token from then on.
    pub credential: Option<String>,
    /// Heartbeats must arrive within this many milliseconds or the host goes offline.
    pub lease_ms: u64,
    /// How often the controller wants heartbeats.
    pub heartbeat_ms: u64,
}

/// One pool's usage in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolUsage {
    pub name: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub available_bytes: u64,
}

/// What a host is using, as of its last reconcile pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostUsage {
    /// VMs in the host's desired state.
    pub vms_desired: u32,
    /// VMs libvirt reports running (or paused) on the host.
    pub vms_running: u32,
    /// vCPUs and memory of the running VMs.
    pub vcpus_allocated: u64,
    pub memory_mib_allocated: u64,
    pub pools: Vec<PoolUsage>,
}

/// `POST /v1/hosts/{id}/heartbeat`: the agent is alive, with what it uses and where it is in the
/// desired-state feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostHeartbeat {
    pub usage: HostUsage,
    /// The desired generation the agent holds (persisted).
    pub desired_generation: u64,
    /// The generation its last complete reconcile pass converged to.
    #[serde(default)]
    pub converged_generation: Option<u64>,
    /// Each VM's actual state and last error, from the agent's last report.
    #[serde(default)]
    pub vms: Vec<VmStatusReport>,
}

/// What a host's agent last reported about one of its VMs (a compact `VmReport`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmStatusReport {
    pub id: String,
    pub state: ActualVmState,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What libvirt says a VM is doing (the agent's `VmRunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActualVmState {
    Running,
    Stopped,
    Paused,
    ShuttingDown,
    Crashed,
    /// Desired but not (yet) defined on the host.
    Missing,
    /// Left the host by live migration.
    Departed,
    /// Set by the controller, never reported by an agent: the VM's host is offline or fenced and
    /// the VM is not running anywhere else (`VmStatus.down_reason` says why).
    HostDown,
}

impl From<VmRunState> for ActualVmState {
    fn from(state: VmRunState) -> Self {
        match state {
            VmRunState::Running => ActualVmState::Running,
            VmRunState::Stopped => ActualVmState::Stopped,
            VmRunState::Paused => ActualVmState::Paused,
            VmRunState::ShuttingDown => ActualVmState::ShuttingDown,
            VmRunState::Crashed => ActualVmState::Crashed,
            VmRunState::Missing => ActualVmState::Missing,
            VmRunState::Departed => ActualVmState::Departed,
        }
    }
}

impl VmStatusReport {
    /// The compact summaries of a host report's VMs.
    pub fn from_report(report: &HostReport) -> Vec<Self> {
        report
            .vms
            .iter()
            .map(|vm| VmStatusReport { id: vm.id.clone(), state: vm.state.into(), last_error: vm.last_error.clone() })
            .collect()
    }
}

/// Where a VM is and what it is doing: `GET /v1/vms/{id}` adds this to the VM record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmStatus {
    /// The host it is placed on (`null` while unplaced).
    pub host: Option<String>,
    pub desired_power: PowerState,
    /// What the host's agent last reported; `null` when the answering leader has not heard about
    /// this VM since it became leader (and in `?stale=true` answers of followers).
    pub actual: Option<ActualVmState>,
    pub last_error: Option<String>,
    /// Milliseconds since that report reached the leader.
    pub reported_age_ms: Option<u64>,
    /// Set (with `actual: host_down`) while the VM's host is offline or fenced: why the VM is down,
    /// e.g. `host h1 is fenced; not restarted elsewhere: its volumes are only on host h1 (vol-1)`,
    /// `... not HA`, or, on an offline host, that HA restarts it once the host is fenced.
    #[serde(default)]
    pub down_reason: Option<String>,
}

/// A VM as `GET /v1/vms/{id}` shows it: the replicated record plus its reported status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmView {
    #[serde(flatten)]
    pub vm: Vm,
    pub status: VmStatus,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    /// The host's state after this heartbeat (an offline host is ready again).
    pub state: HostState,
    /// The newest desired generation the controller has for this host.
    pub desired_generation: u64,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
}

/// What the leader last heard from a host. Not replicated: held in the leader's memory, started
/// afresh by every new leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatStatus {
    /// Milliseconds since the last heartbeat reached the leader.
    pub age_ms: u64,
    /// The controller member holding this lease (the leader that answered).
    pub observed_by: u64,
    pub usage: HostUsage,
    pub desired_generation: u64,
    pub converged_generation: Option<u64>,
}

/// A host as `GET /v1/hosts` shows it: the replicated record plus the leader's view of its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    #[serde(flatten)]
    pub host: Host,
    /// Absent when no heartbeat reached the answering member since it became leader (and in a
    /// `?stale=true` answer from a follower, which holds no leases).
    pub heartbeat: Option<HeartbeatStatus>,
    /// What placement has put on the host (from the replicated state).
    #[serde(default)]
    pub allocation: HostAllocation,
}

/// What the VMs placed on a host hold there, as placement counts it against the cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostAllocation {
    /// VMs booked here: placed here, or leaving (a move in progress).
    pub vms: u64,
    pub vcpus: u64,
    pub memory_mib: u64,
    /// Per pool: the placed VMs' volumes plus the volumes left on the host by no VM.
    pub pools: Vec<PoolAllocation>,
    /// VMs moving away from this host (a drain's progress: it is empty when `vms` is 0).
    #[serde(default)]
    pub leaving: u64,
    /// VMs moving onto this host.
    #[serde(default)]
    pub arriving: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolAllocation {
    pub name: String,
    pub allocated_bytes: u64,
}

/// `GET /v1/hosts/{id}/desired?after=G&wait_ms=W`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DesiredParams {
    /// Answer as soon as the desired generation is greater than this (default 0: at once).
    #[serde(default)]
    pub after: u64,
    /// How long to wait for a newer generation before answering 204 (0-60000, default 25000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Accepted for symmetry with other reads; the feed is always served by the member asked.
    #[serde(default)]
    pub stale: bool,
}

/// The desired state of a host with nothing placed on it yet, at `generation`.
pub fn empty_desired(host_id: &str, generation: u64) -> HostDesired {
    HostDesired {
        host_id: host_id.to_string(),
        generation,
        volumes: Vec::new(),
        vms: Vec::new(),
        retired_volumes: Vec::new(),
        isolation: None,
        network: None,
    }
}

impl From<&PoolInfo> for HostPool {
    fn from(p: &PoolInfo) -> Self {
        Self {
            name: p.name.clone(),
            backend: p.backend.clone(),
            capacity_bytes: p.capacity_bytes,
            allocation_bytes: p.allocation_bytes,
            available_bytes: p.available_bytes,
        }
    }
}

impl HostJoin {
    /// The join body of an agent whose inventory is `info`, reachable at `agent_url`.
    pub fn from_info(info: &HostInfo, agent_url: &str) -> Self {
        Self {
            host_id: info.host_id.clone(),
            site: info.site.clone(),
            arch: info.arch.clone(),
            agent_url: agent_url.to_string(),
            inventory: HostInventory {
                cpus: info.cpus,
                memory_mib: info.memory_mib,
                accelerator: info.accelerator.clone(),
                libvirt_version: info.libvirt_version.clone(),
                pools: info.pools.iter().map(HostPool::from).collect(),
                firmware_profiles: info.firmware_profiles.clone(),
                underlay_ip: info.underlay_ip.clone(),
                zone_networks: info.zone_networks,
                vlan_trunk: info.vlan_trunk.clone(),
            },
        }
    }
}

impl HostUsage {
    /// Usage from the agent's last report, the VM sizes of its desired state and its pools.
    pub fn from_report(report: Option<&HostReport>, desired: Option<&HostDesired>, pools: &[PoolInfo]) -> Self {
        let mut usage = HostUsage {
            vms_desired: desired.map_or(0, |d| u32::try_from(d.vms.len()).unwrap_or(u32::MAX)),
            pools: pools
                .iter()
                .map(|p| PoolUsage {
                    name: p.name.clone(),
                    capacity_bytes: p.capacity_bytes,
                    allocation_bytes: p.allocation_bytes,
                    available_bytes: p.available_bytes,
                })
                .collect(),
            ..HostUsage::default()
        };
        let Some(report) = report else { return usage };
        for vm in &report.vms {
            if !matches!(vm.state, VmRunState::Running | VmRunState::Paused) {
                continue;
            }
            usage.vms_running = usage.vms_running.saturating_add(1);
            if let Some(spec) = desired.and_then(|d| d.vms.iter().find(|v| v.id == vm.id)) {
                usage.vcpus_allocated = usage.vcpus_allocated.saturating_add(u64::from(spec.vcpus));
                usage.memory_mib_allocated = usage.memory_mib_allocated.saturating_add(spec.memory_mib);
            }
        }
        usage
    }
}
