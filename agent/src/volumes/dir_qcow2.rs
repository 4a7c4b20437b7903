//! The `dir-qcow2` backend: volumes are qcow2 files `hci-<volume id>.qcow2` in a libvirt directory
//! storage pool `hci-<host id>-<pool>`, driven only through libvirt's storage API (libvirt runs
//! qemu-img itself). Empty volumes are plain qcow2; image volumes are qcow2 overlays over the
//! verified image file; clones are full, flattened copies, independent of their source (and of any
//! image under it), so the source can be deleted or changed afterwards.
//!
//! Crash safety: libvirt cannot create under a temporary name and rename, so before each create the
//! backend writes an intent marker `hci-<id>.qcow2.creating` (fsynced) next to the volume and removes
//! it only once the volume is complete and fsynced. A volume with its marker still there, or an empty
//! file, is an interrupted create: `list` does not report it and `create` deletes and recreates it.
//! Any other file that libvirt does not see as qcow2 is left alone and reported as an error.
//!
//! Snapshots: this backend takes none. A dir-qcow2 volume is snapshotted through its VM (the
//! hypervisor's disk-only external snapshots, `hypervisor/layers.rs`, which keep their layers beside
//! the volume file and are deleted with it); the snapshot calls and clones from a snapshot answer
//! [`VolumeError::Unsupported`] saying so.
//!
//! It must never touch a volume or file whose name lacks the `hci-` prefix, and never shrink a volume.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

use super::libvirt_pool::{has_code, LibvirtPool};
use super::libvirt_xml::{self, Backing};
use super::names::{check_snapshot_name, check_volume_id, PREFIX};
use super::{PoolUsage, SourceSpec, VolumeBackend, VolumeError, VolumeInfo};
use crate::hypervisor::DiskSource;

const SUFFIX: &str = ".qcow2";
const MARKER_SUFFIX: &str = ".creating";

/// The libvirt volume (and file) name of volume `id`.
pub fn volume_name(id: &str) -> String {
    format!("{PREFIX}{id}{SUFFIX}")
}

/// The volume id of an hci volume name; `None` for names hci did not give.
/// A qcow2 volume of this backend as the reconciler sees it.
fn volume_info(id: &str, path: String, capacity_bytes: u64, allocation_bytes: u64) -> VolumeInfo {
    VolumeInfo {
        id: id.to_string(),
        capacity_bytes,
        allocation_bytes,
        disk: DiskSource::File { path: PathBuf::from(path), format: "qcow2".into() },
    }
}

fn volume_id(name: &str) -> Option<&str> {
    let id = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    check_volume_id(id).ok().map(|()| id)
}

/// The answer to every volume-snapshot call (after the names are checked).
fn snapshots_unsupported(id: &str, action: &'static str) -> VolumeError {
    VolumeError::Unsupported {
        volume: id.to_string(),
        backend: "dir-qcow2",
        action,
        message: "a dir-qcow2 volume is snapshotted through its VM (hypervisor disk-only external snapshots, \
                  hypervisor/layers.rs), not by the storage layer"
            .into(),
    }
}

/// A volume as found in the pool.
enum Found {
    Missing,
    /// Complete and qcow2.
    Valid(StorageVol),
    /// An interrupted create (marker left, or an empty file): safe to delete and recreate.
    Incomplete(StorageVol),
    /// Not qcow2 but not provably ours to throw away.
    Foreign(String),
}

pub struct DirQcow2Pool {
    api_name: String,
    pool: LibvirtPool,
    /// Serialises this pool's changes (create, resize, delete) within the agent.
    changes: Mutex<()>,
}

impl std::fmt::Debug for DirQcow2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirQcow2Pool").field("pool", &self.api_name).field("libvirt", &self.pool).finish()
    }
}

impl DirQcow2Pool {
    /// Opens (defining, building, starting and autostarting when needed) the libvirt pool
    /// `hci-<host_id>-<pool>` at `directory`.
    pub fn open(conn_uri: &str, pool: &str, host_id: &str, directory: &Path) -> Result<Self, VolumeError> {
        for (what, value) in [("pool name", pool), ("host id", host_id)] {
            super::names::check_name(value)
                .map_err(|m| VolumeError::Pool { pool: pool.to_string(), message: format!("{what} '{value}' {m}") })?;
        }
        let libvirt_name = format!("{PREFIX}{host_id}-{pool}");
        Ok(DirQcow2Pool {
            api_name: pool.to_string(),
            pool: LibvirtPool::open(conn_uri, &libvirt_name, directory)?,
            changes: Mutex::new(()),
        })
    }

    /// The pool's name in libvirt.
    pub fn libvirt_name(&self) -> &str {
        self.pool.name()
    }

    pub fn directory(&self) -> &Path {
        self.pool.dir()
    }

    fn marker(&self, id: &str) -> PathBuf {
        self.pool.dir().join(format!("{}{MARKER_SUFFIX}", volume_name(id)))
    }

    fn vol_err<'a>(id: &'a str, action: &'static str) -> impl Fn(VirtError) -> VolumeError + 'a {
        move |e| VolumeError::Volume { volume: id.to_string(), action, message: e.message().to_string() }
    }

    fn io_err<'a>(id: &'a str, action: &'static str) -> impl Fn(std::io::Error) -> VolumeError + 'a {
        move |e| VolumeError::Volume { volume: id.to_string(), action, message: e.to_string() }
    }

    fn find(&self, pool: &StoragePool, id: &str) -> Result<Found, VolumeError> {
        let vol = match pool.lookup_storage_vol_by_name(&volume_name(id)) {
            Ok(vol) => vol,
            Err(e) if has_code(&e, ErrorNumber::NoStorageVolume) => return Ok(Found::Missing),
            Err(e) => return Err(Self::vol_err(id, "looking up")(e)),
        };
        if self.marker(id).exists() {
            return Ok(Found::Incomplete(vol));
        }
        let xml = vol.xml_desc(0).map_err(Self::vol_err(id, "reading the volume XML"))?;
        Ok(self.classify(id, vol, &xml))
    }

    /// What volume `vol` (named for `id`, no create marker) is, from its XML.
    fn classify(&self, id: &str, vol: StorageVol, xml: &str) -> Found {
        let path = libvirt_xml::target_path(xml).map(PathBuf::from);
        let empty_file = path.as_deref().and_then(|p| p.metadata().ok()).is_some_and(|m| m.len() == 0);
        match libvirt_xml::target_format(xml).as_deref() {
            _ if empty_file => Found::Incomplete(vol),
            Some("qcow2") => Found::Valid(vol),
            other => Found::Foreign(format!(
                "the file exists but libvirt reads it as {} instead of qcow2; refusing to overwrite it \
                 (inspect or remove {} by hand)",
                other.unwrap_or("an unknown format"),
                path.map_or_else(|| volume_name(id), |p| p.display().to_string())
            )),
        }
    }

    fn info(id: &str, vol: &StorageVol) -> Result<VolumeInfo, VolumeError> {
        let info = vol.info().map_err(Self::vol_err(id, "reading volume info"))?;
        let path = vol.path().map_err(Self::vol_err(id, "reading the volume path"))?;
        Ok(volume_info(id, path, info.capacity, info.allocation))
    }

    /// Writes the intent marker durably before libvirt starts on the volume.
    fn write_marker(&self, id: &str) -> Result<(), VolumeError> {
        let io = Self::io_err(id, "writing the create marker");
        let mut file = File::create(self.marker(id)).map_err(&io)?;
        std::io::Write::write_all(&mut file, b"an hci volume create is in progress or was interrupted\n")
            .map_err(&io)?;
        file.sync_all().map_err(&io)?;
        sync_dir(self.pool.dir()).map_err(&io)
    }

    /// Makes the finished volume durable, then drops the marker.
    fn finish(&self, id: &str, vol: &StorageVol) -> Result<(), VolumeError> {
        let path = vol.path().map_err(Self::vol_err(id, "reading the volume path"))?;
        let io = Self::io_err(id, "making the new volume durable");
        File::open(&path).and_then(|f| f.sync_all()).map_err(&io)?;
        remove_if_present(&self.marker(id)).map_err(&io)?;
        sync_dir(self.pool.dir()).map_err(&io)
    }

    /// Checks what `source` needs and returns the volume XML and the volume to copy, if any.
    fn plan(
        &self,
        pool: &StoragePool,
        id: &str,
        capacity: u64,
        source: &SourceSpec,
    ) -> Result<(String, Option<StorageVol>), VolumeError> {
        let name = volume_name(id);
        let refuse =
            |action: &'static str, message: String| VolumeError::Volume { volume: id.to_string(), action, message };
        match source {
            SourceSpec::Empty => Ok((libvirt_xml::qcow2_volume(&name, capacity, Backing::None), None)),
            SourceSpec::Image { path, format } => {
                super::check_image_source(id, path, format, capacity)?;
                let backing = Backing::File { path, format };
                Ok((libvirt_xml::qcow2_volume(&name, capacity, backing), None))
            }
            SourceSpec::Clone { from_volume, snapshot } => {
                if let Some(snapshot) = snapshot {
                    check_snapshot_name(from_volume, snapshot)?;
                    return Err(snapshots_unsupported(id, "cloning from a snapshot"));
                }
                check_volume_id(from_volume)?;
                if from_volume == id {
                    return Err(refuse("cloning", "a volume cannot be cloned from itself".into()));
                }
                let from = match self.find(pool, from_volume)? {
                    Found::Valid(vol) => vol,
                    Found::Missing | Found::Incomplete(_) => {
                        return Err(VolumeError::NoSuchVolume(from_volume.clone()))
                    }
                    Found::Foreign(message) => {
                        return Err(refuse("cloning", format!("source {from_volume}: {message}")))
                    }
                };
                let src = from.info().map_err(Self::vol_err(from_volume, "reading volume info"))?;
                if src.capacity > capacity {
                    return Err(refuse(
                        "cloning",
                        format!(
                            "source {from_volume} is {} bytes, larger than the {capacity} bytes asked for",
                            src.capacity
                        ),
                    ));
                }
                let available = pool.info().map_err(self.pool.err("reading pool info"))?.available;
                if src.allocation > available {
                    return Err(VolumeError::NoSpace {
                        pool: self.api_name.clone(),
                        needed: src.allocation,
                        available,
                    });
                }
                Ok((libvirt_xml::qcow2_volume(&name, capacity, Backing::None), Some(from)))
            }
        }
    }

    fn create_locked(&self, id: &str, capacity: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError> {
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        match self.find(&pool, id)? {
            Found::Valid(vol) => return Self::info(id, &vol),
            Found::Foreign(message) => {
                return Err(VolumeError::Volume { volume: id.to_string(), action: "creating", message })
            }
            Found::Incomplete(vol) => {
                tracing::warn!(volume = id, pool = %self.api_name, "found an interrupted create; recreating the volume");
                vol.delete(0).map_err(Self::vol_err(id, "deleting the interrupted volume"))?;
            }
            Found::Missing => {}
        }
        let (xml, copy_of) = self.plan(&pool, id, capacity, source)?;
        self.write_marker(id)?;
        let created = match &copy_of {
            None => StorageVol::create_xml(&pool, &xml, 0),
            Some(from) => StorageVol::create_xml_from(&pool, &xml, from, 0),
        };
        let vol = match created {
            Ok(vol) => vol,
            Err(e) => {
                // libvirt removes what it had written; the marker goes too.
                let _ = remove_if_present(&self.marker(id));
                return Err(Self::vol_err(id, "creating")(e));
            }
        };
        // A copy keeps its source's capacity whatever the XML asks; grow it to the size wanted.
        let have = vol.info().map_err(Self::vol_err(id, "reading volume info"))?.capacity;
        if have < capacity {
            vol.resize(capacity, 0).map_err(Self::vol_err(id, "growing the copy"))?;
        }
        self.finish(id, &vol)?;
        Self::info(id, &vol)
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl VolumeBackend for DirQcow2Pool {
    fn pool(&self) -> &str {
        &self.api_name
    }

    fn kind(&self) -> &'static str {
        "dir-qcow2"
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
        // One listing call and one XML read per volume (it holds format, path and sizes): the
        // reconciler lists every pass, so this cost grows with the host.
        let volumes = pool.list_all_volumes(0).map_err(self.pool.err("listing volumes"))?;
        let mut out = Vec::new();
        for vol in volumes {
            let Ok(name) = vol.name() else { continue };
            let Some(id) = volume_id(&name) else { continue };
            if self.marker(id).exists() {
                continue;
            }
            let xml = match vol.xml_desc(0) {
                Ok(xml) => xml,
                // Deleted since the listing.
                Err(e) if has_code(&e, ErrorNumber::NoStorageVolume) => continue,
                Err(e) => return Err(Self::vol_err(id, "reading the volume XML")(e)),
            };
            match self.classify(id, vol, &xml) {
                Found::Valid(vol) => out.push(match (libvirt_xml::target_path(&xml), libvirt_xml::sizes(&xml)) {
                    (Some(path), Some((capacity, allocation))) => volume_info(id, path, capacity, allocation),
                    _ => Self::info(id, &vol)?,
                }),
                Found::Missing | Found::Incomplete(_) => {}
                Found::Foreign(message) => tracing::warn!(volume = id, pool = %self.api_name, %message, "not listed"),
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
        let vol = match self.find(&pool, id)? {
            Found::Valid(vol) => vol,
            Found::Missing | Found::Incomplete(_) => return Err(VolumeError::NoSuchVolume(id.to_string())),
            Found::Foreign(message) => {
                return Err(VolumeError::Volume { volume: id.into(), action: "resizing", message })
            }
        };
        let from = vol.info().map_err(Self::vol_err(id, "reading volume info"))?.capacity;
        if capacity_bytes < from {
            return Err(VolumeError::Shrink { volume: id.to_string(), from, to: capacity_bytes });
        }
        if capacity_bytes > from {
            vol.resize(capacity_bytes, 0).map_err(Self::vol_err(id, "resizing"))?;
        }
        Self::info(id, &vol)
    }

    fn delete(&self, id: &str) -> Result<(), VolumeError> {
        check_volume_id(id)?;
        let _changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = self.pool.handle()?;
        self.pool.refresh(&pool, true)?;
        match pool.lookup_storage_vol_by_name(&volume_name(id)) {
            Ok(vol) => vol.delete(0).map_err(Self::vol_err(id, "deleting"))?,
            Err(e) if has_code(&e, ErrorNumber::NoStorageVolume) => {}
            Err(e) => return Err(Self::vol_err(id, "looking up")(e)),
        }
        // Disk-only snapshots leave read-only layers beside the volume file (hypervisor/layers.rs).
        let file = self.pool.dir().join(volume_name(id));
        let layers =
            crate::hypervisor::layers::layer_files(&file).map_err(Self::io_err(id, "listing snapshot layers"))?;
        for layer in layers {
            remove_if_present(&layer).map_err(Self::io_err(id, "removing a snapshot layer"))?;
        }
        remove_if_present(&self.marker(id)).map_err(Self::io_err(id, "removing the create marker"))
    }

    fn snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        Err(snapshots_unsupported(id, "taking a snapshot"))
    }

    fn list_snapshots(&self, id: &str) -> Result<Vec<String>, VolumeError> {
        check_volume_id(id)?;
        Err(snapshots_unsupported(id, "listing snapshots"))
    }

    fn rollback(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        Err(snapshots_unsupported(id, "rolling back to a snapshot"))
    }

    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        check_snapshot_name(id, name)?;
        Err(snapshots_unsupported(id, "deleting a snapshot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hci_qcow2_names_are_ours() {
        assert_eq!(volume_name("a1"), "hci-a1.qcow2");
        assert_eq!(volume_id("hci-a1.qcow2"), Some("a1"));
        for foreign in ["a1.qcow2", "hci-a1.qcow2.creating", "hci-.qcow2", "hci-../x.qcow2", "hci-a1.raw", "other"] {
            assert_eq!(volume_id(foreign), None, "{foreign}");
        }
    }
}
