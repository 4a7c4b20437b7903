//! The HTTP client: one request, tried against each controller URL in turn.
//!
//! Any member accepts any request, so when one is unreachable or answers 503 (no leader, no quorum)
//! the next is tried. A write whose answer is lost after it was sent is *not* retried elsewhere: it
//! may have been applied, and replaying it could create a duplicate. All of the exit-status policy
//! for transport outcomes lives in [`classify`].

use std::cell::Cell;
use std::error::Error as _;
use std::time::Duration;

use hci_shared::ErrorBody;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, USER_AGENT};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;

/// How a request failed before a status line arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The connection could not be opened (refused, no route, connect timeout): nothing was sent.
    Connect,
    /// The request was (perhaps) sent but no complete answer came in time.
    Timeout,
    /// Anything else after the connection was open (reset, malformed response).
    Other,
}

/// What to do with one URL's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the answer.
    Accept,
    /// A definite refusal (4xx, a 5xx other than 503, an unfollowed redirect): exit 1.
    Refuse,
    /// Unreachable or 503: try the next URL; exit 3 when none is left.
    TryNext,
    /// A write may have been applied but its answer was lost: stop, exit 3.
    Ambiguous,
}

/// The failover policy, from an HTTP status or a transport failure.
pub fn classify(outcome: Result<u16, Transport>, idempotent: bool) -> Verdict {
    match outcome {
        Ok(status) if (200..300).contains(&status) => Verdict::Accept,
        Ok(503) => Verdict::TryNext,
        Ok(_) => Verdict::Refuse,
        Err(Transport::Connect) => Verdict::TryNext,
        Err(_) if idempotent => Verdict::TryNext,
        Err(_) => Verdict::Ambiguous,
    }
}

/// One request to make: the path is given as segments, each percent-encoded on its own, so that a
/// name from the command line can never change which endpoint is called.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub if_match: Option<String>,
}

impl Call {
    pub fn new(method: Method, segments: &[&str]) -> Self {
        Call {
            method,
            segments: segments.iter().map(|s| (*s).to_string()).collect(),
            query: Vec::new(),
            body: None,
            if_match: None,
        }
    }

    pub fn json<T: Serialize>(mut self, body: &T) -> Result<Self, CliError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CliError::Usage(format!("cannot encode request: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn if_match(mut self, etag: Option<String>) -> Self {
        self.if_match = etag;
        self
    }
}

/// A 2xx answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub etag: Option<String>,
    pub body: Vec<u8>,
    /// The base URL that answered.
    pub url: String,
}

impl Reply {
    /// The body as JSON; an empty body (204) is `null`.
    pub fn value(&self) -> Result<Value, CliError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| self.bad(format!("body is not JSON: {e}")))
    }

    /// The body decoded into one of the shared API types.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CliError> {
        serde_json::from_slice(&self.body).map_err(|e| self.bad(format!("body does not match the API: {e}")))
    }

    fn bad(&self, why: String) -> CliError {
        CliError::BadResponse { url: self.url.clone(), why }
    }
}

/// Settings for [`Client::new`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub urls: Vec<Url>,
    pub token: Option<String>,
    pub stale: bool,
    pub timeout: Duration,
}

pub struct Client {
    http: reqwest::blocking::Client,
    urls: Vec<Url>,
    token: Option<String>,
    stale: bool,
    /// The URL that last gave a definite answer; later requests of this run start there.
    preferred: Cell<usize>,
}

enum Attempt {
    Status { status: u16, etag: Option<String>, body: Vec<u8> },
    Failed { kind: Transport, why: String },
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, CliError> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, urls: config.urls, token: config.token, stale: config.stale, preferred: Cell::new(0) })
    }

    pub fn get(&self, segments: &[&str]) -> Result<Reply, CliError> {
        self.send(Call::new(Method::GET, segments))
    }

    pub fn post<T: Serialize>(&self, segments: &[&str], body: &T) -> Result<Reply, CliError> {
        self.send(Call::new(Method::POST, segments).json(body)?)
    }

    pub fn delete(&self, segments: &[&str], if_match: Option<String>) -> Result<Reply, CliError> {
        self.send(Call::new(Method::DELETE, segments).if_match(if_match))
    }

    /// Sends `call` to each URL in turn until one gives a definite answer.
    pub fn send(&self, mut call: Call) -> Result<Reply, CliError> {
        if call.segments.first().map(String::as_str) == Some("v1") && self.token.is_none() {
            return Err(CliError::Usage("no token: set HCI_TOKEN, --token or --token-file".into()));
        }
        if self.stale && call.method == Method::GET {
            call.query.push(("stale".into(), "true".into()));
        }
        let idempotent = call.method == Method::GET || call.method == Method::HEAD;
        let count = self.urls.len();
        let start = self.preferred.get() % count.max(1);
        let mut tried = Vec::new();
        let mut unavailable: Option<String> = None;
        for k in 0..count {
            let index = (start + k) % count;
            let Some(base) = self.urls.get(index) else {
                continue;
            };
            let label = base.as_str().trim_end_matches('/').to_string();
            let url = build_url(base, &call)?;
            let attempt = self.attempt(&call, url);
            let outcome = match &attempt {
                Attempt::Status { status, .. } => Ok(*status),
                Attempt::Failed { kind, .. } => Err(*kind),
            };
            match (classify(outcome, idempotent), attempt) {
                (Verdict::Accept, Attempt::Status { etag, body, .. }) => {
                    self.preferred.set(index);
                    return Ok(Reply { etag, body, url: label });
                }
                (Verdict::Refuse, Attempt::Status { status, body, .. }) => {
                    self.preferred.set(index);
                    return Err(refusal(status, &body));
                }
                (Verdict::TryNext, Attempt::Status { status, body, .. }) => {
                    let message = refusal(status, &body).to_string();
                    tried.push(format!("{label} ({status})"));
                    unavailable = Some(message);
                }
                (Verdict::TryNext, Attempt::Failed { why, .. }) => tried.push(format!("{label} ({why})")),
                (_, Attempt::Failed { why, .. }) => return Err(CliError::NoAnswer { url: label, why }),
                (_, Attempt::Status { status, body, .. }) => return Err(refusal(status, &body)),
            }
        }
        Err(match unavailable {
            Some(message) => CliError::Unavailable { message, tried },
            None => CliError::Unreachable { tried },
        })
    }

    fn attempt(&self, call: &Call, url: Url) -> Attempt {
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("hcictl/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(etag) = &call.if_match {
            req = req.header(IF_MATCH, etag.as_str());
        }
        if let Some(body) = &call.body {
            req = req.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let resp = match req.send() {
            Ok(resp) => resp,
            Err(e) => return failed(&e),
        };
        let status = resp.status().as_u16();
        let etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        match resp.bytes() {
            Ok(body) => Attempt::Status { status, etag, body: body.to_vec() },
            Err(e) => failed(&e),
        }
    }
}

fn failed(e: &reqwest::Error) -> Attempt {
    let kind = if e.is_connect() {
        Transport::Connect
    } else if e.is_timeout() {
        Transport::Timeout
    } else {
        Transport::Other
    };
    Attempt::Failed { kind, why: root_cause(e) }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which says more
/// than reqwest's outer "error sending request".
fn root_cause(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    if e.is_timeout() && !text.to_ascii_lowercase().contains("timed out") {
        text = format!("timed out: {text}");
    }
    text
}

/// The request URL: base path + percent-encoded segments + query.
pub fn build_url(base: &Url, call: &Call) -> Result<Url, CliError> {
    if let Some(bad) = call.segments.iter().find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(CliError::Usage(format!("'{bad}' is not a valid name or id")));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| CliError::Usage(format!("controller URL '{base}' cannot take a path")))?
        .pop_if_empty()
        .extend(&call.segments);
    if !call.query.is_empty() {
        url.query_pairs_mut().extend_pairs(call.query.iter());
    }
    Ok(url)
}

/// The error a non-2xx answer becomes: the API's `{"error": {code, message}}` when the body is one,
/// else `http_<status>` with the body's first line.
pub fn refusal(status: u16, body: &[u8]) -> CliError {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return CliError::Refused { status, code: parsed.error.code, message: parsed.error.message };
    }
    let text = String::from_utf8_lossy(body);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut message: String = first.chars().filter(|c| !c.is_control()).take(200).collect();
    if message.is_empty() {
        message = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_string();
    }
    CliError::Refused { status, code: format!("http_{status}"), message }
}

#[cfg(test)]
mod tests;
