//! The request stream: the same sequence of requests and policies in every pass of a run.
//!
//! Mostly new VMs (`cluster::request`), some migrations of placed VMs; spread by default, pack for
//! a share of requests. Migrations pick from the view the pass is at, which is the same in every
//! pass as long as the planners decide the same (the run fails otherwise).

use hci_placement::{ClusterView, PlacementRequest, Policy, Strategy};

use crate::rng::Rng;
use crate::{cluster, Settings};

pub struct Stream {
    rng: Rng,
    groups: u64,
    pack_percent: u64,
    move_percent: u64,
}

impl Stream {
    /// `groups`: anti-affinity groups handed out to the existing VMs (new ones continue after).
    pub fn new(settings: &Settings, groups: u64) -> Self {
        Self {
            rng: Rng::new(settings.seed ^ 0x5EED_5EED),
            groups,
            pack_percent: settings.pack_percent,
            move_percent: settings.move_percent,
        }
    }

    /// The `n`th request and its policy.
    pub fn next(&mut self, view: &ClusterView, n: usize) -> (PlacementRequest, Policy) {
        let strategy = if self.rng.chance(self.pack_percent) { Strategy::Pack } else { Strategy::Spread };
        let policy = Policy::default().with_strategy(strategy);
        if self.rng.chance(self.move_percent) {
            let placed = view.placed_vms().count();
            if placed > 0 {
                let nth = self.rng.index(placed);
                if let Some(request) = view.placed_vms().nth(nth).and_then(|(vm, _)| view.move_request(vm, [])) {
                    return (request, policy);
                }
            }
        }
        (cluster::request(format!("new-{n:05}"), &mut self.rng, &mut self.groups), policy)
    }
}
