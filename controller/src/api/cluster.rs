//! `/v1/cluster`: who the members are, who leads, and membership changes (learner, then voter).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use hci_shared::api::{ClusterStatus, Member, MemberAdd};
use hci_shared::{validate, ApiError, ErrorBody};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::BasicNode;

use super::error::{ApiJson, ApiQuery, ApiResult, ReadParams};
use crate::node::App;
use crate::raft::NodeId;

/// How long adding a member may wait for it to catch up as a learner.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn status(app: &App) -> ClusterStatus {
    let metrics = app.raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let role = if m.current_leader == Some(*id) {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            Member { id: *id, addr: node.addr.clone(), role: role.to_string() }
        })
        .collect();
    ClusterStatus {
        site: app.state.read().site().unwrap_or(&app.config.site).to_string(),
        leader_id: m.current_leader,
        term: m.current_term,
        members,
        this_id: app.id,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
    }
}

#[utoipa::path(get, path = "/v1/cluster", params(ReadParams), tag = "cluster",
    responses((status = 200, body = ClusterStatus), (status = "4XX", body = ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, ApiQuery(q): ApiQuery<ReadParams>) -> ApiResult<Json<ClusterStatus>> {
    if !q.stale {
        app.linearizable().await?;
    }
    Ok(Json(status(&app)))
}

fn membership_error<E: std::fmt::Display>(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ctx: E,
) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
            ApiError::conflict(format!("{ctx}: another membership change is in progress ({p}); retry"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ApiError::conflict(format!("{ctx}: {c}")),
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            ApiError::unavailable(format!("{ctx}: this member lost leadership; retry"))
        }
        RaftError::Fatal(f) => ApiError::unavailable(format!("{ctx}: raft stopped: {f}")),
    }
}

#[utoipa::path(post, path = "/v1/cluster/members", request_body = MemberAdd, tag = "cluster",
    responses((status = 200, body = ClusterStatus), (status = "4XX", body = ErrorBody)))]
pub async fn add_member(
    State(app): State<Arc<App>>,
    ApiJson(req): ApiJson<MemberAdd>,
) -> ApiResult<Json<ClusterStatus>> {
    validate::member_add(&req)?;
    let (voters, known) = {
        let metrics = app.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let known = membership.get_node(&req.id).map(|n| n.addr.clone());
        (voters, known)
    };
    if voters.contains(&req.id) {
        return Err(ApiError::conflict(format!("member {} is already a voter", req.id)).into());
    }
    if let Some(addr) = known.filter(|a| a != &req.addr) {
        return Err(ApiError::invalid("addr", format!("member {} is already known at {addr}", req.id)).into());
    }
    let node = BasicNode { addr: req.addr.clone() };
    match tokio::time::timeout(CATCH_UP_TIMEOUT, app.raft.add_learner(req.id, node, true)).await {
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "member {} at {} did not catch up within {}s; it stays a learner (is it running?)",
                req.id,
                req.addr,
                CATCH_UP_TIMEOUT.as_secs()
            ))
            .into())
        }
        Ok(r) => {
            r.map_err(|e| membership_error(e, format!("adding member {} as learner", req.id)))?;
        }
    }
    let mut new_voters = voters;
    new_voters.insert(req.id);
    app.raft
        .change_membership(new_voters, false)
        .await
        .map_err(|e| membership_error(e, format!("promoting member {} to voter", req.id)))?;
    Ok(Json(status(&app)))
}

#[utoipa::path(delete, path = "/v1/cluster/members/{id}", params(("id" = u64, Path)), tag = "cluster",
    responses((status = 200, body = ClusterStatus), (status = "4XX", body = ErrorBody)))]
pub async fn remove_member(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Json<ClusterStatus>> {
    let id: NodeId = id.parse().map_err(|_| ApiError::invalid("id", format!("'{id}' is not a member id")))?;
    let voters: BTreeSet<NodeId> = {
        let metrics = app.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ApiError::not_found("member", &id.to_string()).into());
        }
        membership.voter_ids().collect()
    };
    let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    if remaining.is_empty() {
        return Err(ApiError::conflict(format!("member {id} is the last voter; a cluster cannot remove it")).into());
    }
    app.raft
        .change_membership(remaining, false)
        .await
        .map_err(|e| membership_error(e, format!("removing member {id}")))?;
    Ok(Json(status(&app)))
}
