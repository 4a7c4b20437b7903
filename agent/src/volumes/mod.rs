//! The storage interface: volumes in one pool, behind one narrow trait with real backends
//! (`dir_qcow2.rs` through a libvirt directory pool; LVM-thin and Ceph RBD later) and an in-memory
//! fake of the same shape.
//!
//! It must never delete or change a volume it did not create: every volume name it touches carries the
//! hci prefix of this host. Sizes are bytes here; the API speaks GiB.

pub mod dir_qcow2;
pub mod fake;
mod image_fetch;
mod image_header;
pub mod images;
mod libvirt_pool;
mod libvirt_xml;
pub mod lvm_thin;
pub mod names;
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
    /// Another volume of the same pool.
    Clone {
        from_volume: String,
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
    fn usage(&self) -> Result<PoolUsage, VolumeError>;
    fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError>;
    /// Creates `id` with `capacity_bytes` from `source`; returns the existing volume when it is there.
    fn create(&self, id: &str, capacity_bytes: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError>;
    /// Grows a volume; shrinking is refused.
    fn resize(&self, id: &str, capacity_bytes: u64) -> Result<VolumeInfo, VolumeError>;
    /// Deletes a volume (and its snapshots); deleting a missing one is not an error.
    fn delete(&self, id: &str) -> Result<(), VolumeError>;
}
