//! The controller's Raft: openraft type configuration, the RocksDB-backed log and state machine, and
//! the HTTP network between members.
//!
//! It exists so that every state change is one typed command committed by a majority and fsynced
//! before it is acknowledged. Nothing outside this module talks to openraft's storage traits.

// openraft's StorageError is large by design; boxing it at every call would only add noise.
#![allow(clippy::result_large_err)]

pub mod db;
pub mod host_watch;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use hci_shared::command::{BatchResponse, CommandBatch};

openraft::declare_raft_types!(
    /// The controller's Raft types: log payload = a batch of commands, response = one per command.
    pub TypeConfig:
        D = CommandBatch,
        R = BatchResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// Turns any displayable failure into an openraft storage error naming what was being done.
pub(crate) fn storage_io(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    err: impl std::fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(err.to_string())).into()
}
