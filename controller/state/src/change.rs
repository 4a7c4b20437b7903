//! The record-level changes a command decides on, and how they become key/value writes and
//! mutations of the model.
//!
//! It exists so that deciding (read-only, may refuse) is separate from committing (infallible): a
//! handler returns a list of changes, `apply` encodes them all and only then commits them. Commit
//! must never refuse or check anything; every check belongs to the handlers.

use hci_shared::codec::{self, CodecError};
use hci_shared::resources::{Host, Tenant, Vm, Volume, Zone, ZonePolicy};

use crate::cluster::TokenRecord;
use crate::join_tokens::{HostCredential, JoinTokenRecord};
use crate::keys;
use crate::model::Model;

/// One persistent change caused by applying a log entry, for the store to write atomically with
/// the entry's applied index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl KvWrite {
    pub fn key(&self) -> &[u8] {
        match self {
            KvWrite::Put { key, .. } | KvWrite::Delete { key } => key,
        }
    }
}

/// A whole record written or removed. Put replaces the record with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Site(String),
    Token { sha256_hex: String, record: TokenRecord },
    PutTenant(Tenant),
    DeleteTenant(String),
    PutZone(Zone),
    DeleteZone(String),
    PutPolicy(ZonePolicy),
    DeletePolicy(String),
    PutVolume(Volume),
    DeleteVolume(String),
    PutVm(Vm),
    DeleteVm(String),
    PutHost(Host),
    PutJoinToken { sha256_hex: String, record: JoinTokenRecord },
    DeleteJoinToken(String),
    PutHostCredential { sha256_hex: String, record: HostCredential },
    DeleteHostCredential(String),
    PutRetired(crate::retired::RetiredOnHost),
}

fn put<T: serde::Serialize>(key: Vec<u8>, value: &T) -> Result<KvWrite, CodecError> {
    Ok(KvWrite::Put { key, value: codec::encode(value)? })
}

fn delete(prefix: &[u8], id: &str) -> KvWrite {
    KvWrite::Delete { key: keys::record_key(prefix, id) }
}

impl Change {
    /// The key/value write that persists this change.
    pub fn to_write(&self) -> Result<KvWrite, CodecError> {
        use keys::*;
        match self {
            Change::Site(site) => put(SITE_KEY.to_vec(), site),
            Change::Token { sha256_hex, record } => put(record_key(TOKEN_PREFIX, sha256_hex), record),
            Change::PutTenant(t) => put(record_key(TENANT_PREFIX, &t.name), t),
            Change::DeleteTenant(name) => Ok(delete(TENANT_PREFIX, name)),
            Change::PutZone(z) => put(record_key(ZONE_PREFIX, &z.name), z),
            Change::DeleteZone(name) => Ok(delete(ZONE_PREFIX, name)),
            Change::PutPolicy(p) => put(record_key(POLICY_PREFIX, &p.id), p),
            Change::DeletePolicy(id) => Ok(delete(POLICY_PREFIX, id)),
            Change::PutVolume(v) => put(record_key(VOLUME_PREFIX, &v.id), v),
            Change::DeleteVolume(id) => Ok(delete(VOLUME_PREFIX, id)),
            Change::PutVm(vm) => put(record_key(VM_PREFIX, &vm.id), vm),
            Change::DeleteVm(id) => Ok(delete(VM_PREFIX, id)),
            Change::PutHost(h) => put(record_key(HOST_PREFIX, &h.id), h),
            Change::PutJoinToken { sha256_hex, record } => put(record_key(JOIN_TOKEN_PREFIX, sha256_hex), record),
            Change::DeleteJoinToken(hash) => Ok(delete(JOIN_TOKEN_PREFIX, hash)),
            Change::PutHostCredential { sha256_hex, record } => {
                put(record_key(HOST_CREDENTIAL_PREFIX, sha256_hex), record)
            }
            Change::DeleteHostCredential(hash) => Ok(delete(HOST_CREDENTIAL_PREFIX, hash)),
            Change::PutRetired(r) => put(record_key(RETIRED_PREFIX, &r.host_id), r),
        }
    }
}

impl Model {
    /// Makes one decided change, keeping the derived indexes in step. Infallible by design.
    pub(crate) fn commit(&mut self, change: Change) {
        match change {
            Change::Site(site) => self.site = Some(site),
            Change::Token { sha256_hex, record } => {
                self.tokens.insert(sha256_hex, record);
            }
            Change::PutTenant(t) => {
                self.follow_tenant(&t);
                self.tenants.insert(t.name.clone(), t);
            }
            Change::DeleteTenant(name) => {
                self.tenants.remove(&name);
            }
            Change::PutZone(z) => {
                self.zones.insert(z.name.clone(), z);
                self.follow_zones();
            }
            Change::DeleteZone(name) => {
                self.zones.remove(&name);
                self.follow_zones();
            }
            Change::PutPolicy(p) => {
                if let Some(old) = self.policies.remove(&p.id) {
                    self.index.remove_policy(&old);
                }
                self.index.add_policy(&p);
                self.policies.insert(p.id.clone(), p);
            }
            Change::DeletePolicy(id) => {
                if let Some(old) = self.policies.remove(&id) {
                    self.index.remove_policy(&old);
                }
            }
            Change::PutVolume(v) => {
                let old = self.volumes.remove(&v.id);
                if let Some(old) = &old {
                    self.index.remove_volume(old);
                }
                self.follow_volume(old.as_ref(), Some(&v));
                self.index.add_volume(&v);
                let placed_vm = v.attached_to.clone().filter(|vm| self.vms.get(vm).is_some_and(|vm| vm.host.is_some()));
                self.volumes.insert(v.id.clone(), v);
                if let Some(vm) = placed_vm {
                    // The volume's size is part of its VM's booking.
                    self.follow_vm(&vm);
                }
            }
            Change::DeleteVolume(id) => {
                if let Some(old) = self.volumes.remove(&id) {
                    self.index.remove_volume(&old);
                    self.follow_volume(Some(&old), None);
                }
            }
            Change::PutVm(vm) => {
                if let Some(old) = self.vms.remove(&vm.id) {
                    self.index.remove_vm(&old);
                }
                self.index.add_vm(&vm);
                let id = vm.id.clone();
                self.vms.insert(vm.id.clone(), vm);
                self.follow_vm(&id);
            }
            Change::DeleteVm(id) => {
                if let Some(old) = self.vms.remove(&id) {
                    self.index.remove_vm(&old);
                }
                self.follow_vm(&id);
            }
            Change::PutHost(h) => {
                let old = self.hosts.remove(&h.id);
                self.follow_host(old.as_ref(), &h);
                self.hosts.insert(h.id.clone(), h);
            }
            Change::PutJoinToken { sha256_hex, record } => {
                self.join_tokens.insert(sha256_hex, record);
            }
            Change::DeleteJoinToken(hash) => {
                self.join_tokens.remove(&hash);
            }
            Change::PutHostCredential { sha256_hex, record } => {
                self.host_credentials.insert(sha256_hex, record);
            }
            Change::DeleteHostCredential(hash) => {
                self.host_credentials.remove(&hash);
            }
            Change::PutRetired(r) => {
                self.retired.insert(r.host_id.clone(), r);
            }
        }
    }
}
