//! `LvmThinPool` against real LVM: every test makes its own sparse 2 GiB file under /var/tmp, a loop
//! device on it, a VG `hci-test-<pid>-<test>` and a 1.5 GiB thin pool `pool`, then checks empty
//! volumes (block devices), idempotent create, grow and refused shrink, image volumes (bytes read
//! back from the LV), independent thin-snapshot clones, delete, recovery from interrupted creates,
//! pool usage, that LVs which are not this host's are neither listed nor changed, and volume
//! snapshots (take, list, roll back twice, refused while open, an interrupted rollback settled,
//! clones from a snapshot, delete with snapshots, bad names).
//!
//! Needs root, a kernel with device-mapper and dm-thin, lvm2 + thin-provisioning-tools, qemu-img and
//! qemu-io. Fails loudly when any is missing, unless HCI_SKIP_LVM=1. The tests' own LVM commands see
//! only their loop device (`--devices`), so they never touch another VG. A Drop guard removes the
//! VG, the PV, the loop device and the file however a test ends, also when its setup fails halfway.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hci_agent::hypervisor::DiskSource;
use hci_agent::volumes::lvm_thin::LvmThinPool;
use hci_agent::volumes::{SourceSpec, VolumeBackend, VolumeError, VolumeInfo};

const MIB: u64 = 1 << 20;
const KIB64: usize = 64 * 1024;

fn skip(test: &str) -> bool {
    let off = std::env::var("HCI_SKIP_LVM").is_ok_and(|v| v == "1");
    if off {
        eprintln!("{test}: skipped (HCI_SKIP_LVM=1)");
    }
    off
}

/// What LVM needs when no udev makes the device nodes (containers, minimal hosts).
fn lvm_env() -> Vec<(&'static str, &'static str)> {
    let mut env = vec![("LC_ALL", "C"), ("LVM_SUPPRESS_FD_WARNINGS", "1")];
    if !Path::new("/run/udev/control").exists() {
        env.push(("DM_DISABLE_UDEV", "1"));
    }
    env
}

fn output(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).envs(lvm_env()).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with what to do when this machine cannot run LVM thin pools.
fn require_lvm() {
    let missing =
        |what: &str, fix: &str| -> ! { panic!("{what}\n{fix}, or set HCI_SKIP_LVM=1 to skip the LVM-thin tests") };
    if !["/usr/sbin/lvm", "/sbin/lvm"].iter().any(|p| Path::new(p).exists()) {
        missing("lvm2 is not installed", "apt-get install -y lvm2 thin-provisioning-tools");
    }
    if !["/usr/sbin/thin_check", "/sbin/thin_check"].iter().any(|p| Path::new(p).exists()) {
        missing("thin-provisioning-tools is not installed", "apt-get install -y thin-provisioning-tools");
    }
    let _ = Command::new("modprobe").arg("dm_thin_pool").output();
    let devices = fs::read_to_string("/proc/devices").unwrap_or_default();
    if !devices.lines().any(|l| l.ends_with(" device-mapper")) {
        missing(
            "this kernel has no device-mapper (not in /proc/devices, and modprobe dm_thin_pool did not load it)",
            "run the tests on a host or VM whose kernel has dm-mod and dm-thin-pool",
        );
    }
}

/// Everything a fixture set up, removed in reverse order however the test ends.
#[derive(Default)]
struct Teardown {
    file: Option<PathBuf>,
    loop_dev: Option<String>,
    pv: bool,
    vg: Option<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = output(program, args);
        };
        if let (Some(vg), Some(dev)) = (&self.vg, &self.loop_dev) {
            quiet("lvm", &["vgremove", "--devices", dev, "-f", vg]);
        }
        if let (true, Some(dev)) = (self.pv, &self.loop_dev) {
            quiet("lvm", &["pvremove", "--devices", dev, "-ff", "-y", dev]);
        }
        if let Some(dev) = &self.loop_dev {
            quiet("losetup", &["-d", dev]);
        }
        if let Some(file) = &self.file {
            let _ = fs::remove_file(file);
        }
    }
}

/// A VG on a loop device with thin pool `pool`, opened as API pool `p` of host `host`.
struct Fixture {
    pool: LvmThinPool,
    host: String,
    vg: String,
    dev: String,
    dir: tempfile::TempDir,
    _teardown: Teardown,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        require_lvm();
        let vg = format!("hci-test-{}-{test}", std::process::id());
        let mut teardown = Teardown::default();
        let file = PathBuf::from(format!("/var/tmp/{vg}.img"));
        File::create(&file).and_then(|f| f.set_len(2 << 30)).expect("sparse 2 GiB file");
        teardown.file = Some(file.clone());
        let dev = run("losetup", &["--find", "--show", &file.to_string_lossy()]).trim().to_string();
        teardown.loop_dev = Some(dev.clone());
        run("lvm", &["pvcreate", "--devices", &dev, &dev]);
        teardown.pv = true;
        run("lvm", &["vgcreate", "--devices", &dev, &vg, &dev]);
        teardown.vg = Some(vg.clone());
        run("lvm", &["lvcreate", "--devices", &dev, "--type", "thin-pool", "-L", "1.5G", "-n", "pool", &vg]);
        let host = format!("th{}", std::process::id());
        let pool = LvmThinPool::open("p", &host, &vg, "pool").expect("open the thin pool");
        let dir = tempfile::tempdir().expect("temp dir");
        Fixture { pool, host, vg, dev, dir, _teardown: teardown }
    }

    fn lv(&self, id: &str) -> String {
        format!("hci-{}-{id}", self.host)
    }

    fn device(&self, id: &str) -> PathBuf {
        Path::new("/dev").join(&self.vg).join(self.lv(id))
    }

    fn lvm(&self, args: &[&str]) -> String {
        let mut all = vec![args[0], "--devices", &self.dev];
        all.extend(&args[1..]);
        run("lvm", &all)
    }

    /// `lv_attr lv_tags` of an LV of the test VG; `None` when it does not exist.
    fn attrs(&self, lv: &str) -> Option<(String, String)> {
        let out = self.lvm(&["lvs", "--noheadings", "--separator", " ", "-o", "lv_name,lv_attr,lv_tags", &self.vg]);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&lv))
            .map(|w| (w.get(1).map_or("", |s| s).to_string(), w.get(2).map_or("", |s| s).to_string()))
    }

    /// Makes an LV of the test VG by hand, as something other than the backend would.
    fn thin_lv(&self, name: &str, tags: &[&str]) {
        let mut args = vec!["lvcreate", "--type", "thin", "--thinpool", "pool", "-V", "16m", "-n", name];
        for tag in tags {
            args.extend(["--addtag", tag]);
        }
        args.push(&self.vg);
        self.lvm(&args);
    }

    fn listed(&self, id: &str) -> Option<VolumeInfo> {
        self.pool.list().expect("list").into_iter().find(|v| v.id == id)
    }

    fn ids(&self) -> Vec<String> {
        self.pool.list().expect("list").into_iter().map(|v| v.id).collect()
    }

    fn qcow2_image(&self, size: u64, pattern: u8) -> PathBuf {
        let path = self.dir.path().join("img.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", &path.to_string_lossy(), &size.to_string()]);
        let write = format!("write -P {pattern:#x} 0 64k");
        run("qemu-io", &["-f", "qcow2", "-c", &write, &path.to_string_lossy()]);
        path
    }

    fn raw_image(&self, size: u64, pattern: u8) -> PathBuf {
        let path = self.dir.path().join("img.raw");
        let mut bytes = vec![pattern; KIB64];
        bytes.resize(size as usize, 0);
        fs::write(&path, bytes).expect("raw image");
        path
    }

    /// Writes 64 KiB of `pattern` at `offset` into a block device with dd (O_DIRECT, fsync).
    fn dd(&self, device: &Path, offset: u64, pattern: u8) {
        let src = self.dir.path().join(format!("pattern-{pattern:02x}"));
        fs::write(&src, vec![pattern; KIB64]).expect("pattern file");
        let (inp, out) = (format!("if={}", src.display()), format!("of={}", device.display()));
        let seek = format!("seek={}", offset / KIB64 as u64);
        run("dd", &[&inp, &out, "bs=64k", "count=1", &seek, "oflag=direct", "conv=notrunc,fsync", "status=none"]);
    }
}

fn block_path(info: &VolumeInfo) -> PathBuf {
    match &info.disk {
        DiskSource::Block { path } => path.clone(),
        other => panic!("expected a block disk, got {other:?}"),
    }
}

fn read_at(device: &Path, at: u64, len: usize) -> Vec<u8> {
    let mut file = File::open(device).unwrap_or_else(|e| panic!("open {}: {e}", device.display()));
    file.seek(SeekFrom::Start(at)).expect("seek");
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf).expect("read the device");
    buf
}

fn device_size(device: &Path) -> u64 {
    File::open(device).and_then(|mut f| f.seek(SeekFrom::End(0))).expect("device size")
}

#[test]
fn empty_volumes_create_grow_refuse_shrink_and_delete() {
    if skip("empty_volumes_create_grow_refuse_shrink_and_delete") {
        return;
    }
    let fx = Fixture::new("empty");
    assert_eq!(fx.pool.kind(), "lvm-thin");
    assert_eq!(fx.pool.pool(), "p");
    let created = fx.pool.create("v1", 64 * MIB, &SourceSpec::Empty).expect("create");
    assert_eq!(created.capacity_bytes, 64 * MIB);
    let path = block_path(&created);
    assert_eq!(path, fx.device("v1"));
    assert!(fs::metadata(&path).expect("device node").file_type().is_block_device());
    assert_eq!(device_size(&path), 64 * MIB);
    assert_eq!(read_at(&path, 0, 4096), vec![0u8; 4096], "a new thin volume reads as zeros");
    assert_eq!(fx.listed("v1"), Some(created.clone()));
    let (attr, tags) = fx.attrs(&fx.lv("v1")).expect("the LV");
    assert!(attr.starts_with("Vwi-a"), "an active thin volume: {attr}");
    assert_eq!(tags, format!("hci-host={}", fx.host), "owned, and complete");

    // Idempotent: the same volume back, whatever size is asked the second time.
    assert_eq!(fx.pool.create("v1", 64 * MIB, &SourceSpec::Empty).expect("create again"), created);
    assert_eq!(fx.pool.create("v1", 96 * MIB, &SourceSpec::Empty).expect("create again").capacity_bytes, 64 * MIB);

    assert_eq!(fx.pool.resize("v1", 128 * MIB).expect("grow").capacity_bytes, 128 * MIB);
    assert_eq!(device_size(&path), 128 * MIB);
    assert_eq!(fx.pool.resize("v1", 128 * MIB).expect("same size").capacity_bytes, 128 * MIB);
    // Rounded up to whole (4 MiB) extents like the LV itself: not a shrink.
    assert_eq!(fx.pool.resize("v1", 127 * MIB + 1).expect("same extents").capacity_bytes, 128 * MIB);
    match fx.pool.resize("v1", 32 * MIB) {
        Err(VolumeError::Shrink { volume, from, to }) => {
            assert_eq!((volume.as_str(), from, to), ("v1", 128 * MIB, 32 * MIB))
        }
        other => panic!("expected Shrink, got {other:?}"),
    }
    assert_eq!(device_size(&path), 128 * MIB, "nothing changed");
    assert!(matches!(fx.pool.resize("nope", MIB), Err(VolumeError::NoSuchVolume(_))));
    assert!(fx.pool.create("../escape", MIB, &SourceSpec::Empty).is_err());
    assert!(fx.pool.create("zero", 0, &SourceSpec::Empty).is_err());
    let long = "x".repeat(125);
    let err = fx.pool.create(&long, MIB, &SourceSpec::Empty).expect_err("LV name too long");
    assert!(err.to_string().contains("shorter id"), "{err}");
    // Sizes are whole extents.
    assert_eq!(fx.pool.create("odd", 5 * MIB + 1, &SourceSpec::Empty).expect("odd size").capacity_bytes, 8 * MIB);

    let usage = fx.pool.usage().expect("usage");
    assert_eq!(usage.capacity_bytes, 1536 * MIB, "{usage:?}");
    assert!(usage.allocation_bytes <= usage.capacity_bytes, "{usage:?}");
    assert_eq!(usage.allocation_bytes + usage.available_bytes, usage.capacity_bytes, "{usage:?}");
    fx.dd(&path, 0, 0x5a);
    fx.dd(&path, 64 * MIB, 0x5a);
    let after = fx.pool.usage().expect("usage");
    assert!(after.allocation_bytes > usage.allocation_bytes, "{usage:?} then {after:?}");
    assert!(fx.listed("v1").expect("listed").allocation_bytes >= 128 * 1024, "two chunks written");

    fx.pool.delete("v1").expect("delete");
    assert!(fx.listed("v1").is_none());
    assert!(fx.attrs(&fx.lv("v1")).is_none(), "LV removed");
    assert!(!path.exists(), "device node removed");
    fx.pool.delete("v1").expect("delete a missing volume");
    fx.pool.delete("odd").expect("delete");
    assert!(fx.ids().is_empty());
}

#[test]
fn lvs_that_are_not_this_hosts_are_neither_listed_nor_changed() {
    if skip("lvs_that_are_not_this_hosts_are_neither_listed_nor_changed") {
        return;
    }
    let fx = Fixture::new("foreign");
    fx.pool.create("mine", 16 * MIB, &SourceSpec::Empty).expect("create");
    let host_tag = format!("hci-host={}", fx.host);
    fx.thin_lv("other", &[]);
    fx.thin_lv(&fx.lv("untagged"), &[]);
    fx.thin_lv(&fx.lv("elsewhere"), &["hci-host=someone-else"]);
    fx.lvm(&["lvcreate", "-L", "8m", "-n", &fx.lv("thick"), "--addtag", &host_tag, &fx.vg]);
    assert_eq!(fx.ids(), ["mine"]);
    for id in ["untagged", "elsewhere", "thick"] {
        let err = fx.pool.delete(id).expect_err("not ours to delete");
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(fx.pool.create(id, 16 * MIB, &SourceSpec::Empty).is_err(), "{id}: not ours to replace");
        assert!(fx.pool.resize(id, 64 * MIB).is_err(), "{id}: not ours to grow");
        let clone = SourceSpec::Clone { from_volume: id.into(), snapshot: None };
        assert!(fx.pool.create(&format!("from-{id}"), 64 * MIB, &clone).is_err(), "{id}: not ours to clone");
        assert!(fx.attrs(&fx.lv(id)).is_some(), "{id} untouched");
    }
    assert!(fx.attrs("other").is_some());

    // Host `<host>-x` shares the name prefix `hci-<host>-x-` with volume ids `x-...` of this host;
    // the ownership tag keeps them apart both ways.
    let neighbour = LvmThinPool::open("p", &format!("{}-x", fx.host), &fx.vg, "pool").expect("open");
    fx.pool.create("x-v", 16 * MIB, &SourceSpec::Empty).expect("create x-v");
    assert!(neighbour.list().expect("list").is_empty(), "hci-<host>-x-v is not the neighbour's volume v");
    assert!(neighbour.create("v", 16 * MIB, &SourceSpec::Empty).is_err(), "nor can it take the name over");
    assert!(neighbour.delete("v").is_err());
    assert!(fx.listed("x-v").is_some());
    // The same host through a second handle sees the same volumes.
    let again = LvmThinPool::open("p", &fx.host, &fx.vg, "pool").expect("open again");
    assert_eq!(again.list().expect("list"), fx.pool.list().expect("list"));
}

#[test]
fn volumes_from_images_hold_the_image_bytes() {
    if skip("volumes_from_images_hold_the_image_bytes") {
        return;
    }
    let fx = Fixture::new("image");
    for (image, format, pattern) in
        [(fx.qcow2_image(8 * MIB, 0xab), "qcow2", 0xabu8), (fx.raw_image(4 * MIB, 0xcd), "raw", 0xcdu8)]
    {
        let id = format!("from-{format}");
        let source = SourceSpec::Image { path: image.clone(), format: format.into() };
        let info = fx.pool.create(&id, 16 * MIB, &source).expect("create from image");
        assert_eq!(info.capacity_bytes, 16 * MIB);
        let path = block_path(&info);
        assert_eq!(read_at(&path, 0, KIB64), vec![pattern; KIB64]);
        assert_eq!(read_at(&path, KIB64 as u64, 4096), vec![0u8; 4096]);
        assert!(info.allocation_bytes < 4 * MIB, "only the image's data was written: {info:?}");
        assert_eq!(fx.pool.create(&id, 16 * MIB, &source).expect("idempotent"), info);
        let (_, tags) = fx.attrs(&fx.lv(&id)).expect("the LV");
        assert!(!tags.contains("hci-creating"), "{tags}");

        // Never smaller than the image: refused before anything is made.
        let small = format!("small-{format}");
        let err = fx.pool.create(&small, MIB, &source).expect_err("smaller than the image");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(fx.attrs(&fx.lv(&small)).is_none());
    }
    let missing = SourceSpec::Image { path: fx.dir.path().join("nope.qcow2"), format: "qcow2".into() };
    assert!(fx.pool.create("missing-image", 16 * MIB, &missing).is_err());
    let relative = SourceSpec::Image { path: "img.qcow2".into(), format: "qcow2".into() };
    assert!(fx.pool.create("relative-image", 16 * MIB, &relative).is_err());
    let chained = fx.dir.path().join("chained.qcow2");
    let base = fx.dir.path().join("img.qcow2").to_string_lossy().into_owned();
    run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &chained.to_string_lossy()]);
    let err = fx
        .pool
        .create("chained", 16 * MIB, &SourceSpec::Image { path: chained, format: "qcow2".into() })
        .expect_err("image with a backing file");
    assert!(err.to_string().contains("backing file"), "{err}");
    assert_eq!(fx.ids(), ["from-qcow2", "from-raw"], "nothing left of the refused creates");
}

#[test]
fn clones_are_independent_thin_snapshots() {
    if skip("clones_are_independent_thin_snapshots") {
        return;
    }
    let fx = Fixture::new("clone");
    let image = fx.qcow2_image(8 * MIB, 0xab);
    let base =
        fx.pool.create("base", 16 * MIB, &SourceSpec::Image { path: image, format: "qcow2".into() }).expect("base");
    let base_path = block_path(&base);
    fx.dd(&base_path, MIB, 0x11);

    let from_base = SourceSpec::Clone { from_volume: "base".into(), snapshot: None };
    let err = fx.pool.create("tiny", 8 * MIB, &from_base).expect_err("smaller than the source");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(matches!(
        fx.pool.create("orphan", 16 * MIB, &SourceSpec::Clone { from_volume: "ghost".into(), snapshot: None }),
        Err(VolumeError::NoSuchVolume(v)) if v == "ghost"
    ));
    assert!(fx.pool.create("base", 16 * MIB, &from_base).is_ok(), "an existing volume is returned as it is");
    assert!(fx
        .pool
        .create("self", 16 * MIB, &SourceSpec::Clone { from_volume: "self".into(), snapshot: None })
        .is_err());

    let copy = fx.pool.create("copy", 32 * MIB, &from_base).expect("clone");
    assert_eq!(copy.capacity_bytes, 32 * MIB, "grown to the size asked for");
    let copy_path = block_path(&copy);
    assert_eq!(device_size(&copy_path), 32 * MIB);
    let (attr, tags) = fx.attrs(&fx.lv("copy")).expect("the clone LV");
    assert!(attr.starts_with("Vwi-a") && !attr.ends_with('k'), "active, without activation skip: {attr}");
    assert_eq!(tags, format!("hci-host={}", fx.host));
    assert_eq!(read_at(&copy_path, 0, KIB64), vec![0xab; KIB64]);
    assert_eq!(read_at(&copy_path, MIB, KIB64), vec![0x11; KIB64]);
    assert_eq!(read_at(&copy_path, 16 * MIB, 4096), vec![0u8; 4096], "the grown part reads as zeros");
    assert_eq!(fx.pool.create("copy", 32 * MIB, &from_base).expect("idempotent"), copy);

    // Independent: writes to the clone do not reach the source, and the source can go.
    fx.dd(&copy_path, 0, 0x22);
    assert_eq!(read_at(&copy_path, 0, KIB64), vec![0x22; KIB64]);
    assert_eq!(read_at(&base_path, 0, KIB64), vec![0xab; KIB64], "source unchanged");
    fx.pool.delete("base").expect("delete the source");
    assert_eq!(read_at(&copy_path, MIB, KIB64), vec![0x11; KIB64]);
    assert_eq!(read_at(&copy_path, 0, KIB64), vec![0x22; KIB64]);
    assert_eq!(fx.ids(), ["copy"]);

    // A clone deactivated (as after a reboot, or made by LVM with activation skip) is activated again.
    fx.lvm(&["lvchange", "-an", &format!("{}/{}", fx.vg, fx.lv("copy"))]);
    assert!(!copy_path.exists());
    assert_eq!(fx.pool.create("copy", 32 * MIB, &from_base).expect("activated").capacity_bytes, 32 * MIB);
    assert_eq!(read_at(&copy_path, 0, KIB64), vec![0x22; KIB64]);
}

#[test]
fn interrupted_creates_are_detected_and_redone() {
    if skip("interrupted_creates_are_detected_and_redone") {
        return;
    }
    let fx = Fixture::new("crash");
    let host_tag = format!("hci-host={}", fx.host);
    // An LV still tagged hci-creating: a create that was killed before it finished filling the LV.
    fx.thin_lv(&fx.lv("marked"), &["hci-creating", &host_tag]);
    fx.dd(&fx.device("marked"), 0, 0x77);
    assert!(fx.listed("marked").is_none(), "an unfinished volume is not listed");
    assert!(matches!(fx.pool.resize("marked", 64 * MIB), Err(VolumeError::NoSuchVolume(_))));
    let again = fx.pool.create("marked", 32 * MIB, &SourceSpec::Empty).expect("recreate");
    assert_eq!(again.capacity_bytes, 32 * MIB, "made anew, at the size asked for now");
    assert_eq!(read_at(&fx.device("marked"), 0, KIB64), vec![0u8; KIB64], "recreated from scratch");
    assert_eq!(fx.attrs(&fx.lv("marked")).expect("LV").1, host_tag, "tag removed once complete");
    assert_eq!(fx.listed("marked"), Some(again));

    // An image create cut short: the LV exists, tagged, without the image's bytes.
    fx.thin_lv(&fx.lv("img"), &["hci-creating", &host_tag]);
    let image = fx.qcow2_image(8 * MIB, 0xab);
    let info = fx
        .pool
        .create("img", 16 * MIB, &SourceSpec::Image { path: image, format: "qcow2".into() })
        .expect("recreate from the image");
    assert_eq!(read_at(&block_path(&info), 0, KIB64), vec![0xab; KIB64]);

    // A clone cut short, and an unfinished LV that is deleted instead of recreated.
    fx.thin_lv(&fx.lv("copy"), &["hci-creating", &host_tag]);
    let copy = fx
        .pool
        .create("copy", 16 * MIB, &SourceSpec::Clone { from_volume: "img".into(), snapshot: None })
        .expect("clone");
    assert_eq!(read_at(&block_path(&copy), 0, KIB64), vec![0xab; KIB64]);
    fx.thin_lv(&fx.lv("half"), &["hci-creating", &host_tag]);
    fx.pool.delete("half").expect("delete an unfinished volume");
    assert!(fx.attrs(&fx.lv("half")).is_none());
    // A clone of an unfinished volume is refused: there is no such volume yet.
    fx.thin_lv(&fx.lv("half2"), &["hci-creating", &host_tag]);
    let from_half = SourceSpec::Clone { from_volume: "half2".into(), snapshot: None };
    assert!(matches!(fx.pool.create("c2", 16 * MIB, &from_half), Err(VolumeError::NoSuchVolume(_))));
    assert_eq!(fx.ids(), ["copy", "img", "marked"]);
}

#[test]
fn open_checks_the_volume_group_and_the_thin_pool() {
    if skip("open_checks_the_volume_group_and_the_thin_pool") {
        return;
    }
    let fx = Fixture::new("open");
    let host = fx.host.as_str();
    let nope_vg = format!("{}-nope", fx.vg);
    let err = LvmThinPool::open("p", host, &nope_vg, "pool").expect_err("no such VG");
    assert!(err.to_string().contains(&format!("volume group {nope_vg} not found")), "{err}");
    let err = LvmThinPool::open("p", host, &fx.vg, "nope").expect_err("no such thin pool");
    assert!(err.to_string().contains(&format!("thin pool nope not found in volume group {}", fx.vg)), "{err}");
    fx.lvm(&["lvcreate", "-L", "8m", "-n", "plain", &fx.vg]);
    let err = LvmThinPool::open("p", host, &fx.vg, "plain").expect_err("not a thin pool");
    assert!(err.to_string().contains("is a linear LV, not a thin pool"), "{err}");
    fx.lvm(&["lvcreate", "--type", "thin-pool", "-Zn", "-L", "64m", "-n", "nozero", &fx.vg]);
    let err = LvmThinPool::open("p", host, &fx.vg, "nozero").expect_err("a pool that does not zero");
    assert!(err.to_string().contains("lvchange -Zy"), "{err}");
    for (pool, host, vg, thin) in [
        ("a/b", host, fx.vg.as_str(), "pool"),
        ("p", "../h", &fx.vg, "pool"),
        ("p", host, "-vg", "pool"),
        ("p", host, &fx.vg, "a b"),
    ] {
        assert!(LvmThinPool::open(pool, host, vg, thin).is_err(), "{pool} {host} {vg} {thin}");
    }

    // A thin pool found inactive (no thin volume active on it) is activated by open.
    fx.lvm(&["lvchange", "-an", &format!("{}/pool", fx.vg)]);
    assert!(fx.pool.usage().is_err(), "an inactive pool's use is not known");
    let reopened = LvmThinPool::open("p", host, &fx.vg, "pool").expect("open an inactive pool");
    assert!(fx.attrs("pool").expect("pool").0.starts_with("twi-a"), "activated");
    let usage = reopened.usage().expect("usage");
    assert_eq!(usage.capacity_bytes, 1536 * MIB);
    let info = reopened.create("v", 16 * MIB, &SourceSpec::Empty).expect("create");
    assert_eq!(fx.pool.list().expect("list"), vec![info]);
}

#[test]
fn thin_snapshots_roll_back_clone_and_go_with_their_volume() {
    if skip("thin_snapshots_roll_back_clone_and_go_with_their_volume") {
        return;
    }
    let fx = Fixture::new("snap");
    let host_tag = format!("hci-host={}", fx.host);
    let path = block_path(&fx.pool.create("v", 16 * MIB, &SourceSpec::Empty).expect("create"));
    fx.dd(&path, 0, 0xaa);
    fx.pool.snapshot("v", "before").expect("snapshot");
    fx.pool.snapshot("v", "before").expect("taking an existing snapshot again is Ok");
    fx.dd(&path, 0, 0xbb);
    fx.pool.snapshot("v", "after").expect("second snapshot");
    fx.dd(&path, 0, 0xcc);
    assert_eq!(fx.pool.list_snapshots("v").expect("list"), ["before", "after"], "oldest first");
    let snap_lv = format!("{}+before", fx.lv("v"));
    let (attr, tags) = fx.attrs(&snap_lv).expect("the snapshot's LV");
    assert!(attr.starts_with('V') && attr.ends_with('k'), "a thin LV with activation skip: {attr}");
    assert!(tags.split(',').any(|t| t == host_tag) && tags.split(',').any(|t| t == "hci-seq=1"), "{tags}");
    assert_eq!(fx.ids(), ["v"], "snapshots are not volumes");

    // Grown after the snapshots: a rollback brings the bytes back and keeps the capacity.
    fx.pool.resize("v", 24 * MIB).expect("grow");
    fx.dd(&path, 20 * MIB, 0xdd);
    fx.pool.rollback("v", "before").expect("rollback");
    assert_eq!(read_at(&path, 0, KIB64), vec![0xaa; KIB64], "the snapshot's bytes are back");
    assert_eq!((device_size(&path), fx.listed("v").map(|v| v.capacity_bytes)), (24 * MIB, Some(24 * MIB)));
    assert_eq!(read_at(&path, 20 * MIB, KIB64), vec![0; KIB64], "what came after reads as zeros");
    assert_eq!(fx.pool.list_snapshots("v").expect("list"), ["before", "after"], "every snapshot stays");
    fx.pool.rollback("v", "after").expect("a second rollback, to the other snapshot");
    assert_eq!(read_at(&path, 0, KIB64), vec![0xbb; KIB64]);
    assert!(matches!(fx.pool.rollback("v", "nope"), Err(VolumeError::NoSuchSnapshot { .. })));
    let holder = File::open(&path).expect("hold the volume open");
    let err = fx.pool.rollback("v", "before").expect_err("rollback of an open volume");
    assert!(err.to_string().contains("open"), "{err}");
    drop(holder);

    // A rollback cut short after the volume was set aside: the next create finishes it.
    let (new, old) = (format!("{}++new", fx.lv("v")), format!("{}++old", fx.lv("v")));
    let from = format!("{}/{snap_lv}", fx.vg);
    fx.lvm(&["lvcreate", "--snapshot", "--setactivationskip", "n", "-ay", "-n", &new, "--addtag", &host_tag, &from]);
    fx.lvm(&["lvrename", &fx.vg, &fx.lv("v"), &old]);
    assert!(fx.listed("v").is_none());
    fx.pool.create("v", 24 * MIB, &SourceSpec::Empty).expect("create settles the rollback");
    assert_eq!(read_at(&path, 0, KIB64), vec![0xaa; KIB64], "the copy took the volume's place");
    assert!(fx.attrs(&new).is_none() && fx.attrs(&old).is_none(), "no rollback LV left");

    // A clone from a snapshot: independent of the snapshot and of the volume.
    let from_after = SourceSpec::Clone { from_volume: "v".into(), snapshot: Some("after".into()) };
    let missing = SourceSpec::Clone { from_volume: "v".into(), snapshot: Some("nope".into()) };
    assert!(matches!(fx.pool.create("c", 16 * MIB, &missing), Err(VolumeError::NoSuchSnapshot { .. })));
    let clone = block_path(&fx.pool.create("c", 16 * MIB, &from_after).expect("clone from a snapshot"));
    assert_eq!(read_at(&clone, 0, KIB64), vec![0xbb; KIB64]);
    fx.pool.delete_snapshot("v", "after").expect("delete a snapshot");
    fx.pool.delete_snapshot("v", "after").expect("deleting a missing snapshot is Ok");
    assert_eq!(fx.pool.list_snapshots("v").expect("list"), ["before"]);
    fx.pool.delete("v").expect("delete a volume with a snapshot");
    for lv in [fx.lv("v"), snap_lv, new, old] {
        assert!(fx.attrs(&lv).is_none(), "{lv} is gone");
    }
    assert_eq!(read_at(&clone, 0, KIB64), vec![0xbb; KIB64], "the clone outlives its source");
    assert!(matches!(fx.pool.snapshot("v", "x"), Err(VolumeError::NoSuchVolume(_))));

    for bad in ["", "a@b", "a/b", "../x", "-x"] {
        for err in [
            fx.pool.snapshot("c", bad).expect_err(bad),
            fx.pool.rollback("c", bad).expect_err(bad),
            fx.pool.delete_snapshot("c", bad).expect_err(bad),
        ] {
            assert!(err.to_string().contains("snapshot name"), "{bad:?}: {err}");
        }
    }
    assert_eq!(fx.ids(), ["c"]);
}
