//! Issue #4 end to end on real libvirt: 3 controllers and 3 agents (simulated hosts); a tenant, a
//! zone, a volume made from the test guest image and a VM (a NIC in the zone) created through
//! `hcictl` are placed on a host, the guest boots there (its console shows HCI-GUEST-BOOTED through
//! that host's agent), `GET /v1/vms` shows the host, desired power and the state the agent
//! reported; stop, start, reboot and delete reach the host through its feed; an anti-affinity group spreads over the three hosts and a fourth member is
//! refused (created stopped, so only one guest ever boots); a VM as large as a host is refused with a
//! 409 naming the 80 % memory cap.
//!
//! Needs root and `scripts/libvirt/up.sh` (one libvirt instance per simulated host).

use std::time::{Duration, Instant};

use hci_tests::agent::{sha256_file, test_guest};
use hci_tests::poll;
use hci_tests::site::{wait_actual, Site};
use serde_json::json;

const BOOT: Duration = Duration::from_secs(180);
/// Heartbeats (which carry the VMs' reported state) come every quarter of the lease.
const LEASE_MS: u64 = 2000;

#[test]
fn a_vm_created_through_hcictl_is_placed_and_boots_on_its_host() {
    let site = Site::start("pa", 3, LEASE_MS, &[]);
    let (api, ids, hosts, agents) = (site.api(), &site.ids, &site.hosts, &site.agents);

    // --- tenant, volume from the guest image, VM -----------------------------------------------------
    let started = Instant::now();
    site.hcictl(&["tenant", "create", "pa", "--vcpus", "16", "--memory-mib", "16777216", "--disk-gib", "100"]);
    site.hcictl(&["zone", "create", "pa-net", "--tenant", "pa", "--cidr", "10.77.0.0/24"]);
    let disk = test_guest().join("disk.qcow2");
    let url = format!("file://{}", disk.display());
    let sha = sha256_file(&disk);
    let volume = site.hcictl(&[
        "volume",
        "create",
        "boot",
        "--tenant",
        "pa",
        "--size-gib",
        "1",
        "--source-url",
        &url,
        "--source-sha256",
        &sha,
    ]);
    assert_eq!(volume["source"]["sha256"], sha.as_str(), "{volume}");
    let vm = site.hcictl(&[
        "vm",
        "create",
        "web",
        "--tenant",
        "pa",
        "--vcpus",
        "1",
        "--memory-mib",
        "256",
        "--volume",
        "boot",
        "--nic",
        "pa-net",
    ]);
    assert_eq!(vm["nics"][0]["ip"], "10.77.0.2", "IPAM gave the NIC the zone's first address: {vm}");
    let vm_id = vm["id"].as_str().expect("id").to_string();
    let host = vm["host"].as_str().expect("placed at create").to_string();
    let i = ids.iter().position(|id| *id == host).expect("one of the three hosts");
    let agent = &agents[i];
    agent.wait_console(&vm_id, "HCI-GUEST-BOOTED", BOOT);
    eprintln!("MEASURE create through hcictl → guest booted on {host} in {:?}", started.elapsed());
    let shown = wait_actual(api, &vm_id, "running", BOOT);
    assert_eq!(shown["status"]["host"], host.as_str(), "{shown}");
    assert_eq!(shown["status"]["desired_power"], "running", "{shown}");
    assert!(shown["status"]["last_error"].is_null(), "{shown}");
    let volume = api.get(1, &format!("/v1/volumes/{}", volume["id"].as_str().expect("id"))).expect(200, "volume");
    assert_eq!(volume.json["host"], host.as_str(), "the volume went with its vm");
    for (j, h) in hosts.iter().enumerate() {
        let ours = h.domains().iter().any(|d| d.contains(&vm_id));
        assert_eq!(ours, j == i, "the vm is defined on {host} only; {} has {:?}", h.id, h.domains());
    }

    // --- stop, start --------------------------------------------------------------------------------
    let stopping = Instant::now();
    site.hcictl(&["vm", "stop", &vm_id]);
    wait_actual(api, &vm_id, "stopped", BOOT);
    eprintln!("MEASURE hcictl vm stop → GET /v1/vms shows it stopped in {:?}", stopping.elapsed());
    site.hcictl(&["vm", "start", &vm_id]);
    poll("a second boot", BOOT, || {
        let boots = agent.console(&vm_id).matches("HCI-GUEST-BOOTED").count();
        if boots >= 2 {
            Ok(())
        } else {
            Err(format!("{boots} boots"))
        }
    });
    wait_actual(api, &vm_id, "running", BOOT);
    // A reboot is an ACPI request: a guest still booting ignores it (documented on the agent's
    // `reboot`). Wait until this boot's init is up (its first heartbeat after the boot line).
    poll("the guest's init up after the second boot", BOOT, || {
        let console = agent.console(&vm_id);
        let since_boot = console.rsplit("HCI-GUEST-BOOTED").next().unwrap_or_default();
        if since_boot.contains("HCI-GUEST-ALIVE") {
            Ok(())
        } else {
            Err("no heartbeat since the boot yet".to_string())
        }
    });
    site.hcictl(&["vm", "reboot", &vm_id]);
    poll("a third boot, by the reboot", BOOT, || {
        let boots = agent.console(&vm_id).matches("HCI-GUEST-BOOTED").count();
        if boots >= 3 {
            Ok(())
        } else {
            Err(format!("{boots} boots"))
        }
    });
    wait_actual(api, &vm_id, "running", BOOT);

    // --- anti-affinity over the three hosts (stopped VMs: placed, never booted) ---------------------
    let mut group: Vec<String> = (1..=3)
        .map(|n| {
            let vm = site.hcictl(&[
                "vm",
                "create",
                &format!("db{n}"),
                "--tenant",
                "pa",
                "--vcpus",
                "1",
                "--memory-mib",
                "128",
                "--anti-affinity-group",
                "db",
                "--stopped",
            ]);
            vm["host"].as_str().expect("placed").to_string()
        })
        .collect();
    group.sort();
    group.dedup();
    assert_eq!(group.len(), 3, "{group:?}");
    let r = api
        .post_json(
            2,
            "/v1/vms",
            &json!({"name": "db4", "tenant": "pa", "vcpus": 1, "memory_mib": 128,
        "anti_affinity_group": "db", "power": "stopped"}),
        )
        .expect(409, "a fourth member");
    assert!(
        r.error_message().unwrap_or("").contains("3 hosts already running a member of anti-affinity group db"),
        "{r}"
    );

    // --- capacity refusal: the whole memory of the largest host is above its 80 % cap ------------------
    let largest = ids
        .iter()
        .filter_map(|id| api.get(1, &format!("/v1/hosts/{id}")).json["inventory"]["memory_mib"].as_u64())
        .max()
        .expect("memory");
    let r = api
        .post_json(3, "/v1/vms", &json!({"name": "huge", "tenant": "pa", "vcpus": 1, "memory_mib": largest}))
        .expect(409, "a vm as large as a host");
    assert_eq!(r.error_code(), Some("no_capacity"), "{r}");
    let message = r.error_message().unwrap_or("");
    assert!(message.contains("3 hosts would exceed the 80 % memory cap"), "{r}");

    // --- delete -------------------------------------------------------------------------------------
    site.hcictl(&["vm", "delete", &vm_id]);
    poll("the domain removed from its host", Duration::from_secs(60), || {
        let domains = hosts[i].domains();
        if domains.iter().any(|d| d.contains(&vm_id)) {
            Err(format!("{domains:?}"))
        } else {
            Ok(())
        }
    });
}
