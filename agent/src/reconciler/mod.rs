//! The reconciler: makes this host match its desired state, one pass at a time.
//!
//! A pass reads what the host has, plans with the pure functions in [`plan`], and carries the actions
//! out in a safe order: volumes first (create, grow), then domains (define, start, stop, reboot),
//! then removal of what is no longer desired (domains before the volumes they used). Each VM and
//! volume fails on its own: an error is reported on that resource and the pass goes on. Passes are
//! idempotent, so an agent killed mid-pass simply converges on the next one. It must never touch a
//! domain or volume it does not own.

mod migration;
pub mod plan;
mod snapshots;
mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hci_firmware_profiles::{HostFirmware, Profiles};
use hci_shared::agent::{
    HostDesired, HostReport, ImageRef, VmMigration, VmReport, VmRunState, VolumeReport, VolumeSource,
};
use hci_shared::resources::PowerState;

use crate::hypervisor::{DomainInfo, Hypervisor};
use crate::store::AgentState;
use crate::volumes::{SourceSpec, VolumeBackend, VolumeInfo};
pub use migration::{offer as incoming_offer, IncomingEndpoint, OfferRefusal, PeerAgents};
use plan::{DomainAction, PresentVolume, VolumeAction, WantedDomain};
pub use spec::{domain_name, tap_name};

/// Where verified image files come from (the image store; a fake in tests).
pub trait ImageSource: Send + Sync {
    /// A local, verified copy of `image`.
    fn ensure(&self, image: &ImageRef) -> Result<PathBuf, String>;
}

/// Everything one pass drives on this host.
pub struct HostResources {
    pub host_id: String,
    pub hypervisor: Arc<dyn Hypervisor>,
    pub pools: BTreeMap<String, Arc<dyn VolumeBackend>>,
    pub images: Arc<dyn ImageSource>,
    pub profiles: Profiles,
    pub firmware: HostFirmware,
    /// `kvm` or `qemu` (TCG).
    pub domain_type: String,
    /// Per-VM files (NVRAM, console log) live in `vm_dir/<vm id>/`.
    pub vm_dir: PathBuf,
    pub shutdown_timeout: Duration,
    /// Other hosts' agents, for live migrations leaving this host.
    pub peers: Arc<dyn PeerAgents>,
    /// How live migrations reach this host.
    pub incoming: IncomingEndpoint,
    /// Zone networks and the firewall (`crate::network`); `None`: the host's networking is left alone.
    pub network: Option<Arc<crate::network::HostNetworking>>,
}

impl std::fmt::Debug for HostResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostResources").field("host_id", &self.host_id).field("pools", &self.pools.keys()).finish()
    }
}

/// The result of one pass.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    pub report: HostReport,
    /// Whether `state` changed (the caller persists it).
    pub state_changed: bool,
    pub errors: usize,
}

/// The volumes this host has: all of a local pool's, and of a shared pool's only those its desired
/// state names (wanted or retired): the others belong to other hosts.
fn present_volumes(
    res: &HostResources,
    desired: Option<&HostDesired>,
    errors: &mut BTreeMap<String, String>,
) -> Vec<(String, VolumeInfo)> {
    let mut out = Vec::new();
    for (pool, backend) in &res.pools {
        match backend.list() {
            Ok(list) if backend.shared() => {
                let ours = |id: &str| {
                    desired.is_some_and(|d| {
                        d.volumes.iter().any(|v| &v.pool == pool && v.id == id)
                            || d.retired_volumes.iter().any(|v| &v.pool == pool && v.id == id)
                    })
                };
                out.extend(list.into_iter().filter(|v| ours(&v.id)).map(|v| (pool.clone(), v)))
            }
            Ok(list) => out.extend(list.into_iter().map(|v| (pool.clone(), v))),
            Err(e) => {
                errors.insert(format!("pool/{pool}"), e.to_string());
            }
        }
    }
    out
}

fn source_spec(res: &HostResources, source: &VolumeSource) -> Result<SourceSpec, String> {
    Ok(match source {
        VolumeSource::Empty => SourceSpec::Empty,
        VolumeSource::Image(image) => {
            let path = res.images.ensure(image)?;
            let format = match image.format {
                hci_shared::agent::ImageFormat::Qcow2 => "qcow2",
                hci_shared::agent::ImageFormat::Raw => "raw",
            };
            SourceSpec::Image { path, format: format.to_string() }
        }
        VolumeSource::Clone { from, snapshot } => {
            SourceSpec::Clone { from_volume: from.clone(), snapshot: snapshot.clone() }
        }
    })
}

/// Runs one volume action; returns the volume as it is afterwards.
fn run_volume_action(res: &HostResources, desired: &HostDesired, action: &VolumeAction) -> Result<VolumeInfo, String> {
    let (pool, id) = match action {
        VolumeAction::Create { pool, id, .. } | VolumeAction::Grow { pool, id, .. } => (pool, id),
    };
    let backend = res.pools.get(pool).ok_or_else(|| format!("pool '{pool}' is not configured on this host"))?;
    match action {
        VolumeAction::Create { capacity_bytes, .. } => {
            let wanted = desired.volumes.iter().find(|v| &v.id == id).ok_or("volume vanished from desired state")?;
            let source = source_spec(res, &wanted.source)?;
            backend.create(id, *capacity_bytes, &source).map_err(|e| e.to_string())
        }
        VolumeAction::Grow { capacity_bytes, .. } => backend.resize(id, *capacity_bytes).map_err(|e| e.to_string()),
    }
}

fn run_domain_action(
    res: &HostResources,
    spec: &crate::hypervisor::DomainSpec,
    action: &DomainAction,
    running: bool,
) -> Result<(), String> {
    let name = spec.name.as_str();
    let result = match action {
        // A running domain also gets disks added to its spec hot-plugged (attach is idempotent: disks
        // already there are left alone; targets never shift, see `spec::assign_targets`). Disks
        // removed from the spec are unplugged after this by the pass.
        DomainAction::Define => res.hypervisor.define(spec).and_then(|()| {
            if running {
                spec.disks.iter().try_for_each(|disk| res.hypervisor.attach_disk(name, disk))
            } else {
                Ok(())
            }
        }),
        DomainAction::Start => res.hypervisor.start(name),
        DomainAction::Shutdown => res.hypervisor.shutdown(name, res.shutdown_timeout),
        // A guaranteed reboot: an ACPI shutdown (forced after the timeout), then a start. An ACPI
        // reboot alone is lost when the guest ignores the button (still booting, no ACPI), and
        // would not apply a redefinition.
        DomainAction::Reboot => {
            res.hypervisor.shutdown(name, res.shutdown_timeout).and_then(|()| res.hypervisor.start(name))
        }
    };
    result.map_err(|e| e.to_string())
}

/// One reconcile pass toward `state.desired`. With no desired state yet, nothing is changed: the
/// pass only reports what it finds.
pub fn reconcile(res: &HostResources, state: &mut AgentState) -> PassOutcome {
    reconcile_guarded(res, state, &|_| false)
}

/// A fenced VM (self-fencing, `state.fenced`) is held powered off whatever its desired power:
/// stopped hard when found running, never defined, started, rebooted or migrated.
fn hold_fenced(res: &HostResources, vm_id: &str, here: Option<&DomainInfo>) -> Result<(), String> {
    match here {
        Some(d) if !matches!(d.state, VmRunState::Stopped | VmRunState::Crashed) => {
            tracing::warn!(vm = %vm_id, "a fenced VM is not off: powering it off");
            res.hypervisor.shutdown(&d.name, Duration::ZERO).map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// [`reconcile`], with `fenced_now` telling whether a VM was fenced since the pass copied `state`
/// (checked again right before anything starts).
pub fn reconcile_guarded(
    res: &HostResources,
    state: &mut AgentState,
    fenced_now: &dyn Fn(&str) -> bool,
) -> PassOutcome {
    let mut volume_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut vm_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut state_changed = false;
    let desired =
        state.desired.clone().map(|d| crate::network::with_guest_settings(d, crate::network::guest_addressing(res)));
    // The pools' volumes, listed once per pass and again only after this pass changed them: a listing
    // costs round trips per volume held, which would otherwise grow every pass with the host.
    let mut listing: Option<Vec<(String, VolumeInfo)>> = None;
    // The domains after this pass's actions: listed once, for the network step and the report.
    let mut domains_after: Option<Vec<DomainInfo>> = None;

    if let Some(desired) = &desired {
        // 1. Volumes: create what is missing, grow what is too small.
        let before = present_volumes(res, Some(desired), &mut volume_errors);
        let present: Vec<PresentVolume> = before
            .iter()
            .map(|(pool, v)| PresentVolume { pool: pool.clone(), id: v.id.clone(), capacity_bytes: v.capacity_bytes })
            .collect();
        // An incoming VM's volumes in a shared pool arrive with it: never created empty here. Those in
        // local pools are created (from the same image, or empty) and filled by the migration.
        let arriving: BTreeSet<&str> = desired
            .vms
            .iter()
            .filter(|vm| matches!(vm.migration, Some(VmMigration::Incoming { .. })))
            .flat_map(|vm| vm.disks.iter().map(String::as_str))
            .collect();
        let shared: BTreeSet<String> =
            res.pools.iter().filter(|(_, b)| b.shared()).map(|(name, _)| name.clone()).collect();
        let creatable: Vec<_> = desired
            .volumes
            .iter()
            .filter(|v| !(arriving.contains(v.id.as_str()) && shared.contains(&v.pool)))
            .cloned()
            .collect();
        let actions = plan::plan_volumes(&creatable, &present);
        // The listing is brought up to date with what each action returns: listing again would cost
        // a call per volume the host holds.
        let mut present_after = before;
        for action in actions {
            let (VolumeAction::Create { pool, id, .. } | VolumeAction::Grow { pool, id, .. }) = &action;
            match run_volume_action(res, desired, &action) {
                Ok(info) => {
                    present_after.retain(|(p, v)| !(p == pool && &v.id == id));
                    present_after.push((pool.clone(), info));
                }
                Err(e) => {
                    tracing::warn!(volume = %id, error = %e, "volume action failed");
                    volume_errors.insert(id.clone(), e);
                }
            }
        }
        present_after.sort_by(|(pa, a), (pb, b)| (pa, &a.id).cmp(&(pb, &b.id)));

        // 2. Domains: define, start, stop, reboot.
        let volumes: BTreeMap<String, VolumeInfo> =
            present_after.iter().map(|(_, v)| (v.id.clone(), v.clone())).collect();
        let actual: BTreeMap<String, DomainInfo> = match res.hypervisor.list() {
            Ok(list) => list.into_iter().map(|d| (d.name.clone(), d)).collect(),
            Err(e) => {
                for vm in &desired.vms {
                    vm_errors.insert(vm.id.clone(), e.to_string());
                }
                BTreeMap::new()
            }
        };
        // Volume snapshots and rollbacks, before any domain starts: a rollback waits while a running
        // VM uses the volume.
        let mut running_users: BTreeMap<&str, &str> = BTreeMap::new();
        for vm in &desired.vms {
            let here = actual.get(&domain_name(&res.host_id, &vm.id));
            if here.is_some_and(|d| matches!(d.state, VmRunState::Running | VmRunState::Paused)) {
                running_users.extend(vm.disks.iter().map(|disk| (disk.as_str(), vm.id.as_str())));
            }
        }
        for volume in desired.volumes.iter().filter(|v| volumes.contains_key(&v.id)) {
            match snapshots::volume(res, state, volume, running_users.get(volume.id.as_str()).copied()) {
                Ok(changed) => state_changed |= changed,
                Err(e) => {
                    tracing::warn!(volume = %volume.id, error = %e, "volume snapshot step failed");
                    volume_errors.insert(volume.id.clone(), e);
                }
            }
        }

        for vm in &desired.vms {
            let here = actual.get(&domain_name(&res.host_id, &vm.id));
            if state.is_fenced(&vm.id) || fenced_now(&vm.id) {
                if let Err(e) = hold_fenced(res, &vm.id, here) {
                    vm_errors.insert(vm.id.clone(), e);
                }
                continue;
            }
            match &vm.migration {
                Some(VmMigration::Outgoing { to_host, to_agent }) => {
                    let held = state.applied.disk_targets.get(&vm.id);
                    if let Err(e) = migration::depart(res, vm, to_host, to_agent, here, held, &desired.volumes) {
                        tracing::warn!(vm = %vm.id, to_host, error = %e, "live migration failed");
                        vm_errors.insert(vm.id.clone(), e);
                    }
                    continue;
                }
                // Not here yet, or still arriving (paused until the switch-over): nothing to do.
                Some(VmMigration::Incoming { .. }) if here.is_none_or(|d| d.state != VmRunState::Running) => continue,
                _ => {}
            }
            let held = state.applied.disk_targets.get(&vm.id).cloned().unwrap_or_default();
            let built = spec::assign_targets(&vm.disks, &held)
                .and_then(|targets| Ok((spec::build(res, desired.generation, vm, &volumes, &targets)?, targets)));
            let (spec, targets) = match built {
                Ok(built) => built,
                Err(e) => {
                    vm_errors.insert(vm.id.clone(), e);
                    continue;
                }
            };
            let applied = *state.applied.reboots.entry(vm.id.clone()).or_insert_with(|| {
                state_changed = true;
                vm.reboot_count
            });
            let wanted = WantedDomain {
                name: spec.name.clone(),
                digest: spec.digest(),
                power: vm.power,
                reboot_count: vm.reboot_count,
            };
            let running =
                actual.get(&spec.name).is_some_and(|d| matches!(d.state, VmRunState::Running | VmRunState::Paused));
            // A revert runs on the stopped domain before anything may start it; while it waits, a
            // VM meant to run is left alone and one meant to stop is stopped (then reverted next pass).
            match snapshots::vm_revert(res, state, vm, &spec.name, actual.get(&spec.name).map(|d| d.state)) {
                Ok(changed) => state_changed |= changed,
                Err(e) => {
                    vm_errors.insert(vm.id.clone(), e);
                    if vm.power == PowerState::Running {
                        continue;
                    }
                }
            }
            let mut failed = false;
            for action in plan::plan_domain(&wanted, actual.get(&spec.name), applied) {
                if matches!(action, DomainAction::Start | DomainAction::Reboot) && fenced_now(&vm.id) {
                    failed = true;
                    break;
                }
                if let Err(e) = run_domain_action(res, &spec, &action, running) {
                    tracing::warn!(vm = %vm.id, ?action, error = %e, "domain action failed");
                    vm_errors.insert(vm.id.clone(), e);
                    failed = true;
                    break;
                }
                if matches!(action, DomainAction::Start | DomainAction::Reboot) && applied != vm.reboot_count {
                    state.applied.reboots.insert(vm.id.clone(), vm.reboot_count);
                    state_changed = true;
                }
            }
            // Disks that left the VM: unplugged from a running one (the definition already lost them).
            let leaving: Vec<(String, String)> =
                held.into_iter().filter(|(volume, _)| !targets.contains_key(volume)).collect();
            let mut record = targets;
            for (volume, target) in leaving {
                let unplugged = if failed {
                    Err("waiting for the domain to be redefined".to_string())
                } else if running {
                    res.hypervisor.detach_disk(&spec.name, &target).map_err(|e| e.to_string())
                } else {
                    Ok(())
                };
                if let Err(e) = unplugged {
                    if !failed {
                        tracing::warn!(vm = %vm.id, volume = %volume, error = %e, "disk hot-unplug failed");
                        vm_errors.insert(vm.id.clone(), e);
                    }
                    record.insert(volume, target);
                }
            }
            if state.applied.disk_targets.get(&vm.id) != Some(&record) {
                state.applied.disk_targets.insert(vm.id.clone(), record);
                state_changed = true;
            }
            if !failed {
                match snapshots::vm_snapshots(res, state, vm, &spec.name) {
                    Ok(changed) => state_changed |= changed,
                    Err(e) => {
                        vm_errors.insert(vm.id.clone(), e);
                    }
                }
            }
        }

        // 3. Remove what is no longer desired: domains first, then their volumes.
        let wanted_names: BTreeSet<String> = desired.vms.iter().map(|vm| domain_name(&res.host_id, &vm.id)).collect();
        let actual_list: Vec<DomainInfo> = actual.into_values().collect();
        let (undefine, _) = plan::plan_domain_cleanup(&res.host_id, &wanted_names, &actual_list);
        for name in undefine {
            match res.hypervisor.undefine(&name) {
                Ok(()) => {
                    if let Some(vm_id) = actual_list.iter().find(|d| d.name == name).and_then(|d| d.owner.as_ref()) {
                        spec::remove_vm_files(res, &vm_id.vm_id);
                        state.applied.reboots.remove(&vm_id.vm_id);
                        state.applied.disk_targets.remove(&vm_id.vm_id);
                        snapshots::forget_vm(state, &vm_id.vm_id);
                        state_changed = true;
                    }
                }
                Err(e) => {
                    vm_errors.insert(name.clone(), e.to_string());
                }
            }
        }
        if vm_errors.is_empty() {
            let present: Vec<PresentVolume> = present_after
                .iter()
                .map(|(pool, v)| PresentVolume {
                    pool: pool.clone(),
                    id: v.id.clone(),
                    capacity_bytes: v.capacity_bytes,
                })
                .collect();
            for (pool, id) in plan::plan_volume_deletes(desired, &present, &shared) {
                if let Some(backend) = res.pools.get(&pool) {
                    match backend.delete(&id) {
                        Ok(()) => {
                            present_after.retain(|(p, v)| !(p == &pool && v.id == id));
                            snapshots::forget_volume(state, &id);
                            state_changed = true;
                        }
                        Err(e) => {
                            volume_errors.insert(id.clone(), e.to_string());
                        }
                    }
                }
            }
        }
        let domains = res.hypervisor.list().unwrap_or_default();
        crate::network::converge(res, desired, &domains, &mut vm_errors);
        domains_after = Some(domains);
        listing = Some(present_after);
    }

    let listing = listing.unwrap_or_else(|| present_volumes(res, None, &mut BTreeMap::new()));
    let domains = domains_after.unwrap_or_else(|| res.hypervisor.list().unwrap_or_default());
    let report = build_report(res, state, desired.as_ref(), listing, &domains, &vm_errors, &volume_errors);
    PassOutcome { report, state_changed, errors: vm_errors.len() + volume_errors.len() }
}

/// What a fenced VM reports as its error.
fn state_fenced_note(state: &AgentState, vm_id: &str) -> Option<String> {
    let fenced = state.fenced.as_ref().filter(|f| f.vms.contains(vm_id))?;
    Some(format!(
        "fenced: lost the controllers at {}; kept off until the controller takes this host back",
        crate::controller::fence::rfc3339(fenced.at_unix_ms)
    ))
}

fn build_report(
    res: &HostResources,
    state: &AgentState,
    desired: Option<&HostDesired>,
    listing: Vec<(String, VolumeInfo)>,
    domains: &[DomainInfo],
    vm_errors: &BTreeMap<String, String>,
    volume_errors: &BTreeMap<String, String>,
) -> HostReport {
    let agent_state = state;
    let by_name: BTreeMap<&str, &DomainInfo> = domains.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut converged = vm_errors.is_empty() && volume_errors.is_empty();
    let vms = desired
        .map(|d| d.vms.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|vm| {
            let name = domain_name(&res.host_id, &vm.id);
            let leaving = matches!(vm.migration, Some(VmMigration::Outgoing { .. }));
            let state = match by_name.get(name.as_str()) {
                Some(d) => d.state,
                None if leaving => VmRunState::Departed,
                None => VmRunState::Missing,
            };
            let in_place = match vm.power {
                _ if leaving => state == VmRunState::Departed,
                PowerState::Running => state == VmRunState::Running,
                PowerState::Stopped => state == VmRunState::Stopped,
            };
            converged &= in_place;
            let stats = (state == VmRunState::Running).then(|| res.hypervisor.stats(&name).ok()).flatten();
            let fenced = state_fenced_note(agent_state, &vm.id);
            let last_error = vm_errors.get(&vm.id).cloned().or(fenced);
            VmReport { id: vm.id.clone(), state, stats, last_error }
        })
        .collect();
    let volumes = listing
        .into_iter()
        .map(|(pool, v)| VolumeReport {
            last_error: volume_errors.get(&v.id).cloned(),
            id: v.id,
            pool,
            capacity_bytes: v.capacity_bytes,
            allocation_bytes: v.allocation_bytes,
        })
        .collect();
    let (_, foreign_domains) = plan::plan_domain_cleanup(&res.host_id, &BTreeSet::new(), domains);
    HostReport {
        host_id: res.host_id.clone(),
        desired_generation: state.generation(),
        converged_generation: desired.filter(|_| converged).map(|d| d.generation),
        vms,
        volumes,
        foreign_domains,
    }
}
