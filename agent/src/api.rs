//! The agent's HTTP surface (`/agent/v1/...`): desired state in, report and inventory out, console
//! logs, `/metrics`, and this host's controller contact (which peers ask before self-fencing). Versioned; mTLS arrives with the security issue.
//!
//! Bad input is a 4xx with the project's `{"error": {...}}` body and changes nothing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hci_shared::agent::{ControllerContact, HostDesired, IncomingRequest};
use hci_shared::{ApiError, ErrorCode};

use crate::reconciler::OfferRefusal;
use crate::service::{Agent, OfferError};
use crate::store::AcceptError;

/// At most this much of a console log is returned (the tail).
const CONSOLE_TAIL: u64 = 64 * 1024;

struct Error(ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body())).into_response()
    }
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/agent/v1/host-info", get(host_info))
        .route("/agent/v1/desired", get(get_desired).put(put_desired))
        .route("/agent/v1/report", get(report))
        .route("/agent/v1/controller-contact", get(controller_contact))
        .route("/agent/v1/incoming/:id", axum::routing::post(incoming))
        .route("/agent/v1/vms/:id/console", get(console))
        .route("/agent/v1/volumes/:id/export", axum::routing::post(export_volume))
        .route("/agent/v1/exports/:name", get(download_export).delete(delete_export))
        .with_state(agent)
}

async fn metrics(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    let text = agent.metrics.render() + &agent.fence_metrics.render();
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// When this agent last had a heartbeat acknowledged (asked by peers deciding whether to fence).
async fn controller_contact(State(agent): State<Arc<Agent>>) -> Json<ControllerContact> {
    let age = agent.contact.view().last_ack_age(std::time::Instant::now());
    Json(ControllerContact { host_id: agent.res.host_id.clone(), last_ack_age_ms: age.map(|a| a.as_millis() as u64) })
}

async fn host_info(State(agent): State<Arc<Agent>>) -> Response {
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || crate::inventory::host_info(&a.res, &a.site)).await {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err(e)) => Error(ApiError::unavailable(format!("hypervisor: {e}"))).into_response(),
        Err(e) => Error(ApiError::internal(e.to_string())).into_response(),
    }
}

async fn get_desired(State(agent): State<Arc<Agent>>) -> Response {
    match agent.desired() {
        Some(d) => Json(d).into_response(),
        None => Error(ApiError::not_found("desired state", &agent.res.host_id)).into_response(),
    }
}

async fn put_desired(
    State(agent): State<Arc<Agent>>,
    body: Result<Json<HostDesired>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let desired = match body {
        Ok(Json(d)) => d,
        Err(e) => return Error(ApiError::invalid("body", e.body_text())).into_response(),
    };
    if let Err(e) = hci_shared::agent_validate::host_desired(&desired) {
        return Error(e).into_response();
    }
    match agent.offer(desired) {
        Ok(generation) => Json(serde_json::json!({ "generation": generation })).into_response(),
        Err(OfferError::Refused(e @ AcceptError::WrongHost { .. })) => {
            Error(ApiError::invalid("host_id", e.to_string())).into_response()
        }
        Err(OfferError::Refused(e)) => Error(ApiError::new(ErrorCode::Conflict, e.to_string())).into_response(),
        Err(OfferError::Store(e)) => Error(ApiError::unavailable(e.to_string())).into_response(),
    }
}

/// A source host asks for this host's offer for an incoming VM (live migration).
async fn incoming(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    body: Result<Json<IncomingRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => return Error(ApiError::invalid("body", e.body_text())).into_response(),
    };
    match agent.incoming_offer(id.clone(), request).await {
        Ok(offer) => Json(offer).into_response(),
        Err(OfferRefusal::BadRequest { field, message }) => Error(ApiError::invalid(field, message)).into_response(),
        Err(OfferRefusal::NotDesired(_)) => Error(ApiError::not_found("vm", &id)).into_response(),
        Err(OfferRefusal::Internal(e)) => Error(ApiError::unavailable(e)).into_response(),
        Err(e) => Error(ApiError::new(ErrorCode::Conflict, e.to_string())).into_response(),
    }
}

async fn report(State(agent): State<Arc<Agent>>) -> Response {
    match agent.last_report() {
        Some(r) => Json(r).into_response(),
        None => Json(agent.pass().await).into_response(),
    }
}

async fn console(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let known = agent.desired().is_some_and(|d| d.vms.iter().any(|vm| vm.id == id));
    if !known {
        return Error(ApiError::not_found("vm", &id)).into_response();
    }
    let path = agent.res.vm_dir.join(&id).join("console.log");
    match read_tail(&path, CONSOLE_TAIL) {
        Ok(text) => ([("content-type", "text/plain; charset=utf-8")], text).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new().into_response(),
        Err(e) => Error(ApiError::internal(format!("reading {}: {e}", path.display()))).into_response(),
    }
}

fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `POST /agent/v1/volumes/{id}/export`: flatten a cold volume into a checksummed file to download.
async fn export_volume(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let a = agent.clone();
    let result = tokio::task::spawn_blocking(move || a.export(&id)).await;
    match result {
        Ok(Ok(export)) => Json(export).into_response(),
        Ok(Err(e @ crate::export::ExportError::NoSuchVolume(_))) => {
            Error(ApiError::new(ErrorCode::NotFound, e.to_string())).into_response()
        }
        Ok(Err(e @ (crate::export::ExportError::InUse { .. } | crate::export::ExportError::NotAFile(_)))) => {
            Error(ApiError::new(ErrorCode::Conflict, e.to_string())).into_response()
        }
        Ok(Err(e)) => Error(ApiError::internal(e.to_string())).into_response(),
        Err(e) => Error(ApiError::internal(e.to_string())).into_response(),
    }
}

async fn download_export(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    let dir = crate::export::exports_dir(&agent.data_dir);
    let Some(path) = crate::export::export_file(&dir, &name) else {
        return Error(ApiError::not_found("export", &name)).into_response();
    };
    match tokio::fs::File::open(&path).await {
        Ok(file) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
            ([("content-type", "application/octet-stream")], body).into_response()
        }
        Err(e) => Error(ApiError::internal(format!("opening {}: {e}", path.display()))).into_response(),
    }
}

async fn delete_export(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    let dir = crate::export::exports_dir(&agent.data_dir);
    match crate::export::export_file(&dir, &name) {
        Some(path) => match std::fs::remove_file(&path) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => Error(ApiError::internal(format!("removing {}: {e}", path.display()))).into_response(),
        },
        None => Error(ApiError::not_found("export", &name)).into_response(),
    }
}
