//! Unit tests of the domain XML renderer: every built-in profile renders what it demands, strings are
//! escaped, the metadata element reads back, and the digest ignores only the generation.

use std::path::PathBuf;

use hci_firmware_profiles::Profiles;

use super::*;
use crate::hypervisor::{DiskSource, DiskSpec, DomainSpec, NicSpec};

fn spec(profile: &str) -> DomainSpec {
    let profiles = Profiles::builtin().expect("built-in profiles");
    DomainSpec {
        name: "hci-h1-vm1".into(),
        vm_id: "vm1".into(),
        host_id: "h1".into(),
        generation: 7,
        vcpus: 2,
        memory_mib: 512,
        domain_type: "qemu".into(),
        profile: profiles.get(profile).expect("profile exists").clone(),
        nvram_path: Some(PathBuf::from("/var/lib/hci/vms/vm1/VARS.fd")),
        tpm_state_dir: Some(PathBuf::from("/var/lib/hci/vms/vm1/tpm")),
        disks: vec![
            DiskSpec {
                volume_id: "vol-boot".into(),
                source: DiskSource::File { path: "/pool/vol-boot.qcow2".into(), format: "qcow2".into() },
                target: "vda".into(),
            },
            DiskSpec {
                volume_id: "vol-data".into(),
                source: DiskSource::Block { path: "/dev/vg0/vol-data".into() },
                target: "vdb".into(),
            },
        ],
        nics: vec![NicSpec { mac: "52:54:00:00:00:01".into(), tap: "hcit-vm1-0".into() }],
        console_log: PathBuf::from("/var/log/hci/vm1.console.log"),
        oem_strings: vec![],
    }
}

/// Parses the rendered XML (it must be well-formed) and hands it to `check`.
fn with_doc(xml: &str, check: impl FnOnce(roxmltree::Node)) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"));
    check(doc.root_element());
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, path: &str) -> Option<roxmltree::Node<'a, 'i>> {
    path.split('/').try_fold(node, |n, name| n.children().find(|c| c.has_tag_name(name)))
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, path: &str, attribute: &str) -> Option<&'a str> {
    child(node, path).and_then(|n| n.attribute(attribute))
}

#[test]
fn bios_profile_is_seabios_on_q35_with_acpi() {
    with_doc(&render(&spec("x86_64-bios")), |d| {
        assert_eq!(d.attribute("type"), Some("qemu"));
        assert_eq!(attr(d, "os/type", "arch"), Some("x86_64"));
        assert_eq!(attr(d, "os/type", "machine"), Some("q35"));
        assert!(child(d, "os/loader").is_none() && child(d, "os/nvram").is_none());
        assert!(child(d, "features/acpi").is_some() && child(d, "features/apic").is_some());
        assert!(child(d, "features/smm").is_none() && child(d, "devices/tpm").is_none());
        assert!(child(d, "cpu").is_none(), "no CPU model under TCG");
        assert_eq!(child(d, "memory").and_then(|n| n.text()), Some("512"));
        assert_eq!(attr(d, "memory", "unit"), Some("MiB"));
        assert_eq!(child(d, "vcpu").and_then(|n| n.text()), Some("2"));
        assert_eq!(child(d, "on_poweroff").and_then(|n| n.text()), Some("destroy"));
        assert_eq!(attr(d, "devices/memballoon", "model"), Some("virtio"));
        assert_eq!(attr(d, "devices/serial/log", "file"), Some("/var/log/hci/vm1.console.log"));
        assert_eq!(attr(d, "devices/serial/log", "append"), Some("on"));
    });
}

#[test]
fn uefi_profile_has_loader_and_per_vm_nvram() {
    with_doc(&render(&spec("x86_64-uefi")), |d| {
        let loader = child(d, "os/loader").expect("loader");
        assert_eq!(loader.text(), Some("/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert_eq!(loader.attribute("readonly"), Some("yes"));
        assert_eq!(loader.attribute("secure"), Some("no"));
        assert_eq!(loader.attribute("type"), Some("pflash"));
        let nvram = child(d, "os/nvram").expect("nvram");
        assert_eq!(nvram.attribute("template"), Some("/usr/share/OVMF/OVMF_VARS_4M.fd"));
        assert_eq!(nvram.text(), Some("/var/lib/hci/vms/vm1/VARS.fd"));
        assert!(child(d, "features/smm").is_none());
    });
    let mut no_path = spec("x86_64-uefi");
    no_path.nvram_path = None;
    with_doc(&render(&no_path), |d| {
        assert_eq!(attr(d, "os/nvram", "template"), Some("/usr/share/OVMF/OVMF_VARS_4M.fd"));
        assert_eq!(child(d, "os/nvram").and_then(|n| n.text()), None, "libvirt picks the path");
    });
}

#[test]
fn secure_boot_profile_has_secure_loader_smm_and_tpm() {
    with_doc(&render(&spec("x86_64-uefi-secureboot")), |d| {
        assert_eq!(attr(d, "os/loader", "secure"), Some("yes"));
        assert_eq!(child(d, "os/loader").and_then(|n| n.text()), Some("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"));
        assert_eq!(attr(d, "os/nvram", "template"), Some("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"));
        assert_eq!(attr(d, "features/smm", "state"), Some("on"));
        assert_eq!(attr(d, "devices/tpm", "model"), Some("tpm-crb"));
        assert_eq!(attr(d, "devices/tpm/backend", "type"), Some("emulator"));
        assert_eq!(attr(d, "devices/tpm/backend", "version"), Some("2.0"));
    });
}

#[test]
fn pseries_profile_is_plain_ppc64le_pseries() {
    let mut s = spec("ppc64le-pseries");
    s.disks.truncate(1);
    s.oem_strings = vec!["hci.marker=x".into()];
    with_doc(&render_with(&s, &RenderOptions::default()), |d| {
        assert_eq!(attr(d, "os/type", "arch"), Some("ppc64le"));
        assert_eq!(attr(d, "os/type", "machine"), Some("pseries"));
        assert!(child(d, "os/loader").is_none() && child(d, "features").is_none());
        assert!(child(d, "sysinfo").is_none() && child(d, "os/smbios").is_none(), "pseries has no SMBIOS");
    });
}

#[test]
fn aarch64_uefi_gets_a_64_bit_cpu_under_tcg() {
    with_doc(&render(&spec("aarch64-uefi")), |d| {
        assert_eq!(attr(d, "cpu", "mode"), Some("maximum"));
        assert_eq!(child(d, "os/loader").and_then(|n| n.text()), Some("/usr/share/AAVMF/AAVMF_CODE.fd"));
        assert!(child(d, "features/apic").is_none());
    });
}

#[test]
fn kvm_passes_the_host_cpu_through() {
    let mut s = spec("x86_64-bios");
    s.domain_type = "kvm".into();
    with_doc(&render(&s), |d| {
        assert_eq!(d.attribute("type"), Some("kvm"));
        assert_eq!(attr(d, "cpu", "mode"), Some("host-passthrough"));
    });
}

#[test]
fn disks_in_order_boot_from_the_first_nics_on_taps() {
    let mut s = spec("x86_64-bios");
    s.disks.push(DiskSpec {
        volume_id: "a volume id that is far too long for a serial".into(),
        source: DiskSource::Rbd {
            pool: "rbd".into(),
            image: "vol-3".into(),
            monitors: vec!["10.0.0.1:6789".into(), "[fd00::1]:3300".into(), "mon3".into()],
        },
        target: "vdc".into(),
    });
    with_doc(&render(&s), |d| {
        let disks: Vec<_> =
            child(d, "devices").expect("devices").children().filter(|c| c.has_tag_name("disk")).collect();
        assert_eq!(disks.len(), 3);
        let targets: Vec<_> = disks.iter().map(|n| attr(*n, "target", "dev").unwrap_or("")).collect();
        assert_eq!(targets, ["vda", "vdb", "vdc"]);
        assert!(disks.iter().all(|n| attr(*n, "target", "bus") == Some("virtio")));
        assert_eq!(attr(disks[0], "boot", "order"), Some("1"));
        assert!(disks[1..].iter().all(|n| child(*n, "boot").is_none()));
        assert_eq!(disks[0].attribute("type"), Some("file"));
        assert_eq!(attr(disks[0], "driver", "type"), Some("qcow2"));
        assert_eq!(attr(disks[0], "source", "file"), Some("/pool/vol-boot.qcow2"));
        assert_eq!(child(disks[0], "serial").and_then(|n| n.text()), Some("vol-boot"));
        assert_eq!(disks[1].attribute("type"), Some("block"));
        assert_eq!(attr(disks[1], "source", "dev"), Some("/dev/vg0/vol-data"));
        assert_eq!(attr(disks[1], "driver", "type"), Some("raw"));
        assert_eq!(disks[2].attribute("type"), Some("network"));
        assert_eq!(attr(disks[2], "source", "protocol"), Some("rbd"));
        assert_eq!(attr(disks[2], "source", "name"), Some("rbd/vol-3"));
        assert!(child(disks[2], "serial").is_none());
        let hosts: Vec<_> = child(disks[2], "source")
            .expect("source")
            .children()
            .filter(|c| c.has_tag_name("host"))
            .map(|h| (h.attribute("name").unwrap_or(""), h.attribute("port")))
            .collect();
        assert_eq!(hosts, [("10.0.0.1", Some("6789")), ("fd00::1", Some("3300")), ("mon3", None)]);
        assert_eq!(attr(d, "devices/interface", "type"), Some("ethernet"));
        assert_eq!(attr(d, "devices/interface/mac", "address"), Some("52:54:00:00:00:01"));
        assert_eq!(attr(d, "devices/interface/target", "dev"), Some("hcit-vm1-0"));
        assert_eq!(attr(d, "devices/interface/model", "type"), Some("virtio"));
    });
}

#[test]
fn every_embedded_string_is_escaped() {
    let nasty = "/srv/a&b/it's \"<x>\"\tz";
    let mut s = spec("x86_64-uefi");
    s.name = "hci-<h&1>-'vm'".into();
    s.host_id = "h'&\"1".into();
    s.console_log = PathBuf::from(nasty).join("console.log");
    s.nvram_path = Some(PathBuf::from(nasty).join("VARS.fd"));
    s.disks[0].source = DiskSource::File { path: PathBuf::from(nasty).join("disk.qcow2"), format: "qcow2".into() };
    s.nics[0].tap = "t'&<".into();
    s.oem_strings = vec!["hci.marker=a&b'<c>".into()];
    let options = RenderOptions::default();
    with_doc(&render_with(&s, &options), |d| {
        assert_eq!(child(d, "name").and_then(|n| n.text()), Some("hci-<h&1>-'vm'"));
        assert_eq!(attr(d, "devices/serial/log", "file"), Some(format!("{nasty}/console.log").as_str()));
        assert_eq!(child(d, "os/nvram").and_then(|n| n.text()), Some(format!("{nasty}/VARS.fd").as_str()));
        assert_eq!(attr(d, "devices/disk/source", "file"), Some(format!("{nasty}/disk.qcow2").as_str()));
        assert_eq!(attr(d, "devices/interface/target", "dev"), Some("t'&<"));
        assert_eq!(child(d, "sysinfo/oemStrings/entry").and_then(|n| n.text()), Some("hci.marker=a&b'<c>"));
        assert_eq!(attr(d, "os/smbios", "mode"), Some("sysinfo"));
        let vm = child(d, "metadata/vm").expect("metadata element");
        assert_eq!(vm.attribute("host"), Some("h'&\"1"));
    });
    assert_eq!(esc("a\u{1}b"), "a\u{FFFD}b");
}

#[test]
fn the_metadata_element_reads_back() {
    let s = spec("x86_64-bios");
    let owner = parse_owner(&metadata_element(&s)).expect("hci element");
    assert_eq!(owner.host_id, "h1");
    assert_eq!(owner.vm_id, "vm1");
    assert_eq!(owner.generation, 7);
    assert_eq!(owner.digest, s.digest());
    // As virDomainGetMetadata hands it back: without the namespace, double quotes.
    let libvirt = "<vm host=\"h1\" id=\"v\" generation=\"3\" digest=\"ab\"/>";
    assert_eq!(parse_owner(libvirt).map(|o| o.generation), Some(3));
    let namespaced = "<hci:vm xmlns:hci=\"urn:hci:agent:1\" host=\"h1\" id=\"v\" generation=\"4\" digest=\"ab\"/>";
    assert_eq!(parse_owner(namespaced).map(|o| o.generation), Some(4));
    assert_eq!(parse_owner("<vm xmlns=\"urn:other\" host=\"h\" id=\"v\" generation=\"1\" digest=\"d\"/>"), None);
    assert_eq!(
        parse_owner("<hci:vm xmlns:hci=\"urn:hci:agent:1\" host=\"h\" id=\"v\" generation=\"x\" digest=\"d\"/>"),
        None
    );
    assert_eq!(parse_owner("not xml"), None);
}

#[test]
fn uuid_is_rendered_when_redefining() {
    let options = RenderOptions { uuid: Some("0b6f7f3e-1111-2222-3333-444455556666".into()), name: None };
    with_doc(&render_with(&spec("x86_64-bios"), &options), |d| {
        assert_eq!(child(d, "uuid").and_then(|n| n.text()), Some("0b6f7f3e-1111-2222-3333-444455556666"));
        assert!(child(d, "sysinfo").is_none());
    });
}

#[test]
fn digest_follows_the_shape_not_the_generation() {
    let base = spec("x86_64-uefi");
    let mut newer = base.clone();
    newer.generation += 1;
    assert_eq!(base.digest(), newer.digest());
    let mut changes: Vec<DomainSpec> = Vec::new();
    let mut s = base.clone();
    s.memory_mib += 1;
    changes.push(s);
    let mut s = base.clone();
    s.vcpus += 1;
    changes.push(s);
    let mut s = base.clone();
    s.disks.pop();
    changes.push(s);
    let mut s = base.clone();
    s.nics[0].mac = "52:54:00:00:00:02".into();
    changes.push(s);
    let mut s = base.clone();
    s.profile = spec("x86_64-uefi-secureboot").profile;
    changes.push(s);
    for changed in changes {
        assert_ne!(base.digest(), changed.digest(), "{changed:?}");
    }
    with_doc(&render(&newer), |d| {
        assert_eq!(attr(d, "metadata/vm", "generation"), Some("8"));
        assert_eq!(attr(d, "metadata/vm", "digest"), Some(base.digest().as_str()));
    });
}

#[test]
fn pcie_machines_get_spare_root_ports_for_hotplug() {
    let ports = |xml: &str| xml.matches("model='pcie-root-port'").count();
    // 2 disks, 1 NIC, USB + RNG + balloon, then the spares.
    assert_eq!(ports(&render(&spec("x86_64-bios"))), 2 + 1 + 3 + HOTPLUG_ROOT_PORTS);
    assert_eq!(ports(&render(&spec("x86_64-uefi"))), 2 + 1 + 3 + HOTPLUG_ROOT_PORTS);
    assert_eq!(ports(&render(&spec("aarch64-uefi"))), 2 + 1 + 3 + HOTPLUG_ROOT_PORTS);
    assert_eq!(ports(&render(&spec("ppc64le-pseries"))), 0, "pseries hotplugs into its PCI host bridge");
}
