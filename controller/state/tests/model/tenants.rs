//! Tenant rules: unique names, quota never below usage, no deletion while anything is owned.

use hci_shared::api::TenantUpdate;
use hci_shared::command::{Applied, Command};
use hci_shared::resources::{etag, Usage};
use hci_shared::ErrorCode;

use crate::support::*;

fn update(
    name: &str,
    description: Option<&str>,
    q: Option<hci_shared::resources::Quota>,
    if_match: Option<u64>,
) -> Command {
    Command::UpdateTenant {
        name: name.to_string(),
        update: TenantUpdate { description: description.map(str::to_string), quota: q },
        if_match,
    }
}

#[test]
fn create_sets_revision_created_at_and_zero_usage() {
    let mut h = Harness::new();
    let t = h.with_tenant("finance", 8, 4096, 100);
    assert_eq!(t.revision, 1);
    assert_eq!(t.created_at, AT);
    assert_eq!(t.usage, Usage::default());
    assert_eq!(t.id, "tid-finance");
    assert_eq!(h.model.tenant("finance"), Some(&t));
}

#[test]
fn duplicate_name_is_a_conflict() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    let e = h.refused(create_tenant("finance", 1, 1, 1));
    assert_refusal(&e, ErrorCode::Conflict, &["tenant 'finance' already exists"]);
}

#[test]
fn invalid_spec_is_refused_at_apply_too() {
    let mut h = Harness::new();
    let e = h.refused(create_tenant("Not_A_Name", 1, 1, 1));
    assert_invalid(&e, "name", &[]);
}

#[test]
fn tenants_are_listed_by_name() {
    let mut h = Harness::new();
    for name in ["zeta", "alpha", "mid"] {
        h.with_tenant(name, 1, 1, 1);
    }
    let names: Vec<&str> = h.model.tenants().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[test]
fn update_changes_description_and_quota() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    let t = as_tenant(h.ok(update("finance", Some("money"), Some(quota(16, 8192, 200)), Some(1))));
    assert_eq!(t.description, "money");
    assert_eq!(t.quota, quota(16, 8192, 200));
    assert_eq!(t.revision, 2);
}

#[test]
fn update_that_changes_nothing_keeps_the_revision() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    let t = as_tenant(h.ok(update("finance", Some(""), Some(quota(8, 4096, 100)), None)));
    assert_eq!(t.revision, 1);
    assert_eq!(h.record_writes(), 0);
}

#[test]
fn stale_if_match_is_precondition_failed() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    let e = h.refused(update("finance", Some("x"), None, Some(7)));
    assert_refusal(&e, ErrorCode::PreconditionFailed, &[&etag(1)]);
    let e = h.refused(Command::DeleteTenant { name: "finance".to_string(), if_match: Some(9) });
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
}

#[test]
fn quota_below_usage_is_no_capacity_naming_dimension() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    h.ok(create_volume("v1", "finance", "data", 60));
    h.ok(create_vm("m1", "finance", "web", 4, 1024, &[], &[]));
    let e = h.refused(update("finance", None, Some(quota(8, 4096, 50)), None));
    assert_refusal(&e, ErrorCode::NoCapacity, &["quota.disk_gib", "50", "60"]);
    let e = h.refused(update("finance", None, Some(quota(3, 4096, 100)), None));
    assert_refusal(&e, ErrorCode::NoCapacity, &["quota.vcpus", "3", "4"]);
    let e = h.refused(update("finance", None, Some(quota(8, 1000, 100)), None));
    assert_refusal(&e, ErrorCode::NoCapacity, &["quota.memory_mib", "1000", "1024"]);
    // Exactly the usage is fine.
    h.ok(update("finance", None, Some(quota(4, 1024, 60)), None));
}

#[test]
fn unknown_tenant_is_not_found() {
    let mut h = Harness::new();
    let e = h.refused(update("ghost", None, None, None));
    assert_refusal(&e, ErrorCode::NotFound, &["tenant 'ghost'"]);
    let e = h.refused(Command::DeleteTenant { name: "ghost".to_string(), if_match: None });
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn delete_is_refused_while_resources_are_owned() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    h.ok(create_volume("v1", "finance", "data", 10));
    h.ok(create_vm("m1", "finance", "web", 1, 512, &[], &["fin-net"]));
    let e = h.refused(Command::DeleteTenant { name: "finance".to_string(), if_match: None });
    assert_refusal(&e, ErrorCode::Conflict, &["zone 'fin-net'", "volume 'data' (v1)", "vm 'web' (m1)"]);

    h.ok(Command::DeleteVm { id: "m1".to_string(), if_match: None });
    h.ok(Command::DeleteVolume { id: "v1".to_string(), if_match: None });
    h.ok(Command::DeleteZone { name: "fin-net".to_string(), if_match: None });
    let rev = h.tenant("finance").revision;
    assert_eq!(h.ok(Command::DeleteTenant { name: "finance".to_string(), if_match: Some(rev) }), Applied::Deleted);
    assert!(h.model.tenant("finance").is_none());
}

#[test]
fn delete_refusal_lists_at_most_ten_owned_resources() {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 4096, 100);
    for i in 0..13 {
        h.ok(create_volume(&format!("v{i:02}"), "finance", &format!("d{i:02}"), 1));
    }
    let e = h.refused(Command::DeleteTenant { name: "finance".to_string(), if_match: None });
    assert_refusal(&e, ErrorCode::Conflict, &["volume 'd00' (v00)", "volume 'd09' (v09)", "and 3 more"]);
    assert!(!e.message.contains("d10"));
}
