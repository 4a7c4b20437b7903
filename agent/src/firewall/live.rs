//! Reading a listed table (`nft -j list table inet hci`) into a form that can be compared: the
//! declarations, chains and rules as the kernel renders them (without handles and counter values),
//! and the elements of every set as plain strings.
//!
//! It exists for drift detection: rules are compared with the kernel's own rendering captured right
//! after a full apply (so a different nft version's way of printing a rule is never taken for
//! drift), elements with what the model says they must be (they change without a full apply).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::model::FirewallModel;
use super::ruleset::{zone_set, VM_ADDRS, VM_IFACES};

/// A listed table, ready to compare.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableShape {
    /// Table, sets (without elements), counters (without values), chains and rules, in listing order.
    pub objects: Vec<Value>,
    /// Every set's elements (an empty set has an empty entry).
    pub elements: BTreeMap<String, BTreeSet<String>>,
}

/// Counts of what a table holds, to check a listing against the batch that made it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outline {
    pub rules_per_chain: BTreeMap<String, usize>,
    pub sets: BTreeSet<String>,
    pub counters: BTreeSet<String>,
}

fn kind_and_body(object: &Value) -> Option<(&str, &Value)> {
    object.as_object()?.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn name_of(body: &Value, key: &str) -> String {
    body.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// One element as a string: `tap1`, `tap1 . 10.0.0.2`.
fn element_key(elem: &Value) -> String {
    match elem {
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get("concat") {
                return parts.iter().map(element_key).collect::<Vec<_>>().join(" . ");
            }
            if let Some(inner) = map.get("elem").and_then(|e| e.get("val")) {
                return element_key(inner);
            }
            elem.to_string()
        }
        other => other.to_string(),
    }
}

/// The shape of a listing (the JSON of `nft -j list table`, or the fake's).
pub fn shape(listing: &Value) -> Result<TableShape, String> {
    let objects = listing.get("nftables").and_then(Value::as_array).ok_or("no \"nftables\" array in the listing")?;
    let mut out = TableShape::default();
    for object in objects {
        let Some((kind, body)) = kind_and_body(object) else { continue };
        if kind == "metainfo" {
            continue;
        }
        let mut body = body.clone();
        if let Some(map) = body.as_object_mut() {
            map.remove("handle");
            if kind == "counter" {
                map.remove("packets");
                map.remove("bytes");
            }
            if kind == "set" || kind == "map" {
                let elems = map.remove("elem");
                let keys = elems.as_ref().and_then(Value::as_array).map(|a| a.iter().map(element_key).collect());
                out.elements.insert(name_of(&body, "name"), keys.unwrap_or_default());
            }
        }
        out.objects.push(serde_json::json!({ kind: body }));
    }
    Ok(out)
}

/// The outline of a listed shape or of a batch's JSON (`add` commands are unwrapped; tables and
/// other commands are not counted).
pub fn outline(objects: &[Value]) -> Outline {
    let mut out = Outline::default();
    for object in objects {
        let object = object.get("add").unwrap_or(object);
        let Some((kind, body)) = kind_and_body(object) else { continue };
        match kind {
            "chain" => {
                out.rules_per_chain.entry(name_of(body, "name")).or_default();
            }
            "rule" => *out.rules_per_chain.entry(name_of(body, "chain")).or_default() += 1,
            "set" | "map" => {
                out.sets.insert(name_of(body, "name"));
            }
            "counter" => {
                out.counters.insert(name_of(body, "name"));
            }
            _ => {}
        }
    }
    out
}

/// What every set must hold for `model`.
pub fn desired_elements(model: &FirewallModel) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    out.insert(VM_IFACES.into(), model.interfaces.iter().map(|i| i.ifname.clone()).collect());
    out.insert(VM_ADDRS.into(), model.interfaces.iter().map(|i| format!("{} . {}", i.ifname, i.ip)).collect());
    for zone in &model.zones {
        let members = model.interfaces.iter().filter(|i| i.zone == zone.name).map(|i| i.ifname.clone());
        out.insert(zone_set(&zone.name), members.collect());
    }
    out
}

/// How `live` differs from the reference rendering and the desired elements, in a sentence.
pub fn difference(
    live: &TableShape,
    reference: &[Value],
    elements: &BTreeMap<String, BTreeSet<String>>,
) -> Option<String> {
    if live.objects != reference {
        let (want, have) = (outline(reference), outline(&live.objects));
        if want != have {
            return Some(format!(
                "chains, sets or counters differ: want {:?} rules per chain, have {:?}",
                want.rules_per_chain, have.rules_per_chain
            ));
        }
        let changed = reference.iter().zip(&live.objects).position(|(a, b)| a != b).unwrap_or(0);
        return Some(format!("object {changed} differs: want {}, have {}", reference[changed], live.objects[changed]));
    }
    for (set, want) in elements {
        let have = live.elements.get(set).cloned().unwrap_or_default();
        if &have != want {
            let missing = want.difference(&have).count();
            let extra = have.difference(want).count();
            return Some(format!("set {set}: {missing} elements missing, {extra} unexpected"));
        }
    }
    None
}
