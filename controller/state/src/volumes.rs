//! Volume commands: create, delete, resize (grow only), snapshot and clone.
//!
//! It exists to keep block storage within each tenant's disk quota and names unique within a
//! tenant. It must never delete or shrink a volume a VM is using: deletion waits for detachment and
//! shrinking is refused outright.

use hci_shared::api::{VolumeClone, VolumeCreate, VolumeResize, VolumeSnapshotCreate};
use hci_shared::command::Applied;
use hci_shared::resources::{Tenant, Usage, Volume, VolumeSnapshot};
use hci_shared::{validate, ApiError};

use crate::apply::{check_id, check_if_match, Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;
use crate::quota;

fn disk(gib: u64) -> Usage {
    Usage { disk_gib: gib, ..Usage::default() }
}

fn existing<'m>(model: &'m Model, id: &str) -> Result<&'m Volume, ApiError> {
    model.volumes.get(id).ok_or_else(|| ApiError::not_found("volume", id))
}

/// The volume's owner; a volume without one is a broken model, not bad input.
fn owner<'m>(model: &'m Model, volume: &Volume) -> Result<&'m Tenant, ApiError> {
    model.tenants.get(&volume.tenant).ok_or_else(|| {
        ApiError::internal(format!("volume '{}' belongs to missing tenant '{}'", volume.id, volume.tenant))
    })
}

/// A new volume id that is free, and a name free within the tenant.
fn check_new(model: &Model, id: &str, tenant: &str, name: &str) -> Result<(), ApiError> {
    if model.volumes.contains_key(id) {
        return Err(ApiError::conflict(format!("volume id '{id}' already exists")));
    }
    if let Some(other) = model.volume_id_by_name(tenant, name) {
        return Err(ApiError::conflict(format!("volume '{name}' already exists in tenant '{tenant}' (id {other})")));
    }
    Ok(())
}

pub(crate) fn create(model: &Model, ctx: &Ctx<'_>, id: &str, spec: &VolumeCreate) -> Decision {
    check_id("id", id)?;
    validate::volume_create(spec)?;
    let tenant = model
        .tenants
        .get(&spec.tenant)
        .ok_or_else(|| ApiError::invalid("tenant", format!("tenant '{}' does not exist", spec.tenant)))?;
    check_new(model, id, &spec.tenant, &spec.name)?;
    if let Some(image) = &spec.image {
        return Err(ApiError::invalid("image", format!("image '{image}' does not exist")));
    }
    let charged = quota::charge(tenant, disk(spec.size_gib), ctx)?;
    let volume = Volume {
        id: id.to_string(),
        name: spec.name.clone(),
        tenant: spec.tenant.clone(),
        size_gib: spec.size_gib,
        pool: spec.pool.clone(),
        image: None,
        cloned_from: None,
        attached_to: None,
        source: spec.source.clone(),
        host: None,
        snapshots: Vec::new(),
        created_at: ctx.at.to_string(),
        revision: ctx.index,
    };
    Ok(Outcome::new(Applied::Volume(volume.clone()), vec![Change::PutTenant(charged), Change::PutVolume(volume)]))
}

pub(crate) fn delete(model: &Model, ctx: &Ctx<'_>, id: &str, if_match: Option<u64>) -> Decision {
    let volume = existing(model, id)?;
    check_if_match(if_match, volume.revision)?;
    if let Some(vm_id) = &volume.attached_to {
        let vm_name = model.vms.get(vm_id).map(|vm| vm.name.as_str()).unwrap_or("?");
        return Err(ApiError::conflict(format!(
            "volume '{}' is attached to vm '{vm_name}' ({vm_id}); delete the vm first",
            volume.name
        )));
    }
    let released = quota::release(owner(model, volume)?, disk(volume.size_gib), ctx);
    let mut changes = vec![Change::PutTenant(released), Change::DeleteVolume(id.to_string())];
    changes.extend(crate::retired::retire(model, volume));
    changes.extend(touch(model, ctx, volume.host.as_deref()));
    Ok(Outcome::new(Applied::Deleted, changes))
}

pub(crate) fn resize(
    model: &Model,
    ctx: &Ctx<'_>,
    id: &str,
    size_gib: u64,
    if_match: Option<u64>,
    cap_percent: u8,
) -> Decision {
    let volume = existing(model, id)?;
    check_if_match(if_match, volume.revision)?;
    validate::volume_resize(&VolumeResize { size_gib })?;
    if size_gib < volume.size_gib {
        return Err(ApiError::invalid(
            "size_gib",
            format!(
                "shrinking volume '{}' from {} to {size_gib} GiB is refused; volumes only grow",
                volume.name, volume.size_gib
            ),
        ));
    }
    if size_gib == volume.size_gib {
        return Ok(Outcome::new(Applied::Volume(volume.clone()), Vec::new()));
    }
    let charged = quota::charge(owner(model, volume)?, disk(size_gib - volume.size_gib), ctx)?;
    model.check_growth(volume, (size_gib - volume.size_gib).saturating_mul(1 << 30), cap_percent)?;
    let mut grown = volume.clone();
    grown.size_gib = size_gib;
    grown.revision = ctx.index;
    let mut changes = vec![Change::PutTenant(charged), Change::PutVolume(grown.clone())];
    changes.extend(touch(model, ctx, grown.host.as_deref()));
    Ok(Outcome::new(Applied::Volume(grown), changes))
}

pub(crate) fn snapshot(model: &Model, ctx: &Ctx<'_>, id: &str, name: &str) -> Decision {
    let volume = existing(model, id)?;
    validate::volume_snapshot(&VolumeSnapshotCreate { name: name.to_string() })?;
    if volume.snapshots.iter().any(|s| s.name == name) {
        return Err(ApiError::conflict(format!("volume '{}' already has a snapshot '{name}'", volume.name)));
    }
    let mut snapshotted = volume.clone();
    snapshotted.snapshots.push(VolumeSnapshot { name: name.to_string(), created_at: ctx.at.to_string() });
    snapshotted.revision = ctx.index;
    let mut changes = vec![Change::PutVolume(snapshotted.clone())];
    changes.extend(touch(model, ctx, snapshotted.host.as_deref()));
    Ok(Outcome::new(Applied::Volume(snapshotted), changes))
}

pub(crate) fn clone(model: &Model, ctx: &Ctx<'_>, id: &str, new_id: &str, name: &str, cap_percent: u8) -> Decision {
    let source = existing(model, id)?;
    check_id("new_id", new_id)?;
    validate::volume_clone(&VolumeClone { name: name.to_string() })?;
    check_new(model, new_id, &source.tenant, name)?;
    let charged = quota::charge(owner(model, source)?, disk(source.size_gib), ctx)?;
    // The copy is made next to its source: the same pool of the same host.
    model.check_growth(source, source.size_gib.saturating_mul(1 << 30), cap_percent)?;
    let copy = Volume {
        id: new_id.to_string(),
        name: name.to_string(),
        tenant: source.tenant.clone(),
        size_gib: source.size_gib,
        pool: source.pool.clone(),
        image: source.image.clone(),
        cloned_from: Some(source.id.clone()),
        attached_to: None,
        source: source.source.clone(),
        // A clone is made from its source on the source's host, and stays there.
        host: source.host.clone(),
        snapshots: Vec::new(),
        created_at: ctx.at.to_string(),
        revision: ctx.index,
    };
    let mut changes = vec![Change::PutTenant(charged), Change::PutVolume(copy.clone())];
    changes.extend(touch(model, ctx, copy.host.as_deref()));
    Ok(Outcome::new(Applied::Volume(copy), changes))
}
