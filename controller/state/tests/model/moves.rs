//! Moves in the model: a live or cold migration planned by the leader and checked at apply, both
//! hosts' desired states during the move (source sends or keeps, target waits or imports), the
//! source's capacity held until the move finishes, and draining a host for maintenance (all moves
//! or none, under the cap).

use hci_placement::{Policy, Strategy};
use hci_shared::agent::{VmMigration, VolumeSource};
use hci_shared::command::{Command, PlannedMove};
use hci_shared::resources::{HostState, PowerState, VolumeImport};
use hci_shared::ErrorCode;
use hci_state::MovePlan;

use crate::support::*;

fn policy() -> Policy {
    Policy::new(80, Strategy::Spread).expect("80 is allowed")
}

/// Hosts of 4096 MiB with a local pool (`dir-qcow2`) or a shared one (`rbd`).
fn setup(hosts: &[&str], backend: &str) -> Harness {
    let mut h = finance_site();
    for host in hosts {
        join_host(&mut h, host, 4096, backend);
    }
    h
}

/// A VM of `memory_mib` with one 10 GiB volume, placed by the planner.
fn vm_with_volume(h: &mut Harness, id: &str, memory_mib: u64, power: PowerState) -> String {
    let volume = format!("{id}-disk");
    h.ok(create_volume(&volume, "finance", &volume, 10));
    let mut spec = vm_spec("finance", id, 1, memory_mib, &[&volume], &[]);
    spec.power = Some(power);
    let placement = h.model.plan_create(id, &spec, &policy()).expect("fits");
    let vm = as_vm(h.ok(Command::CreateVm { id: id.into(), spec, placement }));
    vm.host.expect("placed")
}

fn fake_imports(plan: &MovePlan) -> Vec<VolumeImport> {
    plan.exports
        .iter()
        .map(|volume| VolumeImport {
            volume: volume.clone(),
            url: format!("http://h1.example:7100/agent/v1/exports/{volume}.qcow2"),
            sha256: "ab".repeat(32),
            export: format!("{volume}.qcow2"),
        })
        .collect()
}

fn migrate(plan: &MovePlan) -> Command {
    let mut planned = plan.planned.clone();
    planned.imports = fake_imports(plan);
    Command::MigrateVm { id: planned.vm.clone(), planned }
}

fn memory(h: &Harness, host: &str) -> u64 {
    h.model.placement_view().host(host).expect("host").allocated_memory_mib()
}

#[test]
fn a_live_move_puts_the_vm_on_both_hosts_until_the_target_has_it() {
    let mut h = setup(&["h1", "h2"], "dir-qcow2");
    assert_eq!(vm_with_volume(&mut h, "m1", 1024, PowerState::Running), "h1");
    let plan = h.model.plan_move("m1", None, None, &policy()).expect("h2 has room");
    assert_eq!((plan.planned.placement.host.as_str(), plan.planned.live), ("h2", true));
    assert!(plan.exports.is_empty(), "a live move copies its disks itself");
    let vm = as_vm(h.ok(migrate(&plan)));
    let moving = vm.migration.clone().expect("in progress");
    assert_eq!((vm.host.as_deref(), moving.from_host.as_str(), moving.live), (Some("h2"), "h1", true));
    assert_eq!(h.volume("m1-disk").host.as_deref(), Some("h2"), "the volume goes with it");

    let source = h.model.host_desired("h1").expect("h1");
    let target = h.model.host_desired("h2").expect("h2");
    assert_eq!((source.generation, target.generation), (h.index, h.index), "both feeds move at once");
    let outgoing = VmMigration::Outgoing { to_host: "h2".into(), to_agent: "http://h2.example:7100".into() };
    assert_eq!(source.vms[0].migration, Some(outgoing));
    assert_eq!(target.vms[0].migration, Some(VmMigration::Incoming { from_host: "h1".into() }));
    assert_eq!(source.volumes[0].id, "m1-disk", "the source keeps its copy while the vm leaves");
    assert_eq!(target.volumes[0].id, "m1-disk", "the target makes its copy");
    assert_eq!((memory(&h, "h1"), memory(&h, "h2")), (1024, 1024), "booked on both hosts while it moves");
    assert_eq!(h.tenant("finance").usage.memory_mib, 1024, "charged once");

    let e = h.refused(migrate(&plan));
    assert_refusal(&e, ErrorCode::Conflict, &["already moving from host 'h1'"]);
    let e = h.refused(Command::FinishMigration { id: "m1".into(), from_host: "h2".into() });
    assert_refusal(&e, ErrorCode::Conflict, &["not moving from host 'h2'"]);

    let moving: Vec<&str> = h.model.moving_vms().map(|vm| vm.id.as_str()).collect();
    assert_eq!(moving, ["m1"], "the finisher's index");
    let vm = as_vm(h.ok(Command::FinishMigration { id: "m1".into(), from_host: "h1".into() }));
    assert!(vm.migration.is_none());
    assert_eq!(h.model.moving_vms().count(), 0);
    let source = h.model.host_desired("h1").expect("h1");
    assert!(source.vms.is_empty() && source.volumes.is_empty(), "the source lets go: {source:?}");
    assert_eq!(h.model.host_desired("h2").expect("h2").vms[0].migration, None);
    assert_eq!((memory(&h, "h1"), memory(&h, "h2")), (0, 1024));
}

#[test]
fn a_cold_move_imports_the_sources_exports_and_the_source_keeps_its_copy_until_the_end() {
    let mut h = setup(&["h1", "h2"], "dir-qcow2");
    vm_with_volume(&mut h, "m1", 512, PowerState::Stopped);
    let e = h.model.plan_move("m1", None, Some(true), &policy()).expect_err("stopped");
    assert_refusal(&e, ErrorCode::Conflict, &["stopped; move it cold"]);
    let plan = h.model.plan_move("m1", Some("h2"), None, &policy()).expect("cold by default");
    assert_eq!((plan.planned.live, plan.exports.clone()), (false, vec!["m1-disk".to_string()]));
    assert_eq!(plan.source_agent, "http://h1.example:7100");

    let mut without = plan.planned.clone();
    without.imports.clear();
    let e = h.refused(Command::MigrateVm { id: "m1".into(), planned: without });
    assert_refusal(&e, ErrorCode::Conflict, &["local volumes [m1-disk] but the move imports []"]);

    h.ok(migrate(&plan));
    let source = h.model.host_desired("h1").expect("h1");
    assert!(source.vms.is_empty(), "a cold move's source undefines the stopped vm");
    assert_eq!(source.volumes.len(), 1, "but keeps its volume until the move finishes");
    let target = h.model.host_desired("h2").expect("h2");
    assert_eq!(target.vms[0].migration, None, "a cold move is a plain definition on the target");
    match &target.volumes[0].source {
        VolumeSource::Image(image) => {
            assert_eq!(image.source, "http://h1.example:7100/agent/v1/exports/m1-disk.qcow2");
            assert_eq!(image.sha256, "ab".repeat(32));
        }
        other => panic!("the target imports the export, not {other:?}"),
    }
    h.ok(Command::FinishMigration { id: "m1".into(), from_host: "h1".into() });
    assert!(h.model.host_desired("h1").expect("h1").volumes.is_empty());
}

#[test]
fn a_shared_pool_moves_cold_without_exports() {
    let mut h = setup(&["h1", "h2"], "rbd");
    vm_with_volume(&mut h, "m1", 512, PowerState::Stopped);
    let plan = h.model.plan_move("m1", None, None, &policy()).expect("fits");
    assert!(plan.exports.is_empty(), "rbd volumes stay in place");
    h.ok(migrate(&plan));
    assert_eq!(h.model.host_desired("h2").expect("h2").vms.len(), 1);
}

#[test]
fn bad_moves_are_refused_and_change_nothing() {
    let mut h = setup(&["h1", "h2"], "dir-qcow2");
    vm_with_volume(&mut h, "m1", 512, PowerState::Running);
    let e = h.model.plan_move("m1", Some("h9"), None, &policy()).expect_err("unknown host");
    assert_invalid(&e, "host", &["host 'h9' does not exist"]);
    let e = h.model.plan_move("m1", Some("h1"), None, &policy()).expect_err("same host");
    assert_refusal(&e, ErrorCode::Conflict, &["already on host 'h1'"]);
    let e = h.model.plan_move("m1", None, Some(false), &policy()).expect_err("running");
    assert_refusal(&e, ErrorCode::Conflict, &["running; move it live"]);
    assert_eq!(h.model.plan_move("ghost", None, None, &policy()).expect_err("no vm").code, ErrorCode::NotFound);
    // The leader's plan is checked again: a planned move onto a host that filled up is refused.
    let plan = h.model.plan_move("m1", Some("h2"), None, &policy()).expect("fits now");
    let mut spec = vm_spec("finance", "big", 1, 3000, &[], &[]);
    spec.power = Some(PowerState::Running);
    h.ok(Command::CreateVm {
        id: "big".into(),
        spec,
        placement: Some(hci_shared::command::Placement { host: "h2".into(), cap_percent: 80 }),
    });
    let e = h.refused(migrate(&plan));
    assert_refusal(&e, ErrorCode::NoCapacity, &["80 % memory cap"]);
}

#[test]
fn the_source_stays_booked_while_a_vm_leaves_it() {
    let mut h = setup(&["h1", "h2"], "dir-qcow2");
    vm_with_volume(&mut h, "m1", 3000, PowerState::Running);
    let plan = h.model.plan_move("m1", Some("h2"), None, &policy()).expect("fits");
    h.ok(migrate(&plan));
    // 3000 MiB are still on h1 (the vm is running there until it arrives): 3000 more do not fit it.
    let spec = vm_spec("finance", "next", 1, 1000, &[], &[]);
    let e = h.model.plan_create("next", &spec, &policy()).expect_err("both hosts hold m1");
    assert_refusal(&e, ErrorCode::NoCapacity, &["2 hosts would exceed the 80 % memory cap"]);
    h.ok(Command::FinishMigration { id: "m1".into(), from_host: "h1".into() });
    let placed = h.model.plan_create("next", &spec, &policy()).expect("h1 is free now");
    assert_eq!(placed.map(|p| p.host).as_deref(), Some("h1"));
}

#[test]
fn a_drain_moves_every_vm_or_none_and_the_host_returns_to_service_without_moves_back() {
    let mut h = setup(&["h1", "h2", "h3"], "dir-qcow2");
    // Every vm pinned to h1 by its placement.
    let pinned = |h: &mut Harness, id: &str, memory: u64, power: PowerState| {
        let mut spec = vm_spec("finance", id, 1, memory, &[], &[]);
        spec.power = Some(power);
        let placement = Some(hci_shared::command::Placement { host: "h1".into(), cap_percent: 80 });
        h.ok(Command::CreateVm { id: id.into(), spec, placement });
    };
    pinned(&mut h, "run", 1024, PowerState::Running);
    pinned(&mut h, "cold", 1024, PowerState::Stopped);
    pinned(&mut h, "fill2", 768, PowerState::Running);
    let plans = h.model.plan_drain("h1", &policy()).expect("h2 and h3 take them");
    let live: Vec<(String, bool)> = plans.iter().map(|p| (p.planned.vm.clone(), p.planned.live)).collect();
    assert_eq!(live.len(), 3);
    assert!(live.contains(&("run".into(), true)) && live.contains(&("cold".into(), false)), "{live:?}");

    // A vm placed on h1 after the plan makes the drain stale: refused, nothing changed.
    let stale: Vec<PlannedMove> = plans.iter().map(|p| p.planned.clone()).collect();
    pinned(&mut h, "late", 256, PowerState::Stopped);
    let e = h.refused(Command::SetHostMaintenance { id: "h1".into(), enabled: true, moves: stale });
    assert_refusal(&e, ErrorCode::Conflict, &["vm 'late' was placed on host 'h1' after the drain was planned"]);
    h.ok(Command::DeleteVm { id: "late".into(), if_match: None });

    let moves: Vec<PlannedMove> = plans.iter().map(|p| p.planned.clone()).collect();
    let host = match h.ok(Command::SetHostMaintenance { id: "h1".into(), enabled: true, moves }) {
        hci_shared::command::Applied::Host(host) => host,
        other => panic!("{other:?}"),
    };
    assert_eq!(host.state, HostState::Maintenance);
    for vm in ["run", "cold", "fill2"] {
        let moved = h.vm(vm);
        assert_ne!(moved.host.as_deref(), Some("h1"), "{vm} moves off h1");
        assert_eq!(moved.migration.as_ref().map(|m| m.reason.as_str()), Some("maintenance"));
    }
    assert!(h.model.plan_create("x", &vm_spec("finance", "x", 1, 64, &[], &[]), &policy()).is_ok());
    let placed = h.model.plan_create("x", &vm_spec("finance", "x", 1, 64, &[], &[]), &policy()).expect("fits");
    assert_ne!(placed.map(|p| p.host).as_deref(), Some("h1"), "nothing new lands on a host in maintenance");

    let e = h.refused(Command::SetHostMaintenance { id: "h2".into(), enabled: false, moves: vec![] });
    assert_refusal(&e, ErrorCode::Conflict, &["host 'h2' is ready, not in maintenance"]);
    h.ok(Command::SetHostMaintenance { id: "h1".into(), enabled: false, moves: vec![] });
    assert_eq!(h.model.host("h1").map(|h| h.state), Some(HostState::Ready));
    assert_ne!(h.vm("run").host.as_deref(), Some("h1"), "nothing moves back");
}

#[test]
fn a_drain_the_rest_of_the_cluster_cannot_take_is_refused_up_front() {
    let mut h = setup(&["h1", "h2"], "dir-qcow2");
    for (id, host) in [("a", "h1"), ("b", "h2")] {
        let spec = vm_spec("finance", id, 1, 3000, &[], &[]);
        let placement = Some(hci_shared::command::Placement { host: host.into(), cap_percent: 80 });
        h.ok(Command::CreateVm { id: id.into(), spec, placement });
    }
    let e = h.model.plan_drain("h1", &policy()).expect_err("h2 is full");
    assert_refusal(
        &e,
        ErrorCode::NoCapacity,
        &["cannot evacuate host 'h1'", "1 of 1 vm(s) fit nowhere", "80 % memory cap"],
    );
    assert_eq!(h.model.host("h1").map(|h| h.state), Some(HostState::Ready), "nothing changed");
}

#[test]
fn a_deleted_shared_pool_volume_is_retired_on_its_host_and_a_local_one_is_not() {
    let mut h = setup(&["h1", "h2"], "rbd");
    vm_with_volume(&mut h, "m1", 512, PowerState::Stopped);
    let plan = h.model.plan_move("m1", Some("h2"), None, &policy()).expect("fits");
    h.ok(migrate(&plan));
    h.ok(Command::FinishMigration { id: "m1".into(), from_host: "h1".into() });
    h.ok(Command::DeleteVm { id: "m1".into(), if_match: None });
    h.ok(Command::DeleteVolume { id: "m1-disk".into(), if_match: None });
    let desired = h.model.host_desired("h2").expect("h2");
    let retired: Vec<(&str, &str)> = desired.retired_volumes.iter().map(|r| (r.pool.as_str(), r.id.as_str())).collect();
    assert_eq!(retired, [("default", "m1-disk")], "the host it lived on last deletes it");
    assert_eq!(desired.generation, h.index);
    assert!(h.model.host_desired("h1").expect("h1").retired_volumes.is_empty(), "the old host is not told");

    let mut local = setup(&["h1"], "dir-qcow2");
    vm_with_volume(&mut local, "m1", 512, PowerState::Stopped);
    local.ok(Command::DeleteVm { id: "m1".into(), if_match: None });
    local.ok(Command::DeleteVolume { id: "m1-disk".into(), if_match: None });
    assert!(local.model.host_desired("h1").expect("h1").retired_volumes.is_empty(), "local pools delete by absence");
}

#[test]
fn an_offline_host_drains_only_stopped_vms_on_shared_pools() {
    let mut h = setup(&["h1", "h2"], "rbd");
    let pinned = |h: &mut Harness, id: &str, power: PowerState| {
        let mut spec = vm_spec("finance", id, 1, 256, &[], &[]);
        spec.power = Some(power);
        let placement = Some(hci_shared::command::Placement { host: "h1".into(), cap_percent: 80 });
        h.ok(Command::CreateVm { id: id.into(), spec, placement });
    };
    pinned(&mut h, "parked", PowerState::Stopped);
    pinned(&mut h, "busy", PowerState::Running);
    h.ok(Command::SetHostLiveness { id: "h1".into(), alive: false, reason: "silent".into() });
    let e = h.model.plan_drain("h1", &policy()).expect_err("busy may still run there");
    assert_refusal(&e, ErrorCode::Conflict, &["host 'h1' is offline", "[busy]"]);
    h.ok(Command::DeleteVm { id: "busy".into(), if_match: None });
    let plans = h.model.plan_drain("h1", &policy()).expect("a stopped vm without local volumes");
    assert_eq!((plans.len(), plans[0].planned.live, plans[0].exports.len()), (1, false, 0));
    let moves = plans.into_iter().map(|p| p.planned).collect();
    h.ok(Command::SetHostMaintenance { id: "h1".into(), enabled: true, moves });
    assert_eq!(h.vm("parked").host.as_deref(), Some("h2"));
}
