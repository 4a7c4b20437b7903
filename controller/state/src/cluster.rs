//! Bootstrap of a new site: its name and the administrator's token.
//!
//! It exists because the first write of a cluster decides who may make every later one. It must
//! never store a token itself, only its SHA-256, and never bootstrap a site twice.

use hci_shared::command::Applied;
use hci_shared::names::check_name;
use hci_shared::ApiError;
use serde::{Deserialize, Serialize};

use crate::apply::{Decision, Outcome};
use crate::change::Change;
use crate::model::Model;

/// What a bearer token may do. Only `Admin` exists today; roles are appended (never reordered) so
/// stored records keep decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// May do everything.
    Admin,
}

/// Who a token belongs to, stored under `token/<sha256 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The caller name written to the audit log, e.g. `admin`.
    pub name: String,
    pub role: Role,
}

/// The caller name of the bootstrap token.
pub const ADMIN_CALLER: &str = "admin";

/// A token hash as the log carries it: 64 lowercase hex digits.
pub(crate) fn check_sha256_hex(field: &str, hash: &str) -> Result<(), ApiError> {
    let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "must be 64 lowercase hexadecimal digits"))
    }
}

pub(crate) fn bootstrap(model: &Model, site: &str, admin_token_sha256: &str) -> Decision {
    if let Some(existing) = model.site() {
        return Err(ApiError::conflict(format!("the cluster is already bootstrapped as site '{existing}'")));
    }
    check_name(site).map_err(|why| ApiError::invalid("site", why))?;
    check_sha256_hex("admin_token_sha256", admin_token_sha256)?;
    let record = TokenRecord { name: ADMIN_CALLER.to_string(), role: Role::Admin };
    Ok(Outcome::new(
        Applied::Bootstrapped,
        vec![Change::Site(site.to_string()), Change::Token { sha256_hex: admin_token_sha256.to_string(), record }],
    ))
}
