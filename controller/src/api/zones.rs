//! `/v1/zones` and `/v1/zone-policies`: security zones and the flows allowed between them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, ZoneCreate, ZonePolicyCreate};
use hci_shared::command::{Applied, Command};
use hci_shared::resources::{Zone, ZonePolicy};
use hci_shared::{validate, ApiError, ErrorBody};

use super::error::{unexpected, with_etag, ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/zones", request_body = ZoneCreate, tag = "zones",
    responses((status = 201, body = Zone), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<ZoneCreate>,
) -> ApiResult<Response> {
    validate::zone_create(&spec)?;
    match app.write(&caller, Command::CreateZone { id: new_id("zone"), spec }).await? {
        Applied::Zone(z) => Ok(with_etag(StatusCode::CREATED, z.revision, &z)),
        _ => Err(unexpected("zone create")),
    }
}

#[utoipa::path(get, path = "/v1/zones", params(ReadParams), tag = "zones",
    responses((status = 200, body = List<Zone>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<axum::Json<List<Zone>>> {
    let items = app.read(q.stale, |m| m.zones().cloned().collect()).await?;
    Ok(axum::Json(List { items }))
}

#[utoipa::path(get, path = "/v1/zones/{name}", params(("name" = String, Path), ReadParams), tag = "zones",
    responses((status = 200, body = Zone), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let zone = app.read(q.stale, |m| m.zone(&name).cloned()).await?;
    let zone = zone.ok_or_else(|| ApiError::not_found("zone", &name))?;
    Ok(with_etag(StatusCode::OK, zone.revision, &zone))
}

#[utoipa::path(delete, path = "/v1/zones/{name}", params(("name" = String, Path)), tag = "zones",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    app.write(&caller, Command::DeleteZone { name, if_match }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/zone-policies", request_body = ZonePolicyCreate, tag = "zones",
    responses((status = 201, body = ZonePolicy), (status = "4XX", body = ErrorBody)))]
pub async fn create_policy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(mut spec): ApiJson<ZonePolicyCreate>,
) -> ApiResult<Response> {
    spec.ports = validate::zone_policy_create(&spec)?;
    match app.write(&caller, Command::CreateZonePolicy { id: new_id("pol"), spec }).await? {
        Applied::ZonePolicy(p) => Ok(with_etag(StatusCode::CREATED, p.revision, &p)),
        _ => Err(unexpected("zone policy create")),
    }
}

#[utoipa::path(get, path = "/v1/zone-policies", params(ReadParams), tag = "zones",
    responses((status = 200, body = List<ZonePolicy>), (status = "4XX", body = ErrorBody)))]
pub async fn list_policies(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<axum::Json<List<ZonePolicy>>> {
    let items = app.read(q.stale, |m| m.zone_policies().cloned().collect()).await?;
    Ok(axum::Json(List { items }))
}

#[utoipa::path(get, path = "/v1/zone-policies/{id}", params(("id" = String, Path), ReadParams), tag = "zones",
    responses((status = 200, body = ZonePolicy), (status = "4XX", body = ErrorBody)))]
pub async fn get_policy(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let policy = app.read(q.stale, |m| m.zone_policy(&id).cloned()).await?;
    let policy = policy.ok_or_else(|| ApiError::not_found("zone policy", &id))?;
    Ok(with_etag(StatusCode::OK, policy.revision, &policy))
}

#[utoipa::path(delete, path = "/v1/zone-policies/{id}", params(("id" = String, Path)), tag = "zones",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete_policy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    app.write(&caller, Command::DeleteZonePolicy { id, if_match }).await?;
    Ok(StatusCode::NO_CONTENT)
}
