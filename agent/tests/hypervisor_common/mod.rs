//! Helpers shared by the real-libvirt test binaries (`hypervisor_libvirt.rs`,
//! `hypervisor_hotplug.rs`, `hypervisor_pseries.rs`): the libvirt URI and the switch-off, the test
//! guest (built once; its ppc64le build too), a per-test domain with its files that is removed however
//! the test ends, console waits, XML and image inspection, and a private libvirtd from
//! scripts/libvirt/host.sh.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::{DiskSource, DiskSpec, DomainSpec, Hypervisor, NicSpec};
use hci_firmware_profiles::Profiles;
use hci_shared::agent::VmRunState;

/// Generous: other VMs may share the 2 cores, and TCG boots slow down with them.
pub const BOOT_DEADLINE: Duration = Duration::from_secs(180);
pub const HOST: &str = "test-host";

pub fn uri() -> String {
    std::env::var("HCI_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".into())
}

/// True (with a message) when the libvirt tests are switched off.
pub fn skip(test: &str) -> bool {
    let off = std::env::var("HCI_SKIP_LIBVIRT").is_ok_and(|v| v == "1");
    if off {
        eprintln!("{test}: skipped (HCI_SKIP_LIBVIRT=1)");
    }
    off
}

pub fn connect() -> LibvirtHypervisor {
    let uri = uri();
    LibvirtHypervisor::connect(&uri).unwrap_or_else(|e| {
        panic!(
            "libvirt is unreachable at {uri}: {e}\nrun scripts/libvirt/up.sh as root first, or set HCI_SKIP_LIBVIRT=1"
        )
    })
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test guest, built once per test binary (build.sh returns at once when it is up to date).
pub fn guest_disk() -> PathBuf {
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

/// The ppc64le build of the test guest (`HCI_GUEST_ARCH=ppc64el build.sh`), built once per test binary
/// into `ppc64el/` under the guest directory; returns its pseries disk image (SLOF -> PReP -> GRUB).
pub fn pseries_guest_disk() -> PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let base = std::env::var("HCI_TEST_GUEST_DIR").unwrap_or_else(|_| "/var/cache/hci-test-guest".into());
            let dir = Path::new(&base).join("ppc64el");
            let out = Command::new(repo().join("scripts/guest/build.sh"))
                .env("HCI_GUEST_ARCH", "ppc64el")
                .arg(&dir)
                .output()
                .expect("run build.sh");
            assert!(
                out.status.success(),
                "HCI_GUEST_ARCH=ppc64el scripts/guest/build.sh {} failed:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            dir.join("disk-ppc64le.qcow2")
        })
        .clone()
}

/// Writes `HCI-SETTINGS <words>` as the second sector of a raw disk: the guest's settings where there
/// is no SMBIOS (pseries). The guest's marker goes to the first sector and never touches it.
pub fn write_settings(disk: &Path, words: &[String]) {
    use std::io::{Seek, SeekFrom, Write};
    let line = format!("HCI-SETTINGS {}\n", words.join(" "));
    assert!(line.len() <= 512, "settings fit one sector: {line}");
    let mut file = std::fs::OpenOptions::new().write(true).open(disk).expect("open data disk");
    file.seek(SeekFrom::Start(512)).and_then(|_| file.write_all(line.as_bytes())).expect("write settings");
    file.sync_all().expect("sync data disk");
}

/// One boot at a time: 2 cores, TCG.
pub fn boot_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A domain (and its files) that is removed however the test ends.
pub struct TestVm<'a> {
    pub hv: &'a LibvirtHypervisor,
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl<'a> TestVm<'a> {
    pub fn new(hv: &'a LibvirtHypervisor, test: &str) -> Self {
        let name = format!("hci-t-{test}-{}", std::process::id());
        // libvirt's QEMU (user libvirt-qemu) must reach the disks and NVRAM in here.
        let dir = tempfile::Builder::new().prefix("hci-hv-test-").tempdir_in("/var/tmp").expect("tempdir");
        set_mode(dir.path(), 0o755);
        Self { hv, name, dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn console_text(&self) -> String {
        std::fs::read(self.path("log/console.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// How many console lines contain `needle`.
    pub fn console_count(&self, needle: &str) -> usize {
        self.console_text().lines().filter(|l| l.contains(needle)).count()
    }

    /// A spec for `profile` with the given disks, a NIC, console and NVRAM in the temp dir.
    pub fn spec(&self, profile: &str, disks: Vec<DiskSpec>) -> DomainSpec {
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

    /// A copy of the test guest as `file` (qcow2), as disk `target`.
    pub fn os_disk(&self, file: &str, target: &str) -> DiskSpec {
        std::fs::copy(guest_disk(), self.path(file)).expect("copy guest disk");
        DiskSpec {
            volume_id: "os".into(),
            source: DiskSource::File { path: self.path(file), format: "qcow2".into() },
            target: target.into(),
        }
    }

    /// A copy of the image `image` as `file` (qcow2), as disk `target` (volume id `os`).
    pub fn os_disk_from(&self, image: &Path, file: &str, target: &str) -> DiskSpec {
        std::fs::copy(image, self.path(file)).expect("copy guest disk");
        DiskSpec {
            volume_id: "os".into(),
            source: DiskSource::File { path: self.path(file), format: "qcow2".into() },
            target: target.into(),
        }
    }

    /// A blank 16 MiB raw disk `file` as `target`.
    pub fn raw_disk(&self, file: &str, target: &str) -> DiskSpec {
        let data = std::fs::File::create(self.path(file)).expect("data disk");
        data.set_len(16 << 20).expect("size data disk");
        DiskSpec {
            volume_id: "data".into(),
            source: DiskSource::File { path: self.path(file), format: "raw".into() },
            target: target.into(),
        }
    }

    /// A blank 16 MiB qcow2 disk `file` (made by qemu-img) as `target`.
    pub fn qcow2_disk(&self, file: &str, target: &str) -> DiskSpec {
        qemu_img(&["create", "-q", "-f", "qcow2", &self.path(file).to_string_lossy(), "16M"]);
        DiskSpec {
            volume_id: "data".into(),
            source: DiskSource::File { path: self.path(file), format: "qcow2".into() },
            target: target.into(),
        }
    }

    /// Boot disk (a copy of the test guest) and a blank 16 MiB raw data disk.
    pub fn guest_disks(&self) -> Vec<DiskSpec> {
        vec![self.os_disk("os.qcow2", "vda"), self.raw_disk("data.raw", "vdb")]
    }

    pub fn state(&self) -> Option<VmRunState> {
        self.hv.list().expect("list").into_iter().find(|d| d.name == self.name).map(|d| d.state)
    }

    /// Waits until the console log has `count` lines containing `needle`; returns the time it took.
    pub fn wait_console(&self, needle: &str, count: usize) -> Duration {
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

    /// The domain's live (`inactive` false) or persistent XML, straight from libvirt.
    pub fn xml(&self, inactive: bool) -> String {
        let conn = virt::connect::Connect::open(Some(&uri())).expect("open");
        let domain = conn.lookup_domain_by_name(&self.name).expect("lookup");
        let flags = if inactive { virt::sys::VIR_DOMAIN_XML_INACTIVE } else { 0 };
        domain.xml_desc(flags).expect("xml")
    }

    /// The `(target, source file)` of every disk in the live or persistent XML.
    pub fn disks(&self, inactive: bool) -> Vec<(String, String)> {
        disks_of(&self.xml(inactive))
    }

    /// Pauses or resumes the guest's vCPUs behind the agent's back.
    pub fn set_paused(&self, paused: bool) {
        let conn = virt::connect::Connect::open(Some(&uri())).expect("open");
        let domain = conn.lookup_domain_by_name(&self.name).expect("lookup");
        if paused {
            domain.suspend().expect("suspend");
        } else {
            domain.resume().expect("resume");
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

/// `(target, source)` of every disk of a domain XML, in order.
pub fn disks_of(xml: &str) -> Vec<(String, String)> {
    let doc = roxmltree::Document::parse(xml).expect("domain XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("disk") && n.parent().is_some_and(|p| p.has_tag_name("devices")))
        .filter_map(|disk| {
            let target = disk.children().find(|n| n.has_tag_name("target"))?.attribute("dev")?;
            let source = disk.children().find(|n| n.has_tag_name("source")).and_then(|s| s.attribute("file"));
            Some((target.to_string(), source.unwrap_or("").to_string()))
        })
        .collect()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The marker line at byte 0 of a raw disk.
pub fn read_marker(disk: &Path) -> String {
    let mut sector = [0u8; 512];
    std::fs::File::open(disk).and_then(|mut f| f.read_exact(&mut sector)).expect("read data disk");
    String::from_utf8_lossy(&sector).trim_end_matches('\0').trim_end().to_string()
}

/// Runs qemu-img (tests only: the agent never does) and returns its stdout; panics on failure.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img").args(args).output().expect("run qemu-img");
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The UUID libvirt gave a domain (for its swtpm state directory).
pub fn uuid_of(name: &str) -> String {
    let conn = virt::connect::Connect::open(Some(&uri())).expect("open");
    let domain = conn.lookup_domain_by_name(name).expect("lookup");
    domain.uuid_string().expect("uuid")
}

/// A private libvirtd (scripts/libvirt/host.sh), removed with --purge however the test ends.
pub struct PrivateLibvirt {
    pub id: String,
}

impl PrivateLibvirt {
    pub fn run(&self, cmd: &str) -> String {
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
