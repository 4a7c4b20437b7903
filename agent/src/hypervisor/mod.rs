//! The hypervisor interface: everything the agent asks of libvirt about domains, behind one narrow
//! trait with a real implementation (`libvirt.rs`, crate `virt`) and an in-memory fake (`fake.rs`) of
//! the same shape for fast reconciler tests.
//!
//! It must never decide anything (which VMs should exist is the reconciler's job) and never touch a
//! domain this host does not own: every method takes a domain the agent named itself.

pub mod domain_xml;
pub mod fake;
pub mod libvirt;
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
}
