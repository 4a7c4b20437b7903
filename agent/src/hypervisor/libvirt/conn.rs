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
            Err(failure) if failure.virt_error().is_some_and(|err| connection_lost(&conn, err)) => {
                if let Failure::Libvirt { action, err } | Failure::About { action, err, .. } = &failure {
                    tracing::warn!(uri = %self.uri, action, error = %err.message(), "libvirt connection lost; reconnecting");
                }
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
    Libvirt {
        action: &'static str,
        err: VirtError,
    },
    /// A libvirt error about one disk (by target) or one snapshot (by name) of the domain.
    About {
        subject: Subject,
        action: &'static str,
        err: VirtError,
    },
    Other(HypervisorError),
}

/// What inside a domain a [`Failure::About`] concerns.
#[derive(Debug, Clone)]
pub(super) enum Subject {
    Disk(String),
    Snapshot(String),
}

impl Failure {
    fn virt_error(&self) -> Option<&VirtError> {
        match self {
            Failure::Libvirt { err, .. } | Failure::About { err, .. } => Some(err),
            Failure::Other(_) => None,
        }
    }
}

pub(super) trait Step<T> {
    fn step(self, action: &'static str) -> Result<T, Failure>;
    /// Like `step`, naming the disk or snapshot the action was about.
    fn step_about(self, subject: &Subject, action: &'static str) -> Result<T, Failure>;
}

impl<T> Step<T> for Result<T, VirtError> {
    fn step(self, action: &'static str) -> Result<T, Failure> {
        self.map_err(|err| Failure::Libvirt { action, err })
    }

    fn step_about(self, subject: &Subject, action: &'static str) -> Result<T, Failure> {
        self.map_err(|err| Failure::About { subject: subject.clone(), action, err })
    }
}

pub(super) fn code_is(err: &VirtError, code: ErrorNumber) -> bool {
    err.code() == Enum::Known(code)
}

pub(super) fn no_domain(err: &VirtError) -> bool {
    code_is(err, ErrorNumber::NoDomain)
}

/// Whether `err` may mean the connection is gone rather than the call refused (judged without the
/// connection: a caller must not undo anything on such an error, libvirt may have done the work).
pub(super) fn maybe_connection_lost(err: &VirtError) -> bool {
    code_is(err, ErrorNumber::NoConnect)
        || code_is(err, ErrorNumber::InvalidConn)
        || err.domain() == Enum::Known(ErrorDomain::Rpc)
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
    maybe_connection_lost(err) || !conn.is_alive().unwrap_or(false)
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
        (Failure::About { err, .. }, Some(name)) if no_domain(&err) => HypervisorError::NoSuchDomain(name.to_string()),
        (Failure::About { subject, action, err }, domain) => {
            let domain = domain.unwrap_or_default().to_string();
            let message = err.message().to_string();
            match subject {
                Subject::Disk(target) => HypervisorError::Disk { domain, target, action, message },
                Subject::Snapshot(snapshot) => HypervisorError::Snapshot { domain, snapshot, action, message },
            }
        }
    }
}
