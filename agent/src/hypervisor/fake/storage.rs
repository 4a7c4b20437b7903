//! The fake's disk hotplug and disk-only snapshots, on one [`FakeDomain`], with the libvirt
//! implementation's rules: live side first, then the definition; another disk at the target is an
//! error; a guest that ignores unplug requests makes a live detach time out and leaves the
//! definition alone; snapshots only of qcow2 file disks, an existing name is Ok; revert only while
//! stopped, only with every disk of the snapshot still attached, and it drops that snapshot and
//! every later one.

use super::{FakeDomain, FakeSnapshot};
use crate::hypervisor::{layers, DiskSource, DiskSpec, HypervisorError};

fn disk_error(domain: &str, target: &str, action: &'static str, message: String) -> HypervisorError {
    HypervisorError::Disk { domain: domain.into(), target: target.into(), action, message }
}

fn snapshot_error(domain: &str, snapshot: &str, action: &'static str, message: String) -> HypervisorError {
    HypervisorError::Snapshot { domain: domain.into(), snapshot: snapshot.into(), action, message }
}

/// Adds `disk` to `disks` (kept in target order, as libvirt keeps them) unless it is there.
fn add(domain: &str, side: &str, disks: &mut Vec<DiskSpec>, disk: &DiskSpec) -> Result<(), HypervisorError> {
    match disks.iter().find(|d| d.target == disk.target) {
        Some(d) if d.source == disk.source => Ok(()),
        Some(other) => Err(disk_error(
            domain,
            &disk.target,
            "attaching",
            format!("the {side} definition has another disk there ({:?}); refusing to replace it", other.source),
        )),
        None => {
            let at = disks.iter().position(|d| d.target > disk.target).unwrap_or(disks.len());
            disks.insert(at, disk.clone());
            Ok(())
        }
    }
}

pub(super) fn attach(domain: &str, d: &mut FakeDomain, disk: &DiskSpec) -> Result<(), HypervisorError> {
    if let Some(running) = d.running_spec.as_mut() {
        add(domain, "running", &mut running.disks, disk)?;
    }
    if let Some(spec) = d.spec.as_mut() {
        add(domain, "persistent", &mut spec.disks, disk)?;
    }
    Ok(())
}

pub(super) fn detach(domain: &str, d: &mut FakeDomain, target: &str) -> Result<(), HypervisorError> {
    if let Some(running) = d.running_spec.as_mut() {
        if running.disks.iter().any(|disk| disk.target == target) {
            if d.ignores_unplug {
                return Err(disk_error(
                    domain,
                    target,
                    "detaching from the running guest",
                    "the guest did not release it (fake: ignores unplug); the unplug request stays pending and \
                     the persistent definition still has the disk"
                        .into(),
                ));
            }
            running.disks.retain(|disk| disk.target != target);
        }
    }
    if let Some(spec) = d.spec.as_mut() {
        spec.disks.retain(|disk| disk.target != target);
    }
    Ok(())
}

pub(super) fn snapshot(domain: &str, d: &mut FakeDomain, name: &str) -> Result<(), HypervisorError> {
    layers::check_snapshot_name(name).map_err(|m| snapshot_error(domain, name, "creating", m))?;
    if d.snapshots.iter().any(|s| s.name == name) {
        return Ok(());
    }
    let disks = d.running_spec.as_ref().or(d.spec.as_ref()).map(|s| s.disks.clone()).unwrap_or_default();
    if disks.is_empty() {
        return Err(snapshot_error(domain, name, "creating", "the domain has no disks".into()));
    }
    if let Some(disk) =
        disks.iter().find(|disk| !matches!(&disk.source, DiskSource::File { format, .. } if format == "qcow2"))
    {
        return Err(snapshot_error(
            domain,
            name,
            "creating",
            format!(
                "disk {} is {:?}; only qcow2 files can take a disk-only snapshot (nothing was changed)",
                disk.target, disk.source
            ),
        ));
    }
    d.snapshots.push(FakeSnapshot { name: name.to_string(), disks });
    Ok(())
}

pub(super) fn revert(domain: &str, d: &mut FakeDomain, name: &str) -> Result<(), HypervisorError> {
    if d.active() {
        return Err(snapshot_error(
            domain,
            name,
            "reverting",
            "the domain is running; external snapshots are reverted only while it is stopped".into(),
        ));
    }
    let Some(at) = d.snapshots.iter().position(|s| s.name == name) else {
        return Err(HypervisorError::NoSuchSnapshot { domain: domain.into(), snapshot: name.into() });
    };
    let attached = d.spec.as_ref().map(|s| s.disks.as_slice()).unwrap_or_default();
    if let Some(gone) = d.snapshots[at].disks.iter().find(|disk| !attached.contains(disk)) {
        return Err(snapshot_error(
            domain,
            name,
            "reverting",
            format!("its disk {} is no longer attached at {}; nothing was changed", gone.target, gone.target),
        ));
    }
    d.snapshots.truncate(at);
    d.reverts += 1;
    Ok(())
}
