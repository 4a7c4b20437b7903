//! One libvirt storage pool of type `rbd`, kept usable: the connection (reopened when libvirtd was
//! restarted under it), the pool (defined persistent, started and autostarted whenever it is found
//! missing or stopped; its monitor list brought up to date when the monitors moved), and the mapping
//! of libvirt errors into [`VolumeError`]s naming the pool.
//!
//! libvirt's rbd backend opens a fresh cluster connection for every call, so a restarted Ceph needs
//! nothing here. It must never adopt a pool that is not an rbd pool over the expected RBD pool, and
//! never undefine or delete a pool. The one time it stops a pool is to apply a changed monitor list
//! (stopping an rbd pool only drops libvirt's view of it; no image is touched).

use std::sync::{Mutex, Once, PoisonError};

use virt::connect::Connect;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;

use super::xml::{self, Monitor};
use crate::volumes::libvirt_pool::has_code;
use crate::volumes::VolumeError;

/// libvirt's default handler prints every error to stderr, including the expected "no such volume"
/// of an existence check; errors are returned to the caller instead.
fn quiet_libvirt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

pub struct RbdLibvirtPool {
    uri: String,
    /// `hci-<host>-<pool>`.
    name: String,
    rbd_pool: String,
    /// Sorted.
    monitors: Vec<Monitor>,
    conn: Mutex<Option<Connect>>,
}

impl std::fmt::Debug for RbdLibvirtPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdLibvirtPool")
            .field("uri", &self.uri)
            .field("name", &self.name)
            .field("rbd_pool", &self.rbd_pool)
            .field("monitors", &self.monitors)
            .finish()
    }
}

impl RbdLibvirtPool {
    /// Connects, then makes sure pool `name` exists (persistent, autostarted), is an rbd pool over
    /// `rbd_pool` with `monitors`, is active, and has been refreshed.
    pub fn open(uri: &str, name: &str, rbd_pool: &str, monitors: &[Monitor]) -> Result<Self, VolumeError> {
        quiet_libvirt();
        if monitors.is_empty() {
            return Err(VolumeError::Pool { pool: name.to_string(), message: "no monitor addresses given".into() });
        }
        let mut monitors = monitors.to_vec();
        monitors.sort();
        let this = RbdLibvirtPool {
            uri: uri.to_string(),
            name: name.to_string(),
            rbd_pool: rbd_pool.to_string(),
            monitors,
            conn: Mutex::new(None),
        };
        let pool = this.handle()?;
        if !pool.autostart().map_err(this.err("reading autostart"))? {
            pool.set_autostart(true).map_err(this.err("setting autostart"))?;
        }
        this.refresh(&pool, true)?;
        Ok(this)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maps a libvirt error of `action` on this pool.
    pub fn err(&self, action: &'static str) -> impl Fn(VirtError) -> VolumeError + '_ {
        move |e| VolumeError::Pool { pool: self.name.clone(), message: format!("{action}: {}", e.message()) }
    }

    fn mismatch(&self, message: String) -> VolumeError {
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
            .map_err(|e| self.mismatch(format!("connecting to libvirt at {}: {}", self.uri, e.message())))?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    fn lookup_or_define(&self, conn: &Connect) -> Result<StoragePool, VirtError> {
        match conn.lookup_storage_pool_by_name(&self.name) {
            Err(e) if has_code(&e, ErrorNumber::NoStoragePool) => {
                tracing::info!(pool = %self.name, rbd_pool = %self.rbd_pool, "defining the libvirt rbd storage pool");
                conn.define_storage_pool_xml(&xml::pool(&self.name, None, &self.rbd_pool, &self.monitors), 0)
            }
            other => other,
        }
    }

    /// The pool, active and as configured. A connection that fails is reopened once (libvirtd may
    /// have restarted).
    pub fn handle(&self) -> Result<StoragePool, VolumeError> {
        let conn = self.connection(false)?;
        let (conn, pool) = match self.lookup_or_define(&conn) {
            Ok(pool) => (conn, pool),
            Err(_) => {
                let conn = self.connection(true)?;
                let pool = self.lookup_or_define(&conn).map_err(self.err("looking up or defining the pool"))?;
                (conn, pool)
            }
        };
        let pool = self.check_shape(&conn, pool)?;
        if !pool.is_active().map_err(self.err("checking whether the pool is active"))? {
            pool.create(0).map_err(self.err("starting the pool"))?;
        }
        Ok(pool)
    }

    /// Refuses a pool of this name that is not an rbd pool over the expected RBD pool; redefines
    /// (and restarts, when active) one whose monitor list differs. Reads the live definition: the
    /// monitors a running pool uses are what count.
    fn check_shape(&self, conn: &Connect, pool: StoragePool) -> Result<StoragePool, VolumeError> {
        let facts = xml::pool_facts(&pool.xml_desc(0).map_err(self.err("reading the pool XML"))?)
            .map_err(|m| self.mismatch(m))?;
        if facts.pool_type != "rbd" {
            return Err(
                self.mismatch(format!("exists with type '{}', not an rbd pool; refusing to use it", facts.pool_type))
            );
        }
        if facts.rbd_pool.as_deref() != Some(self.rbd_pool.as_str()) {
            return Err(self.mismatch(format!(
                "exists over RBD pool {:?}, not '{}'; refusing to use it",
                facts.rbd_pool, self.rbd_pool
            )));
        }
        if facts.monitors == self.monitors {
            return Ok(pool);
        }
        let show = |m: &[Monitor]| m.iter().map(Monitor::mon_host).collect::<Vec<_>>().join(",");
        tracing::warn!(pool = %self.name, from = %show(&facts.monitors), to = %show(&self.monitors),
            "the pool's monitors changed; redefining it");
        let new_xml = xml::pool(&self.name, facts.uuid.as_deref(), &self.rbd_pool, &self.monitors);
        let pool = conn.define_storage_pool_xml(&new_xml, 0).map_err(self.err("redefining the pool"))?;
        if pool.is_active().map_err(self.err("checking whether the pool is active"))? {
            pool.destroy().map_err(self.err("stopping the pool to apply the new monitors"))?;
        }
        Ok(pool)
    }

    /// Re-reads the RBD pool into libvirt's view (images changed outside libvirt: another host, an
    /// interrupted run). `strict` callers fail when that fails; the others go on with libvirt's view.
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
