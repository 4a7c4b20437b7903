//! Whole-cluster crash: every member is killed -9 while clients write, three times over. After each
//! restart every acknowledged write is there exactly as acknowledged, and nothing is applied twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hci_tests::{create_tenant, poll, Api, Cluster};
use serde_json::json;

#[derive(Default)]
struct Record {
    /// name → id of every 201.
    acked: BTreeMap<String, String>,
    /// Every name a create was sent for.
    attempted: BTreeSet<String>,
    /// Outcome counts, for the log: "201", "503", "transport error", ...
    outcomes: BTreeMap<String, usize>,
    /// Refusals a unique name must never get (4xx).
    refused: Vec<String>,
}

/// Four writers create 1 GiB volumes under tenant `crash` until at least `min_acks` are acknowledged
/// in this round; then every member is killed -9 while they keep writing.
fn write_and_crash(c: &Cluster, api: &Api, round: usize, min_acks: usize, rec: &Mutex<Record>) {
    let stop = AtomicBool::new(false);
    let acks = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let api = api.with_timeout(Duration::from_secs(5));
            let (stop, acks) = (&stop, &acks);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("r{round}-w{t}-{i:05}");
                    let member = (t + i) % 3 + 1;
                    i += 1;
                    rec.lock().expect("lock").attempted.insert(name.clone());
                    let body = json!({"name": name, "tenant": "crash", "size_gib": 1});
                    let outcome = api.try_post_json(member, "/v1/volumes", &body);
                    let mut rec = rec.lock().expect("lock");
                    let key = match &outcome {
                        Ok(r) => r.status.to_string(),
                        Err(_) => "transport error".to_string(),
                    };
                    *rec.outcomes.entry(key).or_default() += 1;
                    match outcome {
                        Ok(r) if r.status == 201 => {
                            let id = r.json.get("id").and_then(|v| v.as_str()).map(String::from);
                            let id = id.unwrap_or_else(|| panic!("201 without an id: {r}"));
                            rec.acked.insert(name, id);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        // No leader / members dying: the write is unacknowledged.
                        Ok(r) if r.status >= 500 => {}
                        Ok(r) => rec.refused.push(format!("{name} via member {member}: {r}")),
                        Err(_) => {}
                    }
                }
            });
        }
        poll(
            &format!("round {round}: {min_acks} acknowledged writes before the crash"),
            Duration::from_secs(30),
            || {
                let n = acks.load(Ordering::SeqCst);
                if n >= min_acks {
                    Ok(())
                } else {
                    Err(format!("{n} so far"))
                }
            },
        );
        for id in c.ids() {
            c.kill9(id);
        }
        stop.store(true, Ordering::SeqCst);
    });
}

/// Restarts every member and checks what survived against what was acknowledged.
fn restart_and_verify(c: &Cluster, api: &Api, round: usize, rec: &Record) {
    for id in c.ids() {
        c.restart(id);
    }
    let leader = c.wait_for_leader(Duration::from_secs(30));
    let list_on = |leader: u64| {
        poll(&format!("round {round}: a linearizable volume list after the restart"), Duration::from_secs(20), || {
            let r = api.try_get(leader, "/v1/volumes")?;
            if r.status == 200 {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        })
    };
    let early: BTreeSet<String> = list_on(leader).names().into_iter().collect();

    // Unacknowledged entries still in the leader's log but not yet on a majority commit only with the
    // next entry of the leader (a restarted leader may keep its term and skip the no-op): a barrier
    // write makes the state final before it is judged.
    poll(&format!("round {round}: a barrier write after the restart"), Duration::from_secs(20), || {
        let r = api.try_post_json(leader, "/v1/tenants", &hci_tests::tenant_body(&format!("barrier-{round}")))?;
        match r.status {
            201 => Ok(r),
            503 => Err(r.to_string()),
            _ => panic!("round {round}: barrier write: {r}"),
        }
    });
    let list = list_on(leader);
    let late: Vec<String> = list.names().into_iter().filter(|n| !early.contains(n)).collect();
    if !late.is_empty() {
        eprintln!("round {round}: unacknowledged creates committed only after the restart: {late:?}");
    }
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in list.items() {
        let name = v["name"].as_str().unwrap_or_else(|| panic!("volume without a name: {v}")).to_string();
        let id = v["id"].as_str().unwrap_or_else(|| panic!("volume without an id: {v}")).to_string();
        by_name.entry(name).or_default().push(id);
    }
    let twice: Vec<_> = by_name.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "round {round}: volume names applied more than once: {twice:?}");
    let unknown: Vec<_> = by_name.keys().filter(|n| !rec.attempted.contains(*n)).collect();
    assert!(unknown.is_empty(), "round {round}: volumes nobody asked for: {unknown:?}");
    let mut lost = Vec::new();
    for (name, id) in &rec.acked {
        match by_name.get(name) {
            Some(ids) if ids == &vec![id.clone()] => {}
            other => lost.push(format!("{name}: acknowledged id {id}, now {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "round {round}: {} acknowledged volumes lost or changed after kill -9 of all members: {lost:#?}",
        lost.len()
    );

    // Quota usage agrees with what exists: each create was applied once.
    let tenant = api.get(leader, "/v1/tenants/crash").expect(200, "tenant crash");
    assert_eq!(
        tenant.json["usage"]["disk_gib"].as_u64(),
        Some(by_name.len() as u64),
        "round {round}: tenant usage.disk_gib must equal the number of 1 GiB volumes ({}): {tenant}",
        by_name.len()
    );

    // Every member converges on the leader's set: poll until each stale list equals a fresh
    // linearizable one; on timeout, say exactly which names differ where.
    let names_of = |r: &hci_tests::Resp| -> BTreeSet<String> { r.names().into_iter().collect() };
    let converged = hci_tests::wait::try_poll(Duration::from_secs(20), || {
        let leader = c.leader().ok_or("no agreed leader")?;
        let r = api.try_get(leader, "/v1/volumes")?;
        if r.status != 200 {
            return Err(format!("linearizable list on leader {leader}: {r}"));
        }
        let want = names_of(&r);
        let mut diffs = Vec::new();
        for id in c.ids() {
            let r = api.try_get(id, "/v1/volumes?stale=true")?;
            if r.status != 200 {
                return Err(format!("stale list on member {id}: {r}"));
            }
            let have = names_of(&r);
            if have != want {
                let status = c
                    .status(id)
                    .map(|s| {
                        format!(
                            "term {} last_log_index {:?} last_applied {:?}",
                            s.term, s.last_log_index, s.last_applied
                        )
                    })
                    .unwrap_or_else(|e| e);
                diffs.push(format!(
                    "member {id} ({status}): extra {:?}, missing {:?}",
                    have.difference(&want).collect::<Vec<_>>(),
                    want.difference(&have).collect::<Vec<_>>()
                ));
            }
        }
        if diffs.is_empty() {
            Ok(want)
        } else {
            let ls = c
                .status(leader)
                .map(|s| {
                    format!("term {} last_log_index {:?} last_applied {:?}", s.term, s.last_log_index, s.last_applied)
                })
                .unwrap_or_else(|e| e);
            Err(format!("leader {leader} ({ls}) lists {} volumes; {}", want.len(), diffs.join("; ")))
        }
    });
    let want = converged.unwrap_or_else(|e| {
        panic!("round {round}: members did not converge on the leader's volume set within 20 s: {e}")
    });
    eprintln!(
        "round {round}: {} attempted, {} acknowledged, {} exist; outcomes {:?}",
        rec.attempted.len(),
        rec.acked.len(),
        want.len(),
        rec.outcomes
    );
}

#[test]
fn kill9_all_members_during_writes() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    create_tenant(api, leader, "crash");

    let rec = Mutex::new(Record::default());
    for round in 0..3 {
        write_and_crash(&c, api, round, 30, &rec);
        let rec = rec.lock().expect("lock");
        assert!(rec.refused.is_empty(), "unique volume creates were refused (4xx): {:#?}", rec.refused);
        restart_and_verify(&c, api, round, &rec);
    }
}
