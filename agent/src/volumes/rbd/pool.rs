//! One libvirt storage pool of type `rbd`, kept usable: the pool (defined persistent, started and
//! autostarted whenever it is found missing or stopped; its monitor list brought up to date when the
//! monitors moved), over the shared connection handling of [`PoolLink`].
//!
//! libvirt's rbd backend opens a fresh cluster connection for every call, so a restarted Ceph needs
//! nothing here. It must never adopt a pool that is not an rbd pool over the expected RBD pool, and
//! never undefine or delete a pool. The one time it stops a pool is to apply a changed monitor list
//! (stopping an rbd pool only drops libvirt's view of it; no image is touched).

use virt::connect::Connect;
use virt::error::Error as VirtError;
use virt::storage_pool::StoragePool;

use super::xml::{self, Monitor};
use crate::volumes::pool_link::PoolLink;
use crate::volumes::VolumeError;

pub struct RbdLibvirtPool {
    link: PoolLink,
    rbd_pool: String,
    /// Sorted.
    monitors: Vec<Monitor>,
}

impl std::fmt::Debug for RbdLibvirtPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdLibvirtPool")
            .field("link", &self.link)
            .field("rbd_pool", &self.rbd_pool)
            .field("monitors", &self.monitors)
            .finish()
    }
}

impl RbdLibvirtPool {
    /// Connects, then makes sure pool `name` exists (persistent, autostarted), is an rbd pool over
    /// `rbd_pool` with `monitors`, is active, and has been refreshed.
    pub fn open(uri: &str, name: &str, rbd_pool: &str, monitors: &[Monitor]) -> Result<Self, VolumeError> {
        let link = PoolLink::new(uri, name);
        if monitors.is_empty() {
            return Err(link.refused("no monitor addresses given".into()));
        }
        let mut monitors = monitors.to_vec();
        monitors.sort();
        let this = RbdLibvirtPool { link, rbd_pool: rbd_pool.to_string(), monitors };
        let pool = this.handle()?;
        this.link.autostart(&pool)?;
        this.refresh(&pool, true)?;
        Ok(this)
    }

    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// Maps a libvirt error of `action` on this pool.
    pub fn err(&self, action: &'static str) -> impl Fn(VirtError) -> VolumeError + '_ {
        self.link.err(action)
    }

    fn mismatch(&self, message: String) -> VolumeError {
        self.link.refused(message)
    }

    /// The pool, active and as configured.
    pub fn handle(&self) -> Result<StoragePool, VolumeError> {
        let (conn, pool) =
            self.link.lookup_or_define(|| xml::pool(self.link.name(), None, &self.rbd_pool, &self.monitors))?;
        let pool = self.check_shape(&conn, pool)?;
        if !self.link.is_active(&pool)? {
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
        tracing::warn!(pool = %self.link.name(), from = %show(&facts.monitors), to = %show(&self.monitors),
            "the pool's monitors changed; redefining it");
        let new_xml = xml::pool(self.link.name(), facts.uuid.as_deref(), &self.rbd_pool, &self.monitors);
        let pool = conn.define_storage_pool_xml(&new_xml, 0).map_err(self.err("redefining the pool"))?;
        if self.link.is_active(&pool)? {
            pool.destroy().map_err(self.err("stopping the pool to apply the new monitors"))?;
        }
        Ok(pool)
    }

    /// Re-reads the RBD pool into libvirt's view (images changed outside libvirt: another host, an
    /// interrupted run); see [`PoolLink::refresh`].
    pub fn refresh(&self, pool: &StoragePool, strict: bool) -> Result<(), VolumeError> {
        self.link.refresh(pool, strict)
    }
}
