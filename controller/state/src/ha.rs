//! HA after a host failure: the leader's plan for a failed host's VMs, the `RestartVmsElsewhere`
//! command that fences the host and restarts its HA VMs on other hosts, and why a VM on a failed
//! host is down.
//!
//! It exists so the restart is one committed decision: the host becomes `fenced` (never silently
//! trusted again) and every planned VM's `host` (with its volumes) becomes its target in the same
//! log entry, checked against the cap together, at that point of the log. The leader proposes it
//! only after the host's lease plus a margin (by then the host's agent has fenced itself: see
//! `hci_shared::agent::Isolation`); applying it requires the host to be `offline` still, so a
//! decision that arrives after the host came back changes nothing (409). It must never restart a
//! VM that is not HA, has a volume only on the failed host, or is in the middle of a move.

use std::collections::BTreeSet;

use hci_placement::{plan_batch, BatchRefused, Policy};
use hci_shared::command::{Applied, Placement, PlannedRestart};
use hci_shared::resources::{Host, HostState, PowerState, Vm};
use hci_shared::ApiError;

use crate::apply::{Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;

/// Longest reason kept on the fenced host (`state_reason`).
pub const MAX_HA_REASON: usize = 1024;

impl Model {
    /// Why `vm` (placed on a host that failed) cannot be restarted on another host, if it cannot:
    /// not HA, a volume only on that host, or a move in progress.
    pub fn ha_obstacle(&self, vm: &Vm) -> Option<String> {
        if !vm.ha {
            return Some("not HA".to_string());
        }
        if let Some(moving) = &vm.migration {
            return Some(format!("moving from host '{}' (a VM in a move is not restarted)", moving.from_host));
        }
        let local = self.local_volumes_of(vm);
        if !local.is_empty() {
            let host = vm.host.as_deref().unwrap_or("?");
            return Some(format!("its volumes are only on host {host} ({})", local.join(", ")));
        }
        None
    }

    /// The other hosts of `host`'s site that may be asked about the controllers (`Isolation.peers`):
    /// every one but fenced hosts (known to be out of service), by id.
    pub(crate) fn isolation_peers<'m>(&'m self, host: &'m Host) -> impl Iterator<Item = &'m Host> + 'm {
        self.hosts.values().filter(move |h| h.id != host.id && h.site == host.site && h.state != HostState::Fenced)
    }

    /// The VMs of host `id` that HA would restart elsewhere if it failed now, and that its agent
    /// must therefore power off when it is cut off (`Isolation.fence_vms`): placed there, HA,
    /// running, not moving, every volume on a shared pool. By id.
    pub(crate) fn fence_vms(&self, id: &str) -> Vec<String> {
        self.vms
            .values()
            .filter(|vm| vm.host.as_deref() == Some(id) && vm.power == PowerState::Running)
            .filter(|vm| self.ha_obstacle(vm).is_none())
            .map(|vm| vm.id.clone())
            .collect()
    }

    /// Why `vm` is down because its host failed: `None` while its host is ready or in maintenance
    /// (or it is unplaced). On an offline host an HA VM is waiting for its restart; on a fenced one
    /// every VM still there was not restarted, and the reason says why.
    pub fn vm_down_reason(&self, vm: &Vm) -> Option<String> {
        let host = self.hosts.get(vm.host.as_deref()?)?;
        match host.state {
            HostState::Ready | HostState::Maintenance => None,
            HostState::Offline => Some(match self.ha_obstacle(vm) {
                Some(why) => format!("host {} is offline; it will not be restarted elsewhere: {why}", host.id),
                None => format!("host {} is offline; HA restarts it elsewhere once the host is fenced", host.id),
            }),
            HostState::Fenced => Some(match self.ha_obstacle(vm) {
                Some(why) => format!("host {} is fenced; not restarted elsewhere: {why}", host.id),
                None if vm.power == PowerState::Stopped => {
                    format!("host {} is fenced; not restarted elsewhere: stopped, and no other host had room", host.id)
                }
                None => format!("host {} is fenced; not restarted elsewhere: no other host had room", host.id),
            }),
        }
    }

    /// Plans restarting the VMs of failed host `host` elsewhere: every HA VM placed there whose
    /// volumes are all on shared pools and that is not moving, running ones first (then largest
    /// first, then by id), as one batch under `policy` (each planned with the earlier ones booked).
    /// Returns the restarts and, for every other VM of the host, why it is not restarted (a VM that
    /// fits on no other host included). Read-only; deterministic.
    pub fn plan_ha_restart(&self, host: &str, policy: &Policy) -> (Vec<PlannedRestart>, Vec<(String, String)>) {
        let mut down = Vec::new();
        let mut candidates: Vec<&Vm> = Vec::new();
        for vm in self.vms.values().filter(|vm| vm.host.as_deref() == Some(host)) {
            match self.ha_obstacle(vm) {
                Some(why) => down.push((vm.id.clone(), why)),
                None => candidates.push(vm),
            }
        }
        candidates.sort_by(|a, b| {
            let running = |vm: &Vm| vm.power == PowerState::Running;
            (running(b), b.memory_mib, b.vcpus).cmp(&(running(a), a.memory_mib, a.vcpus)).then(a.id.cmp(&b.id))
        });
        let view = &self.placement.0;
        let mut requests = Vec::with_capacity(candidates.len());
        for vm in candidates {
            match view.move_request(&vm.id, [host.to_string()]) {
                Some(request) => requests.push(request),
                None => down.push((vm.id.clone(), "not booked in the planner's view".to_string())),
            }
        }
        let mut scratch = view.clone();
        let decisions = loop {
            match plan_batch(&mut scratch, &requests, policy) {
                Ok(decisions) => break decisions,
                Err(BatchRefused::DoesNotFit { refusals, .. }) if !refusals.is_empty() => {
                    let refused: BTreeSet<&str> = refusals.iter().map(|r| r.vm()).collect();
                    for refusal in &refusals {
                        down.push((refusal.vm().to_string(), format!("fits on no other host: {refusal}")));
                    }
                    requests.retain(|r| !refused.contains(r.vm.as_str()));
                }
                Err(other) => {
                    for request in requests.drain(..) {
                        down.push((request.vm, other.to_string()));
                    }
                }
            }
        };
        let restarts = decisions
            .into_iter()
            .map(|d| PlannedRestart {
                vm: d.request.vm,
                placement: Placement { host: d.host, cap_percent: policy.cap_percent() },
            })
            .collect();
        down.sort();
        (restarts, down)
    }
}

/// `RestartVmsElsewhere`: fences offline host `host_id` and moves each planned VM (with its
/// volumes) to its target, all checked together, or refuses the whole decision.
pub(crate) fn restart_elsewhere(
    model: &Model,
    ctx: &Ctx<'_>,
    host_id: &str,
    restarts: &[PlannedRestart],
    reason: &str,
) -> Decision {
    let host = model.hosts.get(host_id).ok_or_else(|| ApiError::not_found("host", host_id))?;
    if reason.is_empty() || reason.chars().count() > MAX_HA_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            format!("must be 1-{MAX_HA_REASON} characters, no control characters"),
        ));
    }
    if host.state != HostState::Offline {
        let state = format!("{:?}", host.state).to_lowercase();
        return Err(ApiError::conflict(format!(
            "host '{host_id}' is {state}, not offline: nothing is restarted elsewhere"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut checked: Vec<(&Vm, &Placement)> = Vec::with_capacity(restarts.len());
    for restart in restarts {
        if !seen.insert(restart.vm.as_str()) {
            return Err(ApiError::invalid("restarts", format!("vm '{}' is planned twice", restart.vm)));
        }
        let vm = model
            .vms
            .get(&restart.vm)
            .ok_or_else(|| ApiError::conflict(format!("vm '{}' no longer exists; plan again", restart.vm)))?;
        if vm.host.as_deref() != Some(host_id) {
            return Err(ApiError::conflict(format!("vm '{}' is no longer on host '{host_id}'; plan again", vm.name)));
        }
        if let Some(why) = model.ha_obstacle(vm) {
            return Err(ApiError::conflict(format!("vm '{}' cannot be restarted elsewhere: {why}", vm.name)));
        }
        if restart.placement.host == host_id {
            return Err(ApiError::conflict(format!("vm '{}' cannot restart on the failed host itself", vm.name)));
        }
        checked.push((vm, &restart.placement));
    }
    model.check_moves(checked.iter().copied())?;

    let mut changes = Vec::new();
    for (vm, placement) in &checked {
        for volume in vm.volumes.iter().filter_map(|id| model.volumes.get(id)) {
            let mut bound = volume.clone();
            bound.host = Some(placement.host.clone());
            bound.revision = ctx.index;
            changes.push(Change::PutVolume(bound));
        }
        let mut after = (*vm).clone();
        after.host = Some(placement.host.clone());
        after.revision = ctx.index;
        changes.push(Change::PutVm(after));
    }
    let mut fenced = host.clone();
    fenced.state = HostState::Fenced;
    fenced.state_reason = reason.to_string();
    fenced.state_since = ctx.at.to_string();
    fenced.desired_generation = ctx.index;
    fenced.revision = ctx.index;
    // The targets get their VMs; every other host of the site loses the fenced one from its peers.
    let targets = checked.iter().map(|(_, placement)| placement.host.as_str());
    let peers = model.isolation_peers(host).map(|h| h.id.as_str());
    changes.extend(touch(model, ctx, targets.chain(peers).filter(|id| *id != host_id)));
    changes.push(Change::PutHost(fenced.clone()));
    Ok(Outcome::new(Applied::Host(fenced), changes))
}
