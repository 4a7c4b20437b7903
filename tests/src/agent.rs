//! Real `hci-agent` processes against real libvirt, for the agent's end-to-end tests.
//!
//! Each simulated host gets its own libvirt instance (`scripts/libvirt/host.sh`, its own daemons,
//! state and socket in a private mount namespace), so tests running in parallel never see each
//! other's domains. [`LibvirtHost`] and [`AgentProc`] clean up in `Drop`: the agent is killed, the
//! host's domains are destroyed with its libvirt instance, and its directories are removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use hci_shared::agent::{HostDesired, HostReport};
use sha2::{Digest, Sha256};

use crate::ports::free_port;
use crate::wait::poll;

/// The repository root (scripts live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test guest (built once, cached by the builder itself): `disk.qcow2` boots under BIOS and UEFI.
pub fn test_guest() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from("/var/cache/hci-test-guest");
        let script = repo_root().join("scripts/guest/build.sh");
        run(Command::new("bash").arg(&script).arg(&dir), "scripts/guest/build.sh");
        dir
    })
}

/// The test guest's disk as the image a volume is made from (verified by its SHA-256).
pub fn test_guest_image() -> hci_shared::agent::ImageRef {
    let disk = test_guest().join("disk.qcow2");
    hci_shared::agent::ImageRef {
        name: "test-guest".into(),
        source: format!("file://{}", disk.display()),
        format: hci_shared::agent::ImageFormat::Qcow2,
        sha256: sha256_file(&disk),
    }
}

/// An empty volume of 1 GiB in `pool`.
pub fn empty_volume(id: &str, pool: &str) -> hci_shared::agent::VolumeDesired {
    hci_shared::agent::VolumeDesired {
        id: id.into(),
        pool: pool.into(),
        size_gib: 1,
        source: hci_shared::agent::VolumeSource::Empty,
        snapshots: vec![],
        rollback: None,
    }
}

/// The first bytes of a qcow2 volume's guest-visible content.
pub fn read_volume_head(path: &Path) -> String {
    let raw = tempfile::NamedTempFile::new().expect("temp file");
    let out = Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(path)
        .arg(raw.path())
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "qemu-img convert: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(raw.path()).expect("read raw");
    String::from_utf8_lossy(&bytes[..64.min(bytes.len())]).into_owned()
}

/// The latest heartbeat uptime (seconds) on a test guest's console (`HCI-GUEST-ALIVE UPTIME`).
pub fn last_uptime(console: &str) -> Option<f64> {
    console.lines().rev().filter_map(|l| l.split("HCI-GUEST-ALIVE ").nth(1)).find_map(|u| u.trim().parse().ok())
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// One simulated host's own libvirt instance.
#[derive(Debug)]
pub struct LibvirtHost {
    pub id: String,
    pub uri: String,
}

impl LibvirtHost {
    pub fn up(id: &str) -> Self {
        Self::up_in(id, None)
    }

    /// [`LibvirtHost::up`] with its daemons inside network namespace `netns`: the taps of its VMs
    /// are created there.
    pub fn up_in_netns(id: &str, netns: &str) -> Self {
        Self::up_in(id, Some(netns))
    }

    fn up_in(id: &str, netns: Option<&str>) -> Self {
        let script = repo_root().join("scripts/libvirt/host.sh");
        let mut bash = Command::new(if netns.is_some() { "ip" } else { "bash" });
        if let Some(ns) = netns {
            bash.args(["netns", "exec", ns, "bash"]);
        }
        let out = run(bash.arg(&script).arg("up").arg(id), "libvirt host.sh up");
        let uri = out.lines().rev().find(|l| l.starts_with("qemu:")).map(str::to_string);
        let uri = uri.unwrap_or_else(|| {
            run(Command::new("bash").arg(&script).arg("uri").arg(id), "host.sh uri").trim().to_string()
        });
        Self { id: id.to_string(), uri }
    }

    /// `virsh domstate` of `domain` on this host's instance (`running`, `shut off`, ...; empty when
    /// there is no such domain).
    pub fn domstate(&self, domain: &str) -> String {
        let out = Command::new("virsh").args(["-c", &self.uri, "domstate", domain]).output().expect("virsh domstate");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `virsh list --all --name` on this host's instance.
    pub fn domains(&self) -> Vec<String> {
        let out = run(Command::new("virsh").args(["-c", &self.uri, "list", "--all", "--name"]), "virsh list");
        out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
    }
}

impl Drop for LibvirtHost {
    fn drop(&mut self) {
        for name in self.domains_quiet() {
            let _ = Command::new("virsh").args(["-c", &self.uri, "destroy", &name]).output();
            let _ = Command::new("virsh").args(["-c", &self.uri, "undefine", &name, "--nvram", "--tpm"]).output();
        }
        let script = repo_root().join("scripts/libvirt/host.sh");
        let _ = Command::new("bash").arg(&script).args(["down", &self.id, "--purge"]).output();
    }
}

impl LibvirtHost {
    fn domains_quiet(&self) -> Vec<String> {
        Command::new("virsh")
            .args(["-c", &self.uri, "list", "--all", "--name"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A running `hci-agent` for one simulated host.
#[derive(Debug)]
pub struct AgentProc {
    pub host_id: String,
    pub uri: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Flags beyond the ones every test agent gets (pools, migration address).
    extra_args: Vec<String>,
    /// Runs inside this network namespace, listening on this address of it (else on loopback).
    netns: Option<(String, std::net::Ipv4Addr)>,
    child: Option<Child>,
    http: reqwest::blocking::Client,
}

impl AgentProc {
    pub fn start(host: &LibvirtHost) -> Self {
        Self::start_with(host, &[])
    }

    /// [`AgentProc::start`] with more flags, e.g. `--rbd-pool NAME=POOL@MON`.
    pub fn start_with(host: &LibvirtHost, extra_args: &[String]) -> Self {
        Self::start_in(host, extra_args, None)
    }

    /// [`AgentProc::start_with`] inside network namespace `netns`, listening on `ip` (an address
    /// of the namespace this process reaches).
    pub fn start_in_netns(host: &LibvirtHost, extra_args: &[String], netns: &str, ip: std::net::Ipv4Addr) -> Self {
        Self::start_in(host, extra_args, Some((netns.to_string(), ip)))
    }

    fn start_in(host: &LibvirtHost, extra_args: &[String], netns: Option<(String, std::net::Ipv4Addr)>) -> Self {
        // The pool and image directories must be traversable by libvirt's QEMU user.
        let dir = tempfile::Builder::new().prefix("hci-agent-").tempdir_in("/var/tmp").expect("temp dir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let mut agent = Self {
            host_id: host.id.clone(),
            uri: host.uri.clone(),
            port: free_port(),
            dir,
            extra_args: extra_args.to_vec(),
            netns,
            child: None,
            http,
        };
        agent.spawn();
        agent
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut command = match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(crate::bins::bin("hci-agent"));
                c
            }
            None => Command::new(crate::bins::bin("hci-agent")),
        };
        let child = command
            .args(["--host-id", &self.host_id, "--libvirt-uri", &self.uri, "--reconcile-interval", "2"])
            .args(["--shutdown-timeout", "20", "--listen", &format!("{}:{}", self.ip(), self.port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hci-agent");
        self.child = Some(child);
        poll("agent /healthz", Duration::from_secs(30), || {
            self.http
                .get(self.url("/healthz"))
                .send()
                .map_err(|e| format!("{e}; log: {}", self.log_tail()))
                .and_then(|r| if r.status().is_success() { Ok(()) } else { Err(r.status().to_string()) })
        });
    }

    fn ip(&self) -> std::net::Ipv4Addr {
        self.netns.as_ref().map_or(std::net::Ipv4Addr::LOCALHOST, |(_, ip)| *ip)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip(), self.port)
    }

    /// The agent's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// PUT the desired state; returns the HTTP status.
    pub fn put_desired(&self, desired: &HostDesired) -> u16 {
        self.http.put(self.url("/agent/v1/desired")).json(desired).send().expect("PUT desired").status().as_u16()
    }

    /// PUT any JSON as the desired state; returns the status and the body.
    pub fn put_desired_json(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.http.put(self.url("/agent/v1/desired")).json(body).send().expect("PUT desired");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// `POST /agent/v1/volumes/{id}/export`: status and body.
    pub fn export(&self, volume: &str) -> (u16, serde_json::Value) {
        let r = self.http.post(self.url(&format!("/agent/v1/volumes/{volume}/export"))).send().expect("POST export");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// The desired state the agent holds (None when it holds none).
    pub fn held_desired(&self) -> Option<serde_json::Value> {
        let r = self.http.get(self.url("/agent/v1/desired")).send().expect("GET desired");
        (r.status().as_u16() == 200).then(|| r.json().expect("desired JSON"))
    }

    pub fn report(&self) -> Result<HostReport, String> {
        let r = self.http.get(self.url("/agent/v1/report")).send().map_err(|e| e.to_string())?;
        r.json().map_err(|e| e.to_string())
    }

    /// Waits until a pass converged to `generation` and `check` accepts the report.
    pub fn wait_converged(
        &self,
        generation: u64,
        timeout: Duration,
        check: impl Fn(&HostReport) -> Result<(), String>,
    ) -> HostReport {
        poll(&format!("agent {} converged to generation {generation}", self.host_id), timeout, || {
            let report = self.report()?;
            if report.converged_generation != Some(generation) {
                return Err(format!("{report:?}; log:\n{}", self.log_tail()));
            }
            check(&report).map(|_| report)
        })
    }

    pub fn console(&self, vm_id: &str) -> String {
        self.http
            .get(self.url(&format!("/agent/v1/vms/{vm_id}/console")))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    pub fn wait_console(&self, vm_id: &str, needle: &str, timeout: Duration) -> String {
        poll(&format!("console of {vm_id} to show {needle:?}"), timeout, || {
            let text = self.console(vm_id);
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(text.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
            }
        })
    }

    pub fn metrics(&self) -> String {
        self.http.get(self.url("/metrics")).send().and_then(|r| r.text()).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- agent {} log tail ---\n{}", self.host_id, self.log_tail());
        }
        self.kill9();
    }
}
