//! The leader's move finisher: a move ends when its target reports the VM arrived (live: running
//! there; cold: defined there in its desired power, without error), heard after the move began.
//!
//! It exists because arrival is only visible in heartbeats. Only the leader acts (reports live in
//! its memory); a new leader waits for fresh heartbeats, so a failover delays a finish, never
//! fakes one. A move whose target never reports arrival stays in progress, visible on the VM
//! (`migration`), with the agents' last errors: it is never finished by a timeout, because dropping
//! the source's copy of a VM that did not arrive would lose it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hci_shared::command::{Applied, Command};
use hci_shared::hosts::{ActualVmState, VmStatusReport};
use hci_shared::resources::{PowerState, Vm};

use crate::hosts::monitor::leading_term;
use crate::node::App;

const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether the target's `report` (heard `age_ms` ago) shows the moved VM arrived.
pub fn arrived(vm: &Vm, report: Option<&(VmStatusReport, u64)>, now_unix_ms: u64) -> bool {
    let (Some(moving), Some((report, age_ms))) = (&vm.migration, report) else { return false };
    let Some(started) = hci_shared::time::parse_rfc3339_ms(&moving.started_at) else { return false };
    if now_unix_ms.saturating_sub(*age_ms) <= started {
        return false;
    }
    if moving.live {
        return report.state == ActualVmState::Running;
    }
    let settled = match vm.power {
        PowerState::Stopped => report.state == ActualVmState::Stopped,
        PowerState::Running => report.state == ActualVmState::Running,
    };
    settled && report.last_error.is_none()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs forever (until the runtime stops); acts only while this member leads.
pub async fn run(app: Arc<App>) {
    let in_flight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if leading_term(&app).is_none() {
            continue;
        }
        let (now, now_ms) = (Instant::now(), unix_ms());
        let done: Vec<(String, String)> = {
            let model = app.state.read();
            model
                .moving_vms()
                .filter(|vm| {
                    let report = vm.host.as_deref().and_then(|host| app.leases.vm_report(host, &vm.id, now));
                    arrived(vm, report.as_ref(), now_ms)
                })
                .filter_map(|vm| Some((vm.id.clone(), vm.migration.as_ref()?.from_host.clone())))
                .collect()
        };
        for (id, from_host) in done {
            if !in_flight.lock().map(|mut set| set.insert(id.clone())).unwrap_or(false) {
                continue;
            }
            let (app, in_flight) = (app.clone(), in_flight.clone());
            tokio::spawn(async move {
                finish(&app, &id, &from_host).await;
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&id);
                }
            });
        }
    }
}

async fn finish(app: &App, id: &str, from_host: &str) {
    let (exports, source_agent) = {
        let model = app.state.read();
        let exports: Vec<String> = model
            .vm(id)
            .and_then(|vm| vm.migration.as_ref())
            .map(|moving| moving.imports.iter().map(|import| import.export.clone()).collect())
            .unwrap_or_default();
        (exports, model.host(from_host).map(|h| h.agent_url.clone()))
    };
    let command = Command::FinishMigration { id: id.to_string(), from_host: from_host.to_string() };
    match super::propose(app, command).await {
        Ok(Applied::Vm(vm)) => {
            app.metrics.moves_finished.inc();
            tracing::info!(vm = %id, from = %from_host, to = ?vm.host, "move finished: the target has the vm");
            if let Some(agent) = source_agent {
                for export in exports {
                    super::exports::delete(&app.http, &agent, &export).await;
                }
            }
        }
        Ok(_) => tracing::warn!(vm = %id, "finishing a move answered something other than a vm"),
        Err(e) => tracing::warn!(vm = %id, error = %e, "move not finished; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hci_shared::resources::VmMove;

    const STARTED_MS: u64 = 1_740_830_400_000; // 2025-03-01T12:00:00Z

    fn vm(live: bool, power: PowerState) -> Vm {
        let json = serde_json::json!({
            "id": "vm-1", "name": "web", "tenant": "t", "vcpus": 1, "memory_mib": 256, "arch": "x86_64",
            "firmware": "x86_64-bios", "volumes": [], "nics": [], "anti_affinity_group": null, "host": "h2",
            "power": power, "reboot_count": 0, "created_at": "2025-03-01T11:00:00Z", "revision": 9
        });
        let mut vm: Vm = serde_json::from_value(json).expect("a vm");
        vm.migration = Some(VmMove {
            from_host: "h1".into(),
            live,
            reason: "operator".into(),
            started_at: "2025-03-01T12:00:00Z".into(),
            imports: vec![],
        });
        vm
    }

    fn report(state: ActualVmState, error: Option<&str>, age_ms: u64) -> (VmStatusReport, u64) {
        (VmStatusReport { id: "vm-1".into(), state, last_error: error.map(str::to_string) }, age_ms)
    }

    #[test]
    fn a_live_move_arrives_when_the_target_reports_it_running_after_the_move_began() {
        let moving = vm(true, PowerState::Running);
        let now = STARTED_MS + 10_000;
        assert!(arrived(&moving, Some(&report(ActualVmState::Running, None, 500)), now));
        assert!(!arrived(&moving, Some(&report(ActualVmState::Missing, None, 500)), now), "still waiting");
        assert!(!arrived(&moving, Some(&report(ActualVmState::Running, None, 10_000)), now), "heard before");
        assert!(!arrived(&moving, None, now), "no report");
    }

    #[test]
    fn a_cold_move_arrives_when_the_target_holds_it_in_its_desired_power_without_error() {
        let moving = vm(false, PowerState::Stopped);
        let now = STARTED_MS + 10_000;
        assert!(arrived(&moving, Some(&report(ActualVmState::Stopped, None, 100)), now));
        assert!(!arrived(&moving, Some(&report(ActualVmState::Missing, None, 100)), now));
        assert!(!arrived(&moving, Some(&report(ActualVmState::Stopped, Some("import failed"), 100)), now));
        let mut settled = moving.clone();
        settled.migration = None;
        assert!(!arrived(&settled, Some(&report(ActualVmState::Stopped, None, 100)), now), "not moving");
    }
}
