//! A small nftables interpreter for the subset of the JSON schema the generator writes: it applies
//! batches to an in-memory table (each batch all or nothing, like the kernel's transaction) and
//! decides what the table does with one [`Packet`].
//!
//! It exists so that the generated objects themselves (the very `Nftables` value that is sent to
//! `nft -j`) can be checked against the model-level oracle ([`FirewallModel::verdict`]) in property
//! tests, and so that the fake firewall holds a table with the kernel's semantics (unknown set or
//! chain, deleting a missing element, goto falling back to the base policy). Anything outside the
//! subset is an [`EvalError::Unsupported`], never a silent guess.
//!
//! [`FirewallModel::verdict`]: super::model::FirewallModel::verdict

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use nftables::expr::{Expression, MetaKey, NamedExpression, Payload, SetItem, Verdict as NfVerdict};
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, SetType, SetTypeValue};
use nftables::stmt::{Counter, Operator, Statement};
use nftables::types::{NfChainPolicy, NfHook};

use super::model::{CtState, Packet, Verdict, L4};
use super::ruleset::TABLE;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    #[error("unsupported by the evaluator: {0}")]
    Unsupported(String),
    #[error("{0} does not exist")]
    Missing(String),
    #[error("bad value {value:?} for {what}")]
    BadValue { what: String, value: String },
}

/// One field of a packet or of a set element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Str(String),
    Num(u32),
}

type Key = Vec<Atom>;

#[derive(Debug, Clone)]
struct SetState {
    types: Vec<SetType>,
    /// Each element with the expression it was added as (to list it back).
    elements: BTreeMap<Key, Expression<'static>>,
    declaration: serde_json::Value,
}

#[derive(Debug, Clone)]
struct ChainState {
    hook: Option<NfHook>,
    policy: Option<NfChainPolicy>,
    rules: Vec<Vec<Statement<'static>>>,
    declaration: serde_json::Value,
}

/// The agent's table as applied batches left it.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    exists: bool,
    sets: BTreeMap<String, SetState>,
    /// In creation order (the order a listing shows them).
    chains: Vec<(String, ChainState)>,
    counters: BTreeMap<String, serde_json::Value>,
}

/// What evaluating a packet did: the verdict and the named counters it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub counters: Vec<String>,
}

fn unsupported(what: impl std::fmt::Debug) -> EvalError {
    EvalError::Unsupported(format!("{what:?}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl TableState {
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// Applies `batch` entirely or not at all.
    pub fn apply(&mut self, batch: &Nftables) -> Result<(), EvalError> {
        let mut next = self.clone();
        for object in batch.objects.iter() {
            match object {
                NfObject::CmdObject(cmd) => next.command(cmd)?,
                NfObject::ListObject(other) => return Err(unsupported(other)),
            }
        }
        *self = next;
        Ok(())
    }

    fn command(&mut self, cmd: &NfCmd) -> Result<(), EvalError> {
        match cmd {
            NfCmd::Add(NfListObject::Table(t)) if t.name == TABLE => self.exists = true,
            NfCmd::Delete(NfListObject::Table(t)) if t.name == TABLE => {
                if !self.exists {
                    return Err(EvalError::Missing(format!("table {TABLE}")));
                }
                *self = TableState::default();
            }
            NfCmd::Add(object) => {
                if !self.exists {
                    return Err(EvalError::Missing(format!("table {TABLE}")));
                }
                self.add(object)?;
            }
            NfCmd::Delete(NfListObject::Element(e)) => {
                let set =
                    self.sets.get_mut(e.name.as_ref()).ok_or_else(|| EvalError::Missing(format!("set {}", e.name)))?;
                for elem in e.elem.iter() {
                    let key = element_key(&set.types, elem)?;
                    if set.elements.remove(&key).is_none() {
                        return Err(EvalError::Missing(format!("element {key:?} of set {}", e.name)));
                    }
                }
            }
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    fn add(&mut self, object: &NfListObject) -> Result<(), EvalError> {
        match object {
            NfListObject::Counter(c) => {
                let mut declaration = to_json(c);
                declaration["packets"] = 0.into();
                declaration["bytes"] = 0.into();
                self.counters.insert(c.name.to_string(), declaration);
            }
            NfListObject::Set(s) => {
                let types = match &s.set_type {
                    SetTypeValue::Single(t) => vec![*t],
                    SetTypeValue::Concatenated(ts) => ts.to_vec(),
                };
                let mut declaration = to_json(s);
                if let Some(map) = declaration.as_object_mut() {
                    map.remove("elem");
                }
                let entry = self.sets.entry(s.name.to_string()).or_insert(SetState {
                    types,
                    elements: BTreeMap::new(),
                    declaration,
                });
                for elem in s.elem.iter().flat_map(|e| e.iter()) {
                    entry.elements.insert(element_key(&entry.types, elem)?, static_expr(elem));
                }
            }
            NfListObject::Element(e) => {
                let set =
                    self.sets.get_mut(e.name.as_ref()).ok_or_else(|| EvalError::Missing(format!("set {}", e.name)))?;
                for elem in e.elem.iter() {
                    set.elements.insert(element_key(&set.types, elem)?, static_expr(elem));
                }
            }
            NfListObject::Chain(c) => {
                if !self.chains.iter().any(|(name, _)| name == c.name.as_ref()) {
                    let state =
                        ChainState { hook: c.hook, policy: c.policy, rules: Vec::new(), declaration: to_json(c) };
                    self.chains.push((c.name.to_string(), state));
                }
            }
            NfListObject::Rule(r) => {
                for statement in r.expr.iter() {
                    self.check_references(statement)?;
                }
                let rule = r.expr.iter().map(static_statement).collect();
                self.chain_mut(&r.chain)?.rules.push(rule);
            }
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    /// The kernel refuses a rule naming a set, chain or counter that does not exist.
    fn check_references(&self, statement: &Statement) -> Result<(), EvalError> {
        let chain_exists = |name: &str| {
            self.chains
                .iter()
                .any(|(n, _)| n == name)
                .then_some(())
                .ok_or_else(|| EvalError::Missing(format!("chain {name}")))
        };
        match statement {
            Statement::Match(m) => {
                if let Expression::String(s) = &m.right {
                    if let Some(set) = s.strip_prefix('@') {
                        self.sets.get(set).ok_or_else(|| EvalError::Missing(format!("set {set}")))?;
                    }
                }
                Ok(())
            }
            Statement::Counter(Counter::Named(name)) => self
                .counters
                .get(name.as_ref())
                .map(|_| ())
                .ok_or_else(|| EvalError::Missing(format!("counter {name}"))),
            Statement::Goto(t) | Statement::Jump(t) => chain_exists(&t.target),
            Statement::VerdictMap(v) => {
                let Expression::Named(NamedExpression::Set(items)) = &v.data else { return Err(unsupported(&v.data)) };
                for item in items {
                    if let (_, NfVerdict::Goto(t) | NfVerdict::Jump(t)) = mapping(item)? {
                        chain_exists(&t.target)?
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn chain(&self, name: &str) -> Result<&ChainState, EvalError> {
        self.chains
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .ok_or_else(|| EvalError::Missing(format!("chain {name}")))
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut ChainState, EvalError> {
        let missing = || EvalError::Missing(format!("chain {name}"));
        self.chains.iter_mut().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(missing)
    }

    /// The table as `nft -j list table inet hci` shows it (with zero counters and no handles).
    pub fn listing(&self) -> Option<serde_json::Value> {
        if !self.exists {
            return None;
        }
        let mut objects = vec![serde_json::json!({"table": {"family": "inet", "name": TABLE}})];
        for set in self.sets.values() {
            let mut declaration = set.declaration.clone();
            if !set.elements.is_empty() {
                declaration["elem"] = set.elements.values().map(to_json).collect();
            }
            objects.push(serde_json::json!({ "set": declaration }));
        }
        objects.extend(self.counters.values().map(|c| serde_json::json!({ "counter": c })));
        for (name, chain) in &self.chains {
            objects.push(serde_json::json!({ "chain": chain.declaration }));
            for rule in &chain.rules {
                objects
                    .push(serde_json::json!({"rule": {"family": "inet", "table": TABLE, "chain": name, "expr": rule}}));
            }
        }
        Some(serde_json::json!({ "nftables": objects }))
    }

    /// What the table does with `packet`: the forward hook when it has an output interface, the
    /// input hook otherwise. No table, or no base chain for the hook, lets everything pass.
    pub fn evaluate(&self, packet: &Packet) -> Result<Outcome, EvalError> {
        let hook = if packet.oif.is_some() { NfHook::Forward } else { NfHook::Input };
        let mut counters = Vec::new();
        let Some((base, base_state)) = self.chains.iter().find(|(_, c)| c.hook == Some(hook)) else {
            return Ok(Outcome { verdict: Verdict::Accept, counters });
        };
        let policy = match base_state.policy {
            Some(NfChainPolicy::Drop) => Verdict::Drop,
            _ => Verdict::Accept,
        };
        let mut stack: Vec<(String, usize)> = Vec::new();
        let (mut chain, mut index) = (base.clone(), 0usize);
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > 10_000 {
                return Err(EvalError::Unsupported("a loop between chains".into()));
            }
            let rules = &self.chain(&chain)?.rules;
            let Some(rule) = rules.get(index) else {
                match stack.pop() {
                    Some((c, i)) => (chain, index) = (c, i),
                    None => return Ok(Outcome { verdict: policy, counters }),
                }
                continue;
            };
            index += 1;
            match self.run_rule(rule, packet, &mut counters)? {
                Flow::Next => {}
                Flow::Final(verdict) => return Ok(Outcome { verdict, counters }),
                Flow::Return => match stack.pop() {
                    Some((c, i)) => (chain, index) = (c, i),
                    None => return Ok(Outcome { verdict: policy, counters }),
                },
                Flow::Jump(target) => {
                    stack.push((chain.clone(), index));
                    (chain, index) = (target, 0);
                }
                Flow::Goto(target) => (chain, index) = (target, 0),
            }
        }
    }

    fn run_rule(&self, rule: &[Statement], packet: &Packet, counters: &mut Vec<String>) -> Result<Flow, EvalError> {
        for statement in rule {
            match statement {
                Statement::Match(m) => {
                    if !self.matches(&m.left, &m.op, &m.right, packet)? {
                        return Ok(Flow::Next);
                    }
                }
                Statement::Counter(Counter::Named(name)) => counters.push(name.to_string()),
                Statement::Accept(_) => return Ok(Flow::Final(Verdict::Accept)),
                Statement::Drop(_) => return Ok(Flow::Final(Verdict::Drop)),
                Statement::Continue(_) => return Ok(Flow::Next),
                Statement::Return(_) => return Ok(Flow::Return),
                Statement::Jump(t) => return Ok(Flow::Jump(t.target.to_string())),
                Statement::Goto(t) => return Ok(Flow::Goto(t.target.to_string())),
                Statement::VerdictMap(v) => {
                    let Some(key) = packet_value(&v.key, packet)? else { return Ok(Flow::Next) };
                    let Expression::Named(NamedExpression::Set(items)) = &v.data else {
                        return Err(unsupported(&v.data));
                    };
                    for item in items {
                        let (k, verdict) = mapping(item)?;
                        if literal_contains(k, &key)? {
                            return Ok(match verdict {
                                NfVerdict::Accept => Flow::Final(Verdict::Accept),
                                NfVerdict::Drop => Flow::Final(Verdict::Drop),
                                NfVerdict::Continue => Flow::Next,
                                NfVerdict::Return => Flow::Return,
                                NfVerdict::Jump(t) => Flow::Jump(t.target.to_string()),
                                NfVerdict::Goto(t) => Flow::Goto(t.target.to_string()),
                            });
                        }
                    }
                    return Ok(Flow::Next); // a lookup miss ends the rule
                }
                other => return Err(unsupported(other)),
            }
        }
        Ok(Flow::Next)
    }

    fn matches(
        &self,
        left: &Expression,
        op: &Operator,
        right: &Expression,
        packet: &Packet,
    ) -> Result<bool, EvalError> {
        // A field the packet does not have (`ip saddr` of IPv6, `th dport` of ICMP) fails the rule,
        // like the dependency nft adds for it.
        let Some(value) = packet_value(left, packet)? else { return Ok(false) };
        let found = match right {
            Expression::String(s) if s.starts_with('@') => {
                let set = self.sets.get(&s[1..]).ok_or_else(|| EvalError::Missing(format!("set {s}")))?;
                set.elements.contains_key(&value)
            }
            _ => literal_contains(right, &value)?,
        };
        match op {
            Operator::EQ | Operator::IN => Ok(found),
            Operator::NEQ => Ok(!found),
            other => Err(unsupported(other)),
        }
    }
}

enum Flow {
    Next,
    Final(Verdict),
    Return,
    Jump(String),
    Goto(String),
}

/// A `key : verdict` item of a verdict map. In JSON it is a two-element array, which reads back as
/// a list element as well as a mapping; both are taken.
fn mapping<'e, 'a>(item: &'e SetItem<'a>) -> Result<(&'e Expression<'a>, &'e NfVerdict<'a>), EvalError> {
    match item {
        SetItem::Mapping(key, Expression::Verdict(verdict)) => Ok((key, verdict)),
        SetItem::Element(Expression::List(pair)) => match pair.as_slice() {
            [key, Expression::Verdict(verdict)] => Ok((key, verdict)),
            _ => Err(unsupported(item)),
        },
        other => Err(unsupported(other)),
    }
}

fn static_expr(e: &Expression) -> Expression<'static> {
    serde_json::from_value(to_json(e)).unwrap_or(Expression::Boolean(false))
}

fn static_statement(s: &Statement) -> Statement<'static> {
    serde_json::from_value(to_json(s)).unwrap_or(Statement::Drop(None))
}

fn ipv4(s: &str) -> Result<u32, EvalError> {
    s.parse::<Ipv4Addr>().map(u32::from).map_err(|_| EvalError::BadValue { what: "ipv4_addr".into(), value: s.into() })
}

fn element_key(types: &[SetType], elem: &Expression) -> Result<Key, EvalError> {
    let parts: Vec<&Expression> = match elem {
        Expression::Named(NamedExpression::Concat(parts)) => parts.iter().collect(),
        single => vec![single],
    };
    if parts.len() != types.len() {
        return Err(EvalError::BadValue { what: format!("{types:?}"), value: format!("{elem:?}") });
    }
    parts
        .iter()
        .zip(types)
        .map(|(part, ty)| match (ty, part) {
            (SetType::Ifname, Expression::String(s)) => Ok(Atom::Str(s.to_string())),
            (SetType::Ipv4Addr, Expression::String(s)) => Ok(Atom::Num(ipv4(s)?)),
            other => Err(unsupported(other)),
        })
        .collect()
}

/// The packet's value for `expr`, or `None` when the packet has no such field.
fn packet_value(expr: &Expression, packet: &Packet) -> Result<Option<Key>, EvalError> {
    let Expression::Named(named) = expr else { return Err(unsupported(expr)) };
    let atom = match named {
        NamedExpression::Concat(parts) => {
            let mut key = Vec::new();
            for part in parts {
                match packet_value(part, packet)? {
                    Some(v) => key.extend(v),
                    None => return Ok(None),
                }
            }
            return Ok(Some(key));
        }
        NamedExpression::Meta(meta) => match meta.key {
            MetaKey::Iifname => Atom::Str(packet.iif.clone()),
            MetaKey::Oifname => Atom::Str(packet.oif.clone().unwrap_or_default()),
            MetaKey::Nfproto => Atom::Str(if packet.src.is_some() { "ipv4" } else { "ipv6" }.into()),
            MetaKey::L4proto => Atom::Num(match packet.proto {
                L4::Tcp(_) => 6,
                L4::Udp(_) => 17,
                L4::Icmp => 1,
                L4::Other(n) => n.into(),
            }),
            other => return Err(unsupported(other)),
        },
        NamedExpression::Payload(Payload::PayloadField(f)) => match (f.protocol.as_ref(), f.field.as_ref()) {
            ("ip", "saddr") => match packet.src {
                Some(ip) => Atom::Num(ip.into()),
                None => return Ok(None),
            },
            ("ip", "daddr") => match packet.dst {
                Some(ip) => Atom::Num(ip.into()),
                None => return Ok(None),
            },
            ("th", "dport") => match packet.proto {
                L4::Tcp(p) | L4::Udp(p) => Atom::Num(p.into()),
                _ => return Ok(None),
            },
            other => return Err(unsupported(other)),
        },
        NamedExpression::CT(ct) if ct.key == "state" && ct.dir.is_none() => Atom::Str(
            match packet.ct_state {
                CtState::New => "new",
                CtState::Established => "established",
                CtState::Related => "related",
                CtState::Invalid => "invalid",
            }
            .into(),
        ),
        other => return Err(unsupported(other)),
    };
    Ok(Some(vec![atom]))
}

/// Whether the literal `expr` (a value, a prefix, a range, a list or an anonymous set of them) holds
/// the single-field `value`. Literals are read by the kind of value they are compared with, as nft
/// reads them by the type of the left-hand side.
fn literal_contains(expr: &Expression, value: &Key) -> Result<bool, EvalError> {
    let [atom] = value.as_slice() else { return Err(unsupported(value)) };
    Ok(match expr {
        Expression::List(items) => {
            items.iter().map(|i| literal_contains(i, value)).collect::<Result<Vec<_>, _>>()?.into_iter().any(|b| b)
        }
        Expression::Named(NamedExpression::Set(items)) => {
            let mut any = false;
            for item in items {
                let SetItem::Element(e) = item else { return Err(unsupported(item)) };
                any |= literal_contains(e, value)?;
            }
            any
        }
        Expression::Number(n) => *atom == Atom::Num(*n),
        Expression::String(s) => match atom {
            Atom::Str(a) => a == s.as_ref(),
            Atom::Num(n) => *n == number_literal(s)?,
        },
        Expression::Range(r) => {
            let bound = |e: &Expression| match e {
                Expression::Number(n) => Ok(*n),
                Expression::String(s) => number_literal(s),
                other => Err(unsupported(other)),
            };
            let Atom::Num(n) = atom else { return Err(unsupported(atom)) };
            (bound(&r.range[0])?..=bound(&r.range[1])?).contains(n)
        }
        Expression::Named(NamedExpression::Prefix(p)) => {
            let (Expression::String(addr), Atom::Num(n)) = (p.addr.as_ref(), atom) else { return Err(unsupported(p)) };
            let mask = if p.len == 0 { 0 } else { u32::MAX << (32 - p.len.min(32)) };
            ipv4(addr)? & mask == n & mask
        }
        other => return Err(unsupported(other)),
    })
}

/// A number written as nft writes it: an address, a protocol name or digits.
fn number_literal(s: &str) -> Result<u32, EvalError> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        _ if s.contains('.') => ipv4(s),
        _ => s.parse().map_err(|_| EvalError::BadValue { what: "number".into(), value: s.into() }),
    }
}
