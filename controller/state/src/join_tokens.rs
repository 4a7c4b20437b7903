//! Join tokens and host credentials: what lets an agent join the cluster, kept only as SHA-256.
//!
//! It exists so that the single-use rule and the expiry are decided at commit time, in the same
//! command that registers the host: two agents racing with one token cannot both join. It must never
//! see a plain token (the handler hashes it) and never read a clock: "now" is the entry's time stamp.

use hci_shared::command::Applied;
use hci_shared::names::check_name;
use hci_shared::time::parse_rfc3339_ms;
use hci_shared::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::apply::{Ctx, Decision, Outcome};
use crate::change::Change;
use crate::cluster::check_sha256_hex;
use crate::model::Model;

/// Used and expired tokens are forgotten this long after their expiry (at the next token creation),
/// so the table stays small; until then a reuse is refused with a precise message.
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

/// A join token, stored under `jointoken/<sha256 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// The site the joining host must be in.
    pub site: String,
    pub created_at: String,
    pub created_by: String,
    /// RFC 3339 UTC; a join stamped at or after this is refused.
    pub expires_at: String,
    /// The host that used it, and when: a token works once.
    pub used_by: Option<String>,
    pub used_at: Option<String>,
}

/// A host's own credential (issued by its token join), stored under `hostcred/<sha256 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCredential {
    pub host_id: String,
    pub issued_at: String,
}

/// Milliseconds of an RFC 3339 stamp that the log carries; a stamp that does not parse is refused.
pub(crate) fn stamp_ms(field: &str, stamp: &str) -> Result<u64, ApiError> {
    parse_rfc3339_ms(stamp).ok_or_else(|| ApiError::invalid(field, format!("'{stamp}' is not an RFC 3339 UTC time")))
}

pub(crate) fn create_join_token(model: &Model, ctx: &Ctx<'_>, sha256: &str, site: &str, expires_at: &str) -> Decision {
    check_sha256_hex("sha256", sha256)?;
    check_name(site).map_err(|why| ApiError::invalid("site", why))?;
    let now = stamp_ms("at", ctx.at)?;
    let expires = stamp_ms("expires_at", expires_at)?;
    if expires <= now {
        return Err(ApiError::invalid("expires_at", "is not in the future"));
    }
    if model.join_tokens.contains_key(sha256) {
        return Err(ApiError::conflict("this join token already exists"));
    }
    let mut changes: Vec<Change> = model
        .join_tokens
        .iter()
        .filter(|(_, t)| match parse_rfc3339_ms(&t.expires_at) {
            Some(expiry) => expiry.saturating_add(FORGET_AFTER_MS) < now,
            None => true,
        })
        .map(|(hash, _)| Change::DeleteJoinToken(hash.clone()))
        .collect();
    let record = JoinTokenRecord {
        site: site.to_string(),
        created_at: ctx.at.to_string(),
        created_by: ctx.caller.to_string(),
        expires_at: expires_at.to_string(),
        used_by: None,
        used_at: None,
    };
    changes.push(Change::PutJoinToken { sha256_hex: sha256.to_string(), record });
    Ok(Outcome::new(Applied::JoinToken { expires_at: expires_at.to_string() }, changes))
}

/// The unused, unexpired token `sha256`, or the refusal saying why it cannot be used.
pub(crate) fn usable_token<'m>(model: &'m Model, ctx: &Ctx<'_>, sha256: &str) -> Result<&'m JoinTokenRecord, ApiError> {
    check_sha256_hex("auth.token.sha256", sha256)?;
    let token =
        model.join_tokens.get(sha256).ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown join token"))?;
    if let (Some(host), Some(at)) = (&token.used_by, &token.used_at) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this join token was already used by host '{host}' at {at}; a token works once: create a new one"),
        ));
    }
    if stamp_ms("at", ctx.at)? >= stamp_ms("expires_at", &token.expires_at)? {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this join token expired at {}; create a new one", token.expires_at),
        ));
    }
    Ok(token)
}

/// The host id a credential belongs to, or 401.
pub(crate) fn credential_host<'m>(model: &'m Model, sha256: &str) -> Result<&'m str, ApiError> {
    check_sha256_hex("auth.credential.sha256", sha256)?;
    model
        .host_credentials
        .get(sha256)
        .map(|c| c.host_id.as_str())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown host credential"))
}
