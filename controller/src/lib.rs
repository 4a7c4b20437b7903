//! `hci-controller`: one member of a site's controller cluster.
//!
//! Wires the Raft log and state machine (RocksDB), the member-to-member network, and the operator
//! HTTP API. The binary's `main.rs` only parses flags and calls [`node::run`].

pub mod api;
pub mod batcher;
pub mod config;
pub mod hosts;
pub mod metrics;
pub mod moves;
pub mod node;
pub mod raft;
