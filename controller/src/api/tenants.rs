//! `/v1/tenants`: departments and their quotas.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, TenantCreate, TenantUpdate};
use hci_shared::command::{Applied, Command};
use hci_shared::resources::Tenant;
use hci_shared::{validate, ApiError, ErrorBody};

use super::error::{unexpected, with_etag, ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/tenants", request_body = TenantCreate, tag = "tenants",
    responses((status = 201, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<TenantCreate>,
) -> ApiResult<Response> {
    validate::tenant_create(&spec)?;
    match app.write(&caller, Command::CreateTenant { id: new_id("ten"), spec }).await? {
        Applied::Tenant(t) => Ok(with_etag(StatusCode::CREATED, t.revision, &t)),
        _ => Err(unexpected("tenant create")),
    }
}

#[utoipa::path(get, path = "/v1/tenants", params(ReadParams), tag = "tenants",
    responses((status = 200, body = List<Tenant>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<axum::Json<List<Tenant>>> {
    let items = app.read(q.stale, |m| m.tenants().cloned().collect()).await?;
    Ok(axum::Json(List { items }))
}

#[utoipa::path(get, path = "/v1/tenants/{name}", params(("name" = String, Path), ReadParams), tag = "tenants",
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let tenant = app.read(q.stale, |m| m.tenant(&name).cloned()).await?;
    let tenant = tenant.ok_or_else(|| ApiError::not_found("tenant", &name))?;
    Ok(with_etag(StatusCode::OK, tenant.revision, &tenant))
}

#[utoipa::path(put, path = "/v1/tenants/{name}", params(("name" = String, Path)), request_body = TenantUpdate,
    tag = "tenants", responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn update(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
    ApiJson(update): ApiJson<TenantUpdate>,
) -> ApiResult<Response> {
    validate::tenant_update(&update)?;
    match app.write(&caller, Command::UpdateTenant { name, update, if_match }).await? {
        Applied::Tenant(t) => Ok(with_etag(StatusCode::OK, t.revision, &t)),
        _ => Err(unexpected("tenant update")),
    }
}

#[utoipa::path(delete, path = "/v1/tenants/{name}", params(("name" = String, Path)), tag = "tenants",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    app.write(&caller, Command::DeleteTenant { name, if_match }).await?;
    Ok(StatusCode::NO_CONTENT)
}
