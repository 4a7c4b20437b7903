//! The controller ↔ agent protocol: a host's desired state goes down, its actual state and inventory
//! come back up. Nothing else crosses between them.
//!
//! Every desired state carries a generation; the agent persists the last one it accepted and never
//! goes back to an older one, so either side can restart at any moment. Versioned by
//! [`AGENT_API_VERSION`] (the agent's HTTP paths are `/agent/v1/...`).

use serde::{Deserialize, Serialize};

use crate::resources::PowerState;

pub const AGENT_API_VERSION: u32 = 1;

/// How an image file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Qcow2,
    Raw,
}

/// A bootable disk image the host fetches and verifies the first time a volume needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub name: String,
    /// `file:///path` or `http(s)://...`.
    pub source: String,
    pub format: ImageFormat,
    /// Lowercase hex SHA-256 of the image file; a mismatch refuses the image.
    pub sha256: String,
}

/// What a new volume starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// Zero-filled.
    Empty,
    /// A bootable copy of an image (a qcow2 overlay over the verified image where the backend can).
    Image(ImageRef),
    /// A copy of another volume on this host, or of one of its snapshots.
    Clone {
        from: String,
        #[serde(default)]
        snapshot: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDesired {
    pub id: String,
    pub pool: String,
    pub size_gib: u64,
    pub source: VolumeSource,
    /// Snapshots the volume should have, oldest first (pools that snapshot volumes: RBD, LVM-thin):
    /// taken when missing, deleted when no longer listed.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Return the volume to one of its snapshots, once per `serial`; waits while a running VM uses it.
    #[serde(default)]
    pub rollback: Option<Rollback>,
}

/// A one-shot return to a snapshot: acted on once for each new `serial` (like `reboot_count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub to: String,
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicDesired {
    pub mac: String,
    pub zone: String,
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDesired {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub arch: String,
    pub firmware: String,
    /// Volume ids in boot order; the first is the boot disk.
    pub disks: Vec<String>,
    pub nics: Vec<NicDesired>,
    pub power: PowerState,
    /// A change means "reboot once".
    pub reboot_count: u64,
    /// Strings handed to the guest as SMBIOS OEM strings (type 11), e.g. `hci.marker=abc`: per-VM
    /// settings a guest can read without a network metadata service.
    #[serde(default)]
    pub oem_strings: Vec<String>,
    /// Set while the VM moves to another host by live migration (see [`VmMigration`]).
    #[serde(default)]
    pub migration: Option<VmMigration>,
    /// Disk-only snapshots of all the VM's disks, oldest first (qcow2 file disks), taken when missing,
    /// running or stopped.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Revert every disk to one of `snapshots`, once per `serial`, while the VM is stopped; the
    /// snapshot must be the last of `snapshots` (later ones are dropped by the revert).
    #[serde(default)]
    pub revert: Option<Rollback>,
}

/// A live migration in progress, as the controller writes it into both hosts' desired states at the
/// same generation step: the source gets `Outgoing`, the target `Incoming`. The target never defines
/// or starts the VM itself: the VM arrives only through libvirt's migration (which stops the source
/// instance as the target one takes over), so it never runs twice. When the target reports it
/// running, the controller removes the VM from the source and clears `Incoming` on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmMigration {
    /// Live-migrate this running VM to host `to_host`, whose agent API is at `to_agent`
    /// (`http(s)://HOST:PORT`); the target agent renders the domain it will run there.
    Outgoing { to_host: String, to_agent: String },
    /// The VM is arriving from host `from_host`: wait for it, never create it here.
    Incoming { from_host: String },
}

/// A source agent's request to the target agent for an incoming VM: `POST /agent/v1/incoming/{vm id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingRequest {
    pub from_host: String,
    /// The domain's name on the source host; the target's XML carries it (libvirt renames on arrival).
    pub domain_name: String,
    /// The domain's UUID, which it keeps across the migration.
    pub uuid: String,
}

/// The target agent's answer: where and as what the VM will run there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingOffer {
    pub host_id: String,
    /// The domain name on the target (`hci-<target host>-<vm id>`).
    pub domain_name: String,
    /// The target's domain XML (its disks, files and hci metadata), with the VM's UUID.
    pub domain_xml: String,
    /// The libvirt URI the source's libvirtd connects to (peer-to-peer migration).
    pub libvirt_uri: String,
    /// Where QEMU's migration stream goes (`tcp://ADDRESS`); `None` lets libvirt choose.
    pub migration_uri: Option<String>,
}

/// A volume to delete from a shared pool (Ceph), which other hosts see too: on a shared pool, a
/// volume missing from the desired state may be in use by another host, so only an explicit
/// retirement deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredVolume {
    pub pool: String,
    pub id: String,
}

/// Everything one host should be running, at one generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDesired {
    pub host_id: String,
    pub generation: u64,
    pub volumes: Vec<VolumeDesired>,
    pub vms: Vec<VmDesired>,
    /// Volumes of shared pools to delete (see [`RetiredVolume`]); local pools delete by absence.
    #[serde(default)]
    pub retired_volumes: Vec<RetiredVolume>,
    /// What to do when this host loses the controllers (see [`Isolation`]); `None`: keep running.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// The site's zone networks, zone policies and VXLAN fabric (see [`HostNetwork`]); `None`: the
    /// agent leaves the host's networking and firewall as they are.
    #[serde(default)]
    pub network: Option<HostNetwork>,
}

/// What a host needs to route its VMs' NICs and judge their traffic (docs/networks.md): every zone
/// and zone policy of the site (the same on every host) and the underlay addresses of the site's
/// hosts, between which each zone's VXLAN runs. No per-VM state of other hosts is in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostNetwork {
    pub zones: Vec<NetworkZone>,
    pub policies: Vec<NetworkPolicy>,
    /// Every host of the site that reported an underlay address, this one included.
    pub fabric: Vec<FabricHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkZone {
    pub name: String,
    /// `10.10.0.0/24`.
    pub cidr: String,
    /// The first host address of `cidr`: the guests' default route (answered by the host's proxy ARP).
    pub gateway: String,
    /// The zone's VXLAN network identifier (device `vx-<vni>` on every host with an underlay
    /// address); `None` when a VLAN carries the zone.
    #[serde(default)]
    pub vni: Option<u32>,
    /// The zone's 802.1Q VLAN (device `vl-<vlan>` on every host's VLAN trunk), instead of a VXLAN.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Nothing in or out.
    pub isolated: bool,
    /// Traffic between two NICs of the zone is dropped.
    pub deny_intra_zone: bool,
    /// MTU of the zone's device, of its VMs' taps, and told to guests by DHCP (option 26), when the
    /// zone sets one; else [`NetworkZone::effective_mtu`] is its carrier's default.
    #[serde(default)]
    pub mtu: Option<u16>,
}

/// A VXLAN zone's MTU unless the zone sets one: 50 bytes of VXLAN headers below a 1500-byte underlay.
pub const DEFAULT_VXLAN_MTU: u16 = 1450;
/// A VLAN zone's MTU unless the zone sets one.
pub const DEFAULT_VLAN_MTU: u16 = 1500;

impl NetworkZone {
    /// Zone `name` on `cidr` carried by VXLAN `vni`, its gateway the first host address.
    pub fn new(name: &str, cidr: crate::names::Cidr, vni: u32, isolated: bool, deny_intra_zone: bool) -> Self {
        NetworkZone {
            name: name.to_string(),
            cidr: cidr.to_string(),
            gateway: std::net::Ipv4Addr::from(cidr.first() + 1).to_string(),
            vni: Some(vni),
            vlan: None,
            isolated,
            deny_intra_zone,
            mtu: None,
        }
    }

    /// The same zone carried by 802.1Q VLAN `vlan` instead of a VXLAN.
    pub fn on_vlan(self, vlan: u16) -> Self {
        NetworkZone { vni: None, vlan: Some(vlan), ..self }
    }

    /// The same zone with MTU `mtu` instead of its carrier's default.
    pub fn with_mtu(self, mtu: u16) -> Self {
        NetworkZone { mtu: Some(mtu), ..self }
    }

    /// The zone's MTU: its own, else [`DEFAULT_VLAN_MTU`] on a VLAN and [`DEFAULT_VXLAN_MTU`] on a VXLAN.
    pub fn effective_mtu(&self) -> u16 {
        self.mtu.unwrap_or(if self.vlan.is_some() { DEFAULT_VLAN_MTU } else { DEFAULT_VXLAN_MTU })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    pub name: String,
    pub from_zone: String,
    pub to_zone: String,
    pub protocol: crate::resources::Protocol,
    /// Canonical port list (`22,80,8000-8100`); empty: every port (and always for icmp and any).
    pub ports: String,
}

/// A host of the site on the VXLAN underlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricHost {
    pub host_id: String,
    /// IPv4 address the host's VXLAN devices send from (`hci-agent --underlay-address`).
    pub underlay_ip: String,
}

/// Self-fencing: the controller restarts a failed host's HA VMs elsewhere only after the host's
/// lease plus a margin; an agent cut off from the controllers must have stopped them by then.
///
/// When no heartbeat has been acknowledged for `fence_after_ms` (counted from when the last
/// acknowledged one was sent), the agent asks its `peers` whether they still hear from the
/// controllers (`GET /agent/v1/controller-contact`). If every peer answers and none does, the
/// controllers are down (nobody can restart anything): the VMs keep running. Otherwise the agent
/// is the isolated one: it powers off `fence_vms` at once and starts them again only after a
/// heartbeat is acknowledged with the host `ready` and a newer desired state says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    /// Less than the lease: the controller waits lease + margin before restarting elsewhere.
    pub fence_after_ms: u64,
    /// The HA VMs (ids) to power off when isolated.
    pub fence_vms: Vec<String>,
    /// The other hosts of the site.
    pub peers: Vec<PeerAgent>,
}

/// Another host's agent, as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAgent {
    pub host_id: String,
    /// `http(s)://HOST:PORT`.
    pub agent_url: String,
}

/// `GET /agent/v1/controller-contact`: when this agent last heard from the controllers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerContact {
    pub host_id: String,
    /// Milliseconds since the last acknowledged heartbeat was sent; `None`: never (since start).
    pub last_ack_age_ms: Option<u64>,
}

/// `POST /agent/v1/volumes/{id}/export`: a stopped VM's volume flattened into a checksummed file
/// that another host can import (a cold move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeExport {
    /// Path on the agent API that serves the file (`/agent/v1/exports/{name}`).
    pub url_path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub format: String,
}

/// What libvirt says a domain is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmRunState {
    Running,
    Stopped,
    Paused,
    ShuttingDown,
    Crashed,
    /// Desired but not (yet) defined on this host.
    Missing,
    /// Left this host by live migration (desired `Outgoing`, no longer here).
    Departed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStats {
    pub cpu_time_ns: u64,
    pub memory_kib: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmReport {
    pub id: String,
    pub state: VmRunState,
    pub stats: Option<VmStats>,
    /// The last error reconciling this VM, cleared once it converges.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    pub id: String,
    pub pool: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub last_error: Option<String>,
}

/// What the host is actually running, as of its last reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub host_id: String,
    /// The desired generation the agent holds (persisted).
    pub desired_generation: u64,
    /// The generation the last complete reconcile converged to (all VMs and volumes as desired).
    pub converged_generation: Option<u64>,
    pub vms: Vec<VmReport>,
    pub volumes: Vec<VolumeReport>,
    /// Domains on this host's hypervisor that hci does not own; reported, never touched.
    pub foreign_domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub name: String,
    /// `dir-qcow2`, `lvm-thin` or `rbd`.
    pub backend: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
    pub available_bytes: u64,
}

/// A host's inventory: what the controller places against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub host_id: String,
    pub site: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// `kvm` or `tcg`.
    pub accelerator: String,
    pub libvirt_version: String,
    pub pools: Vec<PoolInfo>,
    /// Firmware profiles this host can run (checked against domcapabilities and the firmware files).
    pub firmware_profiles: Vec<String>,
    /// The address this host's VXLAN devices use (`--underlay-address`), when configured.
    #[serde(default)]
    pub underlay_ip: Option<String>,
    /// The agent builds zone networks and the firewall (`--underlay-address`, `--vlan-trunk` or
    /// `--network`).
    #[serde(default)]
    pub zone_networks: bool,
    /// The device VLAN zones are stacked on (`--vlan-trunk`), when configured.
    #[serde(default)]
    pub vlan_trunk: Option<String>,
}
