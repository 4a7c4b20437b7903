//! The Raft state machine: applies committed commands to the replicated model and persists the result
//! in RocksDB, one atomic `WriteBatch` per applied batch (implements `RaftStateMachine`).
//!
//! The in-memory [`Model`] is what the API reads; RocksDB is what survives restarts. `apply` depends
//! only on the log entries (the model's apply is pure). Snapshots are built from a RocksDB snapshot, so
//! building one never stops writes; installing one replaces the whole state column family atomically.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use hci_shared::codec;
use hci_shared::command::BatchResponse;
use hci_state::{KvWrite, Model};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StoredMembership};
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::db::{cf, synced, CF_SNAPSHOT, CF_STATE};
use super::host_watch::HostWatches;
use super::{storage_io, LogId, Membership, NodeId, StorageError, TypeConfig};
use crate::metrics::Metrics;

type Entry = openraft::Entry<TypeConfig>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// Keys of the state column family that belong to Raft rather than to the model.
const SYS_PREFIX: &[u8] = b"sys/";
const KEY_LAST_APPLIED: &[u8] = b"sys/last_applied";
const KEY_MEMBERSHIP: &[u8] = b"sys/membership";
/// The model's own sequence: one per applied command, across batches. It is the revision of what a
/// command changed and the sequence number of its audit record.
const KEY_LAST_SEQ: &[u8] = b"sys/last_seq";
const KEY_CURRENT_SNAPSHOT: &[u8] = b"current";

/// Raw key/value pairs of the state column family.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a snapshot carries: every key/value of the state column family at one applied index.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    pairs: Pairs,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// Read access to the applied state, shared with the API.
#[derive(Debug, Clone)]
pub struct StateView {
    model: Arc<RwLock<Model>>,
    db: Arc<DB>,
    hosts: Arc<HostWatches>,
}

impl StateView {
    /// The model as of the last applied entry. Hold the guard briefly: apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        // A poisoned lock means an apply panicked mid-way; the model is still the last consistent one
        // because apply checks before it mutates.
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes when host `id`'s record is next written (its desired state moved), or after a
    /// snapshot install; `None` once the state machine is gone.
    pub fn host_changes(&self, id: &str) -> Option<tokio::sync::watch::Receiver<()>> {
        self.hosts.subscribe(id)
    }

    /// Audit records with sequence number > `after`, oldest first, at most `limit`.
    pub fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<hci_shared::resources::AuditRecord>, StorageError> {
        let start = hci_state::keys::audit_key(after.saturating_add(1));
        let iter = self.db.iterator_cf(cf(&self.db, CF_STATE), IteratorMode::From(&start, rocksdb::Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Read, e))?;
            if !key.starts_with(hci_state::keys::AUDIT_PREFIX) || out.len() >= limit {
                break;
            }
            out.push(codec::decode(&value).map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Read, e))?);
        }
        Ok(out)
    }
}

/// The state machine handed to openraft.
#[derive(Debug)]
pub struct StateMachine {
    db: Arc<DB>,
    model: Arc<RwLock<Model>>,
    last_applied: Option<LogId>,
    membership: Membership,
    last_seq: u64,
    snapshot_seq: u64,
    metrics: Metrics,
    hosts: Arc<HostWatches>,
}

impl Drop for StateMachine {
    fn drop(&mut self) {
        self.hosts.close();
    }
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    storage_io(ErrorSubject::StateMachine, ErrorVerb::Read, e)
}
fn write_err(e: impl std::fmt::Display) -> StorageError {
    storage_io(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

/// Splits the state column family's pairs into Raft's bookkeeping and the model.
fn load_pairs(pairs: Pairs) -> Result<(Option<LogId>, Membership, u64, Model), StorageError> {
    let mut last_applied = None;
    let mut membership = Membership::default();
    let mut last_seq = 0;
    let mut model_pairs = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if key == KEY_LAST_APPLIED {
            last_applied = codec::decode(&value).map_err(read_err)?;
        } else if key == KEY_MEMBERSHIP {
            membership = codec::decode(&value).map_err(read_err)?;
        } else if key == KEY_LAST_SEQ {
            last_seq = codec::decode(&value).map_err(read_err)?;
        } else if !key.starts_with(SYS_PREFIX) {
            model_pairs.push((key, value));
        }
    }
    let model = Model::load(model_pairs).map_err(read_err)?;
    Ok((last_applied, membership, last_seq, model))
}

fn state_pairs(db: &DB, snapshot: Option<&rocksdb::Snapshot<'_>>) -> Result<Pairs, StorageError> {
    let iter = match snapshot {
        Some(s) => s.iterator_cf(cf(db, CF_STATE), IteratorMode::Start),
        None => db.iterator_cf(cf(db, CF_STATE), IteratorMode::Start),
    };
    iter.map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(read_err)).collect()
}

impl StateMachine {
    /// Opens the state machine on `db`, rebuilding the in-memory model from what was persisted.
    pub fn open(db: Arc<DB>, metrics: Metrics) -> Result<(Self, StateView), StorageError> {
        let (last_applied, membership, last_seq, model) = load_pairs(state_pairs(&db, None)?)?;
        let model = Arc::new(RwLock::new(model));
        let hosts = Arc::new(HostWatches::new());
        let view = StateView { model: model.clone(), db: db.clone(), hosts: hosts.clone() };
        let machine = Self { db, model, last_applied, membership, last_seq, snapshot_seq: 0, metrics, hosts };
        Ok((machine, view))
    }

    fn model_mut(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds a snapshot from a point-in-time RocksDB view; applies continue meanwhile.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<DB>,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let seq = self.seq;
        let stored = tokio::task::spawn_blocking(move || -> Result<StoredSnapshot, StorageError> {
            let view = db.snapshot();
            let pairs = state_pairs(&db, Some(&view))?;
            let (last_applied, membership, _) = split_sys(&pairs)?;
            let data = codec::encode(&SnapshotBody { pairs }).map_err(write_err)?;
            let snapshot_id = match last_applied {
                Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
                None => format!("0-0-{seq}"),
            };
            let meta = Meta { last_log_id: last_applied, last_membership: membership, snapshot_id };
            let stored = StoredSnapshot { meta, data };
            let bytes = codec::encode(&stored).map_err(write_err)?;
            db.put_cf_opt(cf(&db, CF_SNAPSHOT), KEY_CURRENT_SNAPSHOT, bytes, &synced())
                .map_err(|e| storage_io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
            Ok(stored)
        })
        .await
        .map_err(write_err)??;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

/// Reads only Raft's bookkeeping out of a pair list (the snapshot builder does not need the model).
fn split_sys(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(Option<LogId>, Membership, ()), StorageError> {
    let mut last_applied = None;
    let mut membership = Membership::default();
    for (key, value) in pairs {
        if key.as_slice() == KEY_LAST_APPLIED {
            last_applied = codec::decode(value).map_err(read_err)?;
        } else if key.as_slice() == KEY_MEMBERSHIP {
            membership = codec::decode(value).map_err(read_err)?;
        }
    }
    Ok((last_applied, membership, ()))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = std::time::Instant::now();
        let state = cf(&self.db, CF_STATE);
        let mut batch = WriteBatch::default();
        let mut responses = Vec::new();
        let mut writes = Vec::new();
        let mut last_applied = self.last_applied;
        let mut membership = None;
        let mut seq = self.last_seq;
        {
            let mut model = self.model_mut();
            for entry in entries {
                last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => BatchResponse(Vec::new()),
                    EntryPayload::Normal(batch) => BatchResponse(
                        batch
                            .0
                            .iter()
                            .map(|envelope| {
                                seq += 1;
                                model.apply(seq, envelope, &mut writes)
                            })
                            .collect(),
                    ),
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        BatchResponse(Vec::new())
                    }
                };
                responses.push(response);
            }
        }
        let touched: Vec<String> = writes
            .iter()
            .filter_map(|w| w.key().strip_prefix(hci_state::keys::HOST_PREFIX))
            .filter_map(|id| std::str::from_utf8(id).ok())
            .map(str::to_string)
            .collect();
        for write in writes {
            match write {
                KvWrite::Put { key, value } => batch.put_cf(state, key, value),
                KvWrite::Delete { key } => batch.delete_cf(state, key),
            }
        }
        batch.put_cf(state, KEY_LAST_APPLIED, codec::encode(&last_applied).map_err(write_err)?);
        batch.put_cf(state, KEY_LAST_SEQ, codec::encode(&seq).map_err(write_err)?);
        if let Some(m) = &membership {
            batch.put_cf(state, KEY_MEMBERSHIP, codec::encode(m).map_err(write_err)?);
        }
        // Not synced on its own: the shared WAL is synced by the next log append or purge (see db.rs),
        // and anything lost to a power cut is re-applied from the fsynced log.
        self.db.write(batch).map_err(write_err)?;
        self.last_applied = last_applied;
        self.last_seq = seq;
        if let Some(m) = membership {
            self.membership = m;
        }
        self.hosts.wake(touched.iter().map(String::as_str));
        self.metrics.applied_entries.inc_by(responses.len() as u64);
        self.metrics.apply_seconds.observe(started.elapsed().as_secs_f64());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { db: self.db.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = codec::decode(&data)
            .map_err(|e| storage_io(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, e))?;
        let state = cf(&self.db, CF_STATE);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(state, [0u8].as_slice(), [0xffu8; 16].as_slice());
        for (key, value) in &body.pairs {
            batch.put_cf(state, key, value);
        }
        let stored = StoredSnapshot { meta: meta.clone(), data };
        batch.put_cf(cf(&self.db, CF_SNAPSHOT), KEY_CURRENT_SNAPSHOT, codec::encode(&stored).map_err(write_err)?);
        self.db.write_opt(batch, &synced()).map_err(write_err)?;
        let (last_applied, membership, last_seq, model) = load_pairs(body.pairs)?;
        *self.model_mut() = model;
        self.last_applied = last_applied;
        self.last_seq = last_seq;
        self.membership = membership;
        self.hosts.wake_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_SNAPSHOT), KEY_CURRENT_SNAPSHOT)
            .map_err(|e| storage_io(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        let Some(raw) = raw else { return Ok(None) };
        let stored: StoredSnapshot =
            codec::decode(&raw).map_err(|e| storage_io(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}
