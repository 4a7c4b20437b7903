//! Creating a volume in the LVM thin pool: check the source first (nothing is changed for a request
//! that cannot succeed), make the LV tagged `hci-creating` and `hci-host=<host>` in one `lvcreate`,
//! fill it (image bytes, or grow a clone), make it durable, then drop the `hci-creating` tag. An
//! interrupted rollback of the volume is settled first (`snapshots.rs`), so that a volume whose LV
//! was mid-swap is found rather than made anew.
//!
//! It must never write into an LV it did not just create: an interrupted create is removed and made
//! anew, never reused, so `qemu-img --target-is-zero` may trust that the LV reads as zeros.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;

use super::lvm::LvRow;
use super::naming::{host_tag, lv_name, CREATING_TAG};
use super::{Found, LvmThinPool, Plan, QEMU_IMG_TIMEOUT};
use crate::volumes::command;
use crate::volumes::names::{check_snapshot_name, check_volume_id};
use crate::volumes::{SourceSpec, VolumeError, VolumeInfo};

fn refuse(id: &str, action: &'static str, message: String) -> VolumeError {
    VolumeError::Volume { volume: id.to_string(), action, message }
}

impl LvmThinPool {
    /// `create` with the changes lock held and the id checked.
    pub(super) fn create_locked(
        &self,
        id: &str,
        capacity: u64,
        source: &SourceSpec,
    ) -> Result<VolumeInfo, VolumeError> {
        let (mut rows, mut pool) = self.scan()?;
        if self.settle_rollback(&rows, id)? {
            (rows, pool) = self.scan()?;
        }
        let interrupted = match self.classify(&rows, id) {
            Found::Valid(row) => {
                // Idempotent: the volume as it is (whatever size is asked now), usable.
                self.ensure_active(id, &row)?;
                return self.info(id, &self.existing(id, "creating")?);
            }
            Found::Foreign(message) => return Err(refuse(id, "creating", message)),
            Found::Incomplete(row) => Some(row),
            Found::Missing => None,
        };
        let plan = self.plan(&rows, id, capacity, source)?;
        let size = Self::extents(id, capacity, &pool)?;
        if let Some(row) = interrupted {
            tracing::warn!(volume = id, pool = %self.api_name, "found an interrupted create; recreating the volume");
            self.lvm
                .run(&self.args(&["lvremove", "-f"], &row.lv_name))
                .map_err(Self::vol_err(id, "removing the interrupted volume"))?;
        }
        let name = lv_name(&self.host_id, id);
        self.lvm.run(&self.lvcreate_args(&name, &plan, size)).map_err(Self::vol_err(id, "creating"))?;
        if let Err(e) = self.fill(id, &name, &plan, size) {
            // Best effort: a leftover keeps its hci-creating tag and is redone by the next create.
            if let Err(cleanup) = self.lvm.run(&self.args(&["lvremove", "-f"], &name)) {
                tracing::warn!(volume = id, error = %cleanup, "could not remove the unfinished volume");
            }
            return Err(e);
        }
        self.lvm
            .run(&self.args(&["lvchange", "--deltag", CREATING_TAG], &name))
            .map_err(Self::vol_err(id, "marking the volume complete"))?;
        tracing::info!(volume = id, pool = %self.api_name, bytes = size, "volume created");
        self.info(id, &self.existing(id, "creating")?)
    }

    /// Checks what `source` needs, before anything is changed.
    fn plan(&self, rows: &[LvRow], id: &str, capacity: u64, source: &SourceSpec) -> Result<Plan, VolumeError> {
        match source {
            SourceSpec::Empty => Ok(Plan::Empty),
            SourceSpec::Image { path, format } => {
                super::super::check_image_source(id, path, format, capacity)?;
                Ok(Plan::Image { path: path.clone(), format: format.clone() })
            }
            SourceSpec::Clone { from_volume, snapshot } => {
                match snapshot {
                    Some(snap) => check_snapshot_name(from_volume, snap)?,
                    None => check_volume_id(from_volume)?,
                }
                if from_volume == id {
                    return Err(refuse(id, "cloning", "a volume cannot be cloned from itself".into()));
                }
                let from = match self.classify(rows, from_volume) {
                    Found::Valid(row) => row,
                    Found::Missing | Found::Incomplete(_) => {
                        return Err(VolumeError::NoSuchVolume(from_volume.clone()))
                    }
                    Found::Foreign(message) => {
                        return Err(refuse(id, "cloning", format!("source {from_volume}: {message}")))
                    }
                };
                // From a snapshot: a thin snapshot of the snapshot's LV, as independent of it.
                let from = match snapshot {
                    Some(snap) => self.snapshot_row(rows, from_volume, snap)?,
                    None => from,
                };
                let from_size = self.info(from_volume, &from)?.capacity_bytes;
                if from_size > capacity {
                    let message = format!(
                        "source {from_volume} is {from_size} bytes, larger than the {capacity} bytes asked for"
                    );
                    return Err(refuse(id, "cloning", message));
                }
                Ok(Plan::Clone { from_lv: from.lv_name, from_size })
            }
        }
    }

    /// One `lvcreate` that makes the LV with both tags, active, without activation skip.
    fn lvcreate_args(&self, name: &str, plan: &Plan, size: u64) -> Vec<String> {
        let tags = ["--addtag", CREATING_TAG, "--addtag", &host_tag(&self.host_id)].map(String::from);
        let common = ["lvcreate", "--yes", "--activate", "y", "--setactivationskip", "n", "--name", name];
        let mut args: Vec<String> = common.iter().map(|s| s.to_string()).chain(tags).collect();
        match plan {
            Plan::Empty | Plan::Image { .. } => {
                let thin = ["--type", "thin", "--thinpool", &self.thin_pool, "--virtualsize", &format!("{size}b")];
                args.extend(thin.map(String::from));
                args.push(self.vg.clone());
            }
            // A thin snapshot: no size, same pool, shares the source's blocks copy-on-write.
            Plan::Clone { from_lv, .. } => {
                args.push("--snapshot".into());
                args.push(format!("{}/{from_lv}", self.vg));
            }
        }
        args
    }

    /// Gives a new LV its content, durably.
    fn fill(&self, id: &str, name: &str, plan: &Plan, size: u64) -> Result<(), VolumeError> {
        match plan {
            Plan::Empty => Ok(()),
            Plan::Image { path, format } => {
                let device = self.device(name);
                let mut args: Vec<OsString> =
                    ["convert", "-q", "-n", "--target-is-zero", "-f", format, "-t", "writeback", "-O", "raw"]
                        .map(OsString::from)
                        .into();
                args.extend([path.as_os_str().to_owned(), device.as_os_str().to_owned()]);
                command::run("qemu-img", &args, &[("LC_ALL", "C")], QEMU_IMG_TIMEOUT)
                    .map_err(Self::vol_err(id, "writing the image"))?;
                sync_device(&device).map_err(|e| refuse(id, "making the volume durable", e.to_string()))
            }
            Plan::Clone { from_size, .. } => {
                let row = match self.find(id)? {
                    Found::Valid(row) | Found::Incomplete(row) => row,
                    Found::Missing | Found::Foreign(_) => {
                        return Err(refuse(id, "cloning", format!("the new LV {name} is not in the report")))
                    }
                };
                self.ensure_active(id, &row)?;
                if size > *from_size {
                    let want = format!("{size}b");
                    self.lvm
                        .run(&self.args(&["lvextend", "-L", &want], name))
                        .map_err(Self::vol_err(id, "growing the clone"))?;
                }
                Ok(())
            }
        }
    }
}

/// Flushes the block device's written pages down to the thin pool (and the pool's metadata commit).
fn sync_device(device: &Path) -> std::io::Result<()> {
    File::open(device)?.sync_all()
}
