//! `Model::load`: round trips, skipped audit records, recomputed usage, and refusals of damaged
//! stores naming the key.

use std::collections::BTreeMap;

use hci_shared::codec;
use hci_shared::resources::{Tenant, Vm};
use hci_state::keys::{audit_key, AUDIT_PREFIX};
use hci_state::{Model, StateError};

use crate::support::*;

fn populated() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("finance", 8, 8192, 100);
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    h.ok(create_volume("v1", "finance", "root", 10));
    h.ok(create_vm("m1", "finance", "web", 2, 1024, &["v1"], &["fin-net"]));
    h.ok(create_vm("m2", "finance", "db", 2, 1024, &[], &["fin-net"]));
    h
}

#[test]
fn empty_store_loads_an_empty_model() {
    assert_eq!(Model::load(Vec::new()).expect("loads"), Model::new());
}

#[test]
fn load_ignores_pair_order_and_audit_records() {
    let h = populated();
    assert!(h.store.keys().any(|k| k.starts_with(AUDIT_PREFIX)));
    let mut reversed: Vec<(Vec<u8>, Vec<u8>)> = h.store.clone().into_iter().collect();
    reversed.reverse();
    assert_eq!(Model::load(reversed).expect("loads"), h.model);
    // Even an undecodable audit value is skipped: audit records are not the model.
    let mut store = h.store.clone();
    store.insert(audit_key(999), b"garbage".to_vec());
    assert_eq!(Model::load(store).expect("loads"), h.model);
}

#[test]
fn loaded_model_continues_identically() {
    let mut live = populated();
    let mut restarted = populated();
    restarted.model = Model::load(restarted.store.clone()).expect("loads");
    let command = create_vm("m3", "finance", "cache", 1, 512, &[], &["fin-net"]);
    assert_eq!(live.run(command.clone()), restarted.run(command));
    assert_eq!(live.writes, restarted.writes);
}

#[test]
fn usage_is_recomputed_from_the_records() {
    let h = populated();
    let mut store = h.store.clone();
    let key = b"tenant/finance".to_vec();
    let mut tenant: Tenant = codec::decode(&store[&key]).expect("decodes");
    tenant.usage.vcpus = 999;
    store.insert(key, codec::encode(&tenant).expect("encodes"));
    let loaded = Model::load(store).expect("loads");
    assert_eq!(loaded.tenant("finance").map(|t| t.usage.vcpus), Some(4));
}

fn load_err(store: BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    match Model::load(store) {
        Ok(_) => panic!("a damaged store loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn undecodable_value_names_its_key() {
    let mut store = populated().store;
    store.insert(b"vm/m1".to_vec(), vec![1, 2, 3]);
    let message = load_err(store.clone());
    assert!(message.contains("vm/m1"), "{message}");
    store.insert(b"vm/m1".to_vec(), Vec::new());
    assert!(matches!(Model::load(store), Err(StateError::Decode { .. })));
}

#[test]
fn unknown_keys_and_misplaced_records_are_refused() {
    let mut store = populated().store;
    store.insert(b"mystery/1".to_vec(), vec![1]);
    assert!(load_err(store).contains("mystery/1"));

    let mut store = populated().store;
    let value = store[b"tenant/finance".as_slice()].clone();
    store.insert(b"tenant/other".to_vec(), value);
    let message = load_err(store);
    assert!(message.contains("tenant/other") && message.contains("finance"), "{message}");
}

#[test]
fn duplicate_addresses_and_dangling_owners_are_refused() {
    let h = populated();
    let mut store = h.store.clone();
    let mut m2: Vm = codec::decode(&store[b"vm/m2".as_slice()]).expect("decodes");
    m2.nics[0].ip = h.vm("m1").nics[0].ip.clone();
    store.insert(b"vm/m2".to_vec(), codec::encode(&m2).expect("encodes"));
    assert!(matches!(Model::load(store), Err(StateError::DuplicateIp { .. })));

    let mut store = h.store.clone();
    let mut m2: Vm = codec::decode(&store[b"vm/m2".as_slice()]).expect("decodes");
    m2.nics[0].mac = h.vm("m1").nics[0].mac.clone();
    store.insert(b"vm/m2".to_vec(), codec::encode(&m2).expect("encodes"));
    assert!(matches!(Model::load(store), Err(StateError::DuplicateMac { .. })));

    let mut store = h.store.clone();
    store.remove(b"tenant/finance".as_slice());
    assert!(matches!(Model::load(store), Err(StateError::MissingTenant { .. })));
}
