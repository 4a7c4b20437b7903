//! The pure half of the data plane: what a host's desired state implies for its network devices,
//! routes and sysctls ([`Wanted`]), the steps from what is there to that ([`plan`]), and the
//! firewall model of the host ([`firewall_model`]).
//!
//! It exists so that convergence is decided without I/O and tested with plain values. It must only
//! ever plan changes to what the agent owns: VXLAN devices named `vx-<vni>`, VLAN devices named
//! `vl-<vlan>` (on the operator's trunk, which is never touched), routes of protocol
//! [`ROUTE_PROTO`] (in the main table, and the zones' gateways as local routes), the sysctls of those devices and of VM taps, and `net.ipv4.ip_forward`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hci_shared::agent::{HostDesired, HostNetwork, VmMigration};
use hci_shared::names::{parse_cidr, parse_ports};
use hci_shared::resources::Protocol;

use crate::firewall::model::{FirewallModel, Interface, Policy, Zone};
use crate::reconciler::tap_name;

/// The routing protocol number the agent's routes carry (`ip route ... proto 72`): the routes it
/// owns, and the only ones it ever deletes.
pub const ROUTE_PROTO: u8 = 72;
/// The VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Prefix of the agent's VXLAN devices.
pub const VXLAN_PREFIX: &str = "vx-";

/// Prefix of the agent's VLAN devices.
pub const VLAN_PREFIX: &str = "vl-";

/// The VXLAN device of zone network `vni`.
pub fn vxlan_name(vni: u32) -> String {
    format!("{VXLAN_PREFIX}{vni}")
}

/// The VLAN device of a zone on 802.1Q VLAN `id`.
pub fn vlan_name(id: u16) -> String {
    format!("{VLAN_PREFIX}{id}")
}

/// A sysctl as a path below `/proc/sys`.
pub fn sysctl_forwarding() -> String {
    "net/ipv4/ip_forward".into()
}
pub fn sysctl_proxy_arp(dev: &str) -> String {
    format!("net/ipv4/conf/{dev}/proxy_arp")
}
pub fn sysctl_proxy_delay(dev: &str) -> String {
    format!("net/ipv4/neigh/{dev}/proxy_delay")
}
/// 1 on zone devices: the host answers ARP there only for addresses configured on the device
/// (none), so machines on a VLAN or the underlay never learn the zones' gateways (local routes
/// here) from it; proxy ARP for VMs is not affected.
pub fn sysctl_arp_ignore(dev: &str) -> String {
    format!("net/ipv4/conf/{dev}/arp_ignore")
}

/// A VXLAN device as wanted or as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub port: u16,
}

/// An 802.1Q VLAN device as wanted or as found: its id and the device it is stacked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    pub lower: String,
}

/// A network device as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub up: bool,
    /// Set for VXLAN devices.
    pub vxlan: Option<Vxlan>,
    /// Set for VLAN devices.
    pub vlan: Option<Vlan>,
    pub mtu: u32,
}

/// A route the agent owns (protocol [`ROUTE_PROTO`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// `10.1.0.5/32`, `10.1.0.0/24`.
    pub dst: String,
    pub dev: String,
}

/// What the host has, as far as the agent cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: BTreeMap<String, Link>,
    /// Only routes of protocol [`ROUTE_PROTO`].
    pub routes: BTreeSet<Route>,
    /// Addresses of the local routing table's routes of protocol [`ROUTE_PROTO`] (the gateways).
    pub local_addresses: BTreeSet<Ipv4Addr>,
    /// Addresses of the local table's other routes (the host's own addresses): never taken over.
    pub foreign_local: BTreeSet<Ipv4Addr>,
    /// Flood destinations (all-zero MAC entries) of each VXLAN device of the agent's.
    pub flood: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Values of the sysctls asked for (missing: the key does not exist).
    pub sysctls: BTreeMap<String, String>,
}

/// One step toward the wanted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddVxlan {
        name: String,
        vxlan: Vxlan,
    },
    AddVlan {
        name: String,
        vlan: Vlan,
    },
    DeleteLink {
        name: String,
    },
    SetUp {
        name: String,
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    Sysctl {
        key: String,
        value: String,
    },
    AddFlood {
        dev: String,
        dst: Ipv4Addr,
    },
    DeleteFlood {
        dev: String,
        dst: Ipv4Addr,
    },
    ReplaceRoute(Route),
    DeleteRoute(Route),
    /// `ip route replace local ADDR/32 dev lo table local`: the host receives packets to ADDR as
    /// its own without having the address on any device.
    AddLocal(Ipv4Addr),
    DeleteLocal(Ipv4Addr),
}

impl Op {
    /// The device the step is about (`None` for host-wide sysctls).
    pub fn device(&self) -> Option<&str> {
        match self {
            Op::AddVxlan { name, .. }
            | Op::AddVlan { name, .. }
            | Op::DeleteLink { name }
            | Op::SetUp { name }
            | Op::SetMtu { name, .. } => Some(name),
            Op::AddFlood { dev, .. } | Op::DeleteFlood { dev, .. } => Some(dev),
            Op::ReplaceRoute(r) | Op::DeleteRoute(r) => Some(&r.dev),
            Op::Sysctl { key, .. } => key.split('/').nth(3),
            Op::AddLocal(_) | Op::DeleteLocal(_) => None,
        }
    }
}

/// One VM NIC on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNic {
    pub vm_id: String,
    pub index: usize,
    pub tap: String,
    pub zone: String,
    pub ip: String,
    /// The VM is arriving by live migration (its tap here belongs to a paused copy until it runs).
    pub incoming: bool,
}

/// Where this host meets the other hosts of its site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fabric {
    /// The address its VXLAN devices send from (zones with a VNI).
    pub underlay: Option<Ipv4Addr>,
    /// The device its VLAN devices are stacked on (zones with a VLAN), e.g. `bond0`.
    pub vlan_trunk: Option<String>,
}

impl Fabric {
    /// Neither: a single host (VMs reach only VMs of this host).
    pub fn is_single_host(&self) -> bool {
        self.underlay.is_none() && self.vlan_trunk.is_none()
    }
}

/// What the host's desired state implies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// VXLAN devices by name (none when this host has no underlay address).
    pub vxlans: BTreeMap<String, Vxlan>,
    /// VLAN devices by name (none when this host has no VLAN trunk).
    pub vlans: BTreeMap<String, Vlan>,
    /// Flood destinations of each VXLAN device: every other host of the fabric.
    pub flood: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Zone networks routed through their VXLAN device: (cidr, device).
    pub zone_routes: Vec<Route>,
    /// Every VM NIC of this host (valid or not: [`firewall_model`] sorts them out).
    pub nics: Vec<LocalNic>,
    /// Zones this host cannot carry to other hosts (its fabric lacks what they need): why.
    pub unreachable: BTreeMap<String, String>,
    /// The device each zone travels on between hosts (`vx-<vni>` or `vl-<vlan>`), by zone name.
    pub zone_devices: BTreeMap<String, String>,
    /// The MTU of each zone device and VM tap: its zone's.
    pub mtus: BTreeMap<String, u32>,
    /// The trunk VLAN devices are stacked on (the fabric's), which decides which VLANs are ours.
    pub vlan_trunk: Option<String>,
    /// Every zone's gateway, received by the host as its own (local routes): a guest's unicast
    /// DHCP renewal to its server identifier (the gateway) reaches the agent's DHCP socket.
    pub gateways: BTreeSet<Ipv4Addr>,
}

impl Wanted {
    /// The devices other hosts' traffic arrives on: every VXLAN and VLAN device.
    pub fn fabric_devices(&self) -> Vec<String> {
        self.vxlans.keys().chain(self.vlans.keys()).cloned().collect()
    }

    /// Whether `name` is one of the agent's zone devices and `link` is it as wanted.
    fn matches(&self, name: &str, link: &Link) -> bool {
        match (self.vxlans.get(name), self.vlans.get(name)) {
            (Some(vxlan), _) => link.vxlan.as_ref() == Some(vxlan),
            (None, Some(vlan)) => link.vlan.as_ref() == Some(vlan),
            (None, None) => false,
        }
    }
}

/// The NICs of every VM in `desired`, with their tap names.
pub fn local_nics(desired: &HostDesired) -> Vec<LocalNic> {
    desired
        .vms
        .iter()
        .flat_map(|vm| {
            vm.nics.iter().enumerate().map(|(index, nic)| LocalNic {
                vm_id: vm.id.clone(),
                index,
                tap: tap_name(&vm.id, index),
                zone: nic.zone.clone(),
                ip: nic.ip.clone(),
                incoming: matches!(vm.migration, Some(VmMigration::Incoming { .. })),
            })
        })
        .collect()
}

/// What `network` (with this host `host_id`, meeting the others through `fabric`) and the host's
/// NICs imply. A zone whose carrier this host lacks (a VLAN zone without a trunk, a VXLAN zone
/// without an underlay address) is [`Wanted::unreachable`], unless the host is a single host.
pub fn wanted(host_id: &str, fabric: &Fabric, network: &HostNetwork, nics: Vec<LocalNic>) -> Wanted {
    let mut out = Wanted { nics, vlan_trunk: fabric.vlan_trunk.clone(), ..Wanted::default() };
    for nic in &out.nics {
        if let Some(zone) = network.zones.iter().find(|z| z.name == nic.zone) {
            out.mtus.insert(nic.tap.clone(), u32::from(zone.effective_mtu()));
        }
    }
    let peers: BTreeSet<Ipv4Addr> = network
        .fabric
        .iter()
        .filter(|h| h.host_id != host_id)
        .filter_map(|h| h.underlay_ip.parse().ok())
        .filter(|ip| Some(*ip) != fabric.underlay)
        .collect();
    for zone in &network.zones {
        let Ok(cidr) = parse_cidr(&zone.cidr) else { continue };
        out.gateways.extend(zone.gateway.parse::<Ipv4Addr>().ok());
        let device = match (zone.vni, zone.vlan, fabric.underlay, &fabric.vlan_trunk) {
            (Some(vni), _, Some(local), _) => {
                let name = vxlan_name(vni);
                out.vxlans.insert(name.clone(), Vxlan { vni, local, port: VXLAN_PORT });
                out.flood.insert(name.clone(), peers.clone());
                name
            }
            (None, Some(id), _, Some(trunk)) => {
                let name = vlan_name(id);
                out.vlans.insert(name.clone(), Vlan { id, lower: trunk.clone() });
                name
            }
            (vni, vlan, _, _) => {
                let why = match (vni, vlan) {
                    (Some(vni), _) => {
                        format!("zone {} is carried by VXLAN {vni}: this host has no --underlay-address", zone.name)
                    }
                    (None, Some(id)) => {
                        format!("zone {} is carried by VLAN {id}: this host has no --vlan-trunk", zone.name)
                    }
                    (None, None) => format!("zone {} has neither a VNI nor a VLAN", zone.name),
                };
                if !fabric.is_single_host() {
                    out.unreachable.insert(zone.name.clone(), why);
                }
                continue;
            }
        };
        out.zone_devices.insert(zone.name.clone(), device.clone());
        out.mtus.insert(device.clone(), u32::from(zone.effective_mtu()));
        out.zone_routes.push(Route { dst: cidr.to_string(), dev: device });
    }
    out
}

/// The sysctls [`plan`] looks at for `wanted`.
pub fn sysctl_keys(wanted: &Wanted) -> Vec<String> {
    let fabric = wanted.fabric_devices();
    let devices = fabric.iter().cloned().chain(wanted.nics.iter().map(|n| n.tap.clone()));
    let mut keys = vec![sysctl_forwarding()];
    for dev in devices {
        keys.push(sysctl_proxy_arp(&dev));
        keys.push(sysctl_proxy_delay(&dev));
    }
    keys.extend(fabric.iter().map(|dev| sysctl_arp_ignore(dev)));
    keys
}

impl Wanted {
    /// A zone device of the agent's (never a device of the operator's or of libvirt's): a VXLAN
    /// named `vx-*`, or a VLAN named `vl-<its id>` stacked on this host's trunk (an operator's
    /// `vl-*` elsewhere, or on a host without a trunk, is not ours).
    fn owns(&self, name: &str, link: &Link) -> bool {
        let vlan_ours =
            |vlan: &Vlan| self.vlan_trunk.as_deref() == Some(vlan.lower.as_str()) && name == vlan_name(vlan.id);
        (name.starts_with(VXLAN_PREFIX) && link.vxlan.is_some()) || link.vlan.as_ref().is_some_and(vlan_ours)
    }
}

/// The steps from `observed` to `wanted`. Steps that need a device only come once the device is
/// there (and up, for routes): the caller observes again after applying and plans the rest, until
/// nothing is left (see `converge`). Taps are never created or deleted (libvirt does that).
pub fn plan(wanted: &Wanted, observed: &Observed) -> Vec<Op> {
    let mut ops = Vec::new();
    let sysctl = |ops: &mut Vec<Op>, key: String, value: &str| {
        if observed.sysctls.get(&key).is_some_and(|v| v.trim() != value) {
            ops.push(Op::Sysctl { key, value: value.into() });
        }
    };
    // The host forwards (the key always exists).
    if observed.sysctls.get(&sysctl_forwarding()).is_none_or(|v| v.trim() != "1") {
        ops.push(Op::Sysctl { key: sysctl_forwarding(), value: "1".into() });
    }
    // Zone devices that are not wanted (or wanted differently) go first.
    for (name, link) in &observed.links {
        if wanted.owns(name, link) && !wanted.matches(name, link) {
            ops.push(Op::DeleteLink { name: name.clone() });
        }
    }
    // A zone device is there only as wanted (an operator's device of the same name is not ours to
    // use: adding ours then fails, naming it, for that zone's VMs); any other device (a tap) as is.
    let present = |name: &str| {
        let zone_device = wanted.vxlans.contains_key(name) || wanted.vlans.contains_key(name);
        observed.links.get(name).filter(|l| !zone_device || wanted.matches(name, l))
    };
    for (name, vlan) in &wanted.vlans {
        match present(name) {
            None => ops.push(Op::AddVlan { name: name.clone(), vlan: vlan.clone() }),
            Some(link) if !link.up => ops.push(Op::SetUp { name: name.clone() }),
            Some(_) => {}
        }
    }
    for (name, vxlan) in &wanted.vxlans {
        let Some(link) = present(name) else {
            ops.push(Op::AddVxlan { name: name.clone(), vxlan: vxlan.clone() });
            continue;
        };
        if !link.up {
            ops.push(Op::SetUp { name: name.clone() });
        }
        let have = observed.flood.get(name).cloned().unwrap_or_default();
        let want = wanted.flood.get(name).cloned().unwrap_or_default();
        ops.extend(want.difference(&have).map(|dst| Op::AddFlood { dev: name.clone(), dst: *dst }));
        ops.extend(have.difference(&want).map(|dst| Op::DeleteFlood { dev: name.clone(), dst: *dst }));
    }
    let mut routes: BTreeSet<Route> = BTreeSet::new();
    for route in &wanted.zone_routes {
        if present(&route.dev).is_some_and(|l| l.up) {
            routes.insert(route.clone());
        }
    }
    let mut devices: Vec<&str> = wanted.vxlans.keys().chain(wanted.vlans.keys()).map(String::as_str).collect();
    for nic in &wanted.nics {
        let Some(link) = present(&nic.tap) else { continue };
        devices.push(&nic.tap);
        if !link.up {
            ops.push(Op::SetUp { name: nic.tap.clone() });
            continue;
        }
        if let Ok(ip) = nic.ip.parse::<Ipv4Addr>() {
            routes.insert(Route { dst: format!("{ip}/32"), dev: nic.tap.clone() });
        }
    }
    for dev in devices.into_iter().filter(|d| present(d).is_some()) {
        sysctl(&mut ops, sysctl_proxy_arp(dev), "1");
        sysctl(&mut ops, sysctl_proxy_delay(dev), "0");
    }
    for dev in wanted.vxlans.keys().chain(wanted.vlans.keys()).filter(|d| present(d).is_some()) {
        sysctl(&mut ops, sysctl_arp_ignore(dev), "1");
    }
    for (name, mtu) in &wanted.mtus {
        if present(name).is_some_and(|link| link.mtu != *mtu) {
            ops.push(Op::SetMtu { name: name.clone(), mtu: *mtu });
        }
    }
    // A route to the same destination through another device is replaced, not added next to it.
    let wanted_dsts: BTreeSet<&str> = routes.iter().map(|r| r.dst.as_str()).collect();
    for route in &observed.routes {
        if !routes.contains(route) && !wanted_dsts.contains(route.dst.as_str()) {
            ops.push(Op::DeleteRoute(route.clone()));
        }
    }
    ops.extend(routes.into_iter().filter(|r| !observed.routes.contains(r)).map(Op::ReplaceRoute));
    let take =
        wanted.gateways.iter().filter(|g| !observed.local_addresses.contains(g) && !observed.foreign_local.contains(g));
    ops.extend(take.copied().map(Op::AddLocal));
    ops.extend(observed.local_addresses.difference(&wanted.gateways).copied().map(Op::DeleteLocal));
    ops
}

/// The host's firewall model: every zone and policy of `network`, the NICs that fit it (the
/// others come back as per-VM errors and stay out of the table), and `fabric` as the devices
/// other hosts' traffic arrives on.
pub fn firewall_model(
    network: &HostNetwork,
    nics: &[LocalNic],
    fabric: Vec<String>,
) -> (FirewallModel, BTreeMap<String, String>) {
    let mut errors = BTreeMap::new();
    let zones: Vec<Zone> = network
        .zones
        .iter()
        .filter_map(|z| {
            let cidr = parse_cidr(&z.cidr).ok()?;
            Some(Zone { name: z.name.clone(), isolated: z.isolated, cidr, deny_intra_zone: z.deny_intra_zone })
        })
        .collect();
    let policies = network
        .policies
        .iter()
        .map(|p| Policy {
            name: p.name.clone(),
            from_zone: p.from_zone.clone(),
            to_zone: p.to_zone.clone(),
            protocol: p.protocol,
            ports: match p.protocol {
                Protocol::Tcp | Protocol::Udp if !p.ports.trim().is_empty() => {
                    parse_ports(&p.ports).unwrap_or_default()
                }
                _ => Vec::new(),
            },
        })
        .collect();
    let mut model = FirewallModel { zones, policies, interfaces: Vec::new(), fabric_ifaces: fabric };
    let mut taken: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for nic in nics {
        let fail = |why: String| format!("network: NIC {} (tap {}): {why}", nic.index, nic.tap);
        let Ok(ip) = nic.ip.parse::<Ipv4Addr>() else {
            errors.insert(nic.vm_id.clone(), fail(format!("'{}' is not an IPv4 address", nic.ip)));
            continue;
        };
        let Some(zone) = model.zone(&nic.zone) else {
            errors.insert(nic.vm_id.clone(), fail(format!("zone {} is not in this host's network", nic.zone)));
            continue;
        };
        if !zone.cidr.contains(ip) {
            let why = format!("address {ip} is outside zone {} ({})", zone.name, zone.cidr);
            errors.insert(nic.vm_id.clone(), fail(why));
            continue;
        }
        if !taken.insert(ip) {
            errors.insert(nic.vm_id.clone(), fail(format!("address {ip} is held by another NIC on this host")));
            continue;
        }
        model.interfaces.push(Interface { ifname: nic.tap.clone(), zone: nic.zone.clone(), ip });
    }
    (model, errors)
}
