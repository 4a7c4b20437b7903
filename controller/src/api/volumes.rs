//! `/v1/volumes`: block volumes, their resize, snapshots and clones (desired state; agents make them
//! real on hosts).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, VolumeClone, VolumeCreate, VolumeResize, VolumeSnapshotCreate};
use hci_shared::command::Command;
use hci_shared::resources::Volume;
use hci_shared::{validate, ErrorBody};

use super::error::{ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use super::resource;
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/volumes", request_body = VolumeCreate, tag = "volumes",
    responses((status = 201, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<VolumeCreate>,
) -> ApiResult<Response> {
    validate::volume_create(&spec)?;
    resource::write::<Volume>(&app, &caller, Command::CreateVolume { id: new_id("vol"), spec }, StatusCode::CREATED)
        .await
}

#[utoipa::path(get, path = "/v1/volumes", params(ReadParams), tag = "volumes",
    responses((status = 200, body = List<Volume>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<axum::Json<List<Volume>>> {
    resource::list(&app, q.stale, |m| m.volumes().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/volumes/{id}", params(("id" = String, Path), ReadParams), tag = "volumes",
    responses((status = 200, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &id, |m| m.volume(&id).cloned()).await
}

#[utoipa::path(delete, path = "/v1/volumes/{id}", params(("id" = String, Path)), tag = "volumes",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    resource::delete(&app, &caller, Command::DeleteVolume { id, if_match }).await
}

#[utoipa::path(post, path = "/v1/volumes/{id}/resize", params(("id" = String, Path)), request_body = VolumeResize,
    tag = "volumes", responses((status = 200, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn resize(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    ApiJson(body): ApiJson<VolumeResize>,
) -> ApiResult<Response> {
    validate::volume_resize(&body)?;
    resource::write::<Volume>(
        &app,
        &caller,
        Command::ResizeVolume {
            id,
            size_gib: body.size_gib,
            if_match,
            cap_percent: app.config.placement.cap_percent(),
        },
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(post, path = "/v1/volumes/{id}/snapshot", params(("id" = String, Path)),
    request_body = VolumeSnapshotCreate, tag = "volumes",
    responses((status = 200, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VolumeSnapshotCreate>,
) -> ApiResult<Response> {
    validate::volume_snapshot(&body)?;
    resource::write::<Volume>(&app, &caller, Command::SnapshotVolume { id, name: body.name }, StatusCode::OK).await
}

#[utoipa::path(post, path = "/v1/volumes/{id}/clone", params(("id" = String, Path)), request_body = VolumeClone,
    tag = "volumes", responses((status = 201, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn clone(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VolumeClone>,
) -> ApiResult<Response> {
    validate::volume_clone(&body)?;
    let cap_percent = app.config.placement.cap_percent();
    let command = Command::CloneVolume { id, new_id: new_id("vol"), name: body.name, cap_percent };
    resource::write::<Volume>(&app, &caller, command, StatusCode::CREATED).await
}
