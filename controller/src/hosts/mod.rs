//! The controller's host registry at run time: leases over heartbeats (leader memory) and the task
//! that turns an expired lease into a replicated `offline` transition.
//!
//! The replicated part (hosts, join tokens, credentials) is in `hci-state`; this module only holds
//! what must not be replicated (who was heard from when) and decides when to propose a transition.

pub mod leases;
pub mod monitor;

pub use leases::Leases;
