//! The Raft log, vote and committed index in RocksDB (implements openraft's `RaftLogStorage`).
//!
//! Every append is one `WriteBatch` written with fsync, however many entries openraft hands over at
//! once: that is the batching that makes one fsync serve many client writes. It must never report an
//! append as flushed before the synced write returned.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hci_shared::codec;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::db::{cf, synced, CF_LOG, CF_RAFT_META};
use super::{storage_io, LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The log store. Cheap to clone: the log reader handed to replication tasks is a clone.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// The last committed index openraft told us about, for metrics.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db, committed: Arc::new(AtomicU64::new(0)) }
    }

    /// Shared view of the committed index (updated on every `save_committed`).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT_META), key)
            .map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Read, e))?;
        raw.map(|bytes| codec::decode(&bytes))
            .transpose()
            .map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_META), key, bytes, &synced())
            .map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry =
                    codec::decode(&value).map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let iter = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::From(&index_key(start), Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let Some(index) = key_index(&key) else { continue };
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = codec::decode(&value).map_err(|e| {
                storage_io(ErrorSubject::Log(LogId::new(Default::default(), index)), ErrorVerb::Read, e)
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed.store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        self.write_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let log = cf(&self.db, CF_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes =
                codec::encode(&entry).map_err(|e| storage_io(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.put_cf(log, index_key(entry.log_id.index), bytes);
        }
        let result = self.db.write_opt(batch, &synced());
        let io_result = result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io_result);
        result.map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let log = cf(&self.db, CF_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(log, index_key(u64::MAX));
        self.db.write_opt(batch, &synced()).map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let bytes = codec::encode(&log_id).map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        // Record the purge point first in the same atomic batch as the deletion.
        batch.put_cf(cf(&self.db, CF_RAFT_META), KEY_LAST_PURGED, bytes);
        batch.delete_range_cf(cf(&self.db, CF_LOG), index_key(0), index_key(log_id.index.saturating_add(1)));
        if log_id.index == u64::MAX {
            batch.delete_cf(cf(&self.db, CF_LOG), index_key(u64::MAX));
        }
        self.db.write_opt(batch, &synced()).map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
