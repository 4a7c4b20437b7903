//! `/v1/tenants`: departments and their quotas.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use hci_shared::api::{List, TenantCreate, TenantUpdate};
use hci_shared::command::Command;
use hci_shared::resources::Tenant;
use hci_shared::{validate, ErrorBody};

use super::error::{ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use super::resource;
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/tenants", request_body = TenantCreate, tag = "tenants",
    responses((status = 201, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<TenantCreate>,
) -> ApiResult<Response> {
    validate::tenant_create(&spec)?;
    let command = Command::CreateTenant { id: new_id("ten"), spec };
    resource::write::<Tenant>(&app, &caller, command, StatusCode::CREATED).await
}

#[utoipa::path(get, path = "/v1/tenants", params(ReadParams), tag = "tenants",
    responses((status = 200, body = List<Tenant>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<Json<List<Tenant>>> {
    resource::list(&app, q.stale, |m| m.tenants().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/tenants/{name}", params(("name" = String, Path), ReadParams), tag = "tenants",
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &name, |m| m.tenant(&name).cloned()).await
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
    let command = Command::UpdateTenant { name, update, if_match };
    resource::write::<Tenant>(&app, &caller, command, StatusCode::OK).await
}

#[utoipa::path(delete, path = "/v1/tenants/{name}", params(("name" = String, Path)), tag = "tenants",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    resource::delete(&app, &caller, Command::DeleteTenant { name, if_match }).await
}
