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
//!   of ours had already failed, and one of ours that started after that acknowledgement failed too.
//!   The first half keeps a peer whose last heartbeat happened to land just before the controllers
//!   died (peers heartbeat at other moments) from looking like contact; the second keeps a peer
//!   that reconnected first, when the controllers come back, from fencing everyone else;
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

/// The decision with what it remembers between two rounds of questions: the earliest peer
/// acknowledgement seen since this host's silence began.
#[derive(Debug, Default)]
pub struct Judge {
    silence: Option<Instant>,
    evidence: Option<(String, Instant)>,
}

impl Judge {
    /// Judges one round of `answers`, with this host's own `contact` as it is now.
    pub fn decide(&mut self, answers: &[PeerAnswer], fence_after: Duration, contact: &ContactView) -> Verdict {
        let silence = contact.silent_since();
        if self.silence != Some(silence) {
            self.silence = Some(silence);
            self.evidence = None;
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
            let after_our_failure = contact.first_failure_end.is_some_and(|failed| acked_at > failed);
            if after_our_failure && self.evidence.as_ref().is_none_or(|(_, seen)| acked_at < *seen) {
                self.evidence = Some((answer.host_id.clone(), acked_at));
            }
        }
        if let Some((peer, acked_at)) = &self.evidence {
            if contact.last_failure_start.is_some_and(|tried| tried > *acked_at) {
                return Verdict::Isolated(format!(
                    "peer {peer} reaches the controllers while this host's heartbeats keep failing"
                ));
            }
            return Verdict::Undecided(format!(
                "peer {peer} reached the controllers; waiting for this host's next try"
            ));
        }
        match hearing {
            Some((peer, age)) => Verdict::Undecided(format!(
                "peer {peer} heard the controllers {} ms ago, before this host's heartbeats failed",
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

    /// This host: last ack sent at t0, then failures at the given (start, end) offsets.
    fn contact(t0: Instant, failures: &[(u64, u64)]) -> ContactView {
        ContactView {
            started: t0 - ms(60_000),
            last_ack_sent: Some(t0),
            last_state: None,
            first_failure_end: failures.first().map(|&(_, end)| t0 + ms(end)),
            last_failure_start: failures.last().map(|&(start, _)| t0 + ms(start)),
        }
    }

    fn heard(host: &str, asked_at: Instant, age_ms: Option<u64>) -> PeerAnswer {
        PeerAnswer { host_id: host.into(), asked_at, result: Ok(age_ms.map(ms)) }
    }

    #[test]
    fn zero_peers_is_never_isolation() {
        let t0 = Instant::now();
        assert_eq!(Judge::default().decide(&[], FENCE_AFTER, &contact(t0, &[(1000, 1000)])), Verdict::NoPeers);
    }

    #[test]
    fn a_peer_that_does_not_answer_means_isolated() {
        let t0 = Instant::now();
        let answers = [
            heard("h2", t0 + ms(3000), Some(5000)),
            PeerAnswer { host_id: "h3".into(), asked_at: t0 + ms(3000), result: Err("timed out".into()) },
        ];
        let verdict = Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000)]));
        assert!(matches!(verdict, Verdict::Isolated(ref why) if why.contains("h3")), "{verdict:?}");
    }

    #[test]
    fn every_peer_without_contact_is_an_outage() {
        let t0 = Instant::now();
        let answers = [heard("h2", t0 + ms(3500), Some(3100)), heard("h3", t0 + ms(3500), None)];
        assert_eq!(Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000)])), Verdict::Outage);
    }

    #[test]
    fn a_peer_acked_after_our_failures_while_we_keep_failing_means_isolated() {
        let t0 = Instant::now();
        // We failed at 1000 and 2000; the peer's last ack was sent at 3000 - 1500 = 1500.
        let answers = [heard("h2", t0 + ms(3000), Some(1500))];
        let verdict = Judge::default().decide(&answers, FENCE_AFTER, &contact(t0, &[(1000, 1000), (2000, 2000)]));
        assert!(matches!(verdict, Verdict::Isolated(ref why) if why.contains("h2")), "{verdict:?}");
    }

    #[test]
    fn a_peer_whose_last_ack_came_before_the_controllers_died_is_no_contact() {
        // The peer heartbeats half an interval after us: its last ack (500) precedes our first
        // failure (1000, after the controllers died at 700), so it is not contact, only not yet old.
        let t0 = Instant::now();
        let mut judge = Judge::default();
        let failures = [(1000, 1000), (2000, 2000), (3000, 3000)];
        let early = judge.decide(&[heard("h2", t0 + ms(3000), Some(2500))], FENCE_AFTER, &contact(t0, &failures));
        assert!(matches!(early, Verdict::Undecided(_)), "{early:?}");
        let later = judge.decide(&[heard("h2", t0 + ms(3600), Some(3100))], FENCE_AFTER, &contact(t0, &failures));
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
        let verdict = judge.decide(&answers, FENCE_AFTER, &contact(t0, &failures));
        assert!(matches!(verdict, Verdict::Undecided(_)), "{verdict:?}");
        let failed_again = [(1000, 1000), (10_200, 10_200)];
        let answers = [heard("h2", t0 + ms(10_300), Some(300))];
        let verdict = judge.decide(&answers, FENCE_AFTER, &contact(t0, &failed_again));
        assert!(matches!(verdict, Verdict::Isolated(_)), "{verdict:?}");
        // Our heartbeat got through instead: the silence (and the evidence) is gone.
        let mut back = contact(t0 + ms(10_200), &[]);
        back.started = t0;
        let answers = [heard("h2", t0 + ms(10_300), Some(300))];
        let verdict = judge.decide(&answers, FENCE_AFTER, &back);
        assert!(matches!(verdict, Verdict::Undecided(_)), "{verdict:?}");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_660_245_123), "2026-11-26T02:30:45Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
