//! Placement in the replicated model: the planner's view kept in step with the tables, planning a
//! VM on the leader, and checking the leader's decision again when the command is applied.
//!
//! It exists so a decision is judged against the state at its own point of the log: two creates
//! planned against the same state through different members are applied one after the other, and
//! the second is refused (409, the planner's words) if the first took the room. The view is derived
//! data: `commit` follows every host, tenant, VM and volume change, `load` rebuilds it. It must never
//! hold anything that cannot be recomputed from the tables.
//!
//! A VM asks for the zones of its NICs; a host carries a zone when it has what the zone travels on
//! between hosts ([`carried_zones`]). Defaults for what hosts do not report yet: vCPUs are
//! overcommitted [`VCPU_OVERCOMMIT_PERCENT`] (4:1). A pool's baseline is what the
//! volumes left on the host by no VM hold (a deleted VM's volumes stay on its host); the placed VMs'
//! volumes are booked with them.

use std::collections::{BTreeMap, BTreeSet};

use hci_placement::{
    place, verify, ClusterView, Decision, HostSpec, PlacedVm, PlacementRequest, Policy, PoolSpec, Resources, Strategy,
    VolumeDemand, MAX_CAP_PERCENT,
};
use hci_shared::api::VmCreate;
use hci_shared::command::Placement;
use hci_shared::resources::{Host, HostState, Tenant, Vm, Volume, Zone};
use hci_shared::ApiError;

use crate::model::Model;

/// vCPUs per host CPU thread, in percent, until hosts report their own ratio.
pub const VCPU_OVERCOMMIT_PERCENT: u32 = 400;

const GIB: u64 = 1 << 30;

/// The planner's view of the model, and the bytes of volumes left on each host by no VM (a pool's
/// baseline). Equal for two models holding equal records, whatever order the hosts were added in
/// (slots and index are not compared; hosts and placed VMs are).
#[derive(Debug, Clone, Default)]
pub(crate) struct PlacementView(pub ClusterView, pub BTreeMap<String, BTreeMap<String, u64>>);

impl PartialEq for PlacementView {
    fn eq(&self, other: &Self) -> bool {
        self.0.hosts().eq(other.0.hosts()) && self.0.placed_vms().eq(other.0.placed_vms()) && self.1 == other.1
    }
}

/// What a volume adds to its host's pool baseline: its bytes while it is bound to a host and
/// attached to no VM (an attached volume is booked with its VM).
fn unattached_bytes(volume: &Volume) -> Option<(&str, &str, u64)> {
    match (&volume.host, &volume.attached_to) {
        (Some(host), None) => Some((host, &volume.pool, volume.size_gib.saturating_mul(GIB))),
        _ => None,
    }
}

impl Eq for PlacementView {}

fn host_state(state: HostState) -> hci_placement::HostState {
    match state {
        HostState::Ready => hci_placement::HostState::Ready,
        HostState::Maintenance => hci_placement::HostState::Maintenance,
        HostState::Offline => hci_placement::HostState::Offline,
        HostState::Fenced => hci_placement::HostState::Fenced,
    }
}

/// The zones of `zones` that `host` carries: a VXLAN zone when it has an underlay address, a VLAN
/// zone when it has a VLAN trunk. A host whose agent builds zone networks for itself alone (neither)
/// is a single host and carries every zone, as does a host whose agent leaves networking alone (it
/// reports no zone networks: test rigs where several agents share one network namespace).
pub fn carried_zones(host: &Host, zones: &BTreeMap<String, Zone>) -> BTreeSet<String> {
    let inventory = &host.inventory;
    let (vxlan, vlan) = (inventory.underlay_ip.is_some(), inventory.vlan_trunk.is_some());
    let everything = !inventory.zone_networks || (!vxlan && !vlan);
    zones
        .values()
        .filter(|zone| everything || if zone.vlan.is_some() { vlan } else { vxlan })
        .map(|zone| zone.name.clone())
        .collect()
}

/// A host record as the planner sees it, with `baseline` bytes by pool already allocated.
pub(crate) fn host_spec(
    host: &Host,
    baseline: Option<&BTreeMap<String, u64>>,
    zones: &BTreeMap<String, Zone>,
) -> HostSpec {
    let allocated = |pool: &str| baseline.and_then(|b| b.get(pool)).copied().unwrap_or(0);
    let inventory = &host.inventory;
    HostSpec {
        id: host.id.clone(),
        site: host.site.clone(),
        arch: host.arch.clone(),
        state: host_state(host.state),
        firmware_profiles: inventory.firmware_profiles.iter().cloned().collect(),
        zones: carried_zones(host, zones),
        cpus: inventory.cpus,
        vcpu_overcommit_percent: VCPU_OVERCOMMIT_PERCENT,
        memory_mib: inventory.memory_mib,
        pools: inventory
            .pools
            .iter()
            .map(|pool| {
                let spec = PoolSpec { capacity_bytes: pool.capacity_bytes, allocated_bytes: allocated(&pool.name) };
                (pool.name.clone(), spec)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn tenant_limit(tenant: &Tenant) -> Resources {
    let quota = tenant.quota;
    Resources {
        vcpus: u64::from(quota.vcpus),
        memory_mib: quota.memory_mib,
        disk_bytes: quota.disk_gib.saturating_mul(GIB),
    }
}

/// What a VM asks of a host: its size, arch, firmware, group and its volumes' pools and sizes
/// (volumes the model does not hold are left out; applying refuses them anyway).
pub(crate) fn request(model: &Model, vm: &Vm) -> PlacementRequest {
    let volumes = vm
        .volumes
        .iter()
        .filter_map(|id| model.volumes.get(id))
        .map(|v| VolumeDemand { pool: v.pool.clone(), size_bytes: v.size_gib.saturating_mul(GIB) })
        .collect();
    PlacementRequest {
        vm: vm.id.clone(),
        tenant: vm.tenant.clone(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        arch: vm.arch.clone(),
        firmware: vm.firmware.clone(),
        site: None,
        zones: vm.nics.iter().map(|nic| nic.zone.clone()).collect(),
        anti_affinity_group: vm.anti_affinity_group.clone(),
        volumes,
        exclude_hosts: BTreeSet::new(),
    }
}

/// The host the VM's volumes are already bound to, if any (all must agree).
fn bound_host<'m>(model: &'m Model, vm: &Vm) -> Result<Option<&'m str>, ApiError> {
    let mut bound: Option<&str> = None;
    for volume in vm.volumes.iter().filter_map(|id| model.volumes.get(id)) {
        match (bound, volume.host.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::conflict(format!(
                    "vm '{}' cannot be placed: its volumes are on hosts '{a}' and '{b}'",
                    vm.name
                )))
            }
            (None, Some(b)) => bound = Some(b),
            _ => {}
        }
    }
    Ok(bound)
}

fn refused(nofit: hci_placement::NoFit) -> ApiError {
    ApiError::no_capacity(nofit.to_string())
}

impl Model {
    /// The planner's view of this model (hosts, placed VMs, tenants' accounts).
    pub fn placement_view(&self) -> &ClusterView {
        &self.placement.0
    }

    /// Plans where `vm` (not yet placed; it need not exist in the model) goes under `policy`: the
    /// host its volumes are bound to, if any, else the planner's choice. `None` when the site has no
    /// host at all. A refusal is the 409 the caller gets.
    pub fn plan(&self, vm: &Vm, policy: &Policy) -> Result<Option<Placement>, ApiError> {
        let view = &self.placement.0;
        if view.host_count() == 0 {
            return Ok(None);
        }
        let request = request(self, vm);
        let cap_percent = policy.cap_percent();
        let host = match bound_host(self, vm)? {
            Some(host) => {
                let decision = Decision { host: host.to_string(), previous_host: None, request };
                verify(view, &decision, policy).map_err(refused)?;
                decision.host
            }
            None => place(view, &request, policy).map_err(refused)?.host,
        };
        Ok(Some(Placement { host, cap_percent }))
    }

    /// Plans a VM about to be created from `spec` (see [`Model::plan`]).
    pub fn plan_create(&self, id: &str, spec: &VmCreate, policy: &Policy) -> Result<Option<Placement>, ApiError> {
        // An unknown or foreign zone is the caller's mistake (400 naming the NIC), not "fits nowhere".
        crate::vms::nic_zones(self, &spec.tenant, spec)?;
        // Addresses are assigned at apply; the planner needs only each NIC's zone.
        let zones_only = spec
            .nics
            .iter()
            .map(|nic| hci_shared::resources::Nic { zone: nic.zone.clone(), mac: String::new(), ip: String::new() })
            .collect();
        let vm = crate::vms::new_vm(id, spec, zones_only, "", 0);
        self.plan(&vm, policy)
    }

    /// Plans the start of VM `id`: a placement only when it exists and is not placed yet.
    pub fn plan_start(&self, id: &str, policy: &Policy) -> Result<Option<Placement>, ApiError> {
        match self.vms.get(id) {
            Some(vm) if vm.host.is_none() => self.plan(vm, policy),
            _ => Ok(None),
        }
    }

    /// Checks a committed decision for `vm` against the state now (cap, quota, every filter, the
    /// host its volumes are bound to). Returns the host.
    pub(crate) fn check_placement(&self, vm: &Vm, placement: &Placement) -> Result<String, ApiError> {
        let policy = Policy::new(placement.cap_percent, Strategy::Spread)
            .map_err(|e| ApiError::invalid("placement.cap_percent", e.to_string()))?;
        if let Some(bound) = bound_host(self, vm)? {
            if bound != placement.host {
                return Err(ApiError::conflict(format!(
                    "vm '{}' was planned on host '{}' but its volumes are on host '{bound}'; retry",
                    vm.name, placement.host
                )));
            }
        }
        let decision = Decision { host: placement.host.clone(), previous_host: None, request: request(self, vm) };
        verify(&self.placement.0, &decision, &policy).map_err(refused)?;
        Ok(placement.host.clone())
    }

    /// Checks moves decided together (a drain plans them as one batch) against the state now, each
    /// with the earlier ones booked: cap, quota and every filter on each target. Returns the first
    /// refusal. The model is not changed: a batch books its moves on a copy of the view, made only
    /// when there is a second move to check (a single move, the common case, copies nothing).
    pub(crate) fn check_moves<'v>(
        &self,
        moves: impl IntoIterator<Item = (&'v Vm, &'v Placement)>,
    ) -> Result<(), ApiError> {
        let mut moves = moves.into_iter().peekable();
        let mut copy: Option<ClusterView> = None;
        while let Some((vm, placement)) = moves.next() {
            let policy = Policy::new(placement.cap_percent, Strategy::Spread)
                .map_err(|e| ApiError::invalid("placement.cap_percent", e.to_string()))?;
            let decision =
                Decision { host: placement.host.clone(), previous_host: vm.host.clone(), request: request(self, vm) };
            verify(copy.as_ref().unwrap_or(&self.placement.0), &decision, &policy).map_err(refused)?;
            if moves.peek().is_none() {
                break;
            }
            let view = copy.get_or_insert_with(|| self.placement.0.clone());
            let source = vm.host.clone();
            view.apply(&decision).map_err(|e| ApiError::conflict(format!("vm '{}' cannot move: {e}", vm.name)))?;
            if let Some(host) = source {
                // The source keeps it booked until the move finishes.
                let _ = view.hold_departing(PlacedVm { host, request: decision.request.clone() });
            }
        }
        Ok(())
    }

    /// Whether growing `volume` by `more_bytes` keeps its host's pool within `cap_percent` (the
    /// leader's cap, never above 80 %). Unbound volumes always fit.
    pub(crate) fn check_growth(&self, volume: &Volume, more_bytes: u64, cap_percent: u8) -> Result<(), ApiError> {
        if cap_percent > MAX_CAP_PERCENT {
            return Err(ApiError::invalid(
                "cap_percent",
                format!("{cap_percent} is above the {MAX_CAP_PERCENT} % cap"),
            ));
        }
        let Some(host_id) = volume.host.as_deref() else { return Ok(()) };
        let Some(host) = self.placement.0.host(host_id) else { return Ok(()) };
        let (Some(allocated), Some(pool)) =
            (host.pool_allocated_bytes(&volume.pool), host.spec().pools.get(&volume.pool))
        else {
            return Ok(());
        };
        let after = u128::from(allocated) + u128::from(more_bytes);
        if after * 100 <= u128::from(cap_percent) * u128::from(pool.capacity_bytes) {
            return Ok(());
        }
        Err(ApiError::no_capacity(format!(
            "volume '{}' cannot grow: host {host_id} would exceed the {cap_percent} % disk cap of pool {}",
            volume.name, volume.pool
        )))
    }

    /// Keeps the view in step with a host record.
    pub(crate) fn follow_host(&mut self, old: Option<&Host>, host: &Host) {
        let same = old.is_some_and(|old| {
            old.state == host.state && old.inventory == host.inventory && old.arch == host.arch && old.site == host.site
        });
        if !same {
            self.placement.0.upsert_host(host_spec(host, self.placement.1.get(&host.id), &self.zones));
        }
    }

    /// Re-specs every host after a zone came or went (which hosts carry it).
    pub(crate) fn follow_zones(&mut self) {
        for host in self.hosts.values() {
            self.placement.0.upsert_host(host_spec(host, self.placement.1.get(&host.id), &self.zones));
        }
    }

    /// Keeps the pool baselines in step with a volume replaced (`old`) by `new` (either may be
    /// absent), and re-specs the hosts whose baseline moved.
    pub(crate) fn follow_volume(&mut self, old: Option<&Volume>, new: Option<&Volume>) {
        let (before, after) = (old.and_then(unattached_bytes), new.and_then(unattached_bytes));
        if before == after {
            return;
        }
        let baselines = &mut self.placement.1;
        if let Some((host, pool, bytes)) = before {
            if let Some(pools) = baselines.get_mut(host) {
                let left = pools.get(pool).copied().unwrap_or(0).saturating_sub(bytes);
                if left == 0 {
                    pools.remove(pool);
                } else {
                    pools.insert(pool.to_string(), left);
                }
                if pools.is_empty() {
                    baselines.remove(host);
                }
            }
        }
        if let Some((host, pool, bytes)) = after {
            let total = baselines.entry(host.to_string()).or_default().entry(pool.to_string()).or_insert(0);
            *total = total.saturating_add(bytes);
        }
        let hosts: BTreeSet<&str> = before.iter().chain(after.iter()).map(|(host, _, _)| *host).collect();
        for id in hosts {
            if let Some(host) = self.hosts.get(id) {
                let spec = host_spec(host, self.placement.1.get(id), &self.zones);
                self.placement.0.upsert_host(spec);
            }
        }
    }

    pub(crate) fn follow_tenant(&mut self, tenant: &Tenant) {
        self.placement.0.set_tenant_limit(&tenant.name, tenant_limit(tenant));
    }

    /// Books the VM where its record says it is (or releases it when unplaced or gone), and on the
    /// host it is leaving while it moves.
    pub(crate) fn follow_vm(&mut self, id: &str) {
        let placed = self.vms.get(id).and_then(|vm| {
            let host = vm.host.clone()?;
            Some(PlacedVm { host, request: request(self, vm) })
        });
        let departing = self.vms.get(id).and_then(|vm| {
            let from = vm.migration.as_ref()?.from_host.clone();
            Some(PlacedVm { host: from, request: request(self, vm) })
        });
        let view = &mut self.placement.0;
        // Holds first off, placement, holds back on: a host's VM set then never depends on the order.
        view.release_departing(id);
        match placed {
            Some(placed) => {
                // Refused only for a host or tenant the view lacks, which a consistent model never has.
                let _ = view.restore(placed);
            }
            None => {
                let _ = view.release(id);
            }
        }
        if let Some(held) = departing {
            // Refused only for a host the view lacks, which a consistent model never has.
            let _ = view.hold_departing(held);
        }
    }

    /// Rebuilds the view from the tables (load, snapshot install).
    pub(crate) fn rebuild_placement(&mut self) {
        self.placement = PlacementView::default();
        let volumes: Vec<Volume> = self.volumes.values().filter(|v| unattached_bytes(v).is_some()).cloned().collect();
        for volume in &volumes {
            self.follow_volume(None, Some(volume));
        }
        let hosts: Vec<Host> = self.hosts.values().cloned().collect();
        for host in &hosts {
            self.follow_host(None, host);
        }
        let tenants: Vec<Tenant> = self.tenants.values().cloned().collect();
        for tenant in &tenants {
            self.follow_tenant(tenant);
        }
        let vms: Vec<String> = self.vms.values().filter(|vm| vm.host.is_some()).map(|vm| vm.id.clone()).collect();
        for id in vms {
            self.follow_vm(&id);
        }
    }
}
