//! The in-memory replicated model: the tables of resources plus their derived indexes, and the
//! read accessors the store and the HTTP API use.
//!
//! It exists so that every member holds the same state after applying the same log. It must never
//! be mutated except through `apply` (one log entry at a time) or built except through `load`;
//! readers get shared references only.

use std::collections::BTreeMap;

use hci_shared::resources::{Host, Tenant, Vm, Volume, Zone, ZonePolicy};

use crate::cluster::TokenRecord;
use crate::index::Indexes;
use crate::join_tokens::{HostCredential, JoinTokenRecord};
use crate::placement::PlacementView;

/// The controller's replicated state. Two models are equal exactly when they hold the same records
/// (the derived indexes follow from the records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub(crate) site: Option<String>,
    /// Bearer token SHA-256 (lowercase hex) → who it is.
    pub(crate) tokens: BTreeMap<String, TokenRecord>,
    /// By tenant name.
    pub(crate) tenants: BTreeMap<String, Tenant>,
    /// By zone name.
    pub(crate) zones: BTreeMap<String, Zone>,
    /// By policy id.
    pub(crate) policies: BTreeMap<String, ZonePolicy>,
    /// By volume id.
    pub(crate) volumes: BTreeMap<String, Volume>,
    /// By VM id.
    pub(crate) vms: BTreeMap<String, Vm>,
    /// By host id.
    pub(crate) hosts: BTreeMap<String, Host>,
    /// Join token SHA-256 (lowercase hex) → the token (used ones are kept a day for clear refusals).
    pub(crate) join_tokens: BTreeMap<String, JoinTokenRecord>,
    /// Host credential SHA-256 (lowercase hex) → the host it belongs to.
    pub(crate) host_credentials: BTreeMap<String, HostCredential>,
    /// By host id: the shared-pool volumes deleted there, newest last (bounded).
    pub(crate) retired: BTreeMap<String, crate::retired::RetiredOnHost>,
    pub(crate) index: Indexes,
    /// The placement planner's view (derived: hosts, tenants' limits, placed VMs).
    pub(crate) placement: PlacementView,
}

impl Model {
    /// An empty, not yet bootstrapped model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The site name, once bootstrapped.
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.site.is_some()
    }

    /// The caller name (e.g. `admin`) of a token, given its lowercase hex SHA-256.
    pub fn caller_for_token(&self, sha256_hex: &str) -> Option<&str> {
        self.tokens.get(sha256_hex).map(|record| record.name.as_str())
    }

    /// The whole token record (name and role), given the token's lowercase hex SHA-256.
    pub fn token(&self, sha256_hex: &str) -> Option<&TokenRecord> {
        self.tokens.get(sha256_hex)
    }

    /// Tenants ordered by name.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> + '_ {
        self.tenants.values()
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Zones ordered by name.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> + '_ {
        self.zones.values()
    }

    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.get(name)
    }

    /// Zone policies ordered by id.
    pub fn zone_policies(&self) -> impl Iterator<Item = &ZonePolicy> + '_ {
        self.policies.values()
    }

    pub fn zone_policy(&self, id: &str) -> Option<&ZonePolicy> {
        self.policies.get(id)
    }

    /// Volumes ordered by id.
    pub fn volumes(&self) -> impl Iterator<Item = &Volume> + '_ {
        self.volumes.values()
    }

    pub fn volume(&self, id: &str) -> Option<&Volume> {
        self.volumes.get(id)
    }

    /// VMs ordered by id.
    pub fn vms(&self) -> impl Iterator<Item = &Vm> + '_ {
        self.vms.values()
    }

    pub fn vm(&self, id: &str) -> Option<&Vm> {
        self.vms.get(id)
    }

    /// Hosts ordered by id.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> + '_ {
        self.hosts.values()
    }

    pub fn host(&self, id: &str) -> Option<&Host> {
        self.hosts.get(id)
    }

    /// The join token with this SHA-256 (lowercase hex), used or not.
    pub fn join_token(&self, sha256_hex: &str) -> Option<&JoinTokenRecord> {
        self.join_tokens.get(sha256_hex)
    }

    /// The host a credential belongs to, given the credential's SHA-256 (lowercase hex).
    pub fn host_for_credential(&self, sha256_hex: &str) -> Option<&str> {
        self.host_credentials.get(sha256_hex).map(|c| c.host_id.as_str())
    }

    /// The id of the volume named `name` in `tenant`.
    pub fn volume_id_by_name(&self, tenant: &str, name: &str) -> Option<&str> {
        self.index.volume_names.get(&(tenant.to_string(), name.to_string())).map(String::as_str)
    }

    /// The id of the VM named `name` in `tenant`.
    pub fn vm_id_by_name(&self, tenant: &str, name: &str) -> Option<&str> {
        self.index.vm_names.get(&(tenant.to_string(), name.to_string())).map(String::as_str)
    }
}
