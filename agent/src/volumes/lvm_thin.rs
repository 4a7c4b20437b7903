//! The `lvm-thin` backend: volumes are thin LVs `hci-<host>-<volume id>` in an existing LVM thin
//! pool `VG/POOL`, handed to VMs as block devices (`DiskSource::Block { path: /dev/VG/LV }`).
//!
//! Why the LVM tools and not libvirt: libvirt's `logical` pool type makes plain or old-style sparse
//! snapshot LVs, never thin LVs in a thin pool, and it cannot take thin snapshots; listing and
//! deleting through it would add a second view of the same VG for nothing. So everything goes
//! through the `lvm` command-line tools (the LVM API on Debian), run with explicit argument vectors
//! and JSON reports (`lvm.rs`, `command.rs`); image contents are written by `qemu-img convert`.
//!
//! - Empty: `lvcreate --type thin` of the capacity (rounded up to whole extents; a new thin LV reads
//!   as zeros).
//! - Image: a thin LV, then `qemu-img convert -n --target-is-zero -O raw image /dev/VG/LV` (only the
//!   image's data is written, so the volume stays thin), then fsync. Capacity must cover the image.
//! - Clone: a thin snapshot (`lvcreate -s` of the source LV, same pool): an independent thin volume
//!   sharing blocks copy-on-write, which outlives its source. It is created without LVM's activation
//!   skip flag, so it activates like any volume at boot, and grown when more capacity is asked for.
//! - Resize grows only (`lvextend`); delete is `lvremove` (of the volume's snapshots first), a
//!   missing volume is fine.
//! - Snapshots: thin snapshots `hci-<host>-<id>+<name>`; rollback replaces the volume's LV with a
//!   thin snapshot of the snapshot; a clone from a snapshot is a thin snapshot of it (`snapshots.rs`).
//!
//! Ownership: an LV is this host's only with the name prefix `hci-<host>-` *and* the tag
//! `hci-host=<host>` (names alone are ambiguous, see `naming.rs`), and it must be a thin volume of
//! this pool. Anything else is neither listed nor changed, and a create or delete that meets one is
//! refused. The pool must zero new blocks (`lvchange -Zy`); otherwise a new volume could read another
//! tenant's old data, and `open` refuses it.
//!
//! Crash safety: every LV is created with the tag `hci-creating` in the same `lvcreate` (LVM commits
//! the LV and its tags atomically), and the tag is removed only once the content is complete and
//! durable. A tagged LV is an interrupted create: `list` hides it, `create` removes and redoes it.
//!
//! Without udev (containers, minimal hosts) LVM is told to make the device nodes itself.

mod create;
mod lvm;
mod naming;
mod snapshots;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use self::lvm::{LvRow, Lvm};
use self::naming::{check_fits, check_lvm_name, host_tag, lv_name, volume_id, CREATING_TAG};
use super::command::Failure;
use super::names::{check_name, check_volume_id};
use super::{PoolUsage, SourceSpec, VolumeBackend, VolumeError, VolumeInfo};
use crate::hypervisor::DiskSource;

/// Writing an image onto a volume may take long (large images, slow disks); a hung one is killed.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// A warning is logged above this thin-pool metadata use: a full metadata LV stops the whole pool.
const METADATA_WARN_PERCENT: f64 = 80.0;

/// An LV as found in the VG.
enum Found {
    Missing,
    /// Complete, ours.
    Valid(LvRow),
    /// Ours, with the `hci-creating` tag still on: safe to remove and redo.
    Incomplete(LvRow),
    /// Has our name but is not provably ours, or not a thin volume of this pool.
    Foreign(String),
}

/// What a create will do, checked before anything is changed.
enum Plan {
    Empty,
    Image { path: PathBuf, format: String },
    Clone { from_lv: String, from_size: u64 },
}

pub struct LvmThinPool {
    api_name: String,
    host_id: String,
    vg: String,
    thin_pool: String,
    lvm: Lvm,
    /// Serialises this pool's changes (create, resize, delete) within the agent.
    changes: Mutex<()>,
}

impl std::fmt::Debug for LvmThinPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LvmThinPool")
            .field("pool", &self.api_name)
            .field("host", &self.host_id)
            .field("thin_pool", &format_args!("{}/{}", self.vg, self.thin_pool))
            .finish()
    }
}

impl LvmThinPool {
    /// Opens the existing thin pool `vg/thin_pool` as API pool `pool` of host `host_id`: checks that
    /// the VG and the thin pool exist and that the pool zeroes new blocks, and activates the pool.
    pub fn open(pool: &str, host_id: &str, vg: &str, thin_pool: &str) -> Result<Self, VolumeError> {
        let refuse = |message: String| VolumeError::Pool { pool: pool.to_string(), message };
        for (what, value) in [("pool name", pool), ("host id", host_id)] {
            check_name(value).map_err(|m| refuse(format!("{what} '{value}' {m}")))?;
        }
        for (what, value) in [("volume group", vg), ("thin pool", thin_pool)] {
            check_lvm_name(value).map_err(|m| refuse(format!("{what} name '{value}' {m}")))?;
        }
        let this = LvmThinPool {
            api_name: pool.to_string(),
            host_id: host_id.to_string(),
            vg: vg.to_string(),
            thin_pool: thin_pool.to_string(),
            lvm: Lvm::new(),
            changes: Mutex::new(()),
        };
        if !this.lvm.vg_exists(vg).map_err(this.pool_err("looking up the volume group"))? {
            return Err(refuse(format!("volume group {vg} not found (vgs); create it or fix the configuration")));
        }
        let (_, pool_row) = this.scan()?;
        if !pool_row.zeroes_new_blocks() {
            return Err(refuse(format!(
                "thin pool {vg}/{thin_pool} does not zero newly provisioned blocks, so a new volume could read \
                 another volume's old data; enable it with 'lvchange -Zy {vg}/{thin_pool}'"
            )));
        }
        if !pool_row.active() {
            tracing::info!(pool = %this.api_name, thin_pool = %format!("{vg}/{thin_pool}"), "activating the thin pool");
            this.lvm
                .run(&this.args(&["lvchange", "-ay"], &this.thin_pool))
                .map_err(this.pool_err("activating the thin pool"))?;
        }
        Ok(this)
    }

    /// The volume group.
    pub fn vg(&self) -> &str {
        &self.vg
    }

    /// The thin pool LV in the volume group.
    pub fn thin_pool(&self) -> &str {
        &self.thin_pool
    }

    /// `lvm <words...> VG/LV`.
    fn args(&self, words: &[&str], lv: &str) -> Vec<String> {
        words.iter().map(|w| w.to_string()).chain([format!("{}/{lv}", self.vg)]).collect()
    }

    fn pool_err(&self, action: &'static str) -> impl Fn(Failure) -> VolumeError + '_ {
        move |e| VolumeError::Pool {
            pool: self.api_name.clone(),
            message: format!("thin pool {}/{}: {action}: {e}", self.vg, self.thin_pool),
        }
    }

    fn vol_err<'a>(id: &'a str, action: &'static str) -> impl Fn(Failure) -> VolumeError + 'a {
        move |e| VolumeError::Volume { volume: id.to_string(), action, message: e.to_string() }
    }

    fn device(&self, lv: &str) -> PathBuf {
        Path::new("/dev").join(&self.vg).join(lv)
    }

    /// Every LV of the VG, and the thin pool's own row (an error when the pool is gone or is not one).
    fn scan(&self) -> Result<(Vec<LvRow>, LvRow), VolumeError> {
        let rows = self.lvm.lvs(&self.vg).map_err(self.pool_err("listing logical volumes"))?;
        let refuse = |message: String| VolumeError::Pool { pool: self.api_name.clone(), message };
        let pool = match rows.iter().find(|r| r.lv_name == self.thin_pool) {
            None => {
                return Err(refuse(format!(
                    "thin pool {} not found in volume group {} (lvs); create it with \
                     'lvcreate --type thin-pool' or fix the configuration",
                    self.thin_pool, self.vg
                )))
            }
            Some(row) if row.segtype != "thin-pool" => {
                return Err(refuse(format!(
                    "{}/{} is a {} LV, not a thin pool; refusing to use it",
                    self.vg, self.thin_pool, row.segtype
                )))
            }
            Some(row) => row.clone(),
        };
        Ok((rows, pool))
    }

    /// Why LV `row` is not provably this host's thin volume in this pool (`None`: it is ours).
    fn not_ours(&self, row: &LvRow) -> Option<String> {
        let (vg, name, tag) = (&self.vg, &row.lv_name, host_tag(&self.host_id));
        if !row.has_tag(&tag) {
            return Some(format!(
                "LV {vg}/{name} exists without the tag {tag}, so this host's agent did not make it; \
                 refusing to touch it"
            ));
        }
        if row.segtype != "thin" || row.pool_lv != self.thin_pool {
            return Some(format!(
                "LV {vg}/{name} is a {} LV{}, not a thin volume of {}; refusing to touch it",
                row.segtype,
                if row.pool_lv.is_empty() { String::new() } else { format!(" in pool {}", row.pool_lv) },
                self.thin_pool
            ));
        }
        None
    }

    fn classify(&self, rows: &[LvRow], id: &str) -> Found {
        let name = lv_name(&self.host_id, id);
        let Some(row) = rows.iter().find(|r| r.lv_name == name) else { return Found::Missing };
        if let Some(message) = self.not_ours(row) {
            return Found::Foreign(message);
        }
        if row.has_tag(CREATING_TAG) {
            Found::Incomplete(row.clone())
        } else {
            Found::Valid(row.clone())
        }
    }

    fn find(&self, id: &str) -> Result<Found, VolumeError> {
        let (rows, _) = self.scan()?;
        Ok(self.classify(&rows, id))
    }

    fn info(&self, id: &str, row: &LvRow) -> Result<VolumeInfo, VolumeError> {
        let size = row.size().map_err(|message| VolumeError::Volume {
            volume: id.to_string(),
            action: "reading the LV report",
            message,
        })?;
        Ok(VolumeInfo {
            id: id.to_string(),
            capacity_bytes: size,
            allocation_bytes: row.used_bytes(size),
            disk: DiskSource::Block { path: self.device(&row.lv_name) },
        })
    }

    /// A valid volume of `id`, or the error a caller that needs one returns.
    fn existing(&self, id: &str, action: &'static str) -> Result<LvRow, VolumeError> {
        match self.find(id)? {
            Found::Valid(row) => Ok(row),
            Found::Missing | Found::Incomplete(_) => Err(VolumeError::NoSuchVolume(id.to_string())),
            Found::Foreign(message) => Err(VolumeError::Volume { volume: id.to_string(), action, message }),
        }
    }

    /// Activates an LV that is not (after a reboot, or a snapshot that LVM made with activation skip).
    fn ensure_active(&self, id: &str, row: &LvRow) -> Result<(), VolumeError> {
        if row.active() {
            return Ok(());
        }
        self.lvm
            .run(&self.args(&["lvchange", "-ay", "-K"], &row.lv_name))
            .map(|_| ())
            .map_err(Self::vol_err(id, "activating"))
    }

    /// `capacity` rounded up to whole extents of the VG, as LVM will allocate it.
    fn extents(id: &str, capacity: u64, pool: &LvRow) -> Result<u64, VolumeError> {
        let err = |message: String| VolumeError::Volume { volume: id.to_string(), action: "sizing", message };
        let extent = pool.extent_size().map_err(err)?;
        capacity.div_ceil(extent).checked_mul(extent).ok_or_else(|| err(format!("{capacity} bytes is too large")))
    }
}

impl VolumeBackend for LvmThinPool {
    fn pool(&self) -> &str {
        &self.api_name
    }

    fn kind(&self) -> &'static str {
        "lvm-thin"
    }

    fn usage(&self) -> Result<PoolUsage, VolumeError> {
        let (_, pool) = self.scan()?;
        let err = |message: String| VolumeError::Pool { pool: self.api_name.clone(), message };
        let capacity = pool.size().map_err(err)?;
        if pool.data_percent().is_none() {
            return Err(err(format!("thin pool {}/{} is inactive: its use is not known", self.vg, self.thin_pool)));
        }
        if let Some(meta) = pool.metadata_percent().filter(|p| *p >= METADATA_WARN_PERCENT) {
            tracing::warn!(pool = %self.api_name, metadata_percent = meta, "thin pool metadata is filling up; extend it (lvextend --poolmetadatasize)");
        }
        let allocation = pool.used_bytes(capacity).min(capacity);
        Ok(PoolUsage { capacity_bytes: capacity, allocation_bytes: allocation, available_bytes: capacity - allocation })
    }

    fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let (rows, _) = self.scan()?;
        let mut out = Vec::new();
        for id in rows.iter().filter_map(|r| volume_id(&self.host_id, &r.lv_name)) {
            match self.classify(&rows, id) {
                Found::Valid(row) => out.push(self.info(id, &row)?),
                Found::Missing | Found::Incomplete(_) => {}
                Found::Foreign(message) => tracing::debug!(volume = id, pool = %self.api_name, %message, "not listed"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn create(&self, id: &str, capacity_bytes: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError> {
        check_fits(&self.vg, &self.host_id, id)?;
        super::check_capacity(id, capacity_bytes)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        self.create_locked(id, capacity_bytes, source)
    }

    fn resize(&self, id: &str, capacity_bytes: u64) -> Result<VolumeInfo, VolumeError> {
        check_volume_id(id)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let (rows, pool) = self.scan()?;
        let row = match self.classify(&rows, id) {
            Found::Valid(row) => row,
            Found::Missing | Found::Incomplete(_) => return Err(VolumeError::NoSuchVolume(id.to_string())),
            Found::Foreign(message) => {
                return Err(VolumeError::Volume { volume: id.into(), action: "resizing", message })
            }
        };
        let from = self.info(id, &row)?.capacity_bytes;
        let want = Self::extents(id, capacity_bytes, &pool)?;
        // Compared in whole extents: asking again for a size LVM rounded up is not a shrink.
        if want < from {
            return Err(VolumeError::Shrink { volume: id.to_string(), from, to: capacity_bytes });
        }
        if want > from {
            let size = format!("{want}b");
            self.lvm.run(&self.args(&["lvextend", "-L", &size], &row.lv_name)).map_err(Self::vol_err(id, "growing"))?;
            tracing::info!(volume = id, pool = %self.api_name, from, to = want, "volume grown");
        }
        let row = self.existing(id, "resizing")?;
        self.info(id, &row)
    }

    fn delete(&self, id: &str) -> Result<(), VolumeError> {
        check_volume_id(id)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let (rows, _) = self.scan()?;
        let row = match self.classify(&rows, id) {
            Found::Foreign(message) => {
                return Err(VolumeError::Volume { volume: id.into(), action: "deleting", message })
            }
            Found::Missing => None,
            Found::Valid(row) | Found::Incomplete(row) => Some(row),
        };
        // Snapshots (and rollback leftovers) first: none outlives its volume, even after a crash.
        self.remove_dependents(&rows, id)?;
        if let Some(row) = row {
            self.lvm.run(&self.args(&["lvremove", "-f"], &row.lv_name)).map_err(Self::vol_err(id, "deleting"))?;
            tracing::info!(volume = id, pool = %self.api_name, "volume deleted");
        }
        Ok(())
    }

    fn snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        self.take_snapshot(id, name)
    }

    fn list_snapshots(&self, id: &str) -> Result<Vec<String>, VolumeError> {
        self.snapshot_names(id)
    }

    fn rollback(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        self.roll_back(id, name)
    }

    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        self.remove_snapshot(id, name)
    }
}
