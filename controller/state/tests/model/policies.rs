//! Zone policy rules: zones exist and are not isolated, names unique, no duplicate flow.

use hci_shared::command::{Applied, Command};
use hci_shared::resources::ZoneKind;
use hci_shared::ErrorCode;

use crate::support::*;

fn setup() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 8192, 100);
    h.ok(create_zone("web", "finance", "10.1.0.0/24"));
    h.ok(create_zone("db", "finance", "10.2.0.0/24"));
    h.ok(create_zone_full("drill", "finance", "10.3.0.0/24", ZoneKind::Isolated, None));
    h
}

#[test]
fn create_records_the_policy_and_defaults_its_name_to_the_id() {
    let mut h = setup();
    let p = as_policy(h.ok(create_policy("p-1", None, "web", "db", "5432")));
    assert_eq!(p.name, "p-1");
    assert_eq!(p.ports, "5432");
    assert_eq!(p.revision, h.index);
    let named = as_policy(h.ok(create_policy("p-2", Some("ssh"), "web", "db", "22")));
    assert_eq!(named.name, "ssh");
    let ids: Vec<&str> = h.model.zone_policies().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p-1", "p-2"]);
}

#[test]
fn unknown_zones_are_invalid_naming_the_field() {
    let mut h = setup();
    let e = h.refused(create_policy("p", None, "ghost", "db", "22"));
    assert_invalid(&e, "from_zone", &["zone 'ghost' does not exist"]);
    let e = h.refused(create_policy("p", None, "web", "ghost", "22"));
    assert_invalid(&e, "to_zone", &["zone 'ghost' does not exist"]);
}

#[test]
fn isolated_zones_may_not_be_named() {
    let mut h = setup();
    let e = h.refused(create_policy("p", None, "drill", "db", "22"));
    assert_invalid(&e, "from_zone", &["zone drill is isolated; no policy may name it"]);
    let e = h.refused(create_policy("p", None, "web", "drill", "22"));
    assert_invalid(&e, "to_zone", &["isolated"]);
}

#[test]
fn duplicate_name_or_flow_is_a_conflict() {
    let mut h = setup();
    h.ok(create_policy("p-1", Some("pg"), "web", "db", "5432"));
    let e = h.refused(create_policy("p-2", Some("pg"), "web", "db", "22"));
    assert_refusal(&e, ErrorCode::Conflict, &["name 'pg'"]);
    let e = h.refused(create_policy("p-3", Some("other"), "web", "db", "5432"));
    assert_refusal(&e, ErrorCode::Conflict, &["'pg' (p-1) already allows this flow"]);
    // Same ports the other way round is a different flow.
    h.ok(create_policy("p-4", None, "db", "web", "5432"));
}

#[test]
fn delete_by_id() {
    let mut h = setup();
    h.ok(create_policy("p-1", Some("pg"), "web", "db", "5432"));
    let e = h.refused(Command::DeleteZonePolicy { id: "p-1".to_string(), if_match: Some(1) });
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    assert_eq!(h.ok(Command::DeleteZonePolicy { id: "p-1".to_string(), if_match: None }), Applied::Deleted);
    assert!(h.model.zone_policy("p-1").is_none());
    let e = h.refused(Command::DeleteZonePolicy { id: "p-1".to_string(), if_match: None });
    assert_refusal(&e, ErrorCode::NotFound, &["p-1"]);
    // The name is free again.
    h.ok(create_policy("p-2", Some("pg"), "web", "db", "5432"));
}
