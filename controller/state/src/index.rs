//! Derived indexes over the tables: name lookups, IP and MAC allocations.
//!
//! They exist so uniqueness checks and IPAM do not scan every record. They are never persisted:
//! `apply` maintains them incrementally and `load` rebuilds them from the records. They must never
//! hold anything that cannot be recomputed from the tables alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hci_shared::resources::{Vm, Volume, ZonePolicy};

use crate::error::StateError;
use crate::model::Model;

/// Lookups derived from the records; equal for two models holding equal records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    /// Policy name → policy id (policy names are unique site-wide).
    pub policy_names: BTreeMap<String, String>,
    /// (tenant, volume name) → volume id.
    pub volume_names: BTreeMap<(String, String), String>,
    /// (tenant, VM name) → VM id.
    pub vm_names: BTreeMap<(String, String), String>,
    /// (zone name, IPv4 address) → id of the VM whose NIC holds it.
    pub addresses: BTreeMap<(String, u32), String>,
    /// MAC address → id of the VM whose NIC holds it.
    pub macs: BTreeMap<String, String>,
    /// Ids of the VMs in a move (`migration` set): what the leader's move finisher watches.
    pub moving: BTreeSet<String>,
}

fn parse_ip(vm: &Vm, nic: usize, ip: &str) -> Result<u32, StateError> {
    ip.parse::<Ipv4Addr>().map(u32::from).map_err(|_| StateError::BadIp { vm: vm.id.clone(), nic, ip: ip.to_string() })
}

impl Indexes {
    pub fn add_policy(&mut self, policy: &ZonePolicy) {
        self.policy_names.insert(policy.name.clone(), policy.id.clone());
    }

    pub fn remove_policy(&mut self, policy: &ZonePolicy) {
        self.policy_names.remove(&policy.name);
    }

    pub fn add_volume(&mut self, volume: &Volume) {
        self.volume_names.insert((volume.tenant.clone(), volume.name.clone()), volume.id.clone());
    }

    pub fn remove_volume(&mut self, volume: &Volume) {
        self.volume_names.remove(&(volume.tenant.clone(), volume.name.clone()));
    }

    /// Indexes a VM accepted by `apply`, whose addresses were produced by the IPAM and always parse.
    pub fn add_vm(&mut self, vm: &Vm) {
        self.vm_names.insert((vm.tenant.clone(), vm.name.clone()), vm.id.clone());
        for (i, nic) in vm.nics.iter().enumerate() {
            if let Ok(ip) = parse_ip(vm, i, &nic.ip) {
                self.addresses.insert((nic.zone.clone(), ip), vm.id.clone());
            }
            self.macs.insert(nic.mac.clone(), vm.id.clone());
        }
        if vm.migration.is_some() {
            self.moving.insert(vm.id.clone());
        }
    }

    pub fn remove_vm(&mut self, vm: &Vm) {
        self.vm_names.remove(&(vm.tenant.clone(), vm.name.clone()));
        for (i, nic) in vm.nics.iter().enumerate() {
            if let Ok(ip) = parse_ip(vm, i, &nic.ip) {
                self.addresses.remove(&(nic.zone.clone(), ip));
            }
            self.macs.remove(&nic.mac);
        }
        self.moving.remove(&vm.id);
    }

    /// Rebuilds every index from the model's tables, refusing records that collide.
    pub fn rebuild(model: &Model) -> Result<Self, StateError> {
        let mut index = Self::default();
        for policy in model.policies.values() {
            if let Some(first) = index.policy_names.insert(policy.name.clone(), policy.id.clone()) {
                return Err(StateError::DuplicateName {
                    what: "policy name",
                    name: policy.name.clone(),
                    first: format!("policy '{first}'"),
                    second: format!("policy '{}'", policy.id),
                });
            }
        }
        for volume in model.volumes.values() {
            let key = (volume.tenant.clone(), volume.name.clone());
            if let Some(first) = index.volume_names.insert(key, volume.id.clone()) {
                return Err(StateError::DuplicateName {
                    what: "volume name",
                    name: format!("{}/{}", volume.tenant, volume.name),
                    first: format!("volume '{first}'"),
                    second: format!("volume '{}'", volume.id),
                });
            }
        }
        for vm in model.vms.values() {
            if let Some(first) = index.vm_names.insert((vm.tenant.clone(), vm.name.clone()), vm.id.clone()) {
                return Err(StateError::DuplicateName {
                    what: "vm name",
                    name: format!("{}/{}", vm.tenant, vm.name),
                    first: format!("vm '{first}'"),
                    second: format!("vm '{}'", vm.id),
                });
            }
            for (i, nic) in vm.nics.iter().enumerate() {
                let ip = parse_ip(vm, i, &nic.ip)?;
                if let Some(first) = index.addresses.insert((nic.zone.clone(), ip), vm.id.clone()) {
                    return Err(StateError::DuplicateIp {
                        zone: nic.zone.clone(),
                        ip: nic.ip.clone(),
                        first,
                        second: vm.id.clone(),
                    });
                }
                if let Some(first) = index.macs.insert(nic.mac.clone(), vm.id.clone()) {
                    return Err(StateError::DuplicateMac { mac: nic.mac.clone(), first, second: vm.id.clone() });
                }
            }
            if vm.migration.is_some() {
                index.moving.insert(vm.id.clone());
            }
        }
        Ok(index)
    }

    /// Ids of the VMs with a NIC in `zone`, each once, ordered.
    pub fn vms_in_zone(&self, zone: &str) -> Vec<&str> {
        let range = (zone.to_string(), 0)..=(zone.to_string(), u32::MAX);
        let mut ids: Vec<&str> = self.addresses.range(range).map(|(_, vm)| vm.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Ids of `tenant`'s volumes, ordered by volume name.
    pub fn volumes_of(&self, tenant: &str) -> impl Iterator<Item = &str> + '_ {
        owned_by(&self.volume_names, tenant)
    }

    /// Ids of `tenant`'s VMs, ordered by VM name.
    pub fn vms_of(&self, tenant: &str) -> impl Iterator<Item = &str> + '_ {
        owned_by(&self.vm_names, tenant)
    }
}

fn owned_by<'a>(names: &'a BTreeMap<(String, String), String>, tenant: &str) -> impl Iterator<Item = &'a str> + 'a {
    let owner = tenant.to_string();
    names.range((owner.clone(), String::new())..).take_while(move |((t, _), _)| *t == owner).map(|(_, id)| id.as_str())
}
