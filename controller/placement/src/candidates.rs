//! The static filters applied to every host at once, on the posting sets.
//!
//! It exists so a request's candidates (the hosts of the right arch, site, state, firmware, zones
//! and pools, minus its current and excluded hosts) cost a few ANDs of bitsets, and so a refusal
//! can count the hosts each static constraint excludes without looking at them one by one. It
//! follows the constraint order of `filter` exactly, so its counts equal the naive planner's.

use crate::filter::{Constraint, Prepared};
use crate::hostset::HostSet;
use crate::nofit::Tally;
use crate::view::ClusterView;

/// The hosts left after each filter, and (for a refusal) how many each filter took away.
struct Narrowing<'t> {
    remaining: HostSet,
    tally: Option<&'t mut Tally>,
}

impl Narrowing<'_> {
    /// Keeps the hosts in `keep` (none if there is no such set).
    fn keep(&mut self, keep: Option<&HostSet>, constraint: Constraint) {
        let empty = HostSet::default();
        let keep = keep.unwrap_or(&empty);
        match self.tally.as_deref_mut() {
            Some(tally) => tally.add(constraint, self.remaining.split_off_outside(keep).len()),
            None => self.remaining.retain_in(keep),
        }
    }

    fn drop_host(&mut self, slot: Option<u32>, constraint: Constraint) {
        if let Some(slot) = slot.filter(|slot| self.remaining.contains(*slot)) {
            self.remaining.remove(slot);
            if let Some(tally) = self.tally.as_deref_mut() {
                tally.add(constraint, 1);
            }
        }
    }
}

/// The hosts passing every static filter of the request. With `tally`, each host that fails one is
/// counted under the first static constraint it fails.
pub(crate) fn static_candidates(view: &ClusterView, prepared: &Prepared<'_>, tally: Option<&mut Tally>) -> HostSet {
    let (postings, request) = (&view.index.postings, prepared.request);
    let mut narrowing = Narrowing { remaining: postings.live.clone(), tally };
    narrowing.keep(postings.arch.get(&request.arch), Constraint::Arch);
    if let Some(site) = &request.site {
        narrowing.keep(postings.site.get(site), Constraint::Site);
    }
    if let Some(tally) = narrowing.tally.as_deref_mut() {
        for (state, constraint) in [
            (crate::model::HostState::Maintenance, Constraint::Maintenance),
            (crate::model::HostState::Offline, Constraint::Offline),
            (crate::model::HostState::Fenced, Constraint::Fenced),
        ] {
            let mut in_state = narrowing.remaining.clone();
            in_state.retain_in(postings.of_state(state));
            tally.add(constraint, in_state.len());
        }
    }
    narrowing.remaining.retain_in(&postings.ready);
    let slot_of = |host: &str| view.slots.get(host).copied();
    narrowing.drop_host(prepared.current_host.and_then(slot_of), Constraint::CurrentHost);
    for host in &request.exclude_hosts {
        narrowing.drop_host(slot_of(host), Constraint::Excluded);
    }
    narrowing.keep(postings.firmware.get(&request.firmware), Constraint::Firmware);
    for zone in &request.zones {
        narrowing.keep(postings.zones.get(zone), Constraint::Zones);
    }
    for (pool, _) in &prepared.pool_demand {
        narrowing.keep(postings.pools.get(*pool), Constraint::MissingPool);
    }
    narrowing.remaining
}
