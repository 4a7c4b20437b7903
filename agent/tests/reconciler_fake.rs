//! The reconciler's logic against the in-memory hypervisor and pool: convergence, idempotence,
//! per-resource failure isolation, removal order, reboots, foreign domains, refusal of a profile the
//! host cannot run, disk hot-plug and hot-unplug with targets that never shift. (The same flows run against real libvirt in tests/tests/agent_vm_lifecycle.rs.)

mod reconciler_common;

use hci_agent::hypervisor::fake::Method;
use hci_agent::reconciler::{domain_name, reconcile};
use hci_agent::store::AgentState;
use hci_agent::volumes::fake::FakeOp;
use hci_agent::volumes::SourceSpec;
use hci_shared::agent::{VmRunState, VolumeSource};
use hci_shared::resources::PowerState;
use reconciler_common::{host, image, vm, volume, Host};

#[test]
fn converges_then_a_second_pass_does_nothing() {
    let mut h = host();
    h.offer(
        1,
        vec![vm("a", &["boot", "data"], PowerState::Running, 0)],
        vec![volume("boot", image()), volume("data", VolumeSource::Empty)],
    );
    let out = h.pass();
    assert_eq!(out.errors, 0, "{:?}", out.report);
    assert_eq!(out.report.converged_generation, Some(1));
    assert_eq!(
        h.pool.volume("boot").map(|v| v.source),
        Some(SourceSpec::Image { path: "/images/guest.qcow2".into(), format: "qcow2".into() })
    );
    let name = domain_name("h1", "a");
    assert_eq!(h.hv.domain(&name).map(|d| d.state), Some(VmRunState::Running));
    h.hv.clear_calls();
    let creates = h.pool.calls(FakeOp::Create);
    let lists = h.pool.calls(FakeOp::List);
    let again = h.pass();
    assert_eq!(h.pool.calls(FakeOp::List) - lists, 1, "a pass with nothing to do lists each pool once");
    assert_eq!(again.report.converged_generation, Some(1));
    assert_eq!(h.hv.count(Method::Define) + h.hv.count(Method::Start), 0, "nothing to do when converged");
    assert_eq!(h.pool.calls(FakeOp::Create), creates);
}

#[test]
fn one_failing_vm_does_not_stop_the_others_and_recovers() {
    let mut h = host();
    h.offer(
        1,
        vec![vm("a", &["va"], PowerState::Running, 0), vm("b", &["vb"], PowerState::Running, 0)],
        vec![volume("va", VolumeSource::Empty), volume("vb", VolumeSource::Empty)],
    );
    h.hv.fail_next_for(Method::Define, &domain_name("h1", "a"), 1);
    let out = h.pass();
    let a = out.report.vms.iter().find(|v| v.id == "a").expect("a reported");
    let b = out.report.vms.iter().find(|v| v.id == "b").expect("b reported");
    assert!(a.last_error.is_some(), "{a:?}");
    assert_eq!(b.state, VmRunState::Running);
    assert_eq!(out.report.converged_generation, None);
    let out = h.pass();
    assert_eq!(out.report.converged_generation, Some(1), "{:?}", out.report);
}

#[test]
fn removal_undefines_domains_before_deleting_their_volumes() {
    let mut h = host();
    h.offer(1, vec![vm("a", &["va"], PowerState::Running, 0)], vec![volume("va", VolumeSource::Empty)]);
    h.pass();
    // The undefine fails once: the volume must survive that pass.
    h.offer(2, vec![], vec![]);
    h.hv.fail_next(Method::Undefine, 1);
    let out = h.pass();
    assert!(h.pool.volume("va").is_some(), "volume kept while its domain still exists");
    assert_eq!(out.report.converged_generation, None);
    let out = h.pass();
    assert_eq!(out.report.converged_generation, Some(2));
    assert!(h.pool.volume("va").is_none());
    assert!(h.hv.domains().is_empty());
}

#[test]
fn reboot_happens_once_per_request_and_stop_start_follow_power() {
    let mut h = host();
    let vols = || vec![volume("va", VolumeSource::Empty)];
    h.offer(1, vec![vm("a", &["va"], PowerState::Running, 5)], vols());
    h.pass();
    let (shutdowns, starts) = (h.hv.count(Method::Shutdown), h.hv.count(Method::Start));
    assert_eq!(shutdowns, 0, "a VM first seen with reboot_count 5 is not rebooted");
    h.offer(2, vec![vm("a", &["va"], PowerState::Running, 6)], vols());
    let out = h.pass();
    assert!(out.state_changed);
    // A reboot is a shutdown (ACPI, forced after the timeout) and a start: it cannot be lost.
    assert_eq!((h.hv.count(Method::Shutdown), h.hv.count(Method::Start)), (shutdowns + 1, starts + 1));
    assert_eq!(out.report.vms[0].state, VmRunState::Running);
    h.pass();
    assert_eq!((h.hv.count(Method::Shutdown), h.hv.count(Method::Start)), (shutdowns + 1, starts + 1), "not again");
    h.offer(3, vec![vm("a", &["va"], PowerState::Stopped, 6)], vols());
    let out = h.pass();
    assert_eq!(out.report.vms[0].state, VmRunState::Stopped);
    assert_eq!(out.report.converged_generation, Some(3));
}

#[test]
fn foreign_domains_are_reported_and_never_touched() {
    let mut h = host();
    h.hv.add_foreign("legacy-erp", VmRunState::Running);
    h.offer(1, vec![], vec![]);
    let out = h.pass();
    assert_eq!(out.report.foreign_domains, vec!["legacy-erp".to_string()]);
    assert_eq!(h.hv.count(Method::Undefine) + h.hv.count(Method::Shutdown), 0);
    assert_eq!(h.hv.domain("legacy-erp").map(|d| d.state), Some(VmRunState::Running));
}

#[test]
fn without_a_desired_state_nothing_changes() {
    let mut h = host();
    h.offer(1, vec![vm("a", &["va"], PowerState::Running, 0)], vec![volume("va", VolumeSource::Empty)]);
    h.pass();
    let mut fresh = AgentState::default();
    let out = reconcile(&h.res, &mut fresh);
    assert_eq!(out.report.converged_generation, None);
    assert!(h.hv.domain(&domain_name("h1", "a")).is_some(), "an agent with no desired state removes nothing");
    assert!(h.pool.volume("va").is_some());
}

#[test]
fn a_profile_the_host_cannot_run_is_refused_before_anything_is_defined() {
    let mut h = host();
    let mut arm = vm("arm", &["va"], PowerState::Running, 0);
    arm.arch = "aarch64".into();
    arm.firmware = "aarch64-uefi".into();
    h.offer(1, vec![arm], vec![volume("va", VolumeSource::Empty)]);
    let out = h.pass();
    let error = out.report.vms[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("aarch64"), "{error}");
    assert_eq!(h.hv.count(Method::Define), 0);
}

#[test]
fn a_disk_added_to_a_running_vm_is_hot_plugged() {
    let mut h = host();
    h.offer(1, vec![vm("a", &["va"], PowerState::Running, 0)], vec![volume("va", VolumeSource::Empty)]);
    h.pass();
    let vols = vec![volume("va", VolumeSource::Empty), volume("vb", VolumeSource::Empty)];
    h.offer(2, vec![vm("a", &["va", "vb"], PowerState::Running, 0)], vols);
    let out = h.pass();
    assert_eq!(out.report.converged_generation, Some(2), "{:?}", out.report);
    assert!(h.hv.count(Method::AttachDisk) >= 1, "the new disk is attached live");
    assert_eq!(h.hv.count(Method::Start) + h.hv.count(Method::Shutdown), 1, "no restart: only the first start");
}

fn live_targets(h: &Host, vm_id: &str) -> Vec<(String, String)> {
    let d = h.hv.domain(&domain_name("h1", vm_id)).expect("domain");
    let running = d.running_spec.expect("running");
    running.disks.iter().map(|disk| (disk.volume_id.clone(), disk.target.clone())).collect()
}

#[test]
fn a_disk_removed_from_a_running_vm_is_unplugged_and_no_target_shifts() {
    let mut h = host();
    let vols = || ["va", "vb", "vc", "vd"].map(|id| volume(id, VolumeSource::Empty)).to_vec();
    h.offer(1, vec![vm("a", &["va", "vb", "vc"], PowerState::Running, 0)], vols());
    assert_eq!(h.pass().errors, 0);
    // The middle disk goes: it is unplugged; vc stays at vdc, the VM keeps running.
    h.offer(2, vec![vm("a", &["va", "vc"], PowerState::Running, 0)], vols());
    let out = h.pass();
    assert_eq!(out.report.converged_generation, Some(2), "{:?}", out.report);
    assert_eq!(live_targets(&h, "a"), vec![("va".into(), "vda".into()), ("vc".into(), "vdc".into())]);
    assert_eq!(h.hv.count(Method::DetachDisk), 1);
    assert_eq!(h.hv.count(Method::Start), 1, "no restart");
    // A new disk takes the freed target; nothing else moves; a second pass does nothing.
    h.offer(3, vec![vm("a", &["va", "vc", "vd"], PowerState::Running, 0)], vols());
    assert_eq!(h.pass().errors, 0);
    let mut live = live_targets(&h, "a");
    live.sort();
    assert_eq!(live, vec![("va".into(), "vda".into()), ("vc".into(), "vdc".into()), ("vd".into(), "vdb".into())]);
    h.hv.clear_calls();
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.hv.count(Method::Define) + h.hv.count(Method::AttachDisk) + h.hv.count(Method::DetachDisk), 0);
}

#[test]
fn a_guest_that_does_not_release_a_disk_is_retried_and_reported() {
    let mut h = host();
    let vols = || ["va", "vb"].map(|id| volume(id, VolumeSource::Empty)).to_vec();
    h.offer(1, vec![vm("a", &["va", "vb"], PowerState::Running, 0)], vols());
    assert_eq!(h.pass().errors, 0);
    h.hv.set_ignores_unplug(&domain_name("h1", "a"), true);
    h.offer(2, vec![vm("a", &["va"], PowerState::Running, 0)], vols());
    let out = h.pass();
    let error = out.report.vms[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("vdb"), "{error}");
    assert_eq!(h.state.applied.disk_targets["a"].get("vb").map(String::as_str), Some("vdb"), "kept until unplugged");
    // Once the guest lets go, the next pass finishes the unplug.
    h.hv.set_ignores_unplug(&domain_name("h1", "a"), false);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(live_targets(&h, "a"), vec![("va".into(), "vda".into())]);
    assert!(!h.state.applied.disk_targets["a"].contains_key("vb"));
}
