//! `/v1/volumes`: block volumes, their resize, snapshots and clones (desired state; agents make them
//! real on hosts).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, VolumeClone, VolumeCreate, VolumeResize, VolumeSnapshotCreate};
use hci_shared::command::{Applied, Command};
use hci_shared::resources::Volume;
use hci_shared::{validate, ApiError, ErrorBody};

use super::error::{unexpected, with_etag, ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use crate::node::{new_id, App, Caller};

/// Runs a volume command and answers the resulting volume with `status`.
async fn volume_write(app: &App, caller: &Caller, command: Command, status: StatusCode) -> ApiResult<Response> {
    match app.write(caller, command).await? {
        Applied::Volume(v) => Ok(with_etag(status, v.revision, &v)),
        _ => Err(unexpected("volume command")),
    }
}

#[utoipa::path(post, path = "/v1/volumes", request_body = VolumeCreate, tag = "volumes",
    responses((status = 201, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<VolumeCreate>,
) -> ApiResult<Response> {
    validate::volume_create(&spec)?;
    volume_write(&app, &caller, Command::CreateVolume { id: new_id("vol"), spec }, StatusCode::CREATED).await
}

#[utoipa::path(get, path = "/v1/volumes", params(ReadParams), tag = "volumes",
    responses((status = 200, body = List<Volume>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<axum::Json<List<Volume>>> {
    let items = app.read(q.stale, |m| m.volumes().cloned().collect()).await?;
    Ok(axum::Json(List { items }))
}

#[utoipa::path(get, path = "/v1/volumes/{id}", params(("id" = String, Path), ReadParams), tag = "volumes",
    responses((status = 200, body = Volume), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let volume = app.read(q.stale, |m| m.volume(&id).cloned()).await?;
    let volume = volume.ok_or_else(|| ApiError::not_found("volume", &id))?;
    Ok(with_etag(StatusCode::OK, volume.revision, &volume))
}

#[utoipa::path(delete, path = "/v1/volumes/{id}", params(("id" = String, Path)), tag = "volumes",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    app.write(&caller, Command::DeleteVolume { id, if_match }).await?;
    Ok(StatusCode::NO_CONTENT)
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
    volume_write(&app, &caller, Command::ResizeVolume { id, size_gib: body.size_gib, if_match }, StatusCode::OK).await
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
    volume_write(&app, &caller, Command::SnapshotVolume { id, name: body.name }, StatusCode::OK).await
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
    let command = Command::CloneVolume { id, new_id: new_id("vol"), name: body.name };
    volume_write(&app, &caller, command, StatusCode::CREATED).await
}
