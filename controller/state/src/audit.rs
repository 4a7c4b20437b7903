//! The audit record every applied log entry leaves behind, accepted or refused.
//!
//! It exists so that operators can answer "who changed what, when, and was it refused" from the
//! replicated store alone. It must never influence the model: audit records are written, not read,
//! and they are not held in memory.

use hci_shared::codec;
use hci_shared::command::{Applied, Envelope};
use hci_shared::resources::AuditRecord;
use hci_shared::ApiError;

use crate::change::KvWrite;
use crate::keys::audit_key;

/// `ok` for an accepted command, else the refusal's error code.
fn outcome(result: &Result<Applied, ApiError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(refusal) => refusal.code.as_str().to_string(),
    }
}

/// The audit record of the entry at `index`.
pub(crate) fn record(index: u64, env: &Envelope, result: &Result<Applied, ApiError>) -> AuditRecord {
    let (action, target) = env.command.audit_label();
    AuditRecord {
        seq: index,
        time: env.at.clone(),
        caller: env.caller.clone(),
        action: action.to_string(),
        target,
        outcome: outcome(result),
    }
}

/// The write of that record. `None` only if the codec cannot encode plain strings and integers,
/// which would be a bug in the codec; the entry is still applied.
pub(crate) fn write(index: u64, env: &Envelope, result: &Result<Applied, ApiError>) -> Option<KvWrite> {
    let value = codec::encode(&record(index, env, result)).ok()?;
    Some(KvWrite::Put { key: audit_key(index), value })
}
