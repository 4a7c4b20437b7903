//! The `rbd` command-line tool, for the image snapshots that libvirt's rbd backend does not offer
//! (libvirt has no RBD snapshot API): list, create, roll back, remove, and whether a client (a
//! running VM) has an image open.
//!
//! Every call names the cluster explicitly, as QEMU and libvirt are given it: the monitors, no
//! authentication (cephx is not wired in yet), no configuration file (`--conf /dev/null`, so a host's
//! own ceph.conf changes nothing), librados' logging off stderr, and cluster timeouts, so a dead
//! cluster fails the call instead of hanging it; the process is killed at a deadline besides.
//!
//! It must never be handed an image or snapshot name that was not checked ([`check_name`] rules: no
//! `/`, `@` or option-like leading `-`): the names become `pool/image@snapshot` arguments.
//!
//! [`check_name`]: crate::volumes::names::check_name

use std::time::Duration;

use serde::Deserialize;

use super::xml::Monitor;
use crate::volumes::command::{self, Failure, Output};

/// Metadata calls (list, create, remove, status) take well under a second on a healthy cluster.
const QUICK: Duration = Duration::from_secs(300);
/// A rollback rewrites every object of the image: long for a large one.
const ROLLBACK: Duration = Duration::from_secs(2 * 3600);
/// `rbd` exits with the errno of what failed.
const EEXIST: i32 = 17;

/// One snapshot of an image, as `rbd snap ls --format json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapInfo {
    /// Increases with every snapshot taken in the pool: the order of creation.
    pub id: u64,
    pub name: String,
    /// The image's size when the snapshot was taken.
    pub size: u64,
    /// `"true"` or `"false"`.
    #[serde(default)]
    pub protected: String,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    watchers: Vec<serde_json::Value>,
}

/// Parses `rbd snap ls --format json`; oldest first.
pub fn parse_snapshots(json: &str) -> Result<Vec<SnapInfo>, String> {
    let mut snaps: Vec<SnapInfo> =
        serde_json::from_str(json).map_err(|e| format!("unreadable rbd snap ls output: {e}"))?;
    snaps.sort_by_key(|s| s.id);
    Ok(snaps)
}

/// The `rbd` tool pointed at one RBD pool.
#[derive(Debug, Clone)]
pub struct RbdCli {
    pool: String,
    /// `mon_host` as librados reads it: `a:1,[::1]:2`.
    mon_host: String,
}

impl RbdCli {
    pub fn new(pool: &str, monitors: &[Monitor]) -> Self {
        let mon_host = monitors.iter().map(Monitor::mon_host).collect::<Vec<_>>().join(",");
        RbdCli { pool: pool.to_string(), mon_host }
    }

    /// `pool/image` or `pool/image@snapshot`.
    fn spec(&self, image: &str, snapshot: Option<&str>) -> String {
        match snapshot {
            Some(snap) => format!("{}/{image}@{snap}", self.pool),
            None => format!("{}/{image}", self.pool),
        }
    }

    /// The arguments every call starts with.
    fn common(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--conf", "/dev/null", "--mon-host"].map(String::from).into();
        args.push(self.mon_host.clone());
        for (option, value) in [
            ("--auth-client-required", "none"),
            ("--log-to-stderr", "false"),
            ("--err-to-stderr", "false"),
            ("--client-mount-timeout", "30"),
            ("--rados-mon-op-timeout", "30"),
            ("--rados-osd-op-timeout", "120"),
        ] {
            args.extend([option.to_string(), value.to_string()]);
        }
        args
    }

    fn run(&self, words: &[&str], timeout: Duration) -> Result<Output, Failure> {
        let mut args = self.common();
        args.extend(words.iter().map(|w| w.to_string()));
        command::run("rbd", &args, &[("LC_ALL", "C")], timeout)
    }

    /// The snapshots of `image`, oldest first.
    pub fn snapshots(&self, image: &str) -> Result<Vec<SnapInfo>, Failure> {
        let spec = self.spec(image, None);
        let out = self.run(&["snap", "ls", "--format", "json", &spec], QUICK)?;
        parse_snapshots(&out.stdout).map_err(|message| Failure {
            command: format!("rbd snap ls {spec}"),
            message,
            code: None,
        })
    }

    /// Takes snapshot `snapshot` of `image`; one that exists already is fine.
    pub fn create_snapshot(&self, image: &str, snapshot: &str) -> Result<(), Failure> {
        match self.run(&["snap", "create", "--no-progress", &self.spec(image, Some(snapshot))], QUICK) {
            Err(e) if e.code == Some(EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Rewrites `image` with the content of its snapshot (and sets its size to the snapshot's).
    pub fn rollback(&self, image: &str, snapshot: &str) -> Result<(), Failure> {
        self.run(&["snap", "rollback", "--no-progress", &self.spec(image, Some(snapshot))], ROLLBACK).map(drop)
    }

    /// Removes a snapshot (unprotecting it first when someone protected it).
    pub fn remove_snapshot(&self, image: &str, snap: &SnapInfo) -> Result<(), Failure> {
        let spec = self.spec(image, Some(&snap.name));
        if snap.protected == "true" {
            self.run(&["snap", "unprotect", &spec], QUICK)?;
        }
        self.run(&["snap", "rm", "--no-progress", &spec], QUICK).map(drop)
    }

    /// Sets `image`'s size (used only to grow it back after a rollback).
    pub fn resize(&self, image: &str, bytes: u64) -> Result<(), Failure> {
        let size = format!("{bytes}B");
        self.run(&["resize", "--no-progress", "--size", &size, &self.spec(image, None)], QUICK).map(drop)
    }

    /// How many clients have `image` open (a running VM's QEMU is one).
    pub fn watchers(&self, image: &str) -> Result<usize, Failure> {
        let spec = self.spec(image, None);
        let out = self.run(&["status", "--format", "json", &spec], QUICK)?;
        let status: Status = serde_json::from_str(&out.stdout).map_err(|e| Failure {
            command: format!("rbd status {spec}"),
            message: format!("unreadable output: {e}"),
            code: None,
        })?;
        Ok(status.watchers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_listing_is_sorted_by_creation() {
        let json = r#"[{"id":9,"name":"b","size":4194304,"protected":"true","timestamp":"x"},
                       {"id":4,"name":"a","size":8,"protected":"false","timestamp":"x"}]"#;
        let snaps = parse_snapshots(json).expect("parses");
        assert_eq!(snaps.iter().map(|s| (s.name.as_str(), s.size)).collect::<Vec<_>>(), [("a", 8), ("b", 4194304)]);
        assert_eq!(snaps[1].protected, "true");
        assert!(parse_snapshots("[]").expect("empty").is_empty());
        assert!(parse_snapshots("nope").is_err());
    }

    #[test]
    fn every_call_names_the_cluster_without_auth_or_config() {
        let mons = [Monitor::parse("127.0.0.1:4000").expect("valid"), Monitor::parse("[::1]:5000").expect("valid")];
        let cli = RbdCli::new("hci", &mons);
        let args = cli.common();
        assert_eq!(args[..4], ["--conf", "/dev/null", "--mon-host", "127.0.0.1:4000,[::1]:5000"]);
        assert!(args.windows(2).any(|w| w == ["--auth-client-required", "none"]));
        assert_eq!(cli.spec("hci-a", Some("s1")), "hci/hci-a@s1");
        assert_eq!(cli.spec("hci-a", None), "hci/hci-a");
    }
}
