//! Heartbeats: every few seconds the agent tells the leader it is alive, with its usage (from its
//! last reconcile report and its pools), each VM's actual state and last error, and where it is in
//! the desired-state feed. A change in a VM's reported state sends the next heartbeat at once.
//!
//! A heartbeat only refreshes a lease in the leader's memory; the controller marks the host offline
//! when they stop; each acknowledgement (and each failure) is recorded in the agent's controller
//! contact, which self-fencing reads. Pool usage asks libvirt, so it is sampled at most every [`POOL_SAMPLE_EVERY`]; the
//! rest comes from what the agent already holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_shared::agent::PoolInfo;
use hci_shared::hosts::{HeartbeatAck, HostHeartbeat, HostUsage, VmStatusReport};
use reqwest::Method;

use super::client::{ClientError, ControllerClient};
use super::join::Joined;
use crate::service::Agent;

const POOL_SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// Consecutive refusals of the credential before re-joining: a member that has not applied the join
/// yet (a failover right after it) refuses it for a moment.
const REFUSALS_BEFORE_REJOIN: u32 = 3;

/// Pool usage, refreshed at most every [`POOL_SAMPLE_EVERY`].
#[derive(Debug, Default)]
struct PoolSampler {
    pools: Vec<PoolInfo>,
    at: Option<Instant>,
}

impl PoolSampler {
    async fn pools(&mut self, agent: &Arc<Agent>) -> Vec<PoolInfo> {
        let due = match self.at {
            Some(at) => at.elapsed() >= POOL_SAMPLE_EVERY,
            None => true,
        };
        if due {
            let a = agent.clone();
            if let Ok(Ok(info)) =
                tokio::task::spawn_blocking(move || crate::inventory::host_info(&a.res, &a.site)).await
            {
                self.pools = info.pools;
            }
            self.at = Some(Instant::now());
        }
        self.pools.clone()
    }
}

fn beat(agent: &Agent, pools: &[PoolInfo]) -> HostHeartbeat {
    let report = agent.last_report();
    let desired = agent.desired();
    HostHeartbeat {
        usage: HostUsage::from_report(report.as_ref(), desired.as_ref(), pools),
        desired_generation: desired.as_ref().map_or(0, |d| d.generation),
        converged_generation: report.as_ref().and_then(|r| r.converged_generation),
        vms: report.as_ref().map(VmStatusReport::from_report).unwrap_or_default(),
    }
}

/// Why the heartbeat loop stopped: the controller no longer accepts this host's credential.
#[derive(Debug)]
pub struct Rejected(pub ClientError);

/// Sends heartbeats until the controller refuses the credential (then the caller re-joins).
pub async fn run(agent: &Arc<Agent>, client: &ControllerClient, joined: &Joined) -> Rejected {
    let path = format!("/v1/hosts/{}/heartbeat", agent.res.host_id);
    let mut interval = joined.heartbeat;
    let mut sampler = PoolSampler::default();
    let mut failing_since: Option<Instant> = None;
    let mut refusals = 0;
    loop {
        let pools = sampler.pools(agent).await;
        let body = beat(agent, &pools);
        let sent_vms = body.vms.clone();
        let timeout = interval.max(Duration::from_secs(2));
        // Contact counts from when the heartbeat left, not when its answer came back.
        let sent = Instant::now();
        agent.contact.attempting(sent);
        match client.call(Method::POST, &path, &joined.credential, Some(&body), timeout).await {
            Ok(answer) => {
                refusals = 0;
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        after_ms = since.elapsed().as_millis() as u64,
                        "heartbeats reach the controller again"
                    );
                }
                agent.contact.settled(sent);
                if let Ok(ack) = answer.json::<HeartbeatAck>() {
                    agent.acknowledged(sent, &ack);
                    let asked = Duration::from_millis(ack.heartbeat_ms.max(100));
                    interval = interval.min(asked).max(Duration::from_millis(100));
                }
            }
            Err(e) if e.is_auth() => {
                agent.contact.settled(sent);
                refusals += 1;
                if refusals >= REFUSALS_BEFORE_REJOIN {
                    return Rejected(e);
                }
                tracing::warn!(error = %e, "heartbeat refused; retrying before re-joining");
            }
            Err(e) => {
                agent.contact.failed(sent, Instant::now());
                if failing_since.is_none() {
                    tracing::warn!(error = %e, "heartbeat not delivered; VMs keep running, retrying");
                    failing_since = Some(Instant::now());
                }
            }
        }
        wait_for_next(agent, interval, &sent_vms).await;
    }
}

/// How often the agent looks at its last report between heartbeats.
const REPORT_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Sleeps until the next heartbeat is due, or earlier when a VM's reported state or error changed
/// since the last one (so `GET /v1/vms/{id}` follows a start or a failure within a fraction of a
/// second, not a heartbeat interval).
async fn wait_for_next(agent: &Agent, interval: Duration, sent: &[VmStatusReport]) {
    let due = Instant::now() + interval;
    loop {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(REPORT_CHECK_EVERY)).await;
        let now = agent.last_report().as_ref().map(VmStatusReport::from_report).unwrap_or_default();
        if now != sent {
            return;
        }
    }
}
