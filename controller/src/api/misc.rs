//! `/v1/hosts` (read-only until agents join in a later issue) and `/v1/audit`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use hci_shared::api::List;
use hci_shared::resources::{AuditRecord, Host};
use hci_shared::{ApiError, ErrorBody};

use super::error::{ApiQuery, ApiResult, ReadParams};
use super::resource;
use crate::node::App;

#[utoipa::path(get, path = "/v1/hosts", params(ReadParams), tag = "hosts",
    responses((status = 200, body = List<Host>), (status = "4XX", body = ErrorBody)))]
pub async fn list_hosts(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<Json<List<Host>>> {
    resource::list(&app, q.stale, |m| m.hosts().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/hosts/{id}", params(("id" = String, Path), ReadParams), tag = "hosts",
    responses((status = 200, body = Host), (status = "4XX", body = ErrorBody)))]
pub async fn get_host(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &id, |m| m.host(&id).cloned()).await
}

/// `GET /v1/audit?after=SEQ&limit=N`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
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
