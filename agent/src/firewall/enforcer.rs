//! Keeps the kernel's table equal to the firewall model: a full atomic apply when zones, policies or
//! fabric devices change (or nothing was applied yet), element edits when only VM interfaces do, and
//! a drift check that restores the table with a full apply and reports what it found.
//!
//! It exists so that "what to apply" and "is the table still ours" live in one place above the
//! narrow [`Firewall`]; it must never apply an invalid model (the table stays as it was).

use std::sync::Arc;

use serde_json::Value;

use super::live::{self, desired_elements};
use super::model::{FirewallModel, Interface};
use super::ruleset::{full_table, interface_changes, InterfaceChange};
use super::{Firewall, FirewallError};

/// What [`Enforcer::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Unchanged,
    /// The whole table, in one transaction.
    Full,
    /// This many interface changes, as element edits in one transaction.
    Interfaces(usize),
}

/// The table was not what the agent applied; it has been restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEvent {
    pub difference: String,
}

struct Applied {
    model: FirewallModel,
    /// The kernel's rendering of the table right after the last full apply, without elements.
    reference: Vec<Value>,
}

pub struct Enforcer {
    firewall: Arc<dyn Firewall>,
    applied: Option<Applied>,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer").field("applied", &self.applied.as_ref().map(|a| a.model.interfaces.len())).finish()
    }
}

/// Interface changes from `old` to `new` (same zones, policies and fabric): removals first, and a
/// changed interface is removed and added again.
pub fn interface_diff(old: &FirewallModel, new: &FirewallModel) -> Vec<InterfaceChange> {
    let (before, after) = (old.interfaces_by_name(), new.interfaces_by_name());
    let removed = before.iter().filter(|(name, iface)| after.get(*name) != Some(*iface)).map(|(_, i)| *i);
    let added = after.iter().filter(|(name, iface)| before.get(*name) != Some(*iface)).map(|(_, i)| *i);
    let removed: Vec<InterfaceChange> = removed.cloned().map(InterfaceChange::Remove).collect();
    removed.into_iter().chain(added.cloned().map(InterfaceChange::Add)).collect()
}

fn same_structure(a: &FirewallModel, b: &FirewallModel) -> bool {
    a.zones == b.zones && a.policies == b.policies && a.fabric_ifaces == b.fabric_ifaces
}

impl Enforcer {
    pub fn new(firewall: Arc<dyn Firewall>) -> Self {
        Enforcer { firewall, applied: None }
    }

    /// The model last applied.
    pub fn model(&self) -> Option<&FirewallModel> {
        self.applied.as_ref().map(|a| &a.model)
    }

    /// Brings the table to `model`. An incremental change that the kernel refuses (someone deleted
    /// a set or the table) falls back to a full apply.
    pub fn apply(&mut self, model: FirewallModel) -> Result<UpdateKind, FirewallError> {
        model.validate()?;
        let Some(applied) = &self.applied else {
            self.apply_full(model)?;
            return Ok(UpdateKind::Full);
        };
        if applied.model == model {
            return Ok(UpdateKind::Unchanged);
        }
        if !same_structure(&applied.model, &model) {
            self.apply_full(model)?;
            return Ok(UpdateKind::Full);
        }
        let changes = interface_diff(&applied.model, &model);
        match self.firewall.apply_changes(&interface_changes(&changes)) {
            Ok(()) => {
                if let Some(applied) = self.applied.as_mut() {
                    applied.model = model;
                }
                Ok(UpdateKind::Interfaces(changes.len()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "incremental firewall change refused; applying the full table");
                self.apply_full(model)?;
                Ok(UpdateKind::Full)
            }
        }
    }

    /// Adds or removes single interfaces (the reconciler's path for one VM): one small transaction.
    pub fn change_interfaces(&mut self, changes: &[InterfaceChange]) -> Result<UpdateKind, FirewallError> {
        let Some(applied) = &self.applied else {
            return Err(FirewallError::Unverified("no table applied yet".into()));
        };
        let mut model = applied.model.clone();
        for change in changes {
            match change {
                InterfaceChange::Add(i) => {
                    model.interfaces.retain(|x| x.ifname != i.ifname);
                    model.interfaces.push(i.clone());
                }
                InterfaceChange::Remove(i) => model.interfaces.retain(|x: &Interface| x != i),
            }
        }
        self.apply(model)
    }

    fn apply_full(&mut self, model: FirewallModel) -> Result<(), FirewallError> {
        let batch = full_table(&model);
        self.firewall.apply_full(&batch)?;
        let listing = self.firewall.list()?.ok_or_else(|| FirewallError::Unverified("the table is missing".into()))?;
        let shape = live::shape(&listing).map_err(FirewallError::List)?;
        let applied: Vec<Value> = serde_json::to_value(&batch)
            .ok()
            .and_then(|v| v.get("nftables").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        // The reference is what the kernel shows; it must hold exactly what the batch built (someone
        // editing the table between the apply and the listing is caught here, not trusted).
        let (want, have) = (live::outline(&applied), live::outline(&shape.objects));
        if want != have {
            return Err(FirewallError::Unverified(format!("want {want:?}, have {have:?}")));
        }
        if let Some(difference) = live::difference(&shape, &shape.objects, &desired_elements(&model)) {
            return Err(FirewallError::Unverified(difference));
        }
        self.applied = Some(Applied { model, reference: shape.objects });
        Ok(())
    }

    /// Compares the live table with what was applied; on any difference restores it with a full
    /// apply and returns what differed.
    pub fn check_drift(&mut self) -> Result<Option<DriftEvent>, FirewallError> {
        let Some(applied) = &self.applied else { return Ok(None) };
        let difference = match self.firewall.list()? {
            None => Some("table inet hci is missing".to_string()),
            Some(listing) => {
                let shape = live::shape(&listing).map_err(FirewallError::List)?;
                live::difference(&shape, &applied.reference, &desired_elements(&applied.model))
            }
        };
        let Some(difference) = difference else { return Ok(None) };
        tracing::warn!(%difference, "firewall table inet hci drifted; restoring it");
        let model = applied.model.clone();
        self.apply_full(model)?;
        Ok(Some(DriftEvent { difference }))
    }
}
