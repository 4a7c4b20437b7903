//! Snapshots in the desired state: volume snapshots (RBD, LVM-thin: the volume backend) and VM
//! disk-only snapshots (qcow2 file disks: the hypervisor), taken when missing, and the one-shot
//! returns to them (volume rollback, VM revert), each acted on once per serial.
//!
//! It exists to keep these bookkeeping rules out of the pass: the agent records what it took and what
//! it rolled back in its persisted state (`Applied`), so a pass needs no listing call per volume, and
//! every step is safe to repeat (taking an existing snapshot and deleting a missing one are Ok) when
//! the agent dies before recording it. It must never roll a volume back under a running VM.

use std::collections::BTreeSet;

use hci_shared::agent::{Rollback, VmDesired, VmRunState, VolumeDesired};

use super::HostResources;
use crate::store::AgentState;

/// Whether a one-shot return is due. The first pass that sees the volume or VM records the serial it
/// carries then (0 without a request) as done, as reboots do, so a new host does not replay an old
/// request; any higher serial later is due once.
fn due(state: &mut AgentState, key: String, request: Option<&Rollback>, changed: &mut bool) -> Option<Rollback> {
    let applied = *state.applied.rollbacks.entry(key).or_insert_with(|| {
        *changed = true;
        request.map_or(0, |r| r.serial)
    });
    request.filter(|r| r.serial > applied).cloned()
}

/// Forgets what was applied to a deleted volume.
pub(super) fn forget_volume(state: &mut AgentState, id: &str) {
    state.applied.rollbacks.remove(&format!("volume/{id}"));
    state.applied.volume_snapshots.remove(id);
}

/// Forgets what was applied to an undefined VM.
pub(super) fn forget_vm(state: &mut AgentState, id: &str) {
    state.applied.rollbacks.remove(&format!("vm/{id}"));
    state.applied.vm_snapshots.remove(id);
}

/// Rolls back, snapshots and deletes snapshots of one volume. `in_use_by` names a running VM that
/// uses it (no rollback then). Returns whether the persisted state changed.
pub(super) fn volume(
    res: &HostResources,
    state: &mut AgentState,
    volume: &VolumeDesired,
    in_use_by: Option<&str>,
) -> Result<bool, String> {
    let mut changed = false;
    let backend = res.pools.get(&volume.pool).ok_or_else(|| format!("pool '{}' is not configured", volume.pool))?;
    let key = format!("volume/{}", volume.id);
    if let Some(rollback) = due(state, key.clone(), volume.rollback.as_ref(), &mut changed) {
        if let Some(vm) = in_use_by {
            return Err(format!("rollback to {} waits: VM {vm} runs on this volume", rollback.to));
        }
        backend.rollback(&volume.id, &rollback.to).map_err(|e| e.to_string())?;
        state.applied.rollbacks.insert(key, rollback.serial);
        changed = true;
    }
    let taken = state.applied.volume_snapshots.get(&volume.id).cloned().unwrap_or_default();
    let wanted: BTreeSet<&String> = volume.snapshots.iter().collect();
    let mut record: Vec<String> = Vec::new();
    for snapshot in &taken {
        if wanted.contains(snapshot) {
            record.push(snapshot.clone());
        } else if let Err(e) = backend.delete_snapshot(&volume.id, snapshot) {
            record.push(snapshot.clone());
            save(state, &volume.id, record, &taken, &mut changed);
            return Err(e.to_string());
        }
    }
    for snapshot in volume.snapshots.iter().filter(|s| !taken.contains(s)) {
        if let Err(e) = backend.snapshot(&volume.id, snapshot) {
            save(state, &volume.id, record, &taken, &mut changed);
            return Err(e.to_string());
        }
        record.push(snapshot.clone());
    }
    save(state, &volume.id, record, &taken, &mut changed);
    Ok(changed)
}

fn save(state: &mut AgentState, id: &str, record: Vec<String>, taken: &[String], changed: &mut bool) {
    if record != taken {
        if record.is_empty() {
            state.applied.volume_snapshots.remove(id);
        } else {
            state.applied.volume_snapshots.insert(id.to_string(), record);
        }
        *changed = true;
    }
}

/// A due VM revert, before its domain is started: only while the domain is stopped. Returns whether
/// the persisted state changed.
pub(super) fn vm_revert(
    res: &HostResources,
    state: &mut AgentState,
    vm: &VmDesired,
    domain: &str,
    run_state: Option<VmRunState>,
) -> Result<bool, String> {
    let mut changed = false;
    let key = format!("vm/{}", vm.id);
    let Some(revert) = due(state, key.clone(), vm.revert.as_ref(), &mut changed) else { return Ok(changed) };
    match run_state {
        Some(VmRunState::Stopped | VmRunState::Crashed) => {}
        None | Some(VmRunState::Missing | VmRunState::Departed) => {
            return Err(format!("revert to {}: the VM is not defined here", revert.to))
        }
        Some(_) => return Err(format!("revert to {} waits: stop the VM first (power: stopped)", revert.to)),
    }
    res.hypervisor.revert_disks(domain, &revert.to).map_err(|e| e.to_string())?;
    // The revert consumed that snapshot and dropped every later one; the next step takes it again
    // (of the reverted disks, so it holds what it held).
    if let Some(taken) = state.applied.vm_snapshots.get_mut(&vm.id) {
        if let Some(at) = taken.iter().position(|s| s == &revert.to) {
            taken.truncate(at);
        }
    }
    state.applied.rollbacks.insert(key, revert.serial);
    Ok(true)
}

/// Takes the VM's missing disk-only snapshots (its domain is defined). Returns whether the persisted
/// state changed.
pub(super) fn vm_snapshots(
    res: &HostResources,
    state: &mut AgentState,
    vm: &VmDesired,
    domain: &str,
) -> Result<bool, String> {
    let taken = state.applied.vm_snapshots.get(&vm.id).cloned().unwrap_or_default();
    if let Some(gone) = taken.iter().find(|s| !vm.snapshots.contains(s)) {
        return Err(format!(
            "snapshot {gone}: deleting a VM's disk-only snapshot is not supported (revert to an earlier one drops it)"
        ));
    }
    let mut record = taken.clone();
    let mut result = Ok(());
    for snapshot in vm.snapshots.iter().filter(|s| !taken.contains(s)) {
        if let Err(e) = res.hypervisor.snapshot_disks(domain, snapshot) {
            result = Err(e.to_string());
            break;
        }
        record.push(snapshot.clone());
    }
    let changed = record != taken;
    if changed {
        state.applied.vm_snapshots.insert(vm.id.clone(), record);
    }
    result.map(|()| changed)
}
