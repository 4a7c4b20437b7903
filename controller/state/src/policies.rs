//! Zone policy commands: allow a flow from one zone to another, or stop allowing it.
//!
//! It exists to keep policies meaningful: both zones exist, neither is isolated, names are unique
//! and no flow is allowed twice. It must never touch zones or VMs; enforcement is the agent's job.

use hci_shared::api::ZonePolicyCreate;
use hci_shared::command::Applied;
use hci_shared::resources::{ZoneKind, ZonePolicy};
use hci_shared::{validate, ApiError};

use crate::apply::{check_id, check_if_match, Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;

/// A zone a policy may name: it exists and is not isolated.
fn check_zone(model: &Model, field: &str, name: &str) -> Result<(), ApiError> {
    let zone =
        model.zones.get(name).ok_or_else(|| ApiError::invalid(field, format!("zone '{name}' does not exist")))?;
    if zone.kind == ZoneKind::Isolated {
        return Err(ApiError::invalid(field, format!("zone {name} is isolated; no policy may name it")));
    }
    Ok(())
}

pub(crate) fn create(model: &Model, ctx: &Ctx<'_>, id: &str, spec: &ZonePolicyCreate) -> Decision {
    check_id("id", id)?;
    let ports = validate::zone_policy_create(spec)?;
    if model.policies.contains_key(id) {
        return Err(ApiError::conflict(format!("zone policy id '{id}' already exists")));
    }
    check_zone(model, "from_zone", &spec.from_zone)?;
    check_zone(model, "to_zone", &spec.to_zone)?;
    let name = spec.name.clone().unwrap_or_else(|| id.to_string());
    if let Some(other) = model.index.policy_names.get(&name) {
        return Err(ApiError::conflict(format!("zone policy name '{name}' is already used by policy {other}")));
    }
    let same_flow = model.policies.values().find(|p| {
        p.from_zone == spec.from_zone && p.to_zone == spec.to_zone && p.protocol == spec.protocol && p.ports == ports
    });
    if let Some(other) = same_flow {
        return Err(ApiError::conflict(format!(
            "zone policy '{}' ({}) already allows this flow",
            other.name, other.id
        )));
    }
    let policy = ZonePolicy {
        id: id.to_string(),
        name,
        from_zone: spec.from_zone.clone(),
        to_zone: spec.to_zone.clone(),
        protocol: spec.protocol,
        ports,
        action: spec.action,
        created_at: ctx.at.to_string(),
        revision: ctx.index,
    };
    // Every host enforces every policy (the firewall of the source's and of the destination's host).
    let mut changes = touch(model, ctx, model.hosts.keys().map(String::as_str));
    changes.push(Change::PutPolicy(policy.clone()));
    Ok(Outcome::new(Applied::ZonePolicy(policy), changes))
}

pub(crate) fn delete(model: &Model, ctx: &Ctx<'_>, id: &str, if_match: Option<u64>) -> Decision {
    let policy = model.policies.get(id).ok_or_else(|| ApiError::not_found("zone policy", id))?;
    check_if_match(if_match, policy.revision)?;
    let mut changes = touch(model, ctx, model.hosts.keys().map(String::as_str));
    changes.push(Change::DeletePolicy(id.to_string()));
    Ok(Outcome::new(Applied::Deleted, changes))
}
