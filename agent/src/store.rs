//! The agent's persisted state: the last desired state it accepted and what it has applied beyond it
//! (one-shot requests such as reboots, the disk targets VMs got), written atomically so that a crash leaves the old or the new
//! file, never a torn one.
//!
//! It exists so the agent keeps running its VMs, and reconciles correctly, with no controller
//! reachable. It must never accept a desired state older than the one it holds (that check is in
//! [`AgentState::accept`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hci_shared::agent::HostDesired;
use hci_shared::codec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub desired: Option<HostDesired>,
    /// What reconcile passes have done that the desired state alone does not tell.
    pub applied: Applied,
}

/// The agent's own record of what it applied; only reconcile passes change it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// VM id → the `reboot_count` already acted on.
    pub reboots: BTreeMap<String, u64>,
    /// VM id → volume id → the disk target (`vdb`) it has. A disk keeps its target for as long as
    /// it stays attached, so removing another disk shifts nothing; a volume no longer in the VM's
    /// disks keeps its entry until its hot-unplug succeeded.
    pub disk_targets: BTreeMap<String, BTreeMap<String, String>>,
    /// Volume id → the snapshots this agent took of it (and has not deleted), oldest first.
    pub volume_snapshots: BTreeMap<String, Vec<String>>,
    /// VM id → the disk-only snapshots this agent took of it, oldest first.
    pub vm_snapshots: BTreeMap<String, Vec<String>>,
    /// `volume/<id>` or `vm/<id>` → the rollback (revert) serial already acted on.
    pub rollbacks: BTreeMap<String, u64>,
}

/// Why a desired state was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    #[error("desired state is for host '{got}', this is host '{expected}'")]
    WrongHost { expected: String, got: String },
    #[error("generation {offered} is older than the held generation {held}")]
    Stale { offered: u64, held: u64 },
    #[error("generation {0} is already held with different content; a change needs a new generation")]
    Conflict(u64),
}

impl AgentState {
    /// The generation held, 0 when none.
    pub fn generation(&self) -> u64 {
        self.desired.as_ref().map_or(0, |d| d.generation)
    }

    /// Takes `offered` if it is newer; an identical re-send is accepted as a no-op (returns false).
    pub fn accept(&mut self, host_id: &str, offered: HostDesired) -> Result<bool, AcceptError> {
        if offered.host_id != host_id {
            return Err(AcceptError::WrongHost { expected: host_id.to_string(), got: offered.host_id });
        }
        let held = self.generation();
        match self.desired.as_ref() {
            Some(current) if offered.generation == held => {
                if *current == offered {
                    Ok(false)
                } else {
                    Err(AcceptError::Conflict(held))
                }
            }
            _ if offered.generation < held || (offered.generation == 0 && self.desired.is_some()) => {
                Err(AcceptError::Stale { offered: offered.generation, held })
            }
            _ => {
                self.desired = Some(offered);
                Ok(true)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("{path} is damaged: {message}")]
    Decode { path: String, message: String },
}

/// The state file under the agent's data dir.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.display().to_string(), source }
}

impl StateFile {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("agent-state.bin") }
    }

    /// The persisted state, or the empty state when the file does not exist yet.
    pub fn load(&self) -> Result<AgentState, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => codec::decode(&bytes)
                .map_err(|e| StoreError::Decode { path: self.path.display().to_string(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(io("reading", &self.path)(e)),
        }
    }

    /// Writes `state` durably: temp file, fsync, rename over the old file, fsync the directory.
    pub fn save(&self, state: &AgentState) -> Result<(), StoreError> {
        let bytes = codec::encode(state)
            .map_err(|e| StoreError::Decode { path: self.path.display().to_string(), message: e.to_string() })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let tmp = self.path.with_extension("bin.tmp");
        let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(&bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io("renaming into", &self.path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(generation: u64) -> HostDesired {
        HostDesired {
            host_id: "h1".into(),
            generation,
            volumes: vec![],
            vms: vec![],
            retired_volumes: vec![],
            isolation: None,
        }
    }

    #[test]
    fn accepts_only_newer_generations() {
        let mut state = AgentState::default();
        assert_eq!(state.accept("h1", desired(3)), Ok(true));
        assert_eq!(state.accept("h1", desired(3)), Ok(false), "identical re-send is a no-op");
        assert_eq!(state.accept("h1", desired(2)), Err(AcceptError::Stale { offered: 2, held: 3 }));
        let mut changed = desired(3);
        changed.vms = vec![];
        changed.volumes = vec![hci_shared::agent::VolumeDesired {
            id: "v".into(),
            pool: "default".into(),
            size_gib: 1,
            source: hci_shared::agent::VolumeSource::Empty,
            snapshots: vec![],
            rollback: None,
        }];
        assert_eq!(state.accept("h1", changed), Err(AcceptError::Conflict(3)));
        assert!(matches!(state.accept("h2", desired(9)), Err(AcceptError::WrongHost { .. })));
        assert_eq!(state.generation(), 3);
    }

    #[test]
    fn save_then_load_round_trips_and_survives_a_stale_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path());
        assert_eq!(file.load().expect("empty"), AgentState::default());
        let mut state = AgentState::default();
        state.accept("h1", desired(7)).expect("accept");
        state.applied.reboots.insert("vm-1".into(), 2);
        state.applied.disk_targets.entry("vm-1".into()).or_default().insert("vol-1".into(), "vdc".into());
        file.save(&state).expect("save");
        // A crash mid-save leaves a temp file behind; the real file is untouched.
        std::fs::write(dir.path().join("agent-state.bin.tmp"), b"torn").expect("write");
        assert_eq!(file.load().expect("load"), state);
        std::fs::write(dir.path().join("agent-state.bin"), b"\x01garbage").expect("write");
        assert!(matches!(file.load(), Err(StoreError::Decode { .. })));
    }
}
