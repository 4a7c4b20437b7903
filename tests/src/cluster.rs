//! A cluster of real `hci-controller` processes on loopback, and the faults tests inflict on it.
//!
//! Each cluster lives in its own temporary directory (one data dir and one log file per member) with
//! ports picked at run time, so tests run in parallel without interfering. Members are addressed by
//! their Raft id (1..=n). Readiness is always polled against a deadline. The cluster owns its child
//! processes: dropping it resumes stopped ones and kills all of them, so no test leaves processes
//! behind, and when a test is failing (panicking) the tail of every member's log is printed first,
//! which is usually all one needs to see why.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::api::Api;
use crate::bins;
use crate::ports::free_port;
use crate::wait::{poll, try_poll};

/// How long a member may take to come up (open RocksDB, bind) or a cluster to form.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Member {
    id: u64,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
    starts: u32,
}

/// Options of a cluster to start; `Cluster::builder(n)...start()`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    n: u64,
    snapshot_every: Option<u64>,
    site: Option<String>,
    extra_args: Vec<String>,
}

impl ClusterBuilder {
    /// `--snapshot-every N` on every member.
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n);
        self
    }
    /// `--site NAME` on every member.
    pub fn site(mut self, site: &str) -> Self {
        self.site = Some(site.to_string());
        self
    }
    /// More flags for every member.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
    pub fn start(self) -> Cluster {
        Cluster::start_with(self)
    }
}

/// A running cluster. Member ids are 1..=n.
pub struct Cluster {
    opts: ClusterBuilder,
    members: Mutex<Vec<Member>>,
    api: Option<Api>,
    token: String,
    // Last field: removed after the children are gone.
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("n", &self.opts.n).field("dir", &self.dir.as_ref().map(|d| d.path())).finish()
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

impl Cluster {
    /// Options for an `n`-member cluster (1, 3 or 5).
    pub fn builder(n: u64) -> ClusterBuilder {
        ClusterBuilder { n, snapshot_every: None, site: None, extra_args: Vec::new() }
    }

    /// Starts an `n`-member cluster and waits until every member sees all `n` voters and one leader.
    pub fn start(n: u64) -> Cluster {
        Self::builder(n).start()
    }

    fn start_with(opts: ClusterBuilder) -> Cluster {
        assert!(opts.n >= 1, "a cluster has at least one member");
        // Fail early, with the build hint, before creating anything.
        bins::controller();
        let dir = tempfile::Builder::new().prefix("hci-test-").tempdir().expect("tempdir");
        let members = (1..=opts.n)
            .map(|id| Member {
                id,
                port: free_port(),
                data_dir: dir.path().join(format!("m{id}")),
                log: dir.path().join(format!("m{id}.log")),
                child: None,
                stopped: false,
                starts: 0,
            })
            .collect::<Vec<_>>();
        for m in &members {
            std::fs::create_dir_all(&m.data_dir).expect("create data dir");
        }
        let mut cluster =
            Cluster { opts, members: Mutex::new(members), api: None, token: String::new(), dir: Some(dir) };

        // Member 1 bootstraps a one-member cluster and writes the admin token; the others start
        // empty and wait to be added. All are started before the API client is made, because a
        // port clash at first start moves a member to another port.
        let n = cluster.opts.n;
        for id in 1..=n {
            cluster.first_start(id);
        }
        let token_path = cluster.data_dir(1).join("admin.token");
        let token = poll(&format!("{} to be written", token_path.display()), START_TIMEOUT, || {
            cluster.check_alive(1);
            match std::fs::read_to_string(&token_path) {
                Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
                Ok(_) => Err("file is empty".into()),
                Err(e) => Err(e.to_string()),
            }
        });
        cluster.token = token.clone();
        let urls = cluster.ids().iter().map(|id| cluster.url(*id)).collect::<Vec<_>>();
        cluster.api = Some(Api::new(urls, token));
        poll("member 1 to report itself leader", START_TIMEOUT, || {
            cluster.check_alive(1);
            let s = cluster.api().stale_status(1)?;
            if s.leader_id == Some(1) && s.members.iter().any(|m| m.id == 1 && m.role == "leader") {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        });

        let slow = cluster.api().with_timeout(Duration::from_secs(60));
        for id in 2..=n {
            let addr = cluster.addr(id);
            poll(&format!("POST /v1/cluster/members {{id: {id}}} to succeed"), Duration::from_secs(60), || {
                cluster.check_alive(1);
                cluster.check_alive(id);
                let r = slow.try_post_json(1, "/v1/cluster/members", &json!({"id": id, "addr": addr}))?;
                if r.ok() {
                    Ok(())
                } else if r.status == 503 {
                    Err(r.to_string())
                } else {
                    panic!("POST /v1/cluster/members {{id: {id}, addr: {addr}}} to member 1: {r}")
                }
            });
        }
        cluster.wait_all_voters(START_TIMEOUT);
        cluster
    }

    /// Waits until every running member reports the same leader and all n members as voters.
    pub fn wait_all_voters(&self, timeout: Duration) {
        let want: BTreeSet<u64> = (1..=self.opts.n).collect();
        poll("every member to report the full voter set and one leader", timeout, || {
            let mut leaders = BTreeSet::new();
            for id in self.running() {
                let s = self.api().stale_status(id)?;
                let voters: BTreeSet<u64> =
                    s.members.iter().filter(|m| m.role == "leader" || m.role == "follower").map(|m| m.id).collect();
                if voters != want || s.leader_id.is_none() {
                    return Err(format!("member {id} reports {s:?}"));
                }
                leaders.insert(s.leader_id);
            }
            if leaders.len() == 1 {
                Ok(())
            } else {
                Err(format!("members disagree on the leader: {leaders:?}"))
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_member<T>(&self, id: u64, f: impl FnOnce(&mut Member) -> T) -> T {
        let mut members = self.lock();
        let m = members.iter_mut().find(|m| m.id == id).unwrap_or_else(|| panic!("no member {id}"));
        f(m)
    }

    fn spawn(&self, id: u64) {
        let controller = bins::controller();
        let opts = self.opts.clone();
        self.with_member(id, |m| {
            assert!(m.child.is_none(), "member {id} is already running");
            m.starts += 1;
            let mut log = OpenOptions::new().create(true).append(true).open(&m.log).expect("open member log");
            let mut cmd = Command::new(&controller);
            cmd.arg("--id")
                .arg(id.to_string())
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", m.port))
                .arg("--data-dir")
                .arg(&m.data_dir);
            if let Some(site) = &opts.site {
                cmd.arg("--site").arg(site);
            }
            // The contract: later starts ignore --bootstrap, so a restart is the very same command.
            if id == 1 {
                cmd.arg("--bootstrap");
            }
            if let Some(n) = opts.snapshot_every {
                cmd.arg("--snapshot-every").arg(n.to_string());
            }
            cmd.args(&opts.extra_args);
            // Plain text logs: they are read in files, not on a terminal.
            cmd.env("NO_COLOR", "1");
            let _ = writeln!(log, "==== harness: start #{} of member {id}: {:?}", m.starts, cmd);
            let out = log.try_clone().expect("clone log handle");
            cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(log));
            let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", controller.display()));
            m.child = Some(child);
            m.stopped = false;
        })
    }

    /// Panics (with the member's log tail) if member `id` should be running but has exited.
    #[track_caller]
    fn check_alive(&self, id: u64) {
        let exited = self.with_member(id, |m| match m.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                m.child = None;
                Some(status)
            }
            _ => None,
        });
        if let Some(status) = exited {
            panic!(
                "member {id} exited unexpectedly ({status}); its log {}:\n{}",
                self.log_path(id).display(),
                tail(&self.log_path(id), 40)
            );
        }
    }

    /// Polls `GET /healthz` on member `id` until 200.
    pub fn wait_healthy(&self, id: u64) {
        if let Err(e) = self.try_wait_healthy(id) {
            panic!("{e}");
        }
    }

    /// Like [`Cluster::wait_healthy`], but says why instead of panicking (exit, or timeout).
    fn try_wait_healthy(&self, id: u64) -> Result<(), String> {
        let url = format!("{}/healthz", self.url(id));
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        let start = Instant::now();
        loop {
            let exited = self.with_member(id, |m| match m.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => {
                    m.child = None;
                    Some(status)
                }
                _ => None,
            });
            if let Some(status) = exited {
                return Err(format!(
                    "member {id} exited while starting ({status}); its log {}:\n{}",
                    self.log_path(id).display(),
                    tail(&self.log_path(id), 40)
                ));
            }
            let last = match client.get(&url).send() {
                Ok(r) if r.status().as_u16() == 200 => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > START_TIMEOUT {
                return Err(format!("member {id} GET /healthz not 200 within {START_TIMEOUT:?}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// First start of a member: if another process took its port in the moment between picking
    /// and binding it, pick another (it is in no membership yet, so its address may still change).
    fn first_start(&self, id: u64) {
        for attempt in 1..=3 {
            self.spawn(id);
            match self.try_wait_healthy(id) {
                Ok(()) => return,
                Err(e) if attempt < 3 && e.contains("Address already in use") => {
                    let port = free_port();
                    eprintln!("member {id}: port taken at start, retrying on {port}");
                    self.with_member(id, |m| m.port = port);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The API client, with the admin token and 10 s timeouts.
    pub fn api(&self) -> &Api {
        self.api.as_ref().expect("cluster API not ready yet")
    }

    /// A bare reqwest client with the admin bearer token and short timeouts.
    pub fn client(&self) -> reqwest::blocking::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token)).expect("token header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::blocking::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("client")
    }

    pub fn n(&self) -> u64 {
        self.opts.n
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.opts.n).collect()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn port(&self, id: u64) -> u16 {
        self.with_member(id, |m| m.port)
    }

    /// `127.0.0.1:PORT` of member `id`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.port(id))
    }

    /// `http://127.0.0.1:PORT` of member `id`.
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.addr(id))
    }

    /// The sum over the running members of an unlabelled counter in their `/metrics` (counters
    /// that only the leader moves: the sum survives a change of leader).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let client = self.client();
        self.running()
            .iter()
            .filter_map(|id| client.get(format!("{}/metrics", self.url(*id))).send().ok()?.text().ok())
            .filter_map(|text| crate::agent::metric(&text, name))
            .sum()
    }

    /// Every member's URL, comma-joined (for `HCI_URL`).
    pub fn urls(&self) -> String {
        self.ids().iter().map(|id| self.url(*id)).collect::<Vec<_>>().join(",")
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.with_member(id, |m| m.data_dir.clone())
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.with_member(id, |m| m.log.clone())
    }

    /// Members whose process runs and is not SIGSTOPped.
    pub fn running(&self) -> Vec<u64> {
        let mut members = self.lock();
        members
            .iter_mut()
            .filter_map(|m| {
                let alive = matches!(m.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
                (alive && !m.stopped).then_some(m.id)
            })
            .collect()
    }

    /// The leader every running member agrees on (from their stale views), if they agree and it runs.
    pub fn leader(&self) -> Option<u64> {
        self.leader_status().ok()
    }

    fn leader_status(&self) -> Result<u64, String> {
        let running = self.running();
        if running.is_empty() {
            return Err("no member is running".into());
        }
        let quick = self.api().with_timeout(Duration::from_secs(2));
        let mut seen = Vec::new();
        for id in &running {
            let s = quick.stale_status(*id)?;
            seen.push((*id, s.leader_id, s.term));
        }
        let first = seen[0].1;
        match first {
            Some(l) if running.contains(&l) && seen.iter().all(|(_, leader, _)| *leader == first) => Ok(l),
            _ => Err(format!("(member, leader_id, term) views: {seen:?}")),
        }
    }

    /// Polls until the running members agree on a running leader; returns its id.
    pub fn wait_for_leader(&self, timeout: Duration) -> u64 {
        poll("the running members to agree on a leader", timeout, || self.leader_status())
    }

    /// Running members other than the agreed leader.
    pub fn followers(&self) -> Vec<u64> {
        let leader = self.wait_for_leader(Duration::from_secs(10));
        self.running().into_iter().filter(|id| *id != leader).collect()
    }

    /// Member `id`'s own (stale) view of the cluster.
    pub fn status(&self, id: u64) -> Result<hci_shared::api::ClusterStatus, String> {
        self.api().stale_status(id)
    }

    /// kill -9 member `id` and reap it.
    pub fn kill9(&self, id: u64) {
        self.with_member(id, |m| {
            let mut child = m.child.take().unwrap_or_else(|| panic!("member {id} is not running"));
            let _ = child.kill();
            let _ = child.wait();
            m.stopped = false;
        })
    }

    /// Starts member `id` again on its data dir (the same command line) and waits for `/healthz`.
    pub fn restart(&self, id: u64) {
        self.spawn(id);
        self.wait_healthy(id);
    }

    fn signal(&self, id: u64, sig: Signal) {
        self.with_member(id, |m| {
            let child = m.child.as_ref().unwrap_or_else(|| panic!("member {id} is not running"));
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}) on member {id}: {e}"));
            match sig {
                Signal::SIGSTOP => m.stopped = true,
                Signal::SIGCONT => m.stopped = false,
                _ => {}
            }
        })
    }

    /// Freezes member `id` (a partition that keeps its sockets open).
    pub fn sigstop(&self, id: u64) {
        self.signal(id, Signal::SIGSTOP)
    }

    pub fn sigcont(&self, id: u64) {
        self.signal(id, Signal::SIGCONT)
    }

    /// SIGTERM member `id` and wait for it to exit; panics (after killing it) if it takes over 20 s.
    pub fn sigterm(&self, id: u64) -> ExitStatus {
        self.signal(id, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.with_member(id, |m| {
                let child = m.child.as_mut().expect("running");
                match child.try_wait() {
                    Ok(Some(s)) => {
                        m.child = None;
                        Some(s)
                    }
                    _ => None,
                }
            });
            if let Some(s) = status {
                return s;
            }
            if Instant::now() >= deadline {
                self.kill9(id);
                panic!("member {id} did not exit within 20 s of SIGTERM (killed it)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until member `id` has applied at least `index`.
    pub fn wait_caught_up(&self, id: u64, index: u64) {
        poll(&format!("member {id} to apply index {index}"), Duration::from_secs(30), || {
            let s = self.status(id)?;
            match s.last_applied {
                Some(a) if a >= index => Ok(()),
                other => Err(format!("last_applied {other:?}")),
            }
        })
    }

    /// Like [`poll`] but does not panic: for callers that want to report themselves.
    pub fn try_wait_caught_up(&self, id: u64, index: u64, timeout: Duration) -> Result<(), String> {
        try_poll(timeout, || {
            let s = self.status(id)?;
            match s.last_applied {
                Some(a) if a >= index => Ok(()),
                other => Err(format!("last_applied {other:?}")),
            }
        })
    }

    /// Prints the last lines of every member's log to stderr.
    pub fn dump_logs(&self, lines: usize) {
        for id in self.ids() {
            let path = self.log_path(id);
            eprintln!("----- member {id}: last {lines} lines of {} -----\n{}", path.display(), tail(&path, lines));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs(60);
        }
        let mut members = self.lock();
        for m in members.iter_mut() {
            if let Some(mut child) = m.child.take() {
                if m.stopped {
                    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
                    let _ = kill(pid, Signal::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        drop(members);
        if std::env::var_os("HCI_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("HCI_TEST_KEEP: cluster directory kept at {}", path.display());
            }
        }
    }
}
