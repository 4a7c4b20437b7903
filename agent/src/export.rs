//! Volume export for cold migration: a stopped VM's volume is flattened into one self-contained
//! qcow2 file (no backing chain), checksummed, and served over the agent API so that another agent
//! can import it as a verified image (`VolumeSource::Image` with the export's URL and SHA-256).
//!
//! Exports live in `DATA_DIR/exports`, outside every pool, so the reconciler never mistakes them for
//! volumes. It must never export a volume whose VM is running (the copy would not be
//! crash-consistent); live moves go through migration instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::hypervisor::DiskSource;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("volume {0} is not on this host")]
    NoSuchVolume(String),
    #[error("volume {volume} is attached to running VM {vm}; stop it first (exports are cold)")]
    InUse { volume: String, vm: String },
    #[error("volume {0} is not a file volume; only file-backed volumes can be exported so far")]
    NotAFile(String),
    #[error("exporting volume {volume}: {message}")]
    Failed { volume: String, message: String },
}

/// A prepared export.
pub use hci_shared::agent::VolumeExport as Export;

/// The exports directory of an agent.
pub fn exports_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("exports")
}

/// Flattens `disk` (the volume's current image and its whole backing chain) into
/// `dir/<volume id>.qcow2` and checksums it.
pub fn export_volume(volume: &str, disk: &DiskSource, dir: &Path) -> Result<Export, ExportError> {
    let failed = |message: String| ExportError::Failed { volume: volume.to_string(), message };
    let DiskSource::File { path, format } = disk else { return Err(ExportError::NotAFile(volume.to_string())) };
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating {}: {e}", dir.display())))?;
    let name = format!("{volume}.qcow2");
    let target = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    let out = Command::new("qemu-img")
        .args(["convert", "-U", "-f", format, "-O", "qcow2"])
        .arg(path)
        .arg(&partial)
        .output()
        .map_err(|e| failed(format!("running qemu-img: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(format!("qemu-img convert: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let (sha256, size_bytes) = checksum(&partial).map_err(|e| failed(format!("checksumming: {e}")))?;
    std::fs::rename(&partial, &target).map_err(|e| failed(format!("renaming into place: {e}")))?;
    Ok(Export { url_path: format!("/agent/v1/exports/{name}"), sha256, size_bytes, format: "qcow2".into() })
}

fn checksum(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    file.sync_all()?;
    Ok((hex::encode(hasher.finalize()), total))
}

/// The file behind an export name, if the name is one this module produced.
pub fn export_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let volume = name.strip_suffix(".qcow2")?;
    hci_shared::names::check_name(volume).ok()?;
    let path = dir.join(name);
    path.is_file().then_some(path)
}
