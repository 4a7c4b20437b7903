//! The leader's host leases: when each host was last heard from, and what it said.
//!
//! It exists so heartbeats never go through Raft (thousands of hosts would mean thousands of writes
//! a second): they only refresh this table in the leader's memory, and only a lease running out (or
//! an offline host heard from again) becomes a replicated transition. The table belongs to one term:
//! a member that starts leading starts every lease afresh (a grace period), so a new leader never
//! declares everyone offline for silence it did not witness. Time is handed in, so it is testable.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hci_shared::hosts::{HeartbeatStatus, HostHeartbeat, VmStatusReport};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    /// `None` when the host joined but has not sent a heartbeat yet.
    heartbeat: Option<HostHeartbeat>,
}

#[derive(Debug)]
struct Table {
    /// The term this member leads in; `None` while it does not lead.
    term: Option<u64>,
    /// When it started leading: the last-heard time of every host it has not heard from since.
    since: Instant,
    seen: HashMap<String, Seen>,
    /// Transitions proposed and not yet answered (host id → alive), so each is proposed once.
    pending: HashMap<String, bool>,
    /// When an offline host was last heard from again (see [`Leases::revived`]).
    revived: Option<Instant>,
}

/// The lease table of one member (live only while it leads).
#[derive(Debug)]
pub struct Leases {
    lease: Duration,
    table: Mutex<Table>,
}

impl Leases {
    pub fn new(lease: Duration, now: Instant) -> Self {
        let table = Table { term: None, since: now, seen: HashMap::new(), pending: HashMap::new(), revived: None };
        Self { lease, table: Mutex::new(table) }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often agents are asked to heartbeat: a quarter of the lease, so three may be lost.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(100))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lead_locked(table: &mut Table, term: u64, now: Instant) {
        if table.term != Some(term) {
            *table =
                Table { term: Some(term), since: now, seen: HashMap::new(), pending: HashMap::new(), revived: None };
        }
    }

    /// This member leads in `term`: a new term starts every lease afresh at `now`.
    pub fn lead(&self, term: u64, now: Instant) {
        Self::lead_locked(&mut self.lock(), term, now);
    }

    /// This member does not lead (any more): forget everything.
    pub fn step_down(&self, now: Instant) {
        let mut table = self.lock();
        if table.term.is_some() {
            *table = Table { term: None, since: now, seen: HashMap::new(), pending: HashMap::new(), revived: None };
        }
    }

    /// Host `id` was heard from at `now` (a join passes no heartbeat).
    pub fn heard(&self, term: u64, id: &str, heartbeat: Option<HostHeartbeat>, now: Instant) {
        let mut table = self.lock();
        Self::lead_locked(&mut table, term, now);
        let heartbeat = heartbeat.or_else(|| table.seen.get(id).and_then(|s| s.heartbeat.clone()));
        table.seen.insert(id.to_string(), Seen { at: now, heartbeat });
    }

    /// Of `ready` hosts, those whose lease ran out at `now`, with how long they have been silent.
    pub fn expired<'a>(&self, ready: impl IntoIterator<Item = &'a str>, now: Instant) -> Vec<(String, Duration)> {
        let table = self.lock();
        if table.term.is_none() {
            return Vec::new();
        }
        ready
            .into_iter()
            .filter(|id| !table.pending.contains_key(*id))
            .filter_map(|id| {
                let last = table.seen.get(id).map_or(table.since, |s| s.at);
                let silent = now.saturating_duration_since(last);
                (silent > self.lease).then(|| (id.to_string(), silent))
            })
            .collect()
    }

    /// How long host `id` has been silent at `now` as this member saw it leading in `term` (since
    /// its last heartbeat or join, or since this term began); `None` unless it leads in `term`.
    pub fn silence(&self, term: u64, id: &str, now: Instant) -> Option<Duration> {
        let table = self.lock();
        if table.term != Some(term) {
            return None;
        }
        let last = table.seen.get(id).map_or(table.since, |s| s.at);
        Some(now.saturating_duration_since(last))
    }

    /// Marks a transition of `id` as proposed; `false` when one is already in flight.
    pub fn begin(&self, id: &str, alive: bool) -> bool {
        let mut table = self.lock();
        if table.pending.contains_key(id) {
            return false;
        }
        table.pending.insert(id.to_string(), alive);
        true
    }

    /// The transition of `id` was answered (committed or not).
    pub fn end(&self, id: &str) {
        self.lock().pending.remove(id);
    }

    /// An offline host was heard from again at `now`. Silent hosts may have been cut off together
    /// with it (a partition of the controllers from many hosts); they learn from it, their peer,
    /// that the controllers are back and fence themselves only then, so HA waits a while after any
    /// revival (see `hosts::ha`).
    pub fn revived(&self, term: u64, now: Instant) {
        let mut table = self.lock();
        Self::lead_locked(&mut table, term, now);
        table.revived = Some(now);
    }

    /// How long ago, in `term`, an offline host was last heard from again; `None` if not since
    /// this member leads in `term`.
    pub fn since_revival(&self, term: u64, now: Instant) -> Option<Duration> {
        let table = self.lock();
        if table.term != Some(term) {
            return None;
        }
        table.revived.map(|at| now.saturating_duration_since(at))
    }

    /// What this member (as leader, `me`) last heard from `id`.
    pub fn status(&self, id: &str, me: u64, now: Instant) -> Option<HeartbeatStatus> {
        let table = self.lock();
        table.term?;
        let seen = table.seen.get(id)?;
        let heartbeat = seen.heartbeat.as_ref();
        Some(HeartbeatStatus {
            age_ms: millis(now.saturating_duration_since(seen.at)),
            observed_by: me,
            usage: heartbeat.map(|h| h.usage.clone()).unwrap_or_default(),
            desired_generation: heartbeat.map_or(0, |h| h.desired_generation),
            converged_generation: heartbeat.and_then(|h| h.converged_generation),
        })
    }

    /// What host `host` last reported about VM `vm` (through this member, while it leads), and
    /// how many milliseconds ago.
    pub fn vm_report(&self, host: &str, vm: &str, now: Instant) -> Option<(VmStatusReport, u64)> {
        let table = self.lock();
        table.term?;
        let seen = table.seen.get(host)?;
        let report = seen.heartbeat.as_ref()?.vms.iter().find(|r| r.id == vm)?.clone();
        Some((report, millis(now.saturating_duration_since(seen.at))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_silent_host_expires_after_the_lease_and_a_heartbeat_renews_it() {
        let t0 = Instant::now();
        let leases = Leases::new(LEASE, t0);
        assert!(leases.expired(["h1"], t0 + ms(60_000)).is_empty(), "a follower decides nothing");
        leases.lead(3, t0);
        leases.heard(3, "h1", None, t0);
        assert!(leases.expired(["h1", "h2"], t0 + LEASE).is_empty(), "not past the lease yet");
        let expired = leases.expired(["h1", "h2"], t0 + LEASE + ms(1));
        assert_eq!(expired, vec![("h1".to_string(), LEASE + ms(1)), ("h2".to_string(), LEASE + ms(1))]);
        leases.heard(3, "h1", Some(HostHeartbeat { desired_generation: 7, ..Default::default() }), t0 + ms(5_000));
        let expired = leases.expired(["h1", "h2"], t0 + LEASE + ms(1));
        assert_eq!(expired.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["h2"]);
        let status = leases.status("h1", 2, t0 + ms(6_000)).expect("heard");
        assert_eq!((status.age_ms, status.observed_by, status.desired_generation), (1_000, 2, 7));
        leases.heard(3, "h1", None, t0 + ms(7_000));
        assert_eq!(leases.status("h1", 2, t0 + ms(7_000)).map(|s| s.desired_generation), Some(7), "kept by a join");
    }

    #[test]
    fn a_new_term_starts_every_lease_afresh() {
        let t0 = Instant::now();
        let leases = Leases::new(LEASE, t0);
        leases.lead(3, t0);
        leases.heard(3, "h1", None, t0);
        // Elected in term 4 long after h1 was last heard of: a grace period, not a mass offline.
        let t1 = t0 + ms(60_000);
        leases.lead(4, t1);
        assert!(leases.status("h1", 1, t1).is_none(), "the old term's leases are gone");
        assert!(leases.expired(["h1"], t1 + LEASE).is_empty());
        assert_eq!(leases.expired(["h1"], t1 + LEASE + ms(1)).len(), 1);
        assert_eq!(leases.silence(4, "h1", t1 + ms(300)), Some(ms(300)), "silent since the term began");
        assert_eq!(leases.silence(3, "h1", t1 + ms(300)), None, "not the term it leads in");
        leases.heard(4, "h1", None, t1 + ms(500));
        assert_eq!(leases.silence(4, "h1", t1 + ms(800)), Some(ms(300)));
        leases.step_down(t1);
        assert!(leases.expired(["h1"], t1 + LEASE + ms(1)).is_empty());
        assert_eq!(leases.silence(4, "h1", t1 + ms(800)), None);
    }

    #[test]
    fn a_transition_is_proposed_once() {
        let t0 = Instant::now();
        let leases = Leases::new(LEASE, t0);
        leases.lead(1, t0);
        assert!(leases.begin("h1", false));
        assert!(!leases.begin("h1", true));
        assert!(leases.expired(["h1"], t0 + LEASE * 2).is_empty(), "in flight");
        leases.end("h1");
        assert_eq!(leases.expired(["h1"], t0 + LEASE * 2).len(), 1);
        assert_eq!(leases.heartbeat_interval(), ms(2_500));
    }
}
