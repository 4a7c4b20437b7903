//! Address management for VM NICs: the lowest free IPv4 address of a zone, and a deterministic,
//! unique, locally administered MAC address.
//!
//! It exists so that every member hands out the same addresses for the same log. It must never use
//! randomness or iteration order of a hash map: addresses follow from the log alone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use hci_shared::names::parse_cidr;
use hci_shared::resources::Zone;
use hci_shared::ApiError;

use crate::model::Model;

/// The QEMU/KVM locally administered OUI every generated MAC starts with.
const MAC_PREFIX: &str = "52:54:00";
/// How many MACs fit behind the prefix (24 bits).
const MAC_SPACE: u32 = 1 << 24;

/// 64-bit FNV-1a: a tiny, stable hash (unlike `std`'s, which may change between releases).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

fn format_mac(suffix: u32) -> String {
    let [_, a, b, c] = suffix.to_be_bytes();
    format!("{MAC_PREFIX}:{a:02x}:{b:02x}:{c:02x}")
}

/// Hands out addresses for one command, remembering what it already gave so two NICs of the same
/// VM never get the same address.
#[derive(Debug)]
pub(crate) struct Allocator<'m> {
    model: &'m Model,
    given_addresses: BTreeSet<(String, u32)>,
    given_macs: BTreeSet<String>,
}

impl<'m> Allocator<'m> {
    pub fn new(model: &'m Model) -> Self {
        Self { model, given_addresses: BTreeSet::new(), given_macs: BTreeSet::new() }
    }

    /// The lowest assignable address of `zone` that no NIC holds, or 409 no_capacity.
    pub fn address(&mut self, zone: &Zone) -> Result<Ipv4Addr, ApiError> {
        let cidr = parse_cidr(&zone.cidr)
            .map_err(|why| ApiError::internal(format!("zone '{}' holds a bad cidr: {why}", zone.name)))?;
        let mut held = self
            .model
            .index
            .addresses
            .range((zone.name.clone(), cidr.first())..)
            .take_while(|((z, _), _)| *z == zone.name)
            .map(|((_, ip), _)| *ip)
            .peekable();
        for candidate in cidr.assignable() {
            let n = u32::from(candidate);
            while held.next_if(|&ip| ip < n).is_some() {}
            let in_model = held.peek() == Some(&n);
            if !in_model && !self.given_addresses.contains(&(zone.name.clone(), n)) {
                self.given_addresses.insert((zone.name.clone(), n));
                return Ok(candidate);
            }
        }
        Err(ApiError::no_capacity(format!("zone {} has no free addresses ({cidr})", zone.name)))
    }

    /// A MAC derived from FNV-1a of `<vm id>/<nic index>`, bumped until no NIC holds it.
    pub fn mac(&mut self, vm_id: &str, nic: usize) -> Result<String, ApiError> {
        let seed = (fnv1a64(format!("{vm_id}/{nic}").as_bytes()) & u64::from(MAC_SPACE - 1)) as u32;
        for bump in 0..MAC_SPACE {
            let mac = format_mac(seed.wrapping_add(bump) & (MAC_SPACE - 1));
            if !self.model.index.macs.contains_key(&mac) && !self.given_macs.contains(&mac) {
                self.given_macs.insert(mac.clone());
                return Ok(mac);
            }
        }
        Err(ApiError::no_capacity("no free MAC address is left"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn macs_are_locally_administered_and_distinct_within_one_command() {
        let model = Model::new();
        let mut allocator = Allocator::new(&model);
        let first = allocator.mac("vm-1", 0).expect("free");
        assert!(first.starts_with("52:54:00:"));
        assert_eq!(first.len(), 17);
        // The same seed asked twice is bumped to the next free value.
        let again = allocator.mac("vm-1", 0).expect("free");
        assert_ne!(first, again);
    }
}
