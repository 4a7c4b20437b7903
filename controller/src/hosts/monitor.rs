//! The lease monitor: on the leader, proposes `offline` for every ready host whose lease ran out.
//!
//! It exists apart from the heartbeat handler because silence sends no request: something has to
//! look at the clock. It runs on every member but acts only while this member leads; following or
//! leading in a new term resets the lease table (see `leases`), so a failover starts a grace period
//! instead of a wave of offline hosts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_shared::command::Command;
use hci_shared::resources::HostState;

use crate::node::{App, Caller};

/// How often the monitor looks: a tenth of the lease, between 50 ms and 500 ms.
pub(crate) fn check_interval(lease: Duration) -> Duration {
    (lease / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
}

/// The term this member leads in, if it leads.
pub fn leading_term(app: &App) -> Option<u64> {
    let metrics = app.raft.metrics();
    let m = metrics.borrow();
    (m.current_leader == Some(app.id)).then_some(m.current_term)
}

/// Proposes one liveness transition and clears its in-flight mark when answered.
pub async fn propose(
    app: Arc<App>,
    id: String,
    alive: bool,
    reason: String,
) -> Result<HostState, hci_shared::ApiError> {
    let caller = Caller(format!("member-{}", app.id));
    let result = app.write(&caller, Command::SetHostLiveness { id: id.clone(), alive, reason }).await;
    app.leases.end(&id);
    match result {
        Ok(hci_shared::command::Applied::Host(host)) => Ok(host.state),
        Ok(_) => Err(hci_shared::ApiError::internal("a liveness command answered something other than a host")),
        Err(e) => {
            tracing::warn!(host = %id, alive, error = %e, "host liveness transition not committed");
            Err(e)
        }
    }
}

/// Runs forever (until the runtime stops), with the HA task (`ha`) beside it.
pub async fn run(app: Arc<App>) {
    tokio::spawn(super::ha::run(app.clone()));
    let interval = check_interval(app.leases.lease());
    loop {
        tokio::time::sleep(interval).await;
        let now = Instant::now();
        let Some(term) = leading_term(&app) else {
            app.leases.step_down(now);
            continue;
        };
        app.leases.lead(term, now);
        let ready: Vec<String> = {
            let model = app.state.read();
            model.hosts().filter(|h| h.state == HostState::Ready).map(|h| h.id.clone()).collect()
        };
        for (id, silent) in app.leases.expired(ready.iter().map(String::as_str), now) {
            if !app.leases.begin(&id, false) {
                continue;
            }
            let reason = format!(
                "no heartbeat for {} ms (lease {} ms, member {})",
                silent.as_millis(),
                app.leases.lease().as_millis(),
                app.id
            );
            tracing::warn!(host = %id, silent_ms = silent.as_millis() as u64, "host lease expired; marking it offline");
            tokio::spawn(propose(app.clone(), id, false, reason));
        }
    }
}
