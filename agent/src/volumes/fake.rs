//! An in-memory [`VolumeBackend`] with the semantics of the real ones (idempotent create, grow only,
//! deleting a missing volume is fine, clones need their source, images are never larger than their
//! volume, capacity accounted against the pool, snapshots as on RBD and LVM-thin) plus failure
//! injection, for reconciler tests.
//!
//! Each volume holds a few bytes of content (set with [`FakePool::write`]) so that snapshots,
//! rollbacks and clones can be checked for what they carry. Accounting is thick (a volume uses its
//! whole capacity; snapshots cost nothing) so tests can predict `NoSpace`. It must never touch the
//! filesystem or libvirt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::names::{check_snapshot_name, check_volume_id, PREFIX};
use super::{PoolUsage, SourceSpec, VolumeBackend, VolumeError, VolumeInfo};
use crate::hypervisor::DiskSource;

/// The trait methods, for failure injection and call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeOp {
    Usage,
    List,
    Create,
    Resize,
    Delete,
    Snapshot,
    ListSnapshots,
    Rollback,
    DeleteSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVolume {
    pub capacity_bytes: u64,
    /// What it was created from.
    pub source: SourceSpec,
    /// What a VM would read: empty when new, copied by clones, restored by rollbacks.
    pub content: Vec<u8>,
    /// Oldest first.
    pub snapshots: Vec<FakeSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSnapshot {
    pub name: String,
    /// The volume's capacity when the snapshot was taken.
    pub capacity_bytes: u64,
    pub content: Vec<u8>,
}

impl FakeVolume {
    fn new(capacity_bytes: u64, source: SourceSpec, content: Vec<u8>) -> Self {
        FakeVolume { capacity_bytes, source, content, snapshots: Vec::new() }
    }

    fn snapshot(&self, name: &str) -> Option<&FakeSnapshot> {
        self.snapshots.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Default)]
struct State {
    capacity_bytes: u64,
    volumes: BTreeMap<String, FakeVolume>,
    failures: HashMap<FakeOp, u32>,
    calls: HashMap<FakeOp, u64>,
    image_sizes: HashMap<PathBuf, u64>,
    /// Answer `shared()` with true: stands in for a pool several hosts see (Ceph).
    shared: bool,
}

impl State {
    fn allocated(&self) -> u64 {
        self.volumes.values().map(|v| v.capacity_bytes).sum()
    }
}

#[derive(Debug)]
pub struct FakePool {
    name: String,
    state: Mutex<State>,
}

impl FakePool {
    /// An empty pool of `capacity_bytes`.
    pub fn new(name: &str, capacity_bytes: u64) -> Self {
        FakePool { name: name.to_string(), state: Mutex::new(State { capacity_bytes, ..State::default() }) }
    }

    /// Makes the pool report itself shared (several hosts see it; hand each the same `Arc`).
    pub fn set_shared(&self, shared: bool) {
        self.state().shared = shared;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next `n` calls of `op` fail (on top of any failures still pending).
    pub fn fail_next(&self, op: FakeOp, n: u32) {
        *self.state().failures.entry(op).or_default() += n;
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: FakeOp) -> u64 {
        self.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// The volume `id`, if present.
    pub fn volume(&self, id: &str) -> Option<FakeVolume> {
        self.state().volumes.get(id).cloned()
    }

    /// Adds a volume directly (no call counted, no check), as if it had been there before.
    pub fn insert(&self, id: &str, capacity_bytes: u64) {
        self.state().volumes.insert(id.to_string(), FakeVolume::new(capacity_bytes, SourceSpec::Empty, Vec::new()));
    }

    /// Sets what volume `id` holds, as a VM writing to it would.
    pub fn write(&self, id: &str, content: &[u8]) -> Result<(), VolumeError> {
        let mut state = self.state();
        let volume = state.volumes.get_mut(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?;
        volume.content = content.to_vec();
        Ok(())
    }

    /// Declares the virtual size of an image file, checked like the real backend checks it.
    pub fn set_image_size(&self, path: &Path, bytes: u64) {
        self.state().image_sizes.insert(path.to_path_buf(), bytes);
    }

    /// Counts the call and consumes one injected failure, if any.
    fn enter(&self, op: FakeOp, subject: &str) -> Result<MutexGuard<'_, State>, VolumeError> {
        let mut state = self.state();
        *state.calls.entry(op).or_default() += 1;
        if let Some(left) = state.failures.get_mut(&op).filter(|n| **n > 0) {
            *left -= 1;
            let message = format!("injected failure of {op:?}");
            return Err(match op {
                FakeOp::Usage | FakeOp::List => VolumeError::Pool { pool: self.name.clone(), message },
                _ => VolumeError::Volume { volume: subject.to_string(), action: "fake", message },
            });
        }
        Ok(state)
    }

    fn info(&self, id: &str, volume: &FakeVolume) -> VolumeInfo {
        VolumeInfo {
            id: id.to_string(),
            capacity_bytes: volume.capacity_bytes,
            allocation_bytes: volume.capacity_bytes,
            disk: DiskSource::File {
                path: PathBuf::from(format!("/fake/{}/{PREFIX}{id}.qcow2", self.name)),
                format: "qcow2".into(),
            },
        }
    }

    fn need(&self, state: &State, bytes: u64) -> Result<(), VolumeError> {
        let available = state.capacity_bytes.saturating_sub(state.allocated());
        if bytes > available {
            return Err(VolumeError::NoSpace { pool: self.name.clone(), needed: bytes, available });
        }
        Ok(())
    }
}

impl VolumeBackend for FakePool {
    fn pool(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn shared(&self) -> bool {
        self.state().shared
    }

    fn usage(&self) -> Result<PoolUsage, VolumeError> {
        let state = self.enter(FakeOp::Usage, "")?;
        let allocation_bytes = state.allocated();
        Ok(PoolUsage {
            capacity_bytes: state.capacity_bytes,
            allocation_bytes,
            available_bytes: state.capacity_bytes.saturating_sub(allocation_bytes),
        })
    }

    fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let state = self.enter(FakeOp::List, "")?;
        Ok(state.volumes.iter().map(|(id, v)| self.info(id, v)).collect())
    }

    fn create(&self, id: &str, capacity_bytes: u64, source: &SourceSpec) -> Result<VolumeInfo, VolumeError> {
        let mut state = self.enter(FakeOp::Create, id)?;
        check_volume_id(id)?;
        if let Some(existing) = state.volumes.get(id) {
            return Ok(self.info(id, existing));
        }
        super::check_capacity(id, capacity_bytes)?;
        let refuse = |message: String| VolumeError::Volume { volume: id.to_string(), action: "creating", message };
        let mut content = Vec::new();
        match source {
            SourceSpec::Empty => {}
            SourceSpec::Image { path, format } => {
                if format != "qcow2" && format != "raw" {
                    return Err(refuse(format!("unknown image format '{format}'")));
                }
                if let Some(size) = state.image_sizes.get(path).filter(|s| **s > capacity_bytes) {
                    return Err(refuse(format!(
                        "image {} is {size} bytes, larger than {capacity_bytes}",
                        path.display()
                    )));
                }
            }
            SourceSpec::Clone { from_volume, snapshot } => {
                let from =
                    state.volumes.get(from_volume).ok_or_else(|| VolumeError::NoSuchVolume(from_volume.clone()))?;
                let (size, bytes) = match snapshot {
                    None => (from.capacity_bytes, &from.content),
                    Some(name) => {
                        check_snapshot_name(from_volume, name)?;
                        let snap = from.snapshot(name).ok_or_else(|| VolumeError::NoSuchSnapshot {
                            volume: from_volume.clone(),
                            snapshot: name.clone(),
                        })?;
                        (snap.capacity_bytes, &snap.content)
                    }
                };
                if size > capacity_bytes {
                    return Err(refuse(format!("source {from_volume} is {size} bytes, larger than {capacity_bytes}")));
                }
                content = bytes.clone();
            }
        }
        self.need(&state, capacity_bytes)?;
        let volume = FakeVolume::new(capacity_bytes, source.clone(), content);
        let info = self.info(id, &volume);
        state.volumes.insert(id.to_string(), volume);
        Ok(info)
    }

    fn resize(&self, id: &str, capacity_bytes: u64) -> Result<VolumeInfo, VolumeError> {
        let mut state = self.enter(FakeOp::Resize, id)?;
        check_volume_id(id)?;
        let from = state.volumes.get(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?.capacity_bytes;
        if capacity_bytes < from {
            return Err(VolumeError::Shrink { volume: id.to_string(), from, to: capacity_bytes });
        }
        self.need(&state, capacity_bytes - from)?;
        let volume = state.volumes.get_mut(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?;
        volume.capacity_bytes = capacity_bytes;
        Ok(self.info(id, volume))
    }

    fn delete(&self, id: &str) -> Result<(), VolumeError> {
        let mut state = self.enter(FakeOp::Delete, id)?;
        check_volume_id(id)?;
        // Its snapshots go with it.
        state.volumes.remove(id);
        Ok(())
    }

    fn snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        let mut state = self.enter(FakeOp::Snapshot, id)?;
        check_snapshot_name(id, name)?;
        let volume = state.volumes.get_mut(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?;
        if volume.snapshot(name).is_none() {
            let snap = FakeSnapshot {
                name: name.to_string(),
                capacity_bytes: volume.capacity_bytes,
                content: volume.content.clone(),
            };
            volume.snapshots.push(snap);
        }
        Ok(())
    }

    fn list_snapshots(&self, id: &str) -> Result<Vec<String>, VolumeError> {
        let state = self.enter(FakeOp::ListSnapshots, id)?;
        check_volume_id(id)?;
        let volume = state.volumes.get(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?;
        Ok(volume.snapshots.iter().map(|s| s.name.clone()).collect())
    }

    fn rollback(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        let mut state = self.enter(FakeOp::Rollback, id)?;
        check_snapshot_name(id, name)?;
        let volume = state.volumes.get_mut(id).ok_or_else(|| VolumeError::NoSuchVolume(id.to_string()))?;
        let snap = volume
            .snapshot(name)
            .ok_or_else(|| VolumeError::NoSuchSnapshot { volume: id.to_string(), snapshot: name.to_string() })?;
        // The capacity stays: volumes only grow.
        volume.content = snap.content.clone();
        Ok(())
    }

    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VolumeError> {
        let mut state = self.enter(FakeOp::DeleteSnapshot, id)?;
        check_snapshot_name(id, name)?;
        if let Some(volume) = state.volumes.get_mut(id) {
            volume.snapshots.retain(|s| s.name != name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn same_semantics_as_the_real_backends() -> Result<(), VolumeError> {
        let pool = FakePool::new("default", 10 * GIB);
        let a = pool.create("a", 2 * GIB, &SourceSpec::Empty)?;
        assert_eq!(pool.create("a", 5 * GIB, &SourceSpec::Empty)?, a, "create is idempotent");
        assert_eq!(pool.resize("a", 3 * GIB)?.capacity_bytes, 3 * GIB);
        assert!(
            matches!(pool.resize("a", GIB), Err(VolumeError::Shrink { from, to, .. }) if from == 3 * GIB && to == GIB)
        );
        assert!(matches!(pool.resize("nope", GIB), Err(VolumeError::NoSuchVolume(_))));
        let clone = SourceSpec::Clone { from_volume: "a".into(), snapshot: None };
        assert!(pool.create("b", GIB, &clone).is_err(), "a clone is never smaller than its source");
        pool.create("b", 3 * GIB, &clone)?;
        assert!(matches!(
            pool.create("c", GIB, &SourceSpec::Clone { from_volume: "zz".into(), snapshot: None }),
            Err(VolumeError::NoSuchVolume(_))
        ));
        assert!(matches!(pool.create("c", 5 * GIB, &SourceSpec::Empty), Err(VolumeError::NoSpace { .. })));
        assert!(pool.create("../x", GIB, &SourceSpec::Empty).is_err());
        let image = PathBuf::from("/images/x.qcow2");
        pool.set_image_size(&image, 2 * GIB);
        let from_image = SourceSpec::Image { path: image, format: "qcow2".into() };
        assert!(pool.create("d", GIB, &from_image).is_err());
        pool.create("d", 2 * GIB, &from_image)?;
        assert_eq!(pool.usage()?.available_bytes, 2 * GIB);
        pool.delete("a")?;
        pool.delete("a")?;
        assert_eq!(pool.list()?.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["b", "d"]);
        Ok(())
    }

    #[test]
    fn snapshots_roll_back_clone_and_go_with_their_volume() -> Result<(), VolumeError> {
        let pool = FakePool::new("default", 10 * GIB);
        pool.create("v", GIB, &SourceSpec::Empty)?;
        pool.write("v", b"one")?;
        pool.snapshot("v", "s1")?;
        pool.write("v", b"two")?;
        pool.snapshot("v", "s2")?;
        pool.snapshot("v", "s1")?;
        assert_eq!(pool.volume("v").map(|v| v.snapshots[0].content.clone()), Some(b"one".to_vec()), "idempotent");
        pool.write("v", b"three")?;
        assert_eq!(pool.list_snapshots("v")?, ["s1", "s2"], "oldest first");
        pool.resize("v", 2 * GIB)?;
        pool.rollback("v", "s1")?;
        let v = pool.volume("v").expect("volume");
        assert_eq!((v.content.as_slice(), v.capacity_bytes), (&b"one"[..], 2 * GIB), "content back, capacity kept");
        assert_eq!(pool.list_snapshots("v")?, ["s1", "s2"], "a rollback keeps every snapshot");

        let from_s2 = SourceSpec::Clone { from_volume: "v".into(), snapshot: Some("s2".into()) };
        pool.create("c", GIB, &from_s2)?;
        assert_eq!(pool.volume("c").map(|c| c.content), Some(b"two".to_vec()));
        let missing = SourceSpec::Clone { from_volume: "v".into(), snapshot: Some("nope".into()) };
        assert!(matches!(pool.create("d", GIB, &missing), Err(VolumeError::NoSuchSnapshot { .. })));
        assert!(matches!(pool.rollback("v", "nope"), Err(VolumeError::NoSuchSnapshot { .. })));
        assert!(matches!(pool.snapshot("zz", "s"), Err(VolumeError::NoSuchVolume(_))));

        pool.delete_snapshot("v", "s2")?;
        pool.delete_snapshot("v", "s2")?;
        pool.delete_snapshot("zz", "s2")?;
        assert_eq!(pool.list_snapshots("v")?, ["s1"]);
        pool.delete("v")?;
        assert_eq!(pool.volume("c").map(|c| c.content), Some(b"two".to_vec()), "the clone is independent");
        pool.create("v", GIB, &SourceSpec::Empty)?;
        assert!(pool.list_snapshots("v")?.is_empty(), "snapshots went with the deleted volume");

        for bad in ["", "a/b", "a@b", "../x"] {
            let err = pool.snapshot("v", bad).expect_err(bad).to_string();
            assert!(err.contains("snapshot name"), "{err}");
            assert!(pool.rollback("v", bad).is_err() && pool.delete_snapshot("v", bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn injected_failures_fail_exactly_n_calls() -> Result<(), VolumeError> {
        let pool = FakePool::new("default", GIB);
        pool.fail_next(FakeOp::Create, 2);
        assert!(pool.create("a", 1, &SourceSpec::Empty).is_err());
        assert!(pool.create("a", 1, &SourceSpec::Empty).is_err());
        assert!(pool.volume("a").is_none());
        pool.create("a", 1, &SourceSpec::Empty)?;
        assert_eq!(pool.calls(FakeOp::Create), 3);
        pool.fail_next(FakeOp::List, 1);
        assert!(matches!(pool.list(), Err(VolumeError::Pool { .. })));
        assert_eq!(pool.list()?.len(), 1);
        Ok(())
    }
}
