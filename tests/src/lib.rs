//! `hci-tests`: a harness that runs real `hci-controller` processes on loopback and drives them over
//! HTTP and through `hcictl`.
//!
//! It exists because the properties that matter most for the controller (no acknowledged write lost
//! across kill -9, failover within seconds, bounded 503 without quorum, nothing applied twice, clean
//! SIGTERM) only show up with separate processes, real fsyncs and real sockets. Unit tests in the
//! controller cannot kill their own process; these tests can.
//!
//! Binaries are not built by `cargo test -p hci-tests`: run `cargo build --workspace --bins` first
//! (or point `HCI_BIN_DIR` at a directory holding `hci-controller` and `hcictl`).
//!
//! Set `HCI_TEST_KEEP=1` to keep each cluster's temporary directory (data dirs and member logs).

pub mod agent;
pub mod api;
pub mod bins;
pub mod ceph;
pub mod cluster;
pub mod hosts;
pub mod netns;
pub mod ports;
pub mod site;
pub mod wait;

pub use api::{Api, Resp};
pub use cluster::{Cluster, ClusterBuilder};
pub use wait::poll;

/// A tenant body with room for everything the tests create under it.
pub fn tenant_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "description": format!("test tenant {name}"),
        "quota": {"vcpus": 10_000, "memory_mib": 10_000_000u64, "disk_gib": 10_000_000u64},
    })
}

/// Creates tenant `name` through `member`, asserting 201.
#[track_caller]
pub fn create_tenant(api: &Api, member: u64, name: &str) -> Resp {
    api.post_json(member, "/v1/tenants", &tenant_body(name))
        .expect(201, &format!("create tenant {name} via member {member}"))
}

/// The tenant names member `member` lists in its own (stale) view.
pub fn stale_tenant_names(api: &Api, member: u64) -> Result<std::collections::BTreeSet<String>, String> {
    let r = api.try_get(member, "/v1/tenants?stale=true")?;
    if r.status != 200 {
        return Err(format!("member {member} GET /v1/tenants?stale=true: {r}"));
    }
    Ok(r.names().into_iter().collect())
}
