//! The operator HTTP API (axum): routes, middleware order, and the unauthenticated endpoints.
//!
//! Request flow: metrics → (for `/v1`) forward-to-leader → authenticate → handler → `App::write`
//! (one Raft command) or `App::read` (linearizable unless `?stale=true`).

pub mod access;
pub mod cluster;
pub mod error;
pub mod hosts;
pub mod middleware;
pub mod misc;
pub mod openapi;
pub mod raft_rpc;
pub mod resource;
pub mod tenants;
pub mod vms;
pub mod volumes;
pub mod zones;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use hci_shared::ApiError;

use crate::node::{committed_index, App};
use crate::raft::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};

/// Raft messages can carry many entries or a snapshot chunk.
const RAFT_BODY_LIMIT: usize = 64 << 20;

pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/v1/cluster", get(cluster::get))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/:id", axum::routing::delete(cluster::remove_member))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/:name", get(tenants::get).put(tenants::update).delete(tenants::delete))
        .route("/v1/zones", post(zones::create).get(zones::list))
        .route("/v1/zones/:name", get(zones::get).delete(zones::delete))
        .route("/v1/zone-policies", post(zones::create_policy).get(zones::list_policies))
        .route("/v1/zone-policies/:id", get(zones::get_policy).delete(zones::delete_policy))
        .route("/v1/volumes", post(volumes::create).get(volumes::list))
        .route("/v1/volumes/:id", get(volumes::get).delete(volumes::delete))
        .route("/v1/volumes/:id/resize", post(volumes::resize))
        .route("/v1/volumes/:id/snapshot", post(volumes::snapshot))
        .route("/v1/volumes/:id/clone", post(volumes::clone))
        .route("/v1/vms", post(vms::create).get(vms::list))
        .route("/v1/vms/:id", get(vms::get).delete(vms::delete))
        .route("/v1/vms/:id/migrate", post(vms::migrate))
        .route("/v1/vms/:id/:action", post(vms::power))
        .route("/v1/hosts", get(hosts::list_hosts))
        .route("/v1/hosts/join-tokens", post(hosts::create_join_token))
        .route("/v1/hosts/join", post(hosts::join_host))
        .route("/v1/hosts/:id", get(hosts::get_host))
        .route("/v1/hosts/:id/heartbeat", post(hosts::host_heartbeat))
        .route("/v1/hosts/:id/maintenance", post(hosts::maintenance))
        .route("/v1/hosts/:id/desired", get(hosts::host_desired))
        .route("/v1/audit", get(misc::audit))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), middleware::authenticate))
        .layer(axum::middleware::from_fn_with_state(app.clone(), middleware::forward_to_leader));
    let raft = Router::new()
        .route(PATH_APPEND, post(raft_rpc::append))
        .route(PATH_VOTE, post(raft_rpc::vote))
        .route(PATH_SNAPSHOT, post(raft_rpc::snapshot))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], openapi::document()) }))
        .merge(v1)
        .merge(raft)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn(middleware::track))
        .layer(Extension(app.clone()))
        .with_state(app)
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    error::HttpError(ApiError::new(hci_shared::ErrorCode::NotFound, format!("no such endpoint: {}", uri.path())))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    {
        let metrics = app.raft.metrics();
        let m = metrics.borrow();
        let g = &app.metrics;
        g.raft_term.set(m.current_term as i64);
        g.raft_leader_id.set(m.current_leader.unwrap_or(0) as i64);
        g.raft_is_leader.set(i64::from(m.current_leader == Some(app.id)));
        g.raft_last_log_index.set(m.last_log_index.unwrap_or(0) as i64);
        g.raft_applied_index.set(m.last_applied.map_or(0, |l| l.index) as i64);
        g.raft_snapshot_index.set(m.snapshot.map_or(0, |l| l.index) as i64);
        g.raft_voters.set(m.membership_config.membership().voter_ids().count() as i64);
        g.raft_commit_index.set(committed_index(&app) as i64);
    }
    {
        use hci_shared::resources::HostState;
        let model = app.state.read();
        for (state, label) in [
            (HostState::Ready, "ready"),
            (HostState::Maintenance, "maintenance"),
            (HostState::Offline, "offline"),
            (HostState::Fenced, "fenced"),
        ] {
            let n = model.hosts().filter(|h| h.state == state).count();
            app.metrics.hosts.with_label_values(&[label]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], app.metrics.render())
}
