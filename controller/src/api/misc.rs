//! `/v1/audit`: the replicated audit log, read from the store (it is not held in memory).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hci_shared::api::List;
use hci_shared::resources::AuditRecord;
use hci_shared::{ApiError, ErrorBody};

use super::error::{ApiQuery, ApiResult};
use crate::node::App;

/// `GET /v1/audit?after=SEQ&limit=N`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only records with a sequence number greater than this.
    #[serde(default)]
    pub after: u64,
    /// At most this many records (1-1000, default 100).
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub stale: bool,
}

fn default_limit() -> usize {
    100
}

#[utoipa::path(get, path = "/v1/audit", params(AuditParams), tag = "audit",
    responses((status = 200, body = List<AuditRecord>), (status = "4XX", body = ErrorBody)))]
pub async fn audit(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<List<AuditRecord>>> {
    if !(1..=1000).contains(&q.limit) {
        return Err(ApiError::invalid("limit", format!("{} is outside 1-1000", q.limit)).into());
    }
    if !q.stale {
        app.linearizable().await?;
    }
    let items = app
        .state
        .audit_after(q.after, q.limit)
        .map_err(|e| ApiError::internal(format!("reading the audit log: {e}")))?;
    Ok(Json(List { items }))
}
