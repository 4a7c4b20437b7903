//! The naive planner: score every host, keep the best.
//!
//! It exists as the reference the indexed planner must match decision for decision (the property
//! tests compare them on every request) and as the baseline of the benchmark. It must stay the
//! plainest possible reading of the rules: every host, the shared filters, the load as score,
//! lowest host id on ties.

use crate::decision::Decision;
use crate::filter::first_failure;
use crate::host::Host;
use crate::model::PlacementRequest;
use crate::nofit::{NoFit, Tally};
use crate::plan::order_value;
use crate::policy::Policy;
use crate::quota::prepare;
use crate::view::ClusterView;

/// What `place` decides, found by scanning every host.
pub fn place_naive(view: &ClusterView, request: &PlacementRequest, policy: &Policy) -> Result<Decision, NoFit> {
    let prepared = prepare(view, request, policy)?;
    let mut tally = Tally::default();
    let mut best: Option<((u64, &str), &Host)> = None;
    for host in view.hosts() {
        match first_failure(host, &prepared) {
            Some(constraint) => tally.add(constraint, 1),
            None => {
                let score = (order_value(host, policy.strategy()), host.id());
                let better = match &best {
                    None => true,
                    Some((best_score, _)) => score < *best_score,
                };
                if better {
                    best = Some((score, host));
                }
            }
        }
    }
    match best {
        Some((_, host)) => Ok(Decision::new(host, &prepared)),
        None => Err(tally.into_no_fit(&prepared, view.host_count())),
    }
}
