//! `/v1/zones` and `/v1/zone-policies`: security zones and the flows allowed between them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use hci_shared::api::{List, ZoneCreate, ZonePolicyCreate};
use hci_shared::command::Command;
use hci_shared::resources::{Zone, ZonePolicy};
use hci_shared::{validate, ErrorBody};

use super::error::{ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use super::resource;
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/zones", request_body = ZoneCreate, tag = "zones",
    responses((status = 201, body = Zone), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<ZoneCreate>,
) -> ApiResult<Response> {
    validate::zone_create(&spec)?;
    let command = Command::CreateZone { id: new_id("zone"), spec };
    resource::write::<Zone>(&app, &caller, command, StatusCode::CREATED).await
}

#[utoipa::path(get, path = "/v1/zones", params(ReadParams), tag = "zones",
    responses((status = 200, body = List<Zone>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<Json<List<Zone>>> {
    resource::list(&app, q.stale, |m| m.zones().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/zones/{name}", params(("name" = String, Path), ReadParams), tag = "zones",
    responses((status = 200, body = Zone), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &name, |m| m.zone(&name).cloned()).await
}

#[utoipa::path(delete, path = "/v1/zones/{name}", params(("name" = String, Path)), tag = "zones",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    resource::delete(&app, &caller, Command::DeleteZone { name, if_match }).await
}

#[utoipa::path(post, path = "/v1/zone-policies", request_body = ZonePolicyCreate, tag = "zones",
    responses((status = 201, body = ZonePolicy), (status = "4XX", body = ErrorBody)))]
pub async fn create_policy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(mut spec): ApiJson<ZonePolicyCreate>,
) -> ApiResult<Response> {
    spec.ports = validate::zone_policy_create(&spec)?;
    let command = Command::CreateZonePolicy { id: new_id("pol"), spec };
    resource::write::<ZonePolicy>(&app, &caller, command, StatusCode::CREATED).await
}

#[utoipa::path(get, path = "/v1/zone-policies", params(ReadParams), tag = "zones",
    responses((status = 200, body = List<ZonePolicy>), (status = "4XX", body = ErrorBody)))]
pub async fn list_policies(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Json<List<ZonePolicy>>> {
    resource::list(&app, q.stale, |m| m.zone_policies().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/zone-policies/{id}", params(("id" = String, Path), ReadParams), tag = "zones",
    responses((status = 200, body = ZonePolicy), (status = "4XX", body = ErrorBody)))]
pub async fn get_policy(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &id, |m| m.zone_policy(&id).cloned()).await
}

#[utoipa::path(delete, path = "/v1/zone-policies/{id}", params(("id" = String, Path)), tag = "zones",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete_policy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    resource::delete(&app, &caller, Command::DeleteZonePolicy { id, if_match }).await
}
