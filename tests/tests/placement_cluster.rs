//! Placement through the API of a real 3-member cluster, on hosts registered without agents (made-up
//! inventories, nothing boots): a VM is placed at create and appears in its host's desired-state
//! feed, power actions and delete move the feed's generation, anti-affinity keeps a group apart,
//! a VM that fits nowhere is a 409 naming the cap and how many hosts it excluded, and creates racing
//! through every member never take a host over the 80 % cap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hci_tests::hosts::{desired, join_fake_host};
use hci_tests::{create_tenant, poll, Api, Cluster};
use serde_json::{json, Value};

/// Every fake host: 2 CPUs (8 vCPUs at 4:1, 6 under the cap), 4096 MiB (3276 under the cap).
const HOST_MIB: u64 = 4096;
const CAP_MIB: u64 = HOST_MIB * 80 / 100;

fn vm_body(name: &str, memory_mib: u64, group: Option<&str>) -> Value {
    json!({"name": name, "tenant": "pl", "vcpus": 1, "memory_mib": memory_mib, "power": "stopped",
           "anti_affinity_group": group})
}

fn vms(api: &Api, member: u64) -> Vec<Value> {
    api.get(member, "/v1/vms").expect(200, "list vms").items().clone()
}

/// Memory placed per host, from the VM list.
fn memory_by_host(api: &Api) -> BTreeMap<String, u64> {
    let mut by_host = BTreeMap::new();
    for vm in vms(api, 1) {
        let host = vm["host"].as_str().expect("every vm is placed").to_string();
        *by_host.entry(host).or_insert(0) += vm["memory_mib"].as_u64().expect("memory");
    }
    by_host
}

fn feed_vms(feed: &Value) -> Vec<String> {
    feed["vms"].as_array().expect("vms").iter().map(|v| v["id"].as_str().expect("id").to_string()).collect()
}

#[test]
fn vms_are_placed_under_the_cap_and_racing_creates_never_overcommit() {
    let c = Cluster::builder(3).arg("--host-lease-ms").arg("600000").start();
    let api = c.api();
    create_tenant(api, 1, "pl");
    let hosts = ["pl-h1", "pl-h2", "pl-h3"];
    let credentials: Vec<String> = hosts.iter().map(|h| join_fake_host(api, 1, h, 2, HOST_MIB)).collect();
    // Followers serve the feed from their own state; the leader has applied every acknowledged write.
    let leader = c.wait_for_leader(Duration::from_secs(10));

    // --- placed at create, in the host's feed -------------------------------------------------------
    let vm = api.post_json(2, "/v1/vms", &vm_body("first", 1024, None)).expect(201, "create through a follower");
    let host = vm.json["host"].as_str().expect("placed at create").to_string();
    let vm_id = vm.json["id"].as_str().expect("id").to_string();
    let h = hosts.iter().position(|h| *h == host).expect("one of ours");
    let feed = desired(api, leader, &host, &credentials[h]);
    assert_eq!(feed_vms(&feed), [vm_id.as_str()], "{feed}");
    assert_eq!(feed["vms"][0]["power"], "stopped", "{feed}");
    let created_generation = feed["generation"].as_u64().expect("generation");
    let shown = api.get(3, &format!("/v1/vms/{vm_id}")).expect(200, "show");
    assert_eq!(
        (shown.json["status"]["host"].as_str(), shown.json["status"]["desired_power"].as_str()),
        (Some(host.as_str()), Some("stopped"))
    );

    // --- power actions move the feed ----------------------------------------------------------------
    api.post_json(1, &format!("/v1/vms/{vm_id}/start"), &json!({})).expect(200, "start");
    let feed = desired(api, leader, &host, &credentials[h]);
    assert_eq!(feed["vms"][0]["power"], "running", "{feed}");
    let started_generation = feed["generation"].as_u64().expect("generation");
    assert!(started_generation > created_generation, "{feed}");
    api.post_json(1, &format!("/v1/vms/{vm_id}/reboot"), &json!({})).expect(200, "reboot");
    let feed = desired(api, leader, &host, &credentials[h]);
    assert_eq!(feed["vms"][0]["reboot_count"], 1, "{feed}");
    api.post_json(1, &format!("/v1/vms/{vm_id}/stop"), &json!({})).expect(200, "stop");

    // --- anti-affinity ------------------------------------------------------------------------------
    let mut group_hosts: Vec<String> = (1..=3)
        .map(|i| {
            let r =
                api.post_json(i, "/v1/vms", &vm_body(&format!("db{i}"), 256, Some("db"))).expect(201, "group member");
            r.json["host"].as_str().expect("placed").to_string()
        })
        .collect();
    group_hosts.sort();
    group_hosts.dedup();
    assert_eq!(group_hosts.len(), 3, "one member of the group per host: {group_hosts:?}");
    let r = api.post_json(2, "/v1/vms", &vm_body("db4", 256, Some("db"))).expect(409, "a fourth member");
    assert_eq!(r.error_code(), Some("no_capacity"), "{r}");
    assert!(
        r.error_message().unwrap_or("").contains("3 hosts already running a member of anti-affinity group db"),
        "{r}"
    );

    // --- capacity refusal ---------------------------------------------------------------------------
    let r = api.post_json(3, "/v1/vms", &vm_body("huge", 3100, None)).expect(409, "fits nowhere");
    assert_eq!(r.error_code(), Some("no_capacity"), "{r}");
    assert!(r.error_message().unwrap_or("").contains("3 hosts would exceed the 80 % memory cap"), "{r}");
    assert!(vms(api, 1).iter().all(|v| v["name"] != "huge"), "a refusal creates nothing");

    // --- delete releases ----------------------------------------------------------------------------
    for vm in vms(api, 1) {
        api.delete(1, &format!("/v1/vms/{}", vm["id"].as_str().expect("id")), None).expect(204, "delete");
    }
    let feed = desired(api, leader, &host, &credentials[h]);
    assert!(feed_vms(&feed).is_empty(), "{feed}");
    assert!(feed["generation"].as_u64() > Some(started_generation), "{feed}");
    api.post_json(1, "/v1/vms", &vm_body("huge", 3100, None)).expect(201, "fits once the others are gone");
    api.delete(1, &format!("/v1/vms/{}", vms(api, 1)[0]["id"].as_str().expect("id")), None).expect(204, "delete");

    // --- racing creates through every member --------------------------------------------------------
    // 512 MiB each: 6 fit per host under the cap (3072 <= 3276), 18 in all; 24 are attempted.
    let started = Instant::now();
    let outcomes: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=3u64)
            .flat_map(|member| (0..8).map(move |i| (member, i)))
            .map(|(member, i)| {
                s.spawn(move || {
                    let r = api.post_json(member, "/v1/vms", &vm_body(&format!("race-{member}-{i}"), 512, None));
                    (r.status, r.error_message().unwrap_or("").to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let accepted = outcomes.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&String> = outcomes.iter().filter(|(s, _)| *s == 409).map(|(_, m)| m).collect();
    let at_commit = refused.iter().filter(|m| m.contains("does not fit host")).count();
    eprintln!(
        "MEASURE racing creates: 24 through 3 members in {:?}: {accepted} placed, {} refused ({at_commit} at commit)",
        started.elapsed(),
        refused.len()
    );
    assert_eq!(accepted + refused.len(), 24, "{outcomes:?}");
    assert_eq!(accepted, 18, "every host filled to the cap, no further: {outcomes:?}");
    assert!(refused.iter().all(|m| m.contains("80 % memory cap") || m.contains("80 % vCPU cap")), "{refused:?}");
    let by_host = memory_by_host(api);
    for (host, mib) in &by_host {
        assert!(*mib <= CAP_MIB, "host {host} holds {mib} MiB, above the cap of {CAP_MIB}");
        let shown = api.get(1, &format!("/v1/hosts/{host}")).expect(200, "host");
        assert_eq!(shown.json["allocation"]["memory_mib"].as_u64(), Some(*mib), "{}", shown.text);
    }
    // Decisions planned on the same state and refused when applied (then planned again) are audited.
    let audit = api.get(1, "/v1/audit?limit=1000").expect(200, "audit");
    let at_commit =
        audit.items().iter().filter(|a| a["action"] == "vm.create" && a["outcome"] == "no_capacity").count();
    eprintln!("MEASURE racing creates: {at_commit} decisions refused at commit and planned again");
    // Every member's feed agrees with the VM list.
    for (i, host) in hosts.iter().enumerate() {
        for member in 1..=3 {
            let listed = vms(api, 1).iter().filter(|v| v["host"] == *host).count();
            poll(&format!("member {member}'s feed of {host}"), Duration::from_secs(10), || {
                let feed = desired(api, member, host, &credentials[i]);
                if feed_vms(&feed).len() == listed {
                    Ok(())
                } else {
                    Err(feed.to_string())
                }
            });
        }
    }
}
