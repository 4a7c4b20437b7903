//! When this agent last heard from the controllers: the send time of the last acknowledged heartbeat
//! (the instant the request started, not when the answer came: the controller's lease counts from
//! about then), the host state that acknowledgement carried, and the heartbeats that failed since.
//!
//! It exists so the agent API (`GET /agent/v1/controller-contact`, which peers ask) and the fence
//! watcher read one account of the controller contact that only the heartbeat and join loops write.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hci_shared::resources::HostState;

/// What the heartbeat and join loops recorded, as one consistent copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactView {
    /// When the agent started: the silence counts from here until a first acknowledgement.
    pub started: Instant,
    /// Send time of the last acknowledged heartbeat.
    pub last_ack_sent: Option<Instant>,
    /// The host state in that acknowledgement.
    pub last_state: Option<HostState>,
    /// When the first attempt that failed after the last acknowledgement gave up.
    pub first_failure_end: Option<Instant>,
    /// When the latest failed attempt (since the last acknowledgement) started.
    pub last_failure_start: Option<Instant>,
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
                first_failure_end: None,
                last_failure_start: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ContactView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> ContactView {
        *self.lock()
    }

    /// A heartbeat sent at `sent` was acknowledged with the host in `state`. Sends only go forward.
    pub fn acknowledged(&self, sent: Instant, state: HostState) {
        let mut view = self.lock();
        if view.last_ack_sent.is_some_and(|last| last > sent) {
            return;
        }
        view.last_ack_sent = Some(sent);
        view.last_state = Some(state);
        view.first_failure_end = None;
        view.last_failure_start = None;
    }

    /// An attempt (heartbeat or join) started at `sent` reached no controller; it gave up at `ended`.
    pub fn failed(&self, sent: Instant, ended: Instant) {
        let mut view = self.lock();
        if view.last_ack_sent.is_some_and(|last| last > sent) {
            return;
        }
        view.first_failure_end.get_or_insert(ended);
        view.last_failure_start = Some(view.last_failure_start.map_or(sent, |s| s.max(sent)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_forgets_the_failures_before_it_and_never_goes_back() {
        let contact = Contact::new();
        let t0 = Instant::now();
        assert_eq!(contact.view().silent_since(), contact.view().started);
        contact.failed(t0, t0 + Duration::from_millis(5));
        contact.failed(t0 + Duration::from_millis(10), t0 + Duration::from_millis(12));
        let v = contact.view();
        assert_eq!(v.first_failure_end, Some(t0 + Duration::from_millis(5)));
        assert_eq!(v.last_failure_start, Some(t0 + Duration::from_millis(10)));
        contact.acknowledged(t0 + Duration::from_millis(20), HostState::Ready);
        let v = contact.view();
        assert_eq!((v.first_failure_end, v.last_failure_start), (None, None));
        assert_eq!(v.silent_since(), t0 + Duration::from_millis(20));
        contact.acknowledged(t0 + Duration::from_millis(15), HostState::Fenced);
        assert_eq!(contact.view().last_state, Some(HostState::Ready), "an older send changes nothing");
        contact.failed(t0 + Duration::from_millis(18), t0 + Duration::from_millis(30));
        assert_eq!(contact.view().first_failure_end, None, "a failure sent before the last ack is ignored");
        assert_eq!(v.last_ack_age(t0 + Duration::from_millis(25)), Some(Duration::from_millis(5)));
    }
}
