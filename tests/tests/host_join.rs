//! Real agents join a real 3-member controller cluster: each appears in `GET /v1/hosts` with its
//! inventory from its own libvirt, heartbeats carry usage, a kill -9 of an agent makes its host
//! offline within the lease, a restart makes it ready again with its stored credential (no token),
//! a used token is refused, and neither a controller leader failover nor a restart of every controller
//! flaps any host offline (the agents keep serving meanwhile).
//!
//! Needs root and `scripts/libvirt/up.sh` (one libvirt instance per simulated host).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hci_tests::agent::{AgentProc, LibvirtHost};
use hci_tests::api::{Auth, Body};
use hci_tests::{poll, Api, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

const LEASE_MS: u64 = 3000;
const LEASE: Duration = Duration::from_millis(LEASE_MS);

fn create_token(api: &Api, member: u64) -> String {
    let r = api.post_json(member, "/v1/hosts/join-tokens", &json!({"ttl_seconds": 600})).expect(201, "join token");
    r.json["token"].as_str().expect("token").to_string()
}

fn write_token(dir: &Path, host: &str, token: &str) -> PathBuf {
    let path = dir.join(format!("{host}.token"));
    std::fs::write(&path, format!("{token}\n")).expect("write token file");
    path
}

/// `GET /v1/hosts/{id}` through any running member; the host as JSON.
fn host(c: &Cluster, id: &str) -> Result<Value, String> {
    let mut last = String::new();
    for member in c.running() {
        match c.api().try_get(member, &format!("/v1/hosts/{id}")) {
            Ok(r) if r.status == 200 => return Ok(r.json),
            Ok(r) => last = format!("member {member}: {r}"),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn state(host: &Value) -> &str {
    host["state"].as_str().unwrap_or("?")
}

/// Waits until host `id` is ready and its heartbeats reach the leader; returns it.
fn wait_ready(c: &Cluster, id: &str, timeout: Duration) -> Value {
    poll(&format!("host {id} ready with heartbeats"), timeout, || {
        let h = host(c, id)?;
        let age = h["heartbeat"]["age_ms"].as_u64();
        // A join alone also renews the lease (with no usage yet): wait for a real heartbeat, which
        // carries the agent's pools.
        let beat = h["heartbeat"]["usage"]["pools"].as_array().is_some_and(|p| !p.is_empty());
        if state(&h) == "ready" && age.is_some_and(|a| a < LEASE_MS) && beat {
            Ok(h)
        } else {
            Err(h.to_string())
        }
    })
}

fn audit_actions(c: &Cluster, after: u64) -> Vec<(String, String)> {
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let r = c.api().get(leader, &format!("/v1/audit?after={after}&limit=1000")).expect(200, "audit");
    r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["action"].as_str().unwrap_or("").to_string(), i["target"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn last_seq(c: &Cluster) -> u64 {
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let r = c.api().get(leader, "/v1/audit?limit=1000").expect(200, "audit");
    r.json["items"].as_array().and_then(|i| i.last()).and_then(|i| i["seq"].as_u64()).unwrap_or(0)
}

#[test]
fn agents_join_heartbeat_go_offline_and_come_back() {
    let c = Cluster::builder(3).arg("--host-lease-ms").arg(&LEASE_MS.to_string()).start();
    let api = c.api();
    let pid = std::process::id();
    let ids = [format!("hj-a-{pid}"), format!("hj-b-{pid}")];
    let hosts: Vec<LibvirtHost> = std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().map(|id| s.spawn(move || LibvirtHost::up(id))).collect();
        handles.into_iter().map(|h| h.join().expect("libvirt host up")).collect()
    });
    let tokens_dir = tempfile::tempdir().expect("tempdir");
    let tokens: Vec<String> = ids.iter().map(|_| create_token(api, 1)).collect();
    let token_files: Vec<PathBuf> =
        ids.iter().zip(&tokens).map(|(id, t)| write_token(tokens_dir.path(), id, t)).collect();

    // --- join ----------------------------------------------------------------------------------
    let started = Instant::now();
    let mut agents: Vec<AgentProc> = hosts
        .iter()
        .zip(&token_files)
        .map(|(h, f)| {
            let args = ["--controller".to_string(), c.urls(), "--token-file".into(), f.display().to_string()];
            AgentProc::start_with(h, &args)
        })
        .collect();
    let joined: Vec<Value> = ids.iter().map(|id| wait_ready(&c, id, Duration::from_secs(30))).collect();
    eprintln!("MEASURE join: two agents started → both hosts ready with heartbeats in {:?}", started.elapsed());
    for ((h, agent), id) in joined.iter().zip(&agents).zip(&ids) {
        assert_eq!((h["id"].as_str(), h["site"].as_str()), (Some(id.as_str()), Some("primary")), "{h}");
        assert_eq!(h["arch"], std::env::consts::ARCH, "{h}");
        assert_eq!(h["agent_url"].as_str(), Some(agent.url("").as_str()), "{h}");
        let inv = &h["inventory"];
        assert!(
            inv["cpus"].as_u64().is_some_and(|n| n > 0) && inv["memory_mib"].as_u64().is_some_and(|n| n > 0),
            "{h}"
        );
        assert!(["kvm", "tcg"].contains(&inv["accelerator"].as_str().unwrap_or("")), "{h}");
        assert_eq!(inv["pools"][0]["name"], "default", "{h}");
        assert!(inv["pools"][0]["capacity_bytes"].as_u64().is_some_and(|n| n > 0), "{h}");
        let profiles: Vec<&str> =
            inv["firmware_profiles"].as_array().expect("profiles").iter().filter_map(Value::as_str).collect();
        assert!(profiles.contains(&"x86_64-bios") || std::env::consts::ARCH != "x86_64", "{h}");
        // Heartbeats carry usage (the pools as the agent samples them).
        let usage = &h["heartbeat"]["usage"];
        assert_eq!(usage["pools"][0]["name"], "default", "{h}");
        assert_eq!((usage["vms_desired"].as_u64(), usage["vms_running"].as_u64()), (Some(0), Some(0)), "{h}");
        // The credential is kept owner-only in the data dir.
        let cred = agent.data_dir().join("host.credential");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cred).expect("credential file").permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", cred.display());
        // The desired-state feed: the agent holds the controller's (empty) desired state, at the
        // host's current generation (the other host joining moves it: its peers changed).
        poll(&format!("agent {id} to hold the host's desired generation"), Duration::from_secs(15), || {
            let now = api.try_get(1, &format!("/v1/hosts/{id}"))?.json["desired_generation"].as_u64();
            match agent.held_desired() {
                Some(d) if now.is_some() && d["generation"].as_u64() == now => Ok(()),
                other => Err(format!("controller at {now:?}, agent holds {other:?}")),
            }
        });
    }
    let listed = api.get(c.wait_for_leader(Duration::from_secs(10)), "/v1/hosts").expect(200, "list hosts");
    assert_eq!(listed.items().len(), 2, "{listed}");

    // --- a used token is refused and changes nothing -------------------------------------------
    let mut body = json!({"host_id": "hj-x", "site": "primary", "arch": std::env::consts::ARCH,
        "agent_url": "http://127.0.0.1:1", "inventory": joined[0]["inventory"].clone()});
    body["host_id"] = json!(format!("hj-x-{pid}"));
    let r = api
        .send(
            Method::POST,
            2,
            "/v1/hosts/join",
            Some(Body::Json(body)),
            Auth::Header(format!("Bearer {}", tokens[0])),
            &[],
        )
        .expect("answer");
    assert_eq!(r.status, 403, "{r}");
    assert!(r.error_message().is_some_and(|m| m.contains("already used")), "{r}");
    assert_eq!(api.get(1, "/v1/hosts").items().len(), 2, "a refused join registered a host");

    // --- kill -9 an agent: its host goes offline within the lease -------------------------------
    let killed = Instant::now();
    agents[0].kill9();
    let offline = poll(&format!("host {} offline", ids[0]), LEASE + Duration::from_secs(10), || {
        let h = host(&c, &ids[0])?;
        if state(&h) == "offline" {
            Ok(h)
        } else {
            Err(h.to_string())
        }
    });
    let detection = killed.elapsed();
    eprintln!("MEASURE offline: agent kill -9 → host offline in {detection:?} (lease {LEASE_MS} ms)");
    assert!(detection <= LEASE + Duration::from_secs(3), "offline only after {detection:?}");
    assert!(offline["state_reason"].as_str().is_some_and(|r| r.contains("no heartbeat")), "{offline}");
    assert_eq!(state(&host(&c, &ids[1]).expect("other host")), "ready", "the other host stays ready");

    // --- restart it without a token: its credential brings it back -----------------------------
    std::fs::remove_file(&token_files[0]).expect("remove token file");
    let restarted = Instant::now();
    agents[0].restart();
    let back = wait_ready(&c, &ids[0], Duration::from_secs(30));
    eprintln!("MEASURE rejoin: agent restart (credential, no token) → host ready in {:?}", restarted.elapsed());
    assert!(
        back["state_reason"].as_str().is_some_and(|r| r.contains("re-joined") || r.contains("heartbeat")),
        "{back}"
    );

    // --- a controller leader failover does not flap hosts offline -------------------------------
    let seq = last_seq(&c);
    let old_leader = c.wait_for_leader(Duration::from_secs(10));
    c.kill9(old_leader);
    let failed_over = Instant::now();
    let new_leader = c.wait_for_leader(Duration::from_secs(15));
    eprintln!("MEASURE failover: controller {old_leader} killed; {new_leader} leads after {:?}", failed_over.elapsed());
    // Watch for longer than a lease past the election, until the new leader holds fresh leases.
    poll("a full lease under the new leader, both hosts ready with its heartbeats", Duration::from_secs(30), || {
        for id in &ids {
            let h = host(&c, id)?;
            assert_ne!(state(&h), "offline", "host {id} flapped offline after the failover: {h}");
            if h["heartbeat"]["observed_by"].as_u64() != Some(new_leader) {
                return Err(format!("{id}: {}", h["heartbeat"]));
            }
        }
        if failed_over.elapsed() < LEASE + Duration::from_secs(1) {
            return Err("still within a lease of the failover".into());
        }
        Ok(())
    });
    let offline_after: Vec<_> = audit_actions(&c, seq).into_iter().filter(|(a, _)| a == "host.offline").collect();
    assert!(offline_after.is_empty(), "hosts went offline across the failover: {offline_after:?}");

    // --- every controller down: the agents keep serving; back up, the hosts stay ready -------------
    let seq = last_seq(&c);
    for member in c.running() {
        c.kill9(member);
    }
    for agent in &agents {
        assert!(agent.report().is_ok(), "agent {} serves with no controller", agent.host_id);
    }
    let down = Instant::now();
    for member in c.ids() {
        c.restart(member);
    }
    let leader = c.wait_for_leader(Duration::from_secs(20));
    for id in &ids {
        poll(&format!("host {id} heard by the restarted leader {leader}"), Duration::from_secs(30), || {
            let h = host(&c, id)?;
            if state(&h) == "ready" && h["heartbeat"]["observed_by"].as_u64() == Some(leader) {
                Ok(())
            } else {
                Err(h.to_string())
            }
        });
    }
    eprintln!(
        "MEASURE restart-all: controllers killed and restarted → hosts heard by the new leader in {:?}",
        down.elapsed()
    );
    let offline_after: Vec<_> = audit_actions(&c, seq).into_iter().filter(|(a, _)| a == "host.offline").collect();
    assert!(offline_after.is_empty(), "hosts went offline across a restart of every controller: {offline_after:?}");
}
