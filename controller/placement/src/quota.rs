//! The tenant quota check, made once per request before any host is looked at.
//!
//! It exists because a quota is a property of the tenant, not of a host: a request over quota is
//! refused whatever the hosts offer. A move (the VM already placed) is charged only for what it
//! adds beyond what it already holds, so moving a VM never trips a quota it already fits.

use crate::filter::Prepared;
use crate::model::{PlacementRequest, Resources};
use crate::nofit::{NoFit, QuotaResource};
use crate::policy::Policy;
use crate::view::ClusterView;

/// The request checked against its tenant's quota and made ready for the filters.
pub(crate) fn prepare<'a>(
    view: &'a ClusterView,
    request: &'a PlacementRequest,
    policy: &Policy,
) -> Result<Prepared<'a>, NoFit> {
    let account = view
        .tenants
        .get(&request.tenant)
        .ok_or_else(|| NoFit::UnknownTenant { vm: request.vm.clone(), tenant: request.tenant.clone() })?;
    let placed = view.placed.get(&request.vm);
    let held = placed
        .filter(|placed| placed.request.tenant == request.tenant)
        .map(|placed| placed.request.footprint())
        .unwrap_or_default();
    let others = account.used.saturating_sub(held);
    check(request, others, account.used, account.limit)?;
    Ok(Prepared::new(request, placed.map(|placed| placed.host.as_str()), policy.cap_percent()))
}

/// Refuses when the tenant's usage after the request would exceed its limit and grow; `others` is
/// what the tenant holds without this VM, `used` what it holds now.
fn check(request: &PlacementRequest, others: Resources, used: Resources, limit: Resources) -> Result<(), NoFit> {
    let wanted = request.footprint();
    let dimensions = [
        (QuotaResource::Vcpus, others.vcpus, wanted.vcpus, used.vcpus, limit.vcpus),
        (QuotaResource::MemoryMib, others.memory_mib, wanted.memory_mib, used.memory_mib, limit.memory_mib),
        (QuotaResource::DiskBytes, others.disk_bytes, wanted.disk_bytes, used.disk_bytes, limit.disk_bytes),
    ];
    for (resource, others, requested, used, limit) in dimensions {
        let after = others.saturating_add(requested);
        if after > limit && after > used {
            return Err(NoFit::OverQuota {
                vm: request.vm.clone(),
                tenant: request.tenant.clone(),
                resource,
                used: others,
                requested,
                limit,
            });
        }
    }
    Ok(())
}
