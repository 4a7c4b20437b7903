//! Security zones on the host: the agent's one nftables table (`inet hci`), built from the zones,
//! zone policies and VM interfaces this host enforces (issue #5).
//!
//! - [`model`]: the firewall's input and the model-level oracle of what may pass;
//! - [`ruleset`]: the pure generator (model → `nftables` JSON batch; one VM's change → a few
//!   element edits);
//! - [`eval`]: an interpreter of the generated objects, for property tests and the fake;
//! - [`Firewall`]: the narrow interface to the kernel, with [`nft::NftFirewall`] (JSON batches
//!   through a long-lived [`libnft`] session, or `nft -j -f -`) and [`fake::FakeFirewall`] of the
//!   same shape;
//! - [`enforcer`]: keeps the kernel's table equal to the model: full or incremental applies, drift
//!   detection and restore.
//!
//! It must never touch a table other than `inet hci`, and never leave the host without its table
//! once applied: every change is one kernel transaction.

pub mod enforcer;
pub mod eval;
pub mod fake;
pub mod libnft;
pub mod live;
pub mod model;
pub mod nft;
pub mod ruleset;

use nftables::schema::Nftables;

pub use enforcer::{DriftEvent, Enforcer, UpdateKind};
pub use model::FirewallModel;
pub use ruleset::InterfaceChange;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("the firewall model is invalid: {0}")]
    Model(#[from] model::ModelError),
    #[error("applying {what} to table inet hci: {message}")]
    Apply { what: &'static str, message: String },
    #[error("listing table inet hci: {0}")]
    List(String),
    #[error("table inet hci as listed right after a full apply does not match what was applied: {0}")]
    Unverified(String),
}

/// What the agent asks of the kernel's firewall. Calls block (they wait for nftables); callers run them off
/// the async runtime.
pub trait Firewall: Send + Sync {
    /// Replaces the agent's table with `table` (a [`ruleset::full_table`] batch) in one transaction.
    fn apply_full(&self, table: &Nftables<'static>) -> Result<(), FirewallError>;
    /// Applies a small batch of element edits ([`ruleset::interface_changes`]) in one transaction.
    fn apply_changes(&self, changes: &Nftables<'static>) -> Result<(), FirewallError>;
    /// The table as the kernel lists it (`nft -j list table inet hci`), `None` when there is none.
    fn list(&self) -> Result<Option<serde_json::Value>, FirewallError>;
}
