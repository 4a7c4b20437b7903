//! Actions on an existing VM: power (start, stop, reboot). Moves between hosts are in `moves`.
//!
//! It exists to record the operator's desired state for the agents to converge to. It must never
//! pretend an action happened on a host: it only changes desired state (power, reboot counter,
//! host), and refuses actions that make no sense for the VM's current desired state.

use hci_shared::command::{Applied, Placement, PowerAction};
use hci_shared::resources::{PowerState, Vm};
use hci_shared::ApiError;

use crate::apply::{Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;

fn existing<'m>(model: &'m Model, id: &str) -> Result<&'m Vm, ApiError> {
    model.vms.get(id).ok_or_else(|| ApiError::not_found("vm", id))
}

/// The VM's new record, and its hosts' (old and new) desired generations moved.
fn changed(model: &Model, mut vm: Vm, ctx: &Ctx<'_>) -> Outcome {
    vm.revision = ctx.index;
    let old_host = model.vms.get(&vm.id).and_then(|old| old.host.clone());
    let mut changes = touch(model, ctx, old_host.as_deref().into_iter().chain(vm.host.as_deref()));
    changes.insert(0, Change::PutVm(vm.clone()));
    Outcome::new(Applied::Vm(vm), changes)
}

/// An unplaced VM being started goes where the leader decided (checked again now), its volumes with it.
fn start_placed(model: &Model, ctx: &Ctx<'_>, vm: &Vm, placement: &Placement) -> Decision {
    let host = model.check_placement(vm, placement)?;
    let mut started = vm.clone();
    started.host = Some(host.clone());
    started.power = PowerState::Running;
    let mut outcome = changed(model, started, ctx);
    for volume in vm.volumes.iter().filter_map(|v| model.volumes.get(v)).filter(|v| v.host.is_none()) {
        let mut bound = volume.clone();
        bound.host = Some(host.clone());
        bound.revision = ctx.index;
        outcome.changes.insert(0, Change::PutVolume(bound));
    }
    Ok(outcome)
}

pub(crate) fn set_power(
    model: &Model,
    ctx: &Ctx<'_>,
    id: &str,
    action: PowerAction,
    placement: Option<&Placement>,
) -> Decision {
    let vm = existing(model, id)?;
    if let (PowerAction::Start, Some(placement), None) = (action, placement, &vm.host) {
        return start_placed(model, ctx, vm, placement);
    }
    let wanted = match action {
        PowerAction::Start => PowerState::Running,
        PowerAction::Stop => PowerState::Stopped,
        PowerAction::Reboot => {
            if vm.power == PowerState::Stopped {
                return Err(ApiError::conflict(format!("vm '{}' is stopped; start it instead of rebooting", vm.name)));
            }
            let mut rebooted = vm.clone();
            rebooted.reboot_count = rebooted.reboot_count.saturating_add(1);
            return Ok(changed(model, rebooted, ctx));
        }
    };
    if vm.power == wanted {
        return Ok(Outcome::new(Applied::Vm(vm.clone()), Vec::new()));
    }
    let mut powered = vm.clone();
    powered.power = wanted;
    Ok(changed(model, powered, ctx))
}
