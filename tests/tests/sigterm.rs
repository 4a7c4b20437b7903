//! SIGTERM is a graceful stop: exit status 0 within a few seconds, and the member comes back on its
//! data dir with its state.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hci_tests::{create_tenant, poll, stale_tenant_names, Cluster};

#[test]
fn single_member_sigterm_and_restart() {
    let c = Cluster::start(1);
    let api = c.api();
    for i in 0..10 {
        create_tenant(api, 1, &format!("term-{i}"));
    }
    let before = api.get(1, "/v1/tenants").expect(200, "tenant list before SIGTERM").json;

    let t0 = Instant::now();
    let status = c.sigterm(1);
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
    assert!(took < Duration::from_secs(5), "SIGTERM exit took {took:?}");

    c.restart(1);
    c.wait_for_leader(Duration::from_secs(15));
    let after = poll("a linearizable tenant list after restart", Duration::from_secs(15), || {
        let r = api.try_get(1, "/v1/tenants")?;
        if r.status == 200 {
            Ok(r.json)
        } else {
            Err(r.to_string())
        }
    });
    assert_eq!(before, after, "tenants before SIGTERM and after restart differ");
    create_tenant(api, 1, "term-after");
}

#[test]
fn leader_sigterm_in_three_member_cluster() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let names: BTreeSet<String> = (0..10).map(|i| format!("lterm-{i}")).collect();
    for n in &names {
        create_tenant(api, leader, n);
    }

    let t0 = Instant::now();
    let status = c.sigterm(leader);
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "leader {leader} exit status after SIGTERM: {status}");
    assert!(took < Duration::from_secs(5), "SIGTERM exit took {took:?}");

    let new_leader = c.wait_for_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    create_tenant(api, new_leader, "lterm-after");

    c.restart(leader);
    let mut want = names.clone();
    want.insert("lterm-after".into());
    poll(&format!("member {leader} to list every tenant after restart"), Duration::from_secs(30), || {
        let have = stale_tenant_names(api, leader)?;
        if want.is_subset(&have) {
            Ok(())
        } else {
            Err(format!("missing {:?}", want.difference(&have).collect::<Vec<_>>()))
        }
    });
    c.wait_all_voters(Duration::from_secs(15));
}
