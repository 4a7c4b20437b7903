//! What every libvirt-backed storage pool of the agent shares: the connection to libvirt (reopened
//! when libvirtd was restarted under it), the pool's lookup (defined persistent and autostarted when
//! missing), its refresh, and the mapping of libvirt errors into [`VolumeError`]s naming the pool.
//!
//! It exists so the directory pool and the rbd pool keep one copy of this. It must never destroy,
//! undefine or delete a pool: pools outlive the agent.

use std::sync::{Mutex, Once, PoisonError};

use virt::connect::Connect;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;

use super::VolumeError;

/// Whether a libvirt error carries `code`.
pub fn has_code(e: &VirtError, code: ErrorNumber) -> bool {
    e.code().is_known_and(|c| c == code)
}

/// libvirt's default handler prints every error to stderr, including the expected "no such volume"
/// of an existence check; errors are returned to the caller instead.
fn quiet_libvirt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

pub struct PoolLink {
    uri: String,
    /// `hci-<host>-<pool>`.
    name: String,
    conn: Mutex<Option<Connect>>,
}

impl std::fmt::Debug for PoolLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolLink").field("uri", &self.uri).field("name", &self.name).finish()
    }
}

impl PoolLink {
    pub fn new(uri: &str, name: &str) -> Self {
        quiet_libvirt();
        Self { uri: uri.to_string(), name: name.to_string(), conn: Mutex::new(None) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maps a libvirt error of `action` on this pool.
    pub fn err(&self, action: &'static str) -> impl Fn(VirtError) -> VolumeError + '_ {
        move |e| VolumeError::Pool { pool: self.name.clone(), message: format!("{action}: {}", e.message()) }
    }

    /// A refusal about this pool.
    pub fn refused(&self, message: String) -> VolumeError {
        VolumeError::Pool { pool: self.name.clone(), message }
    }

    fn connection(&self, fresh: bool) -> Result<Connect, VolumeError> {
        let mut cached = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if !fresh {
            if let Some(conn) = cached.as_ref() {
                if conn.is_alive().unwrap_or(false) {
                    return Ok(conn.clone());
                }
            }
        }
        let conn = Connect::open(Some(&self.uri))
            .map_err(|e| self.refused(format!("connecting to libvirt at {}: {}", self.uri, e.message())))?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// The pool (not necessarily active) and its connection; defined from `define_xml()` when libvirt
    /// has no pool of this name. A connection that fails is reopened once (libvirtd may have
    /// restarted).
    pub fn lookup_or_define(&self, define_xml: impl Fn() -> String) -> Result<(Connect, StoragePool), VolumeError> {
        let attempt = |conn: &Connect| match conn.lookup_storage_pool_by_name(&self.name) {
            Err(e) if has_code(&e, ErrorNumber::NoStoragePool) => {
                tracing::info!(pool = %self.name, "defining the libvirt storage pool");
                conn.define_storage_pool_xml(&define_xml(), 0)
            }
            other => other,
        };
        let conn = self.connection(false)?;
        match attempt(&conn) {
            Ok(pool) => Ok((conn, pool)),
            Err(_) => {
                let conn = self.connection(true)?;
                let pool = attempt(&conn).map_err(self.err("looking up or defining the pool"))?;
                Ok((conn, pool))
            }
        }
    }

    /// Marks the pool to start with libvirtd.
    pub fn autostart(&self, pool: &StoragePool) -> Result<(), VolumeError> {
        if !pool.autostart().map_err(self.err("reading autostart"))? {
            pool.set_autostart(true).map_err(self.err("setting autostart"))?;
        }
        Ok(())
    }

    /// Whether the pool runs.
    pub fn is_active(&self, pool: &StoragePool) -> Result<bool, VolumeError> {
        pool.is_active().map_err(self.err("checking whether the pool is active"))
    }

    /// Re-reads the pool's storage into libvirt's view (changes made outside libvirt). libvirt refuses
    /// while one of its own jobs runs: `strict` callers fail then, the others go on with libvirt's
    /// current view, which its own jobs keep up to date.
    pub fn refresh(&self, pool: &StoragePool, strict: bool) -> Result<(), VolumeError> {
        match pool.refresh(0) {
            Ok(()) => Ok(()),
            Err(e) if !strict => {
                tracing::debug!(pool = %self.name, error = %e.message(), "pool refresh failed; using libvirt's current view");
                Ok(())
            }
            Err(e) => Err(self.err("refreshing the pool")(e)),
        }
    }
}
