//! Failover: the leader dies by kill -9 and nothing it acknowledged is lost; a member that was down
//! (even past a snapshot that purged the log it missed) comes back with everything.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hci_tests::{create_tenant, poll, stale_tenant_names, Cluster};

#[test]
fn leader_kill9_loses_no_acknowledged_write() {
    let c = Cluster::start(3);
    let api = c.api();
    let old_leader = c.wait_for_leader(Duration::from_secs(10));
    let followers = c.followers();
    assert_eq!(followers.len(), 2, "two followers");

    let mut names = Vec::new();
    for i in 0..30 {
        let name = format!("fo-{i:03}");
        create_tenant(api, followers[i % 2], &name);
        names.push(name);
    }

    c.kill9(old_leader);
    let t0 = Instant::now();
    let new_leader = c.wait_for_leader(Duration::from_secs(10));
    eprintln!("member {old_leader} killed; member {new_leader} leads after {:?}", t0.elapsed());
    assert_ne!(new_leader, old_leader, "the killed member cannot be the leader");

    for survivor in c.running() {
        for name in &names {
            api.get(survivor, &format!("/v1/tenants/{name}")).expect(
                200,
                &format!("acknowledged tenant {name}, linearizable read via member {survivor} after failover"),
            );
        }
    }

    let survivors = c.running();
    for i in 30..50 {
        let name = format!("fo-{i:03}");
        create_tenant(api, survivors[i % survivors.len()], &name);
        names.push(name);
    }

    c.restart(old_leader);
    let want: BTreeSet<String> = names.iter().cloned().collect();
    poll(
        &format!("restarted member {old_leader} to list all 50 tenants in its stale view"),
        Duration::from_secs(30),
        || {
            let have = stale_tenant_names(api, old_leader)?;
            let missing: Vec<_> = want.difference(&have).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {} of 50: {missing:?}", missing.len()))
            }
        },
    );
    c.wait_all_voters(Duration::from_secs(15));
}

#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let c = Cluster::builder(3).snapshot_every(20).start();
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let victim = c.followers()[0];
    c.kill9(victim);

    // 200 writes through the leader, 4 at a time, while the victim is down.
    std::thread::scope(|s| {
        for t in 0..4 {
            let api = api.clone();
            s.spawn(move || {
                for i in (t..200).step_by(4) {
                    create_tenant(&api, leader, &format!("snap-{i:03}"));
                }
            });
        }
    });
    let leader_applied =
        c.status(leader).unwrap_or_else(|e| panic!("{e}")).last_applied.expect("the leader has applied entries");

    c.restart(victim);
    let want: BTreeSet<String> = (0..200).map(|i| format!("snap-{i:03}")).collect();
    poll(
        &format!("restarted member {victim} to list all 200 tenants in its stale view"),
        Duration::from_secs(60),
        || {
            let have = stale_tenant_names(api, victim)?;
            let missing: Vec<_> = want.difference(&have).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {} of 200, e.g. {:?}", missing.len(), missing.iter().take(5).collect::<Vec<_>>()))
            }
        },
    );
    c.wait_caught_up(victim, leader_applied);
    c.wait_all_voters(Duration::from_secs(15));
    // The contract has no observable for "caught up by snapshot"; the victim's request counters
    // show whether it received a snapshot (a request on a route naming "snapshot").
    let m = api.try_get_noauth(victim, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    let received: f64 = m
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("request") && l.contains("_total") && l.contains("snapshot"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    let index_lines: Vec<&str> = m.text.lines().filter(|l| l.starts_with("hci_raft_snapshot_index")).collect();
    eprintln!("member {victim}: {received} snapshot request(s) received; {index_lines:?}");
    assert!(
        received >= 1.0,
        "member {victim} caught up, but its /metrics show no request on a snapshot route: it did not catch up by snapshot \
         although the leader snapshots every 20 entries and 200 were written while it was down"
    );
}

#[test]
fn five_members_survive_two_failures() {
    let c = Cluster::start(5);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let follower = c.followers()[0];
    create_tenant(api, follower, "five-before");
    c.kill9(leader);
    c.kill9(follower);
    let new_leader = c.wait_for_leader(Duration::from_secs(10));
    assert!(new_leader != leader && new_leader != follower, "leader {new_leader} was killed");
    let survivors = c.running();
    assert_eq!(survivors.len(), 3);
    for (i, id) in survivors.iter().enumerate() {
        create_tenant(api, *id, &format!("five-after-{i}"));
    }
    for id in &survivors {
        api.get(*id, "/v1/tenants/five-before")
            .expect(200, &format!("tenant written before the failures, via member {id}"));
    }
    c.restart(leader);
    c.restart(follower);
    c.wait_all_voters(Duration::from_secs(20));
    let want: BTreeSet<String> =
        ["five-before", "five-after-0", "five-after-1", "five-after-2"].iter().map(|s| s.to_string()).collect();
    for id in [leader, follower] {
        poll(&format!("restarted member {id} to list every tenant"), Duration::from_secs(20), || {
            let have = stale_tenant_names(api, id)?;
            if want.is_subset(&have) {
                Ok(())
            } else {
                Err(format!("missing {:?}", want.difference(&have).collect::<Vec<_>>()))
            }
        });
    }
}
