//! Issue #4, host failure and HA, on real libvirt: 3 controllers (placing with `pack`), 3 agents
//! (simulated hosts, one libvirtd and one local pool each) and a one-node Ceph cluster whose pool
//! every host reaches. An HA VM booting from
//! a Ceph (shared) volume and a VM booting from a local (dir pool) volume run on the same host; that
//! host then fails for real: its agent, its libvirtd and virtlogd, and its guests' QEMU are killed
//! with SIGKILL. The host goes `offline` after the lease, then `fenced` once it has been silent for
//! the lease plus the HA margin and not before (measured from its last heartbeat as the leader
//! reported it); the HA VM boots on another host (its console there shows the guest's boot line),
//! within the cap; the local-volume VM stays on the dead host, reported `host_down` with the
//! reason, and is defined nowhere else.
//!
//! Needs root, `scripts/libvirt/up.sh` (one libvirt instance per simulated host) and Ceph
//! (`scripts/ceph/up.sh`, run by the test).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hci_shared::time::parse_rfc3339_ms;
use hci_tests::agent::{sha256_file, test_guest, AgentProc, LibvirtHost};
use hci_tests::ceph::CephCluster;
use hci_tests::site::{hcictl, wait_actual, wait_vm};
use hci_tests::wait::poll_every;
use hci_tests::{poll, Api, Cluster};
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(180);
const LEASE_MS: u64 = 3000;
/// The controllers' default `--ha-restart-margin-ms`: half the lease.
const MARGIN_MS: u64 = LEASE_MS / 2;

fn wall_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

/// Every process of simulated host `id`'s libvirt instance: its daemons (pid files) and the QEMU
/// of its guests (domains are named `hci-<host>-<vm>`).
fn host_processes(id: &str) -> Vec<i32> {
    let base = std::env::var("HCI_HOSTS_DIR").unwrap_or_else(|_| "/run/hci-hosts".into());
    let run = Path::new(&base).join(id).join("run");
    let mut pids: Vec<i32> = ["libvirtd.pid", "virtlogd.pid"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(run.join(f)).ok()?.trim().parse().ok())
        .collect();
    let needle = format!("guest=hci-{id}-");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// 3 controllers placing with `pack` (so two VMs share a host), 3 hosts with a local pool
/// `default` each and the Ceph pool `ceph`. Field order is drop order.
struct HaSite {
    agents: Vec<AgentProc>,
    hosts: Vec<LibvirtHost>,
    ids: Vec<String>,
    cluster: Cluster,
    _dirs: tempfile::TempDir,
}

impl HaSite {
    fn start(ceph: &CephCluster) -> Self {
        let cluster = Cluster::builder(3)
            .arg("--host-lease-ms")
            .arg(&LEASE_MS.to_string())
            .arg("--placement-strategy")
            .arg("pack")
            .start();
        let pid = std::process::id();
        let ids: Vec<String> = (1..=3).map(|i| format!("ha{i}-{pid}")).collect();
        let hosts: Vec<LibvirtHost> = std::thread::scope(|s| {
            let handles: Vec<_> = ids.iter().map(|id| s.spawn(move || LibvirtHost::up(id))).collect();
            handles.into_iter().map(|h| h.join().expect("libvirt host up")).collect()
        });
        // Traversable by libvirt's QEMU user (the local pools live here).
        let dirs = tempfile::Builder::new().prefix("hci-ha-").tempdir_in("/var/tmp").expect("temp dir");
        std::fs::set_permissions(dirs.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let agents = hosts
            .iter()
            .map(|h| {
                let token = hcictl(&cluster, &["host", "join-token", "create"]);
                let file = dirs.path().join(format!("{}.token", h.id));
                std::fs::write(&file, token["token"].as_str().expect("token")).expect("token file");
                let pool = dirs.path().join(format!("{}-pool", h.id));
                let args = [
                    "--controller".to_string(),
                    cluster.urls(),
                    "--token-file".into(),
                    file.display().to_string(),
                    "--pool".into(),
                    format!("default={}", pool.display()),
                    "--rbd-pool".into(),
                    format!("ceph=hci@{}", ceph.monitor),
                ];
                AgentProc::start_with(h, &args)
            })
            .collect();
        let site = Self { agents, hosts, ids, cluster, _dirs: dirs };
        for id in &site.ids {
            poll(&format!("host {id} ready"), Duration::from_secs(60), || {
                let h = site.api().try_get(1, &format!("/v1/hosts/{id}"))?;
                if h.json["state"] == "ready" && h.json["heartbeat"].is_object() {
                    Ok(())
                } else {
                    Err(h.text)
                }
            });
        }
        site
    }

    fn api(&self) -> &Api {
        self.cluster.api()
    }

    fn hcictl(&self, args: &[&str]) -> Value {
        hcictl(&self.cluster, args)
    }

    fn index(&self, id: &str) -> usize {
        self.ids.iter().position(|h| h == id).unwrap_or_else(|| panic!("{id} is not one of {:?}", self.ids))
    }

    fn agent(&self, id: &str) -> &AgentProc {
        &self.agents[self.index(id)]
    }

    fn defines(&self, id: &str, vm: &str) -> bool {
        self.hosts[self.index(id)].domains().iter().any(|d| d.contains(vm))
    }
}

/// The host fails for real: SIGKILL to its agent, its libvirt daemons and its guests.
fn kill_host(site: &mut HaSite, id: &str) {
    let i = site.index(id);
    site.agents[i].kill9();
    let pids = host_processes(id);
    assert!(pids.len() >= 4, "libvirtd, virtlogd and two guests' QEMU of {id}: {pids:?}");
    for pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
    }
    poll(&format!("every process of {id} gone"), Duration::from_secs(20), || {
        let alive: Vec<i32> =
            pids.iter().copied().filter(|pid| Path::new(&format!("/proc/{pid}/cmdline")).exists()).collect();
        // A killed child of no one waits for its reaper as a zombie: its cmdline is empty.
        let running: Vec<i32> = alive
            .into_iter()
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| !c.is_empty()).unwrap_or(false))
            .collect();
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("{running:?}"))
        }
    });
}

fn host(site: &HaSite, id: &str) -> Value {
    site.api().get(1, &format!("/v1/hosts/{id}")).expect(200, "host").json
}

#[test]
fn a_failed_hosts_ha_vm_restarts_elsewhere_after_lease_and_margin_and_a_local_one_is_reported_down() {
    let ceph = CephCluster::up();
    let mut site = HaSite::start(&ceph);
    let api = site.api().clone();
    site.hcictl(&["tenant", "create", "ha", "--vcpus", "64", "--memory-mib", "16777216", "--disk-gib", "1000"]);
    let disk = test_guest().join("disk.qcow2");
    let url = format!("file://{}", disk.display());
    let sha = sha256_file(&disk);
    let volume = |name: &str, pool: &str| -> String {
        let args = ["volume", "create", name, "--tenant", "ha", "--size-gib", "1", "--pool", pool, "--source-url"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend([url.as_str(), "--source-sha256", &sha]);
        site.hcictl(&args)["id"].as_str().expect("volume id").to_string()
    };
    let create = |name: &str, memory: &str, volume: Option<&str>| -> Value {
        let mut args = vec!["vm", "create", name, "--tenant", "ha", "--vcpus", "1", "--memory-mib", memory];
        if let Some(volume) = volume {
            args.extend(["--volume", volume]);
        }
        site.hcictl(&args)
    };

    // The local VM lands on the first host (all empty); the HA VM joins it (pack: the most loaded).
    let local_disk = volume("pet-disk", "default");
    let pet = create("pet", "256", Some(&local_disk));
    let failing = pet["host"].as_str().expect("placed").to_string();
    let shared_disk = volume("web-disk", "ceph");
    let web = create("web", "256", Some(&shared_disk));
    assert_eq!(web["host"], failing.as_str(), "the HA vm joins the local one: {web}");
    assert_eq!(web["ha"], true, "HA by default");
    let (pet, web) = (pet["id"].as_str().expect("id").to_string(), web["id"].as_str().expect("id").to_string());
    for vm in [&pet, &web] {
        site.agent(&failing).wait_console(vm, "HCI-GUEST-BOOTED", BOOT);
        wait_actual(&api, vm, "running", BOOT);
    }
    let desired = site.agent(&failing).held_desired().expect("a desired state");
    let isolation = &desired["isolation"];
    assert_eq!(isolation["fence_after_ms"], LEASE_MS * 3 / 5, "{isolation}");
    assert_eq!(isolation["fence_vms"], serde_json::json!([web]), "only the HA vm on shared storage: {isolation}");
    assert_eq!(isolation["peers"].as_array().map(Vec::len), Some(2), "{isolation}");

    // --- the host fails ------------------------------------------------------------------------
    kill_host(&mut site, &failing);
    let killed = wall_ms();
    let killed_at = Instant::now();
    let sent = wall_ms();
    let age = host(&site, &failing)["heartbeat"]["age_ms"].as_u64().expect("heard from before it died");
    // When the leader last heard from it (at most this late: the answer was computed after `sent`).
    let last_heard = sent.saturating_sub(age);
    eprintln!("MEASURE {failing} last heard {} ms before the kill", killed.saturating_sub(last_heard));

    let others: Vec<String> = site.ids.iter().filter(|id| **id != failing).cloned().collect();
    let mut offline_since = None;
    let fenced =
        poll_every("the host offline, then fenced", Duration::from_secs(60), Duration::from_millis(100), || {
            // Read before the host: when the host is still offline afterwards, these saw the state
            // before any restart (fencing and restarting are one log entry).
            let vm = api.get(1, &format!("/v1/vms/{web}")).expect(200, "vm").json;
            let elsewhere: Vec<&String> = others.iter().filter(|other| site.defines(other, &web)).collect();
            let h = host(&site, &failing);
            match h["state"].as_str() {
                Some("offline") => {
                    offline_since.get_or_insert_with(|| h["state_since"].as_str().unwrap_or_default().to_string());
                    assert_eq!(vm["host"], failing.as_str(), "not restarted while the host is only offline: {vm}");
                    assert!(elsewhere.is_empty(), "{web} defined on {elsewhere:?} before {failing} was fenced");
                    Err(h.to_string())
                }
                Some("fenced") => Ok(h),
                _ => Err(h.to_string()),
            }
        });
    let fenced_since = parse_rfc3339_ms(fenced["state_since"].as_str().expect("since")).expect("RFC 3339");
    let offline_since = offline_since.expect("offline seen before fenced");
    let offline_since = parse_rfc3339_ms(&offline_since).expect("RFC 3339");
    eprintln!(
        "MEASURE {failing}: offline {} ms and fenced {} ms after the kill (lease {LEASE_MS} ms, margin {MARGIN_MS} ms)",
        offline_since as i64 - killed as i64,
        fenced_since as i64 - killed as i64
    );
    assert!(
        offline_since + 5 >= last_heard + LEASE_MS,
        "offline at {offline_since}, before the lease ran out ({last_heard} + {LEASE_MS})"
    );
    assert!(
        fenced_since + 5 >= last_heard + LEASE_MS + MARGIN_MS,
        "fenced (and its VMs restarted) at {fenced_since}, before lease + margin from its last heartbeat ({last_heard})"
    );
    assert!(fenced_since > offline_since);
    let reason = fenced["state_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no heartbeat for") && reason.contains("1 HA vm(s) restarted elsewhere"), "{fenced}");

    // --- the HA VM boots elsewhere, within the cap ----------------------------------------------
    let moved =
        wait_vm(&api, &web, "restarted on another host", Duration::from_secs(10), |vm| vm["host"] != failing.as_str());
    let target = moved["host"].as_str().expect("placed").to_string();
    assert!(others.contains(&target), "{moved}");
    assert!(moved["migration"].is_null(), "{moved}");
    site.agent(&target).wait_console(&web, "HCI-GUEST-BOOTED", BOOT);
    wait_actual(&api, &web, "running", BOOT);
    eprintln!("MEASURE kill → HA vm booted on {target} in {:?}", killed_at.elapsed());
    let volume = api.get(1, &format!("/v1/volumes/{shared_disk}")).expect(200, "volume").json;
    assert_eq!(volume["host"], target.as_str(), "the shared volume is bound to the new host: {volume}");
    let placed = host(&site, &target);
    let (used, total) = (
        placed["allocation"]["memory_mib"].as_u64().expect("allocation"),
        placed["inventory"]["memory_mib"].as_u64().expect("inventory"),
    );
    assert!(used * 100 <= total * 80, "{target} within the 80 % cap: {used} of {total} MiB");

    // --- the local VM is down, with the reason, and nowhere else -----------------------------------
    let down = api.get(1, &format!("/v1/vms/{pet}")).expect(200, "vm").json;
    assert_eq!(down["host"], failing.as_str(), "{down}");
    assert_eq!(down["status"]["actual"], "host_down", "{down}");
    let why = down["status"]["down_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("host {failing} is fenced"))
            && why.contains(&format!("its volumes are only on host {failing}")),
        "{down}"
    );
    for other in &others {
        assert!(!site.defines(other, &pet), "{pet} is not restarted on {other}");
    }
    let audit = api.get(1, "/v1/audit?limit=1000").expect(200, "audit").json;
    let fenced_by =
        audit["items"].as_array().into_iter().flatten().find(|r| {
            r["action"] == "host.fence_and_restart" && r["target"] == failing.as_str() && r["outcome"] == "ok"
        });
    assert!(fenced_by.is_some_and(|r| r["caller"].as_str().is_some_and(|c| c.starts_with("member-"))), "{audit}");

    drop(site);
    drop(ceph);
}
