//! The network step against fakes of the kernel (`FakeDataPlane`, `FakeFirewall`): from a host's
//! desired state to VXLAN devices, flood entries, routes, proxy ARP and the firewall table; idempotent
//! passes, removals of what is no longer desired (only what the agent owns), per-VM errors, and
//! firewall drift counted. The real kernel side is in network_netns.rs and tests/tests/zone_networks.rs.

mod network_common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hci_agent::firewall::fake::FakeFirewall;
use hci_agent::firewall::model::{CtState, Packet, Verdict, L4};
use hci_agent::firewall::UpdateKind;
use hci_agent::network::dhcp::fake::FakeDhcp;
use hci_agent::network::dhcp::packet::MessageType;
use hci_agent::network::dhcp::{self, Lease};
use hci_agent::network::fake::FakeDataPlane;
use hci_agent::network::plan::{sysctl_forwarding, sysctl_proxy_arp, sysctl_proxy_delay, Link, Op, Route, Vxlan};
use hci_agent::network::{with_guest_settings, GuestAddressing, HostNetworking, NetworkCounters};
use hci_agent::reconciler::tap_name;
use hci_shared::agent::{FabricHost, HostDesired, HostNetwork, NetworkPolicy, NetworkZone, VmDesired};
use hci_shared::resources::Protocol;
use network_common::vm;

const UNDERLAY: &str = "192.168.70.1";

fn zone(name: &str, cidr: &str, vni: u32, isolated: bool) -> NetworkZone {
    let gateway = format!("{}1", cidr.rsplit_once('.').map(|(a, _)| format!("{a}.")).unwrap_or_default());
    NetworkZone {
        name: name.into(),
        cidr: cidr.into(),
        gateway,
        vni: Some(vni),
        vlan: None,
        isolated,
        deny_intra_zone: false,
        mtu: None,
    }
}

fn network(hosts: &[&str]) -> HostNetwork {
    HostNetwork {
        zones: vec![
            zone("web", "10.1.0.0/24", 10_000, false),
            zone("db", "10.3.0.0/24", 10_001, false),
            zone("drill", "10.9.0.0/24", 10_002, true),
        ],
        policies: vec![NetworkPolicy {
            name: "web-db".into(),
            from_zone: "web".into(),
            to_zone: "db".into(),
            protocol: Protocol::Tcp,
            ports: "5432".into(),
        }],
        fabric: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| FabricHost { host_id: (*h).into(), underlay_ip: format!("192.168.70.{}", i + 1) })
            .collect(),
    }
}

fn desired(vms: Vec<VmDesired>, network: HostNetwork) -> HostDesired {
    HostDesired { vms, network: Some(network), ..hci_shared::hosts::empty_desired("h1", 1) }
}

struct Host {
    dataplane: Arc<FakeDataPlane>,
    firewall: Arc<FakeFirewall>,
    net: HostNetworking,
}

fn host() -> Host {
    host_with(Some(ip(UNDERLAY)), None)
}

/// A host sending VXLAN from `underlay` and stacking VLANs on `trunk` (made up, as the operator's).
fn host_with(underlay: Option<Ipv4Addr>, trunk: Option<&str>) -> Host {
    let dataplane = Arc::new(FakeDataPlane::new());
    if let Some(trunk) = trunk {
        dataplane.add_device(trunk);
    }
    let firewall = Arc::new(FakeFirewall::new());
    let net = HostNetworking::new("h1", underlay, dataplane.clone(), firewall.clone(), NetworkCounters::detached())
        .with_vlan_trunk(trunk.map(str::to_string));
    Host { dataplane, firewall, net }
}

fn running(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

/// The firewall's verdict on a new TCP flow to port `port`.
fn verdict(h: &Host, iif: &str, oif: &str, src: &str, dst: &str, port: u16) -> Verdict {
    let packet = Packet {
        iif: iif.into(),
        oif: Some(oif.into()),
        src: Some(ip(src)),
        dst: Some(ip(dst)),
        proto: L4::Tcp(port),
        ct_state: CtState::New,
    };
    h.firewall.evaluate(&packet).expect("evaluate").verdict
}

/// VMs web1 (zone web, 10.1.0.5) and db1 (zone db, 10.3.0.7), their taps there, converged once on `network`.
fn converge_web1_db1(h: &Host, network: HostNetwork) -> (HostDesired, hci_agent::network::NetworkOutcome) {
    h.dataplane.add_tap(&tap_name("web1", 0));
    h.dataplane.add_tap(&tap_name("db1", 0));
    let d = desired(vec![vm("web1", &[("web", "10.1.0.5")]), vm("db1", &[("db", "10.3.0.7")])], network);
    let out = h.net.converge(&d, &running(&["web1", "db1"]));
    (d, out)
}

#[test]
fn a_host_converges_from_nothing_and_a_second_pass_changes_nothing() {
    let (h, web1, db1) = (host(), tap_name("web1", 0), tap_name("db1", 0));
    let (d, out) = converge_web1_db1(&h, network(&["h1", "h2", "h3"]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    assert_eq!(out.firewall, Some(UpdateKind::Full));

    let seen = h.dataplane.host();
    assert_eq!(seen.sysctls[&sysctl_forwarding()], "1");
    let gateways = [ip("10.1.0.1"), ip("10.3.0.1"), ip("10.9.0.1")].into();
    assert_eq!(seen.local_addresses, gateways, "every zone's gateway is received as the host's own");
    let peers: BTreeSet<Ipv4Addr> = [ip("192.168.70.2"), ip("192.168.70.3")].into();
    for (vni, cidr) in [(10_000, "10.1.0.0/24"), (10_001, "10.3.0.0/24"), (10_002, "10.9.0.0/24")] {
        let name = format!("vx-{vni}");
        let vxlan = Vxlan { vni, local: ip(UNDERLAY), port: 4789 };
        assert_eq!(seen.links[&name], Link { up: true, vxlan: Some(vxlan), vlan: None, mtu: 1450 });
        assert_eq!(seen.flood[&name], peers, "{name}: head-end replication to every other host");
        assert!(seen.routes.contains(&Route { dst: cidr.into(), dev: name.clone() }));
    }
    for (tap, addr) in [(&web1, "10.1.0.5/32"), (&db1, "10.3.0.7/32")] {
        assert!(seen.links[tap].up);
        assert_eq!(seen.links[tap].mtu, 1450, "a tap takes its zone's MTU");
        assert!(seen.routes.contains(&Route { dst: addr.into(), dev: tap.clone() }));
    }
    for dev in [web1.as_str(), db1.as_str(), "vx-10000"] {
        assert_eq!(seen.sysctls[&sysctl_proxy_arp(dev)], "1", "{dev}");
        assert_eq!(seen.sysctls[&sysctl_proxy_delay(dev)], "0", "{dev}");
    }
    assert_eq!(seen.routes.len(), 5);
    // The firewall judges by zone: web → db on 5432 passes (here and from the fabric), not 22.
    assert_eq!(verdict(&h, &web1, &db1, "10.1.0.5", "10.3.0.7", 5432), Verdict::Accept);
    assert_eq!(verdict(&h, &web1, &db1, "10.1.0.5", "10.3.0.7", 22), Verdict::Drop);
    assert_eq!(verdict(&h, &db1, &web1, "10.3.0.7", "10.1.0.5", 5432), Verdict::Drop);
    assert_eq!(verdict(&h, "vx-10000", &db1, "10.1.0.9", "10.3.0.7", 5432), Verdict::Accept);
    assert_eq!(verdict(&h, &web1, "vx-10002", "10.1.0.5", "10.9.0.3", 5432), Verdict::Drop);

    h.dataplane.take_applied();
    let again = h.net.converge(&d, &running(&["web1", "db1"]));
    assert_eq!((again.ops, again.firewall), (vec![], Some(UpdateKind::Unchanged)));
    assert!(h.dataplane.take_applied().is_empty());
}

#[test]
fn one_more_vm_is_its_tap_alone_and_an_element_edit() {
    let h = host();
    let web1 = tap_name("web1", 0);
    h.dataplane.add_tap(&web1);
    let net = network(&["h1", "h2"]);
    let one = desired(vec![vm("web1", &[("web", "10.1.0.5")])], net.clone());
    h.net.converge(&one, &running(&["web1"]));
    let web2 = tap_name("web2", 0);
    h.dataplane.add_tap(&web2);
    let two = desired(vec![vm("web1", &[("web", "10.1.0.5")]), vm("web2", &[("web", "10.1.0.6")])], net);
    let out = h.net.converge(&two, &running(&["web1", "web2"]));
    assert_eq!(out.firewall, Some(UpdateKind::Interfaces(1)));
    assert!(out.ops.iter().all(|op| op.device() == Some(web2.as_str())), "{:?}", out.ops);
    assert_eq!(out.ops.len(), 5, "up, proxy_arp, proxy_delay, mtu, route: {:?}", out.ops);
    assert_eq!(h.firewall.applies(), (1, 1));
    // The VM goes (libvirt removes its tap and with it the route): the table forgets it.
    h.dataplane.remove_link(&web2);
    let out = h.net.converge(&one, &running(&["web1"]));
    assert_eq!((out.ops, out.firewall), (vec![], Some(UpdateKind::Interfaces(1))));
    assert_eq!(verdict(&h, &web2, "eth9", "10.1.0.6", "10.9.9.9", 80), Verdict::Accept, "no longer a VM tap: not ours");
}

#[test]
fn what_is_no_longer_desired_goes_and_nothing_else() {
    let h = host();
    let web1 = tap_name("web1", 0);
    h.dataplane.add_tap(&web1);
    h.net.converge(
        &desired(vec![vm("web1", &[("web", "10.1.0.5")])], network(&["h1", "h2", "h3"])),
        &running(&["web1"]),
    );
    // Someone else's devices: a VXLAN without our prefix, a plain device with it.
    h.dataplane.edit(|host| {
        let other = Vxlan { vni: 5, local: ip("192.168.70.1"), port: 4789 };
        host.links.insert("tunnel5".into(), Link { up: true, vxlan: Some(other), vlan: None, mtu: 1500 });
        host.links.insert("vx-lan".into(), Link { up: true, ..Link::default() });
    });
    // The drill zone is deleted, h3 leaves the fabric, web1 moves to another address.
    let mut net = network(&["h1", "h2"]);
    net.zones.retain(|z| z.name != "drill");
    let out = h.net.converge(&desired(vec![vm("web1", &[("web", "10.1.0.8")])], net), &running(&["web1"]));
    let seen = h.dataplane.host();
    assert!(!seen.links.contains_key("vx-10002"));
    assert!(seen.links.contains_key("tunnel5") && seen.links.contains_key("vx-lan"));
    assert_eq!(seen.flood["vx-10000"], [ip("192.168.70.2")].into());
    assert!(seen.routes.contains(&Route { dst: "10.1.0.8/32".into(), dev: web1.clone() }));
    assert!(!seen.routes.iter().any(|r| r.dst == "10.1.0.5/32" || r.dst == "10.9.0.0/24"), "{:?}", seen.routes);
    assert!(out.ops.contains(&Op::DeleteLink { name: "vx-10002".into() }));
    assert_eq!(seen.local_addresses, [ip("10.1.0.1"), ip("10.3.0.1")].into(), "the drill zone's gateway went");
    assert_eq!(out.firewall, Some(UpdateKind::Full), "a zone went: the whole table, in one transaction");
    // A VXLAN of ours with the wrong settings is replaced.
    h.dataplane.edit(|host| {
        if let Some(link) = host.links.get_mut("vx-10000") {
            link.vxlan = Some(Vxlan { vni: 10_000, local: ip("192.168.70.99"), port: 4789 });
        }
    });
    let mut net = network(&["h1", "h2"]);
    net.zones.retain(|z| z.name != "drill");
    h.net.converge(&desired(vec![vm("web1", &[("web", "10.1.0.8")])], net), &running(&["web1"]));
    assert_eq!(h.dataplane.host().links["vx-10000"].vxlan.as_ref().map(|v| v.local), Some(ip(UNDERLAY)));
}

#[test]
fn errors_are_reported_on_the_vm_they_belong_to() {
    let h = host();
    let (ok, bad) = (tap_name("ok", 0), tap_name("broken", 0));
    h.dataplane.add_tap(&ok);
    h.dataplane.add_tap(&bad);
    h.dataplane.fail_device(Some(&bad));
    let vms = vec![
        vm("ok", &[("web", "10.1.0.5")]),
        vm("broken", &[("web", "10.1.0.6")]),
        vm("tapless", &[("web", "10.1.0.7")]),
        vm("stopped", &[("web", "10.1.0.8")]),
        vm("lost", &[("nowhere", "10.7.0.2")]),
        vm("outside", &[("web", "10.3.0.2")]),
    ];
    let out = h.net.converge(&desired(vms, network(&["h1"])), &running(&["ok", "broken", "tapless"]));
    let error = |vm: &str| out.vm_errors.get(vm).cloned().unwrap_or_default();
    assert!(error("broken").contains(&bad), "{}", error("broken"));
    assert!(error("tapless").contains("missing") && error("tapless").contains(&tap_name("tapless", 0)));
    assert!(error("lost").contains("zone nowhere"));
    assert!(error("outside").contains("outside zone web"));
    assert!(!out.vm_errors.contains_key("ok") && !out.vm_errors.contains_key("stopped"), "{:?}", out.vm_errors);
    // The others are enforced all the same.
    assert_eq!(out.firewall, Some(UpdateKind::Full));
    assert_eq!(verdict(&h, &ok, "vx-10000", "10.1.0.5", "10.1.0.77", 80), Verdict::Accept);
    h.dataplane.fail_device(None);
    let vms = vec![vm("ok", &[("web", "10.1.0.5")]), vm("broken", &[("web", "10.1.0.6")])];
    let out = h.net.converge(&desired(vms, network(&["h1"])), &running(&["ok", "broken"]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
}

#[test]
fn without_an_underlay_address_there_is_no_fabric_and_without_a_network_nothing_happens() {
    let dataplane = Arc::new(FakeDataPlane::new());
    let firewall = Arc::new(FakeFirewall::new());
    let net = HostNetworking::new("h1", None, dataplane.clone(), firewall.clone(), NetworkCounters::detached());
    let web1 = tap_name("web1", 0);
    dataplane.add_tap(&web1);
    let mut d = desired(vec![vm("web1", &[("web", "10.1.0.5")])], network(&["h1", "h2"]));
    net.converge(&d, &running(&["web1"]));
    let seen = dataplane.host();
    assert!(!seen.links.keys().any(|l| l.starts_with("vx-")));
    assert_eq!(seen.routes.len(), 1);
    d.network = None;
    let fresh = host();
    fresh.dataplane.add_tap(&web1);
    let out = fresh.net.converge(&d, &running(&["web1"]));
    assert_eq!((out.ops.len(), out.firewall), (0, None));
    assert_eq!(fresh.firewall.applies(), (0, 0));
}

#[test]
fn firewall_drift_is_repaired_and_counted() {
    let h = host();
    h.dataplane.add_tap(&tap_name("web1", 0));
    h.net.converge(&desired(vec![vm("web1", &[("web", "10.1.0.5")])], network(&["h1"])), &running(&["web1"]));
    assert_eq!(h.net.check_drift().expect("check"), None);
    h.firewall.delete_table();
    assert!(h.net.check_drift().expect("check").is_some());
    assert_eq!(h.net.counters.firewall_drift_events.get(), 1);
    assert_eq!(h.net.check_drift().expect("check"), None);
}

#[test]
fn guests_get_their_address_and_gateway_as_oem_strings() {
    let mut with_marker = vm("a", &[("web", "10.1.0.5"), ("db", "10.3.0.9")]);
    with_marker.oem_strings.push("hci.marker=x".into());
    let plain = desired(vec![with_marker, vm("b", &[])], network(&["h1"]));
    let d = with_guest_settings(plain.clone(), GuestAddressing::Static);
    assert_eq!(d.vms[0].oem_strings, ["hci.marker=x", "hci.ip=10.1.0.5/24", "hci.gw=10.1.0.1"]);
    assert!(d.vms[1].oem_strings.is_empty());
    // Applying it twice adds nothing.
    assert_eq!(with_guest_settings(d.clone(), GuestAddressing::Static), d);
    // With the agent's DHCP server: the guest asks for its address.
    let d = with_guest_settings(plain, GuestAddressing::Dhcp);
    assert_eq!(d.vms[0].oem_strings, ["hci.marker=x", "hci.ip=dhcp"]);
    assert!(d.vms[1].oem_strings.is_empty());
    assert_eq!(with_guest_settings(d.clone(), GuestAddressing::Dhcp), d);
}

#[test]
fn an_arriving_vm_is_judged_at_once_and_routed_once_it_runs() {
    let h = host();
    let tap = tap_name("mover", 0);
    h.dataplane.add_tap(&tap);
    let mut mover = vm("mover", &[("web", "10.1.0.9")]);
    mover.migration = Some(hci_shared::agent::VmMigration::Incoming { from_host: "h2".into() });
    let d = desired(vec![mover], network(&["h1", "h2"]));
    // Paused here while it arrives: the source host still answers for its address.
    let out = h.net.converge(&d, &running(&[]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    assert!(!h.dataplane.host().routes.iter().any(|r| r.dev == tap));
    assert_eq!(verdict(&h, &tap, "vx-10001", "10.1.0.9", "10.3.0.7", 22), Verdict::Drop, "in the table already");
    assert_eq!(verdict(&h, &tap, "vx-10001", "10.1.0.9", "10.3.0.7", 5432), Verdict::Accept);
    let out = h.net.converge(&d, &running(&["mover"]));
    assert!(h.dataplane.host().routes.contains(&Route { dst: "10.1.0.9/32".into(), dev: tap.clone() }));
    assert_eq!(out.firewall, Some(UpdateKind::Unchanged));
}

/// A DHCP client's message from `mac` (xid 1).
fn dhcp_message(kind: MessageType, mac: [u8; 6], requested: Option<&str>) -> Vec<u8> {
    dhcp::packet::client_message(kind, 1, mac, Ipv4Addr::UNSPECIFIED, requested.map(ip), None)
}

#[test]
fn dhcp_serves_each_present_tap_its_nics_lease_and_nothing_else() {
    let h = host();
    let dhcp = Arc::new(FakeDhcp::new());
    let net = HostNetworking::new(
        "h1",
        Some(UNDERLAY.parse().expect("ip")),
        h.dataplane.clone(),
        h.firewall.clone(),
        NetworkCounters::detached(),
    )
    .with_dhcp(dhcp.clone());
    assert!(net.dhcp_enabled() && !h.net.dhcp_enabled());
    let (web1, db1, off) = (tap_name("web1", 0), tap_name("db1", 0), tap_name("off", 0));
    h.dataplane.add_tap(&web1);
    h.dataplane.add_tap(&db1);
    let mut stopped = vm("off", &[("web", "10.1.0.8")]);
    stopped.power = hci_shared::resources::PowerState::Stopped;
    let vms = vec![vm("web1", &[("web", "10.1.0.5")]), vm("db1", &[("db", "10.3.0.7")]), stopped];
    let d = desired(vms.clone(), network(&["h1"]));
    let out = net.converge(&d, &running(&["web1", "db1"]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    // Served: the taps that exist (a stopped VM has none), each with its NIC's lease.
    let served = dhcp.served();
    assert_eq!(served.keys().collect::<Vec<_>>(), {
        let mut taps = vec![&web1, &db1];
        taps.sort();
        taps
    });
    let mac = dhcp::packet::parse_mac("52:54:00:00:00:00").expect("mac");
    assert_eq!(
        served[&web1],
        Lease { mac, ip: ip("10.1.0.5"), prefix: 24, gateway: ip("10.1.0.1"), lease_secs: 86_400, mtu: Some(1450) }
    );
    // The NIC's MAC is offered its IPAM address, the zone's mask and gateway, by broadcast.
    let (offer, to) = dhcp.answer(&web1, &dhcp_message(MessageType::Discover, mac, None)).expect("an offer");
    assert_eq!(to.to_string(), "255.255.255.255:68");
    let view = dhcp::packet::read_reply(&offer).expect("reply");
    assert_eq!((view.kind, view.yiaddr), (Some(MessageType::Offer), ip("10.1.0.5")));
    assert_eq!(
        (view.mask, view.router, view.server_id),
        (Some(ip("255.255.255.0")), Some(ip("10.1.0.1")), Some(ip("10.1.0.1")))
    );
    let (ack, _) = dhcp.answer(&db1, &dhcp_message(MessageType::Request, mac, Some("10.3.0.7"))).expect("an ack");
    assert_eq!(dhcp::packet::read_reply(&ack).and_then(|v| v.kind), Some(MessageType::Ack));
    let (nak, _) = dhcp.answer(&db1, &dhcp_message(MessageType::Request, mac, Some("10.1.0.5"))).expect("a nak");
    assert_eq!(dhcp::packet::read_reply(&nak).and_then(|v| v.kind), Some(MessageType::Nak), "another VM's address");
    // An unknown MAC gets no answer, on any tap; no tap of a VM not here answers.
    let stranger = [0x52, 0x54, 0x00, 0xde, 0xad, 0x01];
    assert_eq!(dhcp.answer(&web1, &dhcp_message(MessageType::Discover, stranger, None)), None);
    assert_eq!(dhcp.answer(&web1, &dhcp_message(MessageType::Request, stranger, Some("10.1.0.5"))), None);
    assert_eq!(dhcp.answer(&off, &dhcp_message(MessageType::Discover, mac, None)), None);

    // A second pass restarts nothing; the stopped VM starts: its tap is served from the next pass.
    net.converge(&d, &running(&["web1", "db1"]));
    assert_eq!(dhcp.starts(&web1), 1);
    h.dataplane.add_tap(&off);
    net.converge(&d, &running(&["web1", "db1", "off"]));
    assert!(dhcp.served().contains_key(&off));

    // A tap the server cannot bind to: that VM's error, the others are served.
    dhcp.set_missing(&db1, true);
    let out = net.converge(&d, &running(&["web1", "db1", "off"]));
    let error = out.vm_errors.get("db1").expect("db1's error");
    assert!(error.starts_with(&format!("dhcp: tap {db1}: ")), "{error}");
    assert_eq!(out.vm_errors.len(), 1, "{:?}", out.vm_errors);
    assert!(dhcp.served().contains_key(&web1));
    dhcp.set_missing(&db1, false);
    assert!(net.converge(&d, &running(&["web1", "db1", "off"])).vm_errors.is_empty());

    // A VM with a MAC that is not one: an error on it, no lease.
    let mut bad = vm("bad", &[("web", "10.1.0.9")]);
    bad.nics[0].mac = "not-a-mac".into();
    h.dataplane.add_tap(&tap_name("bad", 0));
    let mut with_bad = vms.clone();
    with_bad.push(bad);
    let out = net.converge(&desired(with_bad, network(&["h1"])), &running(&["web1", "db1", "off", "bad"]));
    assert!(out.vm_errors.get("bad").is_some_and(|e| e.contains("bad MAC")), "{:?}", out.vm_errors);
    assert!(!dhcp.served().contains_key(&tap_name("bad", 0)));

    // Deleted VMs' taps are no longer served.
    let out = net.converge(&desired(vec![vms[0].clone()], network(&["h1"])), &running(&["web1"]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    assert_eq!(dhcp.served().keys().collect::<Vec<_>>(), [&web1]);
    // A desired state without a network: no lease is served any more.
    let mut without = desired(vec![vms[0].clone()], network(&["h1"]));
    without.network = None;
    net.converge(&without, &running(&["web1"]));
    assert!(dhcp.served().is_empty());
}

#[test]
fn the_firewall_lets_dhcp_reach_the_host_from_a_vm_without_an_address() {
    let h = host();
    let web1 = tap_name("web1", 0);
    h.dataplane.add_tap(&web1);
    h.net.converge(&desired(vec![vm("web1", &[("web", "10.1.0.5")])], network(&["h1"])), &running(&["web1"]));
    let to_host = |src: &str, proto| Packet {
        iif: web1.clone(),
        oif: None,
        src: Some(ip(src)),
        dst: Some(ip("255.255.255.255")),
        proto,
        ct_state: CtState::New,
    };
    let judge = |p: &Packet| h.firewall.evaluate(p).expect("evaluate").verdict;
    assert_eq!(judge(&to_host("0.0.0.0", L4::Udp(67))), Verdict::Accept);
    assert_eq!(judge(&to_host("10.1.0.5", L4::Udp(67))), Verdict::Accept);
    assert_eq!(judge(&to_host("0.0.0.0", L4::Udp(68))), Verdict::Drop, "not DHCP: the spoofing rule");
    assert_eq!(judge(&to_host("10.1.0.5", L4::Tcp(67))), Verdict::Drop, "VMs open nothing else to the host");
}

/// `network` with zone `web` on VLAN 100 instead of its VXLAN.
fn web_on_vlan(hosts: &[&str], vlan: u16) -> HostNetwork {
    let mut n = network(hosts);
    n.zones[0] = n.zones[0].clone().on_vlan(vlan);
    n
}

#[test]
fn a_zone_on_a_vlan_gets_a_vlan_device_on_the_trunk_and_nothing_else_changes() {
    let h = host_with(Some(ip(UNDERLAY)), Some("bond0"));
    let web1 = tap_name("web1", 0);
    h.dataplane.add_tap(&web1);
    let d = desired(vec![vm("web1", &[("web", "10.1.0.5")])], web_on_vlan(&["h1", "h2"], 100));
    let out = h.net.converge(&d, &running(&["web1"]));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    let seen = h.dataplane.host();
    let vlan = hci_agent::network::plan::Vlan { id: 100, lower: "bond0".into() };
    assert_eq!(seen.links["vl-100"], Link { up: true, vxlan: None, vlan: Some(vlan), mtu: 1500 });
    assert_eq!(seen.links[&web1].mtu, 1500, "a tap in a VLAN zone: the VLAN default");
    assert!(seen.routes.contains(&Route { dst: "10.1.0.0/24".into(), dev: "vl-100".into() }));
    assert!(!seen.links.contains_key("vx-10000"), "the VLAN replaces the zone's VXLAN");
    assert!(seen.links.contains_key("vx-10001"), "the other zones keep theirs");
    assert_eq!(seen.sysctls[&sysctl_proxy_arp("vl-100")], "1");
    assert!(seen.links["bond0"].up && seen.links["bond0"].vlan.is_none(), "the trunk is the operator's");
    // Traffic of the zone from another host arrives on vl-100, a fabric device of the firewall.
    assert_eq!(verdict(&h, "vl-100", &web1, "10.1.0.9", "10.1.0.5", 22), Verdict::Accept);
    assert_eq!(verdict(&h, "vl-100", &web1, "10.3.0.9", "10.1.0.5", 22), Verdict::Drop);

    assert!(h.net.converge(&d, &running(&["web1"])).ops.is_empty(), "a second pass changes nothing");
    // Another VLAN for the zone: the old device goes, with its route; the trunk stays.
    let moved = desired(d.vms.clone(), web_on_vlan(&["h1", "h2"], 200));
    let out = h.net.converge(&moved, &running(&["web1"]));
    assert!(out.ops.contains(&Op::DeleteLink { name: "vl-100".into() }), "{:?}", out.ops);
    let seen = h.dataplane.host();
    assert!(
        !seen.links.contains_key("vl-100") && seen.links.contains_key("vl-200") && seen.links.contains_key("bond0")
    );
    assert!(seen.routes.contains(&Route { dst: "10.1.0.0/24".into(), dev: "vl-200".into() }));
}

#[test]
fn a_nic_in_a_zone_this_host_cannot_carry_is_an_error_of_its_vm() {
    // An underlay address but no trunk: the VLAN zone stays on this host, and its VM says so.
    let (h, web1, db1) = (host(), tap_name("web1", 0), tap_name("db1", 0));
    let (d, out) = converge_web1_db1(&h, web_on_vlan(&["h1", "h2"], 100));
    let error = out.vm_errors.get("web1").expect("web1 is told");
    assert!(error.contains("VLAN 100") && error.contains("--vlan-trunk"), "{error}");
    assert!(!out.vm_errors.contains_key("db1"), "{:?}", out.vm_errors);
    assert!(!h.dataplane.host().links.keys().any(|l| l.starts_with("vl-")));
    // Its NIC is still enforced (it reaches VMs of this host as the policies allow).
    assert_eq!(verdict(&h, &web1, &db1, "10.1.0.5", "10.3.0.7", 5432), Verdict::Accept);
    // A trunk with no underlay address: the VXLAN zones are the ones it cannot carry.
    let h = host_with(None, Some("bond0"));
    h.dataplane.add_tap(&db1);
    let out = h.net.converge(&d, &running(&["db1"]));
    let error = out.vm_errors.get("db1").expect("db1 is told");
    assert!(error.contains("VXLAN 10001") && error.contains("--underlay-address"), "{error}");
    assert!(h.dataplane.host().links.contains_key("vl-100"));
}

#[test]
fn a_zone_device_that_cannot_be_made_is_an_error_of_that_zones_vms_only() {
    // The trunk the operator named is not there: vl-100 cannot be made.
    let h = host_with(Some(ip(UNDERLAY)), Some("bond0"));
    h.dataplane.remove_link("bond0");
    let (_, out) = converge_web1_db1(&h, web_on_vlan(&["h1", "h2"], 100));
    let error = out.vm_errors.get("web1").expect("web1 (zone web, on VLAN 100) is told");
    assert!(error.contains("vl-100") && error.contains("bond0"), "{error}");
    assert!(!out.vm_errors.contains_key("db1"), "db1's zone travels on vx-10001: {:?}", out.vm_errors);
}

#[test]
fn the_operators_vlans_and_addresses_are_never_taken() {
    use hci_agent::network::plan::{sysctl_arp_ignore, Vlan};
    let h = host_with(Some(ip(UNDERLAY)), Some("bond0"));
    h.dataplane.add_device("eth9");
    h.dataplane.edit(|host| {
        // The operator's VLANs: one named like ours on another device, one on our trunk under another name.
        let theirs = |id: u16, lower: &str| Link {
            up: true,
            vlan: Some(Vlan { id, lower: lower.into() }),
            mtu: 1500,
            ..Link::default()
        };
        host.links.insert("vl-300".into(), theirs(300, "eth9"));
        host.links.insert("mgmt-vl-7".into(), theirs(7, "bond0"));
        // The host's own address (a kernel local route) that a zone's gateway happens to be.
        host.foreign_local.insert(ip("10.3.0.1"));
    });
    let (_, out) = converge_web1_db1(&h, web_on_vlan(&["h1", "h2"], 100));
    assert!(out.vm_errors.is_empty(), "{:?}", out.vm_errors);
    let seen = h.dataplane.host();
    assert!(seen.links.contains_key("vl-300") && seen.links.contains_key("mgmt-vl-7"), "not ours: left alone");
    assert!(
        !out.ops.iter().any(|op| op.device() == Some("vl-300") || op.device() == Some("mgmt-vl-7")),
        "{:?}",
        out.ops
    );
    assert!(!out.ops.contains(&Op::AddLocal(ip("10.3.0.1"))), "the host already owns it: {:?}", out.ops);
    assert!(seen.local_addresses.contains(&ip("10.1.0.1")));
    // Zone devices answer no ARP for the gateways (local routes), only proxy ARP for VMs.
    for dev in ["vl-100", "vx-10001"] {
        assert_eq!(seen.sysctls[&sysctl_arp_ignore(dev)], "1", "{dev}");
    }
    // Without a trunk, a host owns no VLAN at all: an operator's vl-100 on bond0 stays.
    let h = host();
    h.dataplane.add_device("bond0");
    h.dataplane.edit(|host| {
        let vlan = Vlan { id: 100, lower: "bond0".into() };
        host.links.insert("vl-100".into(), Link { up: true, vlan: Some(vlan), mtu: 1500, ..Link::default() });
    });
    converge_web1_db1(&h, network(&["h1", "h2"]));
    assert!(h.dataplane.host().links.contains_key("vl-100"));
}
