//! Tenant commands: create, update (description, quota), delete.
//!
//! It exists to keep the rules about departments in one place: unique names, quotas never below
//! usage, no deletion while anything is still owned. It must never change usage itself: usage
//! follows volumes and VMs (see `quota`).

use hci_shared::api::{TenantCreate, TenantUpdate};
use hci_shared::command::Applied;
use hci_shared::resources::{Tenant, Usage};
use hci_shared::{validate, ApiError};

use crate::apply::{check_id, check_if_match, Ctx, Decision, Outcome};
use crate::change::Change;
use crate::model::Model;
use crate::quota;

/// At most this many owned resources are named in a refusal.
const LISTED_AT_MOST: usize = 10;

pub(crate) fn create(model: &Model, ctx: &Ctx<'_>, id: &str, spec: &TenantCreate) -> Decision {
    check_id("id", id)?;
    validate::tenant_create(spec)?;
    if model.tenants.contains_key(&spec.name) {
        return Err(ApiError::conflict(format!("tenant '{}' already exists", spec.name)));
    }
    if let Some(other) = model.tenants.values().find(|t| t.id == id) {
        return Err(ApiError::conflict(format!("tenant id '{id}' is already used by tenant '{}'", other.name)));
    }
    let tenant = Tenant {
        id: id.to_string(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        quota: spec.quota,
        usage: Usage::default(),
        created_at: ctx.at.to_string(),
        revision: ctx.index,
    };
    Ok(Outcome::new(Applied::Tenant(tenant.clone()), vec![Change::PutTenant(tenant)]))
}

pub(crate) fn update(
    model: &Model,
    ctx: &Ctx<'_>,
    name: &str,
    update: &TenantUpdate,
    if_match: Option<u64>,
) -> Decision {
    let current = model.tenants.get(name).ok_or_else(|| ApiError::not_found("tenant", name))?;
    check_if_match(if_match, current.revision)?;
    validate::tenant_update(update)?;
    let mut tenant = current.clone();
    if let Some(description) = &update.description {
        tenant.description = description.clone();
    }
    if let Some(new_quota) = update.quota {
        quota::check_lowered(current, new_quota)?;
        tenant.quota = new_quota;
    }
    if tenant == *current {
        return Ok(Outcome::new(Applied::Tenant(tenant), Vec::new()));
    }
    tenant.revision = ctx.index;
    Ok(Outcome::new(Applied::Tenant(tenant.clone()), vec![Change::PutTenant(tenant)]))
}

/// "zone 'a', volume 'b' (v-1), ... and 3 more".
fn list_owned(owned: &[String]) -> String {
    let shown: Vec<&str> = owned.iter().take(LISTED_AT_MOST).map(String::as_str).collect();
    let mut text = shown.join(", ");
    if owned.len() > LISTED_AT_MOST {
        text.push_str(&format!(" and {} more", owned.len() - LISTED_AT_MOST));
    }
    text
}

pub(crate) fn delete(model: &Model, name: &str, if_match: Option<u64>) -> Decision {
    let tenant = model.tenants.get(name).ok_or_else(|| ApiError::not_found("tenant", name))?;
    check_if_match(if_match, tenant.revision)?;
    let mut owned: Vec<String> = Vec::new();
    owned.extend(model.zones.values().filter(|z| z.tenant == name).map(|z| format!("zone '{}'", z.name)));
    for id in model.index.volumes_of(name) {
        let volume_name = model.volumes.get(id).map(|v| v.name.as_str()).unwrap_or("?");
        owned.push(format!("volume '{volume_name}' ({id})"));
    }
    for id in model.index.vms_of(name) {
        let vm_name = model.vms.get(id).map(|vm| vm.name.as_str()).unwrap_or("?");
        owned.push(format!("vm '{vm_name}' ({id})"));
    }
    if !owned.is_empty() {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' still owns {}; delete them first",
            list_owned(&owned)
        )));
    }
    Ok(Outcome::new(Applied::Deleted, vec![Change::DeleteTenant(name.to_string())]))
}
