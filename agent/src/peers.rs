//! The real [`PeerAgents`]: other hosts' agent APIs over HTTP (mTLS arrives with the security issue).
//!
//! It exists for the one agent-to-agent call there is: a source asking a target for its offer for an
//! incoming VM. Calls are blocking (the reconciler runs off the async runtime) and bounded in time.

use std::time::Duration;

use hci_shared::agent::{IncomingOffer, IncomingRequest};

use crate::reconciler::PeerAgents;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct HttpPeers {
    client: reqwest::blocking::Client,
}

impl HttpPeers {
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self { client: reqwest::blocking::Client::builder().timeout(TIMEOUT).build()? })
    }
}

impl PeerAgents for HttpPeers {
    fn incoming_offer(&self, agent_url: &str, vm_id: &str, request: &IncomingRequest) -> Result<IncomingOffer, String> {
        let url = format!("{}/agent/v1/incoming/{vm_id}", agent_url.trim_end_matches('/'));
        let response = self.client.post(&url).json(request).send().map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            return Err(format!("POST {url}: {status}: {}", body.trim()));
        }
        response.json().map_err(|e| format!("POST {url}: reading the offer: {e}"))
    }
}
