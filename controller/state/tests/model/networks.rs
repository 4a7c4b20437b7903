//! The zone network feed (`HostDesired.network`): every host gets every zone (with its VNI and
//! gateway) and policy, plus the site's hosts on the VXLAN underlay; zone and policy changes move
//! every host's generation; VNIs are assigned deterministically when the operator gives none.

use hci_shared::agent::{FabricHost, NetworkPolicy, NetworkZone};
use hci_shared::api::ZoneCreate;
use hci_shared::command::{Command, JoinAuth};
use hci_shared::hosts::{HostInventory, HostJoin};
use hci_shared::resources::{IntraZone, Protocol, ZoneKind};
use hci_shared::ErrorCode;

use crate::support::*;

/// Joins host `id` with underlay address `underlay` (a token join), or re-joins it (its credential).
fn join(h: &mut Harness, id: &str, underlay: Option<&str>) {
    let spec = host_join_spec(id, 4096, "dir-qcow2", underlay);
    if h.model.host(id).is_some() {
        h.ok(Command::JoinHost {
            auth: JoinAuth::Credential { sha256: credential_of(id) },
            new_credential_sha256: None,
            spec,
        });
    } else {
        join_spec(h, spec);
    }
}

fn zone(name: &str, cidr: &str, kind: ZoneKind, vni: Option<u32>, intra_zone: IntraZone) -> Command {
    let spec = ZoneCreate {
        name: name.into(),
        tenant: "fin".into(),
        kind,
        cidr: cidr.into(),
        vni,
        vlan: None,
        mtu: None,
        intra_zone,
    };
    Command::CreateZone { id: format!("zid-{name}"), spec }
}

fn vlan_zone(name: &str, cidr: &str, vni: Option<u32>, vlan: u16) -> Command {
    let Command::CreateZone { id, spec } = zone(name, cidr, ZoneKind::Normal, vni, IntraZone::Allow) else {
        unreachable!("zone() makes a CreateZone")
    };
    Command::CreateZone { id, spec: ZoneCreate { vlan: Some(vlan), ..spec } }
}

fn generation(h: &Harness, host: &str) -> u64 {
    h.model.host_desired(host).expect("host").generation
}

fn setup() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("fin", 8, 8192, 100);
    join(&mut h, "h1", Some("192.168.50.1"));
    join(&mut h, "h2", Some("192.168.50.2"));
    join(&mut h, "h3", None);
    h
}

#[test]
fn every_host_gets_every_zone_policy_and_the_fabric() {
    let mut h = setup();
    h.ok(zone("web", "10.1.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    h.ok(zone("db", "10.3.0.0/24", ZoneKind::Normal, Some(77), IntraZone::Deny));
    h.ok(zone("drill", "10.9.0.0/24", ZoneKind::Isolated, None, IntraZone::Allow));
    h.ok(create_policy("p1", Some("web-db"), "web", "db", "5432,8000-8100"));
    for host in ["h1", "h2", "h3"] {
        let desired = h.model.host_desired(host).expect("host");
        hci_shared::agent_validate::host_desired(&desired).expect("the agent accepts the feed");
        let network = desired.network.expect("network");
        assert_eq!(
            network.zones,
            vec![
                NetworkZone {
                    name: "db".into(),
                    cidr: "10.3.0.0/24".into(),
                    gateway: "10.3.0.1".into(),
                    vni: Some(77),
                    vlan: None,
                    isolated: false,
                    deny_intra_zone: true,
                    mtu: None,
                },
                NetworkZone {
                    name: "drill".into(),
                    cidr: "10.9.0.0/24".into(),
                    gateway: "10.9.0.1".into(),
                    vni: Some(10_001),
                    vlan: None,
                    isolated: true,
                    deny_intra_zone: false,
                    mtu: None,
                },
                NetworkZone {
                    name: "web".into(),
                    cidr: "10.1.0.0/24".into(),
                    gateway: "10.1.0.1".into(),
                    vni: Some(10_000),
                    vlan: None,
                    isolated: false,
                    deny_intra_zone: false,
                    mtu: None,
                },
            ],
            "{host}"
        );
        assert_eq!(
            network.policies,
            vec![NetworkPolicy {
                name: "web-db".into(),
                from_zone: "web".into(),
                to_zone: "db".into(),
                protocol: Protocol::Tcp,
                ports: "5432,8000-8100".into(),
            }]
        );
        // h3 reported no underlay address: it is not on the fabric (its VMs stay on the host).
        assert_eq!(
            network.fabric,
            vec![
                FabricHost { host_id: "h1".into(), underlay_ip: "192.168.50.1".into() },
                FabricHost { host_id: "h2".into(), underlay_ip: "192.168.50.2".into() },
            ]
        );
    }
    let z = h.model.zone("drill").expect("zone").clone();
    assert_eq!((z.vni, z.intra_zone), (Some(10_001), IntraZone::Allow));
}

#[test]
fn vnis_are_assigned_from_10000_and_never_shared() {
    let mut h = setup();
    h.ok(zone("a", "10.1.0.0/24", ZoneKind::Normal, Some(10_001), IntraZone::Allow));
    h.ok(zone("b", "10.2.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    h.ok(zone("c", "10.3.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    let vni = |h: &Harness, name: &str| h.model.zone(name).expect("zone").vni;
    assert_eq!((vni(&h, "b"), vni(&h, "c")), (Some(10_000), Some(10_002)));
    // An operator's VNI already taken by an assigned one is refused, naming the holder.
    let e = h.refused(zone("d", "10.4.0.0/24", ZoneKind::Normal, Some(10_002), IntraZone::Allow));
    assert_refusal(&e, ErrorCode::Conflict, &["vni 10002", "zone 'c'"]);
    // A deleted zone's VNI is free again (lowest first).
    h.ok(Command::DeleteZone { name: "b".into(), if_match: None });
    h.ok(zone("e", "10.5.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    assert_eq!(vni(&h, "e"), Some(10_000));
}

#[test]
fn a_zone_on_a_vlan_has_no_vni_and_its_vlan_is_never_shared() {
    let mut h = setup();
    h.ok(vlan_zone("lan", "10.1.0.0/24", None, 100));
    let z = h.model.zone("lan").expect("zone").clone();
    assert_eq!((z.vni, z.vlan), (None, Some(100)));
    // The next zone without either still gets the first VNI.
    h.ok(zone("web", "10.2.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    let desired = h.model.host_desired("h1").expect("host");
    hci_shared::agent_validate::host_desired(&desired).expect("the agent accepts the feed");
    let zones = desired.network.expect("network").zones;
    let carriers: Vec<_> = zones.iter().map(|z| (z.name.as_str(), z.vni, z.vlan)).collect();
    assert_eq!(carriers, [("lan", None, Some(100)), ("web", Some(10_000), None)]);
    let e = h.refused(vlan_zone("lan2", "10.3.0.0/24", None, 100));
    assert_refusal(&e, ErrorCode::Conflict, &["vlan 100", "zone 'lan'"]);
    let e = h.refused(vlan_zone("both", "10.4.0.0/24", Some(20_000), 101));
    assert_invalid(&e, "vlan", &["not both"]);
    for bad in [0, 4095] {
        let e = h.refused(vlan_zone("bad", "10.5.0.0/24", None, bad));
        assert_invalid(&e, "vlan", &["outside 1-4094"]);
    }
    assert!(h.model.zone("lan2").is_none() && h.model.zone("both").is_none() && h.model.zone("bad").is_none());
}

#[test]
fn a_zones_mtu_is_its_own_or_its_carriers_default() {
    let mut h = setup();
    let with_mtu = |command: Command, mtu: Option<u16>| {
        let Command::CreateZone { id, spec } = command else { unreachable!("a CreateZone") };
        Command::CreateZone { id, spec: ZoneCreate { mtu, ..spec } }
    };
    h.ok(zone("web", "10.1.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    h.ok(with_mtu(zone("big", "10.2.0.0/24", ZoneKind::Normal, None, IntraZone::Allow), Some(8950)));
    h.ok(vlan_zone("lan", "10.3.0.0/24", None, 100));
    h.ok(with_mtu(vlan_zone("jumbo", "10.4.0.0/24", None, 101), Some(9000)));
    let zones = h.model.host_desired("h1").expect("host").network.expect("network").zones;
    let mtus: Vec<_> = zones.iter().map(|z| (z.name.as_str(), z.effective_mtu())).collect();
    assert_eq!(mtus, [("big", 8950), ("jumbo", 9000), ("lan", 1500), ("web", 1450)]);
    assert_eq!(h.model.zone("web").expect("zone").mtu, None, "the record keeps what the operator said");
    for bad in [575, 9001] {
        let e = h.refused(with_mtu(zone("bad", "10.5.0.0/24", ZoneKind::Normal, None, IntraZone::Allow), Some(bad)));
        assert_invalid(&e, "mtu", &["outside 576-9000"]);
    }
}

#[test]
fn zone_and_policy_changes_move_every_hosts_generation() {
    let mut h = setup();
    let hosts = ["h1", "h2", "h3"];
    let before: Vec<u64> = hosts.iter().map(|id| generation(&h, id)).collect();
    h.ok(zone("web", "10.1.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    for (id, old) in hosts.iter().zip(&before) {
        assert!(generation(&h, id) > *old, "zone create: {id}");
        assert_eq!(generation(&h, id), h.index);
    }
    h.ok(zone("db", "10.3.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    for command in [
        create_policy("p1", None, "web", "db", "22"),
        Command::DeleteZonePolicy { id: "p1".into(), if_match: None },
        Command::DeleteZone { name: "db".into(), if_match: None },
    ] {
        h.ok(command);
        for id in hosts {
            assert_eq!(generation(&h, id), h.index, "{id}");
        }
    }
    let network = h.model.host_desired("h2").expect("host").network.expect("network");
    assert_eq!(network.zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert!(network.policies.is_empty());
    // A refused policy changes nothing (no generation moves).
    let at = generation(&h, "h1");
    h.refused(create_policy("p2", None, "web", "ghost", "22"));
    assert_eq!(generation(&h, "h1"), at);
}

#[test]
fn a_new_underlay_address_moves_every_host_of_the_site() {
    let mut h = setup();
    let before: Vec<u64> = ["h1", "h2", "h3"].iter().map(|id| generation(&h, id)).collect();
    // Re-joining with the same inventory moves nothing.
    join(&mut h, "h3", None);
    assert_eq!(["h1", "h2", "h3"].map(|id| generation(&h, id)).to_vec(), before);
    join(&mut h, "h3", Some("192.168.50.3"));
    for id in ["h1", "h2", "h3"] {
        assert_eq!(generation(&h, id), h.index, "{id}");
    }
    let fabric = h.model.host_desired("h1").expect("host").network.expect("network").fabric;
    assert_eq!(fabric.len(), 3);
    assert_eq!(fabric[2], FabricHost { host_id: "h3".into(), underlay_ip: "192.168.50.3".into() });
}

#[test]
fn a_bad_underlay_address_is_refused_naming_the_field() {
    let mut h = setup();
    let token = format!("{:b>64}", 99);
    h.ok(Command::CreateJoinToken {
        sha256: token.clone(),
        site: "primary".into(),
        expires_at: "2030-01-01T00:00:00Z".into(),
    });
    let mut spec = HostJoin {
        host_id: "h9".into(),
        site: "primary".into(),
        arch: "x86_64".into(),
        agent_url: "http://h9.example:7100".into(),
        inventory: HostInventory {
            cpus: 2,
            memory_mib: 1024,
            accelerator: "tcg".into(),
            libvirt_version: "9.0.0".into(),
            ..Default::default()
        },
    };
    spec.inventory.underlay_ip = Some("not-an-ip".into());
    let e = h.refused(Command::JoinHost {
        auth: JoinAuth::Token { sha256: token },
        new_credential_sha256: Some(format!("{:9>64}", 9)),
        spec,
    });
    assert_invalid(&e, "inventory.underlay_ip", &["not-an-ip"]);
}

/// A VM goes only to hosts that carry the zones of its NICs: VLAN zones to hosts with a trunk,
/// VXLAN zones to hosts with an underlay address; a host that builds no zone networks carries all.
#[test]
fn placement_puts_a_vm_only_where_its_zones_are_carried() {
    let mut h = Harness::new();
    h.with_tenant("fin", 16, 16384, 100);
    join(&mut h, "vx", Some("192.168.50.1"));
    let mut trunked = host_join_spec("tr", 4096, "dir-qcow2", Some("192.168.50.2"));
    trunked.inventory.vlan_trunk = Some("bond0".into());
    join_spec(&mut h, trunked);
    h.ok(vlan_zone("lan", "10.1.0.0/24", None, 100));
    h.ok(zone("web", "10.2.0.0/24", ZoneKind::Normal, None, IntraZone::Allow));
    let policy = hci_placement::Policy::new(80, hci_placement::Strategy::Spread).expect("policy");
    let host_of = |h: &Harness, id: &str, memory_mib: u64, zones: &[&str]| {
        let spec = vm_spec("fin", id, 1, memory_mib, &[], zones);
        h.model.plan_create(id, &spec, &policy).map(|p| p.map(|p| p.host))
    };
    for n in 0..4 {
        let id = format!("lan{n}");
        assert_eq!(host_of(&h, &id, 512, &["lan"]).expect("placed"), Some("tr".into()), "only tr has the trunk");
        let placement = h.model.plan_create(&id, &vm_spec("fin", &id, 1, 512, &[], &["lan"]), &policy).expect("plan");
        h.ok(Command::CreateVm { id: id.clone(), spec: vm_spec("fin", &id, 1, 512, &[], &["lan"]), placement });
    }
    // Spread picks the emptier host vx for a VM in a VXLAN zone.
    assert_eq!(host_of(&h, "w1", 512, &["web"]).expect("placed"), Some("vx".into()));
    // 1536 MiB more would take tr past the 80 % cap (2048 + 1536 > 3276 MiB); vx has the room but
    // not the zone: the VM fits nowhere, and the 409 names the zone.
    assert_eq!(host_of(&h, "w2", 1536, &["web"]).expect("placed"), Some("vx".into()));
    let e = host_of(&h, "lan9", 1536, &["lan"]).expect_err("nowhere");
    assert_refusal(&e, ErrorCode::NoCapacity, &["zone(s) lan"]);
    // A zone that does not exist is the caller's mistake, named, not a lack of room.
    let e = host_of(&h, "x1", 512, &["web", "nope"]).expect_err("unknown zone");
    assert_invalid(&e, "nics[1].zone", &["zone 'nope' does not exist"]);
    // An operator's host for a VM in a zone that host cannot carry is refused at apply as well.
    let bad = Command::CreateVm {
        id: "lan8".into(),
        spec: vm_spec("fin", "lan8", 1, 512, &[], &["lan"]),
        placement: Some(hci_shared::command::Placement { host: "vx".into(), cap_percent: 80 }),
    };
    let e = h.refused(bad);
    assert!(e.message.contains("lan"), "{e}");
    assert!(h.model.vm("lan8").is_none(), "nothing changed");
}
