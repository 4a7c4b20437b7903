//! `hci-placement`: which host a VM goes to, decided purely and deterministically.
//!
//! It exists so every controller member, planning against the same `ClusterView`, reaches the same
//! decision, and so the planner can be tested and measured without the controller. The controller
//! builds the view from its hosts, tenants and VMs, asks `place` (or `plan_evacuation`), commits the
//! `Decision` through Raft and then `apply`s it to the view.
//!
//! Rules: filters on arch, site, host state, firmware profile, reachable zones, anti-affinity, the
//! tenant's quota and room under the cap (vCPU against overcommit, memory, each requested pool's
//! disk); the cap (at most 80 %, see `Policy`) holds on the chosen host after every decision.
//! Spread picks the least loaded host that fits, pack the most loaded; ties go to the lowest host
//! id. `place` (indexed) and `place_naive` (every host scored) always decide the same.
//!
//! It must never read clocks, randomness, the network or the disk, never let `HashMap` order reach a
//! decision, and never panic on any input.

mod apply;
mod batch;
mod candidates;
mod capacity;
mod decision;
mod error;
mod filter;
mod host;
mod hostset;
mod index;
mod model;
mod naive;
mod nofit;
mod plan;
mod policy;
mod quota;
mod view;

pub use batch::{plan_batch, plan_evacuation, BatchRefused};
pub use decision::{verify, Decision};
pub use error::{PolicyError, ViewError};
pub use filter::Constraint;
pub use host::Host;
pub use model::{HostSpec, HostState, PlacedVm, PlacementRequest, PoolSpec, Resources, TenantAccount, VolumeDemand};
pub use naive::place_naive;
pub use nofit::{Exclusion, NoFit, QuotaResource};
pub use plan::place;
pub use policy::{Policy, PolicySpec, Strategy, MAX_CAP_PERCENT};
pub use view::ClusterView;
