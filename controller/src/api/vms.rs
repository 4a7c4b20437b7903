//! `/v1/vms`: virtual machines. A create (and the start of an unplaced VM) is planned here, on the
//! member that takes the write (the leader, as followers forward writes), against its applied
//! state; the decision travels in the command and is checked again when applied. Reads add the
//! status the VM's host last reported to the leader.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use hci_shared::api::{List, VmCreate, VmMigrate};
use hci_shared::command::{Command, Placement, PowerAction};
use hci_shared::hosts::{ActualVmState, VmStatus, VmView};
use hci_shared::resources::Vm;
use hci_shared::{validate, ApiError, ErrorBody, ErrorCode};
use std::time::Instant;

use super::error::{ApiJson, ApiQuery, ApiResult, IfMatch, ReadParams};
use super::resource;
use crate::node::{new_id, App, Caller};

#[utoipa::path(post, path = "/v1/vms", request_body = VmCreate, tag = "vms",
    description = "Placed on a host under the cap at once (409 no_capacity naming the constraints that \
        excluded hosts, and how many, when none fits); kept unplaced while the site has no host.",
    responses((status = 201, body = Vm), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(spec): ApiJson<VmCreate>,
) -> ApiResult<Response> {
    validate::vm_create(&spec)?;
    let id = new_id("vm");
    let policy = app.config.placement;
    let plan = |m: &hci_state::Model| m.plan_create(&id, &spec, &policy);
    let command = |placement| Command::CreateVm { id: id.clone(), spec: spec.clone(), placement };
    write_placed(&app, &caller, plan, command, StatusCode::CREATED).await
}

/// How many times a placement refused at commit (another decision took the room first) is planned
/// again against the newer state before the refusal is answered.
const PLACEMENT_ATTEMPTS: usize = 8;

/// Plans on this member's applied state, proposes, and when the decision is refused at commit
/// (`no_capacity`: a racing decision committed first) plans again, so a 409 means nothing fits
/// any more, never merely that another request won a race.
async fn write_placed(
    app: &App,
    caller: &Caller,
    plan: impl Fn(&hci_state::Model) -> Result<Option<Placement>, ApiError>,
    command: impl Fn(Option<Placement>) -> Command,
    status: StatusCode,
) -> ApiResult<Response> {
    let mut attempt = 1;
    loop {
        let placement = plan(&app.state.read())?;
        let planned = placement.is_some();
        match resource::write::<Vm>(app, caller, command(placement), status).await {
            Err(e) if planned && e.0.code == ErrorCode::NoCapacity && attempt < PLACEMENT_ATTEMPTS => {
                tracing::debug!(attempt, error = %e.0, "placement refused at commit; planning again");
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

/// A VM with what its host last reported to this member (as leader); `host_down` while its host
/// is offline or fenced.
/// While a VM moves, what its source host last reported as an error about it (a failing send).
fn source_error(app: &App, vm: &Vm, now: Instant) -> Option<String> {
    let from = &vm.migration.as_ref()?.from_host;
    let (report, _) = app.leases.vm_report(from, &vm.id, now)?;
    report.last_error.map(|e| format!("on the source host {from}: {e}"))
}

fn view(app: &App, model: &hci_state::Model, vm: &Vm, now: Instant) -> VmView {
    let report = vm.host.as_deref().and_then(|host| app.leases.vm_report(host, &vm.id, now));
    let down_reason = model.vm_down_reason(vm);
    let status = VmStatus {
        host: vm.host.clone(),
        desired_power: vm.power,
        actual: if down_reason.is_some() {
            Some(ActualVmState::HostDown)
        } else {
            report.as_ref().map(|(r, _)| r.state)
        },
        last_error: report.as_ref().and_then(|(r, _)| r.last_error.clone()).or_else(|| source_error(app, vm, now)),
        reported_age_ms: report.map(|(_, age)| age),
        down_reason,
    };
    VmView { vm: vm.clone(), status }
}

#[utoipa::path(get, path = "/v1/vms", params(ReadParams), tag = "vms",
    responses((status = 200, body = List<VmView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<axum::Json<List<VmView>>> {
    let now = Instant::now();
    resource::list(&app, q.stale, |m| m.vms().map(|vm| view(&app, m, vm, now)).collect()).await
}

#[utoipa::path(get, path = "/v1/vms/{id}", params(("id" = String, Path), ReadParams), tag = "vms",
    responses((status = 200, body = VmView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let now = Instant::now();
    resource::get(&app, q.stale, &id, |m| m.vm(&id).map(|vm| view(&app, m, vm, now))).await
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
    let policy = app.config.placement;
    let plan = |m: &hci_state::Model| match action {
        PowerAction::Start => m.plan_start(&id, &policy),
        PowerAction::Stop | PowerAction::Reboot => Ok(None),
    };
    let command = |placement| Command::SetVmPower { id: id.clone(), action, placement };
    write_placed(&app, &caller, plan, command, StatusCode::OK).await
}

#[utoipa::path(post, path = "/v1/vms/{id}/migrate", params(("id" = String, Path)), request_body = VmMigrate,
    tag = "vms",
    description = "Moves the VM to `host`, or where the planner puts it under the cap: live while it runs \
        (libvirt migration; local disks are copied), cold while it is stopped (local volumes exported by the \
        source and imported by the target). Answers at once with `migration` set; the move finishes when the \
        target reports the VM there (then `migration` is cleared).",
    responses((status = 200, body = Vm), (status = "4XX", body = ErrorBody)))]
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
    let policy = app.config.placement;
    let mut attempt = 1;
    loop {
        let plan = app.state.read().plan_move(&id, request.host.as_deref(), request.live, &policy)?;
        let planned = crate::moves::with_exports(&app, vec![plan]).await?;
        let Some(planned) = planned.into_iter().next() else {
            return Err(ApiError::internal("a planned move went missing").into());
        };
        let command = Command::MigrateVm { id: id.clone(), planned };
        match resource::write::<Vm>(&app, &caller, command, StatusCode::OK).await {
            Err(e) if e.0.code == ErrorCode::NoCapacity && attempt < PLACEMENT_ATTEMPTS && request.host.is_none() => {
                attempt += 1;
            }
            answer => return answer,
        }
    }
}
