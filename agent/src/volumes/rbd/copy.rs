//! Filling a new RBD volume with bytes, with `qemu-img convert` (QEMU's rbd driver, librbd).
//!
//! libvirt's rbd backend offers neither: `virStorageVolUpload` answers "storage pool doesn't support
//! volume upload", and `virStorageVolCreateXMLFrom` makes a copy-on-write child of a protected
//! snapshot of the source, which would then keep the source from being deleted. So libvirt creates
//! the (empty, raw) volume and qemu-img writes into it (`-n`): an image file is converted to raw on
//! the way (qcow2 or raw in, no temporary file), a clone is a full, flattened copy of another volume
//! or of one of its snapshots (`rbd:pool/image@snapshot`, read-only by nature).
//! Only allocated data is copied (`--target-is-zero`: a new RBD image reads as zeros), so thin
//! images stay thin. Cluster timeouts are set, so a dead cluster fails the copy instead of hanging it.
//!
//! It must never write to anything but the new volume: sources are opened read-only.

use std::path::Path;
use std::process::Command;

use super::xml::Monitor;

/// Where the bytes come from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// An image file, read as `format` (`qcow2`, `raw`).
    File { path: &'a Path, format: &'a str },
    /// Another image of the same RBD pool, or (`snapshot`) one of its snapshots.
    Rbd { image: String, snapshot: Option<&'a str> },
}

/// QEMU's legacy `rbd:` file name for `pool/image` (`image` may be `image@snapshot`): `:` separates
/// options, so the monitors' own colons are escaped. Pool, image, snapshot and monitor names are
/// checked plain names (no `\`, `:` or `@`).
pub fn rbd_filename(pool: &str, image: &str, monitors: &[Monitor]) -> String {
    let mon_host = monitors.iter().map(|m| m.mon_host().replace(':', "\\:")).collect::<Vec<_>>().join(",");
    format!(
        "rbd:{pool}/{image}:mon_host={mon_host}:auth_client_required=none:client_mount_timeout=30:\
         rados_mon_op_timeout=30:rados_osd_op_timeout=120"
    )
}

/// The `qemu-img` arguments that write `source` into the existing image `pool/target`.
fn args(pool: &str, monitors: &[Monitor], target: &str, source: &Source<'_>) -> Vec<String> {
    let (format, from) = match source {
        Source::File { path, format } => (format.to_string(), path.to_string_lossy().into_owned()),
        Source::Rbd { image, snapshot } => {
            let name = snapshot.map_or_else(|| image.clone(), |snap| format!("{image}@{snap}"));
            ("raw".to_string(), rbd_filename(pool, &name, monitors))
        }
    };
    let mut args: Vec<String> = ["convert", "-n", "--target-is-zero", "-f"].map(String::from).into();
    args.extend([format, "-O".into(), "raw".into(), from, rbd_filename(pool, target, monitors)]);
    args
}

/// Writes `source` into `pool/target` (which must be at least as large); the error is qemu-img's.
pub fn fill(pool: &str, monitors: &[Monitor], target: &str, source: &Source<'_>) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(args(pool, monitors, target, source))
        .output()
        .map_err(|e| format!("running qemu-img: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!("qemu-img convert failed ({}): {}", out.status, stderr.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_escape_the_monitors() {
        let mons = vec![Monitor::parse("127.0.0.1:4000").expect("valid"), Monitor::parse("[::1]:5000").expect("valid")];
        let name = rbd_filename("hci", "hci-a", &mons);
        assert!(name.starts_with("rbd:hci/hci-a:mon_host=127.0.0.1\\:4000,[\\:\\:1]\\:5000:auth_client_required=none:"));
        let a = args("hci", &mons, "hci-b", &Source::File { path: Path::new("/i/x.qcow2"), format: "qcow2" });
        assert_eq!(a[..7], ["convert", "-n", "--target-is-zero", "-f", "qcow2", "-O", "raw"]);
        assert_eq!(a[7], "/i/x.qcow2");
        assert!(a[8].starts_with("rbd:hci/hci-b:"));
        let c = args("hci", &mons, "hci-b", &Source::Rbd { image: "hci-a".into(), snapshot: None });
        assert_eq!((c[4].as_str(), c[7].starts_with("rbd:hci/hci-a:")), ("raw", true));
        let s = args("hci", &mons, "hci-b", &Source::Rbd { image: "hci-a".into(), snapshot: Some("s1") });
        assert!(s[7].starts_with("rbd:hci/hci-a@s1:"), "{}", s[7]);
    }
}
