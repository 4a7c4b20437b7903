//! The firewall's own input: the zones, zone policies and VM interfaces one host enforces, as plain
//! data, plus the model-level answer to "may this packet pass?" ([`FirewallModel::verdict`]).
//!
//! It exists so that the ruleset generator has one checked input (derived later from the host's
//! desired state) and so that the generated rules can be judged against the rules as written in
//! issue #5, independently of how they are compiled to nftables: [`FirewallModel::verdict`] never
//! looks at a rule. It must stay free of I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hci_shared::names::{Cidr, PortRange};
use hci_shared::resources::Protocol;

/// A security zone as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Unique on the host; used in chain and set names (lowercase letters, digits, `-`).
    pub name: String,
    /// Isolated zones exchange nothing with any other zone, whatever the policies say.
    pub isolated: bool,
    pub cidr: Cidr,
    /// Deny traffic between two members of the zone (allowed by default).
    pub deny_intra_zone: bool,
}

/// An allowed flow: new connections from `from_zone` to `to_zone` (replies ride on conntrack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Unique on the host; names the policy's counter (`policy-<name>`).
    pub name: String,
    pub from_zone: String,
    pub to_zone: String,
    pub protocol: Protocol,
    /// Destination ports for TCP and UDP; empty means every port. Ignored for ICMP and any.
    pub ports: Vec<PortRange>,
}

/// One VM network interface on this host: the host-side tap the agent names, in one zone, with the
/// one address IPAM gave it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interface {
    /// The host-side device (at most 15 characters).
    pub ifname: String,
    pub zone: String,
    pub ip: Ipv4Addr,
}

/// Everything one host's firewall enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallModel {
    pub zones: Vec<Zone>,
    pub policies: Vec<Policy>,
    pub interfaces: Vec<Interface>,
    /// Host devices that carry other hosts' VM traffic (the zones' VXLAN devices): packets arriving
    /// there belong to the zone of their source address, which their own host has checked.
    pub fabric_ifaces: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("zone {0}: name must be 1-63 lowercase letters, digits or '-'")]
    BadZoneName(String),
    #[error("policy {0}: name must be 1-63 lowercase letters, digits or '-'")]
    BadPolicyName(String),
    #[error("{kind} {name} is defined twice")]
    Duplicate { kind: &'static str, name: String },
    #[error("zones {0} and {1} overlap ({2} and {3})")]
    OverlappingZones(String, String, Cidr, Cidr),
    #[error("policy {policy} names unknown zone {zone}")]
    UnknownPolicyZone { policy: String, zone: String },
    #[error("policy {policy} names isolated zone {zone}; nothing may reach in or out of it")]
    IsolatedPolicyZone { policy: String, zone: String },
    #[error("interface {ifname} is in unknown zone {zone}")]
    UnknownInterfaceZone { ifname: String, zone: String },
    #[error("interface {ifname}: address {ip} is outside its zone {zone} ({cidr})")]
    AddressOutsideZone { ifname: String, ip: Ipv4Addr, zone: String, cidr: Cidr },
    #[error("interface name '{0}' must be 1-15 characters of letters, digits, '-', '_' or '.'")]
    BadIfname(String),
}

/// Names that end up inside nftables identifiers: the API's own name rule (at most 63 lowercase
/// letters, digits and '-'), so every derived name stays plain and far below nftables' 256 bytes.
fn plain_name(name: &str) -> bool {
    hci_shared::names::check_name(name).is_ok()
}

fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_unique<'a>(kind: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), ModelError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ModelError::Duplicate { kind, name: name.to_string() });
        }
    }
    Ok(())
}

impl FirewallModel {
    /// Checks what the generator relies on: unique, plain names; disjoint zone networks; policies
    /// between known, non-isolated zones; every interface in a known zone with an address inside it.
    pub fn validate(&self) -> Result<(), ModelError> {
        for zone in &self.zones {
            if !plain_name(&zone.name) {
                return Err(ModelError::BadZoneName(zone.name.clone()));
            }
        }
        check_unique("zone", self.zones.iter().map(|z| z.name.as_str()))?;
        for (i, a) in self.zones.iter().enumerate() {
            if let Some(b) = self.zones[i + 1..].iter().find(|b| a.cidr.overlaps(b.cidr)) {
                return Err(ModelError::OverlappingZones(a.name.clone(), b.name.clone(), a.cidr, b.cidr));
            }
        }
        for policy in &self.policies {
            if !plain_name(&policy.name) {
                return Err(ModelError::BadPolicyName(policy.name.clone()));
            }
            for zone_name in [&policy.from_zone, &policy.to_zone] {
                let unknown = || ModelError::UnknownPolicyZone { policy: policy.name.clone(), zone: zone_name.clone() };
                let zone = self.zone(zone_name).ok_or_else(unknown)?;
                if zone.isolated {
                    return Err(ModelError::IsolatedPolicyZone {
                        policy: policy.name.clone(),
                        zone: zone.name.clone(),
                    });
                }
            }
        }
        check_unique("policy", self.policies.iter().map(|p| p.name.as_str()))?;
        for iface in &self.interfaces {
            check_interface(self, iface)?;
        }
        for fabric in &self.fabric_ifaces {
            if !valid_ifname(fabric) {
                return Err(ModelError::BadIfname(fabric.clone()));
            }
        }
        let all_ifnames =
            self.interfaces.iter().map(|i| i.ifname.as_str()).chain(self.fabric_ifaces.iter().map(String::as_str));
        check_unique("interface", all_ifnames)
    }

    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The zone whose network holds `ip`.
    pub fn zone_of_address(&self, ip: Ipv4Addr) -> Option<&Zone> {
        self.zones.iter().find(|z| z.cidr.contains(ip))
    }

    fn interface(&self, ifname: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.ifname == ifname)
    }

    /// Interfaces by name (for incremental diffs).
    pub fn interfaces_by_name(&self) -> BTreeMap<&str, &Interface> {
        self.interfaces.iter().map(|i| (i.ifname.as_str(), i)).collect()
    }

    /// The model-level oracle: what issue #5 says should happen to `packet`, computed from the zones,
    /// policies and interfaces alone (never from generated rules).
    pub fn verdict(&self, packet: &Packet) -> Verdict {
        let from_vm = self.interface(&packet.iif);
        let to_vm = packet.oif.as_deref().and_then(|oif| self.interface(oif));
        if from_vm.is_none() && to_vm.is_none() {
            return Verdict::Accept; // not VM traffic: not this table's business
        }
        let (Some(src), Some(dst)) = (packet.src, packet.dst) else {
            return Verdict::Drop; // IPv6 to or from a VM: zones are IPv4-only
        };
        if packet.oif.is_none() && packet.proto == L4::Udp(crate::firewall::ruleset::DHCP_SERVER_PORT) {
            return Verdict::Accept; // a VM's DHCP request to the host's server, from any address
        }
        if from_vm.is_some_and(|i| i.ip != src) || to_vm.is_some_and(|i| i.ip != dst) {
            return Verdict::Drop; // spoofed source, or delivered to a VM not addressed
        }
        match packet.ct_state {
            CtState::Established | CtState::Related => return Verdict::Accept,
            CtState::Invalid => return Verdict::Drop,
            CtState::New => {}
        }
        if packet.oif.is_none() {
            return Verdict::Drop; // a VM opening a connection to the host itself
        }
        let from_zone = match from_vm {
            Some(iface) => self.zone(&iface.zone),
            None if self.fabric_ifaces.contains(&packet.iif) => self.zone_of_address(src),
            None => None,
        };
        let (Some(from_zone), Some(to_zone)) = (from_zone, self.zone_of_address(dst)) else {
            return Verdict::Drop;
        };
        if from_zone.name == to_zone.name {
            return if from_zone.deny_intra_zone { Verdict::Drop } else { Verdict::Accept };
        }
        if from_zone.isolated || to_zone.isolated {
            return Verdict::Drop;
        }
        let allowed = self
            .policies
            .iter()
            .any(|p| p.from_zone == from_zone.name && p.to_zone == to_zone.name && policy_matches(p, packet.proto));
        if allowed {
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }
}

fn check_interface(model: &FirewallModel, iface: &Interface) -> Result<(), ModelError> {
    if !valid_ifname(&iface.ifname) {
        return Err(ModelError::BadIfname(iface.ifname.clone()));
    }
    let unknown = || ModelError::UnknownInterfaceZone { ifname: iface.ifname.clone(), zone: iface.zone.clone() };
    let zone = model.zone(&iface.zone).ok_or_else(unknown)?;
    if !zone.cidr.contains(iface.ip) {
        return Err(ModelError::AddressOutsideZone {
            ifname: iface.ifname.clone(),
            ip: iface.ip,
            zone: zone.name.clone(),
            cidr: zone.cidr,
        });
    }
    Ok(())
}

fn policy_matches(policy: &Policy, proto: L4) -> bool {
    let port_ok = |port: u16| policy.ports.is_empty() || policy.ports.iter().any(|r| (r.lo..=r.hi).contains(&port));
    match (policy.protocol, proto) {
        (Protocol::Any, _) => true,
        (Protocol::Icmp, L4::Icmp) => true,
        (Protocol::Tcp, L4::Tcp(port)) | (Protocol::Udp, L4::Udp(port)) => port_ok(port),
        _ => false,
    }
}

/// The transport of a packet, with its destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp(u16),
    Udp(u16),
    Icmp,
    /// Another IP protocol (its number), e.g. 47 (GRE).
    Other(u8),
}

/// Conntrack's view of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

/// A packet as the host's netfilter sees it in the forward hook (`oif` set) or the input hook
/// (`oif` none: addressed to the host itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub iif: String,
    pub oif: Option<String>,
    /// `None` for an IPv6 packet (only its interfaces matter then).
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub proto: L4,
    pub ct_state: CtState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}
