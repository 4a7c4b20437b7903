//! Who a bearer token is, and what each kind of caller may reach.
//!
//! Three kinds of token reach `/v1`: operator tokens (`token/<sha256>`), host credentials issued by
//! a join (`hostcred/<sha256>`), and single-use join tokens (`jointoken/<sha256>`). It exists so that
//! the allow-list lives in one place and defaults to refusal: an agent's credential can never reach
//! an operator endpoint, and an operator token cannot impersonate a host.

use axum::http::Method;
use hci_shared::{ApiError, ErrorCode};
use hci_state::Model;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator token (today every operator token is an administrator).
    Operator,
    /// A host's own credential (and its SHA-256, which a re-join proves again at commit time).
    Host { id: String, credential_sha256: String },
    /// A join token, by its SHA-256 (whether it is still usable is decided when the join commits).
    JoinToken(String),
}

impl Principal {
    /// The principal of a token hash, and the caller name the audit log records for it.
    pub fn of_token(model: &Model, sha256_hex: &str) -> Option<(Principal, String)> {
        if let Some(name) = model.caller_for_token(sha256_hex) {
            return Some((Principal::Operator, name.to_string()));
        }
        if let Some(host) = model.host_for_credential(sha256_hex) {
            let principal = Principal::Host { id: host.to_string(), credential_sha256: sha256_hex.to_string() };
            return Some((principal, format!("host:{host}")));
        }
        model.join_token(sha256_hex).map(|_| {
            let short = sha256_hex.get(..12).unwrap_or(sha256_hex);
            (Principal::JoinToken(sha256_hex.to_string()), format!("join-token:{short}"))
        })
    }
}

fn forbidden(why: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, why)
}

/// What an agent calls: `POST /v1/hosts/join`, `POST /v1/hosts/{id}/heartbeat`,
/// `GET /v1/hosts/{id}/desired`. `Some((host id or None for join, endpoint))`.
fn agent_endpoint<'p>(method: &Method, path: &'p str) -> Option<(Option<&'p str>, &'static str)> {
    let rest = path.strip_prefix("/v1/hosts/")?;
    if rest == "join" && method == Method::POST {
        return Some((None, "join"));
    }
    let (id, action) = rest.split_once('/')?;
    match (method, action) {
        (&Method::POST, "heartbeat") => Some((Some(id), "heartbeat")),
        (&Method::GET, "desired") => Some((Some(id), "desired")),
        _ => None,
    }
}

/// Refuses (403) a request this principal may not make.
pub fn check(principal: &Principal, method: &Method, path: &str) -> Result<(), ApiError> {
    let endpoint = agent_endpoint(method, path);
    match principal {
        Principal::Operator => match endpoint {
            Some((_, "join")) => Err(forbidden(
                "joining needs a join token (POST /v1/hosts/join-tokens) or the host's own credential, not an operator token",
            )),
            Some((_, "heartbeat")) => Err(forbidden("heartbeats come from the host's agent, with its own credential")),
            _ => Ok(()),
        },
        Principal::JoinToken(_) => match endpoint {
            Some((_, "join")) => Ok(()),
            _ => Err(forbidden("a join token is only good for POST /v1/hosts/join")),
        },
        Principal::Host { id: host, .. } => match endpoint {
            Some((None, _)) => Ok(()),
            Some((Some(id), _)) if id == host => Ok(()),
            Some((Some(id), _)) => Err(forbidden(format!("this credential belongs to host '{host}', not '{id}'"))),
            None => Err(forbidden(format!(
                "a host credential (host '{host}') may only join, send heartbeats and read its own desired state"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list() {
        let op = Principal::Operator;
        let host = Principal::Host { id: "h1".into(), credential_sha256: "cd".into() };
        let join = Principal::JoinToken("ab".into());
        let cases: &[(&Principal, Method, &str, bool)] = &[
            (&op, Method::GET, "/v1/tenants", true),
            (&op, Method::POST, "/v1/hosts/join-tokens", true),
            (&op, Method::GET, "/v1/hosts/h1/desired", true),
            (&op, Method::POST, "/v1/hosts/join", false),
            (&op, Method::POST, "/v1/hosts/h1/heartbeat", false),
            (&join, Method::POST, "/v1/hosts/join", true),
            (&join, Method::GET, "/v1/hosts", false),
            (&join, Method::POST, "/v1/hosts/h1/heartbeat", false),
            (&host, Method::POST, "/v1/hosts/join", true),
            (&host, Method::POST, "/v1/hosts/h1/heartbeat", true),
            (&host, Method::GET, "/v1/hosts/h1/desired", true),
            (&host, Method::POST, "/v1/hosts/h2/heartbeat", false),
            (&host, Method::GET, "/v1/hosts/h2/desired", false),
            (&host, Method::GET, "/v1/hosts", false),
            (&host, Method::GET, "/v1/hosts/h1", false),
            (&host, Method::POST, "/v1/hosts/join-tokens", false),
            (&host, Method::DELETE, "/v1/tenants/x", false),
        ];
        for (principal, method, path, allowed) in cases {
            let result = check(principal, method, path);
            assert_eq!(result.is_ok(), *allowed, "{principal:?} {method} {path}: {result:?}");
            if let Err(e) = result {
                assert_eq!(e.code, ErrorCode::Forbidden);
            }
        }
    }
}
