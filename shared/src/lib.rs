//! `hci-shared`: the vocabulary every hci component speaks.
//!
//! It exists so that the controller, the agent and `hcictl` agree on one definition of each resource,
//! API body, Raft command and error, and on one binary codec. It must never depend on a runtime, on
//! libvirt, nftables, RocksDB or axum: only plain data, validation rules and (de)serialization.

pub mod agent;
pub mod agent_validate;
pub mod api;
pub mod codec;
pub mod command;
pub mod error;
pub mod hosts;
pub mod hosts_validate;
pub mod names;
pub mod resources;
pub mod time;
pub mod validate;

pub use error::{ApiError, ErrorBody, ErrorCode};
