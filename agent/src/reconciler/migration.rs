//! Live migration between two agents, both halves: the target's offer (it renders, from its own
//! desired state, the domain it will run) and the source's departure (it asks the target for that
//! offer and has libvirt move the running domain there).
//!
//! It exists because a VM must move without ever running twice: the target never defines or starts
//! an `Incoming` VM itself, it only answers for it; the source never recreates an `Outgoing` VM that is
//! gone; and libvirt's migration hands the running instance over in one switch-over. The controller
//! sets both halves and, once the target reports the VM running, removes it from the source.

use std::collections::BTreeMap;

use hci_shared::agent::{IncomingOffer, IncomingRequest, VmDesired, VmMigration, VolumeDesired};

use super::{spec, HostResources};
use crate::hypervisor::domain_xml::{self, RenderOptions};
use crate::hypervisor::{DomainInfo, MigrationTarget};
use crate::store::AgentState;
use crate::volumes::VolumeInfo;

/// Reaches other hosts' agents (their `/agent/v1/incoming/{vm}`); a fake in reconciler tests.
pub trait PeerAgents: Send + Sync {
    fn incoming_offer(&self, agent_url: &str, vm_id: &str, request: &IncomingRequest) -> Result<IncomingOffer, String>;
}

/// How this host receives migrations: what its offers tell the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEndpoint {
    /// The libvirt URI the source's libvirtd connects to (peer-to-peer).
    pub libvirt_uri: String,
    /// The address QEMU's migration stream goes to; `None` lets libvirt choose (the host name).
    pub address: Option<String>,
}

/// Why this host will not take an incoming VM now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferRefusal {
    #[error("{field}: {message}")]
    BadRequest { field: &'static str, message: String },
    #[error("VM {0} is not in this host's desired state")]
    NotDesired(String),
    #[error("VM {vm} is not expected here from host {from_host}: {why}")]
    NotExpected { vm: String, from_host: String, why: String },
    #[error("VM {vm} cannot run here: {message}")]
    CannotRun { vm: String, message: String },
    #[error("{0}")]
    Internal(String),
}

fn check_uuid(uuid: &str) -> Result<(), OfferRefusal> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    if shape && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(())
    } else {
        Err(OfferRefusal::BadRequest { field: "uuid", message: format!("'{uuid}' is not a UUID") })
    }
}

/// The target's half: the domain this host will run for the incoming `vm_id`, rendered from its own
/// desired state (its disks as this host sees them, its file paths, its hci metadata) with the VM's
/// UUID. Refused unless the desired state expects exactly this VM from exactly this source.
pub fn offer(
    res: &HostResources,
    state: &AgentState,
    vm_id: &str,
    request: &IncomingRequest,
) -> Result<IncomingOffer, OfferRefusal> {
    check_uuid(&request.uuid)?;
    hci_shared::names::check_name(&request.from_host)
        .map_err(|why| OfferRefusal::BadRequest { field: "from_host", message: why.to_string() })?;
    if request.domain_name != super::domain_name(&request.from_host, vm_id) {
        return Err(OfferRefusal::BadRequest {
            field: "domain_name",
            message: format!("'{}' is not VM {vm_id}'s domain on host {}", request.domain_name, request.from_host),
        });
    }
    // Rendered as the reconciler renders it (with the guest's network settings), so the domain that
    // arrives is the one this host would define.
    let desired =
        state.desired.clone().map(|d| crate::network::with_guest_settings(d, crate::network::guest_addressing(res)));
    let desired = desired.as_ref().ok_or_else(|| OfferRefusal::NotDesired(vm_id.to_string()))?;
    let vm = desired.vms.iter().find(|vm| vm.id == vm_id).ok_or_else(|| OfferRefusal::NotDesired(vm_id.to_string()))?;
    let not_expected =
        |why: String| OfferRefusal::NotExpected { vm: vm_id.to_string(), from_host: request.from_host.clone(), why };
    match &vm.migration {
        Some(VmMigration::Incoming { from_host }) if *from_host == request.from_host => {}
        Some(VmMigration::Incoming { from_host }) => return Err(not_expected(format!("it comes from {from_host}"))),
        _ => return Err(not_expected("it is not marked incoming".into())),
    }
    let mut errors = BTreeMap::new();
    let volumes: BTreeMap<String, VolumeInfo> =
        super::present_volumes(res, Some(desired), &mut errors).into_iter().map(|(_, v)| (v.id.clone(), v)).collect();
    let targets = spec::assign_targets(&vm.disks, &BTreeMap::new())
        .map_err(|message| OfferRefusal::CannotRun { vm: vm_id.to_string(), message })?;
    let spec = spec::build(res, desired.generation, vm, &volumes, &targets)
        .map_err(|message| OfferRefusal::CannotRun { vm: vm_id.to_string(), message })?;
    crate::hypervisor::create_file_dirs(&spec)
        .map_err(|e| OfferRefusal::CannotRun { vm: vm_id.to_string(), message: e.to_string() })?;
    let options = RenderOptions { uuid: Some(request.uuid.clone()), name: Some(request.domain_name.clone()) };
    let domain_xml = domain_xml::render_with(&spec, &options);
    Ok(IncomingOffer {
        host_id: res.host_id.clone(),
        domain_name: spec.name,
        domain_xml,
        libvirt_uri: res.incoming.libvirt_uri.clone(),
        migration_uri: res.incoming.address.as_ref().map(|a| format!("tcp://{a}")),
    })
}

/// The source's half for an `Outgoing` VM: nothing when its domain is already gone (it left);
/// otherwise the target's offer, then libvirt's live migration. On failure the VM keeps running here
/// and the next pass tries again.
pub fn depart(
    res: &HostResources,
    vm: &VmDesired,
    to_host: &str,
    to_agent: &str,
    here: Option<&DomainInfo>,
    held_targets: Option<&BTreeMap<String, String>>,
    volumes: &[VolumeDesired],
) -> Result<(), String> {
    let Some(domain) = here else { return Ok(()) };
    // The target renders the disks in order (vda, vdb, ...); a VM whose disks kept other targets
    // after a hot-unplug would not match it, and libvirt would refuse the migration.
    let in_order = spec::assign_targets(&vm.disks, &BTreeMap::new())?;
    if held_targets.is_some_and(|held| held != &in_order) {
        return Err(format!(
            "its disk targets {held_targets:?} are not in order (a disk was unplugged from the middle); \
             live migration needs them in order: stop the VM and move it cold"
        ));
    }
    let uuid = res.hypervisor.uuid(&domain.name).map_err(|e| e.to_string())?;
    let request = IncomingRequest { from_host: res.host_id.clone(), domain_name: domain.name.clone(), uuid };
    let offer = res
        .peers
        .incoming_offer(to_agent, &vm.id, &request)
        .map_err(|e| format!("asking host {to_host} ({to_agent}) to take the VM: {e}"))?;
    if offer.host_id != to_host {
        return Err(format!("the agent at {to_agent} is host {}, not {to_host}", offer.host_id));
    }
    // Disks in local pools are copied; those in shared pools the target reaches itself.
    let local = |volume_id: &str| {
        let pool = volumes.iter().find(|v| v.id == volume_id).map(|v| v.pool.as_str());
        !pool.and_then(|p| res.pools.get(p)).is_some_and(|backend| backend.shared())
    };
    let copy_disks: Vec<String> =
        in_order.iter().filter(|(volume, _)| local(volume)).map(|(_, target)| target.clone()).collect();
    tracing::info!(vm = %vm.id, to_host, target = %offer.libvirt_uri, ?copy_disks, "live-migrating");
    let target = MigrationTarget {
        libvirt_uri: offer.libvirt_uri,
        domain_name: offer.domain_name,
        domain_xml: offer.domain_xml,
        migration_uri: offer.migration_uri,
        copy_disks,
    };
    res.hypervisor.migrate_live(&domain.name, &target).map_err(|e| e.to_string())
}
