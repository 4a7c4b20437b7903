//! Static validation of API requests: everything that can be judged from the request alone.
//!
//! Checks that need the replicated state (does the tenant exist, is the CIDR free, is there quota)
//! happen in the state machine at commit time, so that two racing requests cannot both pass. Every
//! refusal here is a 400 whose message starts with the offending field.

use crate::api::*;
use crate::error::ApiError;
use crate::names::{check_name, parse_cidr, parse_ports};
use crate::resources::{Protocol, Quota};

pub const ARCHES: &[&str] = &["x86_64", "ppc64le", "aarch64"];
/// Known firmware profiles and the architecture each runs on.
pub const FIRMWARE_PROFILES: &[(&str, &str)] = &[
    ("x86_64-bios", "x86_64"),
    ("x86_64-uefi", "x86_64"),
    ("x86_64-uefi-secureboot", "x86_64"),
    ("ppc64le-pseries", "ppc64le"),
    ("aarch64-uefi", "aarch64"),
];
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_VCPUS: u32 = 512;
pub const MIN_MEMORY_MIB: u64 = 64;
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
pub const MAX_VOLUME_GIB: u64 = 64 * 1024;
pub const MAX_VOLUMES_PER_VM: usize = 16;
pub const MAX_NICS_PER_VM: usize = 8;
pub const MAX_QUOTA_VCPUS: u32 = 1_000_000;
pub const MAX_QUOTA_MEMORY_MIB: u64 = 1 << 40;
pub const MAX_QUOTA_DISK_GIB: u64 = 1 << 40;

fn name_field(field: &str, value: &str) -> Result<(), ApiError> {
    check_name(value).map_err(|why| ApiError::invalid(field, why))
}

fn description(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(field, format!("longer than {MAX_DESCRIPTION} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(field, "contains control characters"));
    }
    Ok(())
}

fn quota(q: &Quota) -> Result<(), ApiError> {
    if q.vcpus > MAX_QUOTA_VCPUS {
        return Err(ApiError::invalid("quota.vcpus", format!("at most {MAX_QUOTA_VCPUS}")));
    }
    if q.memory_mib > MAX_QUOTA_MEMORY_MIB {
        return Err(ApiError::invalid("quota.memory_mib", format!("at most {MAX_QUOTA_MEMORY_MIB}")));
    }
    if q.disk_gib > MAX_QUOTA_DISK_GIB {
        return Err(ApiError::invalid("quota.disk_gib", format!("at most {MAX_QUOTA_DISK_GIB}")));
    }
    Ok(())
}

pub fn tenant_create(r: &TenantCreate) -> Result<(), ApiError> {
    name_field("name", &r.name)?;
    description("description", &r.description)?;
    quota(&r.quota)
}

pub fn tenant_update(r: &TenantUpdate) -> Result<(), ApiError> {
    if let Some(d) = &r.description {
        description("description", d)?;
    }
    if let Some(q) = &r.quota {
        quota(q)?;
    }
    Ok(())
}

/// A zone network's MTU: at least IPv4's minimum, at most a jumbo frame.
pub const MIN_MTU: u16 = 576;
pub const MAX_MTU: u16 = 9000;

/// The highest usable 802.1Q VLAN id (0 and 4095 are reserved).
pub const MAX_VLAN: u16 = 4094;
/// The highest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 16_777_215;

/// `value` of `field` lies in `lo..=hi`: a zone's VNI, VLAN and MTU, on the API and in the feed.
pub fn in_range<T: PartialOrd + std::fmt::Display>(field: &str, value: T, lo: T, hi: T) -> Result<(), ApiError> {
    if value < lo || value > hi {
        return Err(ApiError::invalid(field, format!("{value} is outside {lo}-{hi}")));
    }
    Ok(())
}

pub fn zone_create(r: &ZoneCreate) -> Result<(), ApiError> {
    name_field("name", &r.name)?;
    name_field("tenant", &r.tenant)?;
    parse_cidr(&r.cidr).map_err(|why| ApiError::invalid("cidr", why))?;
    if let Some(vni) = r.vni {
        in_range("vni", vni, 1, MAX_VNI)?;
    }
    if let Some(vlan) = r.vlan {
        in_range("vlan", vlan, 1, MAX_VLAN)?;
        if r.vni.is_some() {
            return Err(ApiError::invalid("vlan", "a zone is carried by a VLAN or by a VXLAN (vni), not both"));
        }
    }
    if let Some(mtu) = r.mtu {
        in_range("mtu", mtu, MIN_MTU, MAX_MTU)?;
    }
    Ok(())
}

/// Returns the canonical port list.
pub fn zone_policy_create(r: &ZonePolicyCreate) -> Result<String, ApiError> {
    if let Some(name) = &r.name {
        name_field("name", name)?;
    }
    name_field("from_zone", &r.from_zone)?;
    name_field("to_zone", &r.to_zone)?;
    match r.protocol {
        Protocol::Tcp | Protocol::Udp => {
            let ranges = parse_ports(&r.ports).map_err(|why| ApiError::invalid("ports", why))?;
            Ok(crate::names::format_ports(&ranges))
        }
        Protocol::Icmp | Protocol::Any => {
            if r.ports.trim().is_empty() {
                Ok(String::new())
            } else {
                Err(ApiError::invalid("ports", "must be empty for protocol icmp or any"))
            }
        }
    }
}

fn size_gib(field: &str, size: u64) -> Result<(), ApiError> {
    if !(1..=MAX_VOLUME_GIB).contains(&size) {
        return Err(ApiError::invalid(field, format!("{size} is outside 1-{MAX_VOLUME_GIB}")));
    }
    Ok(())
}

pub fn volume_create(r: &VolumeCreate) -> Result<(), ApiError> {
    name_field("name", &r.name)?;
    name_field("tenant", &r.tenant)?;
    size_gib("size_gib", r.size_gib)?;
    name_field("pool", &r.pool)?;
    if let Some(image) = &r.image {
        name_field("image", image)?;
    }
    if let Some(source) = &r.source {
        if r.image.is_some() {
            return Err(ApiError::invalid("source", "give either image or source, not both"));
        }
        image_source(source)?;
    }
    Ok(())
}

/// Longest image URL accepted.
const MAX_URL_LEN: usize = 2048;

/// An image URL (`file:///...`, `http://...`, `https://...`) and a lowercase hex SHA-256.
pub fn image_source(s: &crate::resources::ImageSource) -> Result<(), ApiError> {
    let schemes = ["file:///", "http://", "https://"];
    if s.url.len() > MAX_URL_LEN || !schemes.iter().any(|scheme| s.url.starts_with(scheme)) {
        return Err(ApiError::invalid(
            "source.url",
            format!("must start with file:///, http:// or https:// and be at most {MAX_URL_LEN} characters"),
        ));
    }
    if s.url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::invalid("source.url", "may not contain whitespace or control characters"));
    }
    if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::invalid("source.sha256", "must be 64 lowercase hex digits"));
    }
    Ok(())
}

pub fn volume_resize(r: &VolumeResize) -> Result<(), ApiError> {
    size_gib("size_gib", r.size_gib)
}

pub fn volume_snapshot(r: &VolumeSnapshotCreate) -> Result<(), ApiError> {
    name_field("name", &r.name)
}

pub fn volume_clone(r: &VolumeClone) -> Result<(), ApiError> {
    name_field("name", &r.name)
}

/// The firmware profile a VM gets when it names none.
pub fn default_firmware(arch: &str) -> &'static str {
    match arch {
        "ppc64le" => "ppc64le-pseries",
        "aarch64" => "aarch64-uefi",
        _ => "x86_64-bios",
    }
}

pub fn vm_create(r: &VmCreate) -> Result<(), ApiError> {
    name_field("name", &r.name)?;
    name_field("tenant", &r.tenant)?;
    if !(1..=MAX_VCPUS).contains(&r.vcpus) {
        return Err(ApiError::invalid("vcpus", format!("{} is outside 1-{MAX_VCPUS}", r.vcpus)));
    }
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&r.memory_mib) {
        return Err(ApiError::invalid(
            "memory_mib",
            format!("{} is outside {MIN_MEMORY_MIB}-{MAX_MEMORY_MIB}", r.memory_mib),
        ));
    }
    if !ARCHES.contains(&r.arch.as_str()) {
        return Err(ApiError::invalid("arch", format!("'{}' is not one of {}", r.arch, ARCHES.join(", "))));
    }
    if let Some(fw) = &r.firmware {
        match FIRMWARE_PROFILES.iter().find(|(name, _)| name == fw) {
            None => {
                let known: Vec<_> = FIRMWARE_PROFILES.iter().map(|(n, _)| *n).collect();
                return Err(ApiError::invalid("firmware", format!("'{fw}' is not one of {}", known.join(", "))));
            }
            Some((_, arch)) if *arch != r.arch => {
                return Err(ApiError::invalid("firmware", format!("'{fw}' runs on {arch}, not on {}", r.arch)));
            }
            Some(_) => {}
        }
    }
    if r.volumes.len() > MAX_VOLUMES_PER_VM {
        return Err(ApiError::invalid("volumes", format!("at most {MAX_VOLUMES_PER_VM} volumes")));
    }
    for (i, v) in r.volumes.iter().enumerate() {
        if v.is_empty() || v.len() > 64 {
            return Err(ApiError::invalid(&format!("volumes[{i}]"), "is not a volume id"));
        }
        if r.volumes[..i].contains(v) {
            return Err(ApiError::invalid(&format!("volumes[{i}]"), format!("'{v}' is listed twice")));
        }
    }
    if r.nics.len() > MAX_NICS_PER_VM {
        return Err(ApiError::invalid("nics", format!("at most {MAX_NICS_PER_VM} nics")));
    }
    for (i, nic) in r.nics.iter().enumerate() {
        name_field(&format!("nics[{i}].zone"), &nic.zone)?;
    }
    if let Some(group) = &r.anti_affinity_group {
        name_field("anti_affinity_group", group)?;
    }
    Ok(())
}

pub fn member_add(r: &MemberAdd) -> Result<(), ApiError> {
    if r.id == 0 {
        return Err(ApiError::invalid("id", "must be a positive integer"));
    }
    r.addr
        .parse::<std::net::SocketAddr>()
        .map_err(|_| ApiError::invalid("addr", format!("'{}' is not HOST:PORT with an IP address", r.addr)))?;
    Ok(())
}
