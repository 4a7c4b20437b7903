//! Issue #4: the whole controller cluster down, every VM keeps running; when it returns, the agents
//! follow it again. 3 controllers and 2 agents on real libvirt, VMs created through `hcictl`: a guest
//! booting from a local volume (its console heartbeat is watched) and an HA VM without volumes (the
//! kind a host fences when it is cut off, so the agents' fencing decision is exercised: their peer
//! answers and does not hear the controllers either, which means an outage, not an isolation). All
//! three controllers are killed with SIGKILL for several leases: both domains stay running, the guest
//! keeps counting, no agent fences. The controllers restart on their data dirs; a stop through
//! `hcictl` then reaches the host.
//!
//! Needs root and `scripts/libvirt/up.sh` (one libvirt instance per simulated host).

use std::time::{Duration, Instant};

use hci_tests::agent::{last_uptime, metric, sha256_file, test_guest};
use hci_tests::poll;
use hci_tests::site::{wait_actual, Site};

const BOOT: Duration = Duration::from_secs(180);
const LEASE_MS: u64 = 2000;
/// How long the controllers stay down: several leases, far past the agents' `fence_after_ms`.
const OUTAGE: Duration = Duration::from_secs(8);

fn domain(site: &Site, vm: &serde_json::Value) -> (usize, String) {
    let host = vm["host"].as_str().expect("placed");
    (site.index(host), format!("hci-{host}-{}", vm["id"].as_str().expect("id")))
}

#[test]
fn a_full_controller_outage_keeps_every_vm_running_and_agents_follow_the_cluster_when_it_returns() {
    let site = Site::start("co", 2, LEASE_MS, &[]);
    let api = site.api();
    site.hcictl(&["tenant", "create", "co", "--vcpus", "16", "--memory-mib", "1048576", "--disk-gib", "100"]);
    let disk = test_guest().join("disk.qcow2");
    let (url, sha) = (format!("file://{}", disk.display()), sha256_file(&disk));
    let args = ["volume", "create", "boot", "--tenant", "co", "--size-gib", "1", "--source-url", &url];
    let boot = site.hcictl(&[&args[..], &["--source-sha256", &sha]].concat());
    let boot = boot["id"].as_str().expect("volume id").to_string();
    let web = site.hcictl(&[
        "vm",
        "create",
        "web",
        "--tenant",
        "co",
        "--vcpus",
        "1",
        "--memory-mib",
        "256",
        "--volume",
        &boot,
    ]);
    let ha = site.hcictl(&["vm", "create", "ha", "--tenant", "co", "--vcpus", "1", "--memory-mib", "128"]);
    let web_id = web["id"].as_str().expect("id").to_string();
    let (web_host, web_domain) = domain(&site, &web);
    let (ha_host, ha_domain) = domain(&site, &ha);
    site.agents[web_host].wait_console(&web_id, "HCI-GUEST-ALIVE", BOOT);
    wait_actual(api, &web_id, "running", BOOT);
    wait_actual(api, ha["id"].as_str().expect("id"), "running", BOOT);
    // The HA VM is one its host would fence if it were cut off: the outage must be told apart.
    let ha_id = ha["id"].as_str().expect("id");
    poll("the HA vm in its host's fence list", BOOT, || {
        let held = site.agents[ha_host].held_desired().unwrap_or_default();
        let listed = held["isolation"]["fence_vms"].as_array().is_some_and(|v| v.iter().any(|id| id == ha_id));
        let peers = held["isolation"]["peers"].as_array().map_or(0, Vec::len);
        if listed && peers == 1 {
            Ok(())
        } else {
            Err(held["isolation"].to_string())
        }
    });
    // The counter exists (a renamed metric must not read as "never fenced").
    let fenced = |i: usize| metric(&site.agents[i].metrics(), "hci_agent_fence_events_total");
    assert_eq!((fenced(0), fenced(1)), (Some(0.0), Some(0.0)));

    // --- every controller down ----------------------------------------------------------------------------
    let uptime_before = last_uptime(&site.agents[web_host].console(&web_id)).expect("a heartbeat");
    for id in site.cluster.ids() {
        site.cluster.kill9(id);
    }
    let down = Instant::now();
    while down.elapsed() < OUTAGE {
        // Watched the whole time, not merely at the end: a fencing would stop the HA VM for good.
        assert_eq!(site.hosts[ha_host].domstate(&ha_domain), "running", "the HA vm after {:?}", down.elapsed());
        assert_eq!(site.hosts[web_host].domstate(&web_domain), "running", "web after {:?}", down.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    let uptime_after = last_uptime(&site.agents[web_host].console(&web_id)).expect("a heartbeat");
    assert!(uptime_after >= uptime_before + 5.0, "the guest kept running: uptime {uptime_before} → {uptime_after}");
    assert_eq!((fenced(0), fenced(1)), (Some(0.0), Some(0.0)), "an outage is not an isolation: nobody fences");
    // The HA host's agent did decide (it asked its peer), not merely never look.
    poll("the HA host's agent to call it a controller outage", BOOT, || {
        if site.agents[ha_host].log().contains("a controller outage, HA VMs keep running") {
            Ok(())
        } else {
            Err("not decided yet".to_string())
        }
    });

    // --- the controllers return; the agents follow them again ---------------------------------------------
    for id in site.cluster.ids() {
        site.cluster.restart(id);
    }
    site.cluster.wait_for_leader(Duration::from_secs(30));
    let back = Instant::now();
    site.hcictl(&["vm", "stop", &web_id]);
    poll("web stopped on its host", BOOT, || match site.hosts[web_host].domstate(&web_domain).as_str() {
        "shut off" => Ok(()),
        other => Err(other.to_string()),
    });
    eprintln!("MEASURE controllers back → hcictl vm stop reached the host in {:?}", back.elapsed());
    wait_actual(api, &web_id, "stopped", BOOT);
    assert_eq!(site.hosts[ha_host].domstate(&ha_domain), "running", "the HA vm was never touched");
    assert_eq!((fenced(0), fenced(1)), (Some(0.0), Some(0.0)));
}
