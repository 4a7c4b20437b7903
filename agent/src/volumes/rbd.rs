//! The `rbd` backend: volumes are raw Ceph RBD images `hci-<volume id>` in one RBD pool, seen
//! through a libvirt storage pool of type `rbd` named `hci-<host id>-<pool>` (no auth: cephx is not
//! wired in yet). libvirt creates, resizes, lists and deletes the images; an image volume is filled
//! by `qemu-img convert` from the verified image file (converted to raw on the way), and a clone is
//! a full, flattened `qemu-img` copy of its source, independent of it (see `rbd/copy.rs` for why not
//! libvirt). VMs get `DiskSource::Rbd { pool, image, monitors }`.
//!
//! Snapshots are RBD image snapshots `hci-<id>@<name>`, made, listed, rolled back and removed with
//! the `rbd` CLI (libvirt has no RBD snapshot API; `rbd/cli.rs`, `rbd/snapshots.rs`). A clone from a
//! snapshot is the same flattened `qemu-img` copy, read from `hci-<id>@<name>`, so neither the source
//! nor the snapshot is held by it. Deleting a volume deletes its snapshots first (RBD refuses to
//! remove an image that has some; libvirt's delete-with-snapshots flag removes them one by one, so an
//! interrupted delete leaves the image with fewer snapshots, and the next delete finishes it).
//!
//! Crash safety: before each create the backend makes a marker image `hci-<id>+creating` (1 byte) in
//! the same RBD pool and deletes it only once the volume is complete. A volume whose marker is still
//! there is an interrupted create: `list` does not report it and `create` deletes and recreates it.
//! The marker lives in the cluster, not on this host, so whichever host retries sees it; `+` cannot
//! occur in a volume id, so no marker can be taken for a volume or the other way round.
//!
//! It must never touch an image whose name lacks the `hci-` prefix, and never shrink a volume.

mod cli;
mod copy;
mod pool;
mod snapshots;
mod xml;

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

use self::cli::RbdCli;
use self::copy::Source;
use self::pool::RbdLibvirtPool;
pub use self::xml::Monitor;
use super::libvirt_pool::has_code;
use super::names::{check_name, check_snapshot_name, check_volume_id, PREFIX};
use super::{PoolUsage, SourceSpec, VolumeBackend, VolumeError, VolumeInfo};
use crate::hypervisor::DiskSource;

const MARKER_SUFFIX: &str = "+creating";
/// The marker's size: libvirt refuses a volume of capacity 0.
const MARKER_BYTES: u64 = 1;

/// The RBD image (and libvirt volume) name of volume `id`.
pub fn image_name(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn marker_name(id: &str) -> String {
    format!("{PREFIX}{id}{MARKER_SUFFIX}")
}

/// The volume id of an hci image name; `None` for markers and names hci did not give.
fn volume_id(name: &str) -> Option<&str> {
    let id = name.strip_prefix(PREFIX)?;
    check_volume_id(id).ok().map(|()| id)
}

/// A volume as found in the pool.
enum Found {
    Missing,
    Valid(StorageVol),
    /// An interrupted create (its marker is there), with the image if it got that far.
    Incomplete(Option<StorageVol>),
}

pub struct RbdPool {
    api_name: String,
    rbd_pool: String,
    monitors: Vec<Monitor>,
    pool: RbdLibvirtPool,
    /// For snapshots.
    cli: RbdCli,
    /// Serialises this pool's changes (create, resize, delete, snapshots) within the agent.
    changes: Mutex<()>,
}

impl std::fmt::Debug for RbdPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdPool").field("pool", &self.api_name).field("libvirt", &self.pool).finish()
    }
}

fn vol_err<'a>(id: &'a str, action: &'static str) -> impl Fn(VirtError) -> VolumeError + 'a {
    move |e| VolumeError::Volume { volume: id.to_string(), action, message: e.message().to_string() }
}

fn lookup(pool: &StoragePool, id: &str, name: &str) -> Result<Option<StorageVol>, VolumeError> {
    match pool.lookup_storage_vol_by_name(name) {
        Ok(vol) => Ok(Some(vol)),
        Err(e) if has_code(&e, ErrorNumber::NoStorageVolume) => Ok(None),
        Err(e) => Err(vol_err(id, "looking up")(e)),
    }
}

/// Deletes an image with its snapshots (libvirt's rbd backend removes them first when asked).
fn remove(id: &str, vol: &StorageVol, action: &'static str) -> Result<(), VolumeError> {
    vol.delete(virt::sys::VIR_STORAGE_VOL_DELETE_WITH_SNAPSHOTS).map_err(vol_err(id, action))
}

impl RbdPool {
    /// Opens (defining, starting and autostarting when needed) the libvirt rbd pool
    /// `hci-<host_id>-<pool>` over RBD pool `rbd_pool` of the cluster whose monitors are `monitors`
    /// (`IP:PORT`, `[IPV6]:PORT` or a host name).
    pub fn open(
        conn_uri: &str,
        pool: &str,
        host_id: &str,
        rbd_pool: &str,
        monitors: &[String],
    ) -> Result<Self, VolumeError> {
        let refuse = |message: String| VolumeError::Pool { pool: pool.to_string(), message };
        for (what, value) in [("pool name", pool), ("host id", host_id), ("RBD pool name", rbd_pool)] {
            check_name(value).map_err(|m| refuse(format!("{what} '{value}' {m}")))?;
        }
        let monitors = monitors.iter().map(|m| Monitor::parse(m)).collect::<Result<Vec<_>, _>>().map_err(refuse)?;
        let libvirt_name = format!("{PREFIX}{host_id}-{pool}");
        Ok(RbdPool {
            api_name: pool.to_string(),
            rbd_pool: rbd_pool.to_string(),
            pool: RbdLibvirtPool::open(conn_uri, &libvirt_name, rbd_pool, &monitors)?,
            cli: RbdCli::new(rbd_pool, &monitors),
            monitors,
            changes: Mutex::new(()),
        })
    }

    /// The pool's name in libvirt.
    pub fn libvirt_name(&self) -> &str {
        self.pool.name()
    }

    /// The disk source of volume `id` as a domain needs it.
    pub fn disk_source(&self, id: &str) -> DiskSource {
        DiskSource::Rbd {
            pool: self.rbd_pool.clone(),
            image: image_name(id),
            monitors: self.monitors.iter().map(Monitor::mon_host).collect(),
        }
    }

    fn find(&self, pool: &StoragePool, id: &str) -> Result<Found, VolumeError> {
        let vol = lookup(pool, id, &image_name(id))?;
        let marker = lookup(pool, id, &marker_name(id))?;
        Ok(match (vol, marker) {
            (None, None) => Found::Missing,
            (Some(vol), None) => Found::Valid(vol),
            (vol, Some(_)) => Found::Incomplete(vol),
        })
    }

    /// Volume `id` when it is there and complete; `NoSuchVolume` otherwise.
    fn valid(&self, pool: &StoragePool, id: &str) -> Result<StorageVol, VolumeError> {
        match self.find(pool, id)? {
            Found::Valid(vol) => Ok(vol),
            Found::Missing | Found::Incomplete(_) => Err(VolumeError::NoSuchVolume(id.to_string())),
        }
    }

    fn info(&self, id: &str, vol: &StorageVol) -> Result<VolumeInfo, VolumeError> {
        let info = vol.info().map_err(vol_err(id, "reading volume info"))?;
        Ok(VolumeInfo {
            id: id.to_string(),
            capacity_bytes: info.capacity,
            allocation_bytes: info.allocation,
            disk: self.disk_source(id),
        })
    }

    /// Checks what `source` needs; returns where the bytes come from (`None`: an empty volume).
    fn plan<'a>(
        &self,
        pool: &StoragePool,
        id: &str,
        capacity: u64,
        source: &'a SourceSpec,
    ) -> Result<Option<Source<'a>>, VolumeError> {
        let refuse =
            |action: &'static str, message: String| VolumeError::Volume { volume: id.to_string(), action, message };
        match source {
            SourceSpec::Empty => Ok(None),
            SourceSpec::Image { path, format } => {
                super::check_image_source(id, path, format, capacity)?;
                Ok(Some(Source::File { path, format }))
            }
            SourceSpec::Clone { from_volume, snapshot } => {
                match snapshot {
                    Some(snap) => check_snapshot_name(from_volume, snap)?,
                    None => check_volume_id(from_volume)?,
                }
                if from_volume == id {
                    return Err(refuse("cloning", "a volume cannot be cloned from itself".into()));
                }
                let from = self.valid(pool, from_volume)?;
                let src = match snapshot {
                    Some(snap) => self.snapshot_info(from_volume, snap)?.size,
                    None => from.info().map_err(vol_err(from_volume, "reading volume info"))?.capacity,
                };
                if src > capacity {
                    return Err(refuse(
                        "cloning",
                        format!("source {from_volume} is {src} bytes, larger than the {capacity} bytes asked for"),
                    ));
                }
                // No space check: RBD images are thin, and libvirt reports a clone source's
                // allocation as its full capacity; a full cluster fails the copy instead.
                Ok(Some(Source::Rbd { image: image_name(from_volume), snapshot: snapshot.as_deref() }))
            }
        }
    }

    fn create_locked(&self, id: &str, capacity: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError> {
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        match self.find(&pool, id)? {
            Found::Valid(vol) => return self.info(id, &vol),
            Found::Incomplete(vol) => {
                tracing::warn!(volume = id, pool = %self.api_name, "found an interrupted create; recreating the volume");
                if let Some(vol) = vol {
                    remove(id, &vol, "deleting the interrupted volume")?;
                }
            }
            Found::Missing => {}
        }
        let fill = self.plan(&pool, id, capacity, source)?;
        if lookup(&pool, id, &marker_name(id))?.is_none() {
            StorageVol::create_xml(&pool, &xml::volume(&marker_name(id), MARKER_BYTES), 0)
                .map_err(vol_err(id, "creating the create marker"))?;
        }
        let vol = StorageVol::create_xml(&pool, &xml::volume(&image_name(id), capacity), 0)
            .map_err(vol_err(id, "creating"))?;
        if let Some(from) = fill {
            if let Err(message) = copy::fill(&self.rbd_pool, &self.monitors, &image_name(id), &from) {
                // Best effort: whatever stays behind keeps its marker and is redone next time.
                if remove(id, &vol, "deleting the half-filled volume").is_ok() {
                    let _ = self.drop_marker(&pool, id);
                }
                return Err(VolumeError::Volume { volume: id.to_string(), action: "filling", message });
            }
        }
        self.drop_marker(&pool, id)?;
        self.info(id, &vol)
    }

    fn drop_marker(&self, pool: &StoragePool, id: &str) -> Result<(), VolumeError> {
        match lookup(pool, id, &marker_name(id))? {
            Some(marker) => remove(id, &marker, "deleting the create marker"),
            None => Ok(()),
        }
    }
}

impl VolumeBackend for RbdPool {
    fn pool(&self) -> &str {
        &self.api_name
    }

    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn shared(&self) -> bool {
        true
    }

    fn usage(&self) -> Result<PoolUsage, VolumeError> {
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, false)?;
        let info = pool.info().map_err(self.pool.err("reading pool info"))?;
        Ok(PoolUsage {
            capacity_bytes: info.capacity,
            allocation_bytes: info.allocation,
            available_bytes: info.available,
        })
    }

    fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, false)?;
        let names = pool.list_volumes().map_err(self.pool.err("listing volumes"))?;
        let present: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for id in names.iter().filter_map(|n| volume_id(n)) {
            if present.contains(marker_name(id).as_str()) {
                continue;
            }
            // None: deleted since the listing.
            if let Some(vol) = lookup(&pool, id, &image_name(id))? {
                out.push(self.info(id, &vol)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn create(&self, id: &str, capacity_bytes: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError> {
        check_volume_id(id)?;
        super::check_capacity(id, capacity_bytes)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        self.create_locked(id, capacity_bytes, source)
    }

    fn resize(&self, id: &str, capacity_bytes: u64) -> Result<VolumeInfo, VolumeError> {
        check_volume_id(id)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        let vol = self.valid(&pool, id)?;
        let from = vol.info().map_err(vol_err(id, "reading volume info"))?.capacity;
        if capacity_bytes < from {
            return Err(VolumeError::Shrink { volume: id.to_string(), from, to: capacity_bytes });
        }
        if capacity_bytes > from {
            vol.resize(capacity_bytes, 0).map_err(vol_err(id, "resizing"))?;
        }
        self.info(id, &vol)
    }

    fn delete(&self, id: &str) -> Result<(), VolumeError> {
        check_volume_id(id)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        if let Some(vol) = lookup(&pool, id, &image_name(id))? {
            remove(id, &vol, "deleting")?;
        }
        self.drop_marker(&pool, id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_foreign_images_are_not_volumes() {
        assert_eq!(image_name("a1"), "hci-a1");
        assert_eq!(volume_id("hci-a1"), Some("a1"));
        assert_eq!(volume_id("hci-a.creating"), Some("a.creating"));
        for foreign in [marker_name("a1").as_str(), "a1", "hci-", "hci-../x", "hci-.x", "other", "hci-a b"] {
            assert_eq!(volume_id(foreign), None, "{foreign}");
        }
    }
}
