//! Moving VMs between hosts: an operator's migration, a host drained for maintenance, and the
//! end of a move once the target has the VM.
//!
//! It exists so a move is one committed decision with both ends in the desired state: the VM's
//! `host` becomes the target at once (its volumes with it) and `migration` names the source, which
//! keeps the VM (live: `Outgoing`) or at least its volumes (cold) and its booked capacity until
//! [`finish`]. The leader plans; every move is checked again here against the state at its own
//! point of the log (cap, quota, filters), so no interleaving over-commits a host. It must never
//! move a VM whose volumes the target cannot reach, nor drop the source's copy before the target
//! reported the VM there.

use hci_shared::command::{Applied, PlannedMove};
use hci_shared::resources::{Host, HostState, PowerState, Vm, VmMove};
use hci_shared::ApiError;

use crate::apply::{Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;

/// The storage backend whose pools every host of a site reaches (volumes stay in place on a move).
pub const SHARED_BACKEND: &str = "rbd";

impl Model {
    /// The VMs in a move, by id (indexed: no scan of every VM).
    pub fn moving_vms(&self) -> impl Iterator<Item = &Vm> + '_ {
        self.index.moving.iter().filter_map(|id| self.vms.get(id))
    }

    /// Whether `pool` on host `host` is a shared pool (reachable from every host of the site).
    pub fn is_shared_pool(&self, host: &str, pool: &str) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|h| h.inventory.pools.iter().any(|p| p.name == pool && p.backend == SHARED_BACKEND))
    }

    /// The VM's volumes that live only on its current host (not on a shared pool).
    pub fn local_volumes_of(&self, vm: &Vm) -> Vec<String> {
        let Some(host) = vm.host.as_deref() else { return Vec::new() };
        vm.volumes
            .iter()
            .filter_map(|id| self.volumes.get(id))
            .filter(|volume| !self.is_shared_pool(host, &volume.pool))
            .map(|volume| volume.id.clone())
            .collect()
    }
}

/// A move the leader planned, before the source exported what a cold move imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    pub planned: PlannedMove,
    /// Volumes (ids) the source must export first (a cold move's local volumes).
    pub exports: Vec<String>,
    /// The source host's agent API.
    pub source_agent: String,
}

impl Model {
    /// Plans moving VM `id`: to `host` if given (checked), else where the planner puts it (never
    /// its current host); live when `live` says so, else live exactly when it is running.
    pub fn plan_move(
        &self,
        id: &str,
        host: Option<&str>,
        live: Option<bool>,
        policy: &hci_placement::Policy,
    ) -> Result<MovePlan, ApiError> {
        let vm = existing(self, id)?;
        if let Some(source) = vm.host.as_deref().and_then(|h| self.hosts.get(h)) {
            if matches!(source.state, HostState::Offline | HostState::Fenced) {
                return Err(ApiError::conflict(format!(
                    "vm '{}' is on host '{}', which is {}: its agent cannot hand it over",
                    vm.name,
                    source.id,
                    state_name(source.state)
                )));
            }
        }
        let live = live.unwrap_or(vm.power != PowerState::Stopped);
        let target = match host {
            Some(host) => {
                let target = self
                    .hosts
                    .get(host)
                    .ok_or_else(|| ApiError::invalid("host", format!("host '{host}' does not exist")))?;
                if target.state != HostState::Ready {
                    return Err(ApiError::conflict(format!("host '{host}' is {}", state_name(target.state))));
                }
                host.to_string()
            }
            None => self.plan_elsewhere(vm, policy)?,
        };
        // Everything but the imports (known after the source exported) is checked now.
        check_movable(vm, &target, live)?;
        let placement = hci_shared::command::Placement { host: target, cap_percent: policy.cap_percent() };
        self.check_moves([(vm, &placement)])?;
        let planned = PlannedMove { vm: vm.id.clone(), placement, live, imports: Vec::new() };
        let exports = if live { Vec::new() } else { self.local_volumes_of(vm) };
        let source_agent = vm.host.as_deref().and_then(|h| self.hosts.get(h)).map(|h| h.agent_url.clone());
        Ok(MovePlan { planned, exports, source_agent: source_agent.unwrap_or_default() })
    }

    /// Plans draining host `id`: every VM placed there moves (largest first), all within the cap
    /// together, or the refusal says which VMs fit nowhere. A VM on an offline host moves only
    /// when it is stopped and all its volumes are on shared pools (a running one may still run
    /// there; HA restarts those once the host is fenced).
    pub fn plan_drain(&self, id: &str, policy: &hci_placement::Policy) -> Result<Vec<MovePlan>, ApiError> {
        let host = self.hosts.get(id).ok_or_else(|| ApiError::not_found("host", id))?;
        if host.state == HostState::Fenced {
            return Err(ApiError::conflict(format!("host '{id}' is fenced; its VMs were restarted elsewhere")));
        }
        let here: Vec<&Vm> = self.vms.values().filter(|vm| vm.host.as_deref() == Some(id)).collect();
        if host.state == HostState::Offline {
            let stuck: Vec<String> = here
                .iter()
                .filter(|vm| vm.power != PowerState::Stopped || !self.local_volumes_of(vm).is_empty())
                .map(|vm| vm.name.clone())
                .collect();
            if !stuck.is_empty() {
                return Err(ApiError::conflict(format!(
                    "host '{id}' is offline: vm(s) [{}] are running or have volumes only there; \
                     they cannot move until the host is back (HA VMs restart once it is fenced)",
                    stuck.join(", ")
                )));
            }
        }
        let mut view = self.placement.0.clone();
        let decisions = hci_placement::plan_evacuation(&mut view, id, policy)
            .map_err(|refused| ApiError::no_capacity(refused.to_string()))?;
        let agent_url = host.agent_url.clone();
        let mut plans = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let Some(vm) = self.vms.get(&decision.request.vm) else { continue };
            let live = vm.power != PowerState::Stopped;
            plans.push(MovePlan {
                planned: PlannedMove {
                    vm: vm.id.clone(),
                    placement: hci_shared::command::Placement {
                        host: decision.host,
                        cap_percent: policy.cap_percent(),
                    },
                    live,
                    imports: Vec::new(),
                },
                exports: if live { Vec::new() } else { self.local_volumes_of(vm) },
                source_agent: agent_url.clone(),
            });
        }
        Ok(plans)
    }

    /// Where the planner moves `vm` (never its current host).
    fn plan_elsewhere(&self, vm: &Vm, policy: &hci_placement::Policy) -> Result<String, ApiError> {
        let current = vm
            .host
            .clone()
            .ok_or_else(|| ApiError::conflict(format!("vm '{}' is not placed on any host yet", vm.name)))?;
        let view = &self.placement.0;
        let request = view
            .move_request(&vm.id, [current])
            .ok_or_else(|| ApiError::conflict(format!("vm '{}' is not placed on any host yet", vm.name)))?;
        hci_placement::place(view, &request, policy)
            .map(|decision| decision.host)
            .map_err(|nofit| ApiError::no_capacity(nofit.to_string()))
    }
}

/// Whether the VM may move to `target` now, live or not (before the cap check): placed, not already
/// moving, power matching the kind of move. Returns its current host.
fn check_movable(vm: &Vm, target: &str, live: bool) -> Result<String, ApiError> {
    let current =
        vm.host.clone().ok_or_else(|| ApiError::conflict(format!("vm '{}' is not placed on any host yet", vm.name)))?;
    if let Some(moving) = &vm.migration {
        return Err(ApiError::conflict(format!(
            "vm '{}' is already moving from host '{}' to '{current}'",
            vm.name, moving.from_host
        )));
    }
    if target == current {
        return Err(ApiError::conflict(format!("vm '{}' is already on host '{current}'", vm.name)));
    }
    match (live, vm.power) {
        (true, PowerState::Stopped) => {
            Err(ApiError::conflict(format!("vm '{}' is stopped; move it cold (live: false)", vm.name)))
        }
        (false, PowerState::Running) => {
            Err(ApiError::conflict(format!("vm '{}' is running; move it live (live: true) or stop it first", vm.name)))
        }
        _ => Ok(current),
    }
}

/// [`check_movable`] for a planned move, and its imports: none for a live move, exactly the local
/// volumes for a cold one.
fn check_planned(model: &Model, vm: &Vm, planned: &PlannedMove) -> Result<String, ApiError> {
    let current = check_movable(vm, &planned.placement.host, planned.live)?;
    if planned.live {
        if !planned.imports.is_empty() {
            return Err(ApiError::invalid("imports", "a live move copies its volumes itself"));
        }
        return Ok(current);
    }
    let mut imported: Vec<&str> = planned.imports.iter().map(|i| i.volume.as_str()).collect();
    imported.sort_unstable();
    let local = model.local_volumes_of(vm);
    let mut wanted: Vec<&str> = local.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    if imported != wanted {
        return Err(ApiError::conflict(format!(
            "vm '{}' has local volumes [{}] but the move imports [{}]; retry",
            vm.name,
            wanted.join(", "),
            imported.join(", ")
        )));
    }
    Ok(current)
}

/// The moved VM and its volumes on the target (the move recorded), as changes.
fn moved(
    model: &Model,
    ctx: &Ctx<'_>,
    vm: &Vm,
    from: String,
    planned: &PlannedMove,
    reason: &str,
) -> (Vm, Vec<Change>) {
    let mut after = vm.clone();
    after.host = Some(planned.placement.host.clone());
    after.migration = Some(VmMove {
        from_host: from,
        live: planned.live,
        reason: reason.to_string(),
        started_at: ctx.at.to_string(),
        imports: planned.imports.clone(),
    });
    after.revision = ctx.index;
    let mut changes = Vec::new();
    for volume in vm.volumes.iter().filter_map(|id| model.volumes.get(id)) {
        let mut bound = volume.clone();
        bound.host = Some(planned.placement.host.clone());
        bound.revision = ctx.index;
        changes.push(Change::PutVolume(bound));
    }
    changes.push(Change::PutVm(after.clone()));
    (after, changes)
}

fn existing<'m>(model: &'m Model, id: &str) -> Result<&'m Vm, ApiError> {
    model.vms.get(id).ok_or_else(|| ApiError::not_found("vm", id))
}

/// `POST /v1/vms/{id}/migrate`, as planned by the leader.
pub(crate) fn migrate(model: &Model, ctx: &Ctx<'_>, id: &str, planned: &PlannedMove) -> Decision {
    let vm = existing(model, id)?;
    if planned.vm != vm.id {
        return Err(ApiError::invalid("planned.vm", format!("plans vm '{}', not '{id}'", planned.vm)));
    }
    let from = check_planned(model, vm, planned)?;
    model.check_moves([(vm, &planned.placement)])?;
    let (after, mut changes) = moved(model, ctx, vm, from.clone(), planned, "operator");
    changes.extend(touch(model, ctx, [from.as_str(), planned.placement.host.as_str()]));
    Ok(Outcome::new(Applied::Vm(after), changes))
}

/// The target reported the VM: the source lets go of it (its local copies are deleted there).
pub(crate) fn finish(model: &Model, ctx: &Ctx<'_>, id: &str, from_host: &str) -> Decision {
    let vm = existing(model, id)?;
    match &vm.migration {
        Some(moving) if moving.from_host == from_host => {}
        _ => return Err(ApiError::conflict(format!("vm '{}' is not moving from host '{from_host}'", vm.name))),
    }
    let mut after = vm.clone();
    after.migration = None;
    after.revision = ctx.index;
    let mut changes = vec![Change::PutVm(after.clone())];
    changes.extend(touch(model, ctx, [from_host].into_iter().chain(vm.host.as_deref())));
    Ok(Outcome::new(Applied::Vm(after), changes))
}

fn state_name(state: HostState) -> &'static str {
    match state {
        HostState::Ready => "ready",
        HostState::Maintenance => "in maintenance",
        HostState::Offline => "offline",
        HostState::Fenced => "fenced",
    }
}

/// The host record in its new state, with its desired generation moved to this entry.
fn host_in(host: &Host, ctx: &Ctx<'_>, state: HostState, reason: &str) -> Host {
    let mut after = host.clone();
    if after.state != state {
        after.state = state;
        after.state_since = ctx.at.to_string();
    }
    after.state_reason = reason.to_string();
    after.desired_generation = ctx.index;
    after.revision = ctx.index;
    after
}

/// Drains host `id` (every VM placed there moves as planned, all or none) or returns it to
/// service (`enabled: false`: nothing moves back).
pub(crate) fn set_maintenance(
    model: &Model,
    ctx: &Ctx<'_>,
    id: &str,
    enabled: bool,
    moves: &[PlannedMove],
) -> Decision {
    let host = model.hosts.get(id).ok_or_else(|| ApiError::not_found("host", id))?;
    if !enabled {
        if !moves.is_empty() {
            return Err(ApiError::invalid("moves", "leaving maintenance moves nothing"));
        }
        if !matches!(host.state, HostState::Maintenance | HostState::Fenced) {
            return Err(ApiError::conflict(format!(
                "host '{id}' is {}, not in maintenance or fenced",
                state_name(host.state)
            )));
        }
        let mut changes = Vec::new();
        if host.state == HostState::Fenced {
            // Unfenced: the other hosts of its site list it as a peer again (see `desired`).
            let others = model.hosts.values().filter(|h| h.id != host.id && h.site == host.site);
            changes.extend(touch(model, ctx, others.map(|h| h.id.as_str())));
        }
        let after = host_in(host, ctx, HostState::Ready, "returned to service by an operator");
        changes.push(Change::PutHost(after.clone()));
        return Ok(Outcome::new(Applied::Host(after), changes));
    }
    if host.state == HostState::Fenced {
        return Err(ApiError::conflict(format!("host '{id}' is fenced; its VMs were restarted elsewhere")));
    }
    let placed_here: Vec<&Vm> = model.vms.values().filter(|vm| vm.host.as_deref() == Some(id)).collect();
    let planned: std::collections::BTreeMap<&str, &PlannedMove> = moves.iter().map(|m| (m.vm.as_str(), m)).collect();
    if planned.len() != moves.len() {
        return Err(ApiError::invalid("moves", "a vm is planned twice"));
    }
    if let Some(unplanned) = placed_here.iter().find(|vm| !planned.contains_key(vm.id.as_str())) {
        return Err(ApiError::conflict(format!(
            "vm '{}' was placed on host '{id}' after the drain was planned; retry",
            unplanned.name
        )));
    }
    let mut checked = Vec::with_capacity(moves.len());
    for planned in moves {
        let vm = existing(model, &planned.vm)?;
        if vm.host.as_deref() != Some(id) {
            return Err(ApiError::conflict(format!("vm '{}' is no longer on host '{id}'; retry", vm.name)));
        }
        check_planned(model, vm, planned)?;
        checked.push((vm, &planned.placement));
    }
    model.check_moves(checked.iter().copied())?;
    let mut changes = Vec::new();
    for (vm, planned) in checked.iter().map(|(vm, _)| *vm).zip(moves) {
        changes.extend(moved(model, ctx, vm, id.to_string(), planned, "maintenance").1);
    }
    let after = host_in(host, ctx, HostState::Maintenance, "drained for maintenance by an operator");
    let targets = moves.iter().map(|m| m.placement.host.as_str()).filter(|target| *target != id);
    changes.extend(touch(model, ctx, targets));
    changes.push(Change::PutHost(after.clone()));
    Ok(Outcome::new(Applied::Host(after), changes))
}
