//! Planning several placements as one: all of them fit, or none is decided.
//!
//! It exists for evacuations (every VM of a host to go elsewhere: drain, HA restart) and any other
//! set of VMs that must move together. Each request is planned against the view with the earlier
//! ones of the batch tentatively applied, so the decisions, committed in order, never break the cap
//! between them; the view is restored exactly before returning, whatever the outcome.

use crate::decision::Decision;
use crate::model::{PlacedVm, PlacementRequest};
use crate::nofit::NoFit;
use crate::plan::place;
use crate::policy::Policy;
use crate::view::ClusterView;

/// At most this many refusals are spelled out in a batch's message.
const LISTED_AT_MOST: usize = 10;

/// Why a batch was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefused {
    #[error("cannot evacuate host '{host}': it is not in the planner's view")]
    UnknownHost { host: String },
    /// `refusals` holds one `NoFit` per VM that fits nowhere, in planning order.
    #[error("{what}: {} of {requested} vm(s) fit nowhere: {}", .refusals.len(), list(.refusals))]
    DoesNotFit { what: String, requested: usize, refusals: Vec<NoFit> },
}

fn list(refusals: &[NoFit]) -> String {
    let mut text = refusals.iter().take(LISTED_AT_MOST).map(NoFit::to_string).collect::<Vec<_>>().join("; ");
    if refusals.len() > LISTED_AT_MOST {
        text.push_str(&format!("; and {} more", refusals.len() - LISTED_AT_MOST));
    }
    text
}

/// Decisions for every request, in order, or a refusal naming each VM that does not fit. The view
/// is left as it was: apply the decisions as they are committed.
pub fn plan_batch(
    view: &mut ClusterView,
    requests: &[PlacementRequest],
    policy: &Policy,
) -> Result<Vec<Decision>, BatchRefused> {
    plan_all(view, requests, policy, "cannot place the batch".to_string())
}

/// Decisions that move every VM placed on `host` to other hosts (largest VMs first, then by id),
/// or a refusal naming each VM that fits nowhere. VMs already leaving it are not planned again.
/// The view is left as it was.
pub fn plan_evacuation(view: &mut ClusterView, host: &str, policy: &Policy) -> Result<Vec<Decision>, BatchRefused> {
    let vms = view.host(host).ok_or_else(|| BatchRefused::UnknownHost { host: host.to_string() })?.vms();
    let placed_here = |vm: &&String| view.placed(vm).is_some_and(|placed| placed.host == host);
    let mut requests: Vec<PlacementRequest> =
        vms.iter().filter(placed_here).filter_map(|vm| view.move_request(vm, [])).collect();
    requests.sort_by(|a, b| {
        let (fa, fb) = (a.footprint(), b.footprint());
        (fb.memory_mib, fb.vcpus, fb.disk_bytes).cmp(&(fa.memory_mib, fa.vcpus, fa.disk_bytes)).then(a.vm.cmp(&b.vm))
    });
    plan_all(view, &requests, policy, format!("cannot evacuate host '{host}'"))
}

fn plan_all(
    view: &mut ClusterView,
    requests: &[PlacementRequest],
    policy: &Policy,
    what: String,
) -> Result<Vec<Decision>, BatchRefused> {
    let mut decisions = Vec::with_capacity(requests.len());
    let mut refusals = Vec::new();
    // (vm, where it was before its tentative decision), to undo in reverse order.
    let mut undo: Vec<(String, Option<PlacedVm>)> = Vec::with_capacity(requests.len());
    for request in requests {
        match place(view, request, policy) {
            Ok(decision) => {
                let before = view.placed(&request.vm).cloned();
                // A fresh decision always applies: its host, tenant and pools exist and the VM has
                // not moved since it was planned.
                if view.apply(&decision).is_ok() {
                    undo.push((request.vm.clone(), before));
                    decisions.push(decision);
                }
            }
            Err(refusal) => refusals.push(refusal),
        }
    }
    for (vm, before) in undo.into_iter().rev() {
        let _released = view.release(&vm);
        if let Some(placed) = before {
            view.book(placed);
        }
    }
    if refusals.is_empty() {
        Ok(decisions)
    } else {
        Err(BatchRefused::DoesNotFit { what, requested: requests.len(), refusals })
    }
}
