//! The cluster as the planner sees it: hosts with their allocation, tenants' accounts, placed VMs,
//! and the candidate index.
//!
//! It exists so placements are planned against one consistent picture that is updated
//! incrementally (a decision applied, a host drained) instead of rebuilt. Every host change goes
//! through `change_host` (spec) or `change_allocation` (what it holds), which keep the index in step.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ViewError;
use crate::host::Host;
use crate::index::{Index, Slot};
use crate::model::{HostSpec, HostState, PlacedVm, PlacementRequest, Resources, TenantAccount};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Slot → host; a removed host leaves `None`.
    pub(crate) hosts: Vec<Option<Host>>,
    /// Host id → slot.
    pub(crate) slots: BTreeMap<String, Slot>,
    pub(crate) tenants: BTreeMap<String, TenantAccount>,
    /// VM id → where it is placed.
    pub(crate) placed: BTreeMap<String, PlacedVm>,
    /// VM id → the host it is leaving (a move in progress): still booked there against the cap,
    /// not charged to its tenant twice.
    pub(crate) departing: BTreeMap<String, PlacedVm>,
    pub(crate) index: Index,
}

impl ClusterView {
    /// An empty view: no hosts, no tenants.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host, or replaces the spec of a known one (state, pools, capacity...) keeping what is
    /// placed on it.
    pub fn upsert_host(&mut self, spec: HostSpec) {
        match self.slots.get(&spec.id) {
            Some(&slot) => self.change_host(slot, |host| host.spec = spec),
            None => {
                let slot = Slot::try_from(self.hosts.len()).unwrap_or(Slot::MAX);
                let host = Host::new(spec);
                self.index.add(slot, &host);
                self.slots.insert(host.spec.id.clone(), slot);
                self.hosts.push(Some(host));
            }
        }
    }

    /// Sets a host's state (e.g. `Maintenance` before draining it, `Fenced` after a failure).
    pub fn set_host_state(&mut self, host: &str, state: HostState) -> Result<(), ViewError> {
        let slot = self.slot(host)?;
        self.change_host(slot, |host| host.spec.state = state);
        Ok(())
    }

    /// Removes an empty host.
    pub fn remove_host(&mut self, host: &str) -> Result<HostSpec, ViewError> {
        let slot = self.slot(host)?;
        let vms = self.host_at(slot).map_or(0, |h| h.vms.len());
        if vms > 0 {
            return Err(ViewError::HostNotEmpty { host: host.to_string(), vms });
        }
        let removed = self.hosts.get_mut(slot as usize).and_then(Option::take);
        let removed = removed.ok_or_else(|| ViewError::UnknownHost { host: host.to_string() })?;
        self.index.remove(slot, &removed);
        self.slots.remove(host);
        Ok(removed.spec)
    }

    /// Sets a tenant's limit (creating its account with nothing used).
    pub fn set_tenant_limit(&mut self, tenant: &str, limit: Resources) {
        self.tenants.entry(tenant.to_string()).or_default().limit = limit;
    }

    pub fn host(&self, id: &str) -> Option<&Host> {
        self.slots.get(id).and_then(|&slot| self.host_at(slot))
    }

    /// Hosts ordered by id.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> + '_ {
        self.slots.values().filter_map(|&slot| self.host_at(slot))
    }

    pub fn host_count(&self) -> usize {
        self.slots.len()
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantAccount> {
        self.tenants.get(name)
    }

    /// Tenants ordered by name.
    pub fn tenants(&self) -> impl Iterator<Item = (&str, &TenantAccount)> + '_ {
        self.tenants.iter().map(|(name, account)| (name.as_str(), account))
    }

    pub fn placed(&self, vm: &str) -> Option<&PlacedVm> {
        self.placed.get(vm)
    }

    /// The host a VM is leaving, while its move is in progress.
    pub fn departing(&self, vm: &str) -> Option<&PlacedVm> {
        self.departing.get(vm)
    }

    /// Placed VMs ordered by id.
    pub fn placed_vms(&self) -> impl Iterator<Item = (&str, &PlacedVm)> + '_ {
        self.placed.iter().map(|(id, placed)| (id.as_str(), placed))
    }

    /// The request that moves a placed VM elsewhere (migration, HA restart): what it was placed
    /// with, excluding `exclude` (its current host is always excluded).
    pub fn move_request(&self, vm: &str, exclude: impl IntoIterator<Item = String>) -> Option<PlacementRequest> {
        let mut request = self.placed.get(vm)?.request.clone();
        request.exclude_hosts = exclude.into_iter().collect::<BTreeSet<_>>();
        Some(request)
    }

    /// Whether every host's cached load is current and the candidate index equals one rebuilt
    /// from the hosts (a self-check for tests).
    #[doc(hidden)]
    pub fn index_is_consistent(&self) -> bool {
        let loads_current = self.hosts().all(|host| host.load == host.computed_load());
        let rebuilt = Index::build(self.slots.values().filter_map(|&slot| Some((slot, self.host_at(slot)?))));
        loads_current && rebuilt == self.index
    }

    pub(crate) fn slot(&self, host: &str) -> Result<Slot, ViewError> {
        self.slots.get(host).copied().ok_or_else(|| ViewError::UnknownHost { host: host.to_string() })
    }

    pub(crate) fn host_at(&self, slot: Slot) -> Option<&Host> {
        self.hosts.get(slot as usize).and_then(Option::as_ref)
    }

    /// Changes a host's spec (and anything else) and re-indexes it.
    pub(crate) fn change_host(&mut self, slot: Slot, change: impl FnOnce(&mut Host)) {
        let Some(host) = self.hosts.get_mut(slot as usize).and_then(Option::as_mut) else { return };
        self.index.remove(slot, host);
        change(host);
        host.refresh_load();
        self.index.add(slot, host);
    }

    /// Changes what a host holds (never its spec) and moves it in the walk orders.
    pub(crate) fn change_allocation(&mut self, slot: Slot, change: impl FnOnce(&mut Host)) {
        let Some(host) = self.hosts.get_mut(slot as usize).and_then(Option::as_mut) else { return };
        self.index.remove_ordered(slot, host);
        change(host);
        host.refresh_load();
        self.index.add_ordered(slot, host);
    }
}
