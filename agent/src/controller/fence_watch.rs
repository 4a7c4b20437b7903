//! Self-fencing, the watcher: while the held desired state has an `isolation` policy and this host
//! has gone `fence_after_ms` without an acknowledged heartbeat, it asks every peer's
//! `GET /agent/v1/controller-contact` (concurrently, [`PEER_TIMEOUT`] each), lets [`Judge`] decide,
//! and on `Isolated` has the agent power off the HA VMs at once ([`Agent::fence`]).
//!
//! It exists apart from the heartbeat loop so a heartbeat stuck on a dead connection never delays a
//! fencing, and apart from the reconciler so a long pass (an image download, a migration) does not
//! either. Peers are asked from half of `fence_after_ms` on, so the evidence is there when the time
//! comes. It only runs in an agent with `--controller`: a standalone agent has nobody to lose.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_shared::agent::{ControllerContact, PeerAgent};
use prometheus::{Encoder, IntCounter, IntGauge, Registry};
use tokio::task::JoinSet;

use super::fence::{Judge, PeerAnswer, Verdict};
use crate::service::Agent;

/// Each peer has this long to answer.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the watcher looks.
const TICK: Duration = Duration::from_millis(200);
/// How often peers are asked again while the controllers are down for everyone.
const OUTAGE_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    Http(String),
    #[error("no answer within {} ms", PEER_TIMEOUT.as_millis())]
    Timeout,
    #[error("answered as host '{0}'")]
    WrongHost(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where peers' controller contact comes from (HTTP; a fake in tests).
pub trait ContactSource: Send + Sync {
    fn ask(&self, peer: &PeerAgent) -> BoxFuture<Result<ControllerContact, PeerError>>;
}

/// Peers' agent APIs over HTTP.
#[derive(Debug, Clone)]
pub struct HttpContacts {
    client: reqwest::Client,
}

impl HttpContacts {
    pub fn new() -> Result<Self, PeerError> {
        let client =
            reqwest::Client::builder().timeout(PEER_TIMEOUT).build().map_err(|e| PeerError::Build(e.to_string()))?;
        Ok(Self { client })
    }
}

impl ContactSource for HttpContacts {
    fn ask(&self, peer: &PeerAgent) -> BoxFuture<Result<ControllerContact, PeerError>> {
        let url = format!("{}/agent/v1/controller-contact", peer.agent_url.trim_end_matches('/'));
        let client = self.client.clone();
        Box::pin(async move {
            let response = client.get(&url).send().await.map_err(|e| PeerError::Http(format!("GET {url}: {e}")))?;
            let response = response.error_for_status().map_err(|e| PeerError::Http(format!("GET {url}: {e}")))?;
            response.json::<ControllerContact>().await.map_err(|e| PeerError::Http(format!("GET {url}: {e}")))
        })
    }
}

/// Asks every peer at once; each answer within [`PEER_TIMEOUT`], from the peer it should be.
pub async fn ask_all(source: &dyn ContactSource, peers: &[PeerAgent]) -> Vec<PeerAnswer> {
    let asked_at = Instant::now();
    let mut set = JoinSet::new();
    for peer in peers {
        let question = source.ask(peer);
        let host_id = peer.host_id.clone();
        set.spawn(async move {
            let result = match tokio::time::timeout(PEER_TIMEOUT, question).await {
                Err(_) => Err(PeerError::Timeout),
                Ok(Err(e)) => Err(e),
                Ok(Ok(c)) if c.host_id != host_id => Err(PeerError::WrongHost(c.host_id)),
                Ok(Ok(c)) => Ok(c.last_ack_age_ms.map(Duration::from_millis)),
            };
            PeerAnswer { host_id, asked_at, result: result.map_err(|e| e.to_string()) }
        });
    }
    let mut answers = Vec::with_capacity(peers.len());
    while let Some(joined) = set.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    // A task that failed to run counts as a peer that did not answer.
    for peer in peers {
        if !answers.iter().any(|a| a.host_id == peer.host_id) {
            answers.push(PeerAnswer { host_id: peer.host_id.clone(), asked_at, result: Err("not asked".into()) });
        }
    }
    answers
}

/// The watcher's memory between ticks: the judge, and what was logged already.
#[derive(Debug, Default)]
pub struct Watch {
    judge: Judge,
    /// What was logged once already (until the silence ends or the verdict changes).
    logged: Option<&'static str>,
    /// During an outage, peers are asked only every [`OUTAGE_RECHECK`] (not every tick).
    quiet_until: Option<Instant>,
}

impl Watch {
    /// Logs `line` (`what` names it) once, until the silence ends or another line is logged.
    fn once(&mut self, what: &'static str, line: impl FnOnce() -> String) {
        if self.logged != Some(what) {
            tracing::warn!("{}", line());
            self.logged = Some(what);
        }
    }

    /// One look: returns the verdict when peers were asked. Fences through the agent when isolated.
    pub async fn step(&mut self, agent: &Arc<Agent>, source: &dyn ContactSource) -> Option<Verdict> {
        let desired = agent.desired()?;
        let isolation = desired.isolation.as_ref()?;
        let contact = agent.contact.view();
        let silent = contact.silent_since().elapsed();
        let fence_after = Duration::from_millis(isolation.fence_after_ms);
        if silent < fence_after / 2 {
            self.logged = None;
            return None;
        }
        let fenced = agent.fenced_vms();
        let candidates: Vec<String> = isolation
            .fence_vms
            .iter()
            .filter(|vm| desired.vms.iter().any(|d| &d.id == *vm) && !fenced.contains(*vm))
            .cloned()
            .collect();
        if candidates.is_empty() || self.quiet_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        self.quiet_until = None;
        let answers = ask_all(source, &isolation.peers).await;
        let contact = agent.contact.view();
        let verdict = self.judge.decide(&answers, fence_after, &contact, Instant::now());
        if contact.silent_since().elapsed() < fence_after {
            return Some(verdict);
        }
        let silent_ms = contact.silent_since().elapsed().as_millis();
        match &verdict {
            Verdict::Isolated(why) => {
                let done = agent.fence(candidates, why).await;
                self.logged = None;
                tracing::warn!(vms = ?done, silent_ms, reason = %why, "isolated from the controllers: HA VMs fenced");
            }
            Verdict::Outage => {
                self.quiet_until = Some(Instant::now() + OUTAGE_RECHECK);
                self.once("outage", || {
                    format!(
                        "no heartbeat acknowledged for {silent_ms} ms and no peer hears the controllers either: \
                         a controller outage, HA VMs keep running"
                    )
                })
            }
            Verdict::NoPeers => self.once("no peers", || {
                "no heartbeat acknowledged, but no peer could take over the HA VMs: they keep running".into()
            }),
            Verdict::Undecided(why) => tracing::debug!(silent_ms, reason = %why, "fencing undecided"),
        }
        Some(verdict)
    }
}

/// Looks every [`TICK`], forever.
pub async fn run(agent: Arc<Agent>) {
    let source = match HttpContacts::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot ask peers for their controller contact: self-fencing is off");
            return;
        }
    };
    let mut watch = Watch::default();
    loop {
        tokio::time::sleep(TICK).await;
        watch.step(&agent, &source).await;
    }
}

/// `hci_agent_fence_events_total` and `hci_agent_fenced_vms`, in their own registry (appended to the
/// agent's `/metrics`).
#[derive(Debug, Clone)]
pub struct FenceMetrics {
    registry: Registry,
    pub events: IntCounter,
    pub fenced_vms: IntGauge,
}

/// The metric names and help texts are static: an error is a programming error the tests catch.
fn metric<T>(made: Result<T, prometheus::Error>) -> T {
    match made {
        Ok(m) => m,
        Err(e) => unreachable!("fence metric: {e}"),
    }
}

impl FenceMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let events = metric(IntCounter::new(
            "hci_agent_fence_events_total",
            "Times this host fenced HA VMs after losing the controllers",
        ));
        let fenced_vms = metric(IntGauge::new("hci_agent_fenced_vms", "VMs held powered off by self-fencing"));
        for c in [Box::new(events.clone()) as Box<dyn prometheus::core::Collector>, Box::new(fenced_vms.clone())] {
            if let Err(e) = registry.register(c) {
                tracing::error!(error = %e, "registering the fence metrics");
            }
        }
        Self { registry, events, fenced_vms }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding the fence metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for FenceMetrics {
    fn default() -> Self {
        Self::new()
    }
}
