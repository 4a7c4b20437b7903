//! Rebuilding the model from the persisted key/value pairs (restart, snapshot install).
//!
//! It exists so a member can resume from its store and get a model equal to the one it had before.
//! It must never trust derived data: indexes and tenant usage are recomputed from the records, and
//! anything that does not decode or fit the key layout is an error naming the key, not skipped.

use hci_shared::codec;
use hci_shared::names::parse_cidr;
use hci_shared::resources::Usage;
use serde::de::DeserializeOwned;

use crate::error::StateError;
use crate::index::Indexes;
use crate::keys::{self, KeyKind};
use crate::model::Model;

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StateError> {
    codec::decode(value).map_err(|source| StateError::Decode { key: keys::display(key), source })
}

/// Refuses a record stored under a key other than its own.
fn same_key(key: &[u8], expected: &str, found: &str) -> Result<(), StateError> {
    if expected == found {
        Ok(())
    } else {
        Err(StateError::KeyMismatch { key: keys::display(key), found: found.to_string() })
    }
}

impl Model {
    /// Rebuilds the model from every persisted (key, value) pair, in any order. Audit records are
    /// skipped (they are not held in memory); indexes and tenant usage are recomputed.
    pub fn load<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(pairs: I) -> Result<Self, StateError> {
        let mut model = Model::new();
        for (key, value) in pairs {
            model.load_record(&key, &value)?;
        }
        model.check_zones()?;
        model.recompute_usage()?;
        model.index = Indexes::rebuild(&model)?;
        model.rebuild_placement();
        Ok(model)
    }

    fn load_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let kind = keys::classify(key).ok_or_else(|| StateError::UnknownKey { key: keys::display(key) })?;
        match kind {
            KeyKind::Audit => {}
            KeyKind::Site => self.site = Some(decode(key, value)?),
            KeyKind::Token(hash) => {
                self.tokens.insert(hash.to_string(), decode(key, value)?);
            }
            KeyKind::Tenant(name) => {
                let tenant: hci_shared::resources::Tenant = decode(key, value)?;
                same_key(key, name, &tenant.name)?;
                self.tenants.insert(tenant.name.clone(), tenant);
            }
            KeyKind::Zone(name) => {
                let zone: hci_shared::resources::Zone = decode(key, value)?;
                same_key(key, name, &zone.name)?;
                self.zones.insert(zone.name.clone(), zone);
            }
            KeyKind::Policy(id) => {
                let policy: hci_shared::resources::ZonePolicy = decode(key, value)?;
                same_key(key, id, &policy.id)?;
                self.policies.insert(policy.id.clone(), policy);
            }
            KeyKind::Volume(id) => {
                let volume: hci_shared::resources::Volume = decode(key, value)?;
                same_key(key, id, &volume.id)?;
                self.volumes.insert(volume.id.clone(), volume);
            }
            KeyKind::Vm(id) => {
                let vm: hci_shared::resources::Vm = decode(key, value)?;
                same_key(key, id, &vm.id)?;
                self.vms.insert(vm.id.clone(), vm);
            }
            KeyKind::Host(id) => {
                let host: hci_shared::resources::Host = decode(key, value)?;
                same_key(key, id, &host.id)?;
                self.hosts.insert(host.id.clone(), host);
            }
            KeyKind::JoinToken(hash) => {
                self.join_tokens.insert(hash.to_string(), decode(key, value)?);
            }
            KeyKind::HostCredential(hash) => {
                self.host_credentials.insert(hash.to_string(), decode(key, value)?);
            }
            KeyKind::Retired(host) => {
                let retired: crate::retired::RetiredOnHost = decode(key, value)?;
                same_key(key, host, &retired.host_id)?;
                self.retired.insert(retired.host_id.clone(), retired);
            }
        }
        Ok(())
    }

    /// Every zone's CIDR must parse: IPAM and overlap checks depend on it.
    fn check_zones(&self) -> Result<(), StateError> {
        for zone in self.zones.values() {
            parse_cidr(&zone.cidr).map_err(|why| StateError::BadCidr {
                zone: zone.name.clone(),
                cidr: zone.cidr.clone(),
                why,
            })?;
        }
        Ok(())
    }

    /// Sets each tenant's usage to the sum of its volumes (disk) and VMs (vcpus, memory).
    fn recompute_usage(&mut self) -> Result<(), StateError> {
        for tenant in self.tenants.values_mut() {
            tenant.usage = Usage::default();
        }
        for volume in self.volumes.values() {
            let tenant = self.tenants.get_mut(&volume.tenant).ok_or_else(|| StateError::MissingTenant {
                kind: "volume",
                id: volume.id.clone(),
                tenant: volume.tenant.clone(),
            })?;
            tenant.usage.disk_gib = tenant.usage.disk_gib.saturating_add(volume.size_gib);
        }
        for vm in self.vms.values() {
            let tenant = self.tenants.get_mut(&vm.tenant).ok_or_else(|| StateError::MissingTenant {
                kind: "vm",
                id: vm.id.clone(),
                tenant: vm.tenant.clone(),
            })?;
            tenant.usage.vcpus = tenant.usage.vcpus.saturating_add(vm.vcpus);
            tenant.usage.memory_mib = tenant.usage.memory_mib.saturating_add(vm.memory_mib);
        }
        for zone in self.zones.values() {
            if !self.tenants.contains_key(&zone.tenant) {
                return Err(StateError::MissingTenant {
                    kind: "zone",
                    id: zone.name.clone(),
                    tenant: zone.tenant.clone(),
                });
            }
        }
        Ok(())
    }
}
