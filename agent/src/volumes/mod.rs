//! The storage interface: volumes in one pool, behind one narrow trait with real backends
//! (`dir_qcow2.rs` through a libvirt directory pool, `lvm_thin.rs` over an LVM thin pool, `rbd.rs`
//! over a Ceph RBD pool) and an in-memory fake of the same shape (`fake.rs`).
//!
//! Volume snapshots (take, list oldest first, roll back, delete, clone from one) belong to the
//! storage layer on LVM-thin and RBD. A dir-qcow2 volume is snapshotted through its VM instead
//! (hypervisor disk-only external snapshots, `hypervisor/layers.rs`), so its backend refuses them
//! with [`VolumeError::Unsupported`].
//!
//! It must never delete or change a volume it did not create: every volume name it touches carries the
//! hci prefix of this host. Sizes are bytes here; the API speaks GiB.

mod command;
pub mod dir_qcow2;
pub mod fake;
mod image_fetch;
mod image_header;
pub mod images;
mod libvirt_pool;
mod libvirt_xml;
pub mod lvm_thin;
pub mod names;
mod pool_link;
pub mod rbd;

use std::path::PathBuf;

use crate::hypervisor::DiskSource;

/// What a new volume starts from, resolved to local files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Empty,
    /// A verified image file in the image store.
    Image {
        path: PathBuf,
        format: String,
    },
    /// Another volume of the same pool, as it is now or (`snapshot`) as one of its snapshots holds
    /// it. Either way the new volume is independent: its source and the snapshot may be deleted.
    Clone {
        from_volume: String,
        snapshot: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub disk: DiskSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("pool {pool}: {message}")]
    Pool { pool: String, message: String },
    #[error("volume {volume}: {action}: {message}")]
    Volume { volume: String, action: &'static str, message: String },
    #[error("volume {0} does not exist")]
    NoSuchVolume(String),
    #[error("volume {volume}: shrinking from {from} to {to} bytes is refused")]
    Shrink { volume: String, from: u64, to: u64 },
    #[error("pool {pool}: {needed} bytes needed, {available} available")]
    NoSpace { pool: String, needed: u64, available: u64 },
    #[error("volume {volume}, snapshot {snapshot}: {action}: {message}")]
    Snapshot { volume: String, snapshot: String, action: &'static str, message: String },
    #[error("volume {volume} has no snapshot {snapshot}")]
    NoSuchSnapshot { volume: String, snapshot: String },
    /// What this backend does not do (the message says what does).
    #[error("volume {volume}: {action} is not supported by the {backend} backend: {message}")]
    Unsupported { volume: String, backend: &'static str, action: &'static str, message: String },
}

/// What every backend checks of an image before a volume is made from it: an absolute path, a
/// readable header of `format`, no backing file of its own, and a virtual size within `capacity_bytes`.
pub fn check_image_source(
    id: &str,
    path: &std::path::Path,
    format: &str,
    capacity_bytes: u64,
) -> Result<(), VolumeError> {
    let refuse =
        |action: &'static str, message: String| VolumeError::Volume { volume: id.to_string(), action, message };
    if !path.is_absolute() {
        return Err(refuse("checking the image", format!("{} is not an absolute path", path.display())));
    }
    let facts = image_header::inspect(path, format)
        .map_err(|e| refuse("reading the image", format!("{} ({format}): {e}", path.display())))?;
    if facts.has_backing_file {
        return Err(refuse("checking the image", format!("{} has a backing file of its own; refused", path.display())));
    }
    if facts.virtual_size > capacity_bytes {
        return Err(refuse(
            "checking the size",
            format!(
                "image {} is {} bytes, larger than the {capacity_bytes} bytes asked for",
                path.display(),
                facts.virtual_size
            ),
        ));
    }
    Ok(())
}

/// The refusal every backend gives a zero-sized create.
pub fn check_capacity(id: &str, capacity_bytes: u64) -> Result<(), VolumeError> {
    if capacity_bytes == 0 {
        return Err(VolumeError::Volume {
            volume: id.into(),
            action: "creating",
            message: "capacity must be > 0".into(),
        });
    }
    Ok(())
}

pub trait VolumeBackend: Send + Sync {
    /// The pool's name as the API knows it (`default`, ...).
    fn pool(&self) -> &str;
    /// `dir-qcow2`, `lvm-thin`, `rbd`.
    fn kind(&self) -> &'static str;
    /// Whether other hosts see the same volumes (a Ceph pool): then a volume missing from this host's
    /// desired state may be in use elsewhere, so it is deleted only when the desired state retires it
    /// explicitly, and a listing shows other hosts' volumes too.
    fn shared(&self) -> bool {
        false
    }
    fn usage(&self) -> Result<PoolUsage, VolumeError>;
    fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError>;
    /// Creates `id` with `capacity_bytes` from `source`; returns the existing volume when it is there.
    fn create(&self, id: &str, capacity_bytes: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError>;
    /// Grows a volume; shrinking is refused.
    fn resize(&self, id: &str, capacity_bytes: u64) -> Result<VolumeInfo, VolumeError>;
    /// Deletes a volume (and its snapshots); deleting a missing one is not an error.
    fn delete(&self, id: &str) -> Result<(), VolumeError>;
    /// Takes snapshot `name` of volume `id` (crash-consistent if a VM is writing to it); Ok when the
    /// snapshot already exists. Names follow [`names::check_name`].
    fn snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError>;
    /// The names of volume `id`'s snapshots, oldest first.
    fn list_snapshots(&self, id: &str) -> Result<Vec<String>, VolumeError>;
    /// Returns volume `id` to the content of its snapshot `name`; the snapshot stays, later ones too,
    /// and the capacity stays as it is (grown after the snapshot: the rest reads as zeros).
    ///
    /// The caller guarantees that no running VM uses the volume (its disk would change under it);
    /// backends refuse when they can see that one does.
    fn rollback(&self, id: &str, name: &str) -> Result<(), VolumeError>;
    /// Deletes snapshot `name` of volume `id`; a missing snapshot (or volume) is not an error.
    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError>;
}
