//! `LibvirtHypervisor` against the real libvirt on this machine (`qemu:///system`, or
//! `HCI_LIBVIRT_URI`): boots the hci test guest (scripts/guest/build.sh) under BIOS, UEFI and UEFI
//! Secure Boot + vTPM, checks console, data disk, list/metadata, stats, shutdown, reboot, undefine,
//! and the reconnect after a libvirtd restart (on a private libvirtd from scripts/libvirt/host.sh).
//!
//! Needs root and `scripts/libvirt/up.sh`. Fails loudly when libvirt is unreachable, unless
//! HCI_SKIP_LIBVIRT=1. Leaves nothing behind: every domain, file and libvirtd it makes is removed by
//! a Drop guard, even when an assertion fails. Boots are serialized (2 cores, TCG).

mod hypervisor_common;

use std::path::Path;
use std::time::{Duration, Instant};

use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::{DiskSource, DiskSpec, Hypervisor, HypervisorError};
use hci_firmware_profiles::Profiles;
use hci_shared::agent::VmRunState;
use hypervisor_common::{boot_lock, connect, read_marker, skip, uri, uuid_of, PrivateLibvirt, TestVm, HOST};

struct Timings {
    define: Duration,
    start: Duration,
    boot_to_marker: Duration,
    shutdown: Duration,
}

/// Define, start, wait for boot and marker, ACPI shutdown, marker on disk, undefine.
fn boot_cycle(test: &str, profile: &str, expect: &str, reboot: bool) -> Timings {
    let hv = connect();
    let _serial = boot_lock();
    let vm = TestVm::new(&hv, test);
    let mut spec = vm.spec(profile, vm.guest_disks());
    let marker = format!("{test}-{}", std::process::id());
    let oem = vec![format!("hci.marker={marker}"), format!("hci.name={}", vm.name), "hci.heartbeat=0".to_string()];

    let t = Instant::now();
    spec.oem_strings = oem.clone();
    hv.define(&spec).expect("define");
    let define = t.elapsed();
    hv.define(&spec).expect("define again (idempotent)");
    assert_eq!(vm.state(), Some(VmRunState::Stopped));
    let t = Instant::now();
    hv.start(&vm.name).expect("start");
    let start = t.elapsed();
    hv.start(&vm.name).expect("start of a running domain is a no-op");
    let boot_to_marker = vm.wait_console(&format!("HCI-MARKER-WRITTEN {marker}"), 1) + start;
    let console = vm.console_text();
    assert!(console.contains(&format!("HCI-GUEST-BOOTED firmware={expect}")), "{console}");
    assert!(!console.contains("HCI-ERROR"), "{console}");
    assert_eq!(vm.state(), Some(VmRunState::Running));

    let stats = hv.stats(&vm.name).expect("stats");
    assert!(stats.cpu_time_ns > 0 && stats.memory_kib > 0 && stats.disk_read_bytes > 0, "{stats:?}");
    assert!(stats.disk_write_bytes >= 512, "the marker write shows in the stats: {stats:?}");

    // Power button handling (busybox acpid) starts after the marker.
    vm.wait_console("HCI-GUEST-READY", 1);
    if reboot {
        let t = Instant::now();
        hv.reboot(&vm.name).expect("reboot");
        vm.wait_console("HCI-GUEST-READY", 2);
        assert!(vm.console_text().contains(&format!("HCI-MARKER-FOUND {marker}")), "the second boot found the marker");
        eprintln!("{test}: ACPI reboot to the second HCI-GUEST-READY: {:?}", t.elapsed());
    }

    let t = Instant::now();
    hv.shutdown(&vm.name, Duration::from_secs(60)).expect("shutdown");
    let shutdown = t.elapsed();
    assert_eq!(vm.state(), Some(VmRunState::Stopped));
    let shutdowns = vm.console_text().lines().filter(|l| l.contains("HCI-GUEST-SHUTDOWN")).count();
    assert_eq!(shutdowns, if reboot { 2 } else { 1 }, "a clean ACPI power-off, not a forced stop");
    assert!(shutdown < Duration::from_secs(30), "ACPI shutdown took {shutdown:?}");
    hv.shutdown(&vm.name, Duration::from_secs(1)).expect("shutdown of a stopped domain is a no-op");
    assert_eq!(read_marker(&vm.path("data.raw")), format!("HCI-MARKER {marker}"));

    let nvram = vm.path("nvram/VARS.fd");
    if profile.contains("uefi") {
        assert!(nvram.is_file(), "libvirt copied the NVRAM template to {}", nvram.display());
    }
    hv.undefine(&vm.name).expect("undefine");
    assert_eq!(vm.state(), None, "gone after undefine");
    assert!(!nvram.exists(), "undefine removed the NVRAM");
    assert!(vm.path("log/console.log").is_file(), "the console log is kept");
    let timings = Timings { define, start, boot_to_marker, shutdown };
    eprintln!(
        "{test} ({profile}, TCG): define {:?}, start {:?}, start-to-marker {:?}, ACPI shutdown {:?}",
        timings.define, timings.start, timings.boot_to_marker, timings.shutdown
    );
    timings
}

#[test]
fn boots_bios_guest_writes_marker_reboots_and_shuts_down() {
    if skip("bios") {
        return;
    }
    boot_cycle("bios", "x86_64-bios", "bios", true);
}

#[test]
fn boots_uefi_guest_writes_marker_and_removes_nvram() {
    if skip("uefi") {
        return;
    }
    boot_cycle("uefi", "x86_64-uefi", "uefi", false);
}

#[test]
fn boots_uefi_secure_boot_guest_with_a_vtpm() {
    if skip("secureboot") {
        return;
    }
    let hv = connect();
    let caps = hv.capabilities().expect("capabilities");
    let profiles = Profiles::builtin().expect("profiles");
    if let Err(why) = caps.firmware.check(profiles.get("x86_64-uefi-secureboot").expect("profile")) {
        eprintln!(
            "secureboot: skipped, this host cannot run it (scripts/libvirt/up.sh installs swtpm and OVMF): {why}"
        );
        return;
    }
    let _serial = boot_lock();
    let vm = TestVm::new(&hv, "sb");
    let mut spec = vm.spec("x86_64-uefi-secureboot", vm.guest_disks());
    let t = Instant::now();
    spec.oem_strings = vec!["hci.heartbeat=0".to_string()];
    hv.define(&spec).expect("define");
    let define = t.elapsed();
    let t = Instant::now();
    hv.start(&vm.name).expect("start");
    let start = t.elapsed();
    let uuid = uuid_of(&vm.name);
    let boot = vm.wait_console("HCI-GUEST-BOOTED", 1) + start;
    let console = vm.console_text();
    assert!(console.contains("HCI-GUEST-BOOTED firmware=uefi secureboot=1"), "{console}");
    eprintln!("secureboot: guest reports {}", console.lines().find(|l| l.contains("HCI-GUEST-BOOTED")).unwrap_or(""));
    let tpm_state = Path::new("/var/lib/libvirt/swtpm").join(&uuid);
    assert!(tpm_state.is_dir(), "swtpm state in {}", tpm_state.display());
    hv.shutdown(&vm.name, Duration::from_secs(60)).expect("shutdown");
    hv.undefine(&vm.name).expect("undefine");
    assert!(!tpm_state.exists(), "undefine removed the vTPM state {}", tpm_state.display());
    assert!(!vm.path("nvram/VARS.fd").exists(), "undefine removed the NVRAM");
    eprintln!("secureboot (TCG): define {define:?}, start {start:?}, start-to-boot {boot:?}");
}

#[test]
fn list_reports_hci_owner_and_foreign_domains() {
    if skip("list") {
        return;
    }
    let hv = connect();
    let ours = TestVm::new(&hv, "owned");
    let foreign = TestVm::new(&hv, "foreign");
    let mut spec = ours.spec("x86_64-bios", Vec::new());
    hv.define(&spec).expect("define");
    let foreign_xml = format!(
        "<domain type='qemu'><name>{}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>",
        foreign.name
    );
    let conn = virt::connect::Connect::open(Some(&uri())).expect("open");
    conn.define_domain_xml(&foreign_xml).expect("define a foreign domain");

    let list = hv.list().expect("list");
    let mine = list.iter().find(|d| d.name == ours.name).expect("ours listed");
    let owner = mine.owner.as_ref().expect("hci metadata");
    assert_eq!((owner.host_id.as_str(), owner.vm_id.as_str(), owner.generation), (HOST, spec.vm_id.as_str(), 1));
    assert_eq!(owner.digest, spec.digest());
    assert_eq!(mine.state, VmRunState::Stopped);
    let other = list.iter().find(|d| d.name == foreign.name).expect("foreign listed");
    assert_eq!(other.owner, None);

    // A redefinition replaces the config in place: same UUID, new generation and digest.
    let uuid = uuid_of(&ours.name);
    spec.generation = 2;
    spec.memory_mib = 256;
    hv.define(&spec).expect("redefine");
    assert_eq!(uuid_of(&ours.name), uuid);
    let owner =
        hv.list().expect("list").into_iter().find(|d| d.name == ours.name).and_then(|d| d.owner).expect("owner");
    assert_eq!((owner.generation, owner.digest), (2, spec.digest()));

    // A domain hci does not own is never replaced.
    let mut intruder = foreign.spec("x86_64-bios", Vec::new());
    intruder.name = foreign.name.clone();
    let err = hv.define(&intruder).expect_err("refuses to replace a foreign domain");
    assert!(
        matches!(&err, HypervisorError::Domain { domain, action: "redefining", .. } if *domain == foreign.name),
        "{err}"
    );
    let other = hv.list().expect("list").into_iter().find(|d| d.name == foreign.name).expect("still there");
    assert_eq!(other.owner, None);
}

#[test]
fn missing_domains_and_invalid_actions_are_named_errors() {
    if skip("errors") {
        return;
    }
    let hv = connect();
    let missing = format!("hci-t-missing-{}", std::process::id());
    for (what, result) in [
        ("start", hv.start(&missing)),
        ("shutdown", hv.shutdown(&missing, Duration::from_secs(1))),
        ("reboot", hv.reboot(&missing)),
        ("stats", hv.stats(&missing).map(|_| ())),
    ] {
        assert!(matches!(&result, Err(HypervisorError::NoSuchDomain(n)) if *n == missing), "{what}: {result:?}");
    }
    hv.undefine(&missing).expect("undefining a missing domain is Ok");

    let vm = TestVm::new(&hv, "stopped");
    hv.define(&vm.spec("x86_64-bios", Vec::new())).expect("define");
    let err = hv.reboot(&vm.name).expect_err("a stopped domain cannot reboot");
    assert!(matches!(&err, HypervisorError::Domain { domain, action: "rebooting", .. } if *domain == vm.name), "{err}");
    assert_eq!(hv.stats(&vm.name).expect("stats of a stopped domain"), Default::default());
    let mut bad = vm.spec("x86_64-bios", Vec::new());
    bad.profile.machine = "no-such-machine".into();
    let err = hv.define(&bad).expect_err("libvirt refuses an unknown machine");
    assert!(matches!(&err, HypervisorError::Domain { action: "defining", .. }), "{err}");
    assert!(err.to_string().contains(&vm.name), "{err}");
}

#[test]
fn capabilities_describe_this_host() {
    if skip("capabilities") {
        return;
    }
    let caps = connect().capabilities().expect("capabilities");
    eprintln!("capabilities: {caps:?}");
    assert_eq!(caps.arch, std::env::consts::ARCH);
    assert!(caps.cpus >= 1 && caps.memory_mib >= 256, "{caps:?}");
    assert!(caps.accelerator == "kvm" || caps.accelerator == "tcg", "{caps:?}");
    assert!(caps.libvirt_version.split('.').count() == 3, "{caps:?}");
    let x86 = caps.firmware.machines.get("x86_64").expect("x86_64 machines");
    assert!(x86.iter().any(|m| m == "q35") && x86.iter().any(|m| m.starts_with("pc-q35-")), "{x86:?}");
    let profiles = Profiles::builtin().expect("profiles");
    let runnable = profiles.runnable_on(&caps.firmware);
    eprintln!("runnable profiles: {runnable:?}");
    assert!(runnable.contains(&"x86_64-bios".to_string()) && runnable.contains(&"x86_64-uefi".to_string()));
}

#[test]
fn defines_a_ppc64le_pseries_domain_when_the_host_offers_it() {
    if skip("pseries") {
        return;
    }
    let hv = connect();
    let caps = hv.capabilities().expect("capabilities");
    if !caps.firmware.machines.get("ppc64le").is_some_and(|m| m.iter().any(|m| m == "pseries")) {
        eprintln!("pseries: skipped, libvirt offers no ppc64le pseries here ({:?})", caps.firmware.machines.keys());
        return;
    }
    let vm = TestVm::new(&hv, "ppc");
    let disk = vm.path("ppc.qcow2");
    std::fs::File::create(&disk).and_then(|f| f.set_len(1 << 20)).expect("disk");
    let disks = vec![DiskSpec {
        volume_id: "ppc".into(),
        source: DiskSource::File { path: disk, format: "raw".into() },
        target: "vda".into(),
    }];
    let spec = vm.spec("ppc64le-pseries", disks);
    hv.define(&spec).expect("define pseries");
    let listed = hv.list().expect("list").into_iter().find(|d| d.name == vm.name).expect("listed");
    assert_eq!(listed.state, VmRunState::Stopped);
    assert_eq!(listed.owner.map(|o| o.digest), Some(spec.digest()));
    hv.undefine(&vm.name).expect("undefine");
    assert_eq!(vm.state(), None);
}

#[test]
fn reconnects_after_libvirtd_restarts() {
    if skip("reconnect") {
        return;
    }
    let private = PrivateLibvirt { id: format!("hvt-{}", std::process::id()) };
    let uri = private.run("up");
    let hv = LibvirtHypervisor::connect(&uri).expect("connect to the private libvirtd");
    assert!(hv.list().expect("list").is_empty(), "a fresh instance has no domains");
    private.run("down");
    let err = hv.list().expect_err("libvirtd is down");
    assert!(matches!(err, HypervisorError::Connect { .. }), "{err}");
    private.run("up");
    assert!(hv.list().expect("reconnected after the restart").is_empty());
    hv.capabilities().expect("capabilities after reconnect");
}
