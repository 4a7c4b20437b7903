//! An in-memory [`DhcpService`] for tests of the network step: it records which taps are served
//! with which leases, answers a datagram "on a tap" with the real [`packet::answer`], and refuses
//! taps a test names (as the kernel refuses a socket on a tap that is not there). It must never be
//! wired into the real agent binary.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::sync::{Mutex, MutexGuard};

use super::{packet, DhcpService, Lease};

#[derive(Debug, Default)]
pub struct FakeDhcp {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    served: BTreeMap<String, Lease>,
    missing: BTreeSet<String>,
    /// How many times a tap was started (a restart counts again).
    starts: BTreeMap<String, usize>,
}

impl FakeDhcp {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The taps served now, with their leases.
    pub fn served(&self) -> BTreeMap<String, Lease> {
        self.lock().served.clone()
    }

    /// How many times `tap` was started.
    pub fn starts(&self, tap: &str) -> usize {
        self.lock().starts.get(tap).copied().unwrap_or(0)
    }

    /// Opening `tap` fails from now on (`false`: works again).
    pub fn set_missing(&self, tap: &str, missing: bool) {
        let mut s = self.lock();
        if missing {
            s.missing.insert(tap.into());
        } else {
            s.missing.remove(tap);
        }
    }

    /// What the server on `tap` sends back for `datagram` (`None`: no server there, or no answer).
    pub fn answer(&self, tap: &str, datagram: &[u8]) -> Option<(Vec<u8>, SocketAddrV4)> {
        let lease = self.lock().served.get(tap).cloned()?;
        packet::answer(&lease, datagram)
    }
}

impl DhcpService for FakeDhcp {
    fn serve(&self, leases: &BTreeMap<String, Lease>) -> BTreeMap<String, String> {
        let mut s = self.lock();
        let mut errors = BTreeMap::new();
        s.served.retain(|tap, _| leases.contains_key(tap));
        for (tap, lease) in leases {
            if s.missing.contains(tap) {
                s.served.remove(tap);
                errors.insert(tap.clone(), format!("binding to {tap}: No such device (os error 19)"));
                continue;
            }
            if s.served.insert(tap.clone(), lease.clone()).is_none() {
                *s.starts.entry(tap.clone()).or_default() += 1;
            }
        }
        errors
    }
}
