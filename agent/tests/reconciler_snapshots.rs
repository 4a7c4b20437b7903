//! Snapshots in the desired state, on fakes: volume snapshots taken and deleted as the list says,
//! a rollback acted on once per serial and never under a running VM, clones from a snapshot, VM
//! disk-only snapshots and a revert that waits for the VM to stop. (On real Ceph and libvirt: the
//! volume and hypervisor tests, and tests/tests/agent_snapshots.rs.)

mod reconciler_common;

use hci_agent::hypervisor::fake::Method;
use hci_agent::reconciler::{domain_name, PassOutcome};
use hci_agent::volumes::fake::FakeOp;
use hci_shared::agent::{Rollback, VolumeDesired, VolumeSource};
use hci_shared::resources::PowerState;
use reconciler_common::{host, vm, volume, Host};

fn snapshot_names(h: &Host, id: &str) -> Vec<String> {
    h.pool.volume(id).map(|v| v.snapshots.into_iter().map(|s| s.name).collect()).unwrap_or_default()
}

fn with_snapshots(id: &str, snapshots: &[&str], rollback: Option<(&str, u64)>) -> VolumeDesired {
    let mut v = volume(id, VolumeSource::Empty);
    v.snapshots = snapshots.iter().map(|s| s.to_string()).collect();
    v.rollback = rollback.map(|(to, serial)| Rollback { to: to.into(), serial });
    v
}

fn volume_error(out: &PassOutcome, id: &str) -> Option<String> {
    out.report.volumes.iter().find(|v| v.id == id).and_then(|v| v.last_error.clone())
}

#[test]
fn volume_snapshots_follow_the_list_and_a_rollback_runs_once_per_serial() {
    let mut h = host();
    h.offer(1, vec![], vec![with_snapshots("v", &[], None)]);
    assert_eq!(h.pass().errors, 0);
    h.pool.write("v", b"before").expect("write");
    h.offer(2, vec![], vec![with_snapshots("v", &["s1"], None)]);
    assert_eq!(h.pass().errors, 0);
    h.pool.write("v", b"after").expect("write");
    h.offer(3, vec![], vec![with_snapshots("v", &["s1", "s2"], None)]);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(snapshot_names(&h, "v"), ["s1", "s2"]);
    let snapshots_taken = h.pool.calls(FakeOp::Snapshot);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pool.calls(FakeOp::Snapshot), snapshots_taken, "nothing twice");
    assert_eq!(h.pool.calls(FakeOp::ListSnapshots), 0, "no listing per pass");

    // Roll back to s1 (serial 1): once; the same serial again does nothing.
    h.offer(4, vec![], vec![with_snapshots("v", &["s1", "s2"], Some(("s1", 1)))]);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pool.volume("v").map(|v| v.content), Some(b"before".to_vec()));
    h.pool.write("v", b"later").expect("write");
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pool.calls(FakeOp::Rollback), 1);
    assert_eq!(h.pool.volume("v").map(|v| v.content), Some(b"later".to_vec()));

    // A clone from s2, then s2 is dropped from the list: deleted; the clone keeps its bytes.
    let mut clone = volume("c", VolumeSource::Clone { from: "v".into(), snapshot: Some("s2".into()) });
    clone.size_gib = 2;
    h.offer(5, vec![], vec![with_snapshots("v", &["s1"], Some(("s1", 1))), clone]);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pool.volume("c").map(|v| v.content), Some(b"after".to_vec()));
    assert_eq!(snapshot_names(&h, "v"), ["s1"]);
}

#[test]
fn a_rollback_waits_while_a_running_vm_uses_the_volume() {
    let mut h = host();
    let running = vm("a", &["v"], PowerState::Running, 0);
    h.offer(1, vec![running.clone()], vec![with_snapshots("v", &["s1"], None)]);
    assert_eq!(h.pass().errors, 0);
    h.offer(2, vec![running], vec![with_snapshots("v", &["s1"], Some(("s1", 1)))]);
    let out = h.pass();
    assert!(volume_error(&out, "v").is_some_and(|e| e.contains("VM a runs on this volume")), "{:?}", out.report);
    assert_eq!(h.pool.calls(FakeOp::Rollback), 0);
    // Stopped (same generation step as the controller would do): rolled back, then started again.
    h.offer(3, vec![vm("a", &["v"], PowerState::Stopped, 0)], vec![with_snapshots("v", &["s1"], Some(("s1", 1)))]);
    h.pass();
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pool.calls(FakeOp::Rollback), 1);
}

#[test]
fn vm_snapshots_are_taken_once_and_a_revert_waits_for_the_vm_to_stop() {
    let mut h = host();
    let vols = || vec![volume("boot", VolumeSource::Empty), volume("data", VolumeSource::Empty)];
    let mut a = vm("a", &["boot", "data"], PowerState::Running, 0);
    h.offer(1, vec![a.clone()], vols());
    assert_eq!(h.pass().errors, 0);
    a.snapshots = vec!["s1".into(), "s2".into()];
    h.offer(2, vec![a.clone()], vols());
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.hv.count(Method::SnapshotDisks), 2, "each snapshot once");
    let name = domain_name("h1", "a");
    assert_eq!(h.hv.domain(&name).map(|d| d.snapshots.len()), Some(2));

    // Revert to s1 (the last listed once s2 is dropped): waits while running.
    a.snapshots = vec!["s1".into()];
    a.revert = Some(Rollback { to: "s1".into(), serial: 1 });
    h.offer(3, vec![a.clone()], vols());
    let out = h.pass();
    let error = out.report.vms[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("stop the VM first"), "{error}");
    assert_eq!(h.hv.count(Method::RevertDisks), 0);
    a.power = PowerState::Stopped;
    h.offer(4, vec![a.clone()], vols());
    h.pass();
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.hv.count(Method::RevertDisks), 1);
    let left: Option<Vec<String>> = h.hv.domain(&name).map(|d| d.snapshots.into_iter().map(|s| s.name).collect());
    assert_eq!(left, Some(vec!["s1".to_string()]), "s2 went with the revert; s1 is there again");
    // Started again: the revert is not repeated.
    a.power = PowerState::Running;
    h.offer(5, vec![a], vols());
    assert_eq!(h.pass().errors, 0);
    assert_eq!(h.hv.count(Method::RevertDisks), 1);
}
