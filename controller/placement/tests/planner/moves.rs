//! Moves and bookkeeping: migration, evacuation (all or nothing), HA restart, stale decisions,
//! `verify`, release and host removal.

use hci_placement::*;

use crate::support::*;

#[test]
fn a_migration_goes_elsewhere_and_keeps_the_tenant_usage() {
    let mut view = view_of([host("a"), host("b")]);
    let first = place_and_apply(&mut view, &request("vm"), &spread());
    assert_eq!((first.host.as_str(), first.previous_host.as_deref()), ("a", None));
    let used = view.tenant("t0").map(|t| t.used);
    let migration = view.move_request("vm", []).expect("placed");
    let moved = place_and_apply(&mut view, &migration, &spread());
    assert_eq!((moved.host.as_str(), moved.previous_host.as_deref()), ("b", Some("a")));
    assert_eq!(view.tenant("t0").map(|t| t.used), used);
    assert_eq!(view.host("a").map(|h| (h.allocated_vcpus(), h.vms().len())), Some((0, 0)));
    assert_eq!(view.host("b").map(|h| (h.allocated_vcpus(), h.vms().len())), Some((1, 1)));
    let nowhere = view.move_request("vm", ["a".to_string()]).expect("placed");
    let refusal = place(&view, &nowhere, &spread()).expect_err("a excluded, b is where it is");
    assert_eq!(
        refusal.to_string(),
        "no host fits vm vm: 1 host already running the vm, 1 host excluded by the request"
    );
}

#[test]
fn a_stale_decision_is_refused_and_changes_nothing() {
    let mut view = view_of([host("a"), host("b"), host("c")]);
    let first = place_and_apply(&mut view, &request("vm"), &spread());
    let before = view.clone();
    // Planned as a first placement, but the VM is already on `a`.
    let error = view.apply(&Decision { host: "b".to_string(), ..first.clone() }).expect_err("stale");
    assert_eq!(
        error.to_string(),
        "decision for vm 'vm' is stale: it was planned with the vm on no host, but it is on host 'a'"
    );
    let unknown = Decision { host: "zz".to_string(), ..first };
    assert_eq!(view.apply(&unknown), Err(ViewError::UnknownHost { host: "zz".to_string() }));
    assert_eq!(view, before);
}

#[test]
fn verify_rechecks_a_decision_against_the_view_as_it_is_now() {
    let mut view = view_of([HostSpec { cpus: 2, ..host("a") }]);
    let big = PlacementRequest { vcpus: 1, ..request("x") };
    let decision = place(&view, &big, &spread()).expect("fits");
    assert_eq!(verify(&view, &decision, &spread()), Ok(()));
    // Meanwhile another VM took the room.
    place_and_apply(&mut view, &request("other"), &spread());
    let refusal = verify(&view, &decision, &spread()).expect_err("no room any more");
    assert_eq!(refusal.to_string(), "vm x does not fit host a: would exceed the 80 % vCPU cap");
    view.set_host_state("a", HostState::Maintenance).expect("known host");
    assert_eq!(
        verify(&view, &decision, &spread()).map_err(|e| e.to_string()),
        Err("vm x does not fit host a: in maintenance".to_string())
    );
}

#[test]
fn an_evacuation_moves_every_vm_or_none() {
    let mut view = view_of([host("a"), host("b"), HostSpec { memory_mib: 4096, ..host("c") }]);
    for (vm, memory_mib) in [("small", 1024), ("mid", 2048), ("large", 4096)] {
        let pinned = PlacementRequest { memory_mib, ..request(vm) };
        view.apply(&Decision { host: "a".to_string(), previous_host: None, request: pinned }).expect("apply");
    }
    view.set_host_state("a", HostState::Maintenance).expect("known");
    let before = view.clone();
    let decisions = plan_evacuation(&mut view, "a", &spread()).expect("b and c have room");
    assert_eq!(view, before, "planning leaves the view as it was");
    let moves: Vec<(&str, &str)> = decisions.iter().map(|d| (d.request.vm.as_str(), d.host.as_str())).collect();
    assert_eq!(moves, [("large", "b"), ("mid", "c"), ("small", "b")]);
    for decision in &decisions {
        assert_eq!(verify(&view, decision, &spread()), Ok(()));
        view.apply(decision).expect("apply");
    }
    assert!(view.host("a").is_some_and(|h| h.vms().is_empty()));
    assert_eq!(view.remove_host("a").map(|spec| spec.id), Ok("a".to_string()));
}

#[test]
fn an_evacuation_that_does_not_fit_names_the_vms_left_over() {
    let mut view = view_of([host("a"), HostSpec { memory_mib: 4096, ..host("b") }]);
    for (vm, memory_mib) in [("huge", 8192), ("tiny", 512)] {
        let pinned = PlacementRequest { memory_mib, ..request(vm) };
        view.apply(&Decision { host: "a".to_string(), previous_host: None, request: pinned }).expect("apply");
    }
    let before = view.clone();
    let refusal = plan_evacuation(&mut view, "a", &spread()).expect_err("huge fits nowhere");
    assert_eq!(view, before);
    assert_eq!(
        refusal.to_string(),
        "cannot evacuate host 'a': 1 of 2 vm(s) fit nowhere: no host fits vm huge: \
         1 host already running the vm, 1 host would exceed the 80 % memory cap"
    );
    assert_eq!(plan_evacuation(&mut view, "zz", &spread()), Err(BatchRefused::UnknownHost { host: "zz".to_string() }));
}

#[test]
fn an_ha_restart_leaves_a_fenced_host() {
    let mut view = view_of([host("a"), host("b")]);
    place_and_apply(&mut view, &request("vm"), &spread());
    view.set_host_state("a", HostState::Fenced).expect("known");
    let decisions = plan_evacuation(&mut view, "a", &spread()).expect("b is ready");
    assert_eq!(decisions.len(), 1);
    assert_eq!((decisions[0].host.as_str(), decisions[0].previous_host.as_deref()), ("b", Some("a")));
}

#[test]
fn release_returns_everything_and_a_host_with_vms_cannot_be_removed() {
    let mut view = view_of([host("a")]);
    let empty = view.clone();
    let with_disk = PlacementRequest {
        anti_affinity_group: Some("g".to_string()),
        volumes: vec![VolumeDemand { pool: "local".to_string(), size_bytes: GIB }],
        ..request("vm")
    };
    let decision = place_and_apply(&mut view, &with_disk, &spread());
    assert_eq!(view.remove_host("a"), Err(ViewError::HostNotEmpty { host: "a".to_string(), vms: 1 }));
    let released = view.release("vm").expect("placed");
    assert_eq!((released.host, released.request), (decision.host, decision.request));
    assert_eq!(view, empty, "release is the exact inverse of apply");
    assert_eq!(view.release("vm"), Err(ViewError::UnknownVm { vm: "vm".to_string() }));
}
