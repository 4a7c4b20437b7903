//! `RbdPool` against a real one-node Ceph cluster (scripts/ceph/up.sh in a temporary directory) and a
//! private libvirtd (scripts/libvirt/host.sh): empty volumes, idempotent create, grow and refused
//! shrink, volumes from a qcow2 image (bytes checked with `rbd export`), independent clones, delete,
//! interrupted creates, foreign images left alone, libvirtd and Ceph restarts; snapshots (bytes
//! written with qemu-io, snapshot, overwrite, list, roll back and back again, clones from a snapshot
//! that outlive their source, refused rollback of an open image, delete with snapshots, bad names);
//! and the test guest booted with `LibvirtHypervisor` from a local qcow2 boot disk with its data disk
//! on an RBD volume, whose marker is then read back from the cluster.
//!
//! Needs root, `scripts/libvirt/up.sh` (packages) and qemu-img/qemu-io; up.sh installs Ceph when it
//! is missing. HCI_SKIP_CEPH=1 or HCI_SKIP_LIBVIRT=1 skips. The cluster and the libvirtd are shared
//! by the tests of this binary (one at a time: 2 cores) and removed by a Drop guard when the last test
//! lets go of them, however it ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::{DiskSource, DiskSpec, DomainSpec, Hypervisor};
use hci_agent::volumes::rbd::RbdPool;
use hci_agent::volumes::{SourceSpec, VolumeBackend, VolumeError};
use hci_firmware_profiles::Profiles;

const MIB: u64 = 1 << 20;
const HOST: &str = "rbdtest";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn skip(test: &str) -> bool {
    let off = ["HCI_SKIP_CEPH", "HCI_SKIP_LIBVIRT"].iter().any(|v| std::env::var(v).is_ok_and(|v| v == "1"));
    if off {
        eprintln!("{test}: skipped (HCI_SKIP_CEPH=1 or HCI_SKIP_LIBVIRT=1)");
    }
    off
}

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The last line a script printed (up.sh: the monitor address; host.sh: the URI).
fn script(path: &str, args: &[&str]) -> String {
    let started = Instant::now();
    let out = run(&repo().join(path).to_string_lossy(), args);
    let last = String::from_utf8_lossy(&out).lines().last().unwrap_or("").to_string();
    eprintln!("{path} {args:?}: {:?}", started.elapsed());
    last
}

/// The cluster, the private libvirtd and the pool, shared by the tests; torn down on the last drop.
struct Env {
    /// Holds the cluster directory `cluster/`.
    dir: tempfile::TempDir,
    libvirt_id: String,
    uri: String,
    monitor: String,
    pool: Option<RbdPool>,
    /// Serialises the tests (2 cores; the restarts would disturb a boot).
    serial: Mutex<()>,
}

impl Env {
    fn get() -> Arc<Env> {
        static SHARED: Mutex<Weak<Env>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(env) = shared.upgrade() {
            return env;
        }
        let env = Arc::new(Env::start());
        *shared = Arc::downgrade(&env);
        env
    }

    fn start() -> Env {
        // libvirt's QEMU (user libvirt-qemu) reaches the boot disk in here.
        let dir = tempfile::Builder::new().prefix("hci-rbd-test-").tempdir_in("/var/tmp").expect("tempdir");
        set_mode(dir.path(), 0o755);
        let mut env = Env {
            dir,
            libvirt_id: format!("rbd-{}", std::process::id()),
            uri: String::new(),
            monitor: String::new(),
            pool: None,
            serial: Mutex::new(()),
        };
        // The guard exists before anything starts: a failing start is cleaned up too.
        let started = Instant::now();
        env.monitor = script("scripts/ceph/up.sh", &[&env.cluster().to_string_lossy()]);
        eprintln!("ceph cluster up in {:?}, monitor {}", started.elapsed(), env.monitor);
        env.uri = script("scripts/libvirt/host.sh", &["up", &env.libvirt_id]);
        let t = Instant::now();
        env.pool = Some(env.open_pool("hci").unwrap_or_else(|e| panic!("opening the rbd pool: {e}")));
        eprintln!("RbdPool::open (defines and starts the libvirt pool): {:?}", t.elapsed());
        env
    }

    fn cluster(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn conf(&self) -> String {
        self.cluster().join("ceph.conf").to_string_lossy().into_owned()
    }

    fn open_pool(&self, rbd_pool: &str) -> Result<RbdPool, VolumeError> {
        RbdPool::open(&self.uri, "p", HOST, rbd_pool, std::slice::from_ref(&self.monitor))
    }

    fn pool(&self) -> &RbdPool {
        self.pool.as_ref().expect("pool opened")
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rbd(&self, args: &[&str]) -> Vec<u8> {
        let conf = self.conf();
        let mut all = vec!["-c", conf.as_str()];
        all.extend_from_slice(args);
        run("rbd", &all)
    }

    /// The entries of `rbd ls -l hci`: images and their snapshots.
    fn entries(&self) -> Vec<serde_json::Value> {
        let json: serde_json::Value =
            serde_json::from_slice(&self.rbd(&["ls", "-l", "--format", "json", "hci"])).expect("rbd ls JSON");
        json.as_array().expect("array").clone()
    }

    /// `rbd ls -l hci`: image name -> size.
    fn images(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .entries()
            .iter()
            .filter(|i| i.get("snapshot").is_none())
            .map(|i| (i["image"].as_str().expect("name").to_string(), i["size"].as_u64().expect("size")))
            .collect();
        out.sort();
        out
    }

    fn size_of(&self, image: &str) -> Option<u64> {
        self.images().into_iter().find(|(n, _)| n == image).map(|(_, s)| s)
    }

    /// The first `len` bytes of an image, through `rbd export`.
    fn head(&self, image: &str, len: usize) -> Vec<u8> {
        let mut bytes = self.rbd(&["export", "--no-progress", &format!("hci/{image}"), "-"]);
        bytes.truncate(len);
        bytes
    }

    /// A QEMU `rbd:` file name for qemu-io.
    fn qemu_name(&self, image: &str) -> String {
        format!("rbd:hci/{image}:mon_host={}:auth_client_required=none", self.monitor.replace(':', "\\:"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let name = pool.libvirt_name().to_string();
            drop(pool);
            if let Ok(conn) = virt::connect::Connect::open(Some(&self.uri)) {
                if let Ok(p) = conn.lookup_storage_pool_by_name(&name) {
                    let _ = p.destroy();
                    let _ = p.undefine();
                }
            }
        }
        let host = repo().join("scripts/libvirt/host.sh");
        let _ = Command::new(host).args(["down", &self.libvirt_id, "--purge"]).output();
        let down = repo().join("scripts/ceph/down.sh");
        match Command::new(down).arg(self.cluster()).arg("--purge").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("cleanup: ceph down.sh: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("cleanup: ceph down.sh: {e}"),
        }
    }
}

/// The live XML of a libvirt storage pool.
fn pool_xml(uri: &str, name: &str) -> String {
    let conn = virt::connect::Connect::open(Some(uri)).expect("connect");
    conn.lookup_storage_pool_by_name(name).and_then(|p| p.xml_desc(0)).expect("pool XML")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn qcow2_image(dir: &Path, size: u64, pattern: u8) -> PathBuf {
    let path = dir.join(format!("img-{pattern:x}.qcow2"));
    let p = path.to_string_lossy();
    run("qemu-img", &["create", "-q", "-f", "qcow2", &p, &size.to_string()]);
    run("qemu-io", &["-f", "qcow2", "-c", &format!("write -P {pattern:#x} 0 64k"), &p]);
    path
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    eprintln!("{what}: {:?}", t.elapsed());
    out
}

#[test]
fn rbd_volumes_create_grow_clone_delete_and_recover() {
    if skip("volumes") {
        return;
    }
    let env = Env::get();
    let _serial = env.lock();
    let pool = env.pool();
    assert_eq!(pool.kind(), "rbd");
    assert_eq!(pool.pool(), "p");
    env.rbd(&["create", "hci/foreign", "--size", "1M"]);

    // Empty, idempotent, grow, refused shrink.
    let info = timed("create empty 32 MiB", || pool.create("e1", 32 * MIB, &SourceSpec::Empty).expect("create"));
    assert_eq!(info.capacity_bytes, 32 * MIB);
    assert_eq!(
        info.disk,
        DiskSource::Rbd { pool: "hci".into(), image: "hci-e1".into(), monitors: vec![env.monitor.clone()] }
    );
    assert_eq!(env.size_of("hci-e1"), Some(32 * MIB));
    let again = timed("create again (exists)", || pool.create("e1", 64 * MIB, &SourceSpec::Empty).expect("again"));
    assert_eq!(again.capacity_bytes, 32 * MIB, "an existing volume is returned as it is");
    assert_eq!(env.images().iter().filter(|(n, _)| n.starts_with("hci-e1")).count(), 1);
    let grown = timed("grow to 48 MiB", || pool.resize("e1", 48 * MIB).expect("grow"));
    assert_eq!((grown.capacity_bytes, env.size_of("hci-e1")), (48 * MIB, Some(48 * MIB)));
    let err = pool.resize("e1", 16 * MIB).expect_err("shrink refused");
    assert!(matches!(err, VolumeError::Shrink { from, to, .. } if from == 48 * MIB && to == 16 * MIB), "{err}");
    assert_eq!(env.size_of("hci-e1"), Some(48 * MIB));
    assert!(matches!(pool.resize("nope", MIB), Err(VolumeError::NoSuchVolume(_))));

    // From a qcow2 image: converted to raw into the volume.
    let image = qcow2_image(env.dir.path(), 16 * MIB, 0xab);
    let from_image = SourceSpec::Image { path: image.clone(), format: "qcow2".into() };
    let img = timed("create 32 MiB from a 16 MiB qcow2", || pool.create("i1", 32 * MIB, &from_image).expect("image"));
    assert_eq!(img.capacity_bytes, 32 * MIB);
    assert_eq!(env.head("hci-i1", 64 * 1024 + 512), [vec![0xab; 64 * 1024], vec![0; 512]].concat());
    let small = pool.create("i2", 8 * MIB, &from_image).expect_err("image larger than the volume");
    assert!(matches!(small, VolumeError::Volume { action: "checking the size", .. }), "{small}");

    // Clone: a full, flattened copy, independent of its source.
    let clone = SourceSpec::Clone { from_volume: "i1".into(), snapshot: None };
    let c1 = timed("clone 32 MiB -> 40 MiB", || pool.create("c1", 40 * MIB, &clone).expect("clone"));
    assert_eq!((c1.capacity_bytes, env.size_of("hci-c1")), (40 * MIB, Some(40 * MIB)));
    let info: serde_json::Value =
        serde_json::from_slice(&env.rbd(&["info", "--format", "json", "hci/hci-c1"])).expect("rbd info JSON");
    assert!(info.get("parent").is_none(), "not a COW child: {info}");
    run("qemu-io", &["-f", "raw", "-c", "write -P 0xcd 0 4k", &env.qemu_name("hci-i1")]);
    assert_eq!(env.head("hci-i1", 1), [0xcd]);
    assert_eq!(env.head("hci-c1", 64 * 1024), vec![0xab; 64 * 1024], "the clone did not change");
    timed("delete", || pool.delete("i1").expect("delete the source"));
    assert_eq!(env.head("hci-c1", 4), [0xab; 4], "the clone outlives its source");
    assert!(matches!(pool.create("c2", 64 * MIB, &clone), Err(VolumeError::NoSuchVolume(_))));

    // Interrupted creates: a marker left behind hides the volume; create redoes it, delete clears it.
    env.rbd(&["create", "hci/hci-e1+creating", "--size", "1"]);
    assert!(!pool.list().expect("list").iter().any(|v| v.id == "e1"), "an interrupted create is not listed");
    let redone = pool.create("e1", 24 * MIB, &SourceSpec::Empty).expect("redo the interrupted create");
    assert_eq!((redone.capacity_bytes, env.size_of("hci-e1")), (24 * MIB, Some(24 * MIB)));
    assert_eq!(env.size_of("hci-e1+creating"), None, "the marker is gone");
    env.rbd(&["create", "hci/hci-ghost+creating", "--size", "1"]);
    pool.delete("ghost").expect("delete a marker-only volume");
    assert_eq!(env.size_of("hci-ghost+creating"), None);

    // Listing: hci volumes only; usage from the pool.
    let ids: Vec<_> = pool.list().expect("list").into_iter().map(|v| (v.id, v.capacity_bytes)).collect();
    assert_eq!(ids, vec![("c1".to_string(), 40 * MIB), ("e1".to_string(), 24 * MIB)]);
    let usage = pool.usage().expect("usage");
    assert!(usage.capacity_bytes >= 3 << 30 && usage.available_bytes > 0, "{usage:?}");

    // Moved monitors: the pool is redefined (same UUID) and restarted with the new list, and back.
    let uuid = |xml: &str| xml.split("<uuid>").nth(1).and_then(|r| r.split('<').next()).map(str::to_string);
    let before = uuid(&pool_xml(&env.uri, pool.libvirt_name()));
    let twice = [env.monitor.clone(), env.monitor.clone()];
    let moved = timed("open with another monitor list", || RbdPool::open(&env.uri, "p", HOST, "hci", &twice))
        .expect("open with another monitor list");
    assert_eq!(moved.list().expect("list through the redefined pool").len(), 2);
    let xml = pool_xml(&env.uri, pool.libvirt_name());
    assert_eq!(xml.matches("<host ").count(), 2, "{xml}");
    assert!(before.is_some() && uuid(&xml) == before, "redefined in place: {xml}");
    timed("open with the original monitors", || env.open_pool("hci").expect("open with the original monitors"));
    assert_eq!(pool_xml(&env.uri, pool.libvirt_name()).matches("<host ").count(), 1);

    // Open again: the same pool; another RBD pool under the same libvirt name is refused.
    timed("open again", || env.open_pool("hci").expect("reopen"));
    let err = env.open_pool("other").expect_err("another RBD pool under the same name");
    assert!(err.to_string().contains("refusing"), "{err}");

    // libvirtd restarts under the live pool: reconnect; the pool comes back (autostart).
    script("scripts/libvirt/host.sh", &["down", &env.libvirt_id]);
    assert!(pool.list().is_err(), "libvirtd is down");
    script("scripts/libvirt/host.sh", &["up", &env.libvirt_id]);
    assert_eq!(pool.list().expect("list after the libvirtd restart").len(), 2);

    // Ceph restarts (same directory, same monitor port): libvirt connects per call.
    let cluster = env.cluster().to_string_lossy().into_owned();
    script("scripts/ceph/down.sh", &[&cluster]);
    let monitor = timed("ceph restart (up.sh on the stopped cluster)", || script("scripts/ceph/up.sh", &[&cluster]));
    assert_eq!(monitor, env.monitor);
    assert_eq!(pool.list().expect("list after the Ceph restart").len(), 2);

    for id in ["e1", "c1"] {
        pool.delete(id).expect("delete");
        pool.delete(id).expect("deleting a missing volume is Ok");
    }
    assert_eq!(env.images(), vec![("foreign".to_string(), MIB)], "only the foreign image is left");
    env.rbd(&["rm", "--no-progress", "hci/foreign"]);
}

/// Writes 64 KiB of `pattern` at `offset` of an image, through QEMU's rbd driver.
fn write_pattern(env: &Env, image: &str, pattern: u8, offset: u64) {
    run("qemu-io", &["-f", "raw", "-c", &format!("write -P {pattern:#x} {offset} 64k"), &env.qemu_name(image)]);
}

/// `len` bytes of an image at `offset`, through `rbd export`.
fn bytes_at(env: &Env, image: &str, offset: usize, len: usize) -> Vec<u8> {
    env.head(image, offset + len).split_off(offset)
}

#[test]
fn rbd_snapshots_roll_back_clone_and_go_with_their_volume() {
    if skip("snapshots") {
        return;
    }
    let env = Env::get();
    let _serial = env.lock();
    let pool = env.pool();
    const K64: usize = 64 * 1024;
    pool.create("s1", 16 * MIB, &SourceSpec::Empty).expect("create");
    write_pattern(&env, "hci-s1", 0xaa, 0);

    // Take, idempotently; overwrite; take another; list oldest first.
    timed("snapshot", || pool.snapshot("s1", "before").expect("snapshot"));
    pool.snapshot("s1", "before").expect("taking an existing snapshot again is Ok");
    write_pattern(&env, "hci-s1", 0xbb, 0);
    pool.snapshot("s1", "after").expect("second snapshot");
    write_pattern(&env, "hci-s1", 0xcc, 0);
    assert_eq!(timed("list snapshots", || pool.list_snapshots("s1").expect("list")), ["before", "after"]);

    // Grown after the snapshots: a rollback brings the bytes back and keeps the capacity.
    pool.resize("s1", 24 * MIB).expect("grow");
    write_pattern(&env, "hci-s1", 0xdd, 20 * MIB);
    timed("rollback (24 MiB volume)", || pool.rollback("s1", "before").expect("rollback"));
    assert_eq!(bytes_at(&env, "hci-s1", 0, K64), vec![0xaa; K64], "the snapshot's bytes are back");
    assert_eq!(env.size_of("hci-s1"), Some(24 * MIB), "the capacity stays");
    let listed = pool.list().expect("list").into_iter().find(|v| v.id == "s1").map(|v| v.capacity_bytes);
    assert_eq!(listed, Some(24 * MIB));
    assert_eq!(bytes_at(&env, "hci-s1", 20 * MIB as usize, K64), vec![0; K64], "what came after reads as zeros");
    assert_eq!(pool.list_snapshots("s1").expect("list"), ["before", "after"], "every snapshot stays");
    pool.rollback("s1", "after").expect("roll forward to the later snapshot");
    assert_eq!(bytes_at(&env, "hci-s1", 0, K64), vec![0xbb; K64]);
    assert!(matches!(pool.rollback("s1", "nope"), Err(VolumeError::NoSuchSnapshot { .. })));

    // A client holding the image open (as a running VM's QEMU does): the rollback is refused.
    let mut holder = Command::new("qemu-io")
        .args(["-f", "raw", &env.qemu_name("hci-s1")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&env.rbd(&["status", "--format", "json", "hci/hci-s1"])).contains("address") {
        assert!(Instant::now() < deadline, "qemu-io did not open the image");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = pool.rollback("s1", "before").expect_err("rollback of an open image");
    assert!(err.to_string().contains("open"), "{err}");
    drop(holder.stdin.take());
    holder.wait().expect("qemu-io exits");
    assert_eq!(bytes_at(&env, "hci-s1", 0, K64), vec![0xbb; K64], "nothing was rolled back");

    // A clone from a snapshot: a flattened copy of the snapshot's bytes that outlives the source.
    let from_before = SourceSpec::Clone { from_volume: "s1".into(), snapshot: Some("before".into()) };
    let small = pool.create("s2", 8 * MIB, &from_before).expect_err("smaller than the snapshot");
    assert!(matches!(small, VolumeError::Volume { action: "cloning", .. }), "{small}");
    let missing = SourceSpec::Clone { from_volume: "s1".into(), snapshot: Some("nope".into()) };
    assert!(matches!(pool.create("s2", 16 * MIB, &missing), Err(VolumeError::NoSuchSnapshot { .. })));
    timed("clone 16 MiB from a snapshot", || pool.create("s2", 16 * MIB, &from_before).expect("clone"));
    assert_eq!(bytes_at(&env, "hci-s2", 0, K64), vec![0xaa; K64]);
    let info: serde_json::Value =
        serde_json::from_slice(&env.rbd(&["info", "--format", "json", "hci/hci-s2"])).expect("rbd info JSON");
    assert!(info.get("parent").is_none() && info["snapshot_count"] == 0, "independent: {info}");

    // Delete a snapshot (twice, and of a missing volume); delete the volume with the other one.
    pool.delete_snapshot("s1", "after").expect("delete snapshot");
    pool.delete_snapshot("s1", "after").expect("deleting a missing snapshot is Ok");
    pool.delete_snapshot("ghost", "after").expect("a snapshot of a missing volume is Ok to delete");
    assert_eq!(pool.list_snapshots("s1").expect("list"), ["before"]);
    timed("delete a volume with a snapshot", || pool.delete("s1").expect("delete with snapshots"));
    let left: Vec<_> = env.entries().into_iter().filter(|e| e["image"] == "hci-s1").collect();
    assert!(left.is_empty(), "neither image nor snapshot is left: {left:?}");
    assert_eq!(bytes_at(&env, "hci-s2", 0, 4), [0xaa; 4], "the clone outlives its source and the snapshot");
    assert!(matches!(pool.snapshot("s1", "x"), Err(VolumeError::NoSuchVolume(_))));
    assert!(matches!(pool.list_snapshots("s1"), Err(VolumeError::NoSuchVolume(_))));

    // Bad names: refused before anything is asked of the cluster, naming the field.
    for bad in ["", "a@b", "a/b", "../x", "-x", "a:b"] {
        for err in [
            pool.snapshot("s2", bad).expect_err(bad),
            pool.rollback("s2", bad).expect_err(bad),
            pool.delete_snapshot("s2", bad).expect_err(bad),
        ] {
            assert!(err.to_string().contains("snapshot name"), "{bad:?}: {err}");
        }
        let from_bad = SourceSpec::Clone { from_volume: "s2".into(), snapshot: Some(bad.into()) };
        assert!(pool.create("s3", 16 * MIB, &from_bad).expect_err(bad).to_string().contains("snapshot name"));
    }
    assert!(pool.list_snapshots("s2").expect("list").is_empty());
    pool.delete("s2").expect("delete the clone");
    assert!(env.images().iter().all(|(n, _)| !n.starts_with("hci-s")), "{:?}", env.images());
}

#[test]
fn guest_writes_its_marker_to_an_rbd_data_disk() {
    if skip("guest") {
        return;
    }
    let env = Env::get();
    let _serial = env.lock();
    let pool = env.pool();
    let guest = repo().join("scripts/guest/build.sh");
    let guest_dir = std::env::var("HCI_TEST_GUEST_DIR").unwrap_or_else(|_| "/var/cache/hci-test-guest".into());
    run(&guest.to_string_lossy(), &[&guest_dir]);
    let boot = env.dir.path().join("os.qcow2");
    std::fs::copy(Path::new(&guest_dir).join("disk.qcow2"), &boot).expect("copy the guest disk");

    let data = timed("create the 16 MiB data volume", || pool.create("data", 16 * MIB, &SourceSpec::Empty))
        .expect("data volume");
    let hv = LibvirtHypervisor::connect(&env.uri).expect("connect to the private libvirtd");
    let name = format!("hci-{HOST}-rbd-{}", std::process::id());
    let marker = format!("rbd-{}", std::process::id());
    let console = env.dir.path().join("console.log");
    let spec = DomainSpec {
        name: name.clone(),
        vm_id: "vm-rbd".into(),
        host_id: HOST.into(),
        generation: 1,
        vcpus: 1,
        memory_mib: 512,
        domain_type: "qemu".into(),
        profile: Profiles::builtin().expect("profiles").get("x86_64-bios").expect("profile").clone(),
        nvram_path: None,
        tpm_state_dir: None,
        disks: vec![
            DiskSpec {
                volume_id: "os".into(),
                source: DiskSource::File { path: boot, format: "qcow2".into() },
                target: "vda".into(),
            },
            DiskSpec { volume_id: "data".into(), source: data.disk.clone(), target: "vdb".into() },
        ],
        nics: vec![],
        console_log: console.clone(),
        oem_strings: vec![format!("hci.marker={marker}"), "hci.heartbeat=0".into()],
    };
    struct Undefine<'a>(&'a LibvirtHypervisor, &'a str);
    impl Drop for Undefine<'_> {
        fn drop(&mut self) {
            if let Err(e) = self.0.undefine(self.1) {
                eprintln!("cleanup: undefine {}: {e}", self.1);
            }
        }
    }
    let _undefine = Undefine(&hv, &name);
    hv.define(&spec).expect("define");
    let t = Instant::now();
    hv.start(&name).expect("start");
    let wanted = format!("HCI-MARKER-WRITTEN {marker}");
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
        if text.contains(&wanted) {
            assert!(text.contains("HCI-MARKER-FOUND none"), "a new volume starts empty:\n{text}");
            assert!(!text.contains("HCI-ERROR"), "{text}");
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let qemu_log = std::fs::read_to_string(format!("/run/hci-hosts/{}/log/qemu/{name}.log", env.libvirt_id));
            panic!("no '{wanted}' within 120 s; console:\n{text}\nQEMU log:\n{}", qemu_log.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("start to HCI-MARKER-WRITTEN with the data disk on RBD (TCG): {:?}", t.elapsed());
    timed("ACPI shutdown", || hv.shutdown(&name, Duration::from_secs(60)).expect("shutdown"));
    let sector = env.head("hci-data", 512);
    let text = String::from_utf8_lossy(&sector).trim_end_matches('\0').trim_end().to_string();
    assert_eq!(text, format!("HCI-MARKER {marker}"));
    hv.undefine(&name).expect("undefine");
    pool.delete("data").expect("delete the data volume");
}
