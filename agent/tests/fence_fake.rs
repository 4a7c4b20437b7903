//! Self-fencing on the in-memory hypervisor: the fence watcher's decision acted on by a real `Agent`
//! (persisted state in a temp dir), with peers faked. Isolated → the HA VM is powered off hard and
//! recorded; peers that do not hear the controllers either, or no peers at all → it keeps running;
//! the record survives a restart and is lifted only by a `ready` ack plus a newer generation. (The
//! same flows on real libvirt, real controllers and a network namespace: tests/tests/agent_fence.rs.)

mod reconciler_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_agent::controller::fence::Verdict;
use hci_agent::controller::fence_watch::{BoxFuture, ContactSource, PeerError, Watch};
use hci_agent::hypervisor::fake::{FakeHypervisor, Method};
use hci_agent::metrics::AgentMetrics;
use hci_agent::reconciler::domain_name;
use hci_agent::service::Agent;
use hci_agent::volumes::fake::FakePool;
use hci_shared::agent::{ControllerContact, HostDesired, Isolation, PeerAgent, VmDesired, VmRunState};
use hci_shared::hosts::HeartbeatAck;
use hci_shared::resources::{HostState, PowerState};
use reconciler_common::{resources, vm, volume, NoPeers};

/// Peers by host id: `Ok(age_ms)` (None: never heard) or an error (does not answer).
struct FakeContacts(BTreeMap<String, Result<Option<u64>, String>>);

impl ContactSource for FakeContacts {
    fn ask(&self, peer: &PeerAgent) -> BoxFuture<Result<ControllerContact, PeerError>> {
        let host_id = peer.host_id.clone();
        let answer = self.0.get(&host_id).cloned().unwrap_or_else(|| Err("no such peer".into()));
        Box::pin(async move {
            answer.map(|age| ControllerContact { host_id, last_ack_age_ms: age }).map_err(PeerError::Http)
        })
    }
}

fn contacts(peers: &[(&str, Result<Option<u64>, &str>)]) -> FakeContacts {
    FakeContacts(peers.iter().map(|(h, r)| (h.to_string(), r.map_err(str::to_string))).collect())
}

struct Site {
    hv: Arc<FakeHypervisor>,
    pool: Arc<FakePool>,
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        Self {
            hv: Arc::new(FakeHypervisor::new()),
            pool: Arc::new(FakePool::new("default", 100 << 30)),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An agent for host `h1` on this site's hypervisor and data dir (a restart opens it again).
    fn agent(&self) -> Arc<Agent> {
        let res = resources("h1", self.hv.clone(), self.pool.clone(), Arc::new(NoPeers));
        Agent::open(res, "primary".into(), self.dir.path().to_path_buf(), AgentMetrics::new()).expect("open agent")
    }
}

fn ha_vm(power: PowerState) -> VmDesired {
    vm("ha", &["boot"], power, 0)
}

/// Generation `generation` with the HA VM `ha` (and a non-HA `plain`), fencing after 1 ms.
/// (Built from JSON, so fields the desired state gains later, with defaults, need no change here.)
fn desired(generation: u64, peers: &[&str]) -> HostDesired {
    let isolation = Isolation {
        fence_after_ms: 1,
        fence_vms: vec!["ha".into()],
        peers: peers
            .iter()
            .map(|p| PeerAgent { host_id: p.to_string(), agent_url: format!("http://{p}.invalid:1") })
            .collect(),
    };
    serde_json::from_value(serde_json::json!({
        "host_id": "h1",
        "generation": generation,
        "volumes": [volume("boot", reconciler_common::image()), volume("boot2", reconciler_common::image())],
        "vms": [ha_vm(PowerState::Running), vm("plain", &["boot2"], PowerState::Running, 0)],
        "isolation": isolation,
    }))
    .expect("a desired state")
}

fn state_of(hv: &FakeHypervisor, vm: &str) -> Option<VmRunState> {
    hv.domain(&domain_name("h1", vm)).map(|d| d.state)
}

/// Steps the watcher until it reaches a verdict past `fence_after` (1 ms: a few steps at most).
async fn verdict(watch: &mut Watch, agent: &Arc<Agent>, source: &FakeContacts) -> Verdict {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = watch.step(agent, source).await {
            if !matches!(v, Verdict::Undecided(_)) || Instant::now() > deadline {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no verdict within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn running_agent(site: &Site, peers: &[&str]) -> Arc<Agent> {
    let agent = site.agent();
    agent.offer(desired(1, peers)).expect("offer");
    let report = agent.pass().await;
    assert_eq!(report.converged_generation, Some(1), "{report:?}");
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Running));
    agent
}

fn ack(state: HostState, controller_generation: u64) -> HeartbeatAck {
    HeartbeatAck { state, desired_generation: controller_generation, lease_ms: 4000, heartbeat_ms: 1000 }
}

#[tokio::test]
async fn isolated_host_fences_its_ha_vms_keeps_them_off_across_a_restart_until_taken_back() {
    let site = Site::new();
    let agent = running_agent(&site, &["h2"]).await;
    site.hv.clear_calls();
    let unreachable = contacts(&[("h2", Err("connection refused"))]);
    let v = verdict(&mut Watch::default(), &agent, &unreachable).await;
    assert!(matches!(v, Verdict::Isolated(_)), "{v:?}");
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped), "fenced at once");
    assert_eq!(state_of(&site.hv, "plain"), Some(VmRunState::Running), "only the HA VMs are fenced");
    assert_eq!(site.hv.count(Method::Shutdown), 1);
    assert!(agent.fence_metrics.render().contains("hci_agent_fenced_vms 1"));
    assert!(agent.fence_metrics.render().contains("hci_agent_fence_events_total 1"));

    // The reconciler keeps it off and reports why.
    let report = agent.pass().await;
    let ha = report.vms.iter().find(|v| v.id == "ha").expect("ha reported");
    assert_eq!(ha.state, VmRunState::Stopped);
    assert!(ha.last_error.as_deref().is_some_and(|e| e.starts_with("fenced: lost the controllers at ")), "{ha:?}");
    assert_eq!(report.converged_generation, None);

    // Restart (kill: drop the agent and open it again on the same data dir) while still cut off.
    drop(agent);
    let agent = site.agent();
    assert!(agent.fenced_vms().contains("ha"));
    agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped), "a restart does not start it");
    // Someone starts it behind the agent's back: the next pass powers it off again.
    site.hv.set_state(&domain_name("h1", "ha"), VmRunState::Running);
    agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped));

    // Back: a ready ack while the controller has a newer generation than the one held does not
    // lift it (the controller may have decided something while the host was away); nor a `fenced`
    // ack with that newer generation held.
    agent.acknowledged(Instant::now(), &ack(HostState::Ready, 2));
    agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped));
    agent.acknowledged(Instant::now(), &ack(HostState::Fenced, 2));
    agent.offer(desired(2, &["h2"])).expect("offer 2");
    agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped), "the controller says fenced");
    // Ready, with the controller's generation held: lifted, the normal reconcile starts it.
    agent.acknowledged(Instant::now(), &ack(HostState::Ready, 2));
    assert!(agent.fenced_vms().is_empty());
    let report = agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Running), "{report:?}");
    assert_eq!(report.converged_generation, Some(2));
    assert!(agent.fence_metrics.render().contains("hci_agent_fenced_vms 0"));
}

#[tokio::test]
async fn a_peer_hearing_the_controllers_while_our_heartbeats_fail_means_isolated() {
    let site = Site::new();
    let agent = running_agent(&site, &["h2", "h3"]).await;
    // Our heartbeats failed before and after the peers' last acknowledged ones (sent ~now).
    let t = Instant::now();
    agent.contact.failed(t - Duration::from_millis(500), t - Duration::from_millis(400));
    agent.contact.failed(t + Duration::from_millis(100), t + Duration::from_millis(100));
    let hearing = contacts(&[("h2", Ok(Some(5000))), ("h3", Ok(Some(0)))]);
    let v = verdict(&mut Watch::default(), &agent, &hearing).await;
    assert!(matches!(v, Verdict::Isolated(ref why) if why.contains("h3")), "{v:?}");
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Stopped));
}

#[tokio::test]
async fn controller_outage_seen_by_every_peer_keeps_the_vms_running() {
    let site = Site::new();
    let agent = running_agent(&site, &["h2", "h3"]).await;
    let t = Instant::now();
    agent.contact.failed(t, t);
    let outage = contacts(&[("h2", Ok(Some(60_000))), ("h3", Ok(None))]);
    let mut watch = Watch::default();
    assert_eq!(verdict(&mut watch, &agent, &outage).await, Verdict::Outage);
    assert_eq!(verdict(&mut watch, &agent, &outage).await, Verdict::Outage);
    assert!(agent.fenced_vms().is_empty());
    agent.pass().await;
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Running));
}

#[tokio::test]
async fn with_no_peers_nobody_could_take_over_so_nothing_is_fenced() {
    let site = Site::new();
    let agent = running_agent(&site, &[]).await;
    let v = verdict(&mut Watch::default(), &agent, &contacts(&[])).await;
    assert_eq!(v, Verdict::NoPeers);
    assert!(agent.fenced_vms().is_empty());
    assert_eq!(state_of(&site.hv, "ha"), Some(VmRunState::Running));
}
