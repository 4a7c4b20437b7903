//! A leader cut off from its followers must not acknowledge heartbeats: an acknowledged heartbeat
//! tells the agent it is in contact with the cluster (so it does not fence its VMs), while the rest
//! of the cluster may already have elected another leader that counts the host as silent and will
//! restart its HA VMs elsewhere. Both followers are frozen (SIGSTOP); within the election timeout
//! the old leader answers heartbeats 503; once they are back, heartbeats are acknowledged again.

use std::time::{Duration, Instant};

use hci_tests::api::{Auth, Body};
use hci_tests::hosts::join_fake_host;
use hci_tests::{poll, Cluster};
use serde_json::json;

const ELECTION_TIMEOUT_MS: u64 = 1000;

fn heartbeat(c: &Cluster, member: u64, credential: &str) -> Result<u16, String> {
    let body = json!({"usage": {"vms_desired": 0, "vms_running": 0, "vcpus_allocated": 0, "memory_mib_allocated": 0,
                                "pools": []}, "desired_generation": 0});
    let r = c
        .api()
        .send(
            reqwest::Method::POST,
            member,
            "/v1/hosts/h-stale/heartbeat",
            Some(Body::Json(body)),
            Auth::Header(format!("Bearer {credential}")),
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(r.status)
}

#[test]
fn a_leader_without_a_quorum_does_not_acknowledge_heartbeats() {
    let c = Cluster::builder(3)
        .arg("--election-timeout-ms")
        .arg(&ELECTION_TIMEOUT_MS.to_string())
        .arg("--host-lease-ms")
        .arg("60000")
        .start();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let credential = join_fake_host(c.api(), leader, "h-stale", 2, 4096);
    assert_eq!(heartbeat(&c, leader, &credential), Ok(200), "acknowledged with a quorum");

    let followers = c.followers();
    for f in &followers {
        c.sigstop(*f);
    }
    let cut = Instant::now();
    poll("the cut-off leader to stop acknowledging", Duration::from_secs(10), || {
        match heartbeat(&c, leader, &credential) {
            Ok(503) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let refused_after = cut.elapsed();
    eprintln!("MEASURE heartbeats refused by the cut-off leader {refused_after:?} after the cut");
    assert!(
        refused_after < Duration::from_millis(ELECTION_TIMEOUT_MS * 3),
        "refused only after {refused_after:?}; a new leader may be elected after {ELECTION_TIMEOUT_MS} ms"
    );

    for f in &followers {
        c.sigcont(*f);
    }
    let leader = c.wait_for_leader(Duration::from_secs(20));
    poll("heartbeats acknowledged again", Duration::from_secs(20), || match heartbeat(&c, leader, &credential) {
        Ok(200) => Ok(()),
        other => Err(format!("{other:?}")),
    });
}
