//! Live migration between two simulated hosts on fakes: the controller's two-sided protocol
//! (`Outgoing` on the source, `Incoming` on the target) moves a running VM without it ever running
//! twice, the target never creates it on its own, a refused offer leaves it running on the source,
//! and volumes in a shared pool survive the source letting go. (On real libvirt and Ceph:
//! tests/tests/agent_live_migration.rs.)

mod reconciler_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hci_agent::hypervisor::fake::{FakeHypervisor, Method};
use hci_agent::reconciler::{domain_name, incoming_offer, reconcile, HostResources, PassOutcome, PeerAgents};
use hci_agent::store::AgentState;
use hci_agent::volumes::fake::FakePool;
use hci_shared::agent::{
    HostDesired, IncomingOffer, IncomingRequest, RetiredVolume, VmDesired, VmMigration, VmRunState, VolumeDesired,
    VolumeSource,
};
use hci_shared::resources::PowerState;
use reconciler_common::{image, libvirt_uri, resources, vm, volume, NoPeers};

const B_URL: &str = "http://b.example:7100";

/// One simulated host: its resources and its persisted state, shared with the peers that ask it.
struct Host {
    hv: Arc<FakeHypervisor>,
    res: Arc<HostResources>,
    state: Arc<Mutex<AgentState>>,
}

impl Host {
    fn offer(&self, generation: u64, vms: Vec<VmDesired>, volumes: Vec<VolumeDesired>, retired: Vec<RetiredVolume>) {
        let d = HostDesired {
            host_id: self.res.host_id.clone(),
            generation,
            volumes,
            vms,
            retired_volumes: retired,
            isolation: None,
            network: None,
        };
        hci_shared::agent_validate::host_desired(&d).expect("a valid desired state");
        self.state.lock().expect("lock").accept(&self.res.host_id, d).expect("accept");
    }

    fn pass(&self) -> PassOutcome {
        reconcile(&self.res, &mut self.state.lock().expect("lock"))
    }
}

/// What answers for one peer: its resources and its state.
type Peer = (Arc<HostResources>, Arc<Mutex<AgentState>>);

/// Other agents, answered in-process by their own offer logic.
#[derive(Default)]
struct LocalPeers {
    by_url: Mutex<BTreeMap<String, Peer>>,
}

impl PeerAgents for LocalPeers {
    fn incoming_offer(&self, agent_url: &str, vm_id: &str, request: &IncomingRequest) -> Result<IncomingOffer, String> {
        let peers = self.by_url.lock().expect("lock");
        let (res, state) = peers.get(agent_url).ok_or_else(|| format!("no agent at {agent_url}"))?;
        let state = state.lock().expect("lock").clone();
        incoming_offer(res, &state, vm_id, request).map_err(|e| e.to_string())
    }
}

fn host(id: &str, pool: &Arc<FakePool>, peers: Arc<dyn PeerAgents>) -> Host {
    let hv = Arc::new(FakeHypervisor::new());
    let res = Arc::new(resources(id, hv.clone(), pool.clone(), peers));
    Host { hv, res, state: Arc::new(Mutex::new(AgentState::default())) }
}

/// Source `a` and target `b` over one shared pool; `a` reaches `b`'s agent at [`B_URL`].
fn pair() -> (Host, Host, Arc<FakePool>) {
    let pool = Arc::new(FakePool::new("default", 100 << 30));
    pool.set_shared(true);
    let b = host("b", &pool, Arc::new(NoPeers));
    let peers = Arc::new(LocalPeers::default());
    peers.by_url.lock().expect("lock").insert(B_URL.into(), (b.res.clone(), b.state.clone()));
    let a = host("a", &pool, peers);
    a.hv.add_peer(&libvirt_uri("b"), b.hv.clone());
    (a, b, pool)
}

fn volumes() -> Vec<VolumeDesired> {
    vec![volume("boot", image()), volume("data", VolumeSource::Empty)]
}

fn moving(migration: VmMigration) -> VmDesired {
    let mut m = vm("m", &["boot", "data"], PowerState::Running, 0);
    m.migration = Some(migration);
    m
}

fn outgoing() -> VmMigration {
    VmMigration::Outgoing { to_host: "b".into(), to_agent: B_URL.into() }
}

fn incoming() -> VmMigration {
    VmMigration::Incoming { from_host: "a".into() }
}

/// How many instances of VM `m` run across both hosts.
fn running_instances(a: &Host, b: &Host) -> usize {
    [(&a.hv, "a"), (&b.hv, "b")]
        .iter()
        .filter(|(hv, id)| hv.domain(&domain_name(id, "m")).is_some_and(|d| d.state == VmRunState::Running))
        .count()
}

fn vm_state(out: &PassOutcome) -> (VmRunState, Option<String>) {
    let r = out.report.vms.iter().find(|v| v.id == "m").expect("VM m in the report");
    (r.state, r.last_error.clone())
}

#[test]
fn a_running_vm_moves_once_and_never_runs_twice() {
    let (a, b, pool) = pair();
    a.offer(1, vec![vm("m", &["boot", "data"], PowerState::Running, 0)], volumes(), vec![]);
    assert_eq!(a.pass().errors, 0);
    assert_eq!(running_instances(&a, &b), 1);

    // The target waits: it neither defines nor starts an incoming VM, however often it passes.
    b.offer(1, vec![moving(incoming())], volumes(), vec![]);
    for _ in 0..3 {
        let out = b.pass();
        assert_eq!(vm_state(&out), (VmRunState::Missing, None));
    }
    assert_eq!(b.hv.count(Method::Define) + b.hv.count(Method::Start), 0);

    // The source moves it.
    a.offer(2, vec![moving(outgoing())], volumes(), vec![]);
    let out = a.pass();
    assert_eq!(vm_state(&out), (VmRunState::Departed, None));
    assert_eq!(out.report.converged_generation, Some(2), "departed is where an outgoing VM should be");
    assert_eq!(running_instances(&a, &b), 1);
    let arrived = b.hv.domain(&domain_name("b", "m")).expect("the VM is on b");
    assert_eq!(arrived.metadata.as_ref().map(|o| o.host_id.as_str()), Some("b"));
    assert!(a.hv.domain(&domain_name("a", "m")).is_none(), "gone from a");

    // Both settle without further actions: no second migration, no redefinition on the target.
    a.hv.clear_calls();
    b.hv.clear_calls();
    assert_eq!(vm_state(&a.pass()), (VmRunState::Departed, None));
    let out = b.pass();
    assert_eq!(vm_state(&out), (VmRunState::Running, None));
    assert_eq!(out.report.converged_generation, Some(1));
    assert_eq!(a.hv.count(Method::MigrateLive), 0);
    assert_eq!(b.hv.count(Method::Define) + b.hv.count(Method::Start), 0);

    // The controller finishes: the source forgets the VM (the shared volumes stay), the target owns it.
    a.offer(3, vec![], vec![], vec![]);
    assert_eq!(a.pass().errors, 0);
    assert!(pool.volume("boot").is_some() && pool.volume("data").is_some(), "a shared volume outlives the source");
    b.offer(2, vec![vm("m", &["boot", "data"], PowerState::Running, 0)], volumes(), vec![]);
    let out = b.pass();
    assert_eq!(vm_state(&out), (VmRunState::Running, None));
    assert_eq!(b.hv.count(Method::Start), 0, "no restart when the migration flag is cleared");
    assert_eq!(running_instances(&a, &b), 1);

    // Deleting it on the target retires the volumes explicitly.
    let retired = ["boot", "data"].map(|id| RetiredVolume { pool: "default".into(), id: id.into() }).to_vec();
    b.offer(3, vec![], vec![], retired);
    assert_eq!(b.pass().errors, 0);
    assert!(pool.volume("boot").is_none() && pool.volume("data").is_none());
    assert_eq!(running_instances(&a, &b), 0);
}

#[test]
fn a_refused_or_failed_migration_leaves_the_vm_running_on_the_source() {
    let (a, b, _pool) = pair();
    a.offer(1, vec![vm("m", &["boot", "data"], PowerState::Running, 0)], volumes(), vec![]);
    assert_eq!(a.pass().errors, 0);

    // The target does not expect it: the offer is refused, nothing moves.
    b.offer(1, vec![], vec![], vec![]);
    a.offer(2, vec![moving(outgoing())], volumes(), vec![]);
    let (state, error) = vm_state(&a.pass());
    assert_eq!(state, VmRunState::Running);
    assert!(error.as_deref().is_some_and(|e| e.contains("not in this host's desired state")), "{error:?}");
    assert_eq!(running_instances(&a, &b), 1);

    // The target expects it from another host: refused too.
    b.offer(2, vec![moving(VmMigration::Incoming { from_host: "c".into() })], volumes(), vec![]);
    let (_, error) = vm_state(&a.pass());
    assert!(error.as_deref().is_some_and(|e| e.contains("comes from c")), "{error:?}");

    // Expected, but libvirt's migration fails: still running on the source, retried next pass.
    b.offer(3, vec![moving(incoming())], volumes(), vec![]);
    a.hv.fail_next(Method::MigrateLive, 1);
    let (state, error) = vm_state(&a.pass());
    assert_eq!(state, VmRunState::Running);
    assert!(error.is_some());
    assert_eq!(running_instances(&a, &b), 1);
    assert_eq!(vm_state(&a.pass()), (VmRunState::Departed, None));
    assert_eq!(running_instances(&a, &b), 1);
}

#[test]
fn an_offer_checks_the_request() {
    let (_a, b, _pool) = pair();
    b.offer(1, vec![moving(incoming())], volumes(), vec![]);
    let state = b.state.lock().expect("lock").clone();
    let ask = |vm: &str, from: &str, uuid: &str| {
        let request = IncomingRequest { from_host: from.into(), domain_name: domain_name(from, vm), uuid: uuid.into() };
        incoming_offer(&b.res, &state, vm, &request)
    };
    let uuid = "0b7c2f2e-49f5-4c1a-9d3e-2f1d5a6b7c8d";
    // The volumes are not in the pool yet (they arrive with the VM): it cannot run here.
    let refusal = ask("m", "a", uuid).expect_err("no volumes");
    assert!(refusal.to_string().contains("volume boot is not on this host"), "{refusal}");
    assert!(ask("m", "a", "not-a-uuid").expect_err("bad uuid").to_string().starts_with("uuid:"));
    assert!(ask("m", "../a", uuid).expect_err("bad host").to_string().starts_with("from_host:"));
    assert!(ask("nope", "a", uuid).expect_err("unknown").to_string().contains("not in this host's desired state"));
    let wrong_name = IncomingRequest { from_host: "a".into(), domain_name: "hci-a-other".into(), uuid: uuid.into() };
    let refusal = incoming_offer(&b.res, &state, "m", &wrong_name).expect_err("wrong name");
    assert!(refusal.to_string().starts_with("domain_name:"), "{refusal}");
}
