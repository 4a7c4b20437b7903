//! The agent as a member of a site: joining the controller cluster, heartbeats, and the
//! desired-state feed (`--controller`, `--token-file`, `--advertise`).
//!
//! It exists apart from the reconciler so the agent works the same with or without controllers:
//! everything here only feeds [`Agent::offer`] and reads what the agent already holds. With no
//! controller reachable the agent keeps running its VMs from its persisted desired state, unless
//! the desired state asks for self-fencing and this host is the one cut off (`fence.rs`).

pub mod client;
pub mod contact;
pub mod credential;
pub mod feed;
pub mod fence;
pub mod fence_watch;
pub mod heartbeat;
pub mod join;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::service::Agent;

/// What the agent needs to take part in the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub controllers: Vec<String>,
    pub token_file: Option<PathBuf>,
    /// This agent's API as the controller and other agents reach it.
    pub advertise: String,
    /// Heartbeat at least this often (the controller's own interval applies when it is shorter).
    pub heartbeat: Option<Duration>,
    pub data_dir: PathBuf,
}

/// Joins, then heartbeats and follows the desired-state feed; re-joins when the credential stops
/// working. Runs forever.
pub async fn run(agent: Arc<Agent>, settings: Settings) {
    let client = match client::ControllerClient::new(&settings.controllers) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot talk to the controllers; running standalone");
            return;
        }
    };
    tokio::spawn(fence_watch::run(agent.clone()));
    loop {
        let joined = join::until_joined(&agent, &settings, &client).await;
        let feed = tokio::spawn(feed::run(agent.clone(), client.clone(), joined.credential.clone()));
        let heartbeat::Rejected(why) = heartbeat::run(&agent, &client, &joined).await;
        feed.abort();
        tracing::warn!(error = %why, "the controller refused this host's credential; joining again");
    }
}
