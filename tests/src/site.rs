//! A whole site on one machine: a real controller cluster plus real agents (one per-instance
//! libvirtd each, as simulated hosts) joined to it with join tokens, driven through `hcictl`.
//!
//! It exists so the end-to-end tests of placement, moves and failures start the same site the same
//! way, and ask `GET /v1/vms/{id}` the same way. Dropping it stops the agents, the libvirt instances
//! (and their VMs) and the controllers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::agent::{AgentProc, LibvirtHost};
use crate::{bins, poll, Api, Cluster};

/// Runs `hcictl -o json ARGS` against the cluster as the administrator; panics unless it succeeds.
pub fn hcictl(c: &Cluster, args: &[&str]) -> Value {
    let out = Command::new(bins::hcictl())
        .args(["-o", "json"])
        .args(args)
        .env("HCI_URL", c.urls())
        .env("HCI_TOKEN", c.token())
        .output()
        .expect("run hcictl");
    assert!(
        out.status.success(),
        "hcictl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Polls `GET /v1/vms/{id}` (member 1, forwarded to the leader) until `done` accepts it.
pub fn wait_vm(api: &Api, id: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    poll(&format!("vm {id}: {what}"), timeout, || {
        let r = api.try_get(1, &format!("/v1/vms/{id}"))?;
        if done(&r.json) {
            Ok(r.json)
        } else {
            Err(r.text)
        }
    })
}

/// Polls until the VM's reported state is `state`.
pub fn wait_actual(api: &Api, id: &str, state: &str, timeout: Duration) -> Value {
    wait_vm(api, id, &format!("reported {state}"), timeout, |vm| vm["status"]["actual"] == state)
}

/// A controller cluster and `n` joined hosts, each ready with a heartbeat.
pub struct Site {
    // Field order is drop order: agents before their libvirt instances, controllers last.
    pub agents: Vec<AgentProc>,
    pub hosts: Vec<LibvirtHost>,
    pub ids: Vec<String>,
    pub cluster: Cluster,
    _tokens: tempfile::TempDir,
}

impl Site {
    /// 3 controllers with `lease_ms` host leases; hosts named `{prefix}{i}-{pid}`; every agent gets
    /// `agent_args` besides its controller and token flags.
    pub fn start(prefix: &str, hosts: usize, lease_ms: u64, agent_args: &[String]) -> Self {
        // A long HA margin: these sites test other things, and a healthy host silent for a moment
        // under load must not be fenced (a fenced host stays out of service until an operator acts).
        let cluster = Cluster::builder(3)
            .arg("--host-lease-ms")
            .arg(&lease_ms.to_string())
            .arg("--ha-restart-margin-ms")
            .arg("600000")
            .start();
        let pid = std::process::id();
        let ids: Vec<String> = (1..=hosts).map(|i| format!("{prefix}{i}-{pid}")).collect();
        let libvirts: Vec<LibvirtHost> = std::thread::scope(|s| {
            let handles: Vec<_> = ids.iter().map(|id| s.spawn(move || LibvirtHost::up(id))).collect();
            handles.into_iter().map(|h| h.join().expect("libvirt host up")).collect()
        });
        let tokens = tempfile::tempdir().expect("tempdir");
        let agents: Vec<AgentProc> = libvirts
            .iter()
            .map(|h| {
                let token = hcictl(&cluster, &["host", "join-token", "create"]);
                let file: PathBuf = tokens.path().join(&h.id);
                std::fs::write(&file, token["token"].as_str().expect("token")).expect("token file");
                let mut args =
                    vec!["--controller".to_string(), cluster.urls(), "--token-file".into(), file.display().to_string()];
                args.extend(agent_args.iter().cloned());
                AgentProc::start_with(h, &args)
            })
            .collect();
        let api = cluster.api();
        for id in &ids {
            poll(&format!("host {id} ready"), Duration::from_secs(60), || {
                let r = api.try_get(1, &format!("/v1/hosts/{id}"))?;
                if r.json["state"] == "ready" && r.json["heartbeat"].is_object() {
                    Ok(())
                } else {
                    Err(r.text)
                }
            });
        }
        Self { agents, hosts: libvirts, ids, cluster, _tokens: tokens }
    }

    pub fn api(&self) -> &Api {
        self.cluster.api()
    }

    pub fn hcictl(&self, args: &[&str]) -> Value {
        hcictl(&self.cluster, args)
    }

    /// The index of host `id`.
    pub fn index(&self, id: &str) -> usize {
        self.ids.iter().position(|h| h == id).unwrap_or_else(|| panic!("{id} is not one of {:?}", self.ids))
    }

    /// The agent of host `id`.
    pub fn agent(&self, id: &str) -> &AgentProc {
        &self.agents[self.index(id)]
    }

    /// Whether host `id`'s libvirt has a domain of `vm`.
    pub fn defines(&self, id: &str, vm: &str) -> bool {
        self.hosts[self.index(id)].domains().iter().any(|d| d.contains(vm))
    }
}
