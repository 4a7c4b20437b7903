//! Volume snapshots of the lvm-thin backend: thin snapshots `hci-<host>-<id>+<name>` of the volume's
//! LV in the same thin pool, tagged `hci-host=<host>` and `hci-seq=<n>` (their order; LVM's creation
//! time has whole seconds only), with activation skip (never activated, no device node needed).
//!
//! - Take: `lvcreate --snapshot` of the volume (LVM suspends it for that instant, so a snapshot under a
//!   running VM is crash-consistent); one LVM command, so there is nothing half-made to recover.
//! - Roll back: not `lvconvert --merge`, which consumes the snapshot and makes LVM forget the origin
//!   of every other snapshot of the volume (lvm2 issue #193), so a second rollback could not merge.
//!   Instead a thin snapshot of the snapshot, `…++new` (grown to the volume's capacity), replaces the
//!   volume: rename the volume to `…++old`, `…++new` to the volume's name, remove `…++old`. Refused
//!   while the volume's LV is open (a running VM). A crash in between is settled by the next create
//!   or snapshot call on that volume ([`LvmThinPool::settle_rollback`]): with the volume's name
//!   free, `…++new` (else `…++old`) takes it; leftovers are removed.
//! - Delete: `lvremove` of the snapshot's LV; deleting the volume removes its snapshots and rollback
//!   LVs first, then the volume, so no snapshot outlives its volume.
//! - A clone from a snapshot is a thin snapshot of the snapshot's LV (`create.rs`), independent of
//!   it like every thin snapshot.
//!
//! It must never change an LV that lacks this host's tag or is not a thin LV of this pool.

use std::sync::PoisonError;

use super::lvm::LvRow;
use super::naming::{check_snapshot_fits, host_tag, is_dependent, lv_name, rollback_lvs, snapshot_name, SEQ_TAG};
use super::{Found, LvmThinPool};
use crate::volumes::command::Failure;
use crate::volumes::names::check_volume_id;
use crate::volumes::VolumeError;

/// The largest `hci-seq=<n>` tag of an LV (a snapshot copied from another may carry two); 0 without.
fn seq(row: &LvRow) -> u64 {
    row.lv_tags.split(',').filter_map(|t| t.strip_prefix(SEQ_TAG)?.parse().ok()).max().unwrap_or(0)
}

fn snap_err(id: &str, snapshot: &str, action: &'static str, message: String) -> VolumeError {
    VolumeError::Snapshot { volume: id.to_string(), snapshot: snapshot.to_string(), action, message }
}

impl LvmThinPool {
    /// LV `name` if it is there and ours; `Err` (why not) when it is there but not ours.
    fn owned<'r>(&self, rows: &'r [LvRow], name: &str) -> Result<Option<&'r LvRow>, String> {
        match rows.iter().find(|r| r.lv_name == name) {
            None => Ok(None),
            Some(row) => match self.not_ours(row) {
                None => Ok(Some(row)),
                Some(why) => Err(why),
            },
        }
    }

    /// Volume `id`'s snapshot LVs, oldest first.
    fn snapshot_rows<'r>(&self, rows: &'r [LvRow], id: &str) -> Vec<(&'r str, &'r LvRow)> {
        let mut snaps: Vec<_> = rows
            .iter()
            .filter(|r| self.not_ours(r).is_none())
            .filter_map(|r| snapshot_name(&self.host_id, id, &r.lv_name).map(|name| (name, r)))
            .collect();
        snaps.sort_by_key(|(name, row)| (seq(row), *name));
        snaps
    }

    /// Snapshot `snapshot` of volume `id`: its LV row, or `NoSuchSnapshot`.
    pub(super) fn snapshot_row(&self, rows: &[LvRow], id: &str, snapshot: &str) -> Result<LvRow, VolumeError> {
        let found = self.snapshot_rows(rows, id).into_iter().find(|(name, _)| *name == snapshot);
        let missing = || VolumeError::NoSuchSnapshot { volume: id.to_string(), snapshot: snapshot.to_string() };
        found.map(|(_, row)| row.clone()).ok_or_else(missing)
    }

    /// The complete volume `id`, or the error a snapshot call gives without one.
    fn snapshot_subject(&self, rows: &[LvRow], id: &str, action: &'static str) -> Result<LvRow, VolumeError> {
        match self.classify(rows, id) {
            Found::Valid(row) => Ok(row),
            Found::Missing | Found::Incomplete(_) => Err(VolumeError::NoSuchVolume(id.to_string())),
            Found::Foreign(message) => Err(VolumeError::Volume { volume: id.to_string(), action, message }),
        }
    }

    /// Finishes an interrupted rollback of volume `id` (see the module header); true when it changed
    /// anything (the caller scans again). Called with the changes lock held.
    pub(super) fn settle_rollback(&self, rows: &[LvRow], id: &str) -> Result<bool, VolumeError> {
        let volume = lv_name(&self.host_id, id);
        let [new, old] = rollback_lvs(&self.host_id, id);
        let ours = |name: &str| matches!(self.owned(rows, name), Ok(Some(_)));
        let (mut has_new, mut has_old) = (ours(&new), ours(&old));
        if !has_new && !has_old {
            return Ok(false);
        }
        let err = |action: &'static str| Self::vol_err(id, action);
        if rows.iter().all(|r| r.lv_name != volume) {
            // The volume's name is free: the copy (or, without one, the old volume) takes it.
            let from = if has_new { &new } else { &old };
            tracing::warn!(volume = id, pool = %self.api_name, from = %from, "finishing an interrupted rollback");
            self.lvm.run(&self.rename(from, &volume)).map_err(err("finishing an interrupted rollback"))?;
            if has_new {
                has_new = false;
            } else {
                has_old = false;
            }
        }
        for (present, lv) in [(has_new, &new), (has_old, &old)] {
            if present {
                self.lvm.run(&self.args(&["lvremove", "-f"], lv)).map_err(err("removing a rollback leftover"))?;
            }
        }
        Ok(true)
    }

    /// `lvrename VG FROM TO`.
    fn rename(&self, from: &str, to: &str) -> Vec<String> {
        ["lvrename", &self.vg, from, to].map(String::from).into()
    }

    /// Removes volume `id`'s snapshots and rollback LVs (before the volume itself is removed).
    pub(super) fn remove_dependents(&self, rows: &[LvRow], id: &str) -> Result<(), VolumeError> {
        let ours = rows.iter().filter(|r| is_dependent(&self.host_id, id, &r.lv_name) && self.not_ours(r).is_none());
        for row in ours {
            self.lvm
                .run(&self.args(&["lvremove", "-f"], &row.lv_name))
                .map_err(Self::vol_err(id, "deleting a snapshot of the volume"))?;
        }
        Ok(())
    }

    /// The LVs as they are after settling any interrupted rollback of `id`.
    fn settled_rows(&self, id: &str) -> Result<Vec<LvRow>, VolumeError> {
        let (rows, _) = self.scan()?;
        if self.settle_rollback(&rows, id)? {
            return Ok(self.scan()?.0);
        }
        Ok(rows)
    }

    pub(super) fn take_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        let lv = check_snapshot_fits(&self.vg, &self.host_id, id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let rows = self.settled_rows(id)?;
        let volume = self.snapshot_subject(&rows, id, "taking a snapshot")?;
        match self.owned(&rows, &lv) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(why) => return Err(snap_err(id, name, "taking the snapshot", why)),
        }
        let next =
            self.snapshot_rows(&rows, id).iter().map(|(_, r)| seq(r)).chain([seq(&volume)]).max().unwrap_or(0) + 1;
        let tags = ["--addtag".into(), host_tag(&self.host_id), "--addtag".into(), format!("{SEQ_TAG}{next}")];
        let mut args: Vec<String> =
            ["lvcreate", "--yes", "--snapshot", "--setactivationskip", "y", "--name", &lv].map(String::from).into();
        args.extend(tags);
        args.push(format!("{}/{}", self.vg, volume.lv_name));
        self.lvm.run(&args).map_err(|e| snap_err(id, name, "taking the snapshot", e.to_string()))?;
        tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "snapshot taken");
        Ok(())
    }

    pub(super) fn snapshot_names(&self, id: &str) -> Result<Vec<String>, VolumeError> {
        check_volume_id(id)?;
        let (rows, _) = self.scan()?;
        self.snapshot_subject(&rows, id, "listing snapshots")?;
        Ok(self.snapshot_rows(&rows, id).into_iter().map(|(name, _)| name.to_string()).collect())
    }

    pub(super) fn roll_back(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_fits(&self.vg, &self.host_id, id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let rows = self.settled_rows(id)?;
        let volume = self.snapshot_subject(&rows, id, "rolling back")?;
        let snap = self.snapshot_row(&rows, id, name)?;
        if volume.open() {
            let why = "the volume is open (a running VM?); refused".to_string();
            return Err(snap_err(id, name, "rolling back", why));
        }
        let [new, old] = rollback_lvs(&self.host_id, id);
        let fail = |action: &'static str| move |e: Failure| snap_err(id, name, action, e.to_string());
        let mut args: Vec<String> =
            ["lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--activate", "y"].map(String::from).into();
        args.extend(["--name".into(), new.clone(), "--addtag".into(), host_tag(&self.host_id)]);
        args.push(format!("{}/{}", self.vg, snap.lv_name));
        self.lvm.run(&args).map_err(fail("copying the snapshot"))?;
        let capacity = self.info(id, &volume)?.capacity_bytes;
        if capacity > self.info(id, &snap)?.capacity_bytes {
            let size = format!("{capacity}b");
            if let Err(e) = self.lvm.run(&self.args(&["lvextend", "-L", &size], &new)) {
                let _ = self.lvm.run(&self.args(&["lvremove", "-f"], &new));
                return Err(fail("growing the copy to the volume's capacity")(e));
            }
        }
        // From here on a crash is settled by the next call (see the module header).
        self.lvm.run(&self.rename(&volume.lv_name, &old)).map_err(fail("setting the volume aside"))?;
        self.lvm.run(&self.rename(&new, &volume.lv_name)).map_err(fail("putting the copy in its place"))?;
        self.lvm.run(&self.args(&["lvremove", "-f"], &old)).map_err(fail("removing the old volume"))?;
        tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "volume rolled back");
        Ok(())
    }

    pub(super) fn remove_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        let lv = check_snapshot_fits(&self.vg, &self.host_id, id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let (rows, _) = self.scan()?;
        match self.owned(&rows, &lv) {
            Ok(None) => Ok(()),
            Err(why) => Err(snap_err(id, name, "deleting the snapshot", why)),
            Ok(Some(row)) => {
                self.lvm
                    .run(&self.args(&["lvremove", "-f"], &row.lv_name))
                    .map_err(|e| snap_err(id, name, "deleting the snapshot", e.to_string()))?;
                tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "snapshot deleted");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_tag_is_read_from_the_tag_list() {
        let row = |tags: &str| LvRow { lv_tags: tags.into(), ..LvRow::default() };
        assert_eq!(seq(&row("hci-host=h,hci-seq=3")), 3);
        assert_eq!(seq(&row("hci-seq=2,hci-host=h,hci-seq=11")), 11);
        assert_eq!(seq(&row("hci-host=h,hci-seq=x")), 0);
        assert_eq!(seq(&row("")), 0);
    }
}
