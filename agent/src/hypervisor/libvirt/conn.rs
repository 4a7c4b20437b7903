//! The shared libvirt connection: opened once, used from any thread, replaced once when a call
//! finds it dead (libvirtd restarted) and that call retried; and the mapping of libvirt's errors to
//! [`HypervisorError`] with the domain and action named.
//!
//! It exists so that `libvirt.rs` can treat the connection as always there. It must never retry more
//! than once (a call that fails twice is reported) and never hold its lock during a libvirt call.

use std::sync::{Arc, Mutex, MutexGuard};

use virt::connect::Connect;
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorDomain, ErrorNumber};

use crate::hypervisor::HypervisorError;

pub(super) struct Connection {
    uri: String,
    /// Replaced (not mutated) on reconnect; callers clone the `Arc` and never hold the lock in a call.
    conn: Mutex<Arc<Connect>>,
}

impl Connection {
    pub(super) fn open(uri: &str) -> Result<Self, HypervisorError> {
        Ok(Self { uri: uri.to_string(), conn: Mutex::new(Arc::new(open(uri)?)) })
    }

    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Connect>> {
        // The guarded value is a plain Arc swap: a panic elsewhere cannot leave it half-updated.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces `failed` by a new connection unless another thread already did.
    fn reconnect(&self, failed: &Arc<Connect>) -> Result<(), HypervisorError> {
        let mut current = self.lock();
        if Arc::ptr_eq(&current, failed) {
            *current = Arc::new(open(&self.uri)?);
            tracing::info!(uri = %self.uri, "reconnected to libvirt");
        }
        Ok(())
    }

    /// Runs `op` on the connection; when it fails because the connection is gone (libvirtd
    /// restarted), reconnects once and runs it again. `domain` names the domain in errors.
    pub(super) fn call<T>(
        &self,
        domain: Option<&str>,
        op: impl Fn(&Connect) -> Result<T, Failure>,
    ) -> Result<T, HypervisorError> {
        let conn = self.lock().clone();
        match op(&conn) {
            Ok(value) => Ok(value),
            Err(Failure::Libvirt { action, err }) if connection_lost(&conn, &err) => {
                tracing::warn!(uri = %self.uri, action, error = %err.message(), "libvirt connection lost; reconnecting");
                self.reconnect(&conn)?;
                let conn = self.lock().clone();
                op(&conn).map_err(|f| into_error(f, domain))
            }
            Err(f) => Err(into_error(f, domain)),
        }
    }
}

/// One failed step inside an operation, mapped to a [`HypervisorError`] once the operation is known
/// to have failed for good (after the reconnect retry).
pub(super) enum Failure {
    Libvirt { action: &'static str, err: VirtError },
    Other(HypervisorError),
}

pub(super) trait Step<T> {
    fn step(self, action: &'static str) -> Result<T, Failure>;
}

impl<T> Step<T> for Result<T, VirtError> {
    fn step(self, action: &'static str) -> Result<T, Failure> {
        self.map_err(|err| Failure::Libvirt { action, err })
    }
}

pub(super) fn code_is(err: &VirtError, code: ErrorNumber) -> bool {
    err.code() == Enum::Known(code)
}

pub(super) fn no_domain(err: &VirtError) -> bool {
    code_is(err, ErrorNumber::NoDomain)
}

/// "domain is not running" and the like: the domain changed state under us.
pub(super) fn not_running(err: &VirtError) -> bool {
    code_is(err, ErrorNumber::OperationInvalid)
}

fn open(uri: &str) -> Result<Connect, HypervisorError> {
    Connect::open(Some(uri))
        .map_err(|e| HypervisorError::Connect { uri: uri.to_string(), message: e.message().to_string() })
}

/// Whether `err` means the connection itself is gone (rather than the call being refused).
fn connection_lost(conn: &Connect, err: &VirtError) -> bool {
    code_is(err, ErrorNumber::NoConnect)
        || code_is(err, ErrorNumber::InvalidConn)
        || err.domain() == Enum::Known(ErrorDomain::Rpc)
        || !conn.is_alive().unwrap_or(false)
}

fn into_error(failure: Failure, domain: Option<&str>) -> HypervisorError {
    match (failure, domain) {
        (Failure::Other(e), _) => e,
        (Failure::Libvirt { err, .. }, Some(name)) if no_domain(&err) => {
            HypervisorError::NoSuchDomain(name.to_string())
        }
        (Failure::Libvirt { action, err }, Some(name)) => {
            HypervisorError::Domain { domain: name.to_string(), action, message: err.message().to_string() }
        }
        (Failure::Libvirt { action, err }, None) => HypervisorError::Query(format!("{action}: {}", err.message())),
    }
}
