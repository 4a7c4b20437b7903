//! Charging and releasing a tenant's usage against its quota.
//!
//! It exists so every command that allocates vcpus, memory or disk applies the same rule and the
//! same refusal message. It must never let usage exceed quota, and never change usage except by
//! the exact amount a resource holds.

use hci_shared::resources::{Tenant, Usage};
use hci_shared::ApiError;

use crate::apply::Ctx;

/// `used + requested`, or a 409 no_capacity naming the dimension and the numbers.
fn add_within(tenant: &str, dimension: &str, used: u64, requested: u64, quota: u64) -> Result<u64, ApiError> {
    match used.checked_add(requested) {
        Some(total) if requested == 0 || total <= quota => Ok(total),
        _ => Err(ApiError::no_capacity(format!(
            "tenant '{tenant}' quota {dimension} exceeded: {used} in use + {requested} requested > {quota} allowed"
        ))),
    }
}

/// The tenant with `demand` added to its usage (revision bumped), or a refusal if over quota.
pub(crate) fn charge(tenant: &Tenant, demand: Usage, ctx: &Ctx<'_>) -> Result<Tenant, ApiError> {
    let (name, used, quota) = (&tenant.name, tenant.usage, tenant.quota);
    let vcpus = add_within(name, "vcpus", used.vcpus.into(), demand.vcpus.into(), quota.vcpus.into())?;
    let memory_mib = add_within(name, "memory_mib", used.memory_mib, demand.memory_mib, quota.memory_mib)?;
    let disk_gib = add_within(name, "disk_gib", used.disk_gib, demand.disk_gib, quota.disk_gib)?;
    let vcpus = u32::try_from(vcpus)
        .map_err(|_| ApiError::no_capacity(format!("tenant '{name}' quota vcpus exceeded: {vcpus} does not fit")))?;
    let mut charged = tenant.clone();
    charged.usage = Usage { vcpus, memory_mib, disk_gib };
    charged.revision = ctx.index;
    Ok(charged)
}

/// The tenant with `freed` returned from its usage (revision bumped).
pub(crate) fn release(tenant: &Tenant, freed: Usage, ctx: &Ctx<'_>) -> Tenant {
    let mut released = tenant.clone();
    released.usage = Usage {
        vcpus: tenant.usage.vcpus.saturating_sub(freed.vcpus),
        memory_mib: tenant.usage.memory_mib.saturating_sub(freed.memory_mib),
        disk_gib: tenant.usage.disk_gib.saturating_sub(freed.disk_gib),
    };
    released.revision = ctx.index;
    released
}

/// A 409 when a new quota is below what the tenant already uses, naming the dimension.
pub(crate) fn check_lowered(tenant: &Tenant, quota: hci_shared::resources::Quota) -> Result<(), ApiError> {
    let used = tenant.usage;
    let dimensions = [
        ("vcpus", u64::from(quota.vcpus), u64::from(used.vcpus)),
        ("memory_mib", quota.memory_mib, used.memory_mib),
        ("disk_gib", quota.disk_gib, used.disk_gib),
    ];
    for (dimension, new, in_use) in dimensions {
        if new < in_use {
            return Err(ApiError::no_capacity(format!(
                "quota.{dimension} {new} is below the {in_use} tenant '{}' already uses",
                tenant.name
            )));
        }
    }
    Ok(())
}
