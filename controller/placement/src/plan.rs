//! The indexed planner: where one VM goes, found from the posting sets and the walk orders.
//!
//! It exists to decide fast at thousands of hosts while deciding exactly what the naive planner
//! (`naive`) decides: the same filters, the same score (the host's load, see `Host::load_ppm`), the
//! same tie-break (lowest host id). The static filters come from bitsets (`candidates`); then
//! spread walks the ready hosts of the arch (and site) by rising load, pack by falling load, and
//! both stop at the first candidate that passes the dynamic filters (anti-affinity, cap). Hosts
//! loaded beyond the cap are never visited, as they cannot pass it. When the walk passes more
//! non-candidates than scoring every candidate would cost, it stops and the candidates are scored
//! directly instead, which finds the same host.

use std::sync::Arc;

use crate::candidates::static_candidates;
use crate::capacity::cap_load_ppm;
use crate::decision::Decision;
use crate::filter::{dynamic_failure, Prepared};
use crate::host::Host;
use crate::hostset::HostSet;
use crate::index::Slot;
use crate::model::PlacementRequest;
use crate::nofit::{NoFit, Tally};
use crate::policy::{Policy, Strategy};
use crate::quota::prepare;
use crate::view::ClusterView;

/// Scoring one candidate directly costs about this many walk steps past a non-candidate.
const SCORE_COST_IN_STEPS: usize = 8;

/// The best host for `request` under `policy`, or why there is none.
pub fn place(view: &ClusterView, request: &PlacementRequest, policy: &Policy) -> Result<Decision, NoFit> {
    let prepared = prepare(view, request, policy)?;
    let candidates = static_candidates(view, &prepared, None);
    match best_candidate(view, &prepared, &candidates, policy.strategy()) {
        Best::Host(host) => Ok(Decision::new(host, &prepared)),
        Best::NoneScored(dynamic) => Err(refusal(view, &prepared, Some(dynamic))),
        Best::NoneWalked => Err(refusal(view, &prepared, None)),
    }
}

/// The value the strategy minimises (ties: lowest host id).
pub(crate) fn order_value(host: &Host, strategy: Strategy) -> u64 {
    match strategy {
        Strategy::Spread => host.load_ppm(),
        Strategy::Pack => u64::MAX - host.load_ppm(),
    }
}

/// The outcome of looking for the best candidate.
enum Best<'v> {
    Host(&'v Host),
    /// Every candidate was scored and none fits: what each failed, counted.
    NoneScored(Tally),
    /// The walk ended without a fit (not every candidate was looked at).
    NoneWalked,
}

fn best_candidate<'v>(
    view: &'v ClusterView,
    prepared: &Prepared<'_>,
    candidates: &HostSet,
    strategy: Strategy,
) -> Best<'v> {
    if candidates.is_empty() {
        // Every host failed a static filter: nothing dynamic to count.
        return Best::NoneScored(Tally::default());
    }
    let request = prepared.request;
    let Some(ordered) = view.index.ordered(&request.arch, request.site.as_deref()) else {
        // Cannot happen (candidates are ready hosts of this arch and site); scoring is always right.
        return score_all(view, prepared, candidates, strategy);
    };
    let budget = candidates.len().saturating_mul(SCORE_COST_IN_STEPS);
    let cap_load = cap_load_ppm(prepared.cap_percent);
    let walked = match strategy {
        Strategy::Spread => {
            let walk = ordered.spread.iter().take_while(|(load, _, _)| *load <= cap_load);
            walk_within(view, prepared, candidates, walk.map(|(_, _, slot)| *slot), budget)
        }
        Strategy::Pack => {
            let first: (u64, Arc<str>, Slot) = (u64::MAX - cap_load, Arc::from(""), 0);
            let walk = ordered.pack.range(first..);
            walk_within(view, prepared, candidates, walk.map(|(_, _, slot)| *slot), budget)
        }
    };
    match walked {
        Walked::Found(Some(host)) => Best::Host(host),
        Walked::Found(None) => Best::NoneWalked,
        Walked::OverBudget => score_all(view, prepared, candidates, strategy),
    }
}

enum Walked<'v> {
    /// The walk ended: the first candidate that fits, or none.
    Found(Option<&'v Host>),
    /// The walk took more steps than scoring every candidate would cost.
    OverBudget,
}

/// Walks hosts best first to the first candidate that passes the dynamic filters, giving up after
/// `budget` steps.
fn walk_within<'v>(
    view: &'v ClusterView,
    prepared: &Prepared<'_>,
    candidates: &HostSet,
    walk: impl Iterator<Item = Slot>,
    budget: usize,
) -> Walked<'v> {
    for (steps, slot) in walk.enumerate() {
        if steps >= budget {
            return Walked::OverBudget;
        }
        if let Some(host) = view.host_at(slot).filter(|_| candidates.contains(slot)) {
            if dynamic_failure(host, prepared).is_none() {
                return Walked::Found(Some(host));
            }
        }
    }
    Walked::Found(None)
}

/// The best of the candidates that pass the dynamic filters, by scoring each (what the walk would
/// find), or, when none passes, the dynamic constraints they failed.
fn score_all<'v>(view: &'v ClusterView, prepared: &Prepared<'_>, candidates: &HostSet, strategy: Strategy) -> Best<'v> {
    let mut best: Option<(u64, &Host)> = None;
    let mut failed = Tally::default();
    for host in candidates.slots().filter_map(|slot| view.host_at(slot)) {
        match dynamic_failure(host, prepared) {
            Some(constraint) => failed.add(constraint, 1),
            None => {
                let order = order_value(host, strategy);
                let better = match best {
                    None => true,
                    Some((best_order, best_host)) => (order, host.id()) < (best_order, best_host.id()),
                };
                if better {
                    best = Some((order, host));
                }
            }
        }
    }
    match best {
        Some((_, host)) => Best::Host(host),
        None => Best::NoneScored(failed),
    }
}

/// Every host attributed to the first constraint it fails: the static ones counted on the posting
/// sets, the dynamic ones host by host among the static candidates (unless already counted).
fn refusal(view: &ClusterView, prepared: &Prepared<'_>, dynamic: Option<Tally>) -> NoFit {
    let mut tally = Tally::default();
    let candidates = static_candidates(view, prepared, Some(&mut tally));
    match dynamic {
        Some(dynamic) => tally.merge(dynamic),
        None => {
            for host in candidates.slots().filter_map(|slot| view.host_at(slot)) {
                if let Some(constraint) = dynamic_failure(host, prepared) {
                    tally.add(constraint, 1);
                }
            }
        }
    }
    tally.into_no_fit(prepared, view.host_count())
}
