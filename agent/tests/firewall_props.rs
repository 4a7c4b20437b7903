//! Property tests of the ruleset generator: for random zones, policies, interfaces and packets, the
//! generated nftables objects (run through the evaluator, exactly as they would be sent to `nft`)
//! accept exactly the packets the model-level oracle accepts, and a table brought up to date by
//! element edits is the table a full apply would build. No root, no kernel.

use std::net::Ipv4Addr;

use hci_agent::firewall::enforcer::interface_diff;
use hci_agent::firewall::eval::TableState;
use hci_agent::firewall::model::{CtState, FirewallModel, Interface, Packet, Policy, Zone, L4};
use hci_agent::firewall::ruleset::{full_table, interface_changes};
use hci_shared::names::{parse_cidr, PortRange};
use hci_shared::resources::Protocol;
use proptest::prelude::*;

const PORTS: [u16; 6] = [22, 80, 443, 1000, 1005, 8080];

fn zone_strategy(index: usize) -> impl Strategy<Value = Zone> {
    (prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(move |(isolated, deny_intra_zone)| Zone {
        name: format!("z{index}"),
        isolated,
        cidr: parse_cidr(&format!("10.{index}.0.0/24")).expect("cidr"),
        deny_intra_zone,
    })
}

fn ports_strategy() -> impl Strategy<Value = Vec<PortRange>> {
    prop::collection::vec((prop::sample::select(PORTS.to_vec()), 0u16..6), 0..3)
        .prop_map(|ranges| ranges.into_iter().map(|(lo, width)| PortRange { lo, hi: lo + width }).collect())
}

fn model_strategy() -> impl Strategy<Value = FirewallModel> {
    let zones = (1usize..5).prop_flat_map(|n| (0..n).map(zone_strategy).collect::<Vec<_>>());
    zones.prop_flat_map(|zones| {
        let n = zones.len();
        let protocol = prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any]);
        let policies = prop::collection::vec((0..n, 0..n, protocol, ports_strategy()), 0..8);
        let interfaces = prop::collection::vec((0..n, 2u8..6), 0..7);
        (Just(zones), policies, interfaces, prop::bool::ANY).prop_map(|(zones, policies, interfaces, fabric)| {
            let normal = |i: usize| !zones[i].isolated;
            let policies = policies
                .into_iter()
                .enumerate()
                .filter(|(_, (from, to, _, _))| normal(*from) && normal(*to))
                .map(|(k, (from, to, protocol, ports))| Policy {
                    name: format!("p{k}"),
                    from_zone: zones[from].name.clone(),
                    to_zone: zones[to].name.clone(),
                    protocol,
                    ports: if matches!(protocol, Protocol::Tcp | Protocol::Udp) { ports } else { Vec::new() },
                })
                .collect();
            let interfaces = interfaces
                .into_iter()
                .enumerate()
                .map(|(k, (zone, host))| Interface {
                    ifname: format!("vm{k}"),
                    zone: zones[zone].name.clone(),
                    ip: Ipv4Addr::new(10, zone as u8, 0, host * 10 + k as u8),
                })
                .collect();
            let fabric_ifaces = if fabric { vec!["fab0".to_string()] } else { Vec::new() };
            FirewallModel { zones, policies, interfaces, fabric_ifaces }
        })
    })
}

/// Packets built from the model's own names and addresses, plus strangers, so that most of them
/// meet the interesting rules.
fn packet_strategy(model: &FirewallModel) -> impl Strategy<Value = Packet> {
    let mut ifnames: Vec<String> = model.interfaces.iter().map(|i| i.ifname.clone()).collect();
    ifnames.extend(["fab0", "eth9", "vm-gone"].map(String::from));
    let mut addresses: Vec<Option<Ipv4Addr>> = model.interfaces.iter().map(|i| Some(i.ip)).collect();
    addresses.extend(model.zones.iter().map(|z| Some(Ipv4Addr::from(z.cidr.first() + 77))));
    addresses.extend([Some(Ipv4Addr::new(192, 168, 1, 1)), None]);
    let proto = prop_oneof![
        prop::sample::select(PORTS.to_vec()).prop_map(L4::Tcp),
        (1000u16..1012).prop_map(L4::Udp),
        prop::sample::select(PORTS.to_vec()).prop_map(L4::Udp),
        Just(L4::Icmp),
        Just(L4::Other(47)),
    ];
    let ct = prop::sample::select(vec![
        CtState::New,
        CtState::New,
        CtState::Established,
        CtState::Related,
        CtState::Invalid,
    ]);
    let iif = prop::sample::select(ifnames.clone());
    let oif = prop::option::weighted(0.85, prop::sample::select(ifnames));
    let src = prop::sample::select(addresses.clone());
    let dst = prop::sample::select(addresses);
    (iif, oif, src, dst, proto, ct).prop_map(|(iif, oif, src, dst, proto, ct_state)| {
        // An IPv6 packet has no IPv4 address on either side.
        let (src, dst) = if src.is_none() || dst.is_none() { (None, None) } else { (src, dst) };
        Packet { iif, oif, src, dst, proto, ct_state }
    })
}

fn model_and_packets() -> impl Strategy<Value = (FirewallModel, Vec<Packet>)> {
    model_strategy().prop_flat_map(|model| {
        let packets = prop::collection::vec(packet_strategy(&model), 1..40);
        (Just(model), packets)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_rules_allow_exactly_what_the_model_allows((model, packets) in model_and_packets()) {
        model.validate().expect("the strategy builds valid models");
        let mut table = TableState::default();
        table.apply(&full_table(&model)).expect("the evaluator accepts the generated batch");
        for packet in &packets {
            let outcome = table.evaluate(packet).expect("the evaluator understands every generated rule");
            prop_assert_eq!(outcome.verdict, model.verdict(packet), "packet {:?}, counters {:?}", packet, outcome.counters);
        }
    }

    #[test]
    fn element_edits_build_the_same_table_as_a_full_apply(
        (old, packets) in model_and_packets(),
        keep in prop::collection::vec(prop::bool::ANY, 7),
        moves in prop::collection::vec(0usize..5, 7),
    ) {
        // The new model: same zones and policies; some interfaces gone, some moved to another zone.
        let mut new = old.clone();
        new.interfaces = old
            .interfaces
            .iter()
            .zip(keep.iter().zip(&moves))
            .filter(|(_, (keep, _))| **keep)
            .map(|(iface, (_, to))| {
                let zone = &old.zones[to % old.zones.len()];
                Interface { zone: zone.name.clone(), ip: Ipv4Addr::from(zone.cidr.first() + 200), ..iface.clone() }
            })
            .collect();
        new.interfaces.dedup_by_key(|i| i.ip);
        prop_assume!(new.validate().is_ok());
        let mut edited = TableState::default();
        edited.apply(&full_table(&old)).expect("full");
        edited.apply(&interface_changes(&interface_diff(&old, &new))).expect("edits");
        let mut rebuilt = TableState::default();
        rebuilt.apply(&full_table(&new)).expect("full");
        prop_assert_eq!(edited.listing(), rebuilt.listing());
        for packet in &packets {
            prop_assert_eq!(edited.evaluate(packet).expect("eval").verdict, new.verdict(packet));
        }
    }
}

#[test]
fn the_generator_is_deterministic() {
    let model = FirewallModel {
        zones: vec![Zone {
            name: "a".into(),
            isolated: false,
            cidr: parse_cidr("10.0.0.0/24").expect("cidr"),
            deny_intra_zone: false,
        }],
        policies: Vec::new(),
        interfaces: vec![Interface { ifname: "vm0".into(), zone: "a".into(), ip: Ipv4Addr::new(10, 0, 0, 5) }],
        fabric_ifaces: Vec::new(),
    };
    let a = serde_json::to_string(&full_table(&model)).expect("json");
    let b = serde_json::to_string(&full_table(&model.clone())).expect("json");
    assert_eq!(a, b);
}
