//! Request plumbing in front of the handlers: request metrics, forwarding to the leader, and
//! bearer-token authentication.
//!
//! Any member accepts any request: a follower proxies writes and linearizable reads to the leader
//! (once; a forwarded request that lands on a non-leader gets 503), and serves `?stale=true` reads
//! itself (and the per-host desired-state feed). Authentication happens on the member that executes
//! the request, which also enforces what each kind of token may reach (`access`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hci_shared::ApiError;

use super::access::{self, Principal};
use super::error::HttpError;
use crate::node::{sha256_hex, App, Caller};

const FORWARDED: &str = "x-hci-forwarded-by";
const MAX_BODY: usize = 1 << 20;

/// Counts every request by matched route, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let app = req.extensions().get::<Arc<App>>().cloned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    if let Some(app) = app {
        let status = response.status().as_u16().to_string();
        app.metrics.api_requests.with_label_values(&[&route, &method, &status]).inc();
        app.metrics.api_seconds.with_label_values(&[&route, &method]).observe(started.elapsed().as_secs_f64());
    }
    response
}

/// Gives framework-generated refusals (bad path encoding, wrong method, oversized body) the
/// contract's `{"error": {...}}` body, so that no client ever has to parse plain text.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut message = text.unwrap_or_default().trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("request refused").to_string();
    }
    let error = ApiError::new(ApiError::code_for_status(status.as_u16()), message);
    let mut fixed = (status, axum::Json(error.body())).into_response();
    for name in ["allow", "retry-after", "www-authenticate"] {
        if let Some(v) = parts.headers.get(name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

fn is_stale_read(req: &Request) -> bool {
    req.method() == Method::GET
        && req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "stale=true" || kv == "stale=1"))
}

/// `GET /v1/hosts/{id}/desired` is a feed of generations that agents long-poll: any member serves
/// it from its own state (an agent keeps only newer generations), which spreads the long polls over
/// the members and keeps them off the proxy's timeout.
fn is_local_feed(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .uri()
            .path()
            .strip_prefix("/v1/hosts/")
            .and_then(|rest| rest.strip_suffix("/desired"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Sends the request to the leader unless this member can answer it itself.
pub async fn forward_to_leader(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if is_stale_read(&req) || is_local_feed(&req) || app.is_leader() {
        return next.run(req).await;
    }
    if req.headers().contains_key(FORWARDED) {
        return HttpError(ApiError::unavailable(format!(
            "member {} received a forwarded request but is not the leader; retry",
            app.id
        )))
        .into_response();
    }
    let Some((leader, addr)) = app.leader() else {
        return HttpError(ApiError::unavailable("no leader elected right now; retry")).into_response();
    };
    match proxy(&app, &addr, req).await {
        Ok(response) => response,
        Err(e) => {
            HttpError(ApiError::unavailable(format!("leader {leader} at {addr} unreachable: {e}"))).into_response()
        }
    }
}

async fn proxy(app: &App, addr: &str, req: Request) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| e.to_string())?;
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = app
        .http
        .request(parts.method.clone(), format!("http://{addr}{path}"))
        .timeout(std::time::Duration::from_millis(app.config.write_timeout_ms + 2_000))
        .header(FORWARDED, app.id.to_string())
        .body(bytes);
    for name in ["authorization", "content-type", "if-match", "accept"] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v.clone());
        }
    }
    let answer = out.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut response = Response::builder().status(status);
    for name in ["content-type", "etag", "retry-after"] {
        if let Some(v) = headers.get(name) {
            response = response.header(name, v.clone());
        }
    }
    response.body(Body::from(body)).map_err(|e| e.to_string())
}

/// Checks `Authorization: Bearer TOKEN` against the replicated token table (stored hashed).
pub async fn authenticate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return unauthorized("missing Authorization: Bearer TOKEN header");
    };
    let hash = sha256_hex(token);
    let found = {
        let model = app.state.read();
        if !model.is_bootstrapped() {
            return HttpError(ApiError::unavailable(
                "this member holds no cluster state yet (not bootstrapped or not yet joined); retry or ask another member",
            ))
            .into_response();
        }
        Principal::of_token(&model, &hash)
    };
    let Some((principal, name)) = found else { return unauthorized("unknown token") };
    if let Err(refusal) = access::check(&principal, req.method(), req.uri().path()) {
        return HttpError(refusal).into_response();
    }
    req.extensions_mut().insert(Caller(name));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn unauthorized(why: &str) -> Response {
    let mut response = HttpError(ApiError::new(hci_shared::ErrorCode::Unauthorized, why)).into_response();
    response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    response
}
