//! A ppc64le pseries guest booted from its disk through the firmware, the way a real Power VM boots:
//! `LibvirtHypervisor` defines the domain from the `ppc64le-pseries` profile (no `<kernel>`, the OS
//! disk first with boot order 1), SLOF loads GRUB (powerpc-ieee1275) from the disk's PReP partition,
//! GRUB loads Debian's ppc64el kernel and the test guest's initramfs (scripts/guest/build.sh with
//! HCI_GUEST_ARCH=ppc64el). It exists because define-only and direct-kernel-boot checks prove neither
//! the profile's firmware path nor the agent's domain XML for a disk-booted pseries guest.
//!
//! Runs under TCG on a private libvirtd (scripts/libvirt/host.sh), so it needs root and the packages
//! of scripts/libvirt/up.sh. When qemu-system-ppc64 is missing and cannot be installed it prints a
//! NOTE and passes without booting; HCI_SKIP_LIBVIRT=1 switches it off like the other libvirt tests.
//! Leaves nothing behind: the domain, its files and the private libvirtd are removed by Drop guards,
//! even when an assertion fails.

mod hypervisor_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::Hypervisor;
use hci_shared::agent::VmRunState;
use hypervisor_common::{
    boot_lock, pseries_guest_disk, read_marker, skip, write_settings, PrivateLibvirt, TestVm, BOOT_DEADLINE,
};

/// After the EPOW power-off request (libvirt's power button on pseries), how long the guest gets to
/// stop by itself before `shutdown` forces it off.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

fn qemu_ppc64_runs() -> bool {
    Command::new("qemu-system-ppc64").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// qemu-system-ppc64 is there, or installed now (Debian's qemu-system-ppc at the installed
/// qemu-system-x86's version, as scripts/libvirt/up.sh pins it); `Err` says why it is not.
fn ensure_qemu_ppc64() -> Result<(), String> {
    if qemu_ppc64_runs() {
        return Ok(());
    }
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "qemu-system-x86"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty());
    let package = match &version {
        Some(v) => format!("qemu-system-ppc={v}"),
        None => "qemu-system-ppc".to_string(),
    };
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", &package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if qemu_ppc64_runs() {
        return Ok(());
    }
    Err(format!(
        "apt-get install {package} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The QEMU log of a domain of the private libvirtd (host.sh keeps /var/log/libvirt in its directory).
fn qemu_log(private: &PrivateLibvirt, domain: &str) -> PathBuf {
    let base = std::env::var("HCI_HOSTS_DIR").unwrap_or_else(|_| "/run/hci-hosts".into());
    Path::new(&base).join(&private.id).join("log/qemu").join(format!("{domain}.log"))
}

/// The persistent XML of `domain` on the libvirt at `uri`.
fn persistent_xml(uri: &str, domain: &str) -> String {
    let conn = virt::connect::Connect::open(Some(uri)).expect("open");
    let xml = conn.lookup_domain_by_name(domain).and_then(|d| d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE));
    xml.expect("domain XML")
}

/// Polls the console log until a line contains `needle`. Panics with the console tail and the QEMU
/// log after [`BOOT_DEADLINE`].
fn wait_console(vm: &TestVm, private: &PrivateLibvirt, needle: &str) {
    let started = Instant::now();
    loop {
        let console = vm.console_text();
        if console.lines().any(|l| l.contains(needle)) {
            return;
        }
        if started.elapsed() > BOOT_DEADLINE {
            let tail: Vec<_> = console.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            let log = std::fs::read_to_string(qemu_log(private, &vm.name)).unwrap_or_default();
            panic!(
                "{}: no '{needle}' on the console within {BOOT_DEADLINE:?}; console tail:\n{}\nQEMU log:\n{log}",
                vm.name,
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn boots_a_pseries_guest_from_its_disk_through_slof_and_grub() {
    if skip("pseries-disk") {
        return;
    }
    if let Err(why) = ensure_qemu_ppc64() {
        eprintln!(
            "NOTE: pseries-disk SKIPPED: qemu-system-ppc64 is not installed and could not be installed ({why}); \
             scripts/libvirt/up.sh installs it"
        );
        return;
    }
    let image = pseries_guest_disk();

    let private = PrivateLibvirt { id: format!("ppc-{}", std::process::id()) };
    let uri = private.run("up");
    let hv = LibvirtHypervisor::connect(&uri).expect("connect to the private libvirtd");
    let caps = hv.capabilities().expect("capabilities");
    assert!(
        caps.firmware.machines.get("ppc64le").is_some_and(|m| m.iter().any(|m| m == "pseries")),
        "qemu-system-ppc64 is installed but libvirt offers no ppc64le pseries: {:?}",
        caps.firmware.machines.keys()
    );

    let _serial = boot_lock();
    let vm = TestVm::new(&hv, "pseries");
    let disks = vec![vm.os_disk_from(&image, "os.qcow2", "vda"), vm.raw_disk("data.raw", "vdb")];
    let marker = format!("pseries-{}", std::process::id());
    // pseries has no SMBIOS (the profile's OEM strings are not rendered): the settings go on the data
    // disk's second sector, and the guest takes its name from the device tree (the domain name).
    write_settings(&vm.path("data.raw"), &[format!("hci.marker={marker}"), "hci.heartbeat=0".to_string()]);
    let spec = vm.spec("ppc64le-pseries", disks);

    let t = Instant::now();
    hv.define(&spec).expect("define");
    let define = t.elapsed();
    let xml = persistent_xml(&uri, &vm.name);
    assert!(!xml.contains("<kernel>") && !xml.contains("<initrd>"), "no direct kernel boot: {xml}");
    assert_eq!(vm.state(), Some(VmRunState::Stopped));

    let started = Instant::now();
    hv.start(&vm.name).expect("start");
    let start = started.elapsed();
    wait_console(&vm, &private, "HCI-GUEST-BOOTED");
    let booted = started.elapsed();
    wait_console(&vm, &private, &format!("HCI-MARKER-WRITTEN {marker}"));
    wait_console(&vm, &private, "HCI-GUEST-READY");
    let ready = started.elapsed();
    let console = vm.console_text();
    // SLOF found the PReP partition, GRUB loaded the kernel from the disk's FAT partition.
    assert!(console.contains("Welcome to GRUB"), "GRUB ran:\n{console}");
    assert!(console.contains("BOOT_IMAGE=/vmlinux.gz"), "GRUB booted the kernel from the disk:\n{console}");
    assert!(
        console.contains("HCI-GUEST-BOOTED firmware=of secureboot=0 tpm=0 kernel="),
        "booted through Open Firmware:\n{console}"
    );
    assert!(
        console.contains(&format!("arch=ppc64le name={}", vm.name)),
        "the domain's name via the device tree:\n{console}"
    );
    assert!(console.contains("HCI-MARKER-FOUND none"), "a blank data disk:\n{console}");
    assert!(!console.contains("HCI-ERROR"), "{console}");
    assert_eq!(vm.state(), Some(VmRunState::Running));

    // libvirt's power button on pseries is an EPOW event; the kernel runs /sbin/poweroff. After
    // SHUTDOWN_TIMEOUT the agent forces the domain off, which the HCI-GUEST-SHUTDOWN check would catch.
    let t = Instant::now();
    hv.shutdown(&vm.name, SHUTDOWN_TIMEOUT).expect("shutdown");
    let shutdown = t.elapsed();
    assert_eq!(vm.state(), Some(VmRunState::Stopped));
    assert_eq!(vm.console_count("HCI-GUEST-SHUTDOWN"), 1, "a clean power-off, not a forced stop");
    assert_eq!(read_marker(&vm.path("data.raw")), format!("HCI-MARKER {marker}"), "the guest's write reached the disk");

    hv.undefine(&vm.name).expect("undefine");
    assert_eq!(vm.state(), None, "gone after undefine");
    eprintln!(
        "pseries-disk (TCG, SLOF -> GRUB -> Linux): define {define:?}, start {start:?}, start-to-booted {booted:?}, \
         start-to-ready {ready:?}, EPOW shutdown {shutdown:?}"
    );
}
