//! Self-fencing, the decision: is this host cut off from the controllers (power its HA VMs off, the
//! controller will restart them elsewhere), or are the controllers down for everyone (keep running:
//! nobody can restart anything)? Pure: the watcher (`fence_watch.rs`) gathers the inputs and acts.
//!
//! It exists because the controller restarts a failed host's HA VMs elsewhere after the host's lease
//! plus a margin, so an isolated host must have stopped them by then, or a VM runs twice; while a
//! full controller outage must never stop anything. See `docs/fencing.md`.
//!
//! The rule of [`hci_shared::agent::Isolation`], made robust to heartbeats that are not in step:
//! - a peer that does not answer (in time, or as the host it should be) means isolated;
//! - a peer *hears the controllers* only if it had a heartbeat acknowledged that it sent after one
//!   of ours had already failed, and one of ours that started after that acknowledgement failed too;
//!   or that it sent while one of ours was under way which then went unanswered for [`UNANSWERED`]
//!   more (a black hole: our tries hang instead of failing). The first half keeps a peer whose last
//!   heartbeat happened to land just before the controllers died (peers heartbeat at other moments)
//!   from looking like contact; the second keeps a peer that reconnected first, when the
//!   controllers come back, from fencing everyone else;
//! - every peer answering with no acknowledgement younger than `fence_after` means an outage.
//!
//! Anything else is undecided for now and asked again a moment later.

use std::time::{Duration, Instant};

use super::contact::ContactView;

/// One peer's answer to `GET /agent/v1/controller-contact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    pub host_id: String,
    /// When the question was sent.
    pub asked_at: Instant,
    /// The peer's `last_ack_age_ms` (`None`: it never had one), or why it did not answer.
    pub result: Result<Option<Duration>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No peers: nobody could restart the VMs, so they never need fencing.
    NoPeers,
    /// The controllers are down (or cut off) for every peer too: keep running.
    Outage,
    /// This host is the one cut off: fence (the reason, for the log).
    Isolated(String),
    /// Not yet clear (the reason, for the log): ask again.
    Undecided(String),
}

/// How long one of our attempts must have gone unanswered after a peer's acknowledged heartbeat
/// was sent, for that to show that the controllers answer the peer and not us.
pub const UNANSWERED: Duration = Duration::from_secs(1);
/// Peer acknowledgements remembered while silent.
const SEEN_KEPT: usize = 16;

/// Whether a peer's heartbeat sent at `acked_at` (and acknowledged) shows that the controllers
/// answer it and not this host (see the module's rules).
fn shows_isolation(acked_at: Instant, contact: &ContactView, now: Instant) -> bool {
    let failed_before = contact.failures.iter().any(|&(_, gave_up)| gave_up < acked_at);
    let failed_after = contact.failures.iter().any(|&(sent, _)| sent > acked_at);
    let unanswered = contact
        .failures
        .iter()
        .copied()
        .chain(contact.pending.map(|sent| (sent, now)))
        .any(|(sent, until)| sent < acked_at && until > acked_at + UNANSWERED);
    (failed_before && failed_after) || unanswered
}

/// The decision with what it remembers between two rounds of questions: the peers'
/// acknowledgements seen since this host's silence began (a later failure of ours may make one
/// count).
#[derive(Debug, Default)]
pub struct Judge {
    silence: Option<Instant>,
    seen: Vec<(String, Instant)>,
}

impl Judge {
    /// Judges one round of `answers`, with this host's own `contact` as it is at `now`.
    pub fn decide(
        &mut self,
        answers: &[PeerAnswer],
        fence_after: Duration,
        contact: &ContactView,
        now: Instant,
    ) -> Verdict {
        let silence = contact.silent_since();
        if self.silence != Some(silence) {
            self.silence = Some(silence);
            self.seen.clear();
        }
        if answers.is_empty() {
            return Verdict::NoPeers;
        }
        let mut hearing: Option<(&str, Duration)> = None;
        for answer in answers {
            let age = match &answer.result {
                Err(e) => return Verdict::Isolated(format!("peer {} does not answer: {e}", answer.host_id)),
                Ok(Some(age)) if *age < fence_after => *age,
                Ok(_) => continue,
            };
            hearing = Some((&answer.host_id, age));
            let acked_at = answer.asked_at.checked_sub(age).unwrap_or(answer.asked_at);
            if acked_at > silence && !self.seen.iter().any(|(h, at)| h == &answer.host_id && *at == acked_at) {
                if self.seen.len() >= SEEN_KEPT {
                    self.seen.remove(0);
                }
                self.seen.push((answer.host_id.clone(), acked_at));
            }
        }
        if let Some((peer, _)) = self.seen.iter().find(|(_, at)| shows_isolation(*at, contact, now)) {
            return Verdict::Isolated(format!(
                "peer {peer} reaches the controllers while this host's heartbeats go unanswered"
            ));
        }
        match hearing {
            Some((peer, age)) => Verdict::Undecided(format!(
                "peer {peer} heard the controllers {} ms ago; waiting to see whether this host's next try fails",
                age.as_millis()
            )),
            None => Verdict::Outage,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of milliseconds since the Unix epoch (UTC), for messages.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FENCE_AFTER: Duration = Duration::from_millis(3000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// This host: last ack sent at t0, then failures at the given (sent, gave up) offsets.
    fn contact(t0: Instant, failures: &[(u64, u64)]) -> ContactView {
        ContactView {
            started: t0 - ms(60_000),
            last_ack_sent: Some(t0),
            last_state: None,
            failures: failures.iter().map(|&(sent, end)| (t0 + ms(sent), t0 + ms(end))).collect(),
            pending: None,
        }
    }

    fn heard(host: &str, asked_at: Instant, age_ms: Option<u64>) -> PeerAnswer {
        PeerAnswer { host_id: host.into(), asked_at, result: Ok(age_ms.map(ms)) }
    }

    #[test]
    fn zero_peers_is_never_isolation() {
        let t0 = Instant::now();
        assert_eq!(
            Judge::default().decide(&[], FENCE_AFTER, &contact(t0, &[(1000, 1000)]), t0 + ms(3000)),
            Verdict::NoPeers
        );
    }

    #[test]
    fn a_peer_that_does_not_answer_means_isolated() {
        let t0 = Instant::now();
        let answers = [
            heard("h2", t0 + ms(3000), Some(5000)),
            PeerAnswer { host_id: "h3".into(), asked_at: t0 + ms(3000), result: Err("timed out".into()) },
        ];
        let verdict = Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000)]), t0 + ms(3000));
        assert!(matches!(verdict, Verdict::Isolated(ref why) if why.contains("h3")), "{verdict:?}");
    }

    #[test]
    fn every_peer_without_contact_is_an_outage() {
        let t0 = Instant::now();
        let answers = [heard("h2", t0 + ms(3500), Some(3100)), heard("h3", t0 + ms(3500), None)];
        assert_eq!(
            Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000)]), t0 + ms(3500)),
            Verdict::Outage
        );
    }

    #[test]
    fn a_peer_acked_after_our_failures_while_we_keep_failing_means_isolated() {
        let t0 = Instant::now();
        // We failed at 1000 and 2000; the peer's last ack was sent at 3000 - 1500 = 1500.
        let answers = [heard("h2", t0 + ms(3000), Some(1500))];
        let verdict =
            Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000), (2000, 2000)]), t0 + ms(3000));
        assert!(matches!(verdict, Verdict::Isolated(ref why) if why.contains("h2")), "{verdict:?}");
    }

    #[test]
    fn a_peer_whose_last_ack_came_before_the_controllers_died_is_no_contact() {
        // The peer heartbeats half an interval after us: its last ack (500) precedes our first
        // failure (1000, after the controllers died at 700), so it is not contact, only not yet old.
        let t0 = Instant::now();
        let mut judge = Judge::default();
        let failures = [(1000, 1000), (2000, 2000), (3000, 3000)];
        let early = judge.decide(
            &[heard("h2", t0 + ms(3000), Some(2500))],
            FENCE_AFTER,
            &contact(t0, &failures),
            t0 + ms(3000),
        );
        assert!(matches!(early, Verdict::Undecided(_)), "{early:?}");
        let later = judge.decide(
            &[heard("h2", t0 + ms(3600), Some(3100))],
            FENCE_AFTER,
            &contact(t0, &failures),
            t0 + ms(3600),
        );
        assert_eq!(later, Verdict::Outage);
    }

    #[test]
    fn a_peer_that_reconnects_first_does_not_fence_us_before_we_try_again() {
        // Outage since long; the controllers return and the peer's heartbeat (sent at 10_000) gets
        // through before our next one: undecided until our next try fails (isolated) or succeeds.
        let t0 = Instant::now();
        let mut judge = Judge::default();
        let failures = [(1000, 1000), (9000, 9000)];
        let answers = [heard("h2", t0 + ms(10_100), Some(100))];
        let verdict = judge.decide(&answers, FENCE_AFTER, &contact(t0, &failures), t0 + ms(10_100));
        assert!(matches!(verdict, Verdict::Undecided(_)), "{verdict:?}");
        let failed_again = [(1000, 1000), (10_200, 10_200)];
        let answers = [heard("h2", t0 + ms(10_300), Some(300))];
        let verdict = judge.decide(&answers, FENCE_AFTER, &contact(t0, &failed_again), t0 + ms(10_300));
        assert!(matches!(verdict, Verdict::Isolated(_)), "{verdict:?}");
        // Our heartbeat got through instead: the silence (and the evidence) is gone.
        let mut back = contact(t0 + ms(10_200), &[]);
        back.started = t0;
        let answers = [heard("h2", t0 + ms(10_300), Some(300))];
        let verdict = judge.decide(&answers, FENCE_AFTER, &back, t0 + ms(10_300));
        assert!(matches!(verdict, Verdict::Undecided(_)), "{verdict:?}");
    }

    #[test]
    fn a_peer_answered_while_our_try_hangs_unanswered_means_isolated() {
        // A black hole: our heartbeat sent at 1000 hangs; the peer's, sent at 1500, was answered.
        let t0 = Instant::now();
        let mut hanging = contact(t0, &[]);
        hanging.pending = Some(t0 + ms(1000));
        let answers = [heard("h2", t0 + ms(2000), Some(500))];
        let mut judge = Judge::default();
        let soon = judge.decide(&answers, FENCE_AFTER, &hanging, t0 + ms(2000));
        assert!(matches!(soon, Verdict::Undecided(_)), "not unanswered for long enough yet: {soon:?}");
        let later = judge.decide(&answers, FENCE_AFTER, &hanging, t0 + ms(2600));
        assert!(matches!(later, Verdict::Isolated(_)), "{later:?}");
        // The same with the hung try given up (a failure spanning the peer's acknowledgement).
        let gave_up = contact(t0, &[(1000, 3000)]);
        let verdict = Judge::default().decide(&answers, FENCE_AFTER, &gave_up, t0 + ms(3000));
        assert!(matches!(verdict, Verdict::Isolated(_)), "{verdict:?}");
        // But a try that failed fast before the peer's (the controllers just died) is no evidence.
        let fast = contact(t0, &[(1000, 1001)]);
        let answers = [heard("h2", t0 + ms(3000), Some(2100))];
        let verdict = Judge::default().decide(&answers, FENCE_AFTER, &fast, t0 + ms(3000));
        assert!(matches!(verdict, Verdict::Undecided(_)), "{verdict:?}");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_660_245_123), "2026-11-26T02:30:45Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
