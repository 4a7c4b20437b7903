//! The agent's persisted state: the last desired state it accepted and what it has applied beyond it
//! (one-shot requests such as reboots, the disk targets VMs got), written atomically so that a crash leaves the old or the new
//! file, never a torn one.
//!
//! It exists so the agent keeps running its VMs, and reconciles correctly, with no controller
//! reachable. It must never accept a desired state older than the one it holds (that check is in
//! [`AgentState::accept`]). It also keeps the VMs this host fenced ([`Fenced`]), so a restart while
//! cut off from the controllers does not start them again.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The VMs this host powered off when it lost the controllers (self-fencing); kept off until
    /// [`AgentState::unfence_if_cleared`] says otherwise.
    pub fenced: Option<Fenced>,
}

/// A self-fencing: which VMs, when, and what lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fenced {
    pub vms: BTreeSet<String>,
    /// When this host fenced (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// The desired generation held when fencing: only a newer one may start the VMs again.
    pub generation: u64,
    /// Since fencing, the latest acknowledged heartbeat said the host is `ready`, and the controller
    /// then had this desired generation for it; `None` until then (or when it said otherwise).
    pub ready_ack: Option<u64>,
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

    pub fn is_fenced(&self, vm_id: &str) -> bool {
        self.fenced.as_ref().is_some_and(|f| f.vms.contains(vm_id))
    }

    /// Records `vms` as fenced at `at_unix_ms` (added to a fencing in force, which then needs a new
    /// `ready` acknowledgement and a generation newer than the one held now). Returns those newly
    /// fenced.
    pub fn fence(&mut self, vms: &[String], at_unix_ms: u64) -> Vec<String> {
        let generation = self.generation();
        let record =
            self.fenced.get_or_insert_with(|| Fenced { vms: BTreeSet::new(), at_unix_ms, generation, ready_ack: None });
        let added: Vec<String> = vms.iter().filter(|vm| record.vms.insert((*vm).clone())).cloned().collect();
        if !added.is_empty() {
            record.generation = record.generation.max(generation);
            record.ready_ack = None;
        }
        added
    }

    /// An acknowledged heartbeat sent after the fencing: `ready` or not, and the controller's desired
    /// generation for this host. Returns whether the record changed.
    pub fn note_ack(&mut self, ready: bool, controller_generation: u64) -> bool {
        let Some(record) = self.fenced.as_mut() else { return false };
        let now = ready.then_some(controller_generation);
        let changed = record.ready_ack != now;
        record.ready_ack = now;
        changed
    }

    /// Lifts the fencing when the controller has taken this host back: a heartbeat sent after the
    /// fencing was acknowledged with the host `ready`, and the desired state held is at least as new
    /// as the one the controller had for this host at that acknowledgement. Then whatever the
    /// controller decided while the host was away (an HA restart elsewhere moves this host's
    /// generation and leaves it `fenced`, never `ready`, until an operator acts) is in what the agent
    /// holds, and a VM still desired here may run: nothing else can be running it. A host that came
    /// back before the controller acted (never offline, or back before its lease and margin ran out)
    /// needs no new generation. Returns the lifted record.
    pub fn unfence_if_cleared(&mut self) -> Option<Fenced> {
        let held = self.generation();
        let record = self.fenced.as_ref()?;
        let cleared = record.ready_ack.is_some_and(|acked| held >= acked);
        if cleared {
            self.fenced.take()
        } else {
            None
        }
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

    /// (From JSON, so fields the desired state gains later, with defaults, need no change here.)
    fn desired(generation: u64) -> HostDesired {
        serde_json::from_value(serde_json::json!({"host_id": "h1", "generation": generation, "volumes": [], "vms": []}))
            .expect("a desired state")
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

    #[test]
    fn fenced_vms_clear_only_on_a_ready_ack_with_the_controllers_generation_held_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path());
        let mut state = AgentState::default();
        state.accept("h1", desired(5)).expect("accept");
        assert_eq!(state.fence(&["vm-a".into(), "vm-b".into()], 1_000), vec!["vm-a", "vm-b"]);
        assert!(state.fence(&["vm-a".into()], 2_000).is_empty(), "already fenced");
        file.save(&state).expect("save");
        // An agent restart while isolated: the record is back, the VMs are still fenced.
        let mut state = file.load().expect("load");
        assert!(state.is_fenced("vm-a") && state.is_fenced("vm-b") && !state.is_fenced("vm-c"));
        assert_eq!(state.fenced.as_ref().map(|f| (f.at_unix_ms, f.generation)), Some((1_000, 5)));

        // A newer generation alone does not clear it.
        state.accept("h1", desired(6)).expect("accept");
        assert_eq!(state.unfence_if_cleared(), None);
        // The controller says `fenced`: never cleared.
        assert!(!state.note_ack(false, 6));
        assert_eq!(state.unfence_if_cleared(), None);
        // Ready, but the controller already has generation 7 for us: wait for it.
        assert!(state.note_ack(true, 7));
        assert_eq!(state.unfence_if_cleared(), None);
        state.accept("h1", desired(7)).expect("accept");
        let lifted = state.unfence_if_cleared().expect("cleared");
        assert_eq!(lifted.vms.len(), 2);
        assert_eq!(state.fenced, None);

        // Back before the controller acted: ready, and the controller still has the generation held
        // when fencing. Cleared without a new generation.
        let mut state = AgentState::default();
        state.accept("h1", desired(3)).expect("accept");
        state.fence(&["vm-a".into()], 1);
        assert!(!state.note_ack(false, 3), "not ready: nothing to record");
        assert_eq!(state.unfence_if_cleared(), None, "not ready");
        assert!(state.note_ack(true, 3), "ready at the generation held");
        assert!(state.unfence_if_cleared().is_some());
        // A ready ack taken back by a later one that is not ready.
        let mut state = AgentState::default();
        state.accept("h1", desired(3)).expect("accept");
        state.fence(&["vm-a".into()], 1);
        assert!(state.note_ack(true, 4));
        assert!(state.note_ack(false, 4), "a later ack that is not ready takes the ready one back");
        state.accept("h1", desired(4)).expect("accept");
        assert_eq!(state.unfence_if_cleared(), None);
    }
}
