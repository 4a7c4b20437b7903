//! `DirQcow2Pool` against the real libvirt on this machine (`qemu:///system`, or `HCI_LIBVIRT_URI`):
//! empty volumes, idempotent create, grow and refused shrink, overlays over qcow2 and raw images
//! (backing chain and contents checked with qemu-img), independent clones, delete, recovery from an
//! interrupted create, pool usage, the refusal of files and pools that are not hci's, and of volume
//! snapshots (a dir-qcow2 volume's snapshots are its VM's).
//!
//! Needs root, qemu-img/qemu-io and `scripts/libvirt/up.sh`. Fails loudly when libvirt is unreachable,
//! unless HCI_SKIP_LIBVIRT=1. Every test uses its own pool `hci-<test>-<pid>-p` in its own temporary
//! directory; a Drop guard stops and undefines the pool and removes the directory however it ends.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use hci_agent::hypervisor::DiskSource;
use hci_agent::volumes::dir_qcow2::DirQcow2Pool;
use hci_agent::volumes::{SourceSpec, VolumeBackend, VolumeError, VolumeInfo};

const MIB: u64 = 1 << 20;

fn uri() -> String {
    std::env::var("HCI_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".into())
}

fn skip(test: &str) -> bool {
    let off = std::env::var("HCI_SKIP_LIBVIRT").is_ok_and(|v| v == "1");
    if off {
        eprintln!("{test}: skipped (HCI_SKIP_LIBVIRT=1)");
    }
    off
}

/// A pool in a temporary directory, stopped, undefined and removed however the test ends.
struct Fixture {
    pool: DirQcow2Pool,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("pool")).expect("pool dir");
        fs::create_dir(dir.path().join("images")).expect("images dir");
        let host = format!("{}-{}", test.replace('_', "-"), std::process::id());
        let pool = DirQcow2Pool::open(&uri(), "p", &host, &dir.path().join("pool")).unwrap_or_else(|e| {
            // The guard does not exist yet: clean up what open may have defined.
            undefine(&format!("hci-{host}-p"));
            panic!(
                "opening the pool at {}: {e}\nrun scripts/libvirt/up.sh as root first, or set HCI_SKIP_LIBVIRT=1",
                uri()
            )
        });
        Fixture { pool, dir }
    }

    fn pool_dir(&self) -> PathBuf {
        self.dir.path().join("pool")
    }

    fn image_dir(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    fn listed(&self, id: &str) -> Option<VolumeInfo> {
        self.pool.list().expect("list").into_iter().find(|v| v.id == id)
    }
}

fn undefine(name: &str) {
    if let Ok(conn) = virt::connect::Connect::open(Some(&uri())) {
        if let Ok(pool) = conn.lookup_storage_pool_by_name(name) {
            if pool.is_active().unwrap_or(false) {
                let _ = pool.destroy();
            }
            let _ = pool.undefine();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        undefine(self.pool.libvirt_name());
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_of(info: &VolumeInfo) -> PathBuf {
    match &info.disk {
        DiskSource::File { path, format } => {
            assert_eq!(format, "qcow2");
            path.clone()
        }
        other => panic!("expected a file disk, got {other:?}"),
    }
}

/// `qemu-img info --backing-chain` as JSON: one object per image, the volume first.
fn chain(path: &Path) -> Vec<serde_json::Value> {
    let text = run("qemu-img", &["info", "--output=json", "--backing-chain", &path.to_string_lossy()]);
    serde_json::from_str(&text).expect("qemu-img info JSON")
}

/// The guest-visible bytes of a volume, through `qemu-img convert -O raw`.
fn guest_bytes(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let out_path = out.path().to_string_lossy().into_owned();
    run("qemu-img", &["convert", "-O", "raw", &path.to_string_lossy(), &out_path]);
    let mut file = fs::File::open(out.path()).expect("open converted");
    file.seek(SeekFrom::Start(at)).expect("seek");
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf).expect("read converted");
    buf
}

fn qcow2_image(dir: &Path, size: u64, pattern: u8) -> PathBuf {
    let path = dir.join("img.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", &path.to_string_lossy(), &size.to_string()]);
    let write = format!("write -P {pattern:#x} 0 64k");
    run("qemu-io", &["-f", "qcow2", "-c", &write, &path.to_string_lossy()]);
    path
}

fn raw_image(dir: &Path, size: u64, pattern: u8) -> PathBuf {
    let path = dir.join("img.raw");
    let mut file = fs::File::create(&path).expect("create raw image");
    file.set_len(size).expect("size raw image");
    file.write_all(&[pattern; 64 * 1024]).expect("write raw image");
    path
}

#[test]
fn empty_volumes_create_grow_refuse_shrink_and_delete() {
    if skip("empty_volumes_create_grow_refuse_shrink_and_delete") {
        return;
    }
    let fx = Fixture::new("vol_empty");
    let created = fx.pool.create("v1", 64 * MIB, &SourceSpec::Empty).expect("create");
    assert_eq!(created.capacity_bytes, 64 * MIB);
    let path = path_of(&created);
    assert_eq!(path, fx.pool_dir().join("hci-v1.qcow2"));
    let listed = fx.listed("v1").expect("listed");
    assert_eq!(listed, created);
    let info = &chain(&path)[0];
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 64 * MIB);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert!(info.get("backing-filename").is_none());

    // Idempotent: the same volume back, whatever size is asked the second time.
    let mtime = fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    assert_eq!(fx.pool.create("v1", 64 * MIB, &SourceSpec::Empty).expect("create again"), created);
    assert_eq!(fx.pool.create("v1", 96 * MIB, &SourceSpec::Empty).expect("create again").capacity_bytes, 64 * MIB);
    assert_eq!(fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), mtime, "not rewritten");

    assert_eq!(fx.pool.resize("v1", 128 * MIB).expect("grow").capacity_bytes, 128 * MIB);
    assert_eq!(chain(&path)[0]["virtual-size"], 128 * MIB);
    assert_eq!(fx.pool.resize("v1", 128 * MIB).expect("same size").capacity_bytes, 128 * MIB);
    match fx.pool.resize("v1", 32 * MIB) {
        Err(VolumeError::Shrink { volume, from, to }) => {
            assert_eq!((volume.as_str(), from, to), ("v1", 128 * MIB, 32 * MIB))
        }
        other => panic!("expected Shrink, got {other:?}"),
    }
    assert_eq!(fx.listed("v1").expect("listed").capacity_bytes, 128 * MIB, "nothing changed");
    assert!(matches!(fx.pool.resize("nope", MIB), Err(VolumeError::NoSuchVolume(_))));
    assert!(fx.pool.create("../escape", MIB, &SourceSpec::Empty).is_err());
    assert!(fx.pool.create("zero", 0, &SourceSpec::Empty).is_err());

    // Files without the hci- prefix are neither listed nor touched.
    let foreign = fx.pool_dir().join("other.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", &foreign.to_string_lossy(), "1M"]);
    assert_eq!(fx.pool.list().expect("list").iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["v1"]);

    let usage = fx.pool.usage().expect("usage");
    assert!(usage.capacity_bytes > 0, "{usage:?}");
    assert!(usage.available_bytes <= usage.capacity_bytes, "{usage:?}");
    assert!(usage.allocation_bytes <= usage.capacity_bytes, "{usage:?}");
    assert!(usage.allocation_bytes + usage.available_bytes <= usage.capacity_bytes + MIB, "{usage:?}");

    // A disk-only snapshot layer beside the volume (hypervisor/layers.rs) goes with it.
    let layer = fx.pool_dir().join("hci-v1.qcow2.snap-s1");
    fs::write(&layer, b"layer").expect("layer");
    fx.pool.delete("v1").expect("delete");
    assert!(fx.listed("v1").is_none());
    assert!(!path.exists(), "file removed");
    assert!(!layer.exists(), "snapshot layer removed with its volume");
    fx.pool.delete("v1").expect("delete a missing volume");
    assert!(foreign.exists(), "foreign file untouched");
}

#[test]
fn volumes_from_images_are_overlays_with_the_image_bytes() {
    if skip("volumes_from_images_are_overlays_with_the_image_bytes") {
        return;
    }
    let fx = Fixture::new("vol_image");
    for (image, format, pattern) in [
        (qcow2_image(&fx.image_dir(), 8 * MIB, 0xab), "qcow2", 0xabu8),
        (raw_image(&fx.image_dir(), 4 * MIB, 0xcd), "raw", 0xcdu8),
    ] {
        let id = format!("from-{format}");
        let source = SourceSpec::Image { path: image.clone(), format: format.into() };
        let info = fx.pool.create(&id, 16 * MIB, &source).expect("create from image");
        assert_eq!(info.capacity_bytes, 16 * MIB);
        let path = path_of(&info);
        let chain = chain(&path);
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(chain[0]["format"], "qcow2");
        assert_eq!(chain[0]["virtual-size"], 16 * MIB);
        assert_eq!(chain[0]["backing-filename"], image.to_string_lossy().as_ref());
        assert_eq!(chain[0]["backing-filename-format"], format);
        assert_eq!(chain[1]["filename"], image.to_string_lossy().as_ref());
        assert_eq!(chain[1]["format"], format);
        assert_eq!(guest_bytes(&path, 0, 64 * 1024), vec![pattern; 64 * 1024]);
        assert_eq!(guest_bytes(&path, 64 * 1024, 4096), vec![0u8; 4096]);
        assert_eq!(fx.pool.create(&id, 16 * MIB, &source).expect("idempotent"), info);

        // Never smaller than the image: refused before anything is written.
        let small = format!("small-{format}");
        let err = fx.pool.create(&small, MIB, &source).expect_err("smaller than the image");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(fx.listed(&small).is_none());
        assert!(!fx.pool_dir().join(format!("hci-{small}.qcow2")).exists());
        assert!(!fx.pool_dir().join(format!("hci-{small}.qcow2.creating")).exists());
    }
    let missing = SourceSpec::Image { path: fx.image_dir().join("nope.qcow2"), format: "qcow2".into() };
    assert!(fx.pool.create("missing-image", 16 * MIB, &missing).is_err());
    // A qcow2 image with a backing file of its own is refused.
    let chained = fx.image_dir().join("chained.qcow2");
    let base = fx.image_dir().join("img.qcow2").to_string_lossy().into_owned();
    run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &chained.to_string_lossy()]);
    let err = fx
        .pool
        .create("chained", 16 * MIB, &SourceSpec::Image { path: chained, format: "qcow2".into() })
        .expect_err("image with a backing file");
    assert!(err.to_string().contains("backing file"), "{err}");
}

#[test]
fn clones_are_independent_full_copies() {
    if skip("clones_are_independent_full_copies") {
        return;
    }
    let fx = Fixture::new("vol_clone");
    let image = qcow2_image(&fx.image_dir(), 8 * MIB, 0xab);
    let base = fx
        .pool
        .create("base", 16 * MIB, &SourceSpec::Image { path: image.clone(), format: "qcow2".into() })
        .expect("base");
    let base_path = path_of(&base);
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x11 1M 64k", &base_path.to_string_lossy()]);

    let from_base = SourceSpec::Clone { from_volume: "base".into(), snapshot: None };
    let err = fx.pool.create("tiny", MIB, &from_base).expect_err("smaller than the source");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(matches!(
        fx.pool.create("orphan", 16 * MIB, &SourceSpec::Clone { from_volume: "ghost".into(), snapshot: None }),
        Err(VolumeError::NoSuchVolume(v)) if v == "ghost"
    ));

    let copy = fx.pool.create("copy", 32 * MIB, &from_base).expect("clone");
    assert_eq!(copy.capacity_bytes, 32 * MIB, "grown to the size asked for");
    let copy_path = path_of(&copy);
    let chain = chain(&copy_path);
    assert_eq!(chain.len(), 1, "a full copy has no backing file: {chain:?}");
    assert_eq!(chain[0]["virtual-size"], 32 * MIB);
    assert_eq!(chain[0]["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(guest_bytes(&copy_path, 0, 64 * 1024), vec![0xab; 64 * 1024]);
    assert_eq!(guest_bytes(&copy_path, MIB, 64 * 1024), vec![0x11; 64 * 1024]);
    assert_eq!(fx.pool.create("copy", 32 * MIB, &from_base).expect("idempotent"), copy);

    // Snapshots of a dir-qcow2 volume are its VM's (hypervisor disk-only snapshots), not the pool's.
    let from_snapshot = SourceSpec::Clone { from_volume: "base".into(), snapshot: Some("s".into()) };
    for err in [
        fx.pool.snapshot("copy", "s").expect_err("snapshot"),
        fx.pool.list_snapshots("copy").expect_err("list snapshots"),
        fx.pool.rollback("copy", "s").expect_err("rollback"),
        fx.pool.delete_snapshot("copy", "s").expect_err("delete a snapshot"),
        fx.pool.create("c2", 32 * MIB, &from_snapshot).expect_err("clone from a snapshot"),
    ] {
        assert!(matches!(err, VolumeError::Unsupported { .. }) && err.to_string().contains("hypervisor"), "{err}");
    }
    assert!(fx.pool.snapshot("copy", "a/b").expect_err("bad name").to_string().contains("snapshot name"));

    // Independent: writes to the copy do not reach the source, and the source can go.
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x22 0 64k", &copy_path.to_string_lossy()]);
    assert_eq!(guest_bytes(&base_path, 0, 64 * 1024), vec![0xab; 64 * 1024]);
    fx.pool.delete("base").expect("delete source");
    fs::remove_file(&image).expect("remove image");
    assert_eq!(guest_bytes(&copy_path, MIB, 64 * 1024), vec![0x11; 64 * 1024]);
    assert_eq!(guest_bytes(&copy_path, 0, 64 * 1024), vec![0x22; 64 * 1024]);
}

#[test]
fn interrupted_creates_are_detected_and_redone() {
    if skip("interrupted_creates_are_detected_and_redone") {
        return;
    }
    let fx = Fixture::new("vol_crash");
    // A file truncated to 0 bytes: what a create killed before qemu-img wrote the header leaves.
    let path = path_of(&fx.pool.create("trunc", 64 * MIB, &SourceSpec::Empty).expect("create"));
    fs::File::create(&path).expect("truncate");
    assert!(fx.listed("trunc").is_none(), "an empty file is not a volume");
    let again = fx.pool.create("trunc", 64 * MIB, &SourceSpec::Empty).expect("recreate");
    assert_eq!(again.capacity_bytes, 64 * MIB);
    assert_eq!(chain(&path)[0]["format"], "qcow2");
    assert_eq!(fx.listed("trunc"), Some(again));

    // A volume whose create marker is still there (a clone cut short keeps a valid header): redone.
    let path = path_of(&fx.pool.create("marked", 16 * MIB, &SourceSpec::Empty).expect("create"));
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x77 0 64k", &path.to_string_lossy()]);
    let marker = fx.pool_dir().join("hci-marked.qcow2.creating");
    fs::write(&marker, b"interrupted").expect("marker");
    assert!(fx.listed("marked").is_none(), "an unfinished volume is not listed");
    fx.pool.create("marked", 16 * MIB, &SourceSpec::Empty).expect("recreate");
    assert!(!marker.exists(), "marker removed once complete");
    assert_eq!(guest_bytes(&path, 0, 4096), vec![0u8; 4096], "recreated from scratch");
    assert!(fx.listed("marked").is_some());

    // Something non-empty that is not qcow2 is not ours to throw away: refused, left as it is.
    let odd = fx.pool_dir().join("hci-odd.qcow2");
    fs::write(&odd, vec![0x5a; 8192]).expect("odd file");
    let err = fx.pool.create("odd", 16 * MIB, &SourceSpec::Empty).expect_err("not qcow2");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read(&odd).expect("odd file"), vec![0x5a; 8192]);
    assert!(fx.listed("odd").is_none());

    // A marker without a volume (killed before libvirt started): create just proceeds.
    fs::write(fx.pool_dir().join("hci-early.qcow2.creating"), b"x").expect("marker");
    fx.pool.create("early", 16 * MIB, &SourceSpec::Empty).expect("create");
    assert!(fx.listed("early").is_some());
}

#[test]
fn open_is_idempotent_and_refuses_another_directory() {
    if skip("open_is_idempotent_and_refuses_another_directory") {
        return;
    }
    let fx = Fixture::new("vol_open");
    fx.pool.create("keep", 16 * MIB, &SourceSpec::Empty).expect("create");
    let host = fx.pool.libvirt_name().trim_start_matches("hci-").trim_end_matches("-p").to_string();
    let again = DirQcow2Pool::open(&uri(), "p", &host, &fx.pool_dir()).expect("open again");
    assert_eq!(again.list().expect("list").len(), 1);

    // Autostarted, persistent, and restarted when found stopped.
    let conn = virt::connect::Connect::open(Some(&uri())).expect("connect");
    let pool = conn.lookup_storage_pool_by_name(fx.pool.libvirt_name()).expect("lookup");
    assert!(pool.autostart().expect("autostart") && pool.is_persistent().expect("persistent"));
    pool.destroy().expect("stop the pool");
    assert_eq!(fx.pool.list().expect("list after a stop").len(), 1);
    assert!(pool.is_active().expect("active"));

    let other = fx.dir.path().join("elsewhere");
    let err = DirQcow2Pool::open(&uri(), "p", &host, &other).expect_err("another directory");
    assert!(err.to_string().contains("refusing"), "{err}");
    assert!(DirQcow2Pool::open(&uri(), "p", "bad/host", &fx.pool_dir()).is_err());
}

/// A private libvirtd (scripts/libvirt/host.sh), removed with --purge however the test ends.
struct PrivateLibvirt {
    id: String,
}

impl PrivateLibvirt {
    fn run(&self, cmd: &str) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt/host.sh");
        let out = Command::new(script).args([cmd, &self.id]).output().expect("host.sh");
        assert!(out.status.success(), "host.sh {cmd} {}: {}", self.id, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string()
    }
}

impl Drop for PrivateLibvirt {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt/host.sh");
        let _ = Command::new(script).args(["down", &self.id, "--purge"]).output();
    }
}

#[test]
fn survives_a_libvirtd_restart_with_the_pool_autostarted() {
    if skip("survives_a_libvirtd_restart_with_the_pool_autostarted") {
        return;
    }
    let private = PrivateLibvirt { id: format!("volt-{}", std::process::id()) };
    let uri = private.run("up");
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = DirQcow2Pool::open(&uri, "p", "restart", dir.path()).expect("open on the private libvirtd");
    let created = pool.create("v", 16 * MIB, &SourceSpec::Empty).expect("create");

    private.run("down");
    assert!(pool.list().is_err(), "libvirtd is down");
    private.run("up");
    // The same DirQcow2Pool reconnects; the persistent, autostarted pool is back with its volume.
    assert_eq!(pool.list().expect("list after the restart"), vec![created]);
    pool.create("w", 16 * MIB, &SourceSpec::Empty).expect("create after the restart");
}
