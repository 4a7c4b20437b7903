//! Hosts without agents: a host registered through the join API with a made-up inventory, for tests
//! of placement that need capacity but no guests.

use serde_json::{json, Value};

use crate::api::{Auth, Body};
use crate::Api;

/// Joins host `id` (x86_64, `cpus` CPUs, `memory_mib`, one 100 GiB pool `default`, `x86_64-bios`)
/// through `member` with a fresh join token; returns the host's credential. Nothing heartbeats for
/// it, so give the cluster a long `--host-lease-ms`.
pub fn join_fake_host(api: &Api, member: u64, id: &str, cpus: u32, memory_mib: u64) -> String {
    let token = api.post_json(member, "/v1/hosts/join-tokens", &json!({"ttl_seconds": 600})).expect(201, "token");
    let token = token.json["token"].as_str().expect("token").to_string();
    let body = json!({
        "host_id": id,
        "site": "primary",
        "arch": "x86_64",
        "agent_url": "http://127.0.0.1:9",
        "inventory": {
            "cpus": cpus,
            "memory_mib": memory_mib,
            "accelerator": "tcg",
            "libvirt_version": "9.0.0",
            "pools": [{"name": "default", "backend": "dir-qcow2", "capacity_bytes": 100u64 << 30,
                       "allocation_bytes": 0, "available_bytes": 100u64 << 30}],
            "firmware_profiles": ["x86_64-bios"],
        },
    });
    let r = api
        .send(
            reqwest::Method::POST,
            member,
            "/v1/hosts/join",
            Some(Body::Json(body)),
            Auth::Header(format!("Bearer {token}")),
            &[],
        )
        .expect("join");
    assert_eq!(r.status, 200, "join {id}: {}", r.text);
    r.json["credential"].as_str().expect("credential").to_string()
}

/// `GET /v1/hosts/{id}/desired` at once, as the host's agent does.
pub fn desired(api: &Api, member: u64, id: &str, credential: &str) -> Value {
    let path = format!("/v1/hosts/{id}/desired?wait_ms=0");
    let r = api
        .send(reqwest::Method::GET, member, &path, None, Auth::Header(format!("Bearer {credential}")), &[])
        .expect("desired");
    assert_eq!(r.status, 200, "desired of {id}: {}", r.text);
    r.json
}
