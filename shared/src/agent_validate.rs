//! Validation of a host's desired state, run by the agent before it accepts one (and by the
//! controller before it sends one). Ids end up in file and domain names, so they must be plain
//! names: a refusal here is a 400 naming the field, and nothing is written.

use std::collections::BTreeSet;

use crate::agent::{HostDesired, HostNetwork, Rollback, VmDesired, VmMigration, VolumeSource};
use crate::error::ApiError;
use crate::names::{check_name, parse_cidr, parse_ports};
use crate::resources::PowerState;
use crate::validate::{ARCHES, FIRMWARE_PROFILES, MAX_MEMORY_MIB, MAX_VCPUS, MAX_VOLUME_GIB, MIN_MEMORY_MIB};

const MAX_OEM_STRINGS: usize = 32;
const MAX_OEM_STRING_LEN: usize = 256;

fn name(field: &str, value: &str) -> Result<(), ApiError> {
    check_name(value).map_err(|why| ApiError::invalid(field, why))
}

fn mac(field: &str, value: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    let unicast = u8::from_str_radix(parts.first().copied().unwrap_or("01"), 16).is_ok_and(|b| b & 1 == 0);
    if ok && unicast {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("'{value}' is not a unicast MAC address (aa:bb:cc:dd:ee:ff)")))
    }
}

pub fn host_desired(d: &HostDesired) -> Result<(), ApiError> {
    name("host_id", &d.host_id)?;
    let mut volume_ids = BTreeSet::new();
    for (i, v) in d.volumes.iter().enumerate() {
        let f = |s: &str| format!("volumes[{i}].{s}");
        name(&f("id"), &v.id)?;
        if !volume_ids.insert(v.id.as_str()) {
            return Err(ApiError::invalid(&f("id"), format!("'{}' appears twice", v.id)));
        }
        name(&f("pool"), &v.pool)?;
        if !(1..=MAX_VOLUME_GIB).contains(&v.size_gib) {
            return Err(ApiError::invalid(&f("size_gib"), format!("{} is outside 1-{MAX_VOLUME_GIB}", v.size_gib)));
        }
        match &v.source {
            VolumeSource::Empty => {}
            VolumeSource::Image(image) => {
                name(&f("source.image.name"), &image.name)?;
                let sha_ok =
                    image.sha256.len() == 64 && image.sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
                if !sha_ok {
                    return Err(ApiError::invalid(&f("source.image.sha256"), "is not 64 lowercase hex digits"));
                }
                let scheme_ok = ["file:///", "http://", "https://"].iter().any(|s| image.source.starts_with(s));
                if !scheme_ok || image.source.chars().any(char::is_control) {
                    return Err(ApiError::invalid(
                        &f("source.image.source"),
                        "is not a file:///, http:// or https:// URL",
                    ));
                }
            }
            VolumeSource::Clone { from, snapshot } => {
                name(&f("source.clone.from"), from)?;
                if from == &v.id {
                    return Err(ApiError::invalid(&f("source.clone.from"), "a volume cannot be cloned from itself"));
                }
                if let Some(snapshot) = snapshot {
                    name(&f("source.clone.snapshot"), snapshot)?;
                }
            }
        }
        snapshots(&f("snapshots"), &v.snapshots, v.rollback.as_ref(), &f("rollback.to"), false)?;
    }
    let mut vm_ids = BTreeSet::new();
    let mut used_volumes = BTreeSet::new();
    for (i, vm) in d.vms.iter().enumerate() {
        let f = |s: &str| format!("vms[{i}].{s}");
        name(&f("id"), &vm.id)?;
        if !vm_ids.insert(vm.id.as_str()) {
            return Err(ApiError::invalid(&f("id"), format!("'{}' appears twice", vm.id)));
        }
        name(&f("name"), &vm.name)?;
        if !(1..=MAX_VCPUS).contains(&vm.vcpus) {
            return Err(ApiError::invalid(&f("vcpus"), format!("{} is outside 1-{MAX_VCPUS}", vm.vcpus)));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&vm.memory_mib) {
            return Err(ApiError::invalid(
                &f("memory_mib"),
                format!("{} is outside {MIN_MEMORY_MIB}-{MAX_MEMORY_MIB}", vm.memory_mib),
            ));
        }
        if !ARCHES.contains(&vm.arch.as_str()) {
            return Err(ApiError::invalid(&f("arch"), format!("'{}' is not one of {}", vm.arch, ARCHES.join(", "))));
        }
        match FIRMWARE_PROFILES.iter().find(|(n, _)| *n == vm.firmware) {
            None => return Err(ApiError::invalid(&f("firmware"), format!("'{}' is not a known profile", vm.firmware))),
            Some((_, arch)) if *arch != vm.arch => {
                return Err(ApiError::invalid(
                    &f("firmware"),
                    format!("'{}' runs on {arch}, not {}", vm.firmware, vm.arch),
                ))
            }
            Some(_) => {}
        }
        if vm.disks.len() > 26 {
            return Err(ApiError::invalid(&f("disks"), "at most 26 disks"));
        }
        for (j, disk) in vm.disks.iter().enumerate() {
            if !volume_ids.contains(disk.as_str()) {
                return Err(ApiError::invalid(
                    &format!("vms[{i}].disks[{j}]"),
                    format!("volume '{disk}' is not in volumes"),
                ));
            }
            if !used_volumes.insert(disk.as_str()) {
                return Err(ApiError::invalid(
                    &format!("vms[{i}].disks[{j}]"),
                    format!("volume '{disk}' is used twice"),
                ));
            }
        }
        for (j, nic) in vm.nics.iter().enumerate() {
            mac(&format!("vms[{i}].nics[{j}].mac"), &nic.mac)?;
            name(&format!("vms[{i}].nics[{j}].zone"), &nic.zone)?;
        }
        if vm.oem_strings.len() > MAX_OEM_STRINGS {
            return Err(ApiError::invalid(&f("oem_strings"), format!("at most {MAX_OEM_STRINGS}")));
        }
        for (j, s) in vm.oem_strings.iter().enumerate() {
            if s.len() > MAX_OEM_STRING_LEN || s.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    &format!("vms[{i}].oem_strings[{j}]"),
                    format!("at most {MAX_OEM_STRING_LEN} bytes, no control characters"),
                ));
            }
        }
        snapshots(&f("snapshots"), &vm.snapshots, vm.revert.as_ref(), &f("revert.to"), true)?;
        if let Some(migration) = &vm.migration {
            vm_migration(&f("migration"), &d.host_id, vm, migration)?;
        }
    }
    for (i, r) in d.retired_volumes.iter().enumerate() {
        name(&format!("retired_volumes[{i}].pool"), &r.pool)?;
        name(&format!("retired_volumes[{i}].id"), &r.id)?;
        if volume_ids.contains(r.id.as_str()) {
            return Err(ApiError::invalid(
                &format!("retired_volumes[{i}].id"),
                format!("'{}' is also in volumes: a volume is either wanted or retired", r.id),
            ));
        }
    }
    if let Some(network) = &d.network {
        host_network(network)?;
    }
    Ok(())
}

/// Zone names become nftables chain and set names, VNIs device names, addresses routes: each must
/// be what it claims (the agent builds nothing from a network it refused).
fn host_network(n: &HostNetwork) -> Result<(), ApiError> {
    let mut names = BTreeSet::new();
    let mut vnis = BTreeSet::new();
    let mut vlans = BTreeSet::new();
    for (i, z) in n.zones.iter().enumerate() {
        let f = |s: &str| format!("network.zones[{i}].{s}");
        name(&f("name"), &z.name)?;
        if !names.insert(z.name.as_str()) {
            return Err(ApiError::invalid(&f("name"), format!("'{}' appears twice", z.name)));
        }
        parse_cidr(&z.cidr).map_err(|why| ApiError::invalid(&f("cidr"), why))?;
        ipv4(&f("gateway"), &z.gateway)?;
        use crate::validate::{in_range, MAX_MTU, MAX_VLAN, MAX_VNI, MIN_MTU};
        let twice =
            |field: &str, value: &dyn std::fmt::Display| ApiError::invalid(&f(field), format!("{value} appears twice"));
        match (z.vni, z.vlan) {
            (Some(vni), None) => {
                in_range(&f("vni"), vni, 1, MAX_VNI)?;
                if !vnis.insert(vni) {
                    return Err(twice("vni", &vni));
                }
            }
            (None, Some(vlan)) => {
                in_range(&f("vlan"), vlan, 1, MAX_VLAN)?;
                if !vlans.insert(vlan) {
                    return Err(twice("vlan", &vlan));
                }
            }
            _ => return Err(ApiError::invalid(&f("vni"), "a zone needs exactly one of vni and vlan")),
        }
        if let Some(mtu) = z.mtu {
            in_range(&f("mtu"), mtu, MIN_MTU, MAX_MTU)?;
        }
    }
    for (i, p) in n.policies.iter().enumerate() {
        let f = |s: &str| format!("network.policies[{i}].{s}");
        name(&f("name"), &p.name)?;
        for (field, zone) in [("from_zone", &p.from_zone), ("to_zone", &p.to_zone)] {
            if !names.contains(zone.as_str()) {
                return Err(ApiError::invalid(&f(field), format!("zone '{zone}' is not in network.zones")));
            }
        }
        if !p.ports.is_empty() {
            parse_ports(&p.ports).map_err(|why| ApiError::invalid(&f("ports"), why))?;
        }
    }
    for (i, h) in n.fabric.iter().enumerate() {
        name(&format!("network.fabric[{i}].host_id"), &h.host_id)?;
        ipv4(&format!("network.fabric[{i}].underlay_ip"), &h.underlay_ip)?;
    }
    Ok(())
}

fn ipv4(field: &str, value: &str) -> Result<(), ApiError> {
    value
        .parse::<std::net::Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| ApiError::invalid(field, format!("'{value}' is not an IPv4 address")))
}

const MAX_SNAPSHOTS: usize = 64;

/// A snapshot list (plain, distinct names) and the one-shot return to one of them; a VM's revert
/// must go to the last one (`to_last`), since reverting drops the later ones.
fn snapshots(
    field: &str,
    list: &[String],
    back: Option<&Rollback>,
    back_field: &str,
    to_last: bool,
) -> Result<(), ApiError> {
    if list.len() > MAX_SNAPSHOTS {
        return Err(ApiError::invalid(field, format!("at most {MAX_SNAPSHOTS}")));
    }
    let mut seen = BTreeSet::new();
    for (j, snapshot) in list.iter().enumerate() {
        name(&format!("{field}[{j}]"), snapshot)?;
        if !seen.insert(snapshot.as_str()) {
            return Err(ApiError::invalid(&format!("{field}[{j}]"), format!("'{snapshot}' appears twice")));
        }
    }
    if let Some(back) = back {
        let ok = if to_last { list.last() == Some(&back.to) } else { seen.contains(back.to.as_str()) };
        if !ok {
            let want = if to_last { "the last of" } else { "one of" };
            return Err(ApiError::invalid(back_field, format!("'{}' is not {want} the snapshots", back.to)));
        }
    }
    Ok(())
}

fn vm_migration(field: &str, host_id: &str, vm: &VmDesired, migration: &VmMigration) -> Result<(), ApiError> {
    match migration {
        VmMigration::Outgoing { to_host, to_agent } => {
            name(&format!("{field}.outgoing.to_host"), to_host)?;
            if to_host == host_id {
                return Err(ApiError::invalid(&format!("{field}.outgoing.to_host"), "is this host"));
            }
            let scheme_ok = ["http://", "https://"].iter().any(|s| to_agent.starts_with(s));
            if !scheme_ok || to_agent.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ApiError::invalid(
                    &format!("{field}.outgoing.to_agent"),
                    "is not an http:// or https:// URL",
                ));
            }
            if vm.power != PowerState::Running {
                return Err(ApiError::invalid(
                    &format!("{field}.outgoing"),
                    "live migration needs power 'running'; a stopped VM moves by cold migration",
                ));
            }
        }
        VmMigration::Incoming { from_host } => {
            name(&format!("{field}.incoming.from_host"), from_host)?;
            if from_host == host_id {
                return Err(ApiError::invalid(&format!("{field}.incoming.from_host"), "is this host"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{FabricHost, ImageFormat, ImageRef, NetworkPolicy, NetworkZone, NicDesired, VolumeDesired};

    fn good() -> HostDesired {
        HostDesired {
            host_id: "h1".into(),
            generation: 1,
            volumes: vec![VolumeDesired {
                id: "vol-1".into(),
                pool: "default".into(),
                size_gib: 1,
                source: VolumeSource::Image(ImageRef {
                    name: "debian".into(),
                    source: "file:///srv/images/debian.qcow2".into(),
                    format: ImageFormat::Qcow2,
                    sha256: "a".repeat(64),
                }),
                snapshots: vec![],
                rollback: None,
            }],
            vms: vec![VmDesired {
                id: "vm-1".into(),
                name: "web".into(),
                vcpus: 1,
                memory_mib: 512,
                arch: "x86_64".into(),
                firmware: "x86_64-bios".into(),
                disks: vec!["vol-1".into()],
                nics: vec![NicDesired { mac: "52:54:00:12:34:56".into(), zone: "dmz".into(), ip: "10.0.0.2".into() }],
                power: PowerState::Running,
                reboot_count: 0,
                oem_strings: vec!["hci.marker=x".into()],
                migration: None,
                snapshots: vec![],
                revert: None,
            }],
            retired_volumes: vec![],
            isolation: None,
            network: Some(HostNetwork {
                zones: vec![NetworkZone::new("dmz", parse_cidr("10.0.0.0/24").expect("cidr"), 10_000, false, false)],
                policies: vec![NetworkPolicy {
                    name: "in".into(),
                    from_zone: "dmz".into(),
                    to_zone: "dmz".into(),
                    protocol: crate::resources::Protocol::Tcp,
                    ports: "22,80".into(),
                }],
                fabric: vec![FabricHost { host_id: "h1".into(), underlay_ip: "192.168.0.1".into() }],
            }),
        }
    }

    #[test]
    fn accepts_a_good_state() {
        assert_eq!(host_desired(&good()), Ok(()));
    }

    fn net(d: &mut HostDesired) -> &mut HostNetwork {
        d.network.as_mut().expect("network")
    }

    #[test]
    fn refuses_bad_fields_by_name() {
        type Mutation = Box<dyn Fn(&mut HostDesired)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|d| d.vms[0].id = "../../etc".into()), "vms[0].id"),
            (Box::new(|d| d.volumes[0].id = "a/b".into()), "volumes[0].id"),
            (Box::new(|d| d.vms[0].disks = vec!["nope".into()]), "vms[0].disks[0]"),
            (Box::new(|d| d.vms[0].firmware = "aarch64-uefi".into()), "vms[0].firmware"),
            (Box::new(|d| d.vms[0].vcpus = 0), "vms[0].vcpus"),
            (Box::new(|d| d.vms[0].nics[0].mac = "01:00:5e:00:00:01".into()), "vms[0].nics[0].mac"),
            (Box::new(|d| d.vms[0].oem_strings = vec!["a\nb".into()]), "vms[0].oem_strings[0]"),
            (Box::new(|d| net(d).zones[0].name = "Zone!".into()), "network.zones[0].name"),
            (Box::new(|d| net(d).zones[0].cidr = "10.0.0.1/24".into()), "network.zones[0].cidr"),
            (Box::new(|d| net(d).zones[0].gateway = "x".into()), "network.zones[0].gateway"),
            (Box::new(|d| net(d).zones[0].vni = Some(0)), "network.zones[0].vni"),
            (Box::new(|d| net(d).zones[0].vni = None), "network.zones[0].vni"),
            (Box::new(|d| net(d).zones[0].mtu = Some(68)), "network.zones[0].mtu"),
            (Box::new(|d| net(d).zones[0].vlan = Some(7)), "network.zones[0].vni"),
            (Box::new(|d| net(d).zones[0] = net(d).zones[0].clone().on_vlan(4095)), "network.zones[0].vlan"),
            (Box::new(|d| net(d).policies[0].to_zone = "ghost".into()), "network.policies[0].to_zone"),
            (Box::new(|d| net(d).policies[0].ports = "70000".into()), "network.policies[0].ports"),
            (Box::new(|d| net(d).fabric[0].underlay_ip = "::1".into()), "network.fabric[0].underlay_ip"),
            (Box::new(|d| d.volumes[0].size_gib = 0), "volumes[0].size_gib"),
            (
                Box::new(|d| {
                    if let VolumeSource::Image(i) = &mut d.volumes[0].source {
                        i.sha256 = "XYZ".into()
                    }
                }),
                "volumes[0].source.image.sha256",
            ),
            (Box::new(|d| d.host_id = "H 1".into()), "host_id"),
            (Box::new(|d| d.volumes[0].snapshots = vec!["a".into(), "a".into()]), "volumes[0].snapshots[1]"),
            (
                Box::new(|d| d.volumes[0].rollback = Some(Rollback { to: "nope".into(), serial: 1 })),
                "volumes[0].rollback.to",
            ),
            (
                Box::new(|d| {
                    d.vms[0].snapshots = vec!["s1".into(), "s2".into()];
                    d.vms[0].revert = Some(Rollback { to: "s1".into(), serial: 1 });
                }),
                "vms[0].revert.to",
            ),
            (Box::new(|d| d.vms[0].snapshots = vec!["../x".into()]), "vms[0].snapshots[0]"),
            (
                Box::new(|d| {
                    d.vms[0].migration =
                        Some(VmMigration::Outgoing { to_host: "h1".into(), to_agent: "http://x:1".into() })
                }),
                "vms[0].migration.outgoing.to_host",
            ),
            (
                Box::new(|d| {
                    d.vms[0].migration =
                        Some(VmMigration::Outgoing { to_host: "h2".into(), to_agent: "ftp://x".into() })
                }),
                "vms[0].migration.outgoing.to_agent",
            ),
            (
                Box::new(|d| {
                    d.vms[0].power = PowerState::Stopped;
                    d.vms[0].migration =
                        Some(VmMigration::Outgoing { to_host: "h2".into(), to_agent: "http://x:1".into() })
                }),
                "vms[0].migration.outgoing",
            ),
            (
                Box::new(|d| d.vms[0].migration = Some(VmMigration::Incoming { from_host: "../x".into() })),
                "vms[0].migration.incoming.from_host",
            ),
            (
                Box::new(|d| {
                    d.retired_volumes = vec![crate::agent::RetiredVolume { pool: "p".into(), id: "vol-1".into() }]
                }),
                "retired_volumes[0].id",
            ),
        ];
        for (mutate, field) in cases {
            let mut d = good();
            mutate(&mut d);
            let err = host_desired(&d).expect_err(field);
            assert_eq!(err.field.as_deref(), Some(field), "{err:?}");
        }
    }
}
