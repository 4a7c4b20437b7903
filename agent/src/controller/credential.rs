//! The host credential a join returns, kept in `DATA_DIR/host.credential` (mode 0600).
//!
//! It exists so an agent restart re-joins with its own credential instead of a new join token. The
//! file is written atomically (temp file, fsync, rename, directory fsync): a crash leaves the old
//! file or the new one, never a torn credential.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The credential file's name in the data dir.
pub const FILE_NAME: &str = "host.credential";

#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct CredentialError {
    action: &'static str,
    path: String,
    source: std::io::Error,
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CredentialError {
    let path = path.display().to_string();
    move |source| CredentialError { action, path, source }
}

/// `DATA_DIR/host.credential`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The stored credential, `None` when there is none (or the file is empty).
pub fn load(data_dir: &Path) -> Result<Option<String>, CredentialError> {
    let path = path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("reading", &path)(e)),
    }
}

/// Replaces the stored credential atomically; the file is readable by its owner only.
pub fn save(data_dir: &Path, credential: &str) -> Result<(), CredentialError> {
    let path = path(data_dir);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::create_dir_all(data_dir).map_err(err("creating", data_dir))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err("creating", &tmp))?;
    file.write_all(credential.as_bytes()).map_err(err("writing", &tmp))?;
    file.write_all(b"\n").map_err(err("writing", &tmp))?;
    file.sync_all().map_err(err("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(err("renaming into", &path))?;
    File::open(data_dir).and_then(|d| d.sync_all()).map_err(err("syncing", data_dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("none"), None);
        save(dir.path(), "hci_host_abc").expect("save");
        assert_eq!(load(dir.path()).expect("load").as_deref(), Some("hci_host_abc"));
        let mode = std::fs::metadata(path(dir.path())).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        save(dir.path(), "hci_host_def").expect("replace");
        assert_eq!(load(dir.path()).expect("load").as_deref(), Some("hci_host_def"));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }
}
