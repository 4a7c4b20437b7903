//! `hci-state`: the controller's replicated model, the deterministic state machine behind Raft.
//!
//! It exists so that every controller member, applying the same log, holds the same tenants,
//! zones, policies, volumes, VMs and hosts, persists the same key/value writes and gives callers the
//! same answers. `Model::apply` takes one log entry; `Model::load` rebuilds the model from the store.
//!
//! It must never read clocks, randomness, the network or the disk, never let `HashMap` order reach a
//! result, and never panic on any input: a bad command is a refusal, a bad store is a `StateError`.

mod apply;
mod audit;
mod change;
mod cluster;
mod desired;
mod error;
mod ha;
mod hosts;
mod index;
mod ipam;
mod join_tokens;
pub mod keys;
mod load;
mod model;
mod moves;
mod placement;
mod policies;
mod quota;
mod retired;
mod tenants;
mod vm_actions;
mod vms;
mod volumes;
mod zones;

pub use change::KvWrite;
pub use cluster::{Role, TokenRecord, ADMIN_CALLER};
pub use error::StateError;
pub use ha::MAX_HA_REASON;
pub use join_tokens::{HostCredential, JoinTokenRecord};
pub use model::Model;
pub use moves::{MovePlan, SHARED_BACKEND};
pub use placement::VCPU_OVERCOMMIT_PERCENT;
