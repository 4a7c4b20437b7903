//! The ruleset generator: a [`FirewallModel`] becomes the agent's one nftables table, `inet hci`, as
//! the `nftables` crate's JSON objects. Pure and deterministic: the same model gives the same batch.
//!
//! Layout (see docs/ARCHITECTURE.md, "Firewall"):
//! - sets `vm-ifaces` (every VM tap), `vm-addrs` (tap . its IPAM address) and one `zone_<z>` per
//!   zone (its taps): the only parts that grow with the number of VMs, and what one VM's change edits;
//! - base chains `forward` and `input` (policy accept: traffic that touches no VM tap is not ours),
//!   which drop a VM's packet whose source address is not its own (except DHCP to the host), a packet delivered to a VM that
//!   is not addressed to it, and IPv6 to or from VMs; accept established/related; then send a new
//!   flow to `from_<zone>` by the tap it came in on (or, from the fabric, by its source network);
//! - `from_<zone>` dispatches on the destination network with a verdict map to `pair_<from>_<to>`,
//!   which holds one rule per policy with its own named counter (`policy_<name>`);
//! - every chain a flow can enter ends in an explicit counted drop: nothing falls through to a
//!   base chain's accept.
//!
//! It must never depend on anything but the model (no clock, no host state).

use std::borrow::Cow;

use hci_shared::resources::Protocol;
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem, CT};
use nftables::schema::{self, NfListObject, Nftables, SetType, SetTypeValue};
use nftables::stmt::{Counter, JumpTarget, Match, Operator, Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::model::{FirewallModel, Interface, Policy, Zone};

pub const TABLE: &str = "hci";
pub const FAMILY: NfFamily = NfFamily::INet;
pub const VM_IFACES: &str = "vm-ifaces";
pub const VM_ADDRS: &str = "vm-addrs";
/// Counters of the built-in drops.
pub const DROP_DEFAULT: &str = "drop_default";
pub const DROP_SPOOFED: &str = "drop_spoofed";
pub const DROP_MISADDRESSED: &str = "drop_misaddressed";
pub const DROP_NOT_IPV4: &str = "drop_not_ipv4";
pub const DROP_INVALID: &str = "drop_invalid";
pub const DROP_TO_HOST: &str = "drop_to_host";
/// VMs' DHCP requests to the host (UDP to this port) pass the input chain whatever their source.
pub const DHCP_SERVER_PORT: u16 = 67;
const BUILTIN_COUNTERS: [&str; 6] =
    [DROP_DEFAULT, DROP_SPOOFED, DROP_MISADDRESSED, DROP_NOT_IPV4, DROP_INVALID, DROP_TO_HOST];

pub fn zone_set(zone: &str) -> String {
    format!("zone_{zone}")
}
pub fn from_chain(zone: &str) -> String {
    format!("from_{zone}")
}
pub fn pair_chain(from: &str, to: &str) -> String {
    format!("pair_{from}_{to}")
}
pub fn policy_counter(policy: &str) -> String {
    format!("policy_{policy}")
}
pub fn intra_counter(zone: &str) -> String {
    format!("intra_{zone}")
}

/// One VM interface entering or leaving the table: element edits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChange {
    Add(Interface),
    Remove(Interface),
}

/// The whole table as one batch that first removes whatever table `inet hci` exists (the leading
/// `add table` makes the `delete` valid when there is none) and then builds it anew. nft sends a
/// batch as one netlink transaction, which the kernel commits entirely or not at all: there is no
/// moment with no table, a half-built table, or a mix of old and new.
pub fn full_table(model: &FirewallModel) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    let counters = BUILTIN_COUNTERS
        .iter()
        .map(|c| c.to_string())
        .chain(model.zones.iter().map(|z| intra_counter(&z.name)))
        .chain(model.policies.iter().map(|p| policy_counter(&p.name)));
    for name in counters {
        batch.add(NfListObject::Counter(schema::Counter {
            family: FAMILY,
            table: TABLE.into(),
            name: name.into(),
            handle: None,
            packets: None,
            bytes: None,
        }));
    }
    let ifaces = model.interfaces.iter();
    batch.add(set(VM_IFACES, SetTypeValue::Single(SetType::Ifname), ifaces.clone().map(iface_element).collect()));
    let addr_type = SetTypeValue::Concatenated(Cow::Owned(vec![SetType::Ifname, SetType::Ipv4Addr]));
    batch.add(set(VM_ADDRS, addr_type, ifaces.clone().map(addr_element).collect()));
    for zone in &model.zones {
        let members = ifaces.clone().filter(|i| i.zone == zone.name).map(iface_element).collect();
        batch.add(set(&zone_set(&zone.name), SetTypeValue::Single(SetType::Ifname), members));
    }
    // Every chain first, then the rules: a rule may only name a chain that exists.
    let mut chains = vec![
        (base_chain("forward", NfHook::Forward), forward_rules(model)),
        (base_chain("input", NfHook::Input), input_rules()),
    ];
    for zone in &model.zones {
        let rules = from_zone_rule(model, zone).into_iter().chain([counted_drop(DROP_DEFAULT)]).collect();
        chains.push((chain(&from_chain(&zone.name)), rules));
    }
    for (from, to) in pairs(model) {
        let mut rules: Vec<Vec<Statement<'static>>> = if from.name == to.name {
            vec![vec![named_counter(&intra_counter(&from.name)), accept()]]
        } else {
            policies_between(model, from, to).map(policy_rule).collect()
        };
        rules.push(counted_drop(DROP_DEFAULT));
        chains.push((chain(&pair_chain(&from.name, &to.name)), rules));
    }
    for (declaration, _) in &chains {
        batch.add(NfListObject::Chain(declaration.clone()));
    }
    for (declaration, rules) in chains {
        for expr in rules {
            batch.add(NfListObject::Rule(schema::Rule {
                family: FAMILY,
                table: TABLE.into(),
                chain: declaration.name.clone(),
                expr: Cow::Owned(expr),
                handle: None,
                index: None,
                comment: None,
            }));
        }
    }
    batch.to_nftables()
}

/// One small batch of element edits for interfaces entering or leaving (a move is a remove and an
/// add in the same batch): its size depends on the change, not on the table. A removal first adds
/// the element (a no-op when present), so removing what is already gone still succeeds.
pub fn interface_changes(changes: &[InterfaceChange]) -> Nftables<'static> {
    let mut batch = Batch::new();
    for change in changes {
        let iface = match change {
            InterfaceChange::Add(i) | InterfaceChange::Remove(i) => i,
        };
        let elements = [
            (VM_IFACES.to_string(), iface_element(iface)),
            (VM_ADDRS.to_string(), addr_element(iface)),
            (zone_set(&iface.zone), iface_element(iface)),
        ];
        for (set_name, elem) in elements {
            let element = || {
                NfListObject::Element(schema::Element {
                    family: FAMILY,
                    table: TABLE.into(),
                    name: set_name.clone().into(),
                    elem: Cow::Owned(vec![elem.clone()]),
                })
            };
            batch.add(element());
            if matches!(change, InterfaceChange::Remove(_)) {
                batch.delete(element());
            }
        }
    }
    batch.to_nftables()
}

/// Zone pairs that get a chain: a zone with itself unless it denies intra-zone traffic, and every
/// pair some policy allows (never with an isolated zone: [`FirewallModel::validate`] refuses those).
fn pairs(model: &FirewallModel) -> Vec<(&Zone, &Zone)> {
    let mut out = Vec::new();
    for from in &model.zones {
        for to in &model.zones {
            let intra = from.name == to.name && !from.deny_intra_zone;
            let crossing = from.name != to.name
                && !from.isolated
                && !to.isolated
                && policies_between(model, from, to).next().is_some();
            if intra || crossing {
                out.push((from, to));
            }
        }
    }
    out
}

fn policies_between<'m>(model: &'m FirewallModel, from: &'m Zone, to: &'m Zone) -> impl Iterator<Item = &'m Policy> {
    model.policies.iter().filter(move |p| p.from_zone == from.name && p.to_zone == to.name)
}

fn forward_rules(model: &FirewallModel) -> Vec<Vec<Statement<'static>>> {
    let mut rules = vec![
        // Traffic that neither comes from nor goes to a VM is not this table's business.
        vec![
            matches(meta(MetaKey::Iifname), Operator::NEQ, set_ref(VM_IFACES)),
            matches(meta(MetaKey::Oifname), Operator::NEQ, set_ref(VM_IFACES)),
            accept(),
        ],
        with_drop(vec![matches(meta(MetaKey::Nfproto), Operator::NEQ, string("ipv4"))], DROP_NOT_IPV4),
        // A VM speaks only from its own address (checked before conntrack, so a spoofed packet
        // cannot ride on another VM's connection either).
        with_drop(
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, set_ref(VM_IFACES)),
                matches(concat(MetaKey::Iifname, "saddr"), Operator::NEQ, set_ref(VM_ADDRS)),
            ],
            DROP_SPOOFED,
        ),
        // A VM receives only what is addressed to it.
        with_drop(
            vec![
                matches(meta(MetaKey::Oifname), Operator::EQ, set_ref(VM_IFACES)),
                matches(concat(MetaKey::Oifname, "daddr"), Operator::NEQ, set_ref(VM_ADDRS)),
            ],
            DROP_MISADDRESSED,
        ),
        vec![matches(ct_state(), Operator::IN, ct_states(&["established", "related"])), accept()],
        with_drop(vec![matches(ct_state(), Operator::IN, ct_states(&["invalid"]))], DROP_INVALID),
    ];
    for zone in &model.zones {
        rules.push(vec![
            matches(meta(MetaKey::Iifname), Operator::EQ, set_ref(&zone_set(&zone.name))),
            goto(&from_chain(&zone.name)),
        ]);
    }
    if !model.fabric_ifaces.is_empty() && !model.zones.is_empty() {
        let fabric = model.fabric_ifaces.iter().map(|f| SetItem::Element(string(f))).collect();
        let by_source = model.zones.iter().map(|z| (z.cidr, goto_verdict(&from_chain(&z.name)))).collect();
        rules.push(vec![
            matches(meta(MetaKey::Iifname), Operator::EQ, Expression::Named(NamedExpression::Set(fabric))),
            vmap(payload("ip", "saddr"), by_source),
        ]);
    }
    rules.push(counted_drop(DROP_DEFAULT));
    rules
}

fn input_rules() -> Vec<Vec<Statement<'static>>> {
    vec![
        vec![matches(meta(MetaKey::Iifname), Operator::NEQ, set_ref(VM_IFACES)), accept()],
        with_drop(vec![matches(meta(MetaKey::Nfproto), Operator::NEQ, string("ipv4"))], DROP_NOT_IPV4),
        // DHCP to the agent's server (crate::network::dhcp), before the address check: a client
        // without an address yet sends from 0.0.0.0.
        vec![
            matches(meta(MetaKey::L4proto), Operator::EQ, string("udp")),
            matches(payload("th", "dport"), Operator::EQ, Expression::Number(DHCP_SERVER_PORT.into())),
            accept(),
        ],
        with_drop(vec![matches(concat(MetaKey::Iifname, "saddr"), Operator::NEQ, set_ref(VM_ADDRS))], DROP_SPOOFED),
        vec![matches(ct_state(), Operator::IN, ct_states(&["established", "related"])), accept()],
        counted_drop(DROP_TO_HOST),
    ]
}

/// `ip daddr vmap { <network of each zone it may reach> : goto pair_<zone>_<to> }`.
fn from_zone_rule(model: &FirewallModel, zone: &Zone) -> Option<Vec<Statement<'static>>> {
    let targets: Vec<_> = pairs(model)
        .into_iter()
        .filter(|(from, _)| from.name == zone.name)
        .map(|(from, to)| (to.cidr, goto_verdict(&pair_chain(&from.name, &to.name))))
        .collect();
    (!targets.is_empty()).then(|| vec![vmap(payload("ip", "daddr"), targets)])
}

fn policy_rule(policy: &Policy) -> Vec<Statement<'static>> {
    let mut rule = Vec::new();
    let l4 = |name: &str| matches(meta(MetaKey::L4proto), Operator::EQ, string(name));
    match policy.protocol {
        Protocol::Any => {}
        Protocol::Icmp => rule.push(l4("icmp")),
        Protocol::Tcp | Protocol::Udp => {
            rule.push(l4(if policy.protocol == Protocol::Tcp { "tcp" } else { "udp" }));
            if !policy.ports.is_empty() {
                let ports = policy
                    .ports
                    .iter()
                    .map(|r| {
                        if r.lo == r.hi {
                            SetItem::Element(Expression::Number(r.lo.into()))
                        } else {
                            let range = [Expression::Number(r.lo.into()), Expression::Number(r.hi.into())];
                            SetItem::Element(Expression::Range(Box::new(Range { range })))
                        }
                    })
                    .collect();
                rule.push(matches(
                    payload("th", "dport"),
                    Operator::EQ,
                    Expression::Named(NamedExpression::Set(ports)),
                ));
            }
        }
    }
    rule.push(named_counter(&policy_counter(&policy.name)));
    rule.push(accept());
    rule
}

fn iface_element(iface: &Interface) -> Expression<'static> {
    string(&iface.ifname)
}

fn addr_element(iface: &Interface) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![string(&iface.ifname), string(&iface.ip.to_string())]))
}

fn table() -> schema::Table<'static> {
    schema::Table { family: FAMILY, name: TABLE.into(), handle: None }
}

fn set(name: &str, set_type: SetTypeValue<'static>, elements: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Set(Box::new(schema::Set {
        family: FAMILY,
        table: TABLE.into(),
        name: name.to_string().into(),
        handle: None,
        set_type,
        policy: None,
        flags: None,
        elem: if elements.is_empty() { None } else { Some(Cow::Owned(elements)) },
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    }))
}

fn chain(name: &str) -> schema::Chain<'static> {
    schema::Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.to_string().into(),
        newname: None,
        handle: None,
        _type: None,
        hook: None,
        prio: None,
        dev: None,
        policy: None,
    }
}

fn base_chain(name: &str, hook: NfHook) -> schema::Chain<'static> {
    schema::Chain {
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(0),
        policy: Some(NfChainPolicy::Accept),
        ..chain(name)
    }
}

fn string(s: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_string()))
}

fn set_ref(name: &str) -> Expression<'static> {
    string(&format!("@{name}"))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

/// `<iifname|oifname> . ip <saddr|daddr>`.
fn concat(ifname: MetaKey, addr_field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![meta(ifname), payload("ip", addr_field)]))
}

fn ct_state() -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT { key: "state".into(), family: None, dir: None }))
}

fn ct_states(states: &[&str]) -> Expression<'static> {
    Expression::List(states.iter().map(|s| string(s)).collect())
}

fn matches(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn named_counter(name: &str) -> Statement<'static> {
    Statement::Counter(Counter::Named(name.to_string().into()))
}

fn with_drop(mut rule: Vec<Statement<'static>>, counter: &str) -> Vec<Statement<'static>> {
    rule.push(named_counter(counter));
    rule.push(Statement::Drop(None));
    rule
}

fn counted_drop(counter: &str) -> Vec<Statement<'static>> {
    with_drop(Vec::new(), counter)
}

fn goto(target: &str) -> Statement<'static> {
    Statement::Goto(JumpTarget { target: target.to_string().into() })
}

fn goto_verdict(target: &str) -> Expression<'static> {
    Expression::Verdict(nftables::expr::Verdict::Goto(JumpTarget { target: target.to_string().into() }))
}

fn vmap(key: Expression<'static>, targets: Vec<(hci_shared::names::Cidr, Expression<'static>)>) -> Statement<'static> {
    let items = targets
        .into_iter()
        .map(|(cidr, verdict)| {
            let prefix = Prefix { addr: Box::new(string(&cidr.network.to_string())), len: cidr.prefix.into() };
            SetItem::Mapping(Expression::Named(NamedExpression::Prefix(prefix)), verdict)
        })
        .collect();
    Statement::VerdictMap(VerdictMap { key, data: Expression::Named(NamedExpression::Set(items)) })
}
