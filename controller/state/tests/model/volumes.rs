//! Volume rules: tenant exists, names unique per tenant, disk quota, grow-only resize, snapshots,
//! clones, no deletion while attached.

use hci_shared::api::VolumeCreate;
use hci_shared::command::{Applied, Command};
use hci_shared::ErrorCode;

use crate::support::*;

fn setup() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 8192, 100);
    h.with_tenant("health", 8, 8192, 100);
    h
}

fn resize(id: &str, size_gib: u64) -> Command {
    Command::ResizeVolume { id: id.to_string(), size_gib, if_match: None, cap_percent: 80 }
}

fn snapshot(id: &str, name: &str) -> Command {
    Command::SnapshotVolume { id: id.to_string(), name: name.to_string() }
}

fn clone(id: &str, new_id: &str, name: &str) -> Command {
    Command::CloneVolume { id: id.to_string(), new_id: new_id.to_string(), name: name.to_string(), cap_percent: 80 }
}

#[test]
fn create_charges_disk_usage() {
    let mut h = setup();
    let v = as_volume(h.ok(create_volume("v1", "finance", "data", 30)));
    assert_eq!((v.size_gib, v.attached_to.clone(), v.revision), (30, None, h.index));
    assert_eq!(h.tenant("finance").usage.disk_gib, 30);
    assert_eq!(h.tenant("finance").revision, h.index, "a usage change is a change of the tenant");
    assert_eq!(h.model.volume_id_by_name("finance", "data"), Some("v1"));
}

#[test]
fn unknown_tenant_is_invalid_input() {
    let mut h = setup();
    let e = h.refused(create_volume("v1", "ghost", "data", 1));
    assert_invalid(&e, "tenant", &["ghost"]);
}

#[test]
fn names_are_unique_within_a_tenant_only() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "data", 1));
    let e = h.refused(create_volume("v2", "finance", "data", 1));
    assert_refusal(&e, ErrorCode::Conflict, &["volume 'data' already exists in tenant 'finance'"]);
    h.ok(create_volume("v2", "health", "data", 1));
    let e = h.refused(create_volume("v1", "health", "other", 1));
    assert_refusal(&e, ErrorCode::Conflict, &["volume id 'v1'"]);
}

#[test]
fn images_do_not_exist_yet() {
    let mut h = setup();
    let e = h.refused(Command::CreateVolume {
        id: "v1".to_string(),
        spec: VolumeCreate {
            name: "boot".to_string(),
            tenant: "finance".to_string(),
            size_gib: 10,
            pool: "default".to_string(),
            image: Some("debian-12".to_string()),
            source: None,
        },
    });
    assert_invalid(&e, "image", &["image 'debian-12' does not exist"]);
}

#[test]
fn disk_quota_is_enforced_with_numbers() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 90));
    let e = h.refused(create_volume("v2", "finance", "b", 20));
    assert_refusal(&e, ErrorCode::NoCapacity, &["disk_gib", "90 in use", "20 requested", "100 allowed"]);
    h.ok(create_volume("v2", "finance", "b", 10));
    assert_eq!(h.tenant("finance").usage.disk_gib, 100);
}

#[test]
fn resize_grows_and_charges_the_growth() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 40));
    let v = as_volume(h.ok(resize("v1", 70)));
    assert_eq!(v.size_gib, 70);
    assert_eq!(h.tenant("finance").usage.disk_gib, 70);
    let e = h.refused(resize("v1", 101));
    assert_refusal(&e, ErrorCode::NoCapacity, &["70 in use", "31 requested"]);
}

#[test]
fn resize_refuses_to_shrink_and_ignores_equal() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 40));
    let e = h.refused(resize("v1", 39));
    assert_invalid(&e, "size_gib", &["shrink", "40", "39"]);
    let before = h.volume("v1").clone();
    assert_eq!(as_volume(h.ok(resize("v1", 40))), before);
    assert_eq!(h.record_writes(), 0, "an equal size writes nothing but the audit record");
    assert_eq!(h.volume("v1").revision, before.revision);
}

#[test]
fn resize_checks_if_match_and_existence() {
    let mut h = setup();
    let e = h.refused(resize("ghost", 5));
    assert_refusal(&e, ErrorCode::NotFound, &["volume 'ghost'"]);
    h.ok(create_volume("v1", "finance", "a", 40));
    let e =
        h.refused(Command::ResizeVolume { id: "v1".to_string(), size_gib: 50, if_match: Some(99), cap_percent: 80 });
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
}

#[test]
fn snapshot_names_are_unique_per_volume() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 10));
    h.ok(create_volume("v2", "finance", "b", 10));
    let v = as_volume(h.ok(snapshot("v1", "nightly")));
    assert_eq!(v.snapshots.len(), 1);
    assert_eq!(v.snapshots[0].name, "nightly");
    assert_eq!(v.snapshots[0].created_at, AT);
    let e = h.refused(snapshot("v1", "nightly"));
    assert_refusal(&e, ErrorCode::Conflict, &["snapshot 'nightly'"]);
    h.ok(snapshot("v2", "nightly"));
    assert_eq!(h.refused(snapshot("ghost", "x")).code, ErrorCode::NotFound);
}

#[test]
fn clone_copies_tenant_pool_size_and_charges_quota() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 40));
    let c = as_volume(h.ok(clone("v1", "v2", "a-copy")));
    assert_eq!((c.tenant.as_str(), c.pool.as_str(), c.size_gib), ("finance", "default", 40));
    assert_eq!(c.cloned_from.as_deref(), Some("v1"));
    assert_eq!(h.tenant("finance").usage.disk_gib, 80);
    let e = h.refused(clone("v1", "v3", "a-copy"));
    assert_refusal(&e, ErrorCode::Conflict, &["'a-copy' already exists"]);
    let e = h.refused(clone("v1", "v3", "a-copy2"));
    assert_refusal(&e, ErrorCode::NoCapacity, &["80 in use", "40 requested"]);
    let e = h.refused(clone("v1", "v2", "a-copy3"));
    assert_refusal(&e, ErrorCode::Conflict, &["volume id 'v2'"]);
    assert_eq!(h.refused(clone("ghost", "v9", "x")).code, ErrorCode::NotFound);
}

#[test]
fn delete_is_refused_while_attached_and_releases_usage() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 40));
    h.ok(create_vm("m1", "finance", "web", 1, 512, &["v1"], &[]));
    let e = h.refused(Command::DeleteVolume { id: "v1".to_string(), if_match: None });
    assert_refusal(&e, ErrorCode::Conflict, &["attached to vm 'web' (m1)"]);
    h.ok(Command::DeleteVm { id: "m1".to_string(), if_match: None });
    let rev = h.volume("v1").revision;
    assert_eq!(h.ok(Command::DeleteVolume { id: "v1".to_string(), if_match: Some(rev) }), Applied::Deleted);
    assert_eq!(h.tenant("finance").usage.disk_gib, 0);
    assert_eq!(h.model.volume_id_by_name("finance", "a"), None);
}
