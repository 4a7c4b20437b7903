//! What the reconciler tests on fakes share: a simulated host (fake hypervisor, fake pool, fake
//! images) and small builders for desired VMs and volumes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hci_agent::hypervisor::fake::FakeHypervisor;
use hci_agent::hypervisor::Hypervisor;
use hci_agent::reconciler::{reconcile, HostResources, ImageSource, IncomingEndpoint, PassOutcome, PeerAgents};
use hci_agent::store::AgentState;
use hci_agent::volumes::fake::FakePool;
use hci_agent::volumes::VolumeBackend;
use hci_firmware_profiles::Profiles;
use hci_shared::agent::{
    HostDesired, ImageFormat, ImageRef, IncomingOffer, IncomingRequest, VmDesired, VolumeDesired, VolumeSource,
};
use hci_shared::resources::PowerState;

pub struct FakeImages;

impl ImageSource for FakeImages {
    fn ensure(&self, image: &ImageRef) -> Result<PathBuf, String> {
        Ok(PathBuf::from(format!("/images/{}.qcow2", image.name)))
    }
}

/// A simulated host `h1` with a fake hypervisor and one fake pool, and its agent state.
pub struct Host {
    pub hv: Arc<FakeHypervisor>,
    pub pool: Arc<FakePool>,
    pub res: HostResources,
    pub state: AgentState,
}

pub fn host() -> Host {
    let hv = Arc::new(FakeHypervisor::new());
    let pool = Arc::new(FakePool::new("default", 100 << 30));
    let res = resources("h1", hv.clone(), pool.clone(), Arc::new(NoPeers));
    Host { hv, pool, res, state: AgentState::default() }
}

impl Host {
    /// Hands the agent generation `generation` (valid, as the agent API would check).
    pub fn offer(&mut self, generation: u64, vms: Vec<VmDesired>, volumes: Vec<VolumeDesired>) {
        let d = HostDesired { volumes, vms, ..hci_shared::hosts::empty_desired("h1", generation) };
        hci_shared::agent_validate::host_desired(&d).expect("a valid desired state");
        self.state.accept("h1", d).expect("accept");
    }

    pub fn pass(&mut self) -> PassOutcome {
        reconcile(&self.res, &mut self.state)
    }
}

/// A host that reaches no other agent.
pub struct NoPeers;

impl PeerAgents for NoPeers {
    fn incoming_offer(&self, agent_url: &str, _: &str, _: &IncomingRequest) -> Result<IncomingOffer, String> {
        Err(format!("no agent at {agent_url}"))
    }
}

/// The fake libvirt URI of host `host_id` (what its offers name).
pub fn libvirt_uri(host_id: &str) -> String {
    format!("fake:///{host_id}")
}

/// A simulated host `host_id` with the fake hypervisor `hv` and pool `pool` (named `default`).
pub fn resources(
    host_id: &str,
    hv: Arc<FakeHypervisor>,
    pool: Arc<FakePool>,
    peers: Arc<dyn PeerAgents>,
) -> HostResources {
    let caps = hv.capabilities().expect("caps");
    HostResources {
        host_id: host_id.into(),
        hypervisor: hv,
        pools: BTreeMap::from([("default".to_string(), pool as Arc<dyn VolumeBackend>)]),
        images: Arc::new(FakeImages),
        profiles: Profiles::builtin().expect("profiles"),
        firmware: caps.firmware,
        domain_type: "qemu".into(),
        vm_dir: std::env::temp_dir().join(format!("hci-reconciler-test-{}-{host_id}", std::process::id())),
        shutdown_timeout: Duration::from_secs(1),
        peers,
        incoming: IncomingEndpoint { libvirt_uri: libvirt_uri(host_id), address: Some("127.0.0.1".into()) },
        network: None,
    }
}

pub fn volume(id: &str, source: VolumeSource) -> VolumeDesired {
    VolumeDesired { id: id.into(), pool: "default".into(), size_gib: 2, source, snapshots: vec![], rollback: None }
}

pub fn image() -> VolumeSource {
    VolumeSource::Image(ImageRef {
        name: "guest".into(),
        source: "file:///srv/guest.qcow2".into(),
        format: ImageFormat::Qcow2,
        sha256: "0".repeat(64),
    })
}

pub fn vm(id: &str, disks: &[&str], power: PowerState, reboots: u64) -> VmDesired {
    VmDesired {
        id: id.into(),
        name: id.into(),
        vcpus: 1,
        memory_mib: 256,
        arch: "x86_64".into(),
        firmware: "x86_64-bios".into(),
        disks: disks.iter().map(|d| d.to_string()).collect(),
        nics: vec![],
        power,
        reboot_count: reboots,
        oem_strings: vec![],
        migration: None,
        snapshots: vec![],
        revert: None,
    }
}
