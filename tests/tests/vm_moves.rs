//! Issue #4, moves through the controller on real libvirt: 3 controllers and 2 agents. A running VM
//! with two local volumes moves live where the planner puts it (`hcictl vm migrate`): its guest
//! keeps counting uptime on the target and never boots again, the source lets go of it. Stopped,
//! it moves back cold (the source exports its volumes, the target imports them) and boots there
//! finding the marker its first boot wrote. A drain (`hcictl host maintenance`) moves everything off
//! a host, progress visible, the host in maintenance; `--off` returns it without moving anything
//! back. A drain the other host cannot take is refused up front, nothing changed; bad requests are
//! 4xx naming the field.
//!
//! Needs root and `scripts/libvirt/up.sh` (one libvirt instance per simulated host).

use std::io::Write;
use std::time::{Duration, Instant};

use hci_tests::agent::{last_uptime, sha256_file, test_guest};
use hci_tests::poll;
use hci_tests::site::{wait_actual, wait_vm, Site};
use serde_json::{json, Value};

const BOOT: Duration = Duration::from_secs(180);
const MOVE: Duration = Duration::from_secs(180);
const LEASE_MS: u64 = 2000;

/// A raw data disk whose second sector tells the guest its marker and a 1 s heartbeat.
fn settings_disk(dir: &std::path::Path, marker: &str) -> std::path::PathBuf {
    let path = dir.join("settings.raw");
    let mut file = std::fs::File::create(&path).expect("create data disk");
    let mut image = vec![0u8; 1 << 20];
    let settings = format!("HCI-SETTINGS hci.marker={marker} hci.heartbeat=1\n");
    image[512..512 + settings.len()].copy_from_slice(settings.as_bytes());
    file.write_all(&image).expect("write data disk");
    path
}

/// Waits until the VM's move is over: no `migration`, on `host`, reported `state` there.
fn wait_moved(site: &Site, vm: &str, host: &str, state: &str) -> Value {
    wait_vm(site.api(), vm, &format!("moved to {host}, {state}"), MOVE, |v| {
        v["migration"].is_null() && v["host"] == host && v["status"]["actual"] == state
    })
}

fn other<'a>(site: &'a Site, host: &str) -> &'a str {
    site.ids.iter().find(|id| *id != host).expect("two hosts")
}

#[test]
fn vms_move_live_and_cold_and_a_host_drains_for_maintenance() {
    let flags = vec!["--migration-address".to_string(), "127.0.0.1".into()];
    let site = Site::start("mv", 2, LEASE_MS, &flags);
    let api = site.api();
    let pid = std::process::id();
    site.hcictl(&["tenant", "create", "mv", "--vcpus", "64", "--memory-mib", "16777216", "--disk-gib", "1000"]);
    let disk = test_guest().join("disk.qcow2");
    let scratch = tempfile::tempdir().expect("tempdir");
    let marker = format!("moved-{pid}");
    let data = settings_disk(scratch.path(), &marker);
    let volume = |name: &str, path: &std::path::Path, format: &str| {
        let url = format!("file://{}", path.display());
        let sha = sha256_file(path);
        let args = ["volume", "create", name, "--tenant", "mv", "--size-gib", "1", "--source-url", &url];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--source-sha256", &sha, "--source-format", format]);
        site.hcictl(&args)["id"].as_str().expect("volume id").to_string()
    };
    let boot = volume("boot", &disk, "qcow2");
    let data = volume("data", &data, "raw");
    let vm = site.hcictl(&[
        "vm",
        "create",
        "web",
        "--tenant",
        "mv",
        "--vcpus",
        "1",
        "--memory-mib",
        "256",
        "--volume",
        &boot,
        "--volume",
        &data,
    ]);
    let vm_id = vm["id"].as_str().expect("id").to_string();
    let first = vm["host"].as_str().expect("placed").to_string();
    site.agent(&first).wait_console(&vm_id, &format!("HCI-MARKER-WRITTEN {marker}"), BOOT);
    wait_actual(api, &vm_id, "running", BOOT);

    // --- live: the planner picks the other host; the guest goes on there ------------------------------
    let second = other(&site, &first).to_string();
    let uptime_before = poll("a heartbeat on the first host", BOOT, || {
        last_uptime(&site.agent(&first).console(&vm_id)).ok_or_else(|| "no heartbeat yet".to_string())
    });
    let started = Instant::now();
    let moving = site.hcictl(&["vm", "migrate", &vm_id]);
    assert_eq!(moving["host"], second.as_str(), "{moving}");
    assert_eq!(moving["migration"]["from_host"], first.as_str(), "{moving}");
    assert_eq!(moving["migration"]["live"], true, "a running vm moves live by default: {moving}");
    wait_moved(&site, &vm_id, &second, "running");
    eprintln!("MEASURE hcictl vm migrate (live, 2 local volumes copied) → finished in {:?}", started.elapsed());
    poll("the heartbeat going on on the second host", Duration::from_secs(60), || {
        match last_uptime(&site.agent(&second).console(&vm_id)) {
            Some(up) if up > uptime_before + 2.0 => Ok(()),
            other => Err(format!("uptime {other:?}, before the move {uptime_before}")),
        }
    });
    assert!(!site.agent(&second).console(&vm_id).contains("HCI-GUEST-BOOTED"), "it never booted on the target");
    poll("the source lets go", Duration::from_secs(60), || {
        let report = site.agent(&first).report()?;
        if site.defines(&first, &vm_id) || !report.volumes.is_empty() {
            Err(format!("still on {first}: {:?}", report.volumes))
        } else {
            Ok(())
        }
    });

    // --- cold: stopped, back to the first host, boots there with its data ------------------------------
    site.hcictl(&["vm", "stop", &vm_id]);
    wait_actual(api, &vm_id, "stopped", BOOT);
    let started = Instant::now();
    let moving = site.hcictl(&["vm", "migrate", &vm_id, "--host", &first]);
    assert_eq!(moving["migration"]["live"], false, "a stopped vm moves cold by default: {moving}");
    assert_eq!(moving["migration"]["imports"].as_array().map(Vec::len), Some(2), "{moving}");
    wait_moved(&site, &vm_id, &first, "stopped");
    eprintln!(
        "MEASURE hcictl vm migrate (cold, 2 volumes exported and imported) → finished in {:?}",
        started.elapsed()
    );
    site.hcictl(&["vm", "start", &vm_id]);
    site.agent(&first).wait_console(&vm_id, &format!("HCI-MARKER-FOUND {marker}"), BOOT);
    wait_actual(api, &vm_id, "running", BOOT);
    poll("the second host lets go", Duration::from_secs(60), || {
        if site.defines(&second, &vm_id) {
            Err("still defined".to_string())
        } else {
            Ok(())
        }
    });

    // --- bad requests: 4xx naming the field, nothing changed ----------------------------------------------
    let r =
        api.post_json(1, &format!("/v1/vms/{vm_id}/migrate"), &json!({"host": "nowhere"})).expect(400, "unknown host");
    assert!(r.error_message().unwrap_or("").contains("host 'nowhere' does not exist"), "{r}");
    let r = api.post_json(1, &format!("/v1/vms/{vm_id}/migrate"), &json!({"live": false})).expect(409, "running, cold");
    assert!(r.error_message().unwrap_or("").contains("is running"), "{r}");
    let r = api.post_json(1, &format!("/v1/hosts/{first}/maintenance"), &json!({"enabled": "yes"})).expect(400, "type");
    assert!(r.text.contains("enabled"), "{r}");
    api.post_json(1, "/v1/hosts/nowhere/maintenance", &json!({"enabled": true})).expect(404, "unknown host");
    assert_eq!(api.get(1, &format!("/v1/vms/{vm_id}")).json["host"], first.as_str(), "nothing moved");

    // --- drain the first host: the running vm moves live, a stopped one cold --------------------------
    let parked =
        site.hcictl(&["vm", "create", "parked", "--tenant", "mv", "--vcpus", "1", "--memory-mib", "128", "--stopped"]);
    let parked_id = parked["id"].as_str().expect("id").to_string();
    let parked_host = parked["host"].as_str().expect("placed").to_string();
    let uptime_before = poll("a heartbeat before the drain", BOOT, || {
        last_uptime(&site.agent(&first).console(&vm_id)).ok_or_else(|| "no heartbeat yet".to_string())
    });
    let started = Instant::now();
    let drained = site.hcictl(&["host", "maintenance", &first]);
    assert_eq!(drained["state"], "maintenance", "{drained}");
    let moving = drained["allocation"]["leaving"].as_u64().expect("progress");
    assert!(moving >= 1, "the drain's moves are in progress: {drained}");
    poll("the drain finished", MOVE, || {
        let host = api.try_get(1, &format!("/v1/hosts/{first}"))?;
        let (left, leaving) = (&host.json["allocation"]["vms"], &host.json["allocation"]["leaving"]);
        if left == 0 && leaving == 0 {
            Ok(())
        } else {
            Err(format!("{left} vms left, {leaving} leaving"))
        }
    });
    eprintln!("MEASURE hcictl host maintenance → host empty in {:?}", started.elapsed());
    wait_moved(&site, &vm_id, &second, "running");
    let parked = api.get(1, &format!("/v1/vms/{parked_id}")).json;
    assert_eq!(parked["host"], second.as_str(), "parked (was on {parked_host}) ends on the other host: {parked}");
    poll("the heartbeat going on after the drain", Duration::from_secs(60), || {
        match last_uptime(&site.agent(&second).console(&vm_id)) {
            Some(up) if up > uptime_before + 2.0 => Ok(()),
            other => Err(format!("uptime {other:?}, before {uptime_before}")),
        }
    });
    let r = api
        .post_json(
            1,
            "/v1/vms",
            &json!({"name": "new", "tenant": "mv", "vcpus": 1, "memory_mib": 64, "power": "stopped"}),
        )
        .expect(201, "a new vm");
    assert_eq!(r.json["host"], second.as_str(), "nothing new lands on a host in maintenance");

    let back = site.hcictl(&["host", "maintenance", &first, "--off"]);
    assert_eq!(back["state"], "ready", "{back}");
    assert_eq!(api.get(1, &format!("/v1/vms/{vm_id}")).json["host"], second.as_str(), "nothing moves back");

    // --- a drain the other host cannot take: refused up front, nothing changed ---------------------------
    let memory = api.get(1, &format!("/v1/hosts/{first}")).json["inventory"]["memory_mib"].as_u64().expect("memory");
    let big = json!({"name": "big", "tenant": "mv", "vcpus": 1, "memory_mib": memory * 4 / 5 - 64, "power": "stopped"});
    let r = api.post_json(1, "/v1/vms", &big).expect(201, "a big stopped vm");
    assert_eq!(r.json["host"], first.as_str(), "the empty host takes it");
    let r = api
        .post_json(1, &format!("/v1/hosts/{second}/maintenance"), &json!({"enabled": true}))
        .expect(409, "the first host is full");
    assert_eq!(r.error_code(), Some("no_capacity"), "{r}");
    let message = r.error_message().unwrap_or("");
    assert!(
        message.contains(&format!("cannot evacuate host '{second}'")) && message.contains("80 % memory cap"),
        "{r}"
    );
    let host = api.get(1, &format!("/v1/hosts/{second}")).json;
    assert_eq!((host["state"].as_str(), host["allocation"]["leaving"].as_u64()), (Some("ready"), Some(0)), "{host}");
    assert!(api.get(1, &format!("/v1/vms/{vm_id}")).json["migration"].is_null(), "nothing moved");

    let finished = site.cluster.metric_sum("hci_vm_moves_finished_total");
    assert!(finished >= 3.0, "the live, the cold and the drain's moves were finished: {finished}");

    site.hcictl(&["vm", "delete", &vm_id]);
    poll("the vm removed", Duration::from_secs(60), || {
        if site.defines(&second, &vm_id) {
            Err("still defined".to_string())
        } else {
            Ok(())
        }
    });
}
