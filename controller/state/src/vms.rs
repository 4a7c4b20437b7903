//! VM creation and deletion: attaching volumes, assigning NIC addresses, charging the quota.
//!
//! It exists to make a VM and everything it holds (volumes, addresses, vcpus, memory) appear and
//! disappear together in one log entry. It must never attach a volume twice, give an address or MAC
//! to two NICs, or let a tenant's vcpus or memory exceed its quota.

use hci_shared::api::VmCreate;
use hci_shared::command::{Applied, Placement};
use hci_shared::resources::{Nic, PowerState, Tenant, Usage, Vm, Volume, Zone};
use hci_shared::{validate, ApiError};

use crate::apply::{check_id, check_if_match, Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::ipam::Allocator;
use crate::model::Model;
use crate::quota;

fn compute(vcpus: u32, memory_mib: u64) -> Usage {
    Usage { vcpus, memory_mib, disk_gib: 0 }
}

/// The volumes the VM asks for: each exists, is the tenant's and is free.
fn volumes_to_attach<'m>(model: &'m Model, tenant: &str, ids: &[String]) -> Result<Vec<&'m Volume>, ApiError> {
    let mut volumes = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let field = format!("volumes[{i}]");
        let volume =
            model.volumes.get(id).ok_or_else(|| ApiError::invalid(&field, format!("volume '{id}' does not exist")))?;
        if volume.tenant != tenant {
            return Err(ApiError::invalid(
                &field,
                format!("volume '{id}' belongs to tenant '{}', not '{tenant}'", volume.tenant),
            ));
        }
        if let Some(vm_id) = &volume.attached_to {
            let vm_name = model.vms.get(vm_id).map(|vm| vm.name.as_str()).unwrap_or("?");
            return Err(ApiError::conflict(format!("volume '{id}' is already attached to vm '{vm_name}' ({vm_id})")));
        }
        if volumes.iter().any(|v: &&Volume| v.id == *id) {
            return Err(ApiError::invalid(&field, format!("'{id}' is listed twice")));
        }
        volumes.push(volume);
    }
    Ok(volumes)
}

/// The zones the VM's NICs ask for: each exists and is the tenant's.
pub(crate) fn nic_zones<'m>(model: &'m Model, tenant: &str, spec: &VmCreate) -> Result<Vec<&'m Zone>, ApiError> {
    let mut zones = Vec::with_capacity(spec.nics.len());
    for (i, nic) in spec.nics.iter().enumerate() {
        let field = format!("nics[{i}].zone");
        let zone = model
            .zones
            .get(&nic.zone)
            .ok_or_else(|| ApiError::invalid(&field, format!("zone '{}' does not exist", nic.zone)))?;
        if zone.tenant != tenant {
            return Err(ApiError::invalid(
                &field,
                format!("zone '{}' belongs to tenant '{}', not '{tenant}'", zone.name, zone.tenant),
            ));
        }
        zones.push(zone);
    }
    Ok(zones)
}

fn tenant_of<'m>(model: &'m Model, spec: &VmCreate) -> Result<&'m Tenant, ApiError> {
    model
        .tenants
        .get(&spec.tenant)
        .ok_or_else(|| ApiError::invalid("tenant", format!("tenant '{}' does not exist", spec.tenant)))
}

/// The record of a new, unplaced VM made from `spec`.
pub(crate) fn new_vm(id: &str, spec: &VmCreate, nics: Vec<Nic>, at: &str, revision: u64) -> Vm {
    Vm {
        id: id.to_string(),
        name: spec.name.clone(),
        tenant: spec.tenant.clone(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        arch: spec.arch.clone(),
        firmware: spec.firmware.clone().unwrap_or_else(|| validate::default_firmware(&spec.arch).to_string()),
        volumes: spec.volumes.clone(),
        nics,
        anti_affinity_group: spec.anti_affinity_group.clone(),
        host: None,
        power: spec.power.unwrap_or(PowerState::Running),
        reboot_count: 0,
        ha: spec.ha.unwrap_or(true),
        migration: None,
        created_at: at.to_string(),
        revision,
    }
}

pub(crate) fn create(
    model: &Model,
    ctx: &Ctx<'_>,
    id: &str,
    spec: &VmCreate,
    placement: Option<&Placement>,
) -> Decision {
    check_id("id", id)?;
    validate::vm_create(spec)?;
    if model.vms.contains_key(id) {
        return Err(ApiError::conflict(format!("vm id '{id}' already exists")));
    }
    let tenant = tenant_of(model, spec)?;
    if let Some(other) = model.vm_id_by_name(&spec.tenant, &spec.name) {
        return Err(ApiError::conflict(format!(
            "vm '{}' already exists in tenant '{}' (id {other})",
            spec.name, spec.tenant
        )));
    }
    let volumes = volumes_to_attach(model, &spec.tenant, &spec.volumes)?;
    let zones = nic_zones(model, &spec.tenant, spec)?;
    let charged = quota::charge(tenant, compute(spec.vcpus, spec.memory_mib), ctx)?;
    let mut allocator = Allocator::new(model);
    let mut nics = Vec::with_capacity(zones.len());
    for (i, zone) in zones.iter().enumerate() {
        let ip = allocator.address(zone)?;
        let mac = allocator.mac(id, i)?;
        nics.push(Nic { zone: zone.name.clone(), mac, ip: ip.to_string() });
    }
    let vm = new_vm(id, spec, nics, ctx.at, ctx.index);
    let vm = Vm { host: placement.map(|p| model.check_placement(&vm, p)).transpose()?, ..vm };
    let mut changes = vec![Change::PutTenant(charged)];
    for volume in volumes {
        let mut attached = volume.clone();
        attached.attached_to = Some(id.to_string());
        attached.host = attached.host.or_else(|| vm.host.clone());
        attached.revision = ctx.index;
        changes.push(Change::PutVolume(attached));
    }
    changes.push(Change::PutVm(vm.clone()));
    changes.extend(touch(model, ctx, vm.host.as_deref()));
    Ok(Outcome::new(Applied::Vm(vm), changes))
}

pub(crate) fn delete(model: &Model, ctx: &Ctx<'_>, id: &str, if_match: Option<u64>) -> Decision {
    let vm = model.vms.get(id).ok_or_else(|| ApiError::not_found("vm", id))?;
    check_if_match(if_match, vm.revision)?;
    let tenant = model
        .tenants
        .get(&vm.tenant)
        .ok_or_else(|| ApiError::internal(format!("vm '{id}' belongs to missing tenant '{}'", vm.tenant)))?;
    let mut changes = vec![Change::PutTenant(quota::release(tenant, compute(vm.vcpus, vm.memory_mib), ctx))];
    for volume_id in &vm.volumes {
        if let Some(volume) = model.volumes.get(volume_id).filter(|v| v.attached_to.as_deref() == Some(id)) {
            let mut detached = volume.clone();
            detached.attached_to = None;
            detached.revision = ctx.index;
            changes.push(Change::PutVolume(detached));
        }
    }
    changes.push(Change::DeleteVm(id.to_string()));
    // The host's feed drops the VM; its volumes stay bound to the host until they are deleted.
    changes.extend(touch(model, ctx, vm.host.as_deref()));
    Ok(Outcome::new(Applied::Deleted, changes))
}
