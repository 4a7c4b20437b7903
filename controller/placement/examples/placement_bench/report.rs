//! Latency samples and the markdown report of a bench run.

use std::collections::BTreeMap;
use std::time::Duration;

use hci_placement::NoFit;

use crate::{Outcome, Pass};

fn refusal_kind(refusal: &NoFit) -> &'static str {
    match refusal {
        NoFit::NoHost { .. } => "no host fits",
        NoFit::OverQuota { .. } => "tenant quota",
        NoFit::UnknownTenant { .. } => "unknown tenant",
        NoFit::HostRejects { .. } | NoFit::UnknownHost { .. } => "verify",
    }
}

/// Per-call durations, split by outcome.
#[derive(Default)]
pub struct Timings {
    all_ns: Vec<u64>,
    refused_ns: Vec<u64>,
}

impl Timings {
    pub fn record(&mut self, elapsed: Duration, ok: bool) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.all_ns.push(ns);
        if !ok {
            self.refused_ns.push(ns);
        }
    }

    fn count(&self) -> usize {
        self.all_ns.len()
    }

    fn per_second(&self) -> f64 {
        let total: u64 = self.all_ns.iter().sum();
        if total == 0 {
            return 0.0;
        }
        self.all_ns.len() as f64 / (total as f64 / 1e9)
    }

    fn micros(samples: &[u64], quantile: f64) -> String {
        if samples.is_empty() {
            return "–".to_string();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        format!("{:.1}", sorted[rank - 1] as f64 / 1000.0)
    }

    fn p50(&self) -> String {
        Self::micros(&self.all_ns, 0.50)
    }

    fn p99(&self) -> String {
        Self::micros(&self.all_ns, 0.99)
    }

    fn max(&self) -> String {
        Self::micros(&self.all_ns, 1.0)
    }

    fn refused_p99(&self) -> String {
        Self::micros(&self.refused_ns, 0.99)
    }
}

pub struct Report {
    hosts: usize,
    existing: usize,
    generated: usize,
    build: Duration,
    populate: Duration,
    refusals: BTreeMap<&'static str, usize>,
    compared: usize,
    mismatches: usize,
}

impl Report {
    pub fn new(hosts: usize, existing: usize, generated: usize, build: Duration, populate: Duration) -> Self {
        Self { hosts, existing, generated, build, populate, refusals: BTreeMap::new(), compared: 0, mismatches: 0 }
    }

    /// Counts the requests on which the three runs did not decide the same (printing the first few).
    pub fn compare(&mut self, alone: &[Outcome], interleaved: &[Outcome], naive: &[Outcome]) {
        for refusal in alone.iter().filter_map(|outcome| outcome.as_ref().err()) {
            *self.refusals.entry(refusal_kind(refusal)).or_default() += 1;
        }
        self.compared = alone.len().max(interleaved.len()).max(naive.len());
        for n in 0..self.compared {
            let (a, b, c) = (alone.get(n), interleaved.get(n), naive.get(n));
            if a != b || a != c {
                if self.mismatches < 5 {
                    eprintln!("MISMATCH at request {n}: alone {a:?} / interleaved {b:?} / naive {c:?}");
                }
                self.mismatches += 1;
            }
        }
    }

    pub fn mismatches(&self) -> usize {
        self.mismatches
    }

    pub fn print(&self, alone: &Pass, interleaved: &Pass, naive: &Pass) {
        println!(
            "Site: {} hosts, {} existing VMs ({} generated; the rest fit nowhere), {} requests.",
            self.hosts,
            self.existing,
            self.generated,
            alone.place.count()
        );
        println!(
            "Setup (not measured below): hosts and index built in {} ms, existing VMs placed in {:.1} s.\n",
            self.build.as_millis(),
            self.populate.as_secs_f64()
        );
        println!(
            "| planner | pass | decisions | placed | refused | decisions/s | p50 µs | p99 µs | max µs | p99 of refusals µs |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, pass, timings) in [
            ("indexed (`place`)", "alone", &alone.place),
            ("indexed (`place`)", "interleaved with naive", &interleaved.place),
            ("naive (`place_naive`)", "interleaved with indexed", &naive.place),
        ] {
            let refused = timings.refused_ns.len();
            println!(
                "| {name} | {pass} | {} | {} | {refused} | {:.0} | {} | {} | {} | {} |",
                timings.count(),
                timings.count() - refused,
                timings.per_second(),
                timings.p50(),
                timings.p99(),
                timings.max(),
                timings.refused_p99()
            );
        }
        let ratio = |a: &Timings, b: &Timings| if b.per_second() > 0.0 { a.per_second() / b.per_second() } else { 0.0 };
        println!();
        println!(
            "- indexed / naive decisions/s: {:.0}x alone, {:.0}x interleaved",
            ratio(&alone.place, &naive.place),
            ratio(&interleaved.place, &naive.place)
        );
        println!(
            "- apply of a decision (index upkeep included; pass 1): p50 {} µs, p99 {} µs",
            alone.apply.p50(),
            alone.apply.p99()
        );
        let refusals: Vec<String> = self.refusals.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!("- refusals: {}", if refusals.is_empty() { "none".to_string() } else { refusals.join(", ") });
        println!(
            "- identical decisions in all three (refusals and their counts included): {} of {}",
            self.compared - self.mismatches,
            self.compared
        );
    }
}
