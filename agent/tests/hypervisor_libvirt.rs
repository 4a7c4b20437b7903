//! `LibvirtHypervisor` against the real libvirt on this machine (`qemu:///system`, or
//! `HCI_LIBVIRT_URI`): boots the hci test guest (scripts/guest/build.sh) under BIOS, UEFI and UEFI
//! Secure Boot + vTPM, checks console, data disk, list/metadata, stats, shutdown, reboot, undefine,
//! and the reconnect after a libvirtd restart (on a private libvirtd from scripts/libvirt/host.sh).
//!
//! Needs root and `scripts/libvirt/up.sh`. Fails loudly when libvirt is unreachable, unless
//! HCI_SKIP_LIBVIRT=1. Leaves nothing behind: every domain, file and libvirtd it makes is removed by
//! a Drop guard, even when an assertion fails. Boots are serialized (2 cores, TCG).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::{DiskSource, DiskSpec, DomainSpec, Hypervisor, HypervisorError, NicSpec};
use hci_firmware_profiles::Profiles;
use hci_shared::agent::VmRunState;

const BOOT_DEADLINE: Duration = Duration::from_secs(90);
const HOST: &str = "test-host";

fn uri() -> String {
    std::env::var("HCI_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".into())
}

/// True (with a message) when the libvirt tests are switched off.
fn skip(test: &str) -> bool {
    let off = std::env::var("HCI_SKIP_LIBVIRT").is_ok_and(|v| v == "1");
    if off {
        eprintln!("{test}: skipped (HCI_SKIP_LIBVIRT=1)");
    }
    off
}

fn connect() -> LibvirtHypervisor {
    let uri = uri();
    LibvirtHypervisor::connect(&uri).unwrap_or_else(|e| {
        panic!(
            "libvirt is unreachable at {uri}: {e}\nrun scripts/libvirt/up.sh as root first, or set HCI_SKIP_LIBVIRT=1"
        )
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test guest, built once per test binary (build.sh returns at once when it is up to date).
fn guest_disk() -> PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let dir = std::env::var("HCI_TEST_GUEST_DIR").unwrap_or_else(|_| "/var/cache/hci-test-guest".into());
            let out = Command::new(repo().join("scripts/guest/build.sh")).arg(&dir).output().expect("run build.sh");
            assert!(
                out.status.success(),
                "scripts/guest/build.sh {dir} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Path::new(&dir).join("disk.qcow2")
        })
        .clone()
}

/// One boot at a time: 2 cores, TCG.
fn boot_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A domain (and its files) that is removed however the test ends.
struct TestVm<'a> {
    hv: &'a LibvirtHypervisor,
    name: String,
    dir: tempfile::TempDir,
}

impl<'a> TestVm<'a> {
    fn new(hv: &'a LibvirtHypervisor, test: &str) -> Self {
        let name = format!("hci-t-{test}-{}", std::process::id());
        // libvirt's QEMU (user libvirt-qemu) must reach the disks and NVRAM in here.
        let dir = tempfile::Builder::new().prefix("hci-hv-test-").tempdir_in("/var/tmp").expect("tempdir");
        set_mode(dir.path(), 0o755);
        Self { hv, name, dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn console_text(&self) -> String {
        std::fs::read(self.path("log/console.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A spec for `profile` with the given disks, a NIC, console and NVRAM in the temp dir.
    fn spec(&self, profile: &str, disks: Vec<DiskSpec>) -> DomainSpec {
        let profiles = Profiles::builtin().expect("profiles");
        DomainSpec {
            name: self.name.clone(),
            vm_id: format!("vm-{}", std::process::id()),
            host_id: HOST.into(),
            generation: 1,
            vcpus: 1,
            memory_mib: 512,
            domain_type: "qemu".into(),
            profile: profiles.get(profile).expect("profile").clone(),
            nvram_path: Some(self.path("nvram/VARS.fd")),
            tpm_state_dir: None,
            disks,
            nics: vec![NicSpec { mac: "52:54:00:7e:57:01".into(), tap: format!("hcit{}", std::process::id()) }],
            console_log: self.path("log/console.log"),
            oem_strings: vec![],
        }
    }

    /// Boot disk (a copy of the test guest) and a blank 16 MiB raw data disk.
    fn guest_disks(&self) -> Vec<DiskSpec> {
        std::fs::copy(guest_disk(), self.path("os.qcow2")).expect("copy guest disk");
        let data = std::fs::File::create(self.path("data.raw")).expect("data disk");
        data.set_len(16 << 20).expect("size data disk");
        vec![
            DiskSpec {
                volume_id: "os".into(),
                source: DiskSource::File { path: self.path("os.qcow2"), format: "qcow2".into() },
                target: "vda".into(),
            },
            DiskSpec {
                volume_id: "data".into(),
                source: DiskSource::File { path: self.path("data.raw"), format: "raw".into() },
                target: "vdb".into(),
            },
        ]
    }

    fn state(&self) -> Option<VmRunState> {
        self.hv.list().expect("list").into_iter().find(|d| d.name == self.name).map(|d| d.state)
    }

    /// Waits until the console log has `count` lines containing `needle`; returns the time it took.
    fn wait_console(&self, needle: &str, count: usize) -> Duration {
        let started = Instant::now();
        loop {
            let console = self.console_text();
            if console.lines().filter(|l| l.contains(needle)).count() >= count {
                return started.elapsed();
            }
            if started.elapsed() > BOOT_DEADLINE {
                let qemu_log =
                    std::fs::read_to_string(format!("/var/log/libvirt/qemu/{}.log", self.name)).unwrap_or_default();
                let tail: Vec<_> = console.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "{}: no {count}x '{needle}' on the console within {BOOT_DEADLINE:?}; console tail:\n{}\nQEMU log:\n{qemu_log}",
                    self.name,
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestVm<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.hv.undefine(&self.name) {
            eprintln!("cleanup: undefine {}: {e}", self.name);
        }
        if uri() == "qemu:///system" {
            let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{}.log", self.name));
            let _ = std::fs::remove_file(format!("/var/log/swtpm/libvirt/qemu/{}-swtpm.log", self.name));
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn read_marker(disk: &Path) -> String {
    let mut sector = [0u8; 512];
    std::fs::File::open(disk).and_then(|mut f| f.read_exact(&mut sector)).expect("read data disk");
    String::from_utf8_lossy(&sector).trim_end_matches('\0').trim_end().to_string()
}

/// The UUID libvirt gave a domain (for its swtpm state directory).
fn uuid_of(name: &str) -> String {
    let conn = virt::connect::Connect::open(Some(&uri())).expect("open");
    let domain = conn.lookup_domain_by_name(name).expect("lookup");
    domain.uuid_string().expect("uuid")
}

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

/// A private libvirtd (scripts/libvirt/host.sh) that is stopped and started under a live
/// `LibvirtHypervisor`; removed with --purge however the test ends.
struct PrivateLibvirt {
    id: String,
}

impl PrivateLibvirt {
    fn run(&self, cmd: &str) -> String {
        let out = Command::new(repo().join("scripts/libvirt/host.sh")).args([cmd, &self.id]).output().expect("host.sh");
        assert!(out.status.success(), "host.sh {cmd} {}: {}", self.id, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string()
    }
}

impl Drop for PrivateLibvirt {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/libvirt/host.sh")).args(["down", &self.id, "--purge"]).output();
    }
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
