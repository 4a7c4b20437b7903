//! The host endpoints without libvirt: join tokens (single use, expiry), a join by plain HTTP, the
//! host credential's reach, heartbeats, leases (offline, back to ready), the desired-state feed,
//! `hcictl host`, and bad input on every new endpoint (4xx naming the field, nothing changed).

use std::process::Command;
use std::time::{Duration, Instant};

use hci_tests::api::{Auth, Body};
use hci_tests::{poll, Api, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

/// A join body as an agent sends it.
fn join_body(host_id: &str) -> Value {
    json!({
        "host_id": host_id,
        "site": "primary",
        "arch": "x86_64",
        "agent_url": "http://127.0.0.1:7100",
        "inventory": {
            "cpus": 4, "memory_mib": 8192, "accelerator": "tcg", "libvirt_version": "9.0.0",
            "pools": [{"name": "default", "backend": "dir-qcow2", "capacity_bytes": 100, "allocation_bytes": 10, "available_bytes": 90}],
            "firmware_profiles": ["x86_64-bios", "x86_64-uefi"]
        }
    })
}

fn bearer(token: &str) -> Auth {
    Auth::Header(format!("Bearer {token}"))
}

fn send(api: &Api, method: Method, path: &str, body: Option<Value>, auth: Auth) -> Resp {
    api.send(method, 1, path, body.map(Body::Json), auth, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn create_token(api: &Api, body: Value) -> String {
    let r = api.post_json(1, "/v1/hosts/join-tokens", &body).expect(201, "create a join token");
    let token = r.json["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("hci_join_"), "{r}");
    assert!(r.json["expires_at"].as_str().is_some_and(|e| e.ends_with('Z')), "{r}");
    assert_eq!(r.json["site"], "primary");
    token
}

/// Asserts a refusal: status, error body, and the field (or phrase) its message names.
#[track_caller]
fn refused(r: Resp, status: u16, names: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r}");
    let message = r.error_message().unwrap_or_else(|| panic!("{what}: no error body: {r}"));
    assert!(message.contains(names), "{what}: message {message:?} should name {names:?}");
}

/// What a refused request must leave as it was.
fn hosts_and_audit(api: &Api) -> (Value, usize) {
    let mut hosts = api.get(1, "/v1/hosts").expect(200, "list hosts").json["items"].clone();
    // The heartbeat's age moves by itself; the replicated record must not.
    for host in hosts.as_array_mut().expect("items") {
        host.as_object_mut().expect("object").remove("heartbeat");
    }
    let joins = api.get(1, "/v1/audit?limit=1000").expect(200, "audit").json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["action"] == "host.join" && r["outcome"] == "ok")
        .count();
    (hosts, joins)
}

#[test]
fn host_endpoints_join_heartbeat_lease_and_refuse_bad_input() {
    let c = Cluster::builder(1).arg("--host-lease-ms").arg("1000").start();
    let api = c.api();

    // --- join tokens -------------------------------------------------------------------------
    let post = |body: Value| api.post_json(1, "/v1/hosts/join-tokens", &body);
    refused(post(json!({"ttl_seconds": 0})), 400, "ttl_seconds", "ttl 0");
    refused(post(json!({"ttl_seconds": 999_999_999})), 400, "ttl_seconds", "ttl too long");
    refused(post(json!({"ttl_seconds": "ten"})), 400, "ttl_seconds", "ttl not a number");
    refused(post(json!({"site": "Main Site"})), 400, "site", "bad site");
    refused(post(json!({"bogus": 1})), 400, "bogus", "unknown field");
    let r = api.send(Method::POST, 1, "/v1/hosts/join-tokens", Some(Body::Raw("{".into())), Auth::Token, &[]);
    refused(r.expect("answer"), 400, "body", "malformed JSON");
    let r = send(api, Method::POST, "/v1/hosts/join-tokens", Some(json!({})), Auth::None);
    refused(r, 401, "Authorization", "no token");
    let token = create_token(api, json!({"ttl_seconds": 600}));

    // --- bad joins: refused before the token is used ----------------------------------------
    let before = hosts_and_audit(api);
    let join = |body: Value, auth: Auth| send(api, Method::POST, "/v1/hosts/join", Some(body), auth);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = join_body("fake-1");
        edit(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|b| b["host_id"] = json!("Fake_1")), "host_id"),
        (with(&|b| b["arch"] = json!("sparc")), "arch"),
        (with(&|b| b["agent_url"] = json!("ftp://x:1")), "agent_url"),
        (with(&|b| b["agent_url"] = json!("http://x")), "agent_url"),
        (with(&|b| b["inventory"]["cpus"] = json!(0)), "inventory.cpus"),
        (with(&|b| b["inventory"]["accelerator"] = json!("xen")), "inventory.accelerator"),
        (with(&|b| b["inventory"]["pools"][0]["name"] = json!("Pool!")), "inventory.pools[0].name"),
        (with(&|b| b["inventory"]["firmware_profiles"][1] = json!("x86_64-bios")), "inventory.firmware_profiles[1]"),
        (with(&|b| b["inventory"]["memory_mib"] = json!(-1)), "inventory.memory_mib"),
        (with(&|b| b["surprise"] = json!(true)), "surprise"),
        (with(&|b| b["site"] = json!("dr")), "site"),
        (
            with(&|b| {
                b.as_object_mut().expect("object").remove("inventory");
            }),
            "inventory",
        ),
    ];
    for (body, field) in cases {
        refused(join(body, bearer(&token)), 400, field, &format!("join naming {field}"));
    }
    refused(join(join_body("fake-1"), Auth::Token), 403, "join token", "join with the operator token");
    refused(join(join_body("fake-1"), Auth::None), 401, "Authorization", "join without a token");
    refused(join(join_body("fake-1"), bearer("hci_join_nope")), 401, "unknown token", "join with an unknown token");
    refused(send(api, Method::GET, "/v1/hosts", None, bearer(&token)), 403, "only good for", "a join token reads");
    assert_eq!(hosts_and_audit(api), before, "refused joins changed something");

    // --- a join, then the token is spent ----------------------------------------------------
    let t0 = Instant::now();
    let r = join(join_body("fake-1"), bearer(&token));
    assert_eq!(r.status, 200, "join: {r}");
    eprintln!("join over HTTP (1 member): {:?}", t0.elapsed());
    let credential = r.json["credential"].as_str().expect("a token join issues a credential").to_string();
    assert!(credential.starts_with("hci_host_"));
    assert_eq!((r.json["lease_ms"].as_u64(), r.json["heartbeat_ms"].as_u64()), (Some(1000), Some(250)));
    let host = &r.json["host"];
    assert_eq!((host["id"].as_str(), host["state"].as_str()), (Some("fake-1"), Some("ready")), "{r}");
    assert_eq!(host["inventory"]["pools"][0]["name"], "default");
    let generation = host["desired_generation"].as_u64().expect("generation");
    let spent = hosts_and_audit(api);
    refused(join(join_body("fake-2"), bearer(&token)), 403, "already used by host 'fake-1'", "token reuse");
    assert_eq!(hosts_and_audit(api), spent, "a refused reuse changed something");

    // --- the credential re-joins, and reaches only its own host's endpoints -----------------
    let mut grown = join_body("fake-1");
    grown["inventory"]["cpus"] = json!(8);
    let r = join(grown, bearer(&credential));
    assert_eq!((r.status, r.json["credential"].is_null()), (200, true), "re-join: {r}");
    assert_eq!(r.json["host"]["inventory"]["cpus"], 8);
    refused(
        join(join_body("fake-2"), bearer(&credential)),
        403,
        "belongs to host 'fake-1'",
        "credential for another host",
    );
    refused(
        send(api, Method::GET, "/v1/tenants", None, bearer(&credential)),
        403,
        "may only",
        "credential reads tenants",
    );
    let beat = |id: &str, body: Value, auth: Auth| {
        send(api, Method::POST, &format!("/v1/hosts/{id}/heartbeat"), Some(body), auth)
    };
    let good = json!({"usage": {"vms_desired": 0, "vms_running": 0, "vcpus_allocated": 0, "memory_mib_allocated": 0, "pools": []}, "desired_generation": generation});
    refused(
        beat("fake-2", good.clone(), bearer(&credential)),
        403,
        "belongs to host 'fake-1'",
        "heartbeat for another host",
    );
    refused(beat("fake-1", good.clone(), Auth::Token), 403, "agent", "operator heartbeat");
    let mut bad = good.clone();
    bad["converged_generation"] = json!(generation + 1);
    refused(beat("fake-1", bad, bearer(&credential)), 400, "converged_generation", "converged ahead of desired");
    refused(beat("fake-1", json!({"usage": {}}), bearer(&credential)), 400, "usage", "incomplete usage");
    refused(
        beat("fake-1", json!({"usage": good["usage"], "desired_generation": 1, "x": 1}), bearer(&credential)),
        400,
        "x",
        "unknown field",
    );

    // --- leases: silence makes it offline, a heartbeat brings it back ------------------------
    let r = beat("fake-1", good.clone(), bearer(&credential));
    assert_eq!((r.status, r.json["lease_ms"].as_u64()), (200, Some(1000)), "heartbeat: {r}");
    let silent = Instant::now();
    let offline = poll("fake-1 to go offline without heartbeats", Duration::from_secs(10), || {
        let r = api.get(1, "/v1/hosts/fake-1");
        if r.json["state"] == "offline" {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    });
    let detected = silent.elapsed();
    eprintln!("offline detected {detected:?} after the last heartbeat (lease 1000 ms)");
    assert!(detected >= Duration::from_millis(1000), "offline before the lease ran out: {detected:?}");
    assert!(offline.json["state_reason"].as_str().is_some_and(|r| r.contains("no heartbeat")), "{offline}");
    let r = beat("fake-1", good.clone(), bearer(&credential));
    assert_eq!((r.status, r.json["state"].as_str()), (200, Some("ready")), "heartbeat of an offline host: {r}");
    let shown = api.get(1, "/v1/hosts/fake-1").expect(200, "get host");
    assert_eq!(shown.json["state"], "ready");
    assert!(shown.json["heartbeat"]["age_ms"].as_u64().is_some_and(|a| a < 1000), "{shown}");
    assert_eq!(shown.json["heartbeat"]["observed_by"], 1);
    let audit = api.get(1, "/v1/audit?limit=1000").expect(200, "audit").json;
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"host.offline") && actions.contains(&"host.ready"), "{actions:?}");

    let metrics = api.try_get_noauth(1, "/metrics").expect("metrics").text;
    // fake-1 is ready or (its 1 s lease ran out again) offline; nothing else.
    let one_of = metrics.contains("hci_hosts{state=\"ready\"} 1") || metrics.contains("hci_hosts{state=\"offline\"} 1");
    assert!(one_of && metrics.contains("hci_hosts{state=\"fenced\"} 0"), "{metrics}");

    // --- the desired-state feed --------------------------------------------------------------
    let feed =
        |query: &str, auth: Auth| send(api, Method::GET, &format!("/v1/hosts/fake-1/desired{query}"), None, auth);
    let r = feed("?after=0", bearer(&credential));
    assert_eq!(
        (r.status, r.json["generation"].as_u64(), r.json["host_id"].as_str()),
        (200, Some(generation), Some("fake-1")),
        "{r}"
    );
    assert_eq!(
        (r.json["vms"].as_array().map(Vec::len), r.json["volumes"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    let t = Instant::now();
    let r = feed(&format!("?after={generation}&wait_ms=300&stale=true"), bearer(&credential));
    assert_eq!(r.status, 204, "nothing newer: {r}");
    assert!(t.elapsed() >= Duration::from_millis(300), "answered before wait_ms: {:?}", t.elapsed());
    assert_eq!(feed("?after=0", Auth::Token).status, 200, "operators may read a host's feed");
    refused(feed("?wait_ms=60001", bearer(&credential)), 400, "wait_ms", "wait too long");
    refused(feed("?after=abc", bearer(&credential)), 400, "after", "after not a number");
    refused(feed("?later=1", bearer(&credential)), 400, "later", "unknown parameter");
    refused(
        send(api, Method::GET, "/v1/hosts/nope/desired", None, Auth::Token),
        404,
        "nope",
        "feed of an unknown host",
    );
    refused(send(api, Method::GET, "/v1/hosts/nope", None, Auth::Token), 404, "nope", "unknown host");

    // --- an expired token --------------------------------------------------------------------
    let short = create_token(api, json!({"ttl_seconds": 1}));
    // Probe with a body the token's site refuses: valid tokens are checked first, so this answers
    // 400 (site) while the token lives and 403 once it expired, and never uses it.
    let mut elsewhere = join_body("fake-3");
    elsewhere["site"] = json!("dr");
    poll("the 1 s join token to expire", Duration::from_secs(10), || {
        let r = join(elsewhere.clone(), bearer(&short));
        match r.status {
            403 => Ok(()),
            400 if r.error_message().is_some_and(|m| m.starts_with("site")) => Err(r.to_string()),
            _ => panic!("probe with the short token: {r}"),
        }
    });
    refused(join(join_body("fake-3"), bearer(&short)), 403, "expired at", "join with an expired token");
    assert_eq!(api.get(1, "/v1/hosts/fake-3").status, 404, "an expired token registered a host");

    // --- hcictl host ------------------------------------------------------------------------
    let hcictl = |args: &[&str]| {
        let out = Command::new(hci_tests::bins::hcictl())
            .args(args)
            .env("HCI_URL", c.urls())
            .env("HCI_TOKEN", c.token())
            .output()
            .expect("run hcictl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = hcictl(&["-o", "json", "host", "join-token", "create", "--ttl", "60"]);
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    assert!(created["token"].as_str().is_some_and(|t| t.starts_with("hci_join_")), "{out}");
    let (code, out, err) = hcictl(&["host", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ID ") && out.contains("STATE") && out.contains("fake-1  primary  x86_64"), "{out}");
    let (code, out, err) = hcictl(&["host", "show", "fake-1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cpus:") && out.contains("8") && out.contains("last_heartbeat:"), "{out}");
    let (code, _, err) = hcictl(&["host", "join-token", "create", "--ttl", "0"]);
    assert_eq!(code, Some(2), "{err}");
}
