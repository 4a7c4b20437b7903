//! `Model::apply`: one Raft log entry in, record changes plus one audit record out.
//!
//! It exists to make the state machine a pure function of the log: every handler decides on a
//! read-only model, and only a fully accepted, fully encoded decision is committed. It must never
//! read clocks, randomness or I/O, and never leave a refused command half-applied.

use hci_shared::command::{Applied, Command, CommandResponse, Envelope};
use hci_shared::resources::etag;
use hci_shared::ApiError;

use crate::change::{Change, KvWrite};
use crate::model::Model;
use crate::{audit, cluster, ha, hosts, join_tokens, moves, policies, tenants, vm_actions, vms, volumes, zones};

/// What a handler knows about the entry besides its command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The Raft log index: the revision of everything this entry changes.
    pub index: u64,
    /// The entry's time stamp: `created_at` of everything it creates.
    pub at: &'a str,
    /// Who asked (the envelope's caller), for records that keep it.
    pub caller: &'a str,
}

/// An accepted command: the answer for the caller and the record changes to commit.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub applied: Applied,
    pub changes: Vec<Change>,
}

impl Outcome {
    pub fn new(applied: Applied, changes: Vec<Change>) -> Self {
        Self { applied, changes }
    }
}

pub(crate) type Decision = Result<Outcome, ApiError>;

/// 412 when the caller's `If-Match` revision is not the current one.
pub(crate) fn check_if_match(if_match: Option<u64>, current: u64) -> Result<(), ApiError> {
    match if_match {
        Some(expected) if expected != current => Err(ApiError::precondition_failed(&etag(current))),
        _ => Ok(()),
    }
}

/// Longest server-assigned id accepted.
const MAX_ID_LEN: usize = 64;

/// Server-assigned ids become storage keys: 1–64 printable ASCII characters, no '/'.
pub(crate) fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::invalid(field, format!("an id must be 1-{MAX_ID_LEN} characters long")));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(ApiError::invalid(field, format!("'{id}' may contain only printable ASCII other than '/'")));
    }
    Ok(())
}

impl Model {
    /// Applies one log entry at Raft log `index`. Appends the persistent changes it caused, always
    /// ending with exactly one audit record, to `writes`. A refusal is returned as
    /// `CommandResponse(Err(..))` and leaves the model unchanged (only the audit record is written).
    pub fn apply(&mut self, index: u64, env: &Envelope, writes: &mut Vec<KvWrite>) -> CommandResponse {
        let ctx = Ctx { index, at: &env.at, caller: &env.caller };
        let result = match self.decide(&ctx, &env.command) {
            Ok(outcome) => self.commit_all(outcome, writes),
            Err(refusal) => Err(refusal),
        };
        writes.extend(audit::write(index, env, &result));
        CommandResponse(result)
    }

    /// Encodes every change first, so a codec failure commits nothing; then commits them in order.
    fn commit_all(&mut self, outcome: Outcome, writes: &mut Vec<KvWrite>) -> Result<Applied, ApiError> {
        let encoded: Result<Vec<KvWrite>, _> = outcome.changes.iter().map(Change::to_write).collect();
        let encoded = encoded.map_err(|e| ApiError::internal(format!("could not encode a record: {e}")))?;
        for change in outcome.changes {
            self.commit(change);
        }
        writes.extend(encoded);
        Ok(outcome.applied)
    }

    /// Decides on a command without changing anything.
    fn decide(&self, ctx: &Ctx<'_>, command: &Command) -> Decision {
        match command {
            Command::Bootstrap { site, admin_token_sha256 } => cluster::bootstrap(self, site, admin_token_sha256),
            Command::CreateTenant { id, spec } => tenants::create(self, ctx, id, spec),
            Command::UpdateTenant { name, update, if_match } => tenants::update(self, ctx, name, update, *if_match),
            Command::DeleteTenant { name, if_match } => tenants::delete(self, name, *if_match),
            Command::CreateZone { id, spec } => zones::create(self, ctx, id, spec),
            Command::DeleteZone { name, if_match } => zones::delete(self, ctx, name, *if_match),
            Command::CreateZonePolicy { id, spec } => policies::create(self, ctx, id, spec),
            Command::DeleteZonePolicy { id, if_match } => policies::delete(self, ctx, id, *if_match),
            Command::CreateVolume { id, spec } => volumes::create(self, ctx, id, spec),
            Command::DeleteVolume { id, if_match } => volumes::delete(self, ctx, id, *if_match),
            Command::ResizeVolume { id, size_gib, if_match, cap_percent } => {
                volumes::resize(self, ctx, id, *size_gib, *if_match, *cap_percent)
            }
            Command::SnapshotVolume { id, name } => volumes::snapshot(self, ctx, id, name),
            Command::CloneVolume { id, new_id, name, cap_percent } => {
                volumes::clone(self, ctx, id, new_id, name, *cap_percent)
            }
            Command::CreateVm { id, spec, placement } => vms::create(self, ctx, id, spec, placement.as_ref()),
            Command::DeleteVm { id, if_match } => vms::delete(self, ctx, id, *if_match),
            Command::SetVmPower { id, action, placement } => {
                vm_actions::set_power(self, ctx, id, *action, placement.as_ref())
            }
            Command::MigrateVm { id, planned } => moves::migrate(self, ctx, id, planned),
            Command::FinishMigration { id, from_host } => moves::finish(self, ctx, id, from_host),
            Command::SetHostMaintenance { id, enabled, moves } => {
                moves::set_maintenance(self, ctx, id, *enabled, moves)
            }
            Command::RestartVmsElsewhere { host, restarts, reason } => {
                ha::restart_elsewhere(self, ctx, host, restarts, reason)
            }
            Command::CreateJoinToken { sha256, site, expires_at } => {
                join_tokens::create_join_token(self, ctx, sha256, site, expires_at)
            }
            Command::JoinHost { auth, new_credential_sha256, spec } => {
                hosts::join(self, ctx, auth, new_credential_sha256.as_deref(), spec)
            }
            Command::SetHostLiveness { id, alive, reason } => hosts::set_liveness(self, ctx, id, *alive, reason),
        }
    }
}
