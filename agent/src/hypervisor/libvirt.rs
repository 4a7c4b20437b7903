//! The real [`Hypervisor`]: libvirt through the `virt` crate (libvirt's C API), one shared
//! connection that is reopened once when libvirtd went away (restart) and the call retried.
//!
//! It exists to turn the agent's narrow requests into libvirt calls and libvirt's answers and errors
//! into the agent's types, naming the domain and the action in every error. It must never shell out
//! to `virsh`, never decide what should run, never redefine a domain that another owner (or no hci
//! host) defined, and never delete a VM's console log (evidence; the reconciler decides).

mod caps;
mod conn;
mod disk_xml;
mod disks;
mod migrate;
mod snapshots;
mod state;

use std::time::{Duration, Instant};

use hci_firmware_profiles::HostFirmware;
use hci_shared::agent::VmStats;
use virt::error::ErrorNumber;
use virt::sys;

use self::conn::{code_is, no_domain, not_running, Connection, Failure, Step};
use self::state::{destroy, lookup, owner_of, run_state};
use super::domain_xml::{self, RenderOptions};
use super::{Capabilities, DiskSpec, DomainInfo, DomainSpec, Hypervisor, HypervisorError, MigrationTarget};

/// How often `shutdown` looks at the domain's state while waiting for the guest.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// How often `shutdown` presses the power button again: a guest still booting (no ACPI daemon yet)
/// loses the first press.
const SHUTDOWN_REPEAT: Duration = Duration::from_secs(5);
/// How long `detach_disk` waits for the guest to release a disk, unless told otherwise.
pub const DEFAULT_DETACH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LibvirtHypervisor {
    conn: Connection,
    detach_timeout: Duration,
}

impl LibvirtHypervisor {
    /// Opens `uri` (e.g. `qemu:///system`). libvirt's default error printing to stderr is turned off
    /// for the process: every error is returned instead.
    pub fn connect(uri: &str) -> Result<Self, HypervisorError> {
        virt::error::clear_error_callback();
        Ok(Self { conn: Connection::open(uri)?, detach_timeout: DEFAULT_DETACH_TIMEOUT })
    }

    /// How long `detach_disk` waits for the guest to release a disk (at least the 5 s libvirt
    /// itself waits inside the detach call).
    pub fn with_detach_timeout(mut self, timeout: Duration) -> Self {
        self.detach_timeout = timeout;
        self
    }

    pub fn uri(&self) -> &str {
        self.conn.uri()
    }

    fn define_domain(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        super::create_file_dirs(spec)?;
        self.conn.call(Some(&spec.name), |conn| {
            let uuid = match conn.lookup_domain_by_name(&spec.name) {
                Ok(existing) => {
                    match owner_of(&existing).step("reading its hci metadata")? {
                        Some(owner) if owner.host_id == spec.host_id => {}
                        other => {
                            return Err(Failure::Other(HypervisorError::Domain {
                                domain: spec.name.clone(),
                                action: "redefining",
                                message: format!(
                                    "it exists and belongs to {}, not host {}: refusing to replace it",
                                    other.map_or("no hci host".to_string(), |o| format!("hci host {}", o.host_id)),
                                    spec.host_id
                                ),
                            }))
                        }
                    }
                    Some(existing.uuid_string().step("reading its UUID")?)
                }
                Err(e) if no_domain(&e) => None,
                Err(e) => return Err(Failure::Libvirt { action: "looking it up", err: e }),
            };
            let options = RenderOptions { uuid, name: None };
            let xml = domain_xml::render_with(spec, &options);
            conn.define_domain_xml_flags(&xml, sys::VIR_DOMAIN_DEFINE_VALIDATE).step("defining")?;
            Ok(())
        })
    }
}

fn format_version(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

fn swtpm_on_path() -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("swtpm").is_file()))
        .unwrap_or(false)
}

impl Hypervisor for LibvirtHypervisor {
    fn capabilities(&self) -> Result<Capabilities, HypervisorError> {
        self.conn.call(None, |conn| {
            let xml = conn.capabilities().step("reading host capabilities")?;
            let host = caps::parse_capabilities(&xml).map_err(|e| Failure::Other(HypervisorError::Query(e)))?;
            let node = conn.node_info().step("reading node info")?;
            let version = conn.lib_version().step("reading the libvirt version")?;
            let kvm = conn.domain_capabilities(None, Some(&host.arch), None, Some("kvm"), 0).is_ok();
            let virt_type = if kvm { "kvm" } else { "qemu" };
            let swtpm = conn
                .domain_capabilities(None, Some(&host.arch), None, Some(virt_type), 0)
                .ok()
                .and_then(|domcaps| caps::tpm_emulator(&domcaps))
                .unwrap_or_else(swtpm_on_path);
            Ok(Capabilities {
                arch: host.arch,
                cpus: node.cpus,
                memory_mib: node.memory / 1024,
                accelerator: if kvm { "kvm" } else { "tcg" }.to_string(),
                libvirt_version: format_version(version),
                firmware: HostFirmware { machines: host.machines, swtpm },
            })
        })
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.conn.call(None, |conn| {
            let mut out = Vec::new();
            for domain in conn.list_all_domains(0).step("listing domains")? {
                let name = domain.name().step("reading a domain's name")?;
                // A domain undefined since the listing is simply gone.
                let state = match run_state(&domain) {
                    Ok(state) => state,
                    Err(e) if no_domain(&e) => continue,
                    Err(e) => return Err(Failure::Libvirt { action: "reading a domain's state", err: e }),
                };
                let owner = match owner_of(&domain) {
                    Ok(owner) => owner,
                    Err(e) if no_domain(&e) => continue,
                    Err(e) => return Err(Failure::Libvirt { action: "reading a domain's hci metadata", err: e }),
                };
                out.push(DomainInfo { name, state, owner });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.define_domain(spec)
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(name), |conn| {
            let domain = lookup(conn, name)?;
            if domain.is_active().step("reading its state")? {
                return Ok(());
            }
            match domain.create() {
                Ok(()) => Ok(()),
                // Started by someone else in between.
                Err(e) if not_running(&e) && domain.is_active().unwrap_or(false) => Ok(()),
                Err(e) => Err(Failure::Libvirt { action: "starting", err: e }),
            }
        })
    }

    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), HypervisorError> {
        let deadline = Instant::now() + timeout;
        self.conn.call(Some(name), |conn| {
            let domain = lookup(conn, name)?;
            if !domain.is_active().step("reading its state")? {
                return Ok(());
            }
            if let Err(e) = domain.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) {
                if !domain.is_active().step("reading its state")? {
                    return Ok(());
                }
                tracing::warn!(domain = name, error = %e.message(), "ACPI shutdown refused; forcing the stop");
                return destroy(&domain);
            }
            let mut next_press = Instant::now() + SHUTDOWN_REPEAT;
            loop {
                if !domain.is_active().step("waiting for it to power off")? {
                    return Ok(());
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if now >= next_press {
                    // Failing here (e.g. the guest just powered off) is decided by the next look.
                    let _ = domain.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
                    next_press = now + SHUTDOWN_REPEAT;
                }
                std::thread::sleep(SHUTDOWN_POLL.min(deadline - now));
            }
            tracing::warn!(domain = name, ?timeout, "guest did not power off in time; forcing the stop");
            destroy(&domain)
        })
    }

    /// An ACPI reboot: libvirt presses the power button and, when the guest powers off, resets it
    /// in the same QEMU process (QEMU has no ACPI reboot), so a redefinition is not applied by it.
    /// A guest that ignores ACPI (or is still booting) does not reboot, and libvirt then turns the
    /// guest's next power-off into a reboot; use shutdown + start for a guaranteed one. A domain that
    /// is not running is an error.
    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(name), |conn| {
            let domain = lookup(conn, name)?;
            domain.reboot(sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN).step("rebooting")
        })
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(name), |conn| {
            let domain = match conn.lookup_domain_by_name(name) {
                Ok(domain) => domain,
                Err(e) if no_domain(&e) => return Ok(()),
                Err(e) => return Err(Failure::Libvirt { action: "looking it up", err: e }),
            };
            if domain.is_active().step("reading its state")? {
                destroy(&domain)?;
            }
            let common = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
            // UNDEFINE_TPM (32) needs libvirt >= 8.9 (64 is KEEP_TPM); CHECKPOINTS_METADATA >= 5.6.
            let attempts = [
                common
                    | sys::VIR_DOMAIN_UNDEFINE_NVRAM
                    | sys::VIR_DOMAIN_UNDEFINE_TPM
                    | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
                common | sys::VIR_DOMAIN_UNDEFINE_NVRAM,
                0,
            ];
            let mut last = None;
            for flags in attempts {
                match domain.undefine_flags(flags) {
                    Ok(()) => return Ok(()),
                    Err(e) if no_domain(&e) => return Ok(()),
                    Err(e) if code_is(&e, ErrorNumber::InvalidArg) || code_is(&e, ErrorNumber::NoSupport) => {
                        tracing::debug!(domain = name, flags, error = %e.message(), "undefine flags unsupported; trying fewer");
                        last = Some(e);
                    }
                    Err(e) => return Err(Failure::Libvirt { action: "undefining", err: e }),
                }
            }
            match last {
                Some(err) => Err(Failure::Libvirt { action: "undefining", err }),
                None => Ok(()),
            }
        })
    }

    fn stats(&self, name: &str) -> Result<VmStats, HypervisorError> {
        self.conn.call(Some(name), |conn| {
            let domain = lookup(conn, name)?;
            let info = domain.info().step("reading its info")?;
            if !domain.is_active().step("reading its state")? {
                return Ok(VmStats::default());
            }
            let balloon = domain
                .memory_stats(0)
                .ok()
                .and_then(|stats| stats.into_iter().find(|s| s.tag == sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON))
                .map(|s| s.val);
            let mut stats = VmStats {
                cpu_time_ns: info.cpu_time,
                memory_kib: balloon.unwrap_or(info.memory),
                ..VmStats::default()
            };
            let xml = domain.xml_desc(0).step("reading its XML")?;
            for target in caps::disk_targets(&xml) {
                // A disk that has no stats (yet) counts as zero.
                if let Ok(block) = domain.block_stats(&target) {
                    stats.disk_read_bytes += u64::try_from(block.rd_bytes).unwrap_or(0);
                    stats.disk_write_bytes += u64::try_from(block.wr_bytes).unwrap_or(0);
                }
            }
            Ok(stats)
        })
    }

    fn attach_disk(&self, domain: &str, disk: &DiskSpec) -> Result<(), HypervisorError> {
        self.conn.call(Some(domain), |conn| disks::attach(conn, domain, disk))
    }

    fn detach_disk(&self, domain: &str, target: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(domain), |conn| disks::detach(conn, domain, target, self.detach_timeout))
    }

    fn snapshot_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(domain), |conn| snapshots::create(conn, domain, name))
    }

    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>, HypervisorError> {
        self.conn.call(Some(domain), |conn| snapshots::list(conn, domain))
    }

    fn revert_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.conn.call(Some(domain), |conn| snapshots::revert(conn, domain, name))
    }

    fn uuid(&self, domain: &str) -> Result<String, HypervisorError> {
        self.conn.call(Some(domain), |conn| lookup(conn, domain)?.uuid_string().step("reading its UUID"))
    }

    fn migrate_live(&self, domain: &str, target: &MigrationTarget) -> Result<(), HypervisorError> {
        self.conn.call(Some(domain), |conn| migrate::migrate(conn, domain, target))
    }
}
