//! The agent's HTTP client of the controller cluster (`--controller URL[,URL...]`).
//!
//! Any member accepts any request (followers forward to the leader), so a member that cannot be
//! reached, or answers 503 (no leader yet), is skipped for the next one; the member that last gave a
//! definite answer is tried first. A definite answer (2xx, 204, or a 4xx refusal) is returned as is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hci_shared::ErrorBody;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no controller answered ({0})")]
    Unreachable(String),
    #[error("the controller refused: HTTP {status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("the controller's answer does not match the API: {0}")]
    BadAnswer(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
}

impl ClientError {
    /// 401/403/404: this credential (or host) is not known, or not allowed, where it was asked.
    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Refused { status: 401 | 403 | 404, .. })
    }
}

/// A definite answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }
}

#[derive(Debug)]
pub struct ControllerClient {
    http: reqwest::Client,
    urls: Vec<String>,
    preferred: AtomicUsize,
}

impl ControllerClient {
    pub fn new(urls: &[String]) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let urls = urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        Ok(Self { http, urls, preferred: AtomicUsize::new(0) })
    }

    /// Sends one request to each member in turn until one answers definitely (2xx or a 4xx other
    /// than none); 3xx, 5xx and transport failures move on to the next member.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        bearer: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let n = self.urls.len();
        if n == 0 {
            return Err(ClientError::Unreachable("no --controller URL".into()));
        }
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for k in 0..n {
            let i = (first + k) % n;
            let url = format!("{}{path_and_query}", self.urls[i]);
            let mut req = self.http.request(method.clone(), &url).bearer_auth(bearer).timeout(timeout);
            if let Some(body) = body {
                req = req.json(body);
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{url}: {e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            let bytes = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    last = format!("{url}: reading the answer: {e}");
                    continue;
                }
            };
            if !(200..300).contains(&status) && !(400..500).contains(&status) {
                last = format!("{url}: HTTP {status} {}", String::from_utf8_lossy(&bytes));
                continue;
            }
            self.preferred.store(i, Ordering::Relaxed);
            if (400..500).contains(&status) {
                let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                    Ok(b) => (b.error.code, b.error.message),
                    Err(_) => (String::new(), String::from_utf8_lossy(&bytes).into_owned()),
                };
                return Err(ClientError::Refused { status, code, message });
            }
            return Ok(Answer { status, body: bytes });
        }
        Err(ClientError::Unreachable(last))
    }
}
