//! Each host's desired state (`HostDesired`) as the model implies it, and its generation.
//!
//! It exists so the per-host feed is a pure function of the replicated state: the VMs placed on the
//! host and the volumes bound to it, at the host's `desired_generation`, which is the revision of the
//! last command that changed anything of that host (every member computes the same). Handlers that
//! change a host's VMs or volumes add [`touch`]'s change to their outcome.
//!
//! The feed also carries the host's self-fencing instructions ([`Isolation`]): which of its VMs HA
//! would restart elsewhere (what its agent must power off once cut off), and its peers (the other
//! hosts of the site, fenced ones left out). Every command that changes either touches the hosts
//! concerned: a VM placed, started, stopped or moved touches its host; a host joining (or its
//! agent URL changing) touches every other host of the site; fencing and unfencing a host touch the
//! other hosts of its site. The only input that is not in the model is `fence_after_ms`, derived
//! from `--host-lease-ms`, which every member of a cluster must run with the same value.

use hci_shared::agent::{
    FabricHost, HostDesired, HostNetwork, ImageFormat, ImageRef, Isolation, NetworkPolicy, NetworkZone, NicDesired,
    PeerAgent, VmDesired, VmMigration, VolumeDesired, VolumeSource,
};
use hci_shared::names::parse_cidr;
use hci_shared::resources::{DiskFormat, IntraZone, Vm, Volume, VolumeImport, ZoneKind};

use crate::apply::Ctx;
use crate::change::Change;
use crate::model::Model;

/// The host records of `hosts` with their desired generation moved to this entry (each once).
pub(crate) fn touch<'a>(model: &Model, ctx: &Ctx<'_>, hosts: impl IntoIterator<Item = &'a str>) -> Vec<Change> {
    let mut ids: Vec<&str> = hosts.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| model.hosts.get(id))
        .map(|host| {
            let mut touched = host.clone();
            touched.desired_generation = ctx.index;
            touched.revision = ctx.index;
            Change::PutHost(touched)
        })
        .collect()
}

/// A volume a cold move imports: the source's verified export.
fn imported(import: &VolumeImport) -> VolumeSource {
    VolumeSource::Image(ImageRef {
        name: format!("import-{}-{}", import.volume, import.sha256.get(..12).unwrap_or(&import.sha256)),
        source: import.url.clone(),
        format: ImageFormat::Qcow2,
        sha256: import.sha256.clone(),
    })
}

fn volume_desired(volume: &Volume) -> VolumeDesired {
    let source = match (&volume.cloned_from, &volume.source) {
        (Some(from), _) => VolumeSource::Clone { from: from.clone(), snapshot: None },
        (None, Some(image)) => VolumeSource::Image(ImageRef {
            // A DNS label the agent's image store keys by: the same image always has the same name.
            name: format!("img-{}", image.sha256.get(..16).unwrap_or(&image.sha256)),
            source: image.url.clone(),
            format: match image.format {
                DiskFormat::Qcow2 => ImageFormat::Qcow2,
                DiskFormat::Raw => ImageFormat::Raw,
            },
            sha256: image.sha256.clone(),
        }),
        (None, None) => VolumeSource::Empty,
    };
    VolumeDesired {
        id: volume.id.clone(),
        pool: volume.pool.clone(),
        size_gib: volume.size_gib,
        source,
        snapshots: volume.snapshots.iter().map(|s| s.name.clone()).collect(),
        rollback: None,
    }
}

/// The VM as host `host` should hold it: a move's source sends it away (live) or lets go of it
/// (cold, `None`); the target waits for it (live) or defines it (cold).
fn vm_desired_on(model: &Model, vm: &Vm, host: &str) -> Option<VmDesired> {
    let mut desired = vm_desired(model, vm);
    match &vm.migration {
        Some(moving) if moving.from_host == host => {
            if !moving.live {
                return None;
            }
            let to_host = vm.host.clone()?;
            let to_agent = model.hosts.get(&to_host).map(|h| h.agent_url.clone()).unwrap_or_default();
            desired.migration = Some(VmMigration::Outgoing { to_host, to_agent });
        }
        Some(moving) if moving.live => {
            desired.migration = Some(VmMigration::Incoming { from_host: moving.from_host.clone() })
        }
        _ => {}
    }
    Some(desired)
}

fn vm_desired(model: &Model, vm: &Vm) -> VmDesired {
    VmDesired {
        id: vm.id.clone(),
        name: vm.name.clone(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        arch: vm.arch.clone(),
        firmware: vm.firmware.clone(),
        disks: vm.volumes.iter().filter(|id| model.volumes.contains_key(*id)).cloned().collect(),
        nics: vm
            .nics
            .iter()
            .map(|nic| NicDesired { mac: nic.mac.clone(), zone: nic.zone.clone(), ip: nic.ip.clone() })
            .collect(),
        power: vm.power,
        reboot_count: vm.reboot_count,
        oem_strings: Vec::new(),
        migration: None,
        snapshots: Vec::new(),
        revert: None,
    }
}

impl Model {
    /// The feed of host `id` as agents get it: [`Model::host_desired`] with its [`Isolation`]
    /// (`fence_after_ms`, below the host lease: see the controller's `Config::fence_after_ms`).
    pub fn host_desired_isolated(&self, id: &str, fence_after_ms: u64) -> Option<HostDesired> {
        let mut desired = self.host_desired(id)?;
        desired.isolation = self.isolation(id, fence_after_ms);
        Some(desired)
    }

    /// What host `id` does when cut off from the controllers: power off the VMs HA would restart
    /// elsewhere, once no heartbeat has been acknowledged for `fence_after_ms` and its peers do not
    /// all say the controllers are gone too.
    pub fn isolation(&self, id: &str, fence_after_ms: u64) -> Option<Isolation> {
        let host = self.hosts.get(id)?;
        let peers = self
            .isolation_peers(host)
            .map(|peer| PeerAgent { host_id: peer.id.clone(), agent_url: peer.agent_url.clone() })
            .collect();
        Some(Isolation { fence_after_ms, fence_vms: self.fence_vms(id), peers })
    }

    /// The desired state of host `id` at its current generation: its placed VMs (by id) and the
    /// volumes bound to it (by id), without isolation instructions. `None` for an unknown host.
    pub fn host_desired(&self, id: &str) -> Option<HostDesired> {
        let host = self.hosts.get(id)?;
        // Placed here, or leaving (the view books a moving VM on both hosts).
        let here: Vec<&Vm> = match self.placement.0.host(id) {
            Some(placed) => placed.vms().iter().filter_map(|vm| self.vms.get(vm)).collect(),
            None => Vec::new(),
        };
        let vms = here.iter().filter_map(|vm| vm_desired_on(self, vm, id)).collect();
        let leaving = |volume: &Volume| {
            let vm = volume.attached_to.as_deref().and_then(|vm| self.vms.get(vm));
            vm.and_then(|vm| vm.migration.as_ref()).is_some_and(|moving| moving.from_host == id)
        };
        let import_of = |volume: &Volume| {
            let vm = volume.attached_to.as_deref().and_then(|vm| self.vms.get(vm))?;
            let moving = vm.migration.as_ref()?;
            moving.imports.iter().find(|import| import.volume == volume.id)
        };
        let volumes = self
            .volumes
            .values()
            .filter(|v| v.host.as_deref() == Some(id) || leaving(v))
            .map(|volume| {
                let mut desired = volume_desired(volume);
                if volume.host.as_deref() == Some(id) {
                    if let Some(import) = import_of(volume) {
                        desired.source = imported(import);
                    }
                }
                desired
            })
            .collect::<Vec<_>>();
        Some(HostDesired {
            host_id: host.id.clone(),
            generation: host.desired_generation,
            volumes,
            vms,
            retired_volumes: self.retired_on(id),
            isolation: None,
            network: Some(self.host_network(&host.site)),
        })
    }

    /// The zone networks every host of `site` carries: all zones (each on its VXLAN or VLAN; those
    /// with neither, from before VNIs were assigned, are left out) and policies, and the hosts of the site that reported an
    /// underlay address. Zone and policy commands touch every host; a join that changes a host's
    /// underlay address touches the others of its site.
    pub fn host_network(&self, site: &str) -> HostNetwork {
        let zones = self
            .zones
            .values()
            .filter_map(|zone| {
                let cidr = parse_cidr(&zone.cidr).ok()?;
                let (isolated, deny_intra) = (zone.kind == ZoneKind::Isolated, zone.intra_zone == IntraZone::Deny);
                let vxlan = |vni| NetworkZone::new(&zone.name, cidr, vni, isolated, deny_intra);
                let carried = match (zone.vni, zone.vlan) {
                    (_, Some(vlan)) => vxlan(0).on_vlan(vlan),
                    (Some(vni), None) => vxlan(vni),
                    (None, None) => return None,
                };
                Some(NetworkZone { mtu: zone.mtu, ..carried })
            })
            .collect::<Vec<_>>();
        let zoned = |name: &str| self.zones.get(name).is_some_and(|z| z.vni.is_some() || z.vlan.is_some());
        let policies = self
            .policies
            .values()
            .filter(|p| zoned(&p.from_zone) && zoned(&p.to_zone))
            .map(|p| NetworkPolicy {
                name: p.name.clone(),
                from_zone: p.from_zone.clone(),
                to_zone: p.to_zone.clone(),
                protocol: p.protocol,
                ports: p.ports.clone(),
            })
            .collect();
        let fabric = self
            .hosts
            .values()
            .filter(|h| h.site == site)
            .filter_map(|h| {
                let underlay_ip = h.inventory.underlay_ip.clone()?;
                Some(FabricHost { host_id: h.id.clone(), underlay_ip })
            })
            .collect();
        HostNetwork { zones, policies, fabric }
    }
}
