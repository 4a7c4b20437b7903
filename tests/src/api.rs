//! A small blocking HTTP client for the operator API, addressed by member id.
//!
//! Tests talk to a chosen member (to exercise follower forwarding, or to reach the one member that is
//! still up), set or omit the bearer token, send raw bodies (malformed JSON) and If-Match headers, and
//! look at status, JSON body and ETag together; this wraps reqwest so each test says that in one line.
//! Transport failures are values (`try_*`) for tests that expect members to die mid-request, and
//! panics (plain methods) everywhere else.

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <the cluster's admin token>`.
    Token,
    /// No Authorization header.
    None,
    /// This exact Authorization header value.
    Header(String),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    /// Sent verbatim with `Content-Type: application/json` (for malformed JSON).
    Raw(String),
    /// Sent verbatim with this content type.
    Typed {
        content_type: String,
        body: String,
    },
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The body parsed as JSON, or `Value::Null` when it is empty or not JSON.
    pub json: Value,
    pub text: String,
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

impl Resp {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.json.pointer("/error/code").and_then(Value::as_str)
    }
    /// `error.message` of an error body.
    pub fn error_message(&self) -> Option<&str> {
        self.json.pointer("/error/message").and_then(Value::as_str)
    }
    /// `items` of a list body, or a panic saying what came instead.
    pub fn items(&self) -> &Vec<Value> {
        self.json
            .get("items")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("expected a list body {{\"items\": [...]}}, got {self}"))
    }
    /// The `name` of every item of a list body.
    pub fn names(&self) -> Vec<String> {
        self.items().iter().filter_map(|i| i.get("name").and_then(Value::as_str).map(String::from)).collect()
    }
    /// Panics unless the status is `want`.
    #[track_caller]
    pub fn expect(self, want: u16, what: &str) -> Resp {
        assert_eq!(self.status, want, "{what}: expected HTTP {want}, got {self}");
        self
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.text.clone();
        if body.len() > 600 {
            body.truncate(600);
            body.push_str("...");
        }
        write!(f, "HTTP {} {}", self.status, body)
    }
}

/// Client of a cluster's members, indexed by member id (1-based).
#[derive(Clone)]
pub struct Api {
    client: Client,
    urls: Arc<Vec<String>>,
    token: String,
    timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("urls", &self.urls).field("timeout", &self.timeout).finish()
    }
}

fn client(timeout: Duration) -> Client {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Api {
    /// `urls[i]` is member `i + 1`'s base URL (`http://127.0.0.1:PORT`).
    pub fn new(urls: Vec<String>, token: String) -> Api {
        let timeout = Duration::from_secs(10);
        Api { client: client(timeout), urls: Arc::new(urls), token, timeout }
    }

    /// The same API with another whole-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Api {
        Api { client: client(timeout), urls: self.urls.clone(), token: self.token.clone(), timeout }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn url(&self, member: u64) -> &str {
        let idx = usize::try_from(member).ok().and_then(|m| m.checked_sub(1)).expect("member ids start at 1");
        self.urls.get(idx).unwrap_or_else(|| panic!("no member {member}"))
    }

    /// The general form; every other method goes through here.
    pub fn send(
        &self,
        method: Method,
        member: u64,
        path: &str,
        body: Option<Body>,
        auth: Auth,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let url = format!("{}{}", self.url(member), path);
        let mut req = self.client.request(method.clone(), &url);
        match auth {
            Auth::Token => req = req.bearer_auth(&self.token),
            Auth::None => {}
            Auth::Header(h) => req = req.header(reqwest::header::AUTHORIZATION, h),
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::Raw(s)) => req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(s),
            Some(Body::Typed { content_type, body }) => {
                req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(body)
            }
            None => {}
        }
        let resp = req.send().map_err(|e| format!("{method} {url}: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
        };
        let etag = header(reqwest::header::ETAG);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let text = resp.text().map_err(|e| format!("{method} {url}: reading body: {}", error_chain(&e)))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp { status, json, text, etag, content_type })
    }

    pub fn try_get(&self, member: u64, path: &str) -> Result<Resp, String> {
        self.send(Method::GET, member, path, None, Auth::Token, &[])
    }

    pub fn try_post_json(&self, member: u64, path: &str, body: &Value) -> Result<Resp, String> {
        self.send(Method::POST, member, path, Some(Body::Json(body.clone())), Auth::Token, &[])
    }

    pub fn try_put(&self, member: u64, path: &str, body: &Value, if_match: Option<&str>) -> Result<Resp, String> {
        let h: Vec<(&str, &str)> = if_match.map(|e| ("If-Match", e)).into_iter().collect();
        self.send(Method::PUT, member, path, Some(Body::Json(body.clone())), Auth::Token, &h)
    }

    pub fn try_delete(&self, member: u64, path: &str, if_match: Option<&str>) -> Result<Resp, String> {
        let h: Vec<(&str, &str)> = if_match.map(|e| ("If-Match", e)).into_iter().collect();
        self.send(Method::DELETE, member, path, None, Auth::Token, &h)
    }

    #[track_caller]
    pub fn get(&self, member: u64, path: &str) -> Resp {
        self.try_get(member, path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    pub fn post_json(&self, member: u64, path: &str, body: &Value) -> Resp {
        self.try_post_json(member, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    pub fn put(&self, member: u64, path: &str, body: &Value, if_match: Option<&str>) -> Resp {
        self.try_put(member, path, body, if_match).unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    pub fn delete(&self, member: u64, path: &str, if_match: Option<&str>) -> Resp {
        self.try_delete(member, path, if_match).unwrap_or_else(|e| panic!("{e}"))
    }

    /// GET without any auth (for /healthz, /metrics, /openapi.json).
    pub fn try_get_noauth(&self, member: u64, path: &str) -> Result<Resp, String> {
        self.send(Method::GET, member, path, None, Auth::None, &[])
    }

    /// `GET /v1/cluster?stale=true` on `member`, parsed.
    pub fn stale_status(&self, member: u64) -> Result<hci_shared::api::ClusterStatus, String> {
        let r = self.try_get(member, "/v1/cluster?stale=true")?;
        if r.status != 200 {
            return Err(format!("member {member} GET /v1/cluster?stale=true: {r}"));
        }
        serde_json::from_value(r.json.clone()).map_err(|e| {
            format!("member {member} GET /v1/cluster?stale=true: body does not match ClusterStatus ({e}): {r}")
        })
    }
}
