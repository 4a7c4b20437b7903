//! An in-memory [`Firewall`] with the kernel's semantics for the generator's subset (batches all or
//! nothing, a missing element or set fails the batch), for fast tests of the [`Enforcer`] and, later,
//! of the reconciler. The table lives in an [`eval::TableState`], so packets can be run through it.
//!
//! Tests can tamper with the table as an operator would (`flush`, `delete`) and inject failures.
//! It must never be wired into the real agent binary.
//!
//! [`Enforcer`]: super::Enforcer

use std::sync::{Mutex, MutexGuard};

use nftables::schema::Nftables;

use super::eval::{self, TableState};
use super::model::Packet;
use super::{Firewall, FirewallError};

#[derive(Debug, Default)]
pub struct FakeFirewall {
    inner: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    table: TableState,
    fail_next_apply: bool,
    full_applies: usize,
    change_applies: usize,
}

impl FakeFirewall {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next apply fails without changing anything.
    pub fn fail_next_apply(&self) {
        self.state().fail_next_apply = true;
    }

    /// `nft delete table inet hci` by hand.
    pub fn delete_table(&self) {
        self.state().table = TableState::default();
    }

    /// Runs any batch against the table as someone else would (e.g. a flush written as deletes).
    pub fn tamper(&self, batch: &Nftables<'static>) -> Result<(), eval::EvalError> {
        self.state().table.apply(batch)
    }

    /// (full applies, incremental applies) so far.
    pub fn applies(&self) -> (usize, usize) {
        let state = self.state();
        (state.full_applies, state.change_applies)
    }

    pub fn evaluate(&self, packet: &Packet) -> Result<eval::Outcome, eval::EvalError> {
        self.state().table.evaluate(packet)
    }

    fn apply(&self, what: &'static str, batch: &Nftables<'static>) -> Result<(), FirewallError> {
        let mut state = self.state();
        if std::mem::take(&mut state.fail_next_apply) {
            return Err(FirewallError::Apply { what, message: "injected failure".into() });
        }
        state.table.apply(batch).map_err(|e| FirewallError::Apply { what, message: e.to_string() })
    }
}

impl Firewall for FakeFirewall {
    fn apply_full(&self, table: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("the full table", table)?;
        self.state().full_applies += 1;
        Ok(())
    }

    fn apply_changes(&self, changes: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("interface changes", changes)?;
        self.state().change_applies += 1;
        Ok(())
    }

    fn list(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        Ok(self.state().table.listing())
    }
}
