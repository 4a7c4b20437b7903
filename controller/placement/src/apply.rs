//! Committing decisions to the view: booking a VM on its host and its tenant, and releasing it.
//!
//! It exists so the view follows the committed decisions incrementally. `apply` does bookkeeping,
//! not judgement: it refuses only what cannot be booked (unknown host or tenant, a missing pool, a
//! decision planned against another position of the VM); re-checking the cap and quota at commit
//! time is `verify`'s job. `release` is the exact inverse of the booking.

use crate::decision::Decision;
use crate::error::ViewError;
use crate::model::PlacedVm;
use crate::view::ClusterView;

impl ClusterView {
    /// Books the decided VM on its host (moving it off its previous host for a move). On error the
    /// view is unchanged.
    pub fn apply(&mut self, decision: &Decision) -> Result<(), ViewError> {
        let request = &decision.request;
        let vm = || request.vm.clone();
        let slot = self.slot(&decision.host)?;
        if !self.tenants.contains_key(&request.tenant) {
            return Err(ViewError::UnknownTenant { vm: vm(), tenant: request.tenant.clone() });
        }
        let current = self.placed.get(&request.vm).map(|placed| placed.host.as_str());
        if current != decision.previous_host.as_deref() {
            let position = |host: Option<&str>| host.map_or("no host".to_string(), |host| format!("host '{host}'"));
            return Err(ViewError::StaleDecision {
                vm: vm(),
                planned: position(decision.previous_host.as_deref()),
                actual: position(current),
            });
        }
        let pools = self.host_at(slot).map(|host| &host.spec.pools);
        let has_pool = |pool: &String| pools.is_some_and(|pools| pools.contains_key(pool));
        if let Some(missing) = request.volumes.iter().find(|volume| !has_pool(&volume.pool)) {
            return Err(ViewError::MissingPool { vm: vm(), host: decision.host.clone(), pool: missing.pool.clone() });
        }
        if current.is_some() {
            self.release(&request.vm)?;
        }
        self.book(PlacedVm { host: decision.host.clone(), request: request.clone() });
        Ok(())
    }

    /// Removes a placed VM from its host and its tenant's usage; returns where it was.
    pub fn release(&mut self, vm: &str) -> Result<PlacedVm, ViewError> {
        let placed = self.placed.remove(vm).ok_or_else(|| ViewError::UnknownVm { vm: vm.to_string() })?;
        if let Ok(slot) = self.slot(&placed.host) {
            self.change_allocation(slot, |host| host.unbook(&placed.request));
        }
        if let Some(account) = self.tenants.get_mut(&placed.request.tenant) {
            account.used = account.used.saturating_sub(placed.request.footprint());
        }
        Ok(placed)
    }

    /// Books a VM where committed state says it is, without judging it (no cap, quota or pool
    /// check): for a view rebuilt from, or kept in step with, a replicated model. A VM already in
    /// the view is moved. Refused only when the host or the tenant is not in the view.
    pub fn restore(&mut self, placed: PlacedVm) -> Result<(), ViewError> {
        self.slot(&placed.host)?;
        let request = &placed.request;
        if !self.tenants.contains_key(&request.tenant) {
            return Err(ViewError::UnknownTenant { vm: request.vm.clone(), tenant: request.tenant.clone() });
        }
        if self.placed.contains_key(&request.vm) {
            self.release(&request.vm)?;
        }
        self.book(placed);
        Ok(())
    }

    /// Keeps a moving VM booked on the host it is leaving (`placed.host`) until the move finishes:
    /// that host's allocation counts it, its tenant is not charged again. Replaces an earlier hold
    /// of the same VM. Refused only for a host the view lacks.
    pub fn hold_departing(&mut self, placed: PlacedVm) -> Result<(), ViewError> {
        let slot = self.slot(&placed.host)?;
        self.release_departing(&placed.request.vm);
        self.change_allocation(slot, |host| host.book(&placed.request));
        self.departing.insert(placed.request.vm.clone(), placed);
        Ok(())
    }

    /// Ends a hold (the move finished); returns it.
    pub fn release_departing(&mut self, vm: &str) -> Option<PlacedVm> {
        let held = self.departing.remove(vm)?;
        if let Ok(slot) = self.slot(&held.host) {
            self.change_allocation(slot, |host| host.unbook(&held.request));
        }
        Some(held)
    }

    /// Adds a VM to its host and its tenant's usage (both checked to exist by the caller).
    pub(crate) fn book(&mut self, placed: PlacedVm) {
        if let Ok(slot) = self.slot(&placed.host) {
            self.change_allocation(slot, |host| host.book(&placed.request));
        }
        if let Some(account) = self.tenants.get_mut(&placed.request.tenant) {
            account.used = account.used.saturating_add(placed.request.footprint());
        }
        self.placed.insert(placed.request.vm.clone(), placed);
    }
}
