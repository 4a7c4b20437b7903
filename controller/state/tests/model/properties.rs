//! Property tests over random command sequences drawn from small pools of names, sizes and CIDRs,
//! so that conflicts, quota refusals and address exhaustion happen often.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hci_shared::api::*;
use hci_shared::command::{Command, CommandResponse, Placement, PlannedMove, PowerAction};
use hci_shared::names::parse_cidr;
use hci_shared::resources::{PolicyAction, Protocol, Usage, ZoneKind};
use hci_state::{KvWrite, Model};
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::*;

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool).prop_map(str::to_string)
}

fn tenant() -> impl Strategy<Value = String> {
    pick(&["t0", "t1", "t2"])
}
fn zone() -> impl Strategy<Value = String> {
    pick(&["z0", "z1", "z2", "z3"])
}
fn volume_id() -> impl Strategy<Value = String> {
    pick(&["v0", "v1", "v2", "v3", "v4", "v5"])
}
fn vm_id() -> impl Strategy<Value = String> {
    pick(&["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"])
}
fn short_name() -> impl Strategy<Value = String> {
    pick(&["a", "b", "c"])
}
fn cidr() -> impl Strategy<Value = String> {
    pick(&["10.0.0.0/29", "10.0.0.8/29", "10.0.0.16/29", "10.0.0.24/29", "10.0.0.0/27", "10.0.1.0/28"])
}
fn if_match() -> impl Strategy<Value = Option<u64>> {
    prop::option::weighted(0.15, 0u64..40)
}
fn small_quota() -> impl Strategy<Value = hci_shared::resources::Quota> {
    (0u32..10, 0u64..3000, 0u64..120).prop_map(|(vcpus, memory_mib, disk_gib)| quota(vcpus, memory_mib, disk_gib))
}

/// The tenant a zone is usually created in, so that VM NICs often match their tenant.
fn usual_tenant(zone: &str) -> &'static str {
    match zone {
        "z0" | "z1" => "t0",
        "z2" => "t1",
        _ => "t2",
    }
}

fn create_zone_command() -> impl Strategy<Value = Command> {
    let kind = prop_oneof![6 => Just(ZoneKind::Normal), 1 => Just(ZoneKind::Isolated)];
    (zone(), prop::option::weighted(0.2, tenant()), cidr(), kind, prop::option::of(1u32..4)).prop_map(
        |(name, tenant, cidr, kind, vni)| {
            let tenant = tenant.unwrap_or_else(|| usual_tenant(&name).to_string());
            Command::CreateZone {
                id: format!("zid-{name}"),
                spec: ZoneCreate {
                    name,
                    tenant,
                    kind,
                    cidr,
                    vni,
                    vlan: None,
                    mtu: None,
                    intra_zone: Default::default(),
                },
            }
        },
    )
}

/// Every sequence starts by creating the tenants (small quotas) and some zones.
fn prelude() -> impl Strategy<Value = Vec<Command>> {
    let quotas = prop::collection::vec((1u32..14, 64u64..4000, 1u64..120), 3);
    let zones = prop::collection::vec(create_zone_command(), 2..6);
    (quotas, zones).prop_map(|(quotas, zones)| {
        let tenants = quotas
            .into_iter()
            .zip(["t0", "t1", "t2"])
            .map(|((vcpus, memory_mib, disk_gib), name)| create_tenant(name, vcpus, memory_mib, disk_gib));
        tenants.chain(zones).collect()
    })
}

fn tenant_commands() -> impl Strategy<Value = Command> {
    prop_oneof![
        2 => (tenant(), small_quota()).prop_map(|(name, quota)| Command::CreateTenant {
            id: format!("tid-{name}"),
            spec: TenantCreate { name, description: String::new(), quota },
        }),
        2 => (tenant(), prop::option::of(small_quota()), if_match()).prop_map(|(name, quota, if_match)| {
            Command::UpdateTenant { name, update: TenantUpdate { description: None, quota }, if_match }
        }),
        1 => (tenant(), if_match()).prop_map(|(name, if_match)| Command::DeleteTenant { name, if_match }),
    ]
}

fn zone_commands() -> impl Strategy<Value = Command> {
    prop_oneof![
        3 => create_zone_command(),
        1 => (zone(), if_match()).prop_map(|(name, if_match)| Command::DeleteZone { name, if_match }),
        2 => (pick(&["p0", "p1", "p2"]), prop::option::of(short_name()), zone(), zone(), pick(&["22", "80", "443"]))
            .prop_map(|(id, name, from_zone, to_zone, ports)| Command::CreateZonePolicy {
                id,
                spec: ZonePolicyCreate { name, from_zone, to_zone, protocol: Protocol::Tcp, ports, action: PolicyAction::Allow },
            }),
        1 => (pick(&["p0", "p1", "p2"]), if_match()).prop_map(|(id, if_match)| Command::DeleteZonePolicy { id, if_match }),
    ]
}

fn volume_commands() -> impl Strategy<Value = Command> {
    prop_oneof![
        3 => (volume_id(), tenant(), short_name(), 1u64..50).prop_map(|(id, tenant, name, size_gib)| {
            Command::CreateVolume {
                id,
                spec: VolumeCreate { name, tenant, size_gib, pool: "default".to_string(), image: None, source: None },
            }
        }),
        1 => (volume_id(), if_match()).prop_map(|(id, if_match)| Command::DeleteVolume { id, if_match }),
        1 => (volume_id(), 1u64..80, if_match()).prop_map(|(id, size_gib, if_match)| Command::ResizeVolume { id, size_gib, if_match, cap_percent: 80 }),
        1 => (volume_id(), short_name()).prop_map(|(id, name)| Command::SnapshotVolume { id, name }),
        1 => (volume_id(), volume_id(), short_name()).prop_map(|(id, new_id, name)| Command::CloneVolume { id, new_id, name, cap_percent: 80 }),
    ]
}

/// NIC zones: mostly the tenant's usual zones (so addresses run out), sometimes any zone.
fn nic_zones(tenant: &str) -> BoxedStrategy<Vec<String>> {
    let own: &'static [&'static str] = match tenant {
        "t0" => &["z0", "z1"],
        "t1" => &["z2"],
        _ => &["z3"],
    };
    let one = prop_oneof![9 => pick(own), 1 => zone()];
    prop::collection::vec(one, 0..6).boxed()
}

fn create_vm_command() -> impl Strategy<Value = Command> {
    let volumes = prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(volume_id(), 1..3)];
    let name = pick(&["a", "b", "c", "d", "e"]);
    (vm_id(), tenant(), name, 1u32..3, 64u64..600, volumes)
        .prop_flat_map(|(id, tenant, name, vcpus, memory_mib, volumes)| {
            let zones = nic_zones(&tenant);
            (Just((id, tenant, name, vcpus, memory_mib, volumes)), zones)
        })
        .prop_map(|((id, tenant, name, vcpus, memory_mib, volumes), zones)| Command::CreateVm {
            id,
            spec: VmCreate {
                name,
                tenant,
                vcpus,
                memory_mib,
                arch: "x86_64".to_string(),
                firmware: None,
                volumes,
                nics: zones.into_iter().map(|zone| NicRequest { zone }).collect(),
                anti_affinity_group: None,
                power: None,
                ha: None,
            },
            placement: None,
        })
}

fn vm_commands() -> impl Strategy<Value = Command> {
    let power = select(&[PowerAction::Start, PowerAction::Stop, PowerAction::Reboot][..]);
    prop_oneof![
        5 => create_vm_command(),
        2 => (vm_id(), if_match()).prop_map(|(id, if_match)| Command::DeleteVm { id, if_match }),
        1 => (vm_id(), power).prop_map(|(id, action)| Command::SetVmPower { id, action, placement: None }),
        1 => (vm_id(), pick(&["h0", "h1"]), any::<bool>()).prop_map(|(id, host, live)| Command::MigrateVm {
            id: id.clone(),
            planned: PlannedMove { vm: id, placement: Placement { host, cap_percent: 80 }, live, imports: vec![] },
        }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![1 => tenant_commands(), 2 => zone_commands(), 3 => volume_commands(), 4 => vm_commands()]
}

fn commands() -> impl Strategy<Value = Vec<Command>> {
    (prelude(), prop::collection::vec(command(), 1..70)).prop_map(|(mut prelude, body)| {
        prelude.extend(body);
        prelude
    })
}

/// Everything that must hold between any two log entries.
fn check_invariants(model: &Model) {
    let mut sums: BTreeMap<&str, Usage> = BTreeMap::new();
    for volume in model.volumes() {
        assert!(model.tenant(&volume.tenant).is_some(), "volume {} has no tenant", volume.id);
        sums.entry(&volume.tenant).or_default().disk_gib += volume.size_gib;
        if let Some(vm_id) = &volume.attached_to {
            let vm = model.vm(vm_id).unwrap_or_else(|| panic!("volume {} attached to missing vm {vm_id}", volume.id));
            assert!(vm.volumes.contains(&volume.id), "vm {vm_id} does not list volume {}", volume.id);
        }
    }
    let mut addresses = BTreeSet::new();
    let mut macs = BTreeSet::new();
    for vm in model.vms() {
        assert!(model.tenant(&vm.tenant).is_some(), "vm {} has no tenant", vm.id);
        let usage = sums.entry(&vm.tenant).or_default();
        usage.vcpus += vm.vcpus;
        usage.memory_mib += vm.memory_mib;
        for volume_id in &vm.volumes {
            let attached = model.volume(volume_id).and_then(|v| v.attached_to.as_deref());
            assert_eq!(attached, Some(vm.id.as_str()), "vm {} lists volume {volume_id}", vm.id);
        }
        for nic in &vm.nics {
            let zone = model.zone(&nic.zone).unwrap_or_else(|| panic!("nic in missing zone {}", nic.zone));
            assert_eq!(zone.tenant, vm.tenant);
            let ip: Ipv4Addr = nic.ip.parse().expect("an IPv4 address");
            let cidr = parse_cidr(&zone.cidr).expect("zone cidr parses");
            assert!(cidr.assignable().any(|a| a == ip), "{ip} outside {}", zone.cidr);
            assert!(addresses.insert((nic.zone.clone(), ip)), "address {ip} assigned twice in {}", nic.zone);
            assert!(macs.insert(nic.mac.clone()), "mac {} assigned twice", nic.mac);
        }
    }
    for tenant in model.tenants() {
        let expected = sums.get(tenant.name.as_str()).copied().unwrap_or_default();
        assert_eq!(tenant.usage, expected, "usage of {}", tenant.name);
        let (u, q) = (tenant.usage, tenant.quota);
        assert!(
            u.vcpus <= q.vcpus && u.memory_mib <= q.memory_mib && u.disk_gib <= q.disk_gib,
            "{} over quota",
            tenant.name
        );
    }
    for zone in model.zones() {
        assert!(model.tenant(&zone.tenant).is_some(), "zone {} has no tenant", zone.name);
    }
    for policy in model.zone_policies() {
        assert!(model.zone(&policy.from_zone).is_some() && model.zone(&policy.to_zone).is_some());
    }
}

fn run_plain(commands: &[Command]) -> (Model, Vec<Vec<KvWrite>>, Vec<CommandResponse>) {
    let mut model = Model::new();
    let mut all_writes = Vec::new();
    let mut responses = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let mut writes = Vec::new();
        responses.push(model.apply(i as u64 + 1, &envelope(command.clone()), &mut writes));
        all_writes.push(writes);
    }
    (model, all_writes, responses)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Quotas hold, usage adds up, addresses and MACs are unique, attachments point at real VMs;
    /// refusals change nothing (checked by the harness).
    #[test]
    fn invariants_hold_after_every_step(commands in commands()) {
        let mut h = Harness::new();
        let mut accepted = 0usize;
        for command in commands {
            if h.run(command).is_ok() {
                accepted += 1;
            }
            check_invariants(&h.model);
        }
        prop_assert!(accepted <= h.index as usize);
    }

    /// The same log gives the same writes and answers on every member.
    #[test]
    fn apply_is_deterministic(commands in commands()) {
        let (model_a, writes_a, responses_a) = run_plain(&commands);
        let (model_b, writes_b, responses_b) = run_plain(&commands);
        prop_assert_eq!(writes_a, writes_b);
        prop_assert_eq!(responses_a, responses_b);
        prop_assert_eq!(model_a, model_b);
    }

    /// Loading the store written so far gives the live model back, after every step.
    #[test]
    fn load_of_the_writes_equals_the_live_model(commands in commands()) {
        let mut model = Model::new();
        let mut store = BTreeMap::new();
        for (i, command) in commands.into_iter().enumerate() {
            let mut writes = Vec::new();
            model.apply(i as u64 + 1, &envelope(command), &mut writes);
            store_writes(&mut store, &writes);
            let loaded = Model::load(store.clone()).expect("the store loads");
            prop_assert_eq!(&loaded, &model);
        }
    }

    /// Arbitrary strings in ids and names never panic, and a refusal changes nothing.
    #[test]
    fn arbitrary_text_never_panics(id in ".{0,80}", name in ".{0,80}", other in ".{0,80}", n in any::<u64>()) {
        let mut h = Harness::new();
        h.with_tenant("t0", 4, 4096, 100);
        h.ok(create_zone("z0", "t0", "10.0.0.0/29"));
        h.ok(create_volume("v0", "t0", "a", 1));
        let samples = vec![
            Command::Bootstrap { site: name.clone(), admin_token_sha256: other.clone() },
            create_tenant(&name, 1, 1, 1),
            Command::CreateTenant { id: id.clone(), spec: TenantCreate { name: "tx".into(), description: other.clone(), quota: quota(1, 1, 1) } },
            create_zone(&name, &other, &id),
            create_policy(&id, Some(&name), &other, "z0", &other),
            Command::CreateVolume { id: id.clone(), spec: VolumeCreate { name: name.clone(), tenant: "t0".into(), size_gib: n, pool: other.clone(), image: None, source: None } },
            Command::ResizeVolume { id: "v0".into(), size_gib: n, if_match: None, cap_percent: 80 },
            Command::CloneVolume { id: "v0".into(), new_id: id.clone(), name: name.clone(), cap_percent: 80 },
            Command::SnapshotVolume { id: id.clone(), name: name.clone() },
            create_vm(&id, "t0", &name, 1, 64, &[&other], &["z0"]),
            create_vm(&id, "t0", "vm", 1, 64, &[], &[&name]),
            Command::MigrateVm {
                id: id.clone(),
                planned: PlannedMove {
                    vm: id.clone(),
                    placement: Placement { host: name.clone(), cap_percent: 80 },
                    live: true,
                    imports: vec![],
                },
            },
            Command::FinishMigration { id: id.clone(), from_host: name.clone() },
            Command::SetHostMaintenance { id: name.clone(), enabled: true, moves: vec![] },
            Command::DeleteVm { id: id.clone(), if_match: Some(n) },
            Command::DeleteZone { name: name.clone(), if_match: None },
            Command::CreateJoinToken { sha256: id.clone(), site: name.clone(), expires_at: other.clone() },
            Command::CreateJoinToken { sha256: "0".repeat(64), site: "primary".into(), expires_at: other.clone() },
            Command::JoinHost {
                auth: hci_shared::command::JoinAuth::Token { sha256: "0".repeat(64) },
                new_credential_sha256: Some(id.clone()),
                spec: hci_shared::hosts::HostJoin {
                    host_id: name.clone(),
                    site: "primary".into(),
                    arch: other.clone(),
                    agent_url: id.clone(),
                    inventory: Default::default(),
                },
            },
            Command::JoinHost {
                auth: hci_shared::command::JoinAuth::Credential { sha256: other.clone() },
                new_credential_sha256: None,
                spec: hci_shared::hosts::HostJoin {
                    host_id: name.clone(),
                    site: other.clone(),
                    arch: "x86_64".into(),
                    agent_url: id.clone(),
                    inventory: Default::default(),
                },
            },
            Command::SetHostLiveness { id: id.clone(), alive: n % 2 == 0, reason: other.clone() },
            Command::RestartVmsElsewhere {
                host: name.clone(),
                restarts: vec![hci_shared::command::PlannedRestart {
                    vm: id.clone(),
                    placement: Placement { host: other.clone(), cap_percent: (n % 256) as u8 },
                }],
                reason: other.clone(),
            },
        ];
        for command in samples {
            let _ = h.run(command);
            check_invariants(&h.model);
        }
    }

    /// Arbitrary bytes in a store are an error or a model, never a panic.
    #[test]
    fn load_of_garbage_never_panics(pairs in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(any::<u8>(), 0..40)), 0..8), prefix in pick(&["tenant/", "zone/", "vm/", "volume/", "policy/", "host/", "token/", "jointoken/", "hostcred/", "meta/site"])) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .map(|(key, value)| {
                let mut full = prefix.clone().into_bytes();
                full.extend(key);
                (full, value)
            })
            .collect();
        let _ = Model::load(pairs);
    }
}
