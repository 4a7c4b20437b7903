//! `/v1/vms`: virtual machines as desired by operators (placement and agents arrive with hosts).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, VmCreate, VmMigrate};
use hci_shared::command::{Command, PowerAction};
use hci_shared::resources::Vm;
use hci_shared::{validate, ApiError, ErrorBody};

use super::error::{ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use super::resource;
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/vms", request_body = VmCreate, tag = "vms",
    responses((status = 201, body = Vm), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<VmCreate>,
) -> ApiResult<Response> {
    validate::vm_create(&spec)?;
    resource::write::<Vm>(&app, &caller, Command::CreateVm { id: new_id("vm"), spec }, StatusCode::CREATED).await
}

#[utoipa::path(get, path = "/v1/vms", params(ReadParams), tag = "vms",
    responses((status = 200, body = List<Vm>), (status = "4XX", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<axum::Json<List<Vm>>> {
    resource::list(&app, q.stale, |m| m.vms().cloned().collect()).await
}

#[utoipa::path(get, path = "/v1/vms/{id}", params(("id" = String, Path), ReadParams), tag = "vms",
    responses((status = 200, body = Vm), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    resource::get(&app, q.stale, &id, |m| m.vm(&id).cloned()).await
}

#[utoipa::path(delete, path = "/v1/vms/{id}", params(("id" = String, Path)), tag = "vms",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<StatusCode> {
    resource::delete(&app, &caller, Command::DeleteVm { id, if_match }).await
}

/// `POST /v1/vms/{id}/{action}` for start, stop and reboot.
#[utoipa::path(post, path = "/v1/vms/{id}/{action}", tag = "vms",
    params(("id" = String, Path), ("action" = String, Path, description = "start, stop or reboot")),
    responses((status = 200, body = Vm), (status = "4XX", body = ErrorBody)))]
pub async fn power(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Response> {
    let action = match action.as_str() {
        "start" => PowerAction::Start,
        "stop" => PowerAction::Stop,
        "reboot" => PowerAction::Reboot,
        other => return Err(ApiError::not_found("vm action", other).into()),
    };
    resource::write::<Vm>(&app, &caller, Command::SetVmPower { id, action }, StatusCode::OK).await
}

#[utoipa::path(post, path = "/v1/vms/{id}/migrate", params(("id" = String, Path)), request_body = VmMigrate,
    tag = "vms", responses((status = 200, body = Vm), (status = "4XX", body = ErrorBody)))]
pub async fn migrate(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<VmMigrate>,
) -> ApiResult<Response> {
    if let Some(host) = &request.host {
        if host.is_empty() || host.len() > 64 {
            return Err(ApiError::invalid("host", "is not a host id").into());
        }
    }
    resource::write::<Vm>(&app, &caller, Command::MigrateVm { id, request }, StatusCode::OK).await
}
