//! The agent's DHCPv4 server (issue #5: "DHCP for the zone's addresses"). It exists because VM NICs
//! are routed (docs/networks.md): each tap is unnumbered, so a stock dnsmasq has no address in the
//! zone to serve from. Instead the agent answers on each tap itself, with **static leases only**:
//! the tap identifies the NIC, and the NIC's MAC gets its IPAM address, the zone's prefix, gateway
//! (also the server identifier) and MTU. Unknown MACs get no answer; nothing outside the desired
//! state is ever handed out.
//!
//! - [`packet`]: pure parse / decide / encode;
//! - [`DhcpService`]: the narrow seam the network step drives each pass (the set of taps and their
//!   leases), with [`udp::UdpDhcp`] (a UDP socket per tap, `SO_BINDTODEVICE`, port 67) and
//!   [`fake::FakeDhcp`];
//! - [`leases`]: what the desired state implies, per tap.

pub mod fake;
pub mod packet;
pub mod udp;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hci_shared::agent::HostDesired;
use hci_shared::names::parse_cidr;

pub use packet::Lease;

use crate::reconciler::tap_name;

/// Answers DHCP on a set of taps. Calls block briefly (socket set-up); callers run them off the
/// async runtime.
pub trait DhcpService: Send + Sync {
    /// Serves exactly `leases` (tap → its NIC's lease) from now on: starts on taps not served yet,
    /// stops on taps no longer listed, and takes the new leases of the others. Returns the taps it
    /// could not serve, with why (the others are served).
    fn serve(&self, leases: &BTreeMap<String, Lease>) -> BTreeMap<String, String>;
}

/// A NIC's lease and its VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicLease {
    pub vm_id: String,
    pub lease: Lease,
}

/// The leases `desired` implies (tap → lease), and per-VM errors for NICs that cannot have one (a
/// bad MAC or address, a zone the host does not know). Empty without a network.
pub fn leases(desired: &HostDesired) -> (BTreeMap<String, NicLease>, BTreeMap<String, String>) {
    let mut out = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let Some(network) = &desired.network else { return (out, errors) };
    for vm in &desired.vms {
        for (index, nic) in vm.nics.iter().enumerate() {
            let lease = (|| {
                let zone = network.zones.iter().find(|z| z.name == nic.zone).ok_or("zone not in the network")?;
                let cidr = parse_cidr(&zone.cidr).map_err(|_| "bad zone cidr")?;
                let gateway: Ipv4Addr = zone.gateway.parse().map_err(|_| "bad zone gateway")?;
                let ip: Ipv4Addr = nic.ip.parse().map_err(|_| "bad address")?;
                let mac = packet::parse_mac(&nic.mac).ok_or("bad MAC")?;
                let prefix = cidr.prefix;
                if !cidr.contains(ip) {
                    return Err("address outside the zone");
                }
                Ok(Lease { mac, ip, prefix, gateway, lease_secs: packet::LEASE_SECS, mtu: Some(zone.effective_mtu()) })
            })();
            match lease {
                Ok(lease) => {
                    out.insert(tap_name(&vm.id, index), NicLease { vm_id: vm.id.clone(), lease });
                }
                Err(why) => {
                    errors.entry(vm.id.clone()).or_insert_with(|| {
                        format!("dhcp: NIC {index} ({} {} in zone {}): {why}", nic.mac, nic.ip, nic.zone)
                    });
                }
            }
        }
    }
    (out, errors)
}
