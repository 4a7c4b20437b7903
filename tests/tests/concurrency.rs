//! Racing clients through different members: constraints decided at commit time hold under
//! concurrency (one winner per name, no overlapping CIDRs, quota never exceeded, one winner per
//! ETag, unique VM addresses), and the audit log records what happened.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use hci_tests::{create_tenant, Api, Cluster, Resp};
use serde_json::{json, Value};

/// Runs `f(i)` on `n` threads at once (member `i % 3 + 1`), returning the responses by `i`.
fn race(api: &Api, n: usize, f: impl Fn(&Api, u64, usize) -> Resp + Sync) -> Vec<Resp> {
    let out = Mutex::new(BTreeMap::new());
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        for i in 0..n {
            let (api, out, barrier, f) = (api.clone(), &out, &barrier, &f);
            s.spawn(move || {
                barrier.wait();
                let r = f(&api, (i % 3) as u64 + 1, i);
                out.lock().expect("lock").insert(i, r);
            });
        }
    });
    out.into_inner().expect("lock").into_values().collect()
}

fn statuses(rs: &[Resp]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for r in rs {
        *m.entry(r.status).or_default() += 1;
    }
    m
}

#[test]
fn commit_time_constraints_hold_under_races() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));

    // One name, eight creators: one 201, seven 409.
    let rs = race(api, 8, |api, m, _| api.post_json(m, "/v1/tenants", &hci_tests::tenant_body("same-name")));
    let st = statuses(&rs);
    assert_eq!(
        (st.get(&201), st.get(&409)),
        (Some(&1), Some(&7)),
        "same tenant name created 8 times at once: {st:?}; {rs:?}"
    );

    // Overlapping CIDRs: a /16 and seven /24s inside it; exactly one zone may exist.
    let rs = race(api, 8, |api, m, i| {
        let cidr = if i == 0 { "10.50.0.0/16".to_string() } else { format!("10.50.{i}.0/24") };
        api.post_json(m, "/v1/zones", &json!({"name": format!("ov-{i}"), "tenant": "same-name", "cidr": cidr}))
    });
    let st = statuses(&rs);
    let zones = api.get(leader, "/v1/zones").expect(200, "zones");
    let made: Vec<&Value> =
        zones.items().iter().filter(|z| z["name"].as_str().is_some_and(|n| n.starts_with("ov-"))).collect();
    let with_16 = made.iter().any(|z| z["cidr"] == "10.50.0.0/16");
    assert!(!(with_16 && made.len() > 1), "overlapping zones both created: {made:?} ({st:?})");
    assert!(st.keys().all(|s| *s == 201 || *s == 409), "overlapping zone race: {st:?}; {rs:?}");

    // Quota: 10 GiB, eight 2 GiB creates: exactly five succeed.
    let q = json!({"name": "quota-race", "quota": {"vcpus": 4, "memory_mib": 4096, "disk_gib": 10}});
    api.post_json(leader, "/v1/tenants", &q).expect(201, "tenant quota-race");
    let rs = race(api, 8, |api, m, i| {
        api.post_json(m, "/v1/volumes", &json!({"name": format!("q-{i}"), "tenant": "quota-race", "size_gib": 2}))
    });
    let st = statuses(&rs);
    assert_eq!((st.get(&201), st.get(&409)), (Some(&5), Some(&3)), "8 × 2 GiB against a 10 GiB quota: {st:?}; {rs:?}");
    let t = api.get(leader, "/v1/tenants/quota-race").expect(200, "tenant quota-race");
    assert_eq!(t.json["usage"]["disk_gib"], 10, "usage after the quota race: {t}");
    for r in rs.iter().filter(|r| r.status == 409) {
        assert_eq!(r.error_code(), Some("no_capacity"), "a quota refusal is no_capacity: {r}");
    }

    // If-Match: eight updates with the same ETag: one 200, seven 412.
    create_tenant(api, leader, "etag-race");
    let etag = api.get(leader, "/v1/tenants/etag-race").etag.expect("ETag on GET /v1/tenants/etag-race");
    let rs = race(api, 8, |api, m, i| {
        api.put(m, "/v1/tenants/etag-race", &json!({"description": format!("writer {i}")}), Some(&etag))
    });
    let st = statuses(&rs);
    assert_eq!((st.get(&200), st.get(&412)), (Some(&1), Some(&7)), "8 PUTs with one ETag: {st:?}; {rs:?}");

    // Addresses: twenty VMs at once in one /27 zone: distinct MACs and assignable IPs.
    let big = json!({"name": "ipam", "quota": {"vcpus": 100, "memory_mib": 100_000, "disk_gib": 100}});
    api.post_json(leader, "/v1/tenants", &big).expect(201, "tenant ipam");
    api.post_json(leader, "/v1/zones", &json!({"name": "ipz", "tenant": "ipam", "cidr": "10.60.0.0/27"}))
        .expect(201, "zone ipz");
    let rs = race(api, 20, |api, m, i| {
        api.post_json(m, "/v1/vms", &json!({"name": format!("ip-{i}"), "tenant": "ipam", "vcpus": 1, "memory_mib": 128, "nics": [{"zone": "ipz"}, {"zone": "ipz"}]}))
    });
    let st = statuses(&rs);
    // 10.60.0.0/27 has 29 assignable addresses (.2-.30); 40 NICs ask for them.
    let vms = api.get(leader, "/v1/vms").expect(200, "vms");
    let mut ips = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut nics = 0;
    for vm in vms.items() {
        for nic in vm["nics"].as_array().into_iter().flatten() {
            nics += 1;
            let ip: Ipv4Addr = nic["ip"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("NIC without an IPv4 ip: {vm}"));
            let last = ip.octets()[3];
            assert!(
                ip.octets()[..3] == [10, 60, 0] && (2..=30).contains(&last),
                "NIC ip {ip} outside 10.60.0.2-30: {vm}"
            );
            assert!(ips.insert(ip), "ip {ip} given twice");
            assert!(macs.insert(nic["mac"].as_str().unwrap_or("").to_string()), "mac given twice: {vm}");
        }
    }
    eprintln!("20 VMs × 2 NICs in a /27: statuses {st:?}; {nics} NICs placed");
    assert!(st.keys().all(|s| *s == 201 || *s == 409), "VM race in a small zone: {st:?}; {rs:?}");
    assert_eq!(st.get(&201).copied().unwrap_or(0) * 2, nics, "every 201 VM has both NICs, refused ones none");
    assert_eq!(st.get(&201), Some(&14), "29 addresses fit 14 two-NIC VMs: {st:?}");

    // The audit log records creates and refusals.
    let audit = api.get(leader, "/v1/audit").expect(200, "audit");
    let items = audit.items();
    for field in ["time", "caller", "action", "target", "outcome"] {
        assert!(items.iter().all(|r| r.get(field).is_some()), "audit record without {field}: {audit}");
    }
    let creates = items.iter().filter(|r| r["action"] == "tenant.create" && r["target"] == "same-name").count();
    assert!(creates >= 1, "no tenant.create same-name audit record: {audit}");
}
