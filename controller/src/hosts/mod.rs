//! The controller's host registry at run time: leases over heartbeats (leader memory) and the task
//! that turns an expired lease into a replicated `offline` transition, and the HA task that fences
//! a host silent past its lease plus a margin and restarts its HA VMs elsewhere.
//!
//! The replicated part (hosts, join tokens, credentials) is in `hci-state`; this module only holds
//! what must not be replicated (who was heard from when) and decides when to propose a transition.

pub mod ha;
pub mod leases;
pub mod monitor;

pub use leases::Leases;
