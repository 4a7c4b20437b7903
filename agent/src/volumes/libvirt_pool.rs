//! One libvirt directory storage pool, kept usable: the pool (defined persistent, built, started and
//! autostarted whenever it is found missing or stopped) over the shared connection handling of
//! [`PoolLink`].
//!
//! It must never adopt a pool that is not an hci directory pool at the expected path, and never
//! destroy, undefine or delete a pool: pools outlive the agent.

use std::path::{Path, PathBuf};

use virt::error::Error as VirtError;
use virt::storage_pool::StoragePool;

pub use super::pool_link::has_code;
use super::pool_link::PoolLink;
use super::{libvirt_xml, VolumeError};

#[derive(Debug)]
pub struct LibvirtPool {
    link: PoolLink,
    /// The pool's target directory.
    dir: PathBuf,
}

impl LibvirtPool {
    /// Connects, then makes sure pool `name` exists (persistent, autostarted), is a directory pool at
    /// `dir`, is active, and has been refreshed.
    pub fn open(uri: &str, name: &str, dir: &Path) -> Result<Self, VolumeError> {
        let link = PoolLink::new(uri, name);
        if !dir.is_absolute() {
            return Err(link.refused(format!("directory {} is not an absolute path", dir.display())));
        }
        let this = LibvirtPool { link, dir: dir.to_path_buf() };
        let pool = this.handle()?;
        this.check_shape(&pool)?;
        this.link.autostart(&pool)?;
        this.refresh(&pool, true)?;
        Ok(this)
    }

    pub fn name(&self) -> &str {
        self.link.name()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps a libvirt error of `action` on this pool.
    pub fn err(&self, action: &'static str) -> impl Fn(VirtError) -> VolumeError + '_ {
        self.link.err(action)
    }

    /// The pool, active.
    pub fn handle(&self) -> Result<StoragePool, VolumeError> {
        let (_, pool) = self.link.lookup_or_define(|| libvirt_xml::dir_pool(self.link.name(), &self.dir))?;
        if !self.link.is_active(&pool)? {
            // Build creates the directory when it is missing; for an existing one it is a no-op.
            pool.build(0).map_err(self.err("building the pool"))?;
            pool.create(0).map_err(self.err("starting the pool"))?;
        }
        Ok(pool)
    }

    /// Refuses a pool of this name that is not a directory pool at the expected directory.
    fn check_shape(&self, pool: &StoragePool) -> Result<(), VolumeError> {
        let xml = pool.xml_desc(0).map_err(self.err("reading the pool XML"))?;
        match libvirt_xml::pool_type(&xml).as_deref() {
            Some("dir") => {}
            other => {
                return Err(self
                    .link
                    .refused(format!("exists with type {other:?}, not a directory pool; refusing to use it")))
            }
        }
        let target = libvirt_xml::target_path(&xml).map(PathBuf::from);
        let same = target.as_deref().is_some_and(|t| {
            t == self.dir || matches!((t.canonicalize(), self.dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
        });
        if !same {
            return Err(self.link.refused(format!(
                "exists with target path {:?}, not {}; refusing to use it",
                target,
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Re-reads the directory into libvirt's view of the pool (see [`PoolLink::refresh`]).
    pub fn refresh(&self, pool: &StoragePool, strict: bool) -> Result<(), VolumeError> {
        self.link.refresh(pool, strict)
    }
}
