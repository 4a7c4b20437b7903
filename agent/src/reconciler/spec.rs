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
pub fn tap_name(vm_id: &str, index: usize) -> String {
    let digest = hex::encode(Sha256::digest(format!("{vm_id}/{index}").as_bytes()));
    format!("hci{}", &digest[..11])
}

/// At most this many disks (`vda`..`vdz`).
const MAX_DISKS: usize = 26;

/// Each of `disks` gets a target: the one it holds in `held` (volume → target), else the lowest
/// `vdX` no entry of `held` takes. Entries of volumes no longer in `disks` (being unplugged) keep
/// their targets taken. So a disk's target never changes while it stays attached, and a new VM gets
/// `vda`, `vdb`, ... in order.
pub fn assign_targets(disks: &[String], held: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut taken: std::collections::BTreeSet<String> = held.values().cloned().collect();
    let mut free = (b'a'..=b'z').map(|c| format!("vd{}", c as char));
    let mut out = BTreeMap::new();
    for disk in disks {
        let target = match held.get(disk) {
            Some(target) => target.clone(),
            None => {
                let target = free
                    .by_ref()
                    .find(|t| !taken.contains(t))
                    .ok_or_else(|| format!("no free disk target for volume {disk}: at most {MAX_DISKS} disks"))?;
                taken.insert(target.clone());
                target
            }
        };
        out.insert(disk.clone(), target);
    }
    Ok(out)
}

/// The spec of `vm` with its disks at `targets` (from [`assign_targets`]).
pub fn build(
    res: &HostResources,
    generation: u64,
    vm: &VmDesired,
    volumes: &BTreeMap<String, VolumeInfo>,
    targets: &BTreeMap<String, String>,
) -> Result<DomainSpec, String> {
    let profile = res
        .profiles
        .get(&vm.firmware)
        .ok_or_else(|| format!("firmware profile '{}' is not known to this agent", vm.firmware))?;
    if profile.arch != vm.arch {
        return Err(format!("firmware profile '{}' is for {}, the VM is {}", profile.name, profile.arch, vm.arch));
    }
    res.firmware.check(profile).map_err(|e| e.to_string())?;
    if vm.disks.len() > MAX_DISKS {
        return Err(format!("{} disks; at most {MAX_DISKS}", vm.disks.len()));
    }
    let disks = vm
        .disks
        .iter()
        .map(|volume_id| {
            let info = volumes.get(volume_id).ok_or_else(|| format!("volume {volume_id} is not on this host"))?;
            let target = targets.get(volume_id).ok_or_else(|| format!("volume {volume_id} has no disk target"))?;
            Ok(DiskSpec { volume_id: volume_id.clone(), source: info.disk.clone(), target: target.clone() })
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

    fn held(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(v, t)| (v.to_string(), t.to_string())).collect()
    }

    fn disks(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn targets_are_sequential_for_a_new_vm_and_never_shift() {
        let fresh = assign_targets(&disks(&["boot", "data", "logs"]), &BTreeMap::new()).expect("assign");
        assert_eq!(fresh, held(&[("boot", "vda"), ("data", "vdb"), ("logs", "vdc")]));
        // The middle disk goes: the others keep theirs; while it is unplugged its target stays taken.
        let holding = held(&[("boot", "vda"), ("data", "vdb"), ("logs", "vdc")]);
        let after = assign_targets(&disks(&["boot", "logs", "new"]), &holding).expect("assign");
        assert_eq!(after, held(&[("boot", "vda"), ("logs", "vdc"), ("new", "vdd")]));
        // Once unplugged, its target is free again.
        let unplugged = held(&[("boot", "vda"), ("logs", "vdc")]);
        let after = assign_targets(&disks(&["boot", "logs", "new"]), &unplugged).expect("assign");
        assert_eq!(after, held(&[("boot", "vda"), ("logs", "vdc"), ("new", "vdb")]));
        let many: Vec<String> = (0..27).map(|i| format!("d{i}")).collect();
        assert!(assign_targets(&many, &BTreeMap::new()).is_err());
    }

    #[test]
    fn tap_names_fit_the_kernel_limit_and_differ() {
        let a = tap_name("vm-0123456789ab", 0);
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, tap_name("vm-0123456789ab", 1));
    }
}
