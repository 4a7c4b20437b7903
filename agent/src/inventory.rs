//! The host's inventory (`hci-agent host-info`, `GET /agent/v1/host-info`): what the controller
//! places against. Read from libvirt and the pools; changes nothing.

use hci_shared::agent::{HostInfo, PoolInfo};

use crate::hypervisor::HypervisorError;
use crate::reconciler::HostResources;

pub fn host_info(res: &HostResources, site: &str) -> Result<HostInfo, HypervisorError> {
    let caps = res.hypervisor.capabilities()?;
    let pools = res
        .pools
        .iter()
        .map(|(name, backend)| {
            let usage = backend.usage().unwrap_or_default();
            PoolInfo {
                name: name.clone(),
                backend: backend.kind().to_string(),
                capacity_bytes: usage.capacity_bytes,
                allocation_bytes: usage.allocation_bytes,
                available_bytes: usage.available_bytes,
            }
        })
        .collect();
    Ok(HostInfo {
        host_id: res.host_id.clone(),
        site: site.to_string(),
        arch: caps.arch,
        cpus: caps.cpus,
        memory_mib: caps.memory_mib,
        accelerator: caps.accelerator,
        libvirt_version: caps.libvirt_version,
        pools,
        firmware_profiles: res.profiles.runnable_on(&caps.firmware),
        underlay_ip: res.network.as_ref().and_then(|n| n.fabric.underlay).map(|ip| ip.to_string()),
        zone_networks: res.network.is_some(),
        vlan_trunk: res.network.as_ref().and_then(|n| n.fabric.vlan_trunk.clone()),
    })
}
