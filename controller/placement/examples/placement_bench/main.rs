//! placement_bench: the planner alone at site scale, the indexed planner beside the naive one.
//!
//! Builds a deterministic synthetic site (`cluster`), places the existing VMs, then feeds one
//! seeded stream of requests (new VMs with mixed constraints, some migrations) to the planners,
//! timing every decision; each decision is applied to the planner's own copy of the view before
//! the next request, so the stream sees the cluster fill up. Two passes over the same stream:
//!
//! 1. `place` alone (what a controller runs);
//! 2. `place` and `place_naive` interleaved request by request (each naive scan of every host
//!    evicts the caches the indexed planner would otherwise find warm).
//!
//! All three sequences of decisions must be identical; any difference fails the run. Prints a
//! markdown report (see `bench/placement/run.sh`, BENCHMARKS.md).
//!
//! Usage: placement_bench [--hosts 5000] [--vms 100000] [--requests 10000] [--seed 1]
//!        [--pack-percent 25] [--move-percent 5]

mod cluster;
mod report;
mod rng;
mod stream;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use hci_placement::{place, place_naive, verify, ClusterView, Decision, NoFit, PlacementRequest, Policy};

use crate::report::{Report, Timings};
use crate::rng::Rng;
use crate::stream::Stream;

pub struct Settings {
    hosts: usize,
    vms: usize,
    requests: usize,
    seed: u64,
    pack_percent: u64,
    move_percent: u64,
}

impl Settings {
    fn from_args() -> Result<Self, String> {
        let mut settings =
            Settings { hosts: 5000, vms: 100_000, requests: 10_000, seed: 1, pack_percent: 25, move_percent: 5 };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = value.parse::<u64>().map_err(|_| format!("{flag}: '{value}' is not a number"))?;
            match flag.as_str() {
                "--hosts" => settings.hosts = number as usize,
                "--vms" => settings.vms = number as usize,
                "--requests" => settings.requests = number as usize,
                "--seed" => settings.seed = number,
                "--pack-percent" => settings.pack_percent = number.min(100),
                "--move-percent" => settings.move_percent = number.min(100),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(settings)
    }
}

/// The site with its hosts and tenants, no VMs yet.
fn build_site(settings: &Settings, rng: &mut Rng) -> ClusterView {
    let mut view = ClusterView::new();
    for i in 0..settings.hosts {
        view.upsert_host(cluster::host(i, rng));
    }
    for n in 0..cluster::TENANTS {
        view.set_tenant_limit(&cluster::tenant(n), cluster::tenant_limit(rng));
    }
    view
}

/// Places the existing VMs: each on a random host that fits (up to 8 tries, for an uneven load
/// like a real site's), else where the planner puts it. Returns how many were placed.
fn populate(view: &mut ClusterView, settings: &Settings, rng: &mut Rng, groups: &mut u64) -> usize {
    let host_ids: Vec<String> = view.hosts().map(|host| host.id().to_string()).collect();
    let policy = Policy::default();
    let mut placed = 0;
    for n in 0..settings.vms {
        let request = cluster::request(format!("vm-{n:06}"), rng, groups);
        let random_fit = (0..8).find_map(|_| {
            let decision =
                Decision { host: rng.pick(&host_ids).clone(), previous_host: None, request: request.clone() };
            verify(view, &decision, &policy).is_ok().then_some(decision)
        });
        if let Some(decision) = random_fit.or_else(|| place(view, &request, &policy).ok()) {
            if view.apply(&decision).is_ok() {
                placed += 1;
            }
        }
    }
    placed
}

type Outcome = Result<Decision, NoFit>;
type Planner = fn(&ClusterView, &PlacementRequest, &Policy) -> Outcome;

/// One planner's run over the stream: its outcomes and how long each call took.
#[derive(Default)]
pub struct Pass {
    outcomes: Vec<Outcome>,
    place: Timings,
    apply: Timings,
}

impl Pass {
    /// Times one call, keeps its outcome and applies its decision to `view`.
    fn decide(&mut self, planner: Planner, view: &mut ClusterView, request: &PlacementRequest, policy: &Policy) {
        let (outcome, elapsed) = timed(|| planner(view, request, policy));
        self.place.record(elapsed, outcome.is_ok());
        if let Ok(decision) = &outcome {
            let (applied, elapsed) = timed(|| view.apply(decision));
            self.apply.record(elapsed, true);
            if let Err(error) = applied {
                eprintln!("placement_bench: a fresh decision did not apply: {error}");
            }
        }
        self.outcomes.push(outcome);
    }
}

fn timed<T>(run: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let result = run();
    (result, start.elapsed())
}

/// Pass 1: the indexed planner alone.
fn run_alone(initial: &ClusterView, settings: &Settings, groups: u64) -> Pass {
    let (mut view, mut stream, mut pass) = (initial.clone(), Stream::new(settings, groups), Pass::default());
    for n in 0..settings.requests {
        let (request, policy) = stream.next(&view, n);
        pass.decide(place, &mut view, &request, &policy);
    }
    pass
}

/// Pass 2: both planners, request by request, alternating which goes first.
fn run_interleaved(initial: &ClusterView, settings: &Settings, groups: u64) -> (Pass, Pass) {
    let (mut indexed_view, mut naive_view) = (initial.clone(), initial.clone());
    let (mut stream, mut indexed, mut naive) = (Stream::new(settings, groups), Pass::default(), Pass::default());
    for n in 0..settings.requests {
        let (request, policy) = stream.next(&indexed_view, n);
        if n % 2 == 0 {
            indexed.decide(place, &mut indexed_view, &request, &policy);
            naive.decide(place_naive, &mut naive_view, &request, &policy);
        } else {
            naive.decide(place_naive, &mut naive_view, &request, &policy);
            indexed.decide(place, &mut indexed_view, &request, &policy);
        }
    }
    (indexed, naive)
}

fn main() -> ExitCode {
    let settings = match Settings::from_args() {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("placement_bench: {why}");
            return ExitCode::from(2);
        }
    };
    let mut rng = Rng::new(settings.seed);
    let mut groups = 0;
    let (mut initial, build_time) = timed(|| build_site(&settings, &mut rng));
    let (existing, populate_time) = timed(|| populate(&mut initial, &settings, &mut rng, &mut groups));
    let alone = run_alone(&initial, &settings, groups);
    let (interleaved, naive) = run_interleaved(&initial, &settings, groups);
    let mut report = Report::new(settings.hosts, existing, settings.vms, build_time, populate_time);
    report.compare(&alone.outcomes, &interleaved.outcomes, &naive.outcomes);
    report.print(&alone, &interleaved, &naive);
    if report.mismatches() > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
