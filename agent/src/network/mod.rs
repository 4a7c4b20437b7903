//! Zone networks on the host (issue #5, docs/networks.md): VM NICs are routed, not bridged. Each
//! VM tap gets proxy ARP and a /32 route to its NIC's address; each zone gets a VXLAN device
//! (`vx-<vni>`, head-end replication to every other host of the site) or, when the zone names a
//! VLAN, a VLAN device on the host's trunk (`vl-<vlan>`), with a route for the zone's network; the host forwards, so every packet of a VM crosses the forward path, where the firewall
//! (`crate::firewall`, table `inet hci`) judges it.
//!
//! - [`plan`]: pure: the wanted devices, routes and sysctls, the steps to them, the firewall model;
//! - [`NetworkDataPlane`]: the narrow interface to the kernel, with [`ip::IpDataPlane`] (`ip`,
//!   `bridge`, `/proc/sys`) and [`fake::FakeDataPlane`] of the same shape;
//! - [`HostNetworking`]: one reconcile pass's network step (data plane, then the firewall through
//!   its `Enforcer`: one transaction, element edits when only NICs change; then the DHCP server's
//!   taps and leases, [`dhcp`]) and the drift watcher.
//!
//! It must only ever change what the agent owns (see [`plan`]): taps belong to libvirt (only
//! configured here), other devices and routes are never touched.

pub mod dhcp;
pub mod fake;
pub mod ip;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use hci_shared::agent::{HostDesired, VmRunState};
use prometheus::IntCounter;

use crate::firewall::{DriftEvent, Enforcer, Firewall, UpdateKind};
use plan::Op;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

/// What the agent asks of the kernel's networking. Calls block (they run `ip`); callers run them
/// off the async runtime.
pub trait NetworkDataPlane: Send + Sync {
    /// Links, the agent's routes and flood entries, and the values of `sysctls`.
    fn observe(&self, sysctls: &[String]) -> Result<Observed, NetError>;
    /// One step.
    fn apply(&self, op: &Op) -> Result<(), NetError>;
}

pub use plan::Observed;

/// Counters of the network step (registered in the agent's metrics).
#[derive(Debug, Clone)]
pub struct NetworkCounters {
    pub firewall_drift_events: IntCounter,
    pub firewall_full_applies: IntCounter,
    pub firewall_incremental_applies: IntCounter,
    pub network_steps: IntCounter,
    /// Replies the DHCP server sent ([`dhcp::udp::UdpDhcp::counting`]).
    pub dhcp_replies: IntCounter,
}

impl NetworkCounters {
    /// Unregistered counters (tests).
    pub fn detached() -> Self {
        let counter = |name: &str| IntCounter::new(name, name).unwrap_or_else(|e| unreachable!("counter {name}: {e}"));
        NetworkCounters {
            firewall_drift_events: counter("drift"),
            firewall_full_applies: counter("full"),
            firewall_incremental_applies: counter("incremental"),
            network_steps: counter("steps"),
            dhcp_replies: counter("dhcp"),
        }
    }
}

/// At most this many observe-plan-apply rounds per pass (devices first, then what hangs on them).
const MAX_ROUNDS: usize = 4;

/// The host's data plane and firewall, driven by each reconcile pass.
pub struct HostNetworking {
    pub host_id: String,
    /// Where this host meets the others: the address its VXLAN devices send from, the device its
    /// VLAN devices are stacked on (neither: VMs reach only VMs of this host).
    pub fabric: plan::Fabric,
    dataplane: Arc<dyn NetworkDataPlane>,
    enforcer: Mutex<Enforcer>,
    /// Answers DHCP on the VMs' taps ([`HostNetworking::with_dhcp`]); `None`: guests are told their
    /// address in SMBIOS OEM strings ([`guest_settings`]).
    dhcp: Option<Arc<dyn dhcp::DhcpService>>,
    pub counters: NetworkCounters,
}

impl std::fmt::Debug for HostNetworking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostNetworking").field("host_id", &self.host_id).field("fabric", &self.fabric).finish()
    }
}

/// What one network step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOutcome {
    /// Steps applied to the data plane.
    pub ops: Vec<Op>,
    pub firewall: Option<UpdateKind>,
    /// Per-VM errors (a VM id → what is wrong with its NICs).
    pub vm_errors: BTreeMap<String, String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostNetworking {
    pub fn new(
        host_id: &str,
        underlay: Option<Ipv4Addr>,
        dataplane: Arc<dyn NetworkDataPlane>,
        firewall: Arc<dyn Firewall>,
        counters: NetworkCounters,
    ) -> Self {
        HostNetworking {
            host_id: host_id.to_string(),
            fabric: plan::Fabric { underlay, vlan_trunk: None },
            dataplane,
            enforcer: Mutex::new(Enforcer::new(firewall)),
            dhcp: None,
            counters,
        }
    }

    /// Carries zones that name a VLAN on VLAN devices stacked on `trunk`.
    pub fn with_vlan_trunk(mut self, trunk: Option<String>) -> Self {
        self.fabric.vlan_trunk = trunk;
        self
    }

    /// Serves the VMs' addresses by DHCP through `dhcp` (guests are then told `hci.ip=dhcp`).
    pub fn with_dhcp(mut self, dhcp: Arc<dyn dhcp::DhcpService>) -> Self {
        self.dhcp = Some(dhcp);
        self
    }

    /// Whether guests get their address by DHCP.
    pub fn dhcp_enabled(&self) -> bool {
        self.dhcp.is_some()
    }

    /// Brings devices, routes, sysctls and the firewall to what `desired` implies. `running`: the
    /// VMs whose domains run here (a running VM's missing tap is an error; a stopped VM has none).
    /// A VM arriving by live migration is in the firewall at once (whatever its tap sends is judged
    /// from the first packet) but gets its route only once it runs here: until then the host it
    /// comes from answers for its address. Does nothing when `desired` carries no network,
    /// except stop serving DHCP.
    pub fn converge(&self, desired: &HostDesired, running: &BTreeSet<String>) -> NetworkOutcome {
        let mut out = NetworkOutcome::default();
        let Some(network) = &desired.network else {
            // Nothing else is touched, but no lease outlives the network it came from.
            if let Some(dhcp) = &self.dhcp {
                dhcp.serve(&BTreeMap::new());
            }
            return out;
        };
        let nics = plan::local_nics(desired);
        let routed = nics.iter().filter(|n| !n.incoming || running.contains(&n.vm_id)).cloned().collect();
        let wanted = plan::wanted(&self.host_id, &self.fabric, network, routed);
        let keys = plan::sysctl_keys(&wanted);
        let mut host_error: Option<String> = None;
        let mut failed_devices: BTreeMap<String, String> = BTreeMap::new();
        let mut observed = None;
        for _ in 0..MAX_ROUNDS {
            let seen = match self.dataplane.observe(&keys) {
                Ok(seen) => seen,
                Err(e) => {
                    host_error = Some(format!("network: reading the host's devices: {e}"));
                    break;
                }
            };
            // Steps that already failed this pass are not retried until the next pass.
            let ops: Vec<Op> = plan::plan(&wanted, &seen)
                .into_iter()
                .filter(|op| !failed_devices.contains_key(op.device().unwrap_or("")))
                .collect();
            observed = Some(seen);
            if ops.is_empty() {
                break;
            }
            for op in ops {
                self.counters.network_steps.inc();
                match self.dataplane.apply(&op) {
                    Ok(()) => out.ops.push(op),
                    Err(e) => {
                        tracing::warn!(?op, error = %e, "network step failed");
                        match op.device() {
                            Some(dev) => {
                                failed_devices.insert(dev.to_string(), format!("{op:?}: {e}"));
                            }
                            None => host_error = Some(format!("network: {op:?}: {e}")),
                        }
                    }
                }
            }
        }
        let dhcp_errors = match (&self.dhcp, &observed) {
            (Some(dhcp), Some(seen)) => serve_dhcp(dhcp.as_ref(), desired, seen),
            _ => BTreeMap::new(),
        };
        let observed = observed.unwrap_or_default();
        let fabric = wanted.fabric_devices();
        let (model, mut vm_errors) = plan::firewall_model(network, &nics, fabric);
        for nic in &nics {
            let error = if let Some(e) = failed_devices.get(&nic.tap) {
                Some(format!("network: tap {}: {e}", nic.tap))
            } else if let Some((dev, e)) =
                wanted.zone_devices.get(&nic.zone).and_then(|dev| Some((dev, failed_devices.get(dev)?)))
            {
                Some(format!("network: {dev}: {e}"))
            } else if running.contains(&nic.vm_id) && !observed.links.contains_key(&nic.tap) {
                Some(format!("network: tap {} of NIC {} is missing", nic.tap, nic.index))
            } else if let Some(why) = wanted.unreachable.get(&nic.zone) {
                Some(format!("network: NIC {} reaches only VMs of this host: {why}", nic.index))
            } else {
                host_error.clone()
            };
            if let Some(error) = error {
                vm_errors.entry(nic.vm_id.clone()).or_insert(error);
            }
        }
        match lock(&self.enforcer).apply(model) {
            Ok(kind) => {
                match kind {
                    UpdateKind::Full => self.counters.firewall_full_applies.inc(),
                    UpdateKind::Interfaces(_) => self.counters.firewall_incremental_applies.inc(),
                    UpdateKind::Unchanged => {}
                }
                out.firewall = Some(kind);
            }
            Err(e) => {
                tracing::warn!(error = %e, "firewall apply failed; the table stays as it was");
                for nic in &nics {
                    vm_errors.entry(nic.vm_id.clone()).or_insert_with(|| format!("firewall: {e}"));
                }
            }
        }
        for (vm, error) in dhcp_errors {
            vm_errors.entry(vm).or_insert(error);
        }
        out.vm_errors = vm_errors;
        out
    }

    /// Compares the firewall table with what was applied; restores it (and counts the event) when
    /// someone changed it.
    pub fn check_drift(&self) -> Result<Option<DriftEvent>, crate::firewall::FirewallError> {
        let event = lock(&self.enforcer).check_drift()?;
        if event.is_some() {
            self.counters.firewall_drift_events.inc();
        }
        Ok(event)
    }
}

/// The DHCP server's step: serves the leases of the NICs whose taps exist (`seen`); per-VM errors
/// for NICs that cannot have a lease and taps it could not serve.
fn serve_dhcp(dhcp: &dyn dhcp::DhcpService, desired: &HostDesired, seen: &Observed) -> BTreeMap<String, String> {
    let (leases, mut errors) = dhcp::leases(desired);
    let present: BTreeMap<String, dhcp::Lease> = leases
        .iter()
        .filter(|(tap, _)| seen.links.contains_key(*tap))
        .map(|(tap, nic)| (tap.clone(), nic.lease.clone()))
        .collect();
    for (tap, error) in dhcp.serve(&present) {
        tracing::warn!(%tap, %error, "dhcp: cannot serve a tap");
        if let Some(nic) = leases.get(&tap) {
            errors.entry(nic.vm_id.clone()).or_insert_with(|| format!("dhcp: tap {tap}: {error}"));
        }
    }
    errors
}

/// How guests learn their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAddressing {
    /// SMBIOS OEM strings `hci.ip=ADDRESS/PREFIX`, `hci.gw=GATEWAY` (an agent without networking,
    /// or without a DHCP server).
    Static,
    /// `hci.ip=dhcp`: the agent's DHCP server ([`dhcp`]) hands out the same address and gateway.
    Dhcp,
}

/// How `res`'s agent tells its guests their address: by DHCP when it serves DHCP on the taps.
pub fn guest_addressing(res: &crate::reconciler::HostResources) -> GuestAddressing {
    match &res.network {
        Some(network) if network.dhcp_enabled() => GuestAddressing::Dhcp,
        _ => GuestAddressing::Static,
    }
}

/// The guest's network settings as SMBIOS OEM strings (read by the guest's init): for each VM's
/// first NIC whose zone is in the desired network, `hci.ip=ADDRESS/PREFIX` and `hci.gw=GATEWAY`
/// ([`GuestAddressing::Static`]) or `hci.ip=dhcp` ([`GuestAddressing::Dhcp`]). Leaves VMs that
/// already set `hci.ip` alone.
pub fn with_guest_settings(mut desired: HostDesired, how: GuestAddressing) -> HostDesired {
    let Some(network) = desired.network.clone() else { return desired };
    for vm in &mut desired.vms {
        let Some(nic) = vm.nics.first() else { continue };
        let Some(zone) = network.zones.iter().find(|z| z.name == nic.zone) else { continue };
        let Some((_, prefix)) = zone.cidr.split_once('/') else { continue };
        if vm.oem_strings.iter().any(|s| s.starts_with("hci.ip=")) {
            continue;
        }
        match how {
            GuestAddressing::Static => {
                vm.oem_strings.push(format!("hci.ip={}/{prefix}", nic.ip));
                vm.oem_strings.push(format!("hci.gw={}", zone.gateway));
            }
            GuestAddressing::Dhcp => vm.oem_strings.push("hci.ip=dhcp".into()),
        }
    }
    desired
}

/// The reconcile pass's network step: converges `res.network` (when the agent has one) toward
/// `desired`, adding per-VM errors to `vm_errors`. `domains`: the host's domains after the pass's
/// actions (listed once per pass, also for the report).
pub fn converge(
    res: &crate::reconciler::HostResources,
    desired: &HostDesired,
    domains: &[crate::hypervisor::DomainInfo],
    vm_errors: &mut BTreeMap<String, String>,
) {
    let Some(networking) = &res.network else { return };
    let running: BTreeSet<String> = domains
        .iter()
        .filter(|d| d.state == VmRunState::Running)
        .filter_map(|d| d.owner.as_ref().filter(|o| o.host_id == res.host_id).map(|o| o.vm_id.clone()))
        .collect();
    let outcome = networking.converge(desired, &running);
    for (vm, error) in outcome.vm_errors {
        vm_errors.entry(vm).or_insert(error);
    }
}
