//! One running controller member: opens storage, starts Raft, serves HTTP, and stops cleanly.
//!
//! [`App`] is the handle every API handler gets: the Raft instance, the applied-state view and the
//! helpers that turn a request into a committed command or a linearizable read. It must never
//! change replicated state except through `App::write`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hci_shared::command::{Applied, Command, Envelope};
use hci_shared::ApiError;
use openraft::{BasicNode, SnapshotPolicy};
use sha2::{Digest, Sha256};

use crate::batcher::Batcher;
use crate::config::Config;
use crate::hosts::Leases;
use crate::metrics::Metrics;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_machine::{StateMachine, StateView};
use crate::raft::{NodeId, Raft};

/// Who made a request: the name recorded for the bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("creating data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] crate::raft::db::DbError),
    #[error("opening the state machine: {0}")]
    Storage(#[from] Box<crate::raft::StorageError>),
    #[error("raft configuration: {0}")]
    RaftConfig(String),
    #[error("starting raft: {0}")]
    Raft(String),
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error("writing admin token {path}: {source}")]
    Token { path: String, source: std::io::Error },
}

/// Shared state of a running member.
pub struct App {
    pub id: NodeId,
    pub raft: Raft,
    pub batcher: Batcher,
    pub state: StateView,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    pub committed: Arc<AtomicU64>,
    pub config: Config,
    /// Host leases over heartbeats (live only while this member leads).
    pub leases: Leases,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("id", &self.id).field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

/// RFC 3339 UTC time with millisecond precision, stamped on commands before they are proposed.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A fresh server-assigned id: `prefix-` + 12 hex digits.
pub fn new_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &uuid[..12])
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl App {
    /// Is this member the leader right now (as far as it knows)?
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader's id and address, when known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    /// Proposes `command` and waits until it is committed by a majority, fsynced and applied.
    pub async fn write(&self, caller: &Caller, command: Command) -> Result<Applied, ApiError> {
        let envelope = Envelope { at: now_rfc3339(), caller: caller.0.clone(), command };
        match tokio::time::timeout(self.write_timeout(), self.batcher.submit(envelope)).await {
            Err(_) => Err(ApiError::unavailable(format!(
                "no quorum: the write was not committed within {} ms (it may still commit; re-read before retrying)",
                self.config.write_timeout_ms
            ))),
            Ok(response) => response?.0,
        }
    }

    /// Waits until this member's state reflects every write committed before the call (read index).
    pub async fn linearizable(&self) -> Result<(), ApiError> {
        match tokio::time::timeout(self.write_timeout(), self.raft.ensure_linearizable()).await {
            Err(_) => Err(ApiError::unavailable("no quorum: could not confirm leadership for a linearizable read")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                Err(ApiError::unavailable(format!("linearizable read refused: {e}; retry or use ?stale=true")))
            }
        }
    }

    /// Runs `f` on the applied model, after a read-index round unless `stale`.
    pub async fn read<R>(&self, stale: bool, f: impl FnOnce(&hci_state::Model) -> R) -> Result<R, ApiError> {
        if !stale {
            self.linearizable().await?;
        }
        Ok(f(&self.state.read()))
    }
}

/// Writes `DIR/admin.token` (mode 0600) atomically and returns the token.
fn write_admin_token(config: &Config) -> Result<String, NodeError> {
    let path = config.data_dir.join("admin.token");
    let token = format!("hci_{}", hex::encode(rand::random::<[u8; 24]>()));
    let tmp = config.data_dir.join("admin.token.tmp");
    let err = |source| NodeError::Token { path: path.display().to_string(), source };
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(token.as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(token)
}

/// After `--bootstrap`: once leader, make sure the administrator token exists on disk and in the
/// replicated state. Idempotent across crashes between the two steps.
async fn ensure_bootstrapped(app: Arc<App>) {
    let path = app.config.data_dir.join("admin.token");
    loop {
        if app.state.read().is_bootstrapped() {
            return;
        }
        if app.is_leader() {
            let token = match std::fs::read_to_string(&path) {
                Ok(t) => t.trim().to_string(),
                Err(_) => match write_admin_token(&app.config) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the admin token");
                        return;
                    }
                },
            };
            let command = Command::Bootstrap { site: app.config.site.clone(), admin_token_sha256: sha256_hex(&token) };
            match app.write(&Caller("bootstrap".into()), command).await {
                Ok(_) => tracing::info!(token_file = %path.display(), "cluster bootstrapped"),
                Err(e) => tracing::warn!(error = %e, "bootstrap write failed; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens storage and starts Raft (no HTTP yet). Used by `run` and by in-process tests.
pub async fn start(config: Config, metrics: Metrics) -> Result<Arc<App>, NodeError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| NodeError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let db = crate::raft::db::open(&config.data_dir.join("db"))?;
    let log_store = LogStore::new(db.clone());
    let committed = log_store.committed_index();
    let (state_machine, state) = StateMachine::open(db, metrics.clone()).map_err(Box::new)?;
    let raft_config = openraft::Config {
        cluster_name: "hci".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: config.election_timeout_ms * 2,
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        snapshot_max_chunk_size: 4 << 20,
        max_in_snapshot_log_to_keep: config.snapshot_every.min(1_000),
        max_payload_entries: 1_000,
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate().map_err(|e| NodeError::RaftConfig(e.to_string()))?);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    let raft = Raft::new(config.id, raft_config, Network::new(http.clone()), log_store, state_machine)
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    let batcher = Batcher::spawn(raft.clone());
    let leases = Leases::new(Duration::from_millis(config.host_lease_ms), std::time::Instant::now());
    let app = Arc::new(App { id: config.id, raft, batcher, state, http, metrics, committed, config, leases });
    tokio::spawn(crate::hosts::monitor::run(app.clone()));
    tokio::spawn(crate::moves::finisher::run(app.clone()));
    if app.config.bootstrap {
        let initialized = app.raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(app.id, BasicNode { addr: app.config.advertise.to_string() })]);
            app.raft.initialize(members).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            tracing::info!(id = app.id, "initialized a new one-member cluster");
        }
        tokio::spawn(ensure_bootstrapped(app.clone()));
    }
    Ok(app)
}

/// Runs a member until SIGTERM or SIGINT, then shuts Raft down and returns.
pub async fn run(config: Config) -> Result<(), NodeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Bind { addr: config.listen.to_string(), source })?;
    let app = start(config, Metrics::new()).await?;
    tracing::info!(id = app.id, listen = %app.config.listen, "controller member serving");
    let router = crate::api::router(app.clone());
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await.map_err(NodeError::Serve)?;
    tracing::info!("stopping raft");
    if let Err(e) = app.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The committed index as last reported to the log store.
pub fn committed_index(app: &App) -> u64 {
    app.committed.load(Ordering::Relaxed)
}
