//! Zone commands: create and delete security zones (a tenant's IPv4 network).
//!
//! It exists to keep the address plan sound: zone names unique, CIDRs never overlapping, VNIs
//! and VLANs never shared, and no zone removed while a NIC or a policy still refers to it. It must never
//! assign addresses itself; that is `ipam`'s job at VM creation.

use hci_shared::api::ZoneCreate;
use hci_shared::command::Applied;
use hci_shared::names::parse_cidr;
use hci_shared::resources::Zone;
use hci_shared::{validate, ApiError};

use crate::apply::{check_id, check_if_match, Ctx, Decision, Outcome};
use crate::change::Change;
use crate::desired::touch;
use crate::model::Model;

pub(crate) fn create(model: &Model, ctx: &Ctx<'_>, id: &str, spec: &ZoneCreate) -> Decision {
    check_id("id", id)?;
    validate::zone_create(spec)?;
    if !model.tenants.contains_key(&spec.tenant) {
        return Err(ApiError::invalid("tenant", format!("tenant '{}' does not exist", spec.tenant)));
    }
    if model.zones.contains_key(&spec.name) {
        return Err(ApiError::conflict(format!("zone '{}' already exists", spec.name)));
    }
    if let Some(other) = model.zones.values().find(|z| z.id == id) {
        return Err(ApiError::conflict(format!("zone id '{id}' is already used by zone '{}'", other.name)));
    }
    let cidr = parse_cidr(&spec.cidr).map_err(|why| ApiError::invalid("cidr", why))?;
    for other in model.zones.values() {
        let overlaps = match parse_cidr(&other.cidr) {
            Ok(other_cidr) => cidr.overlaps(other_cidr),
            Err(_) => false,
        };
        if overlaps {
            return Err(ApiError::conflict(format!("cidr {cidr} overlaps zone '{}' ({})", other.name, other.cidr)));
        }
    }
    let vni = match (spec.vni, spec.vlan) {
        (Some(vni), _) => {
            if let Some(other) = model.zones.values().find(|z| z.vni == Some(vni)) {
                return Err(ApiError::conflict(format!("vni {vni} is already used by zone '{}'", other.name)));
            }
            Some(vni)
        }
        (None, Some(vlan)) => {
            if let Some(other) = model.zones.values().find(|z| z.vlan == Some(vlan)) {
                return Err(ApiError::conflict(format!("vlan {vlan} is already used by zone '{}'", other.name)));
            }
            None
        }
        (None, None) => Some(next_free_vni(model)?),
    };
    let zone = Zone {
        id: id.to_string(),
        name: spec.name.clone(),
        tenant: spec.tenant.clone(),
        kind: spec.kind,
        cidr: cidr.to_string(),
        vni,
        vlan: spec.vlan,
        mtu: spec.mtu,
        intra_zone: spec.intra_zone,
        created_at: ctx.at.to_string(),
        revision: ctx.index,
    };
    // Every host's feed carries every zone (its VXLAN device, the firewall's sets and chains).
    let mut changes = touch(model, ctx, model.hosts.keys().map(String::as_str));
    changes.push(Change::PutZone(zone.clone()));
    Ok(Outcome::new(Applied::Zone(zone), changes))
}

/// The first VNI assigned when the operator names none.
pub const FIRST_AUTO_VNI: u32 = 10_000;

/// The lowest VNI from [`FIRST_AUTO_VNI`] that no zone uses (deterministic: from the model alone).
fn next_free_vni(model: &Model) -> Result<u32, ApiError> {
    let used: std::collections::BTreeSet<u32> = model.zones.values().filter_map(|z| z.vni).collect();
    (FIRST_AUTO_VNI..=hci_shared::validate::MAX_VNI)
        .find(|vni| !used.contains(vni))
        .ok_or_else(|| ApiError::no_capacity("every VNI from 10000 is in use"))
}

pub(crate) fn delete(model: &Model, ctx: &Ctx<'_>, name: &str, if_match: Option<u64>) -> Decision {
    let zone = model.zones.get(name).ok_or_else(|| ApiError::not_found("zone", name))?;
    check_if_match(if_match, zone.revision)?;
    let mut users: Vec<String> = Vec::new();
    for vm_id in model.index.vms_in_zone(name) {
        let vm_name = model.vms.get(vm_id).map(|vm| vm.name.as_str()).unwrap_or("?");
        users.push(format!("vm '{vm_name}' ({vm_id})"));
    }
    for policy in model.policies.values().filter(|p| p.from_zone == name || p.to_zone == name) {
        users.push(format!("zone policy '{}' ({})", policy.name, policy.id));
    }
    if !users.is_empty() {
        return Err(ApiError::conflict(format!("zone '{name}' is still used by {}", users.join(", "))));
    }
    let mut changes = touch(model, ctx, model.hosts.keys().map(String::as_str));
    changes.push(Change::DeleteZone(name.to_string()));
    Ok(Outcome::new(Applied::Deleted, changes))
}
