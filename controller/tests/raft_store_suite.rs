//! openraft's storage conformance suite against the real RocksDB log store and state machine.

use hci_controller::metrics::Metrics;
use hci_controller::raft::log_store::LogStore;
use hci_controller::raft::state_machine::StateMachine;
use hci_controller::raft::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = hci_controller::raft::db::open(&dir.path().join("db")).expect("open rocksdb");
        let (sm, _view) = StateMachine::open(db.clone(), Metrics::new())?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // openraft's StorageError
fn rocksdb_store_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)
}
