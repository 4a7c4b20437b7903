//! When this agent last heard from the controllers: the send time of the last acknowledged heartbeat
//! (the instant the request started, not when the answer came: the controller's lease counts from
//! about then), the host state that acknowledgement carried, and the heartbeats that failed since.
//!
//! It exists so the agent API (`GET /agent/v1/controller-contact`, which peers ask) and the fence
//! watcher read one account of the controller contact that only the heartbeat and join loops write.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hci_shared::resources::HostState;

/// At most this many failed attempts are remembered (the first, and the latest others).
const FAILURES_KEPT: usize = 32;

/// What the heartbeat and join loops recorded, as one consistent copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    /// When the agent started: the silence counts from here until a first acknowledgement.
    pub started: Instant,
    /// Send time of the last acknowledged heartbeat.
    pub last_ack_sent: Option<Instant>,
    /// The host state in that acknowledgement.
    pub last_state: Option<HostState>,
    /// Attempts (heartbeats, joins) since the last acknowledgement that reached no controller:
    /// (sent, gave up), oldest first; the first and the latest [`FAILURES_KEPT`] - 1.
    pub failures: Vec<(Instant, Instant)>,
    /// The attempt in flight, if any: when it was sent.
    pub pending: Option<Instant>,
}

impl ContactView {
    /// Since when nothing was acknowledged: the last acknowledged send, or the agent's start.
    pub fn silent_since(&self) -> Instant {
        self.last_ack_sent.unwrap_or(self.started)
    }

    /// Age of the last acknowledged send at `now`; `None` when nothing was ever acknowledged.
    pub fn last_ack_age(&self, now: Instant) -> Option<Duration> {
        self.last_ack_sent.map(|sent| now.saturating_duration_since(sent))
    }
}

#[derive(Debug)]
pub struct Contact {
    view: Mutex<ContactView>,
}

impl Default for Contact {
    fn default() -> Self {
        Self::new()
    }
}

impl Contact {
    pub fn new() -> Self {
        Self {
            view: Mutex::new(ContactView {
                started: Instant::now(),
                last_ack_sent: None,
                last_state: None,
                failures: Vec::new(),
                pending: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ContactView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> ContactView {
        self.lock().clone()
    }

    /// An attempt is sent now (`sent`); it stays pending until acknowledged or failed.
    pub fn attempting(&self, sent: Instant) {
        self.lock().pending = Some(sent);
    }

    /// A heartbeat sent at `sent` was acknowledged with the host in `state`. Sends only go forward.
    pub fn acknowledged(&self, sent: Instant, state: HostState) {
        let mut view = self.lock();
        if view.pending == Some(sent) {
            view.pending = None;
        }
        if view.last_ack_sent.is_some_and(|last| last > sent) {
            return;
        }
        view.last_ack_sent = Some(sent);
        view.last_state = Some(state);
        view.failures.clear();
    }

    /// An attempt (heartbeat or join) started at `sent` reached no controller; it gave up at `ended`.
    pub fn failed(&self, sent: Instant, ended: Instant) {
        let mut view = self.lock();
        if view.pending == Some(sent) {
            view.pending = None;
        }
        if view.last_ack_sent.is_some_and(|last| last > sent) {
            return;
        }
        if view.failures.len() >= FAILURES_KEPT {
            view.failures.remove(1);
        }
        view.failures.push((sent, ended));
    }

    /// An attempt ended otherwise (refused: the controller answered, but not with an acknowledgement).
    pub fn settled(&self, sent: Instant) {
        let mut view = self.lock();
        if view.pending == Some(sent) {
            view.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_forgets_the_failures_before_it_and_never_goes_back() {
        let contact = Contact::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(contact.view().silent_since(), contact.view().started);
        contact.attempting(at(0));
        assert_eq!(contact.view().pending, Some(at(0)));
        contact.failed(at(0), at(5));
        contact.failed(at(10), at(12));
        let v = contact.view();
        assert_eq!((v.failures.clone(), v.pending), (vec![(at(0), at(5)), (at(10), at(12))], None));
        contact.attempting(at(20));
        contact.acknowledged(at(20), HostState::Ready);
        let v = contact.view();
        assert!(v.failures.is_empty() && v.pending.is_none());
        assert_eq!(v.silent_since(), at(20));
        contact.acknowledged(at(15), HostState::Fenced);
        assert_eq!(contact.view().last_state, Some(HostState::Ready), "an older send changes nothing");
        contact.failed(at(18), at(30));
        assert!(contact.view().failures.is_empty(), "a failure sent before the last ack is ignored");
        assert_eq!(v.last_ack_age(at(25)), Some(Duration::from_millis(5)));
        for i in 0..100 {
            contact.failed(at(100 + i), at(100 + i));
        }
        let kept = contact.view().failures;
        assert_eq!(kept.len(), FAILURES_KEPT);
        assert_eq!((kept[0], kept[FAILURES_KEPT - 1]), ((at(100), at(100)), (at(199), at(199))));
    }
}
