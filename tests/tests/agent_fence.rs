//! Self-fencing with real agents, real libvirt and real controllers (docs/fencing.md).
//!
//! (a) An agent in its own network namespace runs an HA VM; its link goes down: the VM is powered off
//!     within `fence_after_ms` plus a little, stays off across an agent restart while cut, stays off
//!     after the link is back while the controller says `fenced`, and boots again once an operator
//!     returned the host to service (`ready`, with a desired state at least as new as the
//!     controller's held).
//! (b) Every controller is killed: the agents, which still reach each other, see that nobody hears
//!     the controllers and keep their VMs running (the guest's console heartbeat goes on) for well
//!     past `fence_after_ms`, and still when the controllers come back.
//!
//! The test plays the controller's part of the desired state (isolation policy, generations) through
//! `PUT /agent/v1/desired`, at generations far above the controller's own, so the controller's feed
//! never replaces it. Needs root, `scripts/libvirt/up.sh`, `ip`, `nft`, `curl`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hci_shared::agent::{
    HostDesired, HostReport, ImageFormat, ImageRef, Isolation, PeerAgent, VmDesired, VmRunState, VolumeDesired,
    VolumeSource,
};
use hci_shared::resources::PowerState;
use hci_shared::time::parse_rfc3339_ms;
use hci_tests::agent::{metric, sha256_file, test_guest, AgentProc, LibvirtHost};
use hci_tests::netns::Netns;
use hci_tests::ports::free_port;
use hci_tests::site::{hcictl, Site};
use hci_tests::{bins, poll, Cluster};

const BOOT: Duration = Duration::from_secs(150);
const LEASE_MS: u64 = 4000;
const FENCE_AFTER_MS: u64 = 2500;
/// Far above any generation the controller gives these hosts.
const GEN: u64 = 1_000_000;

fn boot_volume() -> VolumeDesired {
    let disk = test_guest().join("disk.qcow2");
    VolumeDesired {
        id: "vol-ha".into(),
        pool: "default".into(),
        size_gib: 1,
        source: VolumeSource::Image(ImageRef {
            name: "guest".into(),
            source: format!("file://{}", disk.display()),
            format: ImageFormat::Qcow2,
            sha256: sha256_file(&disk),
        }),
        snapshots: vec![],
        rollback: None,
    }
}

fn ha_vm() -> VmDesired {
    VmDesired {
        id: "ha".into(),
        name: "ha".into(),
        vcpus: 1,
        memory_mib: 256,
        arch: "x86_64".into(),
        firmware: "x86_64-bios".into(),
        disks: vec!["vol-ha".into()],
        nics: vec![],
        power: PowerState::Running,
        reboot_count: 0,
        oem_strings: vec!["hci.heartbeat=1".into()],
        migration: None,
        snapshots: vec![],
        revert: None,
    }
}

/// Built from JSON, so fields the desired state gains later (with defaults) need no change here.
fn desired(host: &str, generation: u64, peers: Vec<PeerAgent>) -> HostDesired {
    let isolation = Isolation { fence_after_ms: FENCE_AFTER_MS, fence_vms: vec!["ha".into()], peers };
    serde_json::from_value(serde_json::json!({
        "host_id": host,
        "generation": generation,
        "volumes": [boot_volume()],
        "vms": [ha_vm()],
        "isolation": isolation,
    }))
    .expect("a desired state")
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

fn domstate(host: &LibvirtHost, domain: &str) -> String {
    host.domstate(domain)
}

fn alive_lines(console: &str) -> usize {
    console.lines().filter(|l| l.contains("HCI-GUEST-ALIVE")).count()
}

/// An agent inside a network namespace; every request goes through `curl` inside it, so the test
/// still reads the agent's API while its link is down.
struct NsAgent {
    /// The network namespace it runs in.
    ns: String,
    host_id: String,
    args: Vec<String>,
    url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NsAgent {
    fn start(ns: &Netns, host: &LibvirtHost, controller_port: u16, token_file: &std::path::Path) -> Self {
        let dir = tempfile::Builder::new().prefix("hci-agent-").tempdir_in("/var/tmp").expect("temp dir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let listen = format!("{}:{}", ns.ns_ip, free_port());
        let url = format!("http://{listen}");
        let args = [
            "--host-id",
            &host.id,
            "--libvirt-uri",
            &host.uri,
            "--reconcile-interval",
            "2",
            "--shutdown-timeout",
            "20",
            "--listen",
            &listen,
            "--advertise",
            &url,
            "--controller",
            &ns.host_url(controller_port),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--token-file".to_string(), token_file.display().to_string()])
        .chain(["--data-dir".to_string(), dir.path().join("data").display().to_string()])
        .collect();
        let mut agent = Self { ns: ns.name.clone(), host_id: host.id.clone(), args, url, dir, child: None };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("agent log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bins::bin("hci-agent"))
            .args(&self.args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hci-agent in the namespace");
        self.child = Some(child);
        poll("namespaced agent /healthz", Duration::from_secs(30), || self.get("/healthz").map(|_| ()));
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn curl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "-m", "5", "--fail-with-body"])
            .args(args)
            .output();
        let out = out.map_err(|e| format!("curl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("curl {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn get(&self, path: &str) -> Result<String, String> {
        self.curl(&[&format!("{}{path}", self.url)])
    }

    fn put_desired(&self, desired: &HostDesired) {
        let file = self.dir.path().join("desired.json");
        std::fs::write(&file, serde_json::to_vec(desired).expect("json")).expect("write desired");
        let body = format!("@{}", file.display());
        let url = format!("{}/agent/v1/desired", self.url);
        let args = ["-X", "PUT", "-H", "content-type: application/json", "--data-binary", &body, &url];
        self.curl(&args).unwrap_or_else(|e| panic!("PUT desired: {e}"));
    }

    fn report(&self) -> Result<HostReport, String> {
        serde_json::from_str(&self.get("/agent/v1/report")?).map_err(|e| e.to_string())
    }

    fn metrics(&self) -> String {
        self.get("/metrics").unwrap_or_default()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/vms/ha/console.log")).unwrap_or_default()
    }

    fn last_ack_age_ms(&self) -> Option<u64> {
        let text = self.get("/agent/v1/controller-contact").ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["last_ack_age_ms"].as_u64()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- agent {} log tail ---\n{}",
                self.host_id,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        self.kill9();
    }
}

fn write_token(cluster: &Cluster, dir: &std::path::Path, host: &str) -> PathBuf {
    let token = hcictl(cluster, &["host", "join-token", "create"]);
    let file = dir.join(format!("{host}.token"));
    std::fs::write(&file, token["token"].as_str().expect("token")).expect("token file");
    file
}

fn host_state(cluster: &Cluster, id: &str) -> Result<String, String> {
    let r = cluster.api().try_get(1, &format!("/v1/hosts/{id}"))?;
    r.json["state"].as_str().map(str::to_string).ok_or(r.text)
}

/// One controller, a peer agent on this machine's loopback, and the agent under test in its own
/// network namespace running the HA VM (booted), its peer reached through the namespace's gateway.
struct Isolatable {
    // Drop order: agents, then the namespace and libvirt instances, then the controller.
    agent: NsAgent,
    _peer: AgentProc,
    ns: Netns,
    host_a: LibvirtHost,
    _host_p: LibvirtHost,
    _tokens: tempfile::TempDir,
    cluster: Cluster,
    id_a: String,
    domain: String,
}

impl Isolatable {
    fn start(tag: &str) -> Self {
        let pid = std::process::id() % 100_000;
        let (id_a, id_p) = (format!("t-f{tag}-a-{pid}"), format!("t-f{tag}-p-{pid}"));
        let cluster = Cluster::builder(1).arg("--host-lease-ms").arg(&LEASE_MS.to_string()).start();
        let tokens = tempfile::tempdir().expect("tempdir");
        let (host_a, host_p) = (LibvirtHost::up(&id_a), LibvirtHost::up(&id_p));
        let ns = Netns::create();
        let peer_token = write_token(&cluster, tokens.path(), &id_p).display().to_string();
        let peer =
            AgentProc::start_with(&host_p, &["--controller".into(), cluster.url(1), "--token-file".into(), peer_token]);
        let agent = NsAgent::start(&ns, &host_a, cluster.port(1), &write_token(&cluster, tokens.path(), &id_a));
        for id in [&id_a, &id_p] {
            poll(&format!("host {id} ready"), Duration::from_secs(60), || match host_state(&cluster, id)? {
                s if s == "ready" => Ok(()),
                s => Err(s),
            });
        }
        let peers = vec![PeerAgent { host_id: id_p.clone(), agent_url: ns.host_url(peer.port) }];
        agent.put_desired(&desired(&id_a, GEN, peers));
        poll("the HA VM to boot", BOOT, || {
            let r = agent.report()?;
            match r.vms.first() {
                Some(v) if v.state == VmRunState::Running && agent.console().contains("HCI-GUEST-ALIVE") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        let domain = format!("hci-{id_a}-ha");
        Self { agent, _peer: peer, ns, host_a, _host_p: host_p, _tokens: tokens, cluster, id_a, domain }
    }

    /// Cuts with `cut`, waits for the VM to be shut off, and returns (when the power-off began, when
    /// libvirt said shut off), both counted from the send of the last acknowledged heartbeat, and the
    /// fencing's log line. The power-off begins within fence_after_ms of that send plus the
    /// watcher's tick; libvirt's destroy SIGTERMs QEMU at once (the guest stops) but reports the
    /// domain shut off only once QEMU has exited, one to two seconds later here under TCG.
    fn cut_and_wait_fenced(&self, cut: impl FnOnce(&Netns)) -> (Duration, Duration, String) {
        cut(&self.ns);
        // Read after the cut: no heartbeat is acknowledged after it (its API answers inside the namespace).
        let age = self.agent.last_ack_age_ms().expect("heartbeats acknowledged before the cut");
        let (last_ack, last_ack_wall_ms) = (Instant::now() - Duration::from_millis(age), now_unix_ms() - age);
        poll("the HA VM to be fenced", Duration::from_millis(FENCE_AFTER_MS + 6000), || {
            match domstate(&self.host_a, &self.domain) {
                s if s == "shut off" => Ok(()),
                s => Err(s),
            }
        });
        let shut_off = last_ack.elapsed();
        let log = self.agent.log();
        let line = log
            .lines()
            .find(|l| l.contains("fencing: powering off HA VMs"))
            .unwrap_or_else(|| panic!("no fencing in the agent's log:\n{log}"))
            .to_string();
        let at = line.split_whitespace().next().and_then(parse_rfc3339_ms).expect("log time stamp");
        let decided = Duration::from_millis(at.saturating_sub(last_ack_wall_ms));
        eprintln!(
            "power-off began {} ms and libvirt said shut off {} ms after the last acknowledged heartbeat was \
             sent (fence_after_ms {FENCE_AFTER_MS})",
            decided.as_millis(),
            shut_off.as_millis()
        );
        assert!(shut_off < Duration::from_millis(FENCE_AFTER_MS + 4000), "shut off {shut_off:?} after the last ack");
        (decided, shut_off, line)
    }
}

#[test]
fn isolated_agent_fences_its_ha_vm_and_boots_it_again_only_when_taken_back() {
    let mut t = Isolatable::start("a");
    // Cut: the link goes down, the peer cannot be reached either: fenced.
    let (decided, _, why) = t.cut_and_wait_fenced(Netns::cut);
    assert!(decided < Duration::from_millis(FENCE_AFTER_MS + 1000), "fencing began {decided:?} after the last ack");
    assert!(why.contains("does not answer"), "{why}");
    let (agent, ns, host_a, cluster) = (&mut t.agent, &t.ns, &t.host_a, &t.cluster);
    let (id_a, domain) = (&t.id_a, &t.domain);
    let m = agent.metrics();
    assert_eq!(
        (metric(&m, "hci_agent_fence_events_total"), metric(&m, "hci_agent_fenced_vms")),
        (Some(1.0), Some(1.0))
    );

    // An agent restart while still cut: the VM stays off (the record is on disk), for several passes.
    agent.kill9();
    agent.spawn();
    let passes = |a: &NsAgent| metric(&a.metrics(), "hci_agent_reconcile_passes_total").unwrap_or(0.0);
    poll("three passes after the restart", Duration::from_secs(30), || {
        if passes(agent) >= 3.0 {
            Ok(())
        } else {
            Err(format!("{} passes", passes(agent)))
        }
    });
    assert_eq!(domstate(host_a, domain), "shut off", "a restart while cut must not start it");
    let report = agent.report().expect("report");
    let ha = &report.vms[0];
    assert_eq!(ha.state, VmRunState::Stopped);
    assert!(ha.last_error.as_deref().is_some_and(|e| e.starts_with("fenced: lost the controllers at ")), "{ha:?}");

    // Meanwhile the controller, after the lease and its HA margin, fenced the host (it would restart
    // its HA VMs elsewhere now). Restore: acknowledgements say `fenced`, so the VM stays off.
    poll("host fenced at the controller", Duration::from_secs(30), || match host_state(cluster, id_a)? {
        s if s == "fenced" => Ok(()),
        s => Err(s),
    });
    ns.restore();
    poll("heartbeats acknowledged again", Duration::from_secs(30), || match agent.last_ack_age_ms() {
        Some(age) if age < 2000 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let before = passes(agent);
    let two_more_passes = |what: &str, from: f64| {
        poll(what, Duration::from_secs(30), || {
            (passes(agent) >= from + 2.0).then_some(()).ok_or_else(|| "waiting".to_string())
        })
    };
    two_more_passes("two passes after the fenced ack", before);
    assert_eq!(domstate(host_a, domain), "shut off", "the controller says fenced");

    // An operator returns the host to service: acknowledgements say `ready`, and the desired state
    // this test holds on the agent is newer than the controller's generation for the host, so the
    // controller's decisions while the host was away are in it: the VM boots again.
    let alive_before = alive_lines(&agent.console());
    let path = format!("/v1/hosts/{id_a}/maintenance");
    cluster.api().post_json(1, &path, &serde_json::json!({"enabled": false})).expect(200, "unfence");
    poll("host ready again", Duration::from_secs(30), || match host_state(cluster, id_a)? {
        s if s == "ready" => Ok(()),
        s => Err(s),
    });
    poll("the HA VM to boot again", BOOT, || {
        let r = agent.report()?;
        let booted = alive_lines(&agent.console()) > alive_before;
        match r.vms.first() {
            Some(v) if v.state == VmRunState::Running && v.last_error.is_none() && booted => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(metric(&agent.metrics(), "hci_agent_fenced_vms"), Some(0.0));
}

#[test]
fn agent_cut_from_the_controllers_alone_fences_when_its_peer_still_hears_them() {
    let t = Isolatable::start("c");
    // Only the controller's port is dropped (its heartbeats hang, as in a black hole); the peer
    // still answers, and it hears the controllers.
    let port = t.cluster.port(1);
    let (decided, _, why) = t.cut_and_wait_fenced(|ns| ns.drop_tcp_to(&[port]));
    assert!(why.contains("reaches the controllers"), "{why}");
    assert!(decided < Duration::from_millis(FENCE_AFTER_MS + 1500), "fencing began {decided:?} after the last ack");
    assert_eq!(metric(&t.agent.metrics(), "hci_agent_fenced_vms"), Some(1.0));
}

#[test]
fn a_full_controller_outage_keeps_every_vm_running() {
    let site = Site::start("t-fo", 2, LEASE_MS, &[]);
    let (a, b) = (&site.agents[0], &site.agents[1]);
    let peers = vec![PeerAgent { host_id: b.host_id.clone(), agent_url: b.url("") }];
    assert_eq!(a.put_desired(&desired(&a.host_id, GEN, peers)), 200);
    a.wait_converged(GEN, BOOT, |_| Ok(()));
    a.wait_console("ha", "HCI-GUEST-ALIVE", BOOT);
    let domain = format!("hci-{}-ha", a.host_id);

    // Every controller dies. Both agents stop hearing them; each asks the other.
    for id in site.cluster.ids() {
        site.cluster.kill9(id);
    }
    let age = |agent: &hci_tests::agent::AgentProc| -> Option<u64> {
        let text = reqwest::blocking::get(agent.url("/agent/v1/controller-contact")).ok()?.text().ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["last_ack_age_ms"].as_u64()
    };
    // Well past fence_after_ms (three times), the VM runs and the guest's heartbeat goes on.
    let alive_at_kill = alive_lines(&a.console("ha"));
    poll("three times fence_after_ms without an ack", Duration::from_secs(60), || match age(a) {
        Some(ms) if ms >= 3 * FENCE_AFTER_MS => Ok(()),
        other => {
            assert_eq!(domstate(&site.hosts[0], &domain), "running", "fenced during a controller outage");
            Err(format!("{other:?}"))
        }
    });
    assert_eq!(domstate(&site.hosts[0], &domain), "running");
    let alive = alive_lines(&a.console("ha"));
    assert!(alive >= alive_at_kill + 5, "guest heartbeats went from {alive_at_kill} to {alive}");
    eprintln!("no controller for {} ms: the VM runs, guest heartbeats {alive_at_kill} -> {alive}", age(a).unwrap_or(0));
    assert_eq!(metric(&a.metrics(), "hci_agent_fence_events_total"), Some(0.0));
    let log = std::fs::read_to_string(a.dir.path().join("agent.log")).expect("agent log");
    assert_eq!(log.matches("a controller outage, HA VMs keep running").count(), 1, "logged once:\n{log}");

    // The controllers come back: the agents reconnect, nothing is fenced on the way.
    for id in site.cluster.ids() {
        site.cluster.restart(id);
    }
    poll("heartbeats acknowledged again", Duration::from_secs(60), || match age(a) {
        Some(ms) if ms < 2000 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(domstate(&site.hosts[0], &domain), "running");
    assert_eq!(metric(&a.metrics(), "hci_agent_fence_events_total"), Some(0.0));
}
