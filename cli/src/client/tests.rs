//! Client tests: the failover policy, against canned servers on loopback ports.

use super::*;
use crate::error::{EXIT_REFUSED, EXIT_UNREACHABLE};
use crate::test_server::{refused_url, Canned, TestServer};

fn client(urls: &[String]) -> Client {
    let urls = urls.iter().map(|u| Url::parse(u).expect("url")).collect();
    Client::new(ClientConfig { urls, token: Some("tok".into()), stale: false, timeout: Duration::from_secs(5) })
        .expect("client")
}

#[test]
fn classify_outcomes() {
    for idempotent in [true, false] {
        assert_eq!(classify(Ok(200), idempotent), Verdict::Accept);
        assert_eq!(classify(Ok(201), idempotent), Verdict::Accept);
        assert_eq!(classify(Ok(204), idempotent), Verdict::Accept);
        assert_eq!(classify(Ok(503), idempotent), Verdict::TryNext);
        assert_eq!(classify(Err(Transport::Connect), idempotent), Verdict::TryNext);
        for status in [301, 400, 401, 403, 404, 409, 412, 500, 502] {
            assert_eq!(classify(Ok(status), idempotent), Verdict::Refuse, "{status}");
        }
    }
    assert_eq!(classify(Err(Transport::Timeout), true), Verdict::TryNext);
    assert_eq!(classify(Err(Transport::Other), true), Verdict::TryNext);
    assert_eq!(classify(Err(Transport::Timeout), false), Verdict::Ambiguous);
    assert_eq!(classify(Err(Transport::Other), false), Verdict::Ambiguous);
}

#[test]
fn refusal_bodies() {
    let e = refusal(404, br#"{"error":{"code":"not_found","message":"tenant 'x' does not exist"}}"#);
    assert_eq!(e.to_string(), "not_found: tenant 'x' does not exist");
    assert_eq!(e.exit_code(), EXIT_REFUSED);
    assert_eq!(refusal(502, b"<html>\nbad gateway\x1b[31m").to_string(), "http_502: <html>");
    assert_eq!(refusal(500, b"").to_string(), "http_500: Internal Server Error");
}

#[test]
fn urls_encode_each_segment() {
    let base = Url::parse("http://h:1/prefix/").expect("url");
    let call = Call::new(Method::GET, &["v1", "tenants", "a/b?c#d"]).query("after", 5);
    assert_eq!(build_url(&base, &call).expect("url").as_str(), "http://h:1/prefix/v1/tenants/a%2Fb%3Fc%23d?after=5");
    for bad in ["..", ".", ""] {
        let call = Call::new(Method::GET, &["v1", "tenants", bad]);
        assert_eq!(build_url(&base, &call).expect_err("bad").exit_code(), 2);
    }
}

#[test]
fn fails_over_from_refused_connection_to_second_url() {
    let server = TestServer::start(vec![Canned::json(200, r#"{"items":[]}"#)]);
    let c = client(&[refused_url(), server.url()]);
    let reply = c.get(&["v1", "tenants"]).expect("second URL answers");
    assert_eq!(reply.value().expect("json"), serde_json::json!({"items": []}));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].line, "GET /v1/tenants HTTP/1.1");
    assert_eq!(requests[0].header("authorization").as_deref(), Some("Bearer tok"));
}

#[test]
fn fails_over_on_503_and_sticks_to_the_answering_member() {
    let busy = TestServer::start(vec![Canned::error(503, "unavailable", "no leader")]);
    let good = TestServer::start(vec![Canned::json(201, r#"{"x":1}"#), Canned::json(200, "{}")]);
    let c = client(&[busy.url(), good.url()]);
    let reply = c.post(&["v1", "tenants"], &serde_json::json!({"name": "a"})).expect("second answers");
    assert_eq!(reply.value().expect("json"), serde_json::json!({"x": 1}));
    assert_eq!(busy.requests().len(), 1);
    // The next request of the same run goes straight to the member that answered.
    c.get(&["v1", "tenants", "a"]).expect("ok");
    assert_eq!(busy.requests().len(), 1);
    assert_eq!(good.requests().len(), 2);
    assert_eq!(good.requests()[0].body, r#"{"name":"a"}"#);
}

#[test]
fn refusal_stops_without_trying_the_next_url() {
    let first = TestServer::start(vec![Canned::error(409, "conflict", "tenant 'a' exists")]);
    let second = TestServer::start(vec![Canned::json(200, "{}")]);
    let c = client(&[first.url(), second.url()]);
    let err = c.post(&["v1", "tenants"], &serde_json::json!({})).expect_err("refused");
    assert_eq!(err.exit_code(), EXIT_REFUSED);
    assert_eq!(err.to_string(), "conflict: tenant 'a' exists");
    assert_eq!(second.requests().len(), 0);
}

#[test]
fn all_down_or_all_503_is_exit_3() {
    let c = client(&[refused_url(), refused_url()]);
    let err = c.get(&["v1", "cluster"]).expect_err("down");
    assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
    assert!(err.to_string().starts_with("cluster unreachable: tried http://127.0.0.1:"), "{err}");

    let a = TestServer::start(vec![Canned::error(503, "unavailable", "no leader (a)")]);
    let b = TestServer::start(vec![Canned::error(503, "unavailable", "no quorum (b)")]);
    let err = client(&[a.url(), b.url()]).get(&["v1", "cluster"]).expect_err("503s");
    assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
    assert!(err.to_string().contains("unavailable: no quorum (b)"), "{err}");
}

#[test]
fn lost_write_answer_is_not_replayed() {
    let silent = TestServer::start(vec![Canned::Hangup]);
    let second = TestServer::start(vec![Canned::json(201, "{}")]);
    let c = client(&[silent.url(), second.url()]);
    let err = c.post(&["v1", "vms"], &serde_json::json!({})).expect_err("ambiguous");
    assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
    assert!(matches!(err, CliError::NoAnswer { .. }));
    assert_eq!(second.requests().len(), 0);

    // A read is safe to repeat elsewhere.
    let silent = TestServer::start(vec![Canned::Hangup]);
    let c = client(&[silent.url(), second.url()]);
    c.get(&["v1", "vms"]).expect("read fails over");
}

#[test]
fn stale_reads_and_if_match() {
    let server = TestServer::start(vec![Canned::json(200, "{}"), Canned::Empty(204)]);
    let urls = vec![Url::parse(&server.url()).expect("url")];
    let c = Client::new(ClientConfig { urls, token: Some("t".into()), stale: true, timeout: Duration::from_secs(5) })
        .expect("client");
    c.get(&["v1", "zones"]).expect("ok");
    let reply = c.delete(&["v1", "zones", "z"], Some("\"7\"".into())).expect("ok");
    assert_eq!(reply.value().expect("empty"), Value::Null);
    let requests = server.requests();
    assert_eq!(requests[0].line, "GET /v1/zones?stale=true HTTP/1.1");
    assert_eq!(requests[1].line, "DELETE /v1/zones/z HTTP/1.1");
    assert_eq!(requests[1].header("if-match").as_deref(), Some("\"7\""));
}

#[test]
fn no_token_is_a_usage_error_before_any_request() {
    let urls = vec![Url::parse(&refused_url()).expect("url")];
    let c =
        Client::new(ClientConfig { urls, token: None, stale: false, timeout: Duration::from_secs(1) }).expect("client");
    assert_eq!(c.get(&["v1", "cluster"]).expect_err("no token").exit_code(), 2);
}
