//! The desired-state feed: the agent long-polls `GET /v1/hosts/{id}/desired?after=G` and hands a
//! newer generation to [`Agent::offer`], the same path a `PUT /agent/v1/desired` takes.
//!
//! Generations only go forward: an answer that is not newer than what the agent holds (another
//! member lagging behind, a retry) is ignored. When no controller answers, the agent keeps its
//! persisted desired state and keeps reconciling toward it.

use std::sync::Arc;
use std::time::Duration;

use hci_shared::agent::HostDesired;
use reqwest::Method;

use super::client::{ClientError, ControllerClient};
use crate::service::{Agent, OfferError};

/// How long the controller holds a poll open; the HTTP timeout adds a margin.
const WAIT_MS: u64 = 25_000;
const POLL_TIMEOUT: Duration = Duration::from_millis(WAIT_MS + 10_000);

/// Hands `desired` to the agent when it is newer than what it holds. Returns the generation held.
pub fn offer_if_newer(agent: &Agent, desired: HostDesired) -> u64 {
    let held = agent.desired().map_or(0, |d| d.generation);
    if desired.generation <= held {
        return held;
    }
    let generation = desired.generation;
    if let Err(e) = hci_shared::agent_validate::host_desired(&desired) {
        tracing::error!(generation, error = %e, "the controller sent a desired state this agent refuses");
        return held;
    }
    match agent.offer(desired) {
        Ok(now) => {
            tracing::info!(generation = now, "accepted a desired state from the controller");
            now
        }
        Err(OfferError::Refused(e)) => {
            tracing::error!(generation, error = %e, "desired state from the controller refused");
            held
        }
        Err(e @ OfferError::Store(_)) => {
            tracing::error!(generation, error = %e, "desired state from the controller not persisted");
            held
        }
    }
}

/// Polls forever with `credential`.
pub async fn run(agent: Arc<Agent>, client: Arc<ControllerClient>, credential: String) {
    let host = agent.res.host_id.clone();
    let mut backoff = Duration::from_millis(200);
    // A generation the agent refused is not asked for again.
    let mut refused_up_to = 0;
    loop {
        let held = agent.desired().map_or(0, |d| d.generation).max(refused_up_to);
        let path = format!("/v1/hosts/{host}/desired?after={held}&wait_ms={WAIT_MS}&stale=true");
        match client.call::<()>(Method::GET, &path, &credential, None, POLL_TIMEOUT).await {
            Ok(answer) if answer.status == 204 => backoff = Duration::from_millis(200),
            Ok(answer) => match answer.json::<HostDesired>() {
                Ok(desired) => {
                    backoff = Duration::from_millis(200);
                    let offered = desired.generation;
                    if offer_if_newer(&agent, desired) < offered {
                        refused_up_to = offered;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "desired-state feed answered something unexpected");
                    tokio::time::sleep(backoff).await;
                }
            },
            Err(e) => {
                if !matches!(e, ClientError::Unreachable(_)) {
                    tracing::warn!(error = %e, "desired-state feed refused; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
