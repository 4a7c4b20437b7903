//! Opens the one RocksDB database a controller member keeps, with its column families.
//!
//! Log, vote and state machine share one database (and so one write-ahead log): a synced log append
//! also makes every earlier state-machine write durable, which is what lets state-machine batches be
//! written without their own fsync while purging never gets ahead of durable state.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

/// Raft log entries, keyed by big-endian index.
pub const CF_LOG: &str = "log";
/// Vote, committed log id, last purged log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// The replicated model (resource tables, tokens, audit) plus `sys/` keys (last applied, membership).
pub const CF_STATE: &str = "state";
/// The current snapshot blob and its metadata.
pub const CF_SNAPSHOT: &str = "snapshot";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening RocksDB at {path}: {source}")]
    Open { path: String, source: rocksdb::Error },
}

pub fn open(path: &Path) -> Result<Arc<DB>, DbError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(4);
    let cfs = [CF_LOG, CF_RAFT_META, CF_STATE, CF_SNAPSHOT]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, path, cfs)
        .map_err(|source| DbError::Open { path: path.display().to_string(), source })?;
    Ok(Arc::new(db))
}

/// A handle to a column family that exists because `open` created it.
pub fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    match db.cf_handle(name) {
        Some(cf) => cf,
        // open() creates every column family; reaching this means the database was opened elsewhere.
        None => unreachable!("column family {name} missing"),
    }
}

/// Write options for anything that must survive a crash once acknowledged.
pub fn synced() -> rocksdb::WriteOptions {
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    wo
}
