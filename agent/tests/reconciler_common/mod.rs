//! What the reconciler tests on fakes share: a simulated host (fake hypervisor, fake pool, fake
//! images) and small builders for desired VMs and volumes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hci_agent::hypervisor::fake::FakeHypervisor;
use hci_agent::hypervisor::Hypervisor;
use hci_agent::reconciler::{HostResources, ImageSource, IncomingEndpoint, PeerAgents};
use hci_agent::volumes::fake::FakePool;
use hci_agent::volumes::VolumeBackend;
use hci_firmware_profiles::Profiles;
use hci_shared::agent::{
    ImageFormat, ImageRef, IncomingOffer, IncomingRequest, VmDesired, VolumeDesired, VolumeSource,
};
use hci_shared::resources::PowerState;

pub struct FakeImages;

impl ImageSource for FakeImages {
    fn ensure(&self, image: &ImageRef) -> Result<PathBuf, String> {
        Ok(PathBuf::from(format!("/images/{}.qcow2", image.name)))
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
    }
}

pub fn volume(id: &str, source: VolumeSource) -> VolumeDesired {
    VolumeDesired { id: id.into(), pool: "default".into(), size_gib: 2, source }
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
    }
}
