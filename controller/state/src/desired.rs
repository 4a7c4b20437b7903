//! Each host's desired state (`HostDesired`) as the model implies it, and its generation.
//!
//! It exists so the per-host feed is a pure function of the replicated state: the VMs placed on the
//! host and the volumes bound to it, at the host's `desired_generation`, which is the revision of the
//! last command that changed anything of that host (every member computes the same). Handlers that
//! change a host's VMs or volumes add [`touch`]'s change to their outcome.

use hci_shared::agent::{HostDesired, ImageFormat, ImageRef, NicDesired, VmDesired, VolumeDesired, VolumeSource};
use hci_shared::resources::{DiskFormat, Vm, Volume};

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
    /// The desired state of host `id` at its current generation: its placed VMs (by id) and the
    /// volumes bound to it (by id). `None` for an unknown host.
    pub fn host_desired(&self, id: &str) -> Option<HostDesired> {
        let host = self.hosts.get(id)?;
        let vms = match self.placement.0.host(id) {
            Some(placed) => {
                placed.vms().iter().filter_map(|vm| self.vms.get(vm)).map(|vm| vm_desired(self, vm)).collect()
            }
            None => Vec::new(),
        };
        let volumes =
            self.volumes.values().filter(|v| v.host.as_deref() == Some(id)).map(volume_desired).collect::<Vec<_>>();
        Some(HostDesired {
            host_id: host.id.clone(),
            generation: host.desired_generation,
            volumes,
            vms,
            retired_volumes: Vec::new(),
        })
    }
}
