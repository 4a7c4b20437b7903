//! End-to-end tests of the `hcictl` binary against canned HTTP servers: exit statuses, stderr
//! messages, failover between URLs and the exact requests each verb sends. No controller needed.

#![allow(clippy::unwrap_used)]

#[path = "../src/test_server.rs"]
mod test_server;

use std::process::{Command, Output};

use serde_json::{json, Value};
use test_server::{refused_url, Canned, TestServer};

fn hcictl(urls: &[String], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hcictl"));
    cmd.env_remove("HCI_TOKEN").env_remove("HCI_TIMEOUT").env("HCI_TOKEN", "secret");
    if urls.is_empty() {
        cmd.env_remove("HCI_URL");
    } else {
        cmd.env("HCI_URL", urls.join(","));
    }
    cmd.args(args).output().expect("run hcictl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tenant(name: &str, revision: u64) -> Value {
    json!({
        "id": format!("t-{name}"), "name": name, "description": "dept",
        "quota": {"vcpus": 16, "memory_mib": 32768, "disk_gib": 500},
        "usage": {"vcpus": 0, "memory_mib": 0, "disk_gib": 0},
        "created_at": "2024-01-01T00:00:00Z", "revision": revision
    })
}

fn vm(id: &str, name: &str, tenant: &str) -> Value {
    json!({
        "id": id, "name": name, "tenant": tenant, "vcpus": 2, "memory_mib": 2048, "arch": "x86_64",
        "firmware": "x86_64-bios", "volumes": [], "nics": [], "anti_affinity_group": null, "host": null,
        "power": "running", "reboot_count": 0, "created_at": "now", "revision": 5
    })
}

#[test]
fn fails_over_to_the_second_url_when_the_first_refuses_connections() {
    let server = TestServer::start(vec![Canned::json(200, &json!({"items": [tenant("finance", 3)]}).to_string())]);
    let out = hcictl(&[refused_url(), server.url()], &["tenant", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME     VCPUS  MEMORY_MIB  DISK_GIB  DESCRIPTION\nfinance  0/16   0/32768     0/500     dept\n"
    );
    let seen = server.requests();
    assert_eq!(seen[0].line, "GET /v1/tenants HTTP/1.1");
    assert_eq!(seen[0].header("authorization").as_deref(), Some("Bearer secret"));
}

#[test]
fn a_503_sends_the_request_to_the_next_url() {
    let busy = TestServer::start(vec![Canned::error(503, "unavailable", "no leader")]);
    let good = TestServer::start(vec![Canned::json(201, &tenant("hr", 4).to_string())]);
    let out = hcictl(
        &[busy.url(), good.url()],
        &["tenant", "create", "hr", "--vcpus", "16", "--memory-mib", "32768", "--disk-gib", "500"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(busy.requests().len(), 1);
    let body: Value = serde_json::from_str(&good.requests()[0].body).unwrap();
    assert_eq!(
        body,
        json!({"name": "hr", "description": "", "quota": {"vcpus": 16, "memory_mib": 32768, "disk_gib": 500}})
    );
}

#[test]
fn a_4xx_is_exit_1_with_the_api_message() {
    let server = TestServer::start(vec![Canned::error(404, "not_found", "tenant 'x' does not exist")]);
    let other = TestServer::start(vec![]);
    let out = hcictl(&[server.url(), other.url()], &["tenant", "show", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: not_found: tenant 'x' does not exist\n");
    assert_eq!(stdout(&out), "");
    assert!(other.requests().is_empty(), "a refusal is final");
}

#[test]
fn a_500_is_exit_1() {
    let server = TestServer::start(vec![Canned::error(500, "internal", "storage failure")]);
    let out = hcictl(&[server.url()], &["zone", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: internal: storage failure\n");
}

#[test]
fn everything_down_is_exit_3() {
    let (a, b) = (refused_url(), refused_url());
    let out = hcictl(&[a.clone(), b.clone()], &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.starts_with("error: cluster unreachable: tried "), "{err}");
    assert!(err.contains(&a) && err.contains(&b), "{err}");
}

#[test]
fn every_url_answering_503_is_exit_3_with_the_last_message() {
    let a = TestServer::start(vec![Canned::error(503, "unavailable", "no leader")]);
    let b = TestServer::start(vec![Canned::error(503, "unavailable", "no quorum: 1 of 3 members")]);
    let out = hcictl(&[a.url(), refused_url(), b.url()], &["vm", "list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("unavailable: no quorum: 1 of 3 members"), "{}", stderr(&out));
}

#[test]
fn usage_errors_are_exit_2() {
    assert_eq!(hcictl(&[], &["tenant", "list"]).status.code(), Some(2), "no URL");
    let url = [refused_url()];
    assert_eq!(hcictl(&url, &["tenant", "create", "a"]).status.code(), Some(2));
    assert_eq!(
        hcictl(&url, &["vm", "create", "a", "--tenant", "t", "--vcpus", "x", "--memory-mib", "1"]).status.code(),
        Some(2)
    );
    assert_eq!(hcictl(&url, &["-o", "yaml", "host", "list"]).status.code(), Some(2));
    assert_eq!(hcictl(&["ftp://x".into()], &["host", "list"]).status.code(), Some(2));
    let out = hcictl(&url, &["tenant", "update", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to update"));
    let help = hcictl(&[], &["vm", "create", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--anti-affinity-group"));
}

#[test]
fn json_output_is_the_api_json() {
    let body = json!({"items": [tenant("finance", 3)]});
    let server = TestServer::start(vec![Canned::json(200, &body.to_string())]);
    let out = hcictl(&[server.url()], &["-o", "json", "--stale", "tenant", "list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), body);
    assert_eq!(server.requests()[0].line, "GET /v1/tenants?stale=true HTTP/1.1");
}

#[test]
fn partial_quota_update_merges_and_sends_if_match() {
    let server = TestServer::start(vec![
        Canned::json(200, &tenant("finance", 7).to_string()).with_etag("\"7\""),
        Canned::json(200, &tenant("finance", 8).to_string()),
    ]);
    let out = hcictl(&[server.url()], &["tenant", "update", "finance", "--vcpus", "32"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.requests();
    assert_eq!(seen[0].line, "GET /v1/tenants/finance HTTP/1.1");
    assert_eq!(seen[1].line, "PUT /v1/tenants/finance HTTP/1.1");
    assert_eq!(seen[1].header("if-match").as_deref(), Some("\"7\""));
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body, json!({"description": null, "quota": {"vcpus": 32, "memory_mib": 32768, "disk_gib": 500}}));
}

#[test]
fn vm_verbs_resolve_names_to_ids() {
    let list = json!({"items": [vm("vm-1", "web", "finance"), vm("vm-2", "db", "finance")]});
    let server = TestServer::start(vec![
        Canned::json(200, &list.to_string()),
        Canned::json(200, &vm("vm-1", "web", "finance").to_string()),
    ]);
    let out = hcictl(&[server.url()], &["vm", "start", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.requests();
    assert_eq!(seen[0].line, "GET /v1/vms HTTP/1.1");
    assert_eq!(seen[1].line, "POST /v1/vms/vm-1/start HTTP/1.1");
    assert_eq!(seen[1].body, "");
    assert!(stdout(&out).contains("vm-1  web   finance  2      2048        x86_64  running  -"), "{}", stdout(&out));
}

#[test]
fn an_ambiguous_name_is_exit_1() {
    let list = json!({"items": [vm("vm-1", "web", "finance"), vm("vm-2", "web", "health")]});
    let server = TestServer::start(vec![Canned::json(200, &list.to_string())]);
    let out = hcictl(&[server.url()], &["vm", "delete", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("give --tenant or the id"), "{}", stderr(&out));
    assert_eq!(server.requests().len(), 1, "nothing deleted");
}

#[test]
fn delete_with_if_match_and_no_body() {
    let server = TestServer::start(vec![Canned::Empty(204)]);
    let out = hcictl(&[server.url()], &["tenant", "delete", "finance", "--if-match", "7"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deleted tenant finance\n");
    let seen = server.requests();
    assert_eq!(seen[0].line, "DELETE /v1/tenants/finance HTTP/1.1");
    assert_eq!(seen[0].header("if-match").as_deref(), Some("\"7\""));
}

#[test]
fn dr_verbs_call_the_contract_endpoints() {
    let server = TestServer::start(vec![
        Canned::error(404, "not_found", "no route"),
        Canned::json(202, r#"{"id":"drill-1","group":"payroll","mode":"test"}"#),
    ]);
    let out = hcictl(&[server.url()], &["dr", "failover", "--group", "payroll", "--mode", "test"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: not_found: no route\n");
    let out = hcictl(&[server.url()], &["dr", "failover", "--group", "payroll", "--mode", "planned"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("id:     drill-1\n"), "{}", stdout(&out));
    let seen = server.requests();
    assert_eq!(seen[1].line, "POST /v1/dr/failover HTTP/1.1");
    assert_eq!(serde_json::from_str::<Value>(&seen[1].body).unwrap(), json!({"group": "payroll", "mode": "planned"}));
}

#[test]
fn a_garbled_answer_does_not_panic() {
    let server = TestServer::start(vec![Canned::json(200, "{not json"), Canned::json(200, r#"{"items": [1, 2]}"#)]);
    let out = hcictl(&[server.url()], &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: unexpected response from"), "{}", stderr(&out));
    let out = hcictl(&[server.url()], &["host", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not match the API"), "{}", stderr(&out));
}
