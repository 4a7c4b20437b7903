//! An in-memory [`Hypervisor`] with the same semantics as the libvirt one, for fast reconciler
//! tests: domains are plain records, a shutdown is instant, and failures, slow calls, guests that
//! ignore ACPI and foreign domains can be injected.
//!
//! It exists so that the reconciler can be tested without libvirt, including every error path. It
//! must never be wired into the real agent binary, and must never diverge silently from
//! `libvirt.rs`: a semantic both can have (idempotent define, no-op start of a running domain,
//! undefine of a missing domain is Ok, NoSuchDomain elsewhere, foreign domains are not replaced;
//! disk hotplug live and in the definition without touching the owner metadata, snapshots of qcow2
//! file disks only, revert only while stopped and dropping later snapshots) is kept the same here.

mod migration;
mod storage;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hci_firmware_profiles::HostFirmware;
use hci_shared::agent::{VmRunState, VmStats};

use super::{
    Capabilities, DiskSpec, DomainInfo, DomainOwner, DomainSpec, Hypervisor, HypervisorError, MigrationTarget,
};

/// A method of the [`Hypervisor`] trait, to target injected failures and delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Capabilities,
    List,
    Define,
    Start,
    Shutdown,
    Reboot,
    Undefine,
    Stats,
    AttachDisk,
    DetachDisk,
    SnapshotDisks,
    ListSnapshots,
    RevertDisks,
    Uuid,
    MigrateLive,
}

/// One call the fake received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub domain: Option<String>,
    /// Whether an injected failure answered it (it then had no effect).
    pub failed: bool,
}

/// A disk-only snapshot as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSnapshot {
    pub name: String,
    /// The disks it covered (the running ones when taken while running).
    pub disks: Vec<DiskSpec>,
}

/// A domain as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDomain {
    /// The current definition; `None` for a foreign domain added with [`FakeHypervisor::add_foreign`].
    /// Disk hotplug changes its disk list (as libvirt changes the persistent XML).
    pub spec: Option<DomainSpec>,
    /// The hci metadata as last defined: like libvirt's metadata element, disk hotplug leaves it
    /// alone, so its digest is that of the spec passed to the last `define`.
    pub metadata: Option<DomainOwner>,
    pub state: VmRunState,
    /// The definition the running instance was started from (a redefine applies at the next start).
    pub running_spec: Option<DomainSpec>,
    /// Returned by `stats` while the domain runs.
    pub stats: VmStats,
    pub starts: u64,
    pub reboots: u64,
    /// Shutdowns that ended in a forced stop (the guest ignored ACPI).
    pub forced_stops: u64,
    /// The guest ignores ACPI: shutdown forces the stop after the timeout, reboot does nothing.
    pub ignores_acpi: bool,
    /// The guest never releases a disk: a live detach times out (and the disk stays).
    pub ignores_unplug: bool,
    /// Oldest first.
    pub snapshots: Vec<FakeSnapshot>,
    pub reverts: u64,
}

fn owner_of(spec: &DomainSpec) -> DomainOwner {
    DomainOwner {
        host_id: spec.host_id.clone(),
        vm_id: spec.vm_id.clone(),
        generation: spec.generation,
        digest: spec.digest(),
    }
}

impl FakeDomain {
    fn new(spec: Option<DomainSpec>, state: VmRunState) -> Self {
        FakeDomain {
            metadata: spec.as_ref().map(owner_of),
            spec,
            state,
            running_spec: None,
            stats: VmStats::default(),
            starts: 0,
            reboots: 0,
            forced_stops: 0,
            ignores_acpi: false,
            ignores_unplug: false,
            snapshots: Vec::new(),
            reverts: 0,
        }
    }

    fn owner(&self) -> Option<DomainOwner> {
        self.metadata.clone()
    }

    fn active(&self) -> bool {
        matches!(self.state, VmRunState::Running | VmRunState::Paused | VmRunState::ShuttingDown)
    }
}

type MakeError = Arc<dyn Fn(Method, Option<&str>) -> HypervisorError + Send + Sync>;

struct Injection {
    method: Method,
    /// Only calls for this domain; `None`: any call of the method.
    domain: Option<String>,
    remaining: u32,
    error: MakeError,
}

struct State {
    capabilities: Capabilities,
    domains: BTreeMap<String, FakeDomain>,
    injections: Vec<Injection>,
    delays: BTreeMap<Method, Duration>,
    calls: Vec<Call>,
}

pub struct FakeHypervisor {
    state: Mutex<State>,
    /// Other fakes reachable for live migration, by libvirt URI.
    peers: Mutex<BTreeMap<String, Arc<FakeHypervisor>>>,
}

impl Default for FakeHypervisor {
    fn default() -> Self {
        Self::new()
    }
}

/// The error an injected failure returns unless told otherwise: like a libvirt failure.
fn injected(method: Method, domain: Option<&str>) -> HypervisorError {
    match domain {
        Some(name) => HypervisorError::Domain {
            domain: name.to_string(),
            action: "fake: injected failure",
            message: format!("{method:?} failed (injected)"),
        },
        None => HypervisorError::Query(format!("fake: injected failure of {method:?}")),
    }
}

impl FakeHypervisor {
    /// An x86_64 TCG host (4 CPUs, 8 GiB, q35/pc and pseries machines, swtpm) with no domains.
    pub fn new() -> Self {
        let machines = BTreeMap::from([
            ("x86_64".to_string(), vec!["pc".to_string(), "q35".to_string()]),
            ("ppc64le".to_string(), vec!["pseries".to_string()]),
        ]);
        let capabilities = Capabilities {
            arch: "x86_64".into(),
            cpus: 4,
            memory_mib: 8192,
            accelerator: "tcg".into(),
            libvirt_version: "9.0.0".into(),
            firmware: HostFirmware { machines, swtpm: true },
        };
        let state = State {
            capabilities,
            domains: BTreeMap::new(),
            injections: Vec::new(),
            delays: BTreeMap::new(),
            calls: Vec::new(),
        };
        Self { state: Mutex::new(state), peers: Mutex::new(BTreeMap::new()) }
    }

    /// Makes `peer` reachable for live migration as `libvirt_uri`.
    pub fn add_peer(&self, libvirt_uri: &str, peer: Arc<FakeHypervisor>) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(libvirt_uri.to_string(), peer);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take every other assertion down with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.lock().capabilities = capabilities;
    }

    /// The next `n` calls of `method` (any domain) fail with a generic hypervisor error.
    pub fn fail_next(&self, method: Method, n: u32) {
        self.fail_next_with(method, None, n, injected);
    }

    /// The next `n` calls of `method` for domain `name` fail with a generic hypervisor error.
    pub fn fail_next_for(&self, method: Method, name: &str, n: u32) {
        self.fail_next_with(method, Some(name), n, injected);
    }

    /// The next `n` matching calls fail with the error `error` makes (e.g. a `Connect` error).
    pub fn fail_next_with(
        &self,
        method: Method,
        domain: Option<&str>,
        n: u32,
        error: impl Fn(Method, Option<&str>) -> HypervisorError + Send + Sync + 'static,
    ) {
        let domain = domain.map(str::to_string);
        self.lock().injections.push(Injection { method, domain, remaining: n, error: Arc::new(error) });
    }

    /// Every call of `method` sleeps `delay` first (a slow libvirt); `Duration::ZERO` removes it.
    pub fn set_delay(&self, method: Method, delay: Duration) {
        self.lock().delays.insert(method, delay);
    }

    /// A domain without hci metadata (someone else's), in `state`.
    pub fn add_foreign(&self, name: &str, state: VmRunState) {
        self.lock().domains.insert(name.to_string(), FakeDomain::new(None, state));
    }

    /// Changes a domain's state behind the agent's back (the guest powered off, crashed, paused).
    /// Returns false when there is no such domain.
    pub fn set_state(&self, name: &str, state: VmRunState) -> bool {
        self.with_domain(name, |d| {
            d.state = state;
            if !d.active() {
                d.running_spec = None;
            }
        })
    }

    pub fn set_stats(&self, name: &str, stats: VmStats) -> bool {
        self.with_domain(name, |d| d.stats = stats)
    }

    pub fn set_ignores_acpi(&self, name: &str, ignores: bool) -> bool {
        self.with_domain(name, |d| d.ignores_acpi = ignores)
    }

    pub fn set_ignores_unplug(&self, name: &str, ignores: bool) -> bool {
        self.with_domain(name, |d| d.ignores_unplug = ignores)
    }

    fn with_domain(&self, name: &str, f: impl FnOnce(&mut FakeDomain)) -> bool {
        self.lock().domains.get_mut(name).map(f).is_some()
    }

    pub fn domain(&self, name: &str) -> Option<FakeDomain> {
        self.lock().domains.get(name).cloned()
    }

    pub fn domains(&self) -> BTreeMap<String, FakeDomain> {
        self.lock().domains.clone()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many calls of `method` were made (failed ones included).
    pub fn count(&self, method: Method) -> usize {
        self.lock().calls.iter().filter(|c| c.method == method).count()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Records the call, applies the delay, and answers with an injected failure when one matches;
    /// otherwise runs `op` on the state.
    fn call<T>(
        &self,
        method: Method,
        domain: Option<&str>,
        op: impl FnOnce(&mut State) -> Result<T, HypervisorError>,
    ) -> Result<T, HypervisorError> {
        let delay = self.lock().delays.get(&method).copied().unwrap_or_default();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut state = self.lock();
        let hit = state
            .injections
            .iter_mut()
            .find(|i| i.method == method && i.remaining > 0 && (i.domain.is_none() || i.domain.as_deref() == domain));
        let failure = hit.map(|i| {
            i.remaining -= 1;
            (i.error)(method, domain)
        });
        state.injections.retain(|i| i.remaining > 0);
        state.calls.push(Call { method, domain: domain.map(str::to_string), failed: failure.is_some() });
        match failure {
            Some(error) => Err(error),
            None => op(&mut state),
        }
    }
}

fn get<'a>(state: &'a mut State, name: &str) -> Result<&'a mut FakeDomain, HypervisorError> {
    state.domains.get_mut(name).ok_or_else(|| HypervisorError::NoSuchDomain(name.to_string()))
}

impl Hypervisor for FakeHypervisor {
    fn capabilities(&self) -> Result<Capabilities, HypervisorError> {
        self.call(Method::Capabilities, None, |s| Ok(s.capabilities.clone()))
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.call(Method::List, None, |s| {
            Ok(s.domains
                .iter()
                .map(|(name, d)| DomainInfo { name: name.clone(), state: d.state, owner: d.owner() })
                .collect())
        })
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.call(Method::Define, Some(&spec.name), |s| {
            if let Some(existing) = s.domains.get_mut(&spec.name) {
                match existing.owner() {
                    Some(owner) if owner.host_id == spec.host_id => {}
                    other => {
                        return Err(HypervisorError::Domain {
                            domain: spec.name.clone(),
                            action: "redefining",
                            message: format!(
                                "it exists and belongs to {}, not host {}: refusing to replace it",
                                other.map_or("no hci host".to_string(), |o| format!("hci host {}", o.host_id)),
                                spec.host_id
                            ),
                        })
                    }
                }
                existing.spec = Some(spec.clone());
                existing.metadata = Some(owner_of(spec));
                return Ok(());
            }
            s.domains.insert(spec.name.clone(), FakeDomain::new(Some(spec.clone()), VmRunState::Stopped));
            Ok(())
        })
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.call(Method::Start, Some(name), |s| {
            let d = get(s, name)?;
            if !d.active() {
                d.state = VmRunState::Running;
                d.running_spec = d.spec.clone();
                d.starts += 1;
            }
            Ok(())
        })
    }

    fn shutdown(&self, name: &str, _timeout: Duration) -> Result<(), HypervisorError> {
        self.call(Method::Shutdown, Some(name), |s| {
            let d = get(s, name)?;
            if d.active() {
                if d.ignores_acpi || d.state == VmRunState::Paused {
                    d.forced_stops += 1;
                }
                d.state = VmRunState::Stopped;
                d.running_spec = None;
            }
            Ok(())
        })
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.call(Method::Reboot, Some(name), |s| {
            let d = get(s, name)?;
            if !d.active() {
                return Err(HypervisorError::Domain {
                    domain: name.to_string(),
                    action: "rebooting",
                    message: "Requested operation is not valid: domain is not running".into(),
                });
            }
            // Like libvirt's reboot (a reset of the same QEMU process): the running definition stays.
            if !d.ignores_acpi {
                d.reboots += 1;
            }
            Ok(())
        })
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.call(Method::Undefine, Some(name), |s| {
            s.domains.remove(name);
            Ok(())
        })
    }

    fn stats(&self, name: &str) -> Result<VmStats, HypervisorError> {
        self.call(Method::Stats, Some(name), |s| {
            let d = get(s, name)?;
            Ok(if d.active() { d.stats.clone() } else { VmStats::default() })
        })
    }

    fn attach_disk(&self, domain: &str, disk: &DiskSpec) -> Result<(), HypervisorError> {
        self.call(Method::AttachDisk, Some(domain), |s| storage::attach(domain, get(s, domain)?, disk))
    }

    fn detach_disk(&self, domain: &str, target: &str) -> Result<(), HypervisorError> {
        self.call(Method::DetachDisk, Some(domain), |s| storage::detach(domain, get(s, domain)?, target))
    }

    fn snapshot_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.call(Method::SnapshotDisks, Some(domain), |s| storage::snapshot(domain, get(s, domain)?, name))
    }

    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>, HypervisorError> {
        self.call(Method::ListSnapshots, Some(domain), |s| {
            Ok(get(s, domain)?.snapshots.iter().map(|snap| snap.name.clone()).collect())
        })
    }

    fn revert_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.call(Method::RevertDisks, Some(domain), |s| storage::revert(domain, get(s, domain)?, name))
    }

    fn uuid(&self, domain: &str) -> Result<String, HypervisorError> {
        self.call(Method::Uuid, Some(domain), |s| Ok(migration::uuid_of(domain, get(s, domain)?)))
    }

    fn migrate_live(&self, domain: &str, target: &MigrationTarget) -> Result<(), HypervisorError> {
        let peer = self.peers.lock().unwrap_or_else(|p| p.into_inner()).get(&target.libvirt_uri).cloned();
        let leaving = self.call(Method::MigrateLive, Some(domain), |s| {
            migration::check_departure(domain, get(s, domain)?, target)?;
            if peer.is_none() {
                return Err(HypervisorError::Migration {
                    domain: domain.to_string(),
                    target: target.libvirt_uri.clone(),
                    message: "unable to connect to the target's libvirt".into(),
                });
            }
            Ok(s.domains.remove(domain))
        })?;
        if let (Some(peer), Some(leaving)) = (peer, leaving) {
            peer.lock().domains.insert(target.domain_name.clone(), migration::arrived(leaving, target));
        }
        Ok(())
    }
}
