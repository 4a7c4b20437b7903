//! One libvirt directory storage pool, kept usable: the connection (reopened when libvirtd was
//! restarted under it), the pool (defined persistent, built, started and autostarted whenever it is
//! found missing or stopped), and the mapping of libvirt errors into [`VolumeError`]s naming the pool.
//!
//! It must never adopt a pool that is not an hci directory pool at the expected path, and never
//! destroy, undefine or delete a pool: pools outlive the agent.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, PoisonError};

use virt::connect::Connect;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;

use super::{libvirt_xml, VolumeError};

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

pub struct LibvirtPool {
    uri: String,
    /// `hci-<host>-<pool>`.
    name: String,
    /// The pool's target directory.
    dir: PathBuf,
    conn: Mutex<Option<Connect>>,
}

impl std::fmt::Debug for LibvirtPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtPool").field("uri", &self.uri).field("name", &self.name).field("dir", &self.dir).finish()
    }
}

impl LibvirtPool {
    /// Connects, then makes sure pool `name` exists (persistent, autostarted), is a directory pool at
    /// `dir`, is active, and has been refreshed.
    pub fn open(uri: &str, name: &str, dir: &Path) -> Result<Self, VolumeError> {
        quiet_libvirt();
        if !dir.is_absolute() {
            return Err(VolumeError::Pool {
                pool: name.to_string(),
                message: format!("directory {} is not an absolute path", dir.display()),
            });
        }
        let this = LibvirtPool {
            uri: uri.to_string(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            conn: Mutex::new(None),
        };
        let pool = this.handle()?;
        this.check_shape(&pool)?;
        if !pool.autostart().map_err(this.err("reading autostart"))? {
            pool.set_autostart(true).map_err(this.err("setting autostart"))?;
        }
        this.refresh(&pool, true)?;
        Ok(this)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps a libvirt error of `action` on this pool.
    pub fn err(&self, action: &'static str) -> impl Fn(VirtError) -> VolumeError + '_ {
        move |e| VolumeError::Pool { pool: self.name.clone(), message: format!("{action}: {}", e.message()) }
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
        let conn = Connect::open(Some(&self.uri)).map_err(|e| VolumeError::Pool {
            pool: self.name.clone(),
            message: format!("connecting to libvirt at {}: {}", self.uri, e.message()),
        })?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    fn lookup_or_define(&self, conn: &Connect) -> Result<StoragePool, VirtError> {
        match conn.lookup_storage_pool_by_name(&self.name) {
            Err(e) if has_code(&e, ErrorNumber::NoStoragePool) => {
                tracing::info!(pool = %self.name, dir = %self.dir.display(), "defining the libvirt storage pool");
                conn.define_storage_pool_xml(&libvirt_xml::dir_pool(&self.name, &self.dir), 0)
            }
            other => other,
        }
    }

    /// The pool, active. A connection that fails is reopened once (libvirtd may have restarted).
    pub fn handle(&self) -> Result<StoragePool, VolumeError> {
        let pool = match self.lookup_or_define(&self.connection(false)?) {
            Ok(pool) => pool,
            Err(_) => {
                self.lookup_or_define(&self.connection(true)?).map_err(self.err("looking up or defining the pool"))?
            }
        };
        if !pool.is_active().map_err(self.err("checking whether the pool is active"))? {
            // Build creates the directory when it is missing; for an existing one it is a no-op.
            pool.build(0).map_err(self.err("building the pool"))?;
            pool.create(0).map_err(self.err("starting the pool"))?;
        }
        Ok(pool)
    }

    /// Refuses a pool of this name that is not a directory pool at the expected directory.
    fn check_shape(&self, pool: &StoragePool) -> Result<(), VolumeError> {
        let xml = pool.xml_desc(0).map_err(self.err("reading the pool XML"))?;
        let mismatch = |message: String| VolumeError::Pool { pool: self.name.clone(), message };
        match libvirt_xml::pool_type(&xml).as_deref() {
            Some("dir") => {}
            other => {
                return Err(mismatch(format!("exists with type {other:?}, not a directory pool; refusing to use it")))
            }
        }
        let target = libvirt_xml::target_path(&xml).map(PathBuf::from);
        let same = target.as_deref().is_some_and(|t| {
            t == self.dir || matches!((t.canonicalize(), self.dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
        });
        if !same {
            return Err(mismatch(format!(
                "exists with target path {:?}, not {}; refusing to use it",
                target,
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Re-reads the directory into libvirt's view of the pool (files changed outside libvirt). libvirt
    /// refuses while one of its own jobs (a volume being built) runs: `strict` callers fail then, the
    /// others go on with libvirt's current view, which its own jobs keep up to date.
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
