//! A decision, and re-checking one against the view as it is when it is committed.
//!
//! It exists because planning and committing are apart in time (a decision goes through Raft
//! before any member applies it): `verify` lets the state machine refuse a decision that no longer
//! fits, with the same rules and words as the planner.

use serde::{Deserialize, Serialize};

use crate::filter::{first_failure, Prepared};
use crate::host::Host;
use crate::model::PlacementRequest;
use crate::nofit::{reason, Exclusion, NoFit};
use crate::policy::Policy;
use crate::quota::prepare;
use crate::view::ClusterView;

/// Where a VM goes. Applied to the view (`ClusterView::apply`) once it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub host: String,
    /// The host the VM was on when this was planned, for a move (migration, evacuation, HA
    /// restart); `None` for a first placement.
    pub previous_host: Option<String>,
    pub request: PlacementRequest,
}

impl Decision {
    pub(crate) fn new(host: &Host, prepared: &Prepared<'_>) -> Self {
        Self {
            host: host.spec.id.clone(),
            previous_host: prepared.current_host.map(str::to_string),
            request: prepared.request.clone(),
        }
    }
}

/// Whether `decision` still holds against the view as it is now: the tenant's quota and every
/// filter on the decided host. For re-checking a decision when it is committed.
pub fn verify(view: &ClusterView, decision: &Decision, policy: &Policy) -> Result<(), NoFit> {
    let prepared = prepare(view, &decision.request, policy)?;
    let vm = || decision.request.vm.clone();
    let host = view.host(&decision.host).ok_or_else(|| NoFit::UnknownHost { vm: vm(), host: decision.host.clone() })?;
    match first_failure(host, &prepared) {
        None => Ok(()),
        Some(constraint) => Err(NoFit::HostRejects {
            vm: vm(),
            host: decision.host.clone(),
            exclusion: Exclusion { constraint, hosts: 1, reason: reason(constraint, &prepared) },
        }),
    }
}
