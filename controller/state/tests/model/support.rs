//! Test harness: applies commands at increasing log indexes, keeps a key/value store of the
//! writes, and checks the contract of `apply` after every step.

#![allow(dead_code)]

use std::collections::BTreeMap;

use hci_shared::api::*;
use hci_shared::codec;
use hci_shared::command::{Applied, Command, Envelope};
use hci_shared::hosts::{HostInventory, HostJoin, HostPool};
use hci_shared::resources::{AuditRecord, Quota, Tenant, Vm, Volume, Zone, ZonePolicy};
use hci_shared::{ApiError, ErrorCode};
use hci_state::keys::{audit_key, AUDIT_PREFIX};
use hci_state::{KvWrite, Model};

pub const AT: &str = "2025-03-01T12:00:00Z";

pub fn envelope(command: Command) -> Envelope {
    Envelope { at: AT.to_string(), caller: "admin".to_string(), command }
}

/// Applies writes to a key/value map the way the store would.
pub fn store_writes(store: &mut BTreeMap<Vec<u8>, Vec<u8>>, writes: &[KvWrite]) {
    for write in writes {
        match write {
            KvWrite::Put { key, value } => {
                store.insert(key.clone(), value.clone());
            }
            KvWrite::Delete { key } => {
                store.remove(key);
            }
        }
    }
}

pub struct Harness {
    pub model: Model,
    pub index: u64,
    pub store: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The writes of the last step.
    pub writes: Vec<KvWrite>,
    /// The time stamp of the next entries (default [`AT`]).
    pub at: String,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self { model: Model::new(), index: 0, store: BTreeMap::new(), writes: Vec::new(), at: AT.to_string() }
    }

    /// Applies one command and checks the contract of `apply` around it.
    pub fn run(&mut self, command: Command) -> Result<Applied, ApiError> {
        self.index += 1;
        let before = self.model.clone();
        let env = Envelope { at: self.at.clone(), caller: "admin".to_string(), command };
        let mut writes = Vec::new();
        let response = self.model.apply(self.index, &env, &mut writes).0;

        let audits: Vec<&KvWrite> = writes.iter().filter(|w| w.key().starts_with(AUDIT_PREFIX)).collect();
        assert_eq!(audits.len(), 1, "exactly one audit write per entry");
        let last = writes.last().expect("an audit write");
        assert_eq!(last.key(), audit_key(self.index).as_slice(), "the audit write comes last");
        let KvWrite::Put { value, .. } = last else { panic!("audit is a put") };
        let audit: AuditRecord = codec::decode(value).expect("audit decodes");
        let (action, target) = env.command.audit_label();
        assert_eq!(audit.seq, self.index);
        assert_eq!(audit.time, self.at);
        assert_eq!(audit.caller, "admin");
        assert_eq!(audit.action, action);
        assert_eq!(audit.target, target);
        match &response {
            Ok(_) => assert_eq!(audit.outcome, "ok"),
            Err(e) => {
                assert_eq!(audit.outcome, e.code.as_str());
                assert_eq!(self.model, before, "a refusal must leave the model unchanged: {e}");
                assert_eq!(writes.len(), 1, "a refusal writes only its audit record");
            }
        }

        store_writes(&mut self.store, &writes);
        let loaded = Model::load(self.store.clone()).expect("the store loads");
        assert_eq!(loaded, self.model, "load(writes) must equal the live model");
        self.writes = writes;
        response
    }

    pub fn ok(&mut self, command: Command) -> Applied {
        let label = command.audit_label();
        match self.run(command) {
            Ok(applied) => applied,
            Err(e) => panic!("{label:?} refused: {e}"),
        }
    }

    pub fn refused(&mut self, command: Command) -> ApiError {
        let label = command.audit_label();
        match self.run(command) {
            Ok(applied) => panic!("{label:?} accepted: {applied:?}"),
            Err(e) => e,
        }
    }

    /// Writes of the last step other than its audit record.
    pub fn record_writes(&self) -> usize {
        self.writes.len() - 1
    }

    pub fn tenant(&self, name: &str) -> &Tenant {
        self.model.tenant(name).expect("tenant exists")
    }

    pub fn volume(&self, id: &str) -> &Volume {
        self.model.volume(id).expect("volume exists")
    }

    pub fn vm(&self, id: &str) -> &Vm {
        self.model.vm(id).expect("vm exists")
    }

    /// A tenant with the given quota, created through `apply`.
    pub fn with_tenant(&mut self, name: &str, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Tenant {
        as_tenant(self.ok(create_tenant(name, vcpus, memory_mib, disk_gib)))
    }
}

/// Asserts the refusal's code and that its message mentions every fragment.
pub fn assert_refusal(e: &ApiError, code: ErrorCode, fragments: &[&str]) {
    assert_eq!(e.code, code, "unexpected refusal: {e}");
    for fragment in fragments {
        assert!(e.message.contains(fragment), "message {:?} lacks {:?}", e.message, fragment);
    }
}

pub fn assert_invalid(e: &ApiError, field: &str, fragments: &[&str]) {
    assert_refusal(e, ErrorCode::InvalidInput, fragments);
    assert_eq!(e.field.as_deref(), Some(field), "field of {e}");
}

// ---- command builders -------------------------------------------------------------------------

pub fn quota(vcpus: u32, memory_mib: u64, disk_gib: u64) -> Quota {
    Quota { vcpus, memory_mib, disk_gib }
}

pub fn create_tenant(name: &str, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Command {
    Command::CreateTenant {
        id: format!("tid-{name}"),
        spec: TenantCreate {
            name: name.to_string(),
            description: String::new(),
            quota: quota(vcpus, memory_mib, disk_gib),
        },
    }
}

pub fn create_zone(name: &str, tenant: &str, cidr: &str) -> Command {
    create_zone_full(name, tenant, cidr, hci_shared::resources::ZoneKind::Normal, None)
}

pub fn create_zone_full(
    name: &str,
    tenant: &str,
    cidr: &str,
    kind: hci_shared::resources::ZoneKind,
    vni: Option<u32>,
) -> Command {
    Command::CreateZone {
        id: format!("zid-{name}"),
        spec: ZoneCreate {
            name: name.to_string(),
            tenant: tenant.to_string(),
            kind,
            cidr: cidr.to_string(),
            vni,
            vlan: None,
            mtu: None,
            intra_zone: Default::default(),
        },
    }
}

pub fn create_policy(id: &str, name: Option<&str>, from: &str, to: &str, ports: &str) -> Command {
    Command::CreateZonePolicy {
        id: id.to_string(),
        spec: ZonePolicyCreate {
            name: name.map(str::to_string),
            from_zone: from.to_string(),
            to_zone: to.to_string(),
            protocol: hci_shared::resources::Protocol::Tcp,
            ports: ports.to_string(),
            action: hci_shared::resources::PolicyAction::Allow,
        },
    }
}

pub fn create_volume(id: &str, tenant: &str, name: &str, size_gib: u64) -> Command {
    Command::CreateVolume {
        id: id.to_string(),
        spec: VolumeCreate {
            name: name.to_string(),
            tenant: tenant.to_string(),
            size_gib,
            pool: "default".to_string(),
            image: None,
            source: None,
        },
    }
}

pub fn vm_spec(tenant: &str, name: &str, vcpus: u32, memory_mib: u64, volumes: &[&str], zones: &[&str]) -> VmCreate {
    VmCreate {
        name: name.to_string(),
        tenant: tenant.to_string(),
        vcpus,
        memory_mib,
        arch: "x86_64".to_string(),
        firmware: None,
        volumes: volumes.iter().map(|v| v.to_string()).collect(),
        nics: zones.iter().map(|z| NicRequest { zone: z.to_string() }).collect(),
        anti_affinity_group: None,
        power: None,
        ha: None,
    }
}

pub fn create_vm(
    id: &str,
    tenant: &str,
    name: &str,
    vcpus: u32,
    memory_mib: u64,
    volumes: &[&str],
    zones: &[&str],
) -> Command {
    Command::CreateVm {
        id: id.to_string(),
        spec: vm_spec(tenant, name, vcpus, memory_mib, volumes, zones),
        placement: None,
    }
}

// ---- unwrapping answers -----------------------------------------------------------------------

pub fn as_tenant(applied: Applied) -> Tenant {
    match applied {
        Applied::Tenant(t) => t,
        other => panic!("expected a tenant, got {other:?}"),
    }
}

pub fn as_zone(applied: Applied) -> Zone {
    match applied {
        Applied::Zone(z) => z,
        other => panic!("expected a zone, got {other:?}"),
    }
}

pub fn as_policy(applied: Applied) -> ZonePolicy {
    match applied {
        Applied::ZonePolicy(p) => p,
        other => panic!("expected a zone policy, got {other:?}"),
    }
}

pub fn as_volume(applied: Applied) -> Volume {
    match applied {
        Applied::Volume(v) => v,
        other => panic!("expected a volume, got {other:?}"),
    }
}

pub fn as_vm(applied: Applied) -> Vm {
    match applied {
        Applied::Vm(vm) => vm,
        other => panic!("expected a vm, got {other:?}"),
    }
}

const JOIN_TOKEN: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// A bootstrapped site `primary` with tenant `finance` (64 vCPUs, 64 GiB, 1000 GiB).
pub fn finance_site() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::Bootstrap { site: "primary".into(), admin_token_sha256: "f".repeat(64) });
    h.with_tenant("finance", 64, 65536, 1000);
    h
}

/// A 100 GiB pool, empty.
pub fn pool(name: &str, backend: &str) -> HostPool {
    HostPool {
        name: name.into(),
        backend: backend.into(),
        capacity_bytes: 100 << 30,
        allocation_bytes: 0,
        available_bytes: 100 << 30,
    }
}

/// The join body of host `id`: x86_64, 2 CPUs, one 100 GiB pool `default` of `backend`.
pub fn host_join_spec(id: &str, memory_mib: u64, backend: &str, underlay_ip: Option<&str>) -> HostJoin {
    HostJoin {
        host_id: id.into(),
        site: "primary".into(),
        arch: "x86_64".into(),
        agent_url: format!("http://{id}.example:7100"),
        inventory: HostInventory {
            cpus: 2,
            memory_mib,
            accelerator: "tcg".into(),
            libvirt_version: "9.0.0".into(),
            pools: vec![pool("default", backend)],
            firmware_profiles: vec!["x86_64-bios".into()],
            underlay_ip: underlay_ip.map(str::to_string),
            zone_networks: underlay_ip.is_some(),
            vlan_trunk: None,
        },
    }
}

/// The credential SHA-256 test host `id` joins with (hex of its id, zero-padded).
pub fn credential_of(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

/// Joins a new host with `spec` through a fresh join token (its credential: [`credential_of`]).
/// Returns the log index of the join.
pub fn join_spec(h: &mut Harness, spec: HostJoin) -> u64 {
    use hci_shared::command::JoinAuth;
    let token = format!("{}{}", &JOIN_TOKEN[..60], h.index + 1000);
    h.ok(Command::CreateJoinToken {
        sha256: token.clone(),
        site: "primary".into(),
        expires_at: "2030-01-01T00:00:00Z".into(),
    });
    let credential = credential_of(&spec.host_id);
    h.ok(Command::JoinHost { auth: JoinAuth::Token { sha256: token }, new_credential_sha256: Some(credential), spec });
    h.index
}

/// Joins host `id` (see [`host_join_spec`]) through a join token.
pub fn join_host(h: &mut Harness, id: &str, memory_mib: u64, backend: &str) {
    join_spec(h, host_join_spec(id, memory_mib, backend, None));
}
