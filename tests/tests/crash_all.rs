//! Whole-cluster crash: every member is killed -9 while clients write. After a restart every
//! acknowledged write is there exactly as acknowledged, and nothing is applied twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hci_tests::{create_tenant, poll, Cluster};
use serde_json::json;

#[test]
fn kill9_all_members_during_writes() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    create_tenant(api, leader, "crash");

    let stop = AtomicBool::new(false);
    let acked_count = AtomicUsize::new(0);
    // name → id for every 201.
    let acked: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    // Every name a request was sent for.
    let attempted: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    // Unexpected refusals (a unique name must never be refused).
    let refused: Mutex<Vec<String>> = Mutex::new(Vec::new());

    std::thread::scope(|s| {
        for t in 0..4u64 {
            let api = api.with_timeout(Duration::from_secs(5));
            let (stop, acked_count, acked, attempted, refused) = (&stop, &acked_count, &acked, &attempted, &refused);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{t}-{i:05}");
                    let member = (t + i) % 3 + 1;
                    i += 1;
                    attempted.lock().expect("lock").insert(name.clone());
                    let body = json!({"name": name, "tenant": "crash", "size_gib": 1});
                    match api.try_post_json(member, "/v1/volumes", &body) {
                        Ok(r) if r.status == 201 => {
                            let id = r.json.get("id").and_then(|v| v.as_str()).map(String::from);
                            let id = id.unwrap_or_else(|| panic!("201 without an id: {r}"));
                            acked.lock().expect("lock").insert(name, id);
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                        // No leader / members dying: the write is unacknowledged.
                        Ok(r) if r.status == 503 || r.status >= 500 => {}
                        Ok(r) => refused.lock().expect("lock").push(format!("{name} via member {member}: {r}")),
                        Err(_) => {}
                    }
                }
            });
        }
        poll("at least 40 acknowledged writes before the crash", Duration::from_secs(30), || {
            let n = acked_count.load(Ordering::SeqCst);
            if n >= 40 {
                Ok(())
            } else {
                Err(format!("{n} so far"))
            }
        });
        for id in c.ids() {
            c.kill9(id);
        }
        stop.store(true, Ordering::SeqCst);
    });

    let acked = acked.into_inner().expect("lock");
    let attempted = attempted.into_inner().expect("lock");
    let refused = refused.into_inner().expect("lock");
    eprintln!("{} attempted, {} acknowledged before the crash", attempted.len(), acked.len());
    assert!(refused.is_empty(), "unique volume creates were refused (4xx) before the crash: {refused:#?}");

    for id in c.ids() {
        c.restart(id);
    }
    let leader = c.wait_for_leader(Duration::from_secs(30));

    let list = poll("a linearizable volume list after the restart", Duration::from_secs(20), || {
        let r = api.try_get(leader, "/v1/volumes")?;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    });
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in list.items() {
        let name = v["name"].as_str().unwrap_or_else(|| panic!("volume without a name: {v}")).to_string();
        let id = v["id"].as_str().unwrap_or_else(|| panic!("volume without an id: {v}")).to_string();
        by_name.entry(name).or_default().push(id);
    }
    let twice: Vec<_> = by_name.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "volume names applied more than once: {twice:?}");
    let unknown: Vec<_> = by_name.keys().filter(|n| !attempted.contains(*n)).collect();
    assert!(unknown.is_empty(), "volumes nobody asked for: {unknown:?}");
    let mut lost = Vec::new();
    for (name, id) in &acked {
        match by_name.get(name) {
            Some(ids) if ids == &vec![id.clone()] => {}
            other => lost.push(format!("{name}: acknowledged id {id}, now {other:?}")),
        }
    }
    assert!(lost.is_empty(), "{} acknowledged volumes lost or changed after kill -9 of all members: {lost:#?}", lost.len());

    // Quota usage agrees with what exists: each create was applied once.
    let tenant = api.get(leader, "/v1/tenants/crash").expect(200, "tenant crash");
    assert_eq!(
        tenant.json["usage"]["disk_gib"].as_u64(),
        Some(by_name.len() as u64),
        "tenant usage.disk_gib must equal the number of 1 GiB volumes ({}): {tenant}",
        by_name.len()
    );

    // Every member converges on the same set.
    let want: BTreeSet<String> = by_name.keys().cloned().collect();
    for id in c.ids() {
        poll(&format!("member {id}'s stale volume list to match the leader's"), Duration::from_secs(20), || {
            let r = api.try_get(id, "/v1/volumes?stale=true")?;
            if r.status != 200 {
                return Err(r.to_string());
            }
            let have: BTreeSet<String> = r.names().into_iter().collect();
            if have == want {
                Ok(())
            } else {
                Err(format!("{} vs {} names", have.len(), want.len()))
            }
        });
    }
}
