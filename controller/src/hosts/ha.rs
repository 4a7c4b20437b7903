//! The HA task: on the leader, fences every host that stayed `offline` past its lease plus
//! `--ha-restart-margin-ms` and restarts its HA VMs on other hosts, in one `RestartVmsElsewhere`.
//!
//! It exists because a silent host may still run its VMs (cut off, not dead): restarting them
//! elsewhere is safe only once its agent has powered them off, which it does by itself
//! `fence_after_ms` after its last acknowledged heartbeat (see `Config::fence_after_ms` for why
//! lease + margin is later than that). Silence is measured in this leader's lease table, which a
//! new leader starts afresh: a failover restarts the wait, so no member restarts anything for
//! silence it did not witness. The decision is planned here and checked again when applied; it
//! applies only while the host is still offline, so a host heard from in between is left alone.
//! A decision that does not commit is planned again at the next check (every monitor interval).
//! The host is fenced even when nothing can be restarted, so it is never silently trusted again:
//! an operator returns it to service (`POST /v1/hosts/{id}/maintenance {"enabled": false}`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_shared::command::{Applied, Command, PlannedRestart};
use hci_shared::resources::HostState;
use hci_shared::ApiError;

use super::monitor::{check_interval, leading_term};
use crate::node::{App, Caller};

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// Of `offline` hosts, those silent (as `silence` says) for longer than `after`.
pub fn due<'a>(
    offline: impl IntoIterator<Item = &'a str>,
    after: Duration,
    silence: impl Fn(&str) -> Option<Duration>,
) -> Vec<(String, Duration)> {
    offline
        .into_iter()
        .filter_map(|id| silence(id).filter(|silent| *silent > after).map(|silent| (id.to_string(), silent)))
        .collect()
}

/// Whether HA may act now. Not while no host is ready: nothing could be restarted, and every host
/// silent at once is far more likely the controllers cut off than every host dead (fencing them all
/// would only take the site out of service). Not within one lease of an offline host coming back:
/// hosts cut off together with it keep their VMs running while none of their peers hears the
/// controllers, and learn from the one that came back (within their next peer check, about a
/// second, plus a power-off) that they must fence; restarting their VMs before that could run one
/// twice.
pub fn may_restart(any_ready: bool, since_revival: Option<Duration>, lease: Duration) -> bool {
    any_ready && since_revival.is_none_or(|ago| ago >= lease)
}

/// The fenced host's `state_reason`: how long it was silent, against what, who decided, and how
/// many VMs were restarted.
pub fn reason(
    silent: Duration,
    lease: Duration,
    margin: Duration,
    member: u64,
    restarted: usize,
    down: usize,
) -> String {
    format!(
        "no heartbeat for {} ms (lease {} ms + HA margin {} ms, member {member}): fenced; {restarted} HA vm(s) \
         restarted elsewhere, {down} not restarted",
        millis(silent),
        millis(lease),
        millis(margin)
    )
}

/// Plans and proposes the restart of host `id`'s VMs; logs what was decided.
async fn fence_and_restart(app: &Arc<App>, id: &str, silent: Duration) -> Result<(), ApiError> {
    let (restarts, down): (Vec<PlannedRestart>, Vec<(String, String)>) =
        app.state.read().plan_ha_restart(id, &app.config.placement);
    let margin = Duration::from_millis(app.config.ha_restart_margin_ms);
    let reason = reason(silent, app.leases.lease(), margin, app.id, restarts.len(), down.len());
    tracing::warn!(
        host = %id,
        silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
        restarts = restarts.len(),
        not_restarted = down.len(),
        "host silent past its lease and the HA margin: fencing it and restarting its HA VMs elsewhere"
    );
    let caller = Caller(format!("member-{}", app.id));
    let command = Command::RestartVmsElsewhere { host: id.to_string(), restarts: restarts.clone(), reason };
    match app.write(&caller, command).await? {
        Applied::Host(host) if host.state == HostState::Fenced => {}
        other => return Err(ApiError::internal(format!("an HA restart answered {other:?}"))),
    }
    app.metrics.ha_hosts_fenced.inc();
    app.metrics.ha_vms_restarted.inc_by(restarts.len() as u64);
    app.metrics.ha_vms_left_down.inc_by(down.len() as u64);
    for restart in &restarts {
        tracing::info!(host = %id, vm = %restart.vm, to = %restart.placement.host, "HA: vm restarted on another host");
    }
    for (vm, why) in &down {
        tracing::warn!(host = %id, vm = %vm, why = %why, "HA: vm not restarted; it is down with its host");
    }
    Ok(())
}

/// Runs forever (until the runtime stops); acts only while this member leads.
pub async fn run(app: Arc<App>) {
    let interval = check_interval(app.leases.lease());
    let after = app.config.ha_restart_after();
    loop {
        tokio::time::sleep(interval).await;
        let Some(term) = leading_term(&app) else { continue };
        let (offline, any_ready): (Vec<String>, bool) = {
            let model = app.state.read();
            let offline = model.hosts().filter(|h| h.state == HostState::Offline).map(|h| h.id.clone()).collect();
            let any_ready = model.hosts().any(|h| h.state == HostState::Ready);
            (offline, any_ready)
        };
        if offline.is_empty() {
            continue;
        }
        let now = Instant::now();
        if !may_restart(any_ready, app.leases.since_revival(term, now), app.leases.lease()) {
            continue;
        }
        let hosts = due(offline.iter().map(String::as_str), after, |id| app.leases.silence(term, id, now));
        for (id, silent) in hosts {
            if let Err(e) = fence_and_restart(&app, &id, silent).await {
                tracing::warn!(host = %id, error = %e, "HA restart not committed; planned again at the next check");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn only_hosts_silent_past_lease_and_margin_are_due() {
        let silence = |id: &str| match id {
            "h1" => Some(ms(15_001)),
            "h2" => Some(ms(15_000)),
            _ => None,
        };
        let due = due(["h1", "h2", "h3"], ms(15_000), silence);
        assert_eq!(due, vec![("h1".to_string(), ms(15_001))], "h2 not yet, h3 unknown to this term");
    }

    #[test]
    fn nothing_restarts_without_a_ready_host_or_within_a_lease_of_a_revival() {
        let lease = ms(10_000);
        assert!(may_restart(true, None, lease));
        assert!(!may_restart(false, None, lease), "every host silent: the controllers are the cut-off ones");
        assert!(!may_restart(true, Some(ms(9_999)), lease), "a host just came back: its peers fence next");
        assert!(may_restart(true, Some(ms(10_000)), lease));
    }

    #[test]
    fn the_reason_fits_the_host_record() {
        let text = reason(ms(15_250), ms(10_000), ms(5_000), 2, 3, 1);
        assert_eq!(
            text,
            "no heartbeat for 15250 ms (lease 10000 ms + HA margin 5000 ms, member 2): fenced; 3 HA vm(s) \
             restarted elsewhere, 1 not restarted"
        );
        assert!(text.len() <= hci_state::MAX_HA_REASON);
    }
}
