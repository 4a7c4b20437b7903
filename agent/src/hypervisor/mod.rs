//! The hypervisor interface: everything the agent asks of libvirt about domains, behind one narrow
//! trait with a real implementation (`libvirt.rs`, crate `virt`) and an in-memory fake (`fake.rs`) of
//! the same shape for fast reconciler tests.
//!
//! Besides the lifecycle it offers disk hotplug, disk-only external snapshots (with revert) whose
//! files keep each disk's own file the active image (`layers.rs`), and live migration to another
//! host's hypervisor.
//!
//! It must never decide anything (which VMs should exist is the reconciler's job) and never touch a
//! domain this host does not own: every method takes a domain the agent named itself.

pub mod domain_xml;
pub mod fake;
pub mod layers;
pub mod libvirt;
mod qcow2;
pub mod timed;

use std::path::PathBuf;

use hci_firmware_profiles::{HostFirmware, Profile};
use hci_shared::agent::{VmRunState, VmStats};

/// A domain as the agent wants it defined: plain data, rendered to XML by [`domain_xml::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// `hci-<host>-<vm id>`: unique on the hypervisor, identifies the owner.
    pub name: String,
    pub vm_id: String,
    pub host_id: String,
    /// The desired-state generation this definition was rendered from.
    pub generation: u64,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// `kvm` or `qemu` (TCG).
    pub domain_type: String,
    pub profile: Profile,
    /// Per-VM NVRAM file (UEFI profiles).
    pub nvram_path: Option<PathBuf>,
    /// Per-VM swtpm state directory (profiles with a TPM).
    pub tpm_state_dir: Option<PathBuf>,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    /// Serial console output is appended here.
    pub console_log: PathBuf,
    /// SMBIOS type 11 OEM strings (x86_64 and aarch64): per-VM settings the guest can read.
    pub oem_strings: Vec<String>,
}

impl DomainSpec {
    /// A digest of everything that shapes the domain (not the generation, which changes whenever any
    /// VM of the host changes): equal digests mean the defined domain is already what is wanted.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut shape = self.clone();
        shape.generation = 0;
        hex::encode(Sha256::digest(format!("{shape:?}").as_bytes()))[..16].to_string()
    }
}

/// Creates the directories of a domain's per-VM files (console log, NVRAM): before it is defined,
/// and on a live migration's target before the domain arrives.
pub fn create_file_dirs(spec: &DomainSpec) -> Result<(), HypervisorError> {
    let files = std::iter::once(spec.console_log.as_path()).chain(spec.nvram_path.as_deref());
    for file in files {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| HypervisorError::Domain {
                domain: spec.name.clone(),
                action: "creating the directory of its console log or NVRAM",
                message: format!("{}: {e}", dir.display()),
            })?;
        }
    }
    Ok(())
}

/// Where a disk's bytes live, as libvirt's `<disk>` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A file (qcow2 or raw).
    File { path: PathBuf, format: String },
    /// A block device (LVM volume).
    Block { path: PathBuf },
    /// A Ceph RBD image.
    Rbd { pool: String, image: String, monitors: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub volume_id: String,
    pub source: DiskSource,
    /// `vda`, `vdb`, ... in boot order.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub mac: String,
    /// Host-side tap device name (at most 15 characters).
    pub tap: String,
}

/// Where a live migration goes, as the target host's agent offered it
/// ([`hci_shared::agent::IncomingOffer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationTarget {
    /// The target's libvirt, which the source's libvirtd connects to (peer-to-peer migration).
    pub libvirt_uri: String,
    /// The domain's name on the target.
    pub domain_name: String,
    /// The target's definition of the domain (same UUID), defined there persistently on success.
    pub domain_xml: String,
    /// Where QEMU's migration stream goes (`tcp://ADDRESS`); `None` lets libvirt choose.
    pub migration_uri: Option<String>,
    /// Targets (`vdb`) of the disks the target host cannot reach (local pools): copied to the
    /// target's own volumes during the migration. The target created those volumes from the same
    /// image (or empty), so only the top layer moves (what the VM wrote).
    pub copy_disks: Vec<String>,
}

/// One domain the hypervisor has, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub state: VmRunState,
    /// From the domain's hci metadata; `None` for domains hci does not own.
    pub owner: Option<DomainOwner>,
}

/// The hci metadata element of a domain (`<hci:vm host= id= generation= digest=>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainOwner {
    pub host_id: String,
    pub vm_id: String,
    pub generation: u64,
    /// [`DomainSpec::digest`] of the spec it was defined from: a different digest means redefine.
    pub digest: String,
}

/// What the hypervisor offers: the inventory the controller places against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub arch: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// `kvm` when KVM is usable (domcapabilities), else `tcg`.
    pub accelerator: String,
    pub libvirt_version: String,
    pub firmware: HostFirmware,
}

#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("connecting to libvirt at {uri}: {message}")]
    Connect { uri: String, message: String },
    #[error("domain {domain}: {action}: {message}")]
    Domain { domain: String, action: &'static str, message: String },
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    #[error("querying the hypervisor: {0}")]
    Query(String),
    #[error("domain {domain}: disk {target}: {action}: {message}")]
    Disk { domain: String, target: String, action: &'static str, message: String },
    #[error("domain {domain}: snapshot {snapshot}: {action}: {message}")]
    Snapshot { domain: String, snapshot: String, action: &'static str, message: String },
    #[error("domain {domain}: live migration to {target}: {message}")]
    Migration { domain: String, target: String, message: String },
    #[error("domain {domain} has no snapshot {snapshot}")]
    NoSuchSnapshot { domain: String, snapshot: String },
}

/// The narrow interface the reconciler drives. Calls block (libvirt's API is synchronous); callers run
/// them off the async runtime.
pub trait Hypervisor: Send + Sync {
    fn capabilities(&self) -> Result<Capabilities, HypervisorError>;
    /// Every domain on the hypervisor (owned or not).
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError>;
    /// Defines `spec` (or redefines it in place when it already exists). Idempotent.
    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;
    fn start(&self, name: &str) -> Result<(), HypervisorError>;
    /// ACPI shutdown, then a forced stop after `timeout`.
    fn shutdown(&self, name: &str, timeout: std::time::Duration) -> Result<(), HypervisorError>;
    fn reboot(&self, name: &str) -> Result<(), HypervisorError>;
    /// Stops (if running) and undefines, removing NVRAM and TPM state.
    fn undefine(&self, name: &str) -> Result<(), HypervisorError>;
    fn stats(&self, name: &str) -> Result<VmStats, HypervisorError>;

    /// Attaches `disk` at `disk.target`: to the running guest when the domain runs
    /// (`VIR_DOMAIN_AFFECT_LIVE`) and to the persistent definition always (`AFFECT_CONFIG`), each side
    /// only where it is missing, with the `<disk>` element [`domain_xml::render`] writes for it (boot
    /// order 1 only when the definition has no disk yet). A disk with the same source already at that
    /// target is Ok; another disk there is an error. The definition's disks then equal those of
    /// `render` of the spec with the disk added; the hci metadata (and its digest) is not touched, so
    /// the caller records the new spec with [`Hypervisor::define`] (which changes no disk then). q35
    /// and aarch64 `virt` domains have [`domain_xml::HOTPLUG_ROOT_PORTS`] free PCIe ports for this.
    fn attach_disk(&self, domain: &str, disk: &DiskSpec) -> Result<(), HypervisorError>;
    /// Detaches the disk at `target` from the running guest, waiting until the guest has released it
    /// (a [`HypervisorError::Disk`] naming domain and target when it does not within the timeout; the
    /// unplug request then stays pending and the persistent definition is left as it was), then from
    /// the persistent definition. A target with no disk is Ok.
    fn detach_disk(&self, domain: &str, target: &str) -> Result<(), HypervisorError>;
    /// A disk-only external snapshot `name` of every disk, running or stopped: the disk's file keeps
    /// its name and stays the active image (a new, empty qcow2 overlay), what it held is kept
    /// unchanged as `<file>.snap-<name>` below it (see [`layers`]). Only qcow2 file disks can take
    /// one; any other disk makes it an error before anything changes. Ok when the snapshot exists.
    fn snapshot_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError>;
    /// The domain's snapshots, oldest first.
    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>, HypervisorError>;
    /// Returns the disks of a **stopped** domain to their content at snapshot `name`, and forgets
    /// that snapshot and every later one (their files and metadata); earlier snapshots stay. Refused
    /// while the domain runs, and when a disk of the snapshot is no longer attached at its target.
    fn revert_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError>;

    /// The domain's UUID, which it keeps when it moves to another host.
    fn uuid(&self, domain: &str) -> Result<String, HypervisorError>;
    /// Live-migrates the running `domain` to `target` and returns when it runs there: defined there
    /// persistently as `target.domain_xml` under `target.domain_name`, and undefined here. The source
    /// instance pauses only for the final switch-over and is stopped once the target runs, so the VM
    /// never runs on both; on any failure it keeps running here (a [`HypervisorError::Migration`]).
    /// Disks in `target.copy_disks` are copied while the VM runs; the others must be reachable from
    /// both hosts (a shared pool).
    fn migrate_live(&self, domain: &str, target: &MigrationTarget) -> Result<(), HypervisorError>;
}
