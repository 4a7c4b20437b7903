//! Parsers for the small string languages of the API: resource names, port lists, IPv4 CIDRs.
//!
//! Pure functions shared by validation (API side) and the state machine (IPAM, overlap checks), so
//! the two can never disagree about what a CIDR or a port list means.

use std::net::Ipv4Addr;

/// A Linux network interface name (a VLAN trunk): 1-15 bytes, no `/`, `:` or whitespace.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let bad = name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if name.is_empty() || name.len() > 15 || bad || name == "." || name == ".." {
        return Err(format!("'{name}' is not an interface name (1-15 characters, no '/', ':' or spaces)"));
    }
    Ok(())
}

/// Resource names are DNS labels: 1–63 of `a-z 0-9 -`, starting and ending alphanumeric.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("is {} characters long; at most 63", name.len()));
    }
    let ok = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(format!("'{name}' may contain only lowercase letters, digits and '-'"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("'{name}' must start and end with a letter or digit"));
    }
    Ok(())
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

/// Parses `22,80,8000-8100` into sorted, merged ranges. Ports are 1–65535.
pub fn parse_ports(spec: &str) -> Result<Vec<PortRange>, String> {
    let mut ranges = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("'{spec}' has an empty element"));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (parse_port(a.trim())?, parse_port(b.trim())?),
            None => {
                let p = parse_port(part)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is reversed"));
        }
        ranges.push(PortRange { lo, hi });
    }
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => last.hi = last.hi.max(r.hi),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

fn parse_port(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a port number"))?;
    if !(1..=65535).contains(&n) {
        return Err(format!("port {n} is outside 1-65535"));
    }
    Ok(n as u16)
}

/// Renders ranges back to the canonical `22,80,8000-8100` form.
pub fn format_ports(ranges: &[PortRange]) -> String {
    ranges
        .iter()
        .map(|r| if r.lo == r.hi { r.lo.to_string() } else { format!("{}-{}", r.lo, r.hi) })
        .collect::<Vec<_>>()
        .join(",")
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    pub fn first(self) -> u32 {
        u32::from(self.network)
    }
    pub fn last(self) -> u32 {
        self.first() | !self.mask()
    }
    pub fn overlaps(self, other: Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
    /// Whether `ip` is in the network (network and broadcast addresses included).
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }
    /// Addresses VMs may get: skips the network, the gateway (first host) and broadcast addresses.
    pub fn assignable(self) -> impl Iterator<Item = Ipv4Addr> {
        (self.first() + 2..self.last()).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses `10.10.0.0/24`. Prefix 8–29 (room for a gateway and at least one VM); the address must be
/// the network address (no host bits set).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("'{s}' is not in a.b.c.d/prefix form"))?;
    let network: Ipv4Addr = addr.parse().map_err(|_| format!("'{addr}' is not an IPv4 address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| format!("'{prefix}' is not a prefix length"))?;
    if !(8..=29).contains(&prefix) {
        return Err(format!("prefix /{prefix} is outside /8-/29"));
    }
    let cidr = Cidr { network, prefix };
    if u32::from(network) & !cidr.mask() != 0 {
        let base = Ipv4Addr::from(u32::from(network) & cidr.mask());
        return Err(format!("'{s}' has host bits set; did you mean {base}/{prefix}?"));
    }
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        assert!(check_name("finance-dept").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_parse_merge_and_refuse() {
        let r = parse_ports("8000-8100,22, 80,81").expect("valid");
        assert_eq!(format_ports(&r), "22,80-81,8000-8100");
        for bad in ["", "0", "65536", "10-5", "a", "1,,2", "-3"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c = parse_cidr("10.10.0.0/24").expect("valid");
        assert_eq!(c.assignable().next(), Some(Ipv4Addr::new(10, 10, 0, 2)));
        assert_eq!(c.assignable().count(), 253);
        assert!(c.overlaps(parse_cidr("10.10.0.0/16").expect("valid")));
        assert!(!c.overlaps(parse_cidr("10.11.0.0/24").expect("valid")));
        for bad in ["10.10.0.1/24", "10.10.0.0", "10.10.0.0/33", "10.10.0.0/30", "300.1.1.0/24"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formatted_ports_reparse_identically(ports in proptest::collection::vec((1u16..=65535, 0u16..50), 1..20)) {
            let spec = ports.iter().map(|(p, w)| format!("{}-{}", p, p.saturating_add(*w))).collect::<Vec<_>>().join(",");
            let parsed = parse_ports(&spec).expect("valid");
            let again = parse_ports(&format_ports(&parsed)).expect("valid");
            prop_assert_eq!(parsed, again);
        }
    }
}
