//! Per-host wake-ups for the desired-state long poll (`GET /v1/hosts/{id}/desired`).
//!
//! It exists so that a commit wakes only the polls of the hosts it changed: every change of a host's
//! desired state rewrites that host's record (its `desired_generation` moves), so the state machine
//! wakes the hosts whose records an applied batch wrote, and all of them after a snapshot install.
//! With thousands of agents polling, waking every poll on every commit would cost more than the
//! commits. Closed when the state machine goes away: polls then end (503) instead of hanging.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct HostWatches {
    /// `None` once closed.
    senders: Mutex<Option<HashMap<String, watch::Sender<()>>>>,
}

impl HostWatches {
    pub fn new() -> Self {
        Self { senders: Mutex::new(Some(HashMap::new())) }
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<String, watch::Sender<()>>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes when host `id`'s record is next written; `None` once closed.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<()>> {
        let mut guard = self.lock();
        let senders = guard.as_mut()?;
        Some(senders.entry(id.to_string()).or_insert_with(|| watch::channel(()).0).subscribe())
    }

    /// Wakes the polls of `hosts`, and forgets hosts nobody polls any more.
    pub fn wake<'a>(&self, hosts: impl IntoIterator<Item = &'a str>) {
        let mut guard = self.lock();
        let Some(senders) = guard.as_mut() else { return };
        for id in hosts {
            if let Some(sender) = senders.get(id) {
                sender.send_replace(());
                if sender.receiver_count() == 0 {
                    senders.remove(id);
                }
            }
        }
    }

    /// Wakes every poll (a snapshot replaced the whole state).
    pub fn wake_all(&self) {
        let mut guard = self.lock();
        let Some(senders) = guard.as_mut() else { return };
        senders.retain(|_, sender| {
            sender.send_replace(());
            sender.receiver_count() > 0
        });
    }

    /// Ends every poll: receivers see their sender gone.
    pub fn close(&self) {
        self.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_wakes_only_its_hosts_polls_and_close_ends_them() {
        let watches = HostWatches::new();
        let mut h1 = watches.subscribe("h1").expect("open");
        let h2 = watches.subscribe("h2").expect("open");
        watches.wake(["h1", "h9"]);
        assert!(h1.has_changed().expect("open"));
        assert!(!h2.has_changed().expect("open"), "h2 was not written");
        h1.mark_unchanged();
        watches.wake_all();
        assert!(h1.has_changed().expect("open") && h2.has_changed().expect("open"));
        h1.mark_unchanged();
        watches.close();
        assert!(h1.changed().await.is_err(), "a closed watch ends the poll");
        assert!(watches.subscribe("h1").is_none());
    }

    #[test]
    fn hosts_nobody_polls_are_forgotten() {
        let watches = HostWatches::new();
        drop(watches.subscribe("h1"));
        watches.wake(["h1"]);
        assert!(watches.lock().as_ref().is_some_and(|s| s.is_empty()));
    }
}
