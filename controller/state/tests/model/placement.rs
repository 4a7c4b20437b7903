//! Placement in the model: the leader's plan, the check at apply time (racing decisions never
//! over-commit a host), anti-affinity, binding volumes to the host, and each host's desired state
//! with its generation.

use hci_placement::{Policy, Strategy};
use hci_shared::agent::VolumeSource;
use hci_shared::agent_validate;
use hci_shared::command::{Command, Placement, PowerAction};
use hci_shared::resources::{DiskFormat, ImageSource, PowerState};
use hci_shared::ErrorCode;

use crate::support::*;

fn join(h: &mut Harness, id: &str, memory_mib: u64) {
    join_host(h, id, memory_mib, "dir-qcow2");
}

fn setup(hosts: &[&str]) -> Harness {
    let mut h = finance_site();
    for host in hosts {
        join(&mut h, host, 4096);
    }
    h
}

fn policy() -> Policy {
    Policy::new(80, Strategy::Spread).expect("80 is allowed")
}

/// Plans on the current model, like the leader does, and returns the command to propose.
fn planned(
    h: &Harness,
    id: &str,
    memory_mib: u64,
    volumes: &[&str],
    group: Option<&str>,
) -> Result<Command, hci_shared::ApiError> {
    let mut spec = vm_spec("finance", id, 1, memory_mib, volumes, &[]);
    spec.anti_affinity_group = group.map(str::to_string);
    let placement = h.model.plan_create(id, &spec, &policy())?;
    Ok(Command::CreateVm { id: id.to_string(), spec, placement })
}

#[test]
fn a_vm_is_placed_under_the_cap_and_appears_in_its_hosts_desired_state() {
    let mut h = setup(&["h1", "h2"]);
    let Command::CreateVolume { id, mut spec } = create_volume("v1", "finance", "root", 10) else { unreachable!() };
    spec.source = Some(ImageSource {
        url: "file:///var/lib/guest.qcow2".into(),
        sha256: "ab".repeat(32),
        format: DiskFormat::Qcow2,
    });
    h.ok(Command::CreateVolume { id, spec });
    let vm = as_vm(h.ok(planned(&h, "m1", 1024, &["v1"], None).expect("fits")));
    assert_eq!(vm.host.as_deref(), Some("h1"), "spread: equal loads go to the lowest id");
    assert_eq!(h.volume("v1").host.as_deref(), Some("h1"), "a vm's volumes are placed with it");
    let created = h.index;
    let desired = h.model.host_desired("h1").expect("h1 exists");
    assert_eq!(desired.generation, created);
    assert_eq!(desired.vms.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["m1"]);
    assert_eq!(desired.vms[0].disks, ["v1"]);
    assert_eq!(desired.volumes.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["v1"]);
    assert!(matches!(&desired.volumes[0].source, VolumeSource::Image(i) if i.source == "file:///var/lib/guest.qcow2"));
    agent_validate::host_desired(&desired).expect("the agent accepts the feed");
    assert!(h.model.host_desired("h2").expect("h2").vms.is_empty());

    let vm = as_vm(h.ok(planned(&h, "m2", 1024, &[], None).expect("fits")));
    assert_eq!(vm.host.as_deref(), Some("h2"), "spread: the less loaded host");
    assert_eq!(h.model.host_desired("h1").expect("h1").generation, created, "h1 untouched");

    h.ok(Command::SetVmPower { id: "m1".into(), action: PowerAction::Stop, placement: None });
    let desired = h.model.host_desired("h1").expect("h1");
    assert_eq!((desired.generation, desired.vms[0].power), (h.index, PowerState::Stopped));

    h.ok(Command::DeleteVm { id: "m1".into(), if_match: None });
    let desired = h.model.host_desired("h1").expect("h1");
    assert_eq!(desired.generation, h.index);
    assert!(desired.vms.is_empty(), "delete releases the placement");
    assert_eq!(desired.volumes.len(), 1, "the volume stays on its host until it is deleted");
    // The pool holds 100 GiB: 80 GiB under the cap.
    let e = h.refused(Command::ResizeVolume { id: "v1".into(), size_gib: 81, if_match: None, cap_percent: 80 });
    assert_refusal(&e, ErrorCode::NoCapacity, &["host h1 would exceed the 80 % disk cap of pool default"]);
    let e = h.refused(Command::ResizeVolume { id: "v1".into(), size_gib: 75, if_match: None, cap_percent: 70 });
    assert_refusal(&e, ErrorCode::NoCapacity, &["would exceed the 70 % disk cap"]);
    let e = h.refused(Command::ResizeVolume { id: "v1".into(), size_gib: 75, if_match: None, cap_percent: 90 });
    assert_invalid(&e, "cap_percent", &["90 is above the 80 % cap"]);
    h.ok(Command::ResizeVolume { id: "v1".into(), size_gib: 80, if_match: None, cap_percent: 80 });
    assert_eq!(h.model.host_desired("h1").expect("h1").generation, h.index, "a resize moves the feed");
    let h1 = h.model.placement_view().host("h1").expect("h1");
    assert_eq!(h1.allocated_memory_mib(), 0);
    assert_eq!(h1.pool_allocated_bytes("default"), Some(80 << 30), "the volume left there still counts");
    h.ok(Command::DeleteVolume { id: "v1".into(), if_match: None });
    assert!(h.model.host_desired("h1").expect("h1").volumes.is_empty());
    assert_eq!(h.model.placement_view().host("h1").expect("h1").pool_allocated_bytes("default"), Some(0));
}

#[test]
fn two_decisions_planned_on_the_same_state_never_over_commit_a_host() {
    let mut h = setup(&["h1"]);
    // Both plans see an empty h1; 2 x 2048 MiB is above 80 % of 4096.
    let first = planned(&h, "m1", 2048, &[], None).expect("fits");
    let second = planned(&h, "m2", 2048, &[], None).expect("fits on the same state");
    h.ok(first);
    let e = h.refused(second);
    assert_refusal(&e, ErrorCode::NoCapacity, &["vm m2 does not fit host h1", "80 % memory cap"]);
    assert!(h.model.vm("m2").is_none(), "the loser changed nothing");
    // Planned now, it is refused before it is proposed, counting the hosts per constraint.
    let e = planned(&h, "m3", 2048, &[], None).expect_err("no room");
    assert_refusal(&e, ErrorCode::NoCapacity, &["1 host would exceed the 80 % memory cap"]);
}

#[test]
fn anti_affinity_spreads_a_group_and_refuses_when_every_host_has_a_member() {
    let mut h = setup(&["h1", "h2"]);
    let a = as_vm(h.ok(planned(&h, "a", 256, &[], Some("db")).expect("fits")));
    // Pack would put b next to a; the group keeps them apart.
    let mut spec = vm_spec("finance", "b", 1, 256, &[], &[]);
    spec.anti_affinity_group = Some("db".into());
    let placement = h.model.plan_create("b", &spec, &policy().with_strategy(Strategy::Pack)).expect("fits");
    let b = as_vm(h.ok(Command::CreateVm { id: "b".into(), spec, placement }));
    assert_ne!(a.host, b.host);
    let e = planned(&h, "c", 256, &[], Some("db")).expect_err("two hosts, two members");
    assert_refusal(&e, ErrorCode::NoCapacity, &["2 hosts already running a member of anti-affinity group db"]);
}

#[test]
fn a_vm_created_before_any_host_is_placed_by_its_start() {
    let mut h = setup(&[]);
    let command = planned(&h, "m1", 512, &[], None).expect("no hosts: nothing to plan");
    assert!(matches!(&command, Command::CreateVm { placement: None, .. }));
    h.ok(command);
    join(&mut h, "h1", 4096);
    let placement = h.model.plan_start("m1", &policy()).expect("fits");
    assert_eq!(placement.as_ref().map(|p| p.host.as_str()), Some("h1"));
    let vm = as_vm(h.ok(Command::SetVmPower { id: "m1".into(), action: PowerAction::Start, placement }));
    assert_eq!(vm.host.as_deref(), Some("h1"));
    assert_eq!(h.model.host_desired("h1").expect("h1").vms.len(), 1);
}

#[test]
fn a_decision_above_the_80_percent_cap_or_off_the_volumes_host_is_refused_at_apply() {
    let mut h = setup(&["h1", "h2"]);
    let spec = vm_spec("finance", "m1", 1, 512, &[], &[]);
    let placement = Some(Placement { host: "h1".into(), cap_percent: 95 });
    let e = h.refused(Command::CreateVm { id: "m1".into(), spec, placement });
    assert_invalid(&e, "placement.cap_percent", &["above the maximum of 80"]);

    h.ok(create_volume("v1", "finance", "root", 1));
    h.ok(planned(&h, "m1", 512, &["v1"], None).expect("fits"));
    h.ok(Command::DeleteVm { id: "m1".into(), if_match: None });
    let bound = h.volume("v1").host.clone().expect("bound");
    let other = if bound == "h1" { "h2" } else { "h1" };
    let spec = vm_spec("finance", "m2", 1, 512, &["v1"], &[]);
    let planned_host = h.model.plan_create("m2", &spec, &policy()).expect("fits").expect("placed");
    assert_eq!(planned_host.host, bound, "a vm goes where its volumes are");
    let placement = Some(Placement { host: other.into(), cap_percent: 80 });
    let e = h.refused(Command::CreateVm { id: "m2".into(), spec, placement });
    assert_refusal(&e, ErrorCode::Conflict, &["its volumes are on host"]);
}

mod invariant {
    //! The cap is an invariant: whatever stale state decisions were planned on (creates, moves,
    //! drains), no host ever holds more than 80 % of its vCPUs (at 4:1) or memory once they are
    //! applied, counting a moving VM on both of its hosts.

    use hci_shared::command::Command;
    use hci_shared::resources::PowerState;
    use proptest::prelude::*;

    use super::{policy, setup};
    use crate::support::*;

    /// One step: create a VM, move one or drain a host (planned on the model as it was `stale`
    /// steps ago), finish a move, return a host to service, or delete a VM.
    #[derive(Debug, Clone)]
    enum Step {
        Create { vcpus: u32, memory_mib: u64, stale: usize },
        Delete { pick: usize },
        Move { pick: usize, stale: usize },
        Finish { pick: usize },
        Drain { host: usize, stale: usize },
        Return { host: usize },
    }

    const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u32..4, 128u64..2048, 0usize..4).prop_map(|(vcpus, memory_mib, stale)| Step::Create { vcpus, memory_mib, stale }),
            1 => (0usize..16).prop_map(|pick| Step::Delete { pick }),
            2 => (0usize..16, 0usize..4).prop_map(|(pick, stale)| Step::Move { pick, stale }),
            2 => (0usize..16).prop_map(|pick| Step::Finish { pick }),
            1 => (0usize..3, 0usize..4).prop_map(|(host, stale)| Step::Drain { host, stale }),
            1 => (0usize..3).prop_map(|host| Step::Return { host }),
        ]
    }

    fn within_cap(h: &Harness) -> Result<(), String> {
        for host in h.model.placement_view().hosts() {
            let (vcpus, mib) = (host.allocated_vcpus(), host.allocated_memory_mib());
            if vcpus * 100 * 100 > 80 * 2 * 400 || mib * 100 > 80 * HOST_MIB {
                return Err(format!("host {} holds {vcpus} vCPUs and {mib} MiB", host.id()));
            }
        }
        Ok(())
    }

    const HOST_MIB: u64 = 4096;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn decisions_planned_on_stale_states_never_take_a_host_past_the_cap(steps in prop::collection::vec(step(), 1..32)) {
            let mut h = setup(&HOSTS);
            let mut history = vec![h.model.clone()];
            let mut created: Vec<String> = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Create { vcpus, memory_mib, stale } => {
                        let id = format!("m{i}");
                        let mut spec = vm_spec("finance", &id, vcpus, memory_mib, &[], &[]);
                        spec.power = Some(PowerState::Stopped);
                        let planned_on = &history[history.len().saturating_sub(1 + stale)];
                        if let Ok(placement) = planned_on.plan_create(&id, &spec, &policy()) {
                            if h.run(Command::CreateVm { id: id.clone(), spec, placement }).is_ok() {
                                created.push(id);
                            }
                        }
                    }
                    Step::Delete { pick } => {
                        if !created.is_empty() {
                            let id = created.remove(pick % created.len());
                            h.ok(Command::DeleteVm { id, if_match: None });
                        }
                    }
                    Step::Move { pick, stale } => {
                        if !created.is_empty() {
                            let id = &created[pick % created.len()];
                            let planned_on = &history[history.len().saturating_sub(1 + stale)];
                            if let Ok(plan) = planned_on.plan_move(id, None, None, &policy()) {
                                let _ = h.run(Command::MigrateVm { id: id.clone(), planned: plan.planned });
                            }
                        }
                    }
                    Step::Finish { pick } => {
                        let moving: Vec<(String, String)> = h
                            .model
                            .vms()
                            .filter_map(|vm| Some((vm.id.clone(), vm.migration.as_ref()?.from_host.clone())))
                            .collect();
                        if !moving.is_empty() {
                            let (id, from_host) = moving[pick % moving.len()].clone();
                            h.ok(Command::FinishMigration { id, from_host });
                        }
                    }
                    Step::Drain { host, stale } => {
                        let planned_on = &history[history.len().saturating_sub(1 + stale)];
                        if let Ok(plans) = planned_on.plan_drain(HOSTS[host], &policy()) {
                            let moves = plans.into_iter().map(|p| p.planned).collect();
                            let _ = h.run(Command::SetHostMaintenance { id: HOSTS[host].into(), enabled: true, moves });
                        }
                    }
                    Step::Return { host } => {
                        let _ = h.run(Command::SetHostMaintenance { id: HOSTS[host].into(), enabled: false, moves: vec![] });
                    }
                }
                prop_assert!(within_cap(&h).is_ok(), "{:?}", within_cap(&h));
                history.push(h.model.clone());
            }
        }
    }
}
