//! Zone rules: tenant exists, unique names, no overlapping CIDRs, unique VNIs, no deletion in use.

use hci_shared::command::{Applied, Command};
use hci_shared::resources::ZoneKind;
use hci_shared::ErrorCode;

use crate::support::*;

fn delete_zone(name: &str) -> Command {
    Command::DeleteZone { name: name.to_string(), if_match: None }
}

fn setup() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 8192, 100);
    h.with_tenant("health", 8, 8192, 100);
    h
}

#[test]
fn create_records_the_zone() {
    let mut h = setup();
    let z = as_zone(h.ok(create_zone_full("fin-net", "finance", "10.1.0.0/24", ZoneKind::Normal, Some(100))));
    assert_eq!(z.tenant, "finance");
    assert_eq!(z.cidr, "10.1.0.0/24");
    assert_eq!(z.vni, Some(100));
    assert_eq!(z.revision, h.index);
    assert_eq!(h.model.zone("fin-net"), Some(&z));
}

#[test]
fn unknown_tenant_is_invalid_input() {
    let mut h = setup();
    let e = h.refused(create_zone("x-net", "ghost", "10.1.0.0/24"));
    assert_invalid(&e, "tenant", &["tenant 'ghost' does not exist"]);
}

#[test]
fn duplicate_name_is_a_conflict() {
    let mut h = setup();
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    let e = h.refused(create_zone("fin-net", "health", "10.2.0.0/24"));
    assert_refusal(&e, ErrorCode::Conflict, &["zone 'fin-net' already exists"]);
}

#[test]
fn overlapping_cidr_is_a_conflict_naming_the_other_zone() {
    let mut h = setup();
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    let e = h.refused(create_zone("wide", "health", "10.0.0.0/8"));
    assert_refusal(&e, ErrorCode::Conflict, &["overlaps zone 'fin-net'", "10.1.0.0/24"]);
    let e = h.refused(create_zone("narrow", "health", "10.1.0.128/25"));
    assert_refusal(&e, ErrorCode::Conflict, &["fin-net"]);
    h.ok(create_zone("next", "health", "10.1.1.0/24"));
}

#[test]
fn bad_cidr_is_invalid_input() {
    let mut h = setup();
    let e = h.refused(create_zone("x", "finance", "10.1.0.1/24"));
    assert_invalid(&e, "cidr", &["host bits"]);
}

#[test]
fn duplicate_vni_is_a_conflict() {
    let mut h = setup();
    h.ok(create_zone_full("a", "finance", "10.1.0.0/24", ZoneKind::Normal, Some(7)));
    let e = h.refused(create_zone_full("b", "health", "10.2.0.0/24", ZoneKind::Normal, Some(7)));
    assert_refusal(&e, ErrorCode::Conflict, &["vni 7", "zone 'a'"]);
    h.ok(create_zone_full("b", "health", "10.2.0.0/24", ZoneKind::Normal, Some(8)));
    h.ok(create_zone_full("c", "health", "10.3.0.0/24", ZoneKind::Normal, None));
    h.ok(create_zone_full("d", "health", "10.4.0.0/24", ZoneKind::Normal, None));
}

#[test]
fn delete_is_refused_while_a_nic_or_policy_uses_it() {
    let mut h = setup();
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    h.ok(create_zone("fin-db", "finance", "10.2.0.0/24"));
    h.ok(create_vm("m1", "finance", "web", 1, 512, &[], &["fin-net"]));
    h.ok(create_policy("p1", Some("web-to-db"), "fin-net", "fin-db", "5432"));

    let e = h.refused(delete_zone("fin-net"));
    assert_refusal(&e, ErrorCode::Conflict, &["vm 'web' (m1)", "zone policy 'web-to-db' (p1)"]);
    let e = h.refused(delete_zone("fin-db"));
    assert_refusal(&e, ErrorCode::Conflict, &["web-to-db"]);

    h.ok(Command::DeleteZonePolicy { id: "p1".to_string(), if_match: None });
    h.ok(Command::DeleteVm { id: "m1".to_string(), if_match: None });
    assert_eq!(h.ok(delete_zone("fin-net")), Applied::Deleted);
    assert!(h.model.zone("fin-net").is_none());
    // Its CIDR is free again.
    h.ok(create_zone("fin-net2", "health", "10.1.0.0/24"));
}

#[test]
fn delete_unknown_or_stale_is_refused() {
    let mut h = setup();
    let e = h.refused(delete_zone("ghost"));
    assert_eq!(e.code, ErrorCode::NotFound);
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    let e = h.refused(Command::DeleteZone { name: "fin-net".to_string(), if_match: Some(1) });
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
}
