//! /metrics is valid Prometheus text (checked by `promtool`) and carries the Raft progress and API
//! request counters operators alert on; /openapi.json and /healthz need no token.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use hci_tests::{create_tenant, poll, Cluster};

/// Sample name (without labels) → values, from Prometheus text.
fn samples(text: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            out.entry(name.to_string()).or_default().push(v);
        }
    }
    out
}

/// The first metric whose name satisfies `pred`, with the sum of its samples.
fn find<'a>(
    s: &'a BTreeMap<String, Vec<f64>>,
    pred: impl Fn(&str) -> bool,
    what: &str,
    text: &str,
) -> (&'a String, f64) {
    s.iter()
        .find(|(name, _)| pred(name))
        .map(|(n, v)| (n, v.iter().sum()))
        .unwrap_or_else(|| panic!("/metrics has no {what} metric; got:\n{text}"))
}

fn raft(words: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |name| name.contains("raft") && words.iter().all(|w| name.contains(w))
}

fn promtool_check(text: &str) {
    let promtool = match which("promtool") {
        Some(p) => p,
        None => {
            panic!("promtool is not on PATH: install the Debian package `prometheus` (the test script installs it)")
        }
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(bin)).find(|p| p.is_file())
}

#[test]
fn metrics_are_valid_and_cover_raft_and_requests() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    for i in 0..5 {
        create_tenant(api, leader, &format!("met-{i}"));
    }
    let status = c.status(leader).unwrap_or_else(|e| panic!("{e}"));
    for id in c.ids() {
        // Followers learn the commit index with the next heartbeat: poll until applied has caught up.
        let (text, s) =
            poll(&format!("member {id}'s /metrics to show the writes applied"), Duration::from_secs(10), || {
                let r = api.try_get_noauth(id, "/metrics")?;
                if r.status != 200 {
                    return Err(format!("GET /metrics (no auth) on member {id}: {r}"));
                }
                let s = samples(&r.text);
                let applied = find(&s, raft(&["appl", "index"]), "raft applied index", &r.text).1;
                if applied >= status.last_applied.unwrap_or(0) as f64 {
                    Ok((r.text.clone(), s))
                } else {
                    Err(format!("applied {applied} < leader's {:?}", status.last_applied))
                }
            });
        let (_, term) = find(&s, raft(&["term"]), "raft term", &text);
        assert!(term >= 1.0, "member {id}: raft term {term}");
        let (_, leader_metric) = find(&s, raft(&["leader"]), "raft leader", &text);
        eprintln!("member {id}: leader metric {leader_metric}, cluster leader {leader}");
        let (_, commit) = find(&s, raft(&["commit"]), "raft commit index", &text);
        assert!(commit >= 1.0, "member {id}: commit index {commit}");
        if id == leader {
            let (name, reqs) = find(
                &s,
                |n| n.contains("request") && n.ends_with("_total"),
                "API request counter (*request*_total)",
                &text,
            );
            assert!(reqs >= 5.0, "leader {id}: {name} sums to {reqs} after at least 5 requests");
        }
        promtool_check(&text);
    }
}

#[test]
fn unauthenticated_endpoints() {
    let c = Cluster::start(1);
    let api = c.api();
    let h = api.try_get_noauth(1, "/healthz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.status, 200, "/healthz without auth: {h}");
    let o = api.try_get_noauth(1, "/openapi.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status, 200, "/openapi.json without auth: {o}");
    let version = o.json["openapi"].as_str().unwrap_or_else(|| panic!("/openapi.json has no \"openapi\" field: {o}"));
    assert!(version.starts_with("3."), "OpenAPI version {version}");
    let paths = o.json["paths"].as_object().unwrap_or_else(|| panic!("/openapi.json has no paths"));
    for p in ["/v1/tenants", "/v1/zones", "/v1/zone-policies", "/v1/volumes", "/v1/vms", "/v1/cluster"] {
        assert!(paths.contains_key(p), "/openapi.json lacks path {p}; has {:?}", paths.keys().collect::<Vec<_>>());
    }
    let m = api.try_get_noauth(1, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.status, 200, "/metrics without auth: {m}");
    let v = api.try_get_noauth(1, "/v1/tenants").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.status, 401, "/v1/tenants without auth: {v}");
}
