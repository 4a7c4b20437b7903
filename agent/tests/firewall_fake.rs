//! The firewall [`Enforcer`] against the in-memory fake: when it applies the whole table and when
//! only elements, that an invalid model changes nothing, that drift of any kind is found and
//! restored, and that a refused incremental change falls back to a full apply. No root needed.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hci_agent::firewall::fake::FakeFirewall;
use hci_agent::firewall::model::{CtState, FirewallModel, Interface, Packet, Policy, Verdict, Zone, L4};
use hci_agent::firewall::ruleset::{interface_changes, InterfaceChange};
use hci_agent::firewall::{Enforcer, Firewall, FirewallError, UpdateKind};
use hci_shared::names::{parse_cidr, PortRange};
use hci_shared::resources::Protocol;

fn iface(name: &str, zone: &str, ip: [u8; 4]) -> Interface {
    Interface { ifname: name.into(), zone: zone.into(), ip: Ipv4Addr::from(ip) }
}

fn model() -> FirewallModel {
    let zone = |name: &str, cidr: &str| Zone {
        name: name.into(),
        isolated: false,
        cidr: parse_cidr(cidr).expect("cidr"),
        deny_intra_zone: false,
    };
    FirewallModel {
        zones: vec![zone("web", "10.1.0.0/24"), zone("app", "10.2.0.0/24")],
        policies: vec![Policy {
            name: "web-app".into(),
            from_zone: "web".into(),
            to_zone: "app".into(),
            protocol: Protocol::Tcp,
            ports: vec![PortRange { lo: 8080, hi: 8080 }],
        }],
        interfaces: vec![iface("t-web1", "web", [10, 1, 0, 11]), iface("t-app1", "app", [10, 2, 0, 11])],
        fabric_ifaces: Vec::new(),
    }
}

fn setup() -> (Arc<FakeFirewall>, Enforcer) {
    let fake = Arc::new(FakeFirewall::new());
    let mut enforcer = Enforcer::new(fake.clone());
    assert_eq!(enforcer.apply(model()).expect("apply"), UpdateKind::Full);
    (fake, enforcer)
}

fn web_to_app(fake: &FakeFirewall) -> Verdict {
    let packet = Packet {
        iif: "t-web1".into(),
        oif: Some("t-app1".into()),
        src: Some(Ipv4Addr::new(10, 1, 0, 11)),
        dst: Some(Ipv4Addr::new(10, 2, 0, 11)),
        proto: L4::Tcp(8080),
        ct_state: CtState::New,
    };
    fake.evaluate(&packet).expect("evaluate").verdict
}

#[test]
fn only_interface_changes_are_element_edits() {
    let (fake, mut enforcer) = setup();
    assert_eq!(enforcer.apply(model()).expect("apply"), UpdateKind::Unchanged);
    let mut more = model();
    more.interfaces.push(iface("t-app2", "app", [10, 2, 0, 12]));
    assert_eq!(enforcer.apply(more.clone()).expect("apply"), UpdateKind::Interfaces(1));
    // A move to another zone is one change: removed and added in the same batch.
    more.interfaces[2] = iface("t-app2", "web", [10, 1, 0, 12]);
    assert_eq!(enforcer.apply(more.clone()).expect("apply"), UpdateKind::Interfaces(2));
    assert_eq!(fake.applies(), (1, 2));
    more.policies[0].ports = vec![PortRange { lo: 80, hi: 80 }];
    assert_eq!(enforcer.apply(more).expect("apply"), UpdateKind::Full);
    assert_eq!(fake.applies(), (2, 2));
    assert_eq!(enforcer.check_drift().expect("check"), None);
}

#[test]
fn an_invalid_model_changes_nothing() {
    let (fake, mut enforcer) = setup();
    let before = fake.list().expect("list");
    let mut bad = model();
    bad.interfaces.push(iface("t-bad", "web", [10, 2, 0, 99]));
    assert!(matches!(enforcer.apply(bad), Err(FirewallError::Model(_))));
    assert_eq!(fake.list().expect("list"), before);
    assert_eq!(enforcer.model(), Some(&model()));
}

#[test]
fn drift_of_any_kind_is_restored() {
    let (fake, mut enforcer) = setup();
    assert_eq!(web_to_app(&fake), Verdict::Accept);
    fake.delete_table();
    assert_eq!(web_to_app(&fake), Verdict::Accept, "no table: nothing filtered");
    let event = enforcer.check_drift().expect("check").expect("a missing table is drift");
    assert!(event.difference.contains("missing"), "{event:?}");
    assert_eq!(enforcer.check_drift().expect("check"), None);

    // Someone removes web1's address: web1's traffic is now dropped as spoofed.
    fake.tamper(&interface_changes(&[InterfaceChange::Remove(iface("t-web1", "web", [10, 1, 0, 11]))]))
        .expect("tamper");
    assert_eq!(web_to_app(&fake), Verdict::Drop);
    let event = enforcer.check_drift().expect("check").expect("a missing element is drift");
    assert!(event.difference.contains("vm-addrs"), "{event:?}");
    assert_eq!(web_to_app(&fake), Verdict::Accept);

    // Someone adds a stranger to a zone.
    fake.tamper(&interface_changes(&[InterfaceChange::Add(iface("t-x", "app", [10, 2, 0, 77]))])).expect("tamper");
    assert!(enforcer.check_drift().expect("check").is_some());
    assert_eq!(enforcer.check_drift().expect("check"), None);
}

#[test]
fn a_refused_element_edit_falls_back_to_a_full_apply() {
    let (fake, mut enforcer) = setup();
    fake.delete_table(); // the sets the edit needs are gone
    let removed = model().interfaces[0].clone();
    assert_eq!(enforcer.change_interfaces(&[InterfaceChange::Remove(removed)]).expect("change"), UpdateKind::Full);
    assert_eq!(enforcer.check_drift().expect("check"), None);
    assert_eq!(web_to_app(&fake), Verdict::Drop, "web1 is in no zone any more");
}

#[test]
fn a_failed_apply_leaves_the_table_as_it_was() {
    let (fake, mut enforcer) = setup();
    let before = fake.list().expect("list");
    fake.fail_next_apply();
    let mut changed = model();
    changed.policies.clear();
    assert!(enforcer.apply(changed.clone()).is_err());
    assert_eq!(fake.list().expect("list"), before);
    assert_eq!(enforcer.apply(changed).expect("apply"), UpdateKind::Full);
    assert_eq!(web_to_app(&fake), Verdict::Drop);
}
