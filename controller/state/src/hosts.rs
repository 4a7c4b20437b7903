//! Host commands: an agent joining (or re-joining) the cluster, and the leader's liveness verdicts.
//!
//! It exists so a host's registration, its token's consumption and its credential are one atomic
//! decision, and so only state *transitions* reach the log (ready ↔ offline), never heartbeats. It
//! must never move a host out of maintenance or fenced: those belong to operators and fencing.
//! A join that changes a host also moves its desired generation (and, for a new host or a new agent
//! URL, every other host's of the site), since each feed lists the site's other agents as peers.

use hci_shared::command::{Applied, JoinAuth};
use hci_shared::hosts::HostJoin;
use hci_shared::resources::{Host, HostState};
use hci_shared::{hosts_validate, ApiError, ErrorCode};

use crate::apply::{Ctx, Decision, Outcome};
use crate::change::Change;
use crate::cluster::check_sha256_hex;
use crate::desired::touch;
use crate::join_tokens::{credential_host, usable_token, HostCredential, JoinTokenRecord};
use crate::model::Model;

/// Longest state reason kept.
const MAX_REASON: usize = 256;

fn updated(current: &Host, spec: &HostJoin, ctx: &Ctx<'_>) -> Host {
    let mut host = current.clone();
    host.arch = spec.arch.clone();
    host.agent_url = spec.agent_url.clone();
    host.inventory = spec.inventory.clone();
    if host.state == HostState::Offline {
        host.state = HostState::Ready;
        host.state_reason = "re-joined".to_string();
        host.state_since = ctx.at.to_string();
    }
    host
}

fn registered(spec: &HostJoin, ctx: &Ctx<'_>) -> Host {
    Host {
        id: spec.host_id.clone(),
        name: spec.host_id.clone(),
        site: spec.site.clone(),
        arch: spec.arch.clone(),
        state: HostState::Ready,
        state_reason: "joined".to_string(),
        state_since: ctx.at.to_string(),
        agent_url: spec.agent_url.clone(),
        inventory: spec.inventory.clone(),
        joined_at: ctx.at.to_string(),
        desired_generation: ctx.index,
        revision: ctx.index,
    }
}

/// The host after this join, and whether anything changed.
fn host_after_join(model: &Model, spec: &HostJoin, ctx: &Ctx<'_>) -> Result<(Host, bool), ApiError> {
    match model.hosts.get(&spec.host_id) {
        Some(current) => {
            if current.site != spec.site {
                return Err(ApiError::invalid(
                    "site",
                    format!("host '{}' is in site '{}'; a host cannot change site", current.id, current.site),
                ));
            }
            let mut host = updated(current, spec, ctx);
            let changed = host != *current;
            if changed {
                host.revision = ctx.index;
            }
            Ok((host, changed))
        }
        None => Ok((registered(spec, ctx), true)),
    }
}

pub(crate) fn join(
    model: &Model,
    ctx: &Ctx<'_>,
    auth: &JoinAuth,
    new_credential: Option<&str>,
    spec: &HostJoin,
) -> Decision {
    let mut changes = Vec::new();
    match auth {
        JoinAuth::Token { sha256 } => {
            let token = usable_token(model, ctx, sha256)?;
            hosts_validate::host_join(spec)?;
            if spec.site != token.site {
                return Err(ApiError::invalid("site", format!("the join token is for site '{}'", token.site)));
            }
            let credential =
                new_credential.ok_or_else(|| ApiError::invalid("new_credential_sha256", "a token join issues one"))?;
            check_sha256_hex("new_credential_sha256", credential)?;
            if model.host_credentials.contains_key(credential) {
                return Err(ApiError::conflict("this host credential already exists"));
            }
            let used = JoinTokenRecord {
                used_by: Some(spec.host_id.clone()),
                used_at: Some(ctx.at.to_string()),
                ..token.clone()
            };
            changes.push(Change::PutJoinToken { sha256_hex: sha256.clone(), record: used });
            // A token join re-enrols the host (e.g. after its disk was replaced): its old credentials stop.
            for (hash, old) in &model.host_credentials {
                if old.host_id == spec.host_id {
                    changes.push(Change::DeleteHostCredential(hash.clone()));
                }
            }
            let record = HostCredential { host_id: spec.host_id.clone(), issued_at: ctx.at.to_string() };
            changes.push(Change::PutHostCredential { sha256_hex: credential.to_string(), record });
        }
        JoinAuth::Credential { sha256 } => {
            let owner = credential_host(model, sha256)?;
            if owner != spec.host_id {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this credential belongs to host '{owner}', not '{}'", spec.host_id),
                ));
            }
            hosts_validate::host_join(spec)?;
            if new_credential.is_some() {
                return Err(ApiError::invalid("new_credential_sha256", "only a token join issues a credential"));
            }
        }
    }
    let (mut host, changed) = host_after_join(model, spec, ctx)?;
    if changed {
        let before = model.hosts.get(&host.id);
        // Its own feed changes when its pools do (which are shared decides which VMs it fences);
        // a new host, or a new agent URL, changes every other host's peers.
        let pools =
            |h: &Host| h.inventory.pools.iter().map(|p| (p.name.clone(), p.backend.clone())).collect::<Vec<_>>();
        if before.is_none_or(|before| pools(before) != pools(&host)) {
            host.desired_generation = ctx.index;
        }
        // A new host, a new agent URL or a new underlay address changes every other host's peers
        // or VXLAN fabric.
        let underlay_moved = before.is_none_or(|before| before.inventory.underlay_ip != host.inventory.underlay_ip);
        if underlay_moved {
            host.desired_generation = ctx.index;
        }
        if underlay_moved || before.is_none_or(|before| before.agent_url != host.agent_url) {
            let others = model.hosts.values().filter(|h| h.id != host.id && h.site == host.site);
            changes.extend(touch(model, ctx, others.map(|h| h.id.as_str())));
        }
        changes.push(Change::PutHost(host.clone()));
    }
    Ok(Outcome::new(Applied::Host(host), changes))
}

pub(crate) fn set_liveness(model: &Model, ctx: &Ctx<'_>, id: &str, alive: bool, reason: &str) -> Decision {
    let current = model.hosts.get(id).ok_or_else(|| ApiError::not_found("host", id))?;
    if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            format!("must be at most {MAX_REASON} characters, no control characters"),
        ));
    }
    let next = match (current.state, alive) {
        (HostState::Offline, true) => HostState::Ready,
        (HostState::Ready, false) => HostState::Offline,
        // Already there, or in maintenance / fenced: liveness does not move those.
        _ => return Ok(Outcome::new(Applied::Host(current.clone()), Vec::new())),
    };
    let mut host = current.clone();
    host.state = next;
    host.state_reason = reason.to_string();
    host.state_since = ctx.at.to_string();
    host.revision = ctx.index;
    Ok(Outcome::new(Applied::Host(host.clone()), vec![Change::PutHost(host)]))
}
