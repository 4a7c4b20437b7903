//! The typed commands of the Raft log and the typed result of applying one.
//!
//! A command carries everything its application needs (ids, timestamps, caller), decided before it
//! is proposed, so that `apply` depends only on the log: no clocks, no randomness, no I/O.

use serde::{Deserialize, Serialize};

use crate::api::*;
use crate::error::ApiError;
use crate::hosts::HostJoin;
use crate::resources::{Host, Tenant, Vm, Volume, VolumeImport, Zone, ZonePolicy};

/// What is written to the log: the command plus who asked and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// RFC 3339 time stamped by the member that accepted the request.
    pub at: String,
    /// Who asked: the token's name (`admin`, ...).
    pub caller: String,
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerAction {
    Start,
    Stop,
    Reboot,
}

/// What authorises a join: the SHA-256 (lowercase hex) of a single-use join token, or of the
/// credential the host received when it first joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinAuth {
    Token { sha256: String },
    Credential { sha256: String },
}

/// Where the leader decided a VM goes, with the cap it planned under. Applying the command checks
/// the decision again against the state at that point of the log (`hci_placement::verify`), so two
/// decisions planned against the same state can never both over-commit a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host: String,
    /// At most 80 (`hci_placement::MAX_CAP_PERCENT`); a higher value is refused when applied.
    pub cap_percent: u8,
}

/// Where the leader decided one VM moves, and how (checked again when applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMove {
    pub vm: String,
    pub placement: Placement,
    pub live: bool,
    /// Local volumes of a cold move, exported by the source beforehand.
    pub imports: Vec<VolumeImport>,
}

/// Where the leader decided one HA VM of a failed host restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRestart {
    pub vm: String,
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First write of a new cluster: the site name and the administrator token's SHA-256.
    Bootstrap {
        site: String,
        admin_token_sha256: String,
    },
    CreateTenant {
        id: String,
        spec: TenantCreate,
    },
    UpdateTenant {
        name: String,
        update: TenantUpdate,
        if_match: Option<u64>,
    },
    DeleteTenant {
        name: String,
        if_match: Option<u64>,
    },
    CreateZone {
        id: String,
        spec: ZoneCreate,
    },
    DeleteZone {
        name: String,
        if_match: Option<u64>,
    },
    /// `spec.ports` is already canonical.
    CreateZonePolicy {
        id: String,
        spec: ZonePolicyCreate,
    },
    DeleteZonePolicy {
        id: String,
        if_match: Option<u64>,
    },
    CreateVolume {
        id: String,
        spec: VolumeCreate,
    },
    DeleteVolume {
        id: String,
        if_match: Option<u64>,
    },
    /// Refused past `cap_percent` of the volume's pool on its host (the leader's cap; at most 80).
    ResizeVolume {
        id: String,
        size_gib: u64,
        if_match: Option<u64>,
        cap_percent: u8,
    },
    SnapshotVolume {
        id: String,
        name: String,
    },
    /// The copy is made next to its source, refused past `cap_percent` of that pool.
    CloneVolume {
        id: String,
        new_id: String,
        name: String,
        cap_percent: u8,
    },
    /// `placement` is `None` only when the site had no host to plan against: the VM is then kept
    /// unplaced and placed by its next start.
    CreateVm {
        id: String,
        spec: VmCreate,
        placement: Option<Placement>,
    },
    DeleteVm {
        id: String,
        if_match: Option<u64>,
    },
    /// A start of an unplaced VM carries its placement.
    SetVmPower {
        id: String,
        action: PowerAction,
        placement: Option<Placement>,
    },
    /// A planned move of one VM (operator migration).
    MigrateVm {
        id: String,
        planned: PlannedMove,
    },
    /// The target reported the moved VM there: the source lets go of it.
    FinishMigration {
        id: String,
        from_host: String,
    },
    /// Drain a host (every VM moves as planned, all or none) or return it to service.
    SetHostMaintenance {
        id: String,
        enabled: bool,
        moves: Vec<PlannedMove>,
    },
    /// HA: the leader has waited out the failed host's lease and margin (its agent has fenced
    /// itself by then); the host becomes `fenced` and its HA VMs restart where planned. Applied only
    /// while the host is still offline.
    RestartVmsElsewhere {
        host: String,
        restarts: Vec<PlannedRestart>,
        reason: String,
    },
    /// A single-use join token, kept only as its SHA-256; `expires_at` is RFC 3339 UTC.
    CreateJoinToken {
        sha256: String,
        site: String,
        expires_at: String,
    },
    /// An agent joins (or re-joins): consumes the join token, or proves the host's credential, and
    /// registers or updates the host. A token join carries the SHA-256 of the new host credential.
    JoinHost {
        auth: JoinAuth,
        new_credential_sha256: Option<String>,
        spec: HostJoin,
    },
    /// The leader's lease verdict: a ready host went silent (`alive: false`) or an offline host is
    /// heard from again (`alive: true`). Hosts in maintenance or fenced are left as they are.
    SetHostLiveness {
        id: String,
        alive: bool,
        reason: String,
    },
}

impl Command {
    /// The audit log's `action` and `target` for this command.
    pub fn audit_label(&self) -> (&'static str, String) {
        match self {
            Command::Bootstrap { site, .. } => ("cluster.bootstrap", site.clone()),
            Command::CreateTenant { spec, .. } => ("tenant.create", spec.name.clone()),
            Command::UpdateTenant { name, .. } => ("tenant.update", name.clone()),
            Command::DeleteTenant { name, .. } => ("tenant.delete", name.clone()),
            Command::CreateZone { spec, .. } => ("zone.create", spec.name.clone()),
            Command::DeleteZone { name, .. } => ("zone.delete", name.clone()),
            Command::CreateZonePolicy { id, .. } => ("zone_policy.create", id.clone()),
            Command::DeleteZonePolicy { id, .. } => ("zone_policy.delete", id.clone()),
            Command::CreateVolume { id, .. } => ("volume.create", id.clone()),
            Command::DeleteVolume { id, .. } => ("volume.delete", id.clone()),
            Command::ResizeVolume { id, .. } => ("volume.resize", id.clone()),
            Command::SnapshotVolume { id, .. } => ("volume.snapshot", id.clone()),
            Command::CloneVolume { id, .. } => ("volume.clone", id.clone()),
            Command::CreateVm { id, .. } => ("vm.create", id.clone()),
            Command::DeleteVm { id, .. } => ("vm.delete", id.clone()),
            Command::SetVmPower { id, action, .. } => match action {
                PowerAction::Start => ("vm.start", id.clone()),
                PowerAction::Stop => ("vm.stop", id.clone()),
                PowerAction::Reboot => ("vm.reboot", id.clone()),
            },
            Command::MigrateVm { id, .. } => ("vm.migrate", id.clone()),
            Command::FinishMigration { id, .. } => ("vm.migrate.finish", id.clone()),
            Command::SetHostMaintenance { id, enabled: true, .. } => ("host.maintenance.enter", id.clone()),
            Command::SetHostMaintenance { id, enabled: false, .. } => ("host.maintenance.exit", id.clone()),
            Command::RestartVmsElsewhere { host, .. } => ("host.fence_and_restart", host.clone()),
            Command::CreateJoinToken { sha256, .. } => {
                ("host.join_token.create", format!("join token {}", sha256.get(..12).unwrap_or(sha256)))
            }
            Command::JoinHost { spec, .. } => ("host.join", spec.host_id.clone()),
            Command::SetHostLiveness { id, alive: true, .. } => ("host.ready", id.clone()),
            Command::SetHostLiveness { id, alive: false, .. } => ("host.offline", id.clone()),
        }
    }
}

/// What an accepted command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Bootstrapped,
    Tenant(Tenant),
    Zone(Zone),
    ZonePolicy(ZonePolicy),
    Volume(Volume),
    Vm(Vm),
    Host(Host),
    /// A join token was stored; it expires at this RFC 3339 time.
    JoinToken {
        expires_at: String,
    },
    Deleted,
}

/// The state machine's answer to one log entry. Refusals decided at commit time are values, not
/// storage errors: the entry is applied (as a no-op) and the caller gets the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse(pub Result<Applied, ApiError>);

/// One Raft log entry: the commands of concurrent requests grouped so that one fsync and one
/// replication round serve them all. Applied in order; each gets its own response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch(pub Vec<Envelope>);

/// The responses to a [`CommandBatch`], position by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse(pub Vec<CommandResponse>);
