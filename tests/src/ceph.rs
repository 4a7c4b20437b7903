//! A real one-node Ceph cluster for end-to-end tests (scripts/ceph/up.sh in a temporary directory),
//! stopped and purged in `Drop`.

use std::path::PathBuf;
use std::process::Command;

use crate::agent::repo_root;

#[derive(Debug)]
pub struct CephCluster {
    dir: tempfile::TempDir,
    /// `IP:PORT` of its monitor.
    pub monitor: String,
}

impl CephCluster {
    pub fn up() -> Self {
        let dir = tempfile::Builder::new().prefix("hci-ceph-").tempdir_in("/var/tmp").expect("temp dir");
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/ceph/up.sh"))
            .arg(dir.path())
            .output()
            .expect("run scripts/ceph/up.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let monitor = stdout.lines().last().unwrap_or_default().trim().to_string();
        // Built before checking, so that a half-started cluster is stopped too (Drop).
        let cluster = Self { dir, monitor };
        assert!(out.status.success(), "ceph up.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(cluster.monitor.contains(':'), "ceph up.sh printed no monitor address: {stdout}");
        cluster
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("ceph.conf")
    }

    /// `rbd -c CONF ARGS...`: stdout, or the failure.
    pub fn rbd(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("rbd").arg("-c").arg(self.conf()).args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for CephCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/ceph/down.sh"))
            .arg(self.dir.path())
            .arg("--purge")
            .output();
    }
}
