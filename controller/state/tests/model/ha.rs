//! HA in the model: the leader's restart plan for a failed host (HA VMs on shared storage only, as
//! many as fit), `RestartVmsElsewhere` applied only while the host is offline (fenced, VMs and
//! their volumes moved, every host involved touched, all checked together), why a VM left on a
//! failed host is down, the isolation part of each host's feed, and unfencing.

use hci_placement::{Policy, Strategy};
use hci_shared::agent_validate;
use hci_shared::api::VolumeCreate;
use hci_shared::command::{Applied, Command, JoinAuth, Placement, PlannedMove, PlannedRestart};
use hci_shared::hosts::HostJoin;
use hci_shared::resources::{Host, HostState, PowerState};
use hci_shared::ErrorCode;

use crate::support::*;

fn policy() -> Policy {
    Policy::new(80, Strategy::Spread).expect("80 is allowed")
}

/// The join body of host `id` (2 CPUs, `memory_mib`, a shared pool `ceph` and a local pool `local`).
fn ha_join_spec(id: &str, memory_mib: u64) -> HostJoin {
    let mut spec = host_join_spec(id, memory_mib, "rbd", None);
    spec.inventory.pools = vec![pool("ceph", "rbd"), pool("local", "dir-qcow2")];
    spec
}

/// Joins host `id` (see [`ha_join_spec`]); returns the log index of the join.
fn join(h: &mut Harness, id: &str, memory_mib: u64) -> u64 {
    join_spec(h, ha_join_spec(id, memory_mib))
}

fn setup(hosts: &[&str]) -> Harness {
    let mut h = finance_site();
    for host in hosts {
        join(&mut h, host, 4096);
    }
    h
}

/// VM `id` of `memory_mib` placed on `host`, with a 10 GiB volume in `pool` when given.
fn vm_on(h: &mut Harness, id: &str, host: &str, memory_mib: u64, pool: Option<&str>, ha: bool, power: PowerState) {
    let mut volumes = Vec::new();
    if let Some(pool) = pool {
        let volume = format!("{id}-disk");
        h.ok(Command::CreateVolume {
            id: volume.clone(),
            spec: VolumeCreate {
                name: volume.clone(),
                tenant: "finance".into(),
                size_gib: 10,
                pool: pool.into(),
                image: None,
                source: None,
            },
        });
        volumes.push(volume);
    }
    let refs: Vec<&str> = volumes.iter().map(String::as_str).collect();
    let mut spec = vm_spec("finance", id, 1, memory_mib, &refs, &[]);
    spec.ha = Some(ha);
    spec.power = Some(power);
    let placement = Some(Placement { host: host.into(), cap_percent: 80 });
    let vm = as_vm(h.ok(Command::CreateVm { id: id.into(), spec, placement }));
    assert_eq!(vm.host.as_deref(), Some(host));
}

fn offline(h: &mut Harness, host: &str) {
    h.ok(Command::SetHostLiveness { id: host.into(), alive: false, reason: "lease expired".into() });
}

fn restart(host: &str, restarts: Vec<PlannedRestart>) -> Command {
    Command::RestartVmsElsewhere { host: host.into(), restarts, reason: "no heartbeat for 15000 ms".into() }
}

fn planned(vm: &str, host: &str) -> PlannedRestart {
    PlannedRestart { vm: vm.into(), placement: Placement { host: host.into(), cap_percent: 80 } }
}

fn as_host(applied: Applied) -> Host {
    match applied {
        Applied::Host(host) => host,
        other => panic!("expected a host, got {other:?}"),
    }
}

fn generation(h: &Harness, host: &str) -> u64 {
    h.model.host(host).expect("host").desired_generation
}

/// h1 holds: `shared` (HA, a ceph volume), `bare` (HA, no volume), `local` (HA, a local volume),
/// `pet` (not HA), `idle` (HA, shared, stopped).
fn failed_h1() -> Harness {
    let mut h = setup(&["h1", "h2", "h3"]);
    vm_on(&mut h, "shared", "h1", 512, Some("ceph"), true, PowerState::Running);
    vm_on(&mut h, "bare", "h1", 256, None, true, PowerState::Running);
    vm_on(&mut h, "local", "h1", 256, Some("local"), true, PowerState::Running);
    vm_on(&mut h, "pet", "h1", 256, None, false, PowerState::Running);
    vm_on(&mut h, "idle", "h1", 128, Some("ceph"), true, PowerState::Stopped);
    offline(&mut h, "h1");
    h
}

#[test]
fn the_plan_restarts_ha_vms_on_shared_storage_and_says_why_not_the_others() {
    let h = failed_h1();
    let (restarts, down) = h.model.plan_ha_restart("h1", &policy());
    let vms: Vec<&str> = restarts.iter().map(|r| r.vm.as_str()).collect();
    assert_eq!(vms, ["shared", "bare", "idle"], "running ones first, largest first");
    assert!(restarts.iter().all(|r| r.placement.host != "h1" && r.placement.cap_percent == 80));
    let hosts: Vec<&str> = restarts.iter().map(|r| r.placement.host.as_str()).collect();
    assert_eq!(hosts, ["h2", "h3", "h2"], "spread, each planned with the earlier ones booked");
    assert_eq!(down.len(), 2, "{down:?}");
    assert_eq!(down[0].0, "local");
    assert!(down[0].1.contains("its volumes are only on host h1 (local-disk)"), "{down:?}");
    assert_eq!(down[1], ("pet".to_string(), "not HA".to_string()));
    assert_eq!(h.model.plan_ha_restart("h1", &policy()), (restarts, down), "deterministic");
}

#[test]
fn a_restart_fences_the_host_and_moves_the_vms_with_their_volumes() {
    let mut h = failed_h1();
    let before = h.index;
    let (restarts, _) = h.model.plan_ha_restart("h1", &policy());
    let host = as_host(h.ok(restart("h1", restarts)));
    assert_eq!(host.state, HostState::Fenced);
    assert_eq!(host.state_reason, "no heartbeat for 15000 ms");
    assert_eq!(host.state_since, AT);
    for id in ["h1", "h2", "h3"] {
        assert_eq!(generation(&h, id), h.index, "{id} touched");
    }
    assert!(before < h.index);
    assert_eq!(h.vm("shared").host.as_deref(), Some("h2"));
    assert!(h.vm("shared").migration.is_none(), "a restart is not a move: nothing to hand over");
    assert_eq!(h.volume("shared-disk").host.as_deref(), Some("h2"), "the shared volume goes with it");
    assert_eq!(h.vm("bare").host.as_deref(), Some("h3"));
    assert_eq!(h.vm("local").host.as_deref(), Some("h1"));
    assert_eq!(h.volume("local-disk").host.as_deref(), Some("h1"));
    assert_eq!(h.vm("pet").host.as_deref(), Some("h1"));

    // The feeds: the fenced host keeps only what was not restarted; the targets run the rest.
    let on = |h: &Harness, host: &str| -> Vec<String> {
        h.model.host_desired(host).expect("host").vms.into_iter().map(|vm| vm.id).collect()
    };
    assert_eq!(on(&h, "h1"), ["local", "pet"]);
    assert_eq!(on(&h, "h2"), ["idle", "shared"]);
    assert_eq!(on(&h, "h3"), ["bare"]);
    let placed = h.model.placement_view().host("h1").expect("h1").allocated_memory_mib();
    assert_eq!(placed, 512, "the fenced host holds only what stayed");

    // Down, and why; the restarted ones are not.
    let down = |h: &Harness, vm: &str| h.model.vm_down_reason(h.vm(vm));
    assert!(down(&h, "shared").is_none() && down(&h, "bare").is_none());
    let local = down(&h, "local").expect("down");
    assert!(local.contains("host h1 is fenced") && local.contains("its volumes are only on host h1"), "{local}");
    assert!(down(&h, "pet").expect("down").contains("not HA"));

    // Applied once only: the host is no longer offline.
    let e = h.refused(restart("h1", vec![]));
    assert_refusal(&e, ErrorCode::Conflict, &["host 'h1' is fenced, not offline"]);
}

#[test]
fn only_an_offline_host_is_fenced_so_a_late_decision_is_harmless() {
    let mut h = setup(&["h1", "h2"]);
    vm_on(&mut h, "bare", "h1", 256, None, true, PowerState::Running);
    let e = h.refused(restart("h1", vec![planned("bare", "h2")]));
    assert_refusal(&e, ErrorCode::Conflict, &["host 'h1' is ready, not offline"]);
    offline(&mut h, "h1");
    assert!(h.model.vm_down_reason(h.vm("bare")).expect("down").contains("once the host is fenced"));
    let (restarts, down) = h.model.plan_ha_restart("h1", &policy());
    assert!(down.is_empty());
    // The host comes back before the decision is applied.
    h.ok(Command::SetHostLiveness { id: "h1".into(), alive: true, reason: "heartbeat".into() });
    let e = h.refused(restart("h1", restarts));
    assert_refusal(&e, ErrorCode::Conflict, &["is ready, not offline"]);
    assert_eq!(h.vm("bare").host.as_deref(), Some("h1"));
    assert!(h.model.vm_down_reason(h.vm("bare")).is_none());
    let e = h.refused(restart("nope", vec![]));
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn a_host_with_nothing_to_restart_is_fenced_all_the_same() {
    let mut h = setup(&["h1", "h2"]);
    vm_on(&mut h, "pet", "h1", 256, None, false, PowerState::Running);
    offline(&mut h, "h1");
    let (restarts, down) = h.model.plan_ha_restart("h1", &policy());
    assert!(restarts.is_empty());
    assert_eq!(down.len(), 1);
    assert_eq!(as_host(h.ok(restart("h1", restarts))).state, HostState::Fenced);
    // Liveness never unfences it; an operator does.
    h.ok(Command::SetHostLiveness { id: "h1".into(), alive: true, reason: "heartbeat".into() });
    assert_eq!(h.model.host("h1").map(|h| h.state), Some(HostState::Fenced));
}

#[test]
fn a_decision_is_refused_whole_when_any_vm_may_not_restart_or_the_targets_are_full() {
    let mut h = failed_h1();
    let cases: Vec<(Vec<PlannedRestart>, ErrorCode, &str)> = vec![
        (vec![planned("pet", "h2")], ErrorCode::Conflict, "cannot be restarted elsewhere: not HA"),
        (vec![planned("local", "h2")], ErrorCode::Conflict, "its volumes are only on host h1"),
        (vec![planned("bare", "h1")], ErrorCode::Conflict, "on the failed host itself"),
        (vec![planned("bare", "h2"), planned("bare", "h3")], ErrorCode::InvalidInput, "planned twice"),
        (vec![planned("gone", "h2")], ErrorCode::Conflict, "no longer exists"),
        (vec![planned("bare", "nope")], ErrorCode::NoCapacity, "nope"),
    ];
    for (restarts, code, fragment) in cases {
        let e = h.refused(restart("h1", restarts));
        assert_refusal(&e, code, &[fragment]);
    }
    // Each fits h2 alone (80 % of 4096 MiB is 3276), not together: checked all together.
    let mut h2 = setup(&[]);
    join(&mut h2, "h1", 8192);
    join(&mut h2, "h2", 4096);
    vm_on(&mut h2, "a", "h1", 2000, None, true, PowerState::Running);
    vm_on(&mut h2, "b", "h1", 1000, None, true, PowerState::Running);
    vm_on(&mut h2, "c", "h1", 1000, None, true, PowerState::Running);
    offline(&mut h2, "h1");
    let e = h2.refused(restart("h1", vec![planned("a", "h2"), planned("b", "h2"), planned("c", "h2")]));
    assert_refusal(&e, ErrorCode::NoCapacity, &["80 % memory cap"]);
    // The plan restarts what fits and reports the rest.
    let (restarts, down) = h2.model.plan_ha_restart("h1", &policy());
    let vms: Vec<&str> = restarts.iter().map(|r| r.vm.as_str()).collect();
    assert_eq!(vms, ["a", "b"]);
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].0, "c");
    assert!(down[0].1.starts_with("fits on no other host: "), "{down:?}");
    h2.ok(restart("h1", restarts));
    let c = h2.model.vm_down_reason(h2.vm("c")).expect("down");
    assert!(c.contains("no other host had room"), "{c}");
    drop(h);
}

#[test]
fn a_vm_in_a_move_is_skipped_by_the_plan_and_refused_if_planned() {
    let mut h = setup(&["h1", "h2", "h3"]);
    vm_on(&mut h, "mover", "h2", 256, None, true, PowerState::Running);
    let planned_move = PlannedMove {
        vm: "mover".into(),
        placement: Placement { host: "h1".into(), cap_percent: 80 },
        live: true,
        imports: vec![],
    };
    h.ok(Command::MigrateVm { id: "mover".into(), planned: planned_move });
    offline(&mut h, "h1");
    let (restarts, down) = h.model.plan_ha_restart("h1", &policy());
    assert!(restarts.is_empty());
    assert_eq!(down.len(), 1);
    assert!(down[0].1.contains("moving from host 'h2'"), "{down:?}");
    let e = h.refused(restart("h1", vec![planned("mover", "h3")]));
    assert_refusal(&e, ErrorCode::Conflict, &["moving from host 'h2'"]);
}

#[test]
fn each_feed_carries_its_isolation_and_fencing_and_unfencing_touch_the_peers() {
    let mut h = failed_h1();
    h.ok(Command::SetHostLiveness { id: "h1".into(), alive: true, reason: "heartbeat".into() });
    let desired = h.model.host_desired_isolated("h1", 6000).expect("h1");
    agent_validate::host_desired(&desired).expect("the agent accepts the feed");
    let isolation = desired.isolation.expect("isolation");
    assert_eq!(isolation.fence_after_ms, 6000);
    assert_eq!(isolation.fence_vms, ["bare", "shared"], "running HA VMs on shared storage only");
    let peers: Vec<(&str, &str)> = isolation.peers.iter().map(|p| (p.host_id.as_str(), p.agent_url.as_str())).collect();
    assert_eq!(peers, [("h2", "http://h2.example:7100"), ("h3", "http://h3.example:7100")]);
    assert!(h.model.host_desired("h1").expect("h1").isolation.is_none(), "the plain model view has none");

    // Stopping an HA VM drops it from the fence list at a new generation.
    h.ok(Command::SetVmPower { id: "bare".into(), action: hci_shared::command::PowerAction::Stop, placement: None });
    let isolation = h.model.isolation("h1", 6000).expect("h1");
    assert_eq!(isolation.fence_vms, ["shared"]);
    assert_eq!(generation(&h, "h1"), h.index);

    offline(&mut h, "h1");
    let (restarts, _) = h.model.plan_ha_restart("h1", &policy());
    h.ok(restart("h1", restarts));
    let peers = |h: &Harness, host: &str| -> Vec<String> {
        h.model.isolation(host, 1).expect("host").peers.into_iter().map(|p| p.host_id).collect()
    };
    assert_eq!(peers(&h, "h2"), ["h3"], "a fenced host is no peer");
    assert_eq!(h.model.isolation("h2", 1).expect("h2").fence_vms, ["shared"]);

    let e = h.refused(Command::SetHostMaintenance { id: "h2".into(), enabled: false, moves: vec![] });
    assert_refusal(&e, ErrorCode::Conflict, &["host 'h2' is ready, not in maintenance or fenced"]);
    let back = as_host(h.ok(Command::SetHostMaintenance { id: "h1".into(), enabled: false, moves: vec![] }));
    assert_eq!(back.state, HostState::Ready);
    assert_eq!(back.state_reason, "returned to service by an operator");
    for id in ["h1", "h2", "h3"] {
        assert_eq!(generation(&h, id), h.index, "{id} touched by the unfencing");
    }
    assert_eq!(peers(&h, "h2"), ["h1", "h3"]);
    assert_eq!(h.vm("shared").host.as_deref(), Some("h2"), "nothing moves back");
}

#[test]
fn a_host_joining_changes_every_other_hosts_peers() {
    let mut h = setup(&["h1", "h2"]);
    let joined = join(&mut h, "h3", 4096);
    for id in ["h1", "h2", "h3"] {
        assert_eq!(generation(&h, id), joined, "{id}");
    }
    // A re-join that changes nothing touches nothing.
    let credential = credential_of("h3");
    let spec = ha_join_spec("h3", 4096);
    let rejoin = |spec: HostJoin| Command::JoinHost {
        auth: JoinAuth::Credential { sha256: credential.clone() },
        new_credential_sha256: None,
        spec,
    };
    h.ok(rejoin(spec.clone()));
    assert_eq!(h.record_writes(), 0);
    assert_eq!(generation(&h, "h1"), joined);
    // A new agent URL: every other host's peer list changes (its own feed does not).
    h.ok(rejoin(HostJoin { agent_url: "http://10.0.0.3:7100".into(), ..spec.clone() }));
    for id in ["h1", "h2"] {
        assert_eq!(generation(&h, id), h.index, "{id}");
    }
    assert_eq!(generation(&h, "h3"), joined);
    // A pool that becomes shared changes which VMs it fences: its own feed moves.
    let mut shared = spec;
    shared.agent_url = "http://10.0.0.3:7100".into();
    shared.inventory.pools[1].backend = "rbd".into();
    h.ok(rejoin(shared));
    assert_eq!(generation(&h, "h3"), h.index);
    let isolation = h.model.isolation("h1", 1).expect("h1");
    assert!(isolation.peers.iter().any(|p| p.agent_url == "http://10.0.0.3:7100"));
}

mod plans {
    //! Whatever is on the failed host and however full the others are, the leader's plan applies as
    //! planned, keeps every host within the cap, restarts only HA VMs on shared storage, and
    //! accounts for every VM of the host exactly once.

    use std::collections::BTreeSet;

    use hci_shared::command::Command;
    use hci_shared::resources::PowerState;
    use proptest::prelude::*;

    use super::{join, offline, policy, restart, setup, vm_on};
    use crate::support::*;

    #[derive(Debug, Clone)]
    struct Spec {
        memory_mib: u64,
        pool: Option<&'static str>,
        ha: bool,
        running: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let pool = prop_oneof![2 => Just(None), 2 => Just(Some("ceph")), 1 => Just(Some("local"))];
        (64u64..1500, pool, prop::bool::weighted(0.8), prop::bool::weighted(0.7))
            .prop_map(|(memory_mib, pool, ha, running)| Spec { memory_mib, pool, ha, running })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn a_plan_applies_as_planned_within_the_cap(
            failed in prop::collection::vec(spec(), 0..7),
            elsewhere in prop::collection::vec((64u64..2000, 0usize..2), 0..5),
        ) {
            let mut h = setup(&[]);
            join(&mut h, "h1", 16384);
            join(&mut h, "h2", 4096);
            join(&mut h, "h3", 4096);
            for (i, (memory_mib, host)) in elsewhere.iter().enumerate() {
                let mut spec = vm_spec("finance", &format!("o{i}"), 1, *memory_mib, &[], &[]);
                spec.power = Some(PowerState::Stopped);
                let placement = Some(hci_shared::command::Placement { host: ["h2", "h3"][*host].into(), cap_percent: 80 });
                let _ = h.run(Command::CreateVm { id: format!("o{i}"), spec, placement });
            }
            let mut on_h1 = BTreeSet::new();
            for (i, s) in failed.iter().enumerate() {
                let power = if s.running { PowerState::Running } else { PowerState::Stopped };
                let id = format!("f{i}");
                vm_on(&mut h, &id, "h1", s.memory_mib, s.pool, s.ha, power);
                on_h1.insert(id);
            }
            offline(&mut h, "h1");
            let (restarts, down) = h.model.plan_ha_restart("h1", &policy());
            let mut accounted: Vec<&str> = restarts.iter().map(|r| r.vm.as_str()).chain(down.iter().map(|(vm, _)| vm.as_str())).collect();
            accounted.sort_unstable();
            prop_assert_eq!(accounted, on_h1.iter().map(String::as_str).collect::<Vec<_>>());
            for restart in &restarts {
                let vm = h.vm(&restart.vm);
                let local = vm.volumes.iter().any(|v| h.volume(v).pool == "local");
                prop_assert!(vm.ha && !local, "{} restarted", vm.id);
            }
            let planned = restarts.clone();
            h.ok(restart("h1", restarts));
            for restart in &planned {
                prop_assert_eq!(h.vm(&restart.vm).host.as_deref(), Some(restart.placement.host.as_str()));
            }
            for host in h.model.placement_view().hosts() {
                if host.id() != "h1" {
                    prop_assert!(host.within_cap(80), "{} over the cap", host.id());
                }
            }
            for (vm, _) in &down {
                prop_assert_eq!(h.vm(vm).host.as_deref(), Some("h1"));
                prop_assert!(h.model.vm_down_reason(h.vm(vm)).is_some());
            }
        }
    }
}
