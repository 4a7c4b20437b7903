//! Turns one desired VM into the [`DomainSpec`] the hypervisor defines: domain name, firmware profile
//! (refused here, before anything is created, when this host cannot run it), disks, NICs, per-VM
//! file paths.

use std::collections::BTreeMap;

use hci_shared::agent::VmDesired;
use sha2::{Digest, Sha256};

use super::HostResources;
use crate::hypervisor::{DiskSpec, DomainSpec, NicSpec};
use crate::volumes::VolumeInfo;

/// `hci-<host id>-<vm id>`: unique on the hypervisor and names its owner.
pub fn domain_name(host_id: &str, vm_id: &str) -> String {
    format!("hci-{host_id}-{vm_id}")
}

/// A host-side tap name (at most 15 characters) derived from the VM and NIC index.
fn tap_name(vm_id: &str, index: usize) -> String {
    let digest = hex::encode(Sha256::digest(format!("{vm_id}/{index}").as_bytes()));
    format!("hci{}", &digest[..11])
}

pub fn build(
    res: &HostResources,
    generation: u64,
    vm: &VmDesired,
    volumes: &BTreeMap<String, VolumeInfo>,
) -> Result<DomainSpec, String> {
    let profile = res
        .profiles
        .get(&vm.firmware)
        .ok_or_else(|| format!("firmware profile '{}' is not known to this agent", vm.firmware))?;
    if profile.arch != vm.arch {
        return Err(format!("firmware profile '{}' is for {}, the VM is {}", profile.name, profile.arch, vm.arch));
    }
    res.firmware.check(profile).map_err(|e| e.to_string())?;
    if vm.disks.len() > 26 {
        return Err(format!("{} disks; at most 26", vm.disks.len()));
    }
    let disks = vm
        .disks
        .iter()
        .zip(b'a'..=b'z')
        .map(|(volume_id, letter)| {
            let info = volumes.get(volume_id).ok_or_else(|| format!("volume {volume_id} is not on this host"))?;
            Ok(DiskSpec {
                volume_id: volume_id.clone(),
                source: info.disk.clone(),
                target: format!("vd{}", letter as char),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let nics =
        vm.nics.iter().enumerate().map(|(i, nic)| NicSpec { mac: nic.mac.clone(), tap: tap_name(&vm.id, i) }).collect();
    let dir = res.vm_dir.join(&vm.id);
    Ok(DomainSpec {
        name: domain_name(&res.host_id, &vm.id),
        vm_id: vm.id.clone(),
        host_id: res.host_id.clone(),
        generation,
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        domain_type: res.domain_type.clone(),
        nvram_path: profile.nvram.as_ref().map(|_| dir.join("nvram.fd")),
        tpm_state_dir: profile.tpm.as_ref().map(|_| dir.join("tpm")),
        profile: profile.clone(),
        disks,
        nics,
        console_log: dir.join("console.log"),
        oem_strings: vm.oem_strings.clone(),
    })
}

/// Removes a deleted VM's files (NVRAM, TPM state, console log).
pub fn remove_vm_files(res: &HostResources, vm_id: &str) {
    let dir = res.vm_dir.join(vm_id);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove VM files");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_the_kernel_limit_and_differ() {
        let a = tap_name("vm-0123456789ab", 0);
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, tap_name("vm-0123456789ab", 1));
    }
}
