//! Joining the controller cluster: with the host's stored credential when it has one (a restart:
//! the inventory is updated, no token needed), else with the single-use token of `--token-file`.
//!
//! It exists so the agent gets from "started" to "a registered host with a credential" on its own,
//! however long the controllers take to come up. It never gives up: a refused token is logged and
//! retried slowly (re-reading the token file, so an operator can drop a new one in), and VMs keep
//! running meanwhile because nothing here touches them.

use std::sync::Arc;
use std::time::Duration;

use hci_shared::hosts::{HostJoin, HostJoined};
use reqwest::Method;

use super::client::{ClientError, ControllerClient};
use super::{credential, Settings};
use crate::service::Agent;

const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Wait after a refusal (a used or expired token): only an operator can fix it.
const AFTER_REFUSAL: Duration = Duration::from_secs(15);

/// A joined host: its credential and the controller's heartbeat interval.
#[derive(Debug, Clone)]
pub struct Joined {
    pub credential: String,
    pub heartbeat: Duration,
}

#[derive(Debug, thiserror::Error)]
enum JoinError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no host credential in the data dir and no --token-file to join with")]
    NoToken,
    #[error("reading the join token: {0}")]
    TokenFile(String),
    #[error("reading the host inventory: {0}")]
    Inventory(String),
    #[error(transparent)]
    Credential(#[from] credential::CredentialError),
}

async fn body(agent: &Arc<Agent>, settings: &Settings) -> Result<HostJoin, JoinError> {
    let a = agent.clone();
    let info = tokio::task::spawn_blocking(move || crate::inventory::host_info(&a.res, &a.site))
        .await
        .map_err(|e| JoinError::Inventory(e.to_string()))?
        .map_err(|e| JoinError::Inventory(e.to_string()))?;
    Ok(HostJoin::from_info(&info, &settings.advertise))
}

async fn post(client: &ControllerClient, bearer: &str, join: &HostJoin) -> Result<HostJoined, ClientError> {
    client.call(Method::POST, "/v1/hosts/join", bearer, Some(join), JOIN_TIMEOUT).await?.json()
}

fn read_token(settings: &Settings) -> Result<String, JoinError> {
    let path = settings.token_file.as_ref().ok_or(JoinError::NoToken)?;
    let text = std::fs::read_to_string(path).map_err(|e| JoinError::TokenFile(format!("{}: {e}", path.display())))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(JoinError::TokenFile(format!("{} is empty", path.display())));
    }
    Ok(token)
}

fn heartbeat_interval(settings: &Settings, joined: &HostJoined) -> Duration {
    let asked = Duration::from_millis(joined.heartbeat_ms.max(100));
    settings.heartbeat.map_or(asked, |own| own.min(asked))
}

/// One attempt: the stored credential first, the token when there is none or it is refused.
async fn attempt(agent: &Arc<Agent>, settings: &Settings, client: &ControllerClient) -> Result<Joined, JoinError> {
    let join = body(agent, settings).await?;
    if let Some(credential) = credential::load(&settings.data_dir)? {
        match post(client, &credential, &join).await {
            Ok(joined) => return Ok(Joined { heartbeat: heartbeat_interval(settings, &joined), credential }),
            Err(e) if e.is_auth() && settings.token_file.is_some() => {
                tracing::warn!(error = %e, "the stored host credential was refused; joining with the token file");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let token = read_token(settings)?;
    let joined = post(client, &token, &join).await?;
    let credential = joined
        .credential
        .clone()
        .ok_or_else(|| ClientError::BadAnswer("a token join answered without a host credential".into()))?;
    credential::save(&settings.data_dir, &credential)?;
    tracing::info!(host = %joined.host.id, state = ?joined.host.state, "joined the controller cluster with the join token");
    Ok(Joined { heartbeat: heartbeat_interval(settings, &joined), credential })
}

/// Joins, retrying until it succeeds.
pub async fn until_joined(agent: &Arc<Agent>, settings: &Settings, client: &ControllerClient) -> Joined {
    let mut backoff = Duration::from_millis(200);
    loop {
        let sent = std::time::Instant::now();
        agent.contact.attempting(sent);
        let result = attempt(agent, settings, client).await;
        match &result {
            Err(JoinError::Client(ClientError::Unreachable(_))) => {
                agent.contact.failed(sent, std::time::Instant::now())
            }
            _ => agent.contact.settled(sent),
        }
        match result {
            Ok(joined) => {
                tracing::info!(heartbeat_ms = joined.heartbeat.as_millis() as u64, "joined; sending heartbeats");
                return joined;
            }
            Err(JoinError::Client(ClientError::Unreachable(why))) => {
                tracing::warn!(%why, "no controller reachable to join; VMs keep running, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot join the controller cluster; retrying in {}s", AFTER_REFUSAL.as_secs());
                tokio::time::sleep(AFTER_REFUSAL).await;
            }
        }
    }
}
