//! `/v1/hosts`: join tokens, agents joining, heartbeats, the per-host desired-state feed, and the
//! hosts themselves (replicated record + the leader's view of their heartbeats).
//!
//! Operators call the token and read endpoints; agents call join, heartbeat and desired with a join
//! token or their own credential (`access` decides who may call what). A heartbeat never reaches
//! Raft unless it brings an offline host back.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hci_shared::agent::HostDesired;
use hci_shared::api::{HostMaintenance, List};
use hci_shared::command::{Applied, Command, JoinAuth};
use hci_shared::hosts::*;
use hci_shared::resources::HostState;
use hci_shared::{hosts_validate, ApiError, ErrorBody};

use super::access::Principal;
use super::error::{ApiJson, ApiQuery, ApiResult, HttpError, ReadParams};
use super::resource;
use crate::hosts::monitor::{leading_term, propose};
use crate::node::{sha256_hex, App, Caller};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Host id → (VMs leaving it, VMs arriving on it), over the moves in progress.
type MoveCounts = std::collections::BTreeMap<String, (u64, u64)>;

fn move_counts(model: &hci_state::Model) -> MoveCounts {
    let mut counts = MoveCounts::new();
    for vm in model.moving_vms() {
        let (Some(moving), Some(to)) = (&vm.migration, &vm.host) else { continue };
        counts.entry(moving.from_host.clone()).or_default().0 += 1;
        counts.entry(to.clone()).or_default().1 += 1;
    }
    counts
}

fn view(
    app: &App,
    model: &hci_state::Model,
    host: &hci_shared::resources::Host,
    moves: &MoveCounts,
    now: Instant,
) -> HostView {
    let (leaving, arriving) = moves.get(&host.id).copied().unwrap_or_default();
    let mut allocation =
        model.placement_view().host(&host.id).map_or_else(HostAllocation::default, |placed| HostAllocation {
            vms: u64::try_from(placed.vms().len()).unwrap_or(u64::MAX),
            vcpus: placed.allocated_vcpus(),
            memory_mib: placed.allocated_memory_mib(),
            pools: placed
                .spec()
                .pools
                .keys()
                .map(|name| PoolAllocation {
                    name: name.clone(),
                    allocated_bytes: placed.pool_allocated_bytes(name).unwrap_or(0),
                })
                .collect(),
            leaving: 0,
            arriving: 0,
        });
    (allocation.leaving, allocation.arriving) = (leaving, arriving);
    HostView { host: host.clone(), heartbeat: app.leases.status(&host.id, app.id, now), allocation }
}

#[utoipa::path(get, path = "/v1/hosts", params(ReadParams), tag = "hosts",
    responses((status = 200, body = List<HostView>), (status = "4XX", body = ErrorBody)))]
pub async fn list_hosts(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Json<List<HostView>>> {
    let now = Instant::now();
    resource::list(&app, q.stale, |m| {
        let moves = move_counts(m);
        m.hosts().map(|h| view(&app, m, h, &moves, now)).collect()
    })
    .await
}

#[utoipa::path(get, path = "/v1/hosts/{id}", params(("id" = String, Path), ReadParams), tag = "hosts",
    responses((status = 200, body = HostView), (status = "4XX", body = ErrorBody)))]
pub async fn get_host(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> ApiResult<Response> {
    let now = Instant::now();
    resource::get(&app, q.stale, &id, |m| m.host(&id).map(|h| view(&app, m, h, &move_counts(m), now))).await
}

/// How many times a drain refused at commit (a racing placement took the room) is planned again.
const DRAIN_ATTEMPTS: usize = 3;

#[utoipa::path(post, path = "/v1/hosts/{id}/maintenance", params(("id" = String, Path)), request_body = HostMaintenance,
    tag = "hosts",
    description = "`enabled: true` drains the host: every VM placed there moves elsewhere under the cap (running ones \
        live, stopped ones cold), all planned together, or 409 naming the VMs that fit nowhere and why, with \
        nothing changed. Progress: `allocation.leaving` / `allocation.vms`. `enabled: false` returns a host in \
        maintenance to service; nothing moves back.",
    responses((status = 200, body = HostView), (status = "4XX", body = ErrorBody)))]
pub async fn maintenance(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<HostMaintenance>,
) -> ApiResult<Response> {
    let policy = app.config.placement;
    let mut attempt = 1;
    let applied = loop {
        let command = if request.enabled {
            let plans = app.state.read().plan_drain(&id, &policy)?;
            let moves = crate::moves::with_exports(&app, plans).await?;
            Command::SetHostMaintenance { id: id.clone(), enabled: true, moves }
        } else {
            Command::SetHostMaintenance { id: id.clone(), enabled: false, moves: Vec::new() }
        };
        match app.write(&caller, command).await {
            Err(e) if e.code == hci_shared::ErrorCode::NoCapacity && attempt < DRAIN_ATTEMPTS => attempt += 1,
            other => break other?,
        }
    };
    let Applied::Host(host) = applied else {
        return Err(ApiError::internal("a maintenance change answered something other than a host").into());
    };
    let shown = {
        let model = app.state.read();
        view(&app, &model, &host, &move_counts(&model), Instant::now())
    };
    Ok(super::error::with_etag(StatusCode::OK, host.revision, &shown))
}

#[utoipa::path(post, path = "/v1/hosts/join-tokens", request_body = JoinTokenCreate, tag = "hosts",
    responses((status = 201, body = JoinTokenCreated), (status = "4XX", body = ErrorBody)))]
pub async fn create_join_token(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<JoinTokenCreate>,
) -> ApiResult<Response> {
    hosts_validate::join_token_create(&req)?;
    let ttl = Duration::from_secs(req.ttl_seconds.unwrap_or(DEFAULT_JOIN_TOKEN_TTL_SECONDS));
    let site = match req.site {
        Some(site) => site,
        None => app.state.read().site().unwrap_or(&app.config.site).to_string(),
    };
    let token = format!("hci_join_{}", hex::encode(rand::random::<[u8; 24]>()));
    let expires_at = humantime::format_rfc3339_millis(SystemTime::now() + ttl).to_string();
    let command = Command::CreateJoinToken { sha256: sha256_hex(&token), site: site.clone(), expires_at };
    let expires_at = match app.write(&caller, command).await? {
        Applied::JoinToken { expires_at } => expires_at,
        _ => return Err(ApiError::internal("a join token command answered something else").into()),
    };
    Ok((StatusCode::CREATED, Json(JoinTokenCreated { token, expires_at, site })).into_response())
}

#[utoipa::path(post, path = "/v1/hosts/join", request_body = HostJoin, tag = "hosts",
    description = "Bearer: a join token (first join; issues the host's credential) or the host's credential.",
    responses((status = 200, body = HostJoined), (status = "4XX", body = ErrorBody)))]
pub async fn join_host(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Extension(principal): Extension<Principal>,
    ApiJson(spec): ApiJson<HostJoin>,
) -> ApiResult<Json<HostJoined>> {
    hosts_validate::host_join(&spec)?;
    let (auth, credential) = match principal {
        Principal::JoinToken(sha256) => {
            let credential = format!("hci_host_{}", hex::encode(rand::random::<[u8; 24]>()));
            (JoinAuth::Token { sha256 }, Some(credential))
        }
        Principal::Host { id, credential_sha256 } => {
            if id != spec.host_id {
                return Err(ApiError::new(
                    hci_shared::ErrorCode::Forbidden,
                    format!("this credential belongs to host '{id}', not '{}'", spec.host_id),
                )
                .into());
            }
            (JoinAuth::Credential { sha256: credential_sha256 }, None)
        }
        Principal::Operator => {
            return Err(ApiError::new(hci_shared::ErrorCode::Forbidden, "joining needs a join token").into())
        }
    };
    let new_credential_sha256 = credential.as_deref().map(sha256_hex);
    let host = match app.write(&caller, Command::JoinHost { auth, new_credential_sha256, spec }).await? {
        Applied::Host(host) => host,
        _ => return Err(ApiError::internal("a join command answered something other than a host").into()),
    };
    if let Some(term) = leading_term(&app) {
        app.leases.heard(term, &host.id, None, Instant::now());
    }
    tracing::info!(host = %host.id, issued_credential = credential.is_some(), "host joined");
    Ok(Json(HostJoined {
        host,
        credential,
        lease_ms: millis(app.leases.lease()),
        heartbeat_ms: millis(app.leases.heartbeat_interval()),
    }))
}

#[utoipa::path(post, path = "/v1/hosts/{id}/heartbeat", params(("id" = String, Path)), request_body = HostHeartbeat,
    tag = "hosts", description = "Bearer: the host's credential. Served by the leader; refreshes its lease in memory.",
    responses((status = 200, body = HeartbeatAck), (status = "4XX", body = ErrorBody)))]
pub async fn host_heartbeat(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiJson(beat): ApiJson<HostHeartbeat>,
) -> ApiResult<Json<HeartbeatAck>> {
    hosts_validate::heartbeat(&beat)?;
    let term = leading_term(&app).ok_or_else(|| {
        ApiError::unavailable(format!("member {} is not the leader; heartbeats go to the leader", app.id))
    })?;
    check_quorum_fresh(&app)?;
    let host = app.state.read().host(&id).cloned().ok_or_else(|| ApiError::not_found("host", &id))?;
    app.leases.heard(term, &id, Some(beat), Instant::now());
    let mut state = host.state;
    if state == HostState::Offline {
        app.leases.revived(term, Instant::now());
    }
    if state == HostState::Offline && app.leases.begin(&id, true) {
        let reason = format!("heartbeat received by member {}", app.id);
        state = propose(app.clone(), id.clone(), true, reason).await.unwrap_or(state);
    }
    Ok(Json(HeartbeatAck {
        state,
        desired_generation: host.desired_generation,
        lease_ms: millis(app.leases.lease()),
        heartbeat_ms: millis(app.leases.heartbeat_interval()),
    }))
}

/// An acknowledged heartbeat tells the agent it is in contact with the cluster, so it does not
/// fence its VMs. A leader cut off from its followers may not know yet that it was replaced, and
/// must not say so: it acknowledges only while a quorum acknowledged it within the election timeout
/// (no other leader can have been elected in that window: the followers that acknowledged it refuse
/// to vote until their own election timeout has passed).
fn check_quorum_fresh(app: &App) -> Result<(), ApiError> {
    let (since, voters) = {
        let metrics = app.raft.metrics();
        let m = metrics.borrow();
        (m.millis_since_quorum_ack, m.membership_config.membership().voter_ids().count())
    };
    match since {
        _ if voters <= 1 => Ok(()),
        Some(ms) if ms < app.config.election_timeout_ms => Ok(()),
        other => Err(ApiError::unavailable(format!(
            "member {} leads but no quorum acknowledged it for {} ms; heartbeat not acknowledged",
            app.id,
            other.map_or_else(|| "ever".to_string(), |ms| ms.to_string())
        ))),
    }
}

#[utoipa::path(get, path = "/v1/hosts/{id}/desired", params(("id" = String, Path), DesiredParams), tag = "hosts",
    description = "Long poll (served by the member asked): the host's desired state (`HostDesired`, \
        shared/src/agent.rs) as soon as its generation is greater than `after`, or 204 after `wait_ms`.",
    responses((status = 200, description = "the desired state, as JSON"), (status = 204, description = "nothing newer"),
        (status = "4XX", body = ErrorBody)))]
pub async fn host_desired(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DesiredParams>,
) -> ApiResult<Response> {
    let wait = hosts_validate::desired_params(&params)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
    // Subscribed before the first look, so a change in between is not missed.
    let mut changes =
        app.state.host_changes(&id).ok_or_else(|| ApiError::unavailable("this member is stopping; retry"))?;
    loop {
        let desired: Option<Option<HostDesired>> = {
            let model = app.state.read();
            model.host(&id).map(|h| {
                (h.desired_generation > params.after)
                    .then(|| model.host_desired_isolated(&id, app.config.fence_after_ms()))
                    .flatten()
            })
        };
        match desired {
            None => return Err(HttpError(ApiError::not_found("host", &id))),
            Some(Some(desired)) => return Ok(Json(desired).into_response()),
            Some(None) => {}
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ApiError::unavailable("this member is stopping; retry").into());
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}
