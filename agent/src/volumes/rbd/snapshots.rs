//! Volume snapshots of the rbd backend: RBD image snapshots `hci-<id>@<name>`, through the `rbd`
//! CLI (`cli.rs`), each change under the pool's change lock and only on a complete volume (one
//! whose create marker is gone).
//!
//! - Take: `rbd snap create` (crash-consistent under a running VM); an existing snapshot is kept.
//! - List: `rbd snap ls`, ordered by snapshot id (RBD hands them out increasing), oldest first.
//! - Roll back: `rbd snap rollback` rewrites the image and also sets its size to the snapshot's, so
//!   a volume grown since is grown back (`rbd resize` only ever grows). Refused while any client has
//!   the image open (a running VM would see its disk change under it). An interrupted rollback
//!   leaves a mix of old and new objects: the caller retries, which finishes it.
//! - Delete: `rbd snap rm` (after `unprotect` if someone protected it); missing is fine.
//!
//! It must never roll back or remove a snapshot of an image that is not a complete hci volume.

use std::sync::PoisonError;

use super::cli::SnapInfo;
use super::{image_name, RbdPool};
use crate::volumes::command::Failure;
use crate::volumes::names::{check_snapshot_name, check_volume_id};
use crate::volumes::VolumeError;

/// `rbd` exits with the errno: ENOENT for a missing image.
const ENOENT: i32 = 2;

fn snap_err<'a>(id: &'a str, snapshot: &'a str, action: &'static str) -> impl Fn(Failure) -> VolumeError + 'a {
    move |e| VolumeError::Snapshot {
        volume: id.to_string(),
        snapshot: snapshot.to_string(),
        action,
        message: e.to_string(),
    }
}

impl RbdPool {
    /// Snapshot `name` of volume `id` as RBD reports it; `NoSuchSnapshot` when there is none.
    pub(super) fn snapshot_info(&self, id: &str, name: &str) -> Result<SnapInfo, VolumeError> {
        let snaps = self.cli.snapshots(&image_name(id)).map_err(snap_err(id, name, "listing snapshots"))?;
        snaps
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| VolumeError::NoSuchSnapshot { volume: id.to_string(), snapshot: name.to_string() })
    }

    pub(super) fn take_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        self.valid(&pool, id)?;
        self.cli.create_snapshot(&image_name(id), name).map_err(snap_err(id, name, "taking the snapshot"))?;
        tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "snapshot taken");
        Ok(())
    }

    pub(super) fn snapshot_names(&self, id: &str) -> Result<Vec<String>, VolumeError> {
        check_volume_id(id)?;
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, false)?;
        self.valid(&pool, id)?;
        let snaps = self.cli.snapshots(&image_name(id)).map_err(|e| VolumeError::Volume {
            volume: id.to_string(),
            action: "listing snapshots",
            message: e.to_string(),
        })?;
        Ok(snaps.into_iter().map(|s| s.name).collect())
    }

    pub(super) fn roll_back(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        let capacity = self.valid(&pool, id)?.info().map_err(super::vol_err(id, "reading volume info"))?.capacity;
        let snap = self.snapshot_info(id, name)?;
        let image = image_name(id);
        let users = self.cli.watchers(&image).map_err(snap_err(id, name, "checking who has the volume open"))?;
        if users > 0 {
            return Err(VolumeError::Snapshot {
                volume: id.to_string(),
                snapshot: name.to_string(),
                action: "rolling back",
                message: format!("{users} client(s) have the volume open (a running VM?); refused"),
            });
        }
        self.cli.rollback(&image, name).map_err(snap_err(id, name, "rolling back"))?;
        if capacity > snap.size {
            self.cli.resize(&image, capacity).map_err(snap_err(id, name, "growing the volume back"))?;
        }
        tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "volume rolled back");
        Ok(())
    }

    pub(super) fn remove_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let image = image_name(id);
        let snaps = match self.cli.snapshots(&image) {
            Ok(snaps) => snaps,
            // The image is gone, and its snapshots with it.
            Err(e) if e.code == Some(ENOENT) => return Ok(()),
            Err(e) => return Err(snap_err(id, name, "listing snapshots")(e)),
        };
        let Some(snap) = snaps.into_iter().find(|s| s.name == name) else { return Ok(()) };
        self.cli.remove_snapshot(&image, &snap).map_err(snap_err(id, name, "deleting the snapshot"))?;
        tracing::info!(volume = id, snapshot = name, pool = %self.api_name, "snapshot deleted");
        Ok(())
    }
}
