//! Carrying out VM moves decided in the model: exporting a cold move's local volumes before it is
//! committed, and finishing moves once the target host reports the VM there.
//!
//! It exists apart from the API handlers because finishing is driven by heartbeats, not requests:
//! the leader watches what targets report and commits `FinishMigration`, after which the source
//! lets go of the VM and its local copies. Nothing here decides where a VM goes (that is the
//! planner's, in `hci-state`), and nothing here finishes a move before the target has the VM.

pub mod exports;
pub mod finisher;

use std::sync::Arc;

use hci_shared::command::Command;
use hci_shared::ApiError;
use hci_state::MovePlan;

use crate::node::{App, Caller};

/// The plans with their cold moves' local volumes exported by the source (in order), as the
/// planned moves to commit.
pub async fn with_exports(
    app: &Arc<App>,
    plans: Vec<MovePlan>,
) -> Result<Vec<hci_shared::command::PlannedMove>, ApiError> {
    let mut moves = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut planned = plan.planned;
        planned.imports = exports::export_all(&app.http, &plan.source_agent, &plan.exports).await?;
        moves.push(planned);
    }
    Ok(moves)
}

/// Commits `command` as the leader's own write (finishing, drains).
pub async fn propose(app: &App, command: Command) -> Result<hci_shared::command::Applied, ApiError> {
    app.write(&Caller(format!("member-{}", app.id)), command).await
}
