//! What every resource endpoint does the same way: run a command and answer the resource it produced
//! with its ETag, list a table, fetch one row or 404, delete and answer 204.
//!
//! Handlers stay one-liners over these, so that status codes and headers cannot drift between
//! resource kinds.

use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use hci_shared::api::List;
use hci_shared::command::{Applied, Command};
use hci_shared::hosts::{HostView, VmView};
use hci_shared::resources::{Tenant, Vm, Volume, Zone, ZonePolicy};
use hci_shared::ApiError;
use hci_state::Model;
use serde::Serialize;

use super::error::{with_etag, ApiResult, HttpError};
use crate::node::{App, Caller};

/// A resource the API answers with an ETag.
pub trait Resource: Serialize + Clone + Sized {
    /// The name used in messages (`tenant`, `zone policy`, ...).
    const KIND: &'static str;
    fn revision(&self) -> u64;
    /// The resource carried by an apply result, if it is of this kind.
    fn from_applied(applied: Applied) -> Option<Self>;
}

macro_rules! resource {
    ($ty:ty, $kind:literal, $variant:ident) => {
        impl Resource for $ty {
            const KIND: &'static str = $kind;
            fn revision(&self) -> u64 {
                self.revision
            }
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}

resource!(Tenant, "tenant", Tenant);
resource!(Zone, "zone", Zone);
resource!(ZonePolicy, "zone policy", ZonePolicy);
resource!(Volume, "volume", Volume);
resource!(Vm, "vm", Vm);

impl Resource for HostView {
    const KIND: &'static str = "host";
    fn revision(&self) -> u64 {
        self.host.revision
    }
    fn from_applied(applied: Applied) -> Option<Self> {
        match applied {
            Applied::Host(host) => Some(HostView { host, heartbeat: None, allocation: Default::default() }),
            _ => None,
        }
    }
}

impl Resource for VmView {
    const KIND: &'static str = "vm";
    fn revision(&self) -> u64 {
        self.vm.revision
    }
    fn from_applied(_: Applied) -> Option<Self> {
        None
    }
}

/// Commits `command` and answers the `R` it produced with `status` and its ETag.
pub async fn write<R: Resource>(
    app: &App,
    caller: &Caller,
    command: Command,
    status: StatusCode,
) -> ApiResult<Response> {
    let applied = app.write(caller, command).await?;
    let resource = R::from_applied(applied).ok_or_else(|| {
        HttpError(ApiError::internal(format!("state machine answered an unexpected result for a {} command", R::KIND)))
    })?;
    Ok(with_etag(status, resource.revision(), &resource))
}

/// Commits a delete and answers 204.
pub async fn delete(app: &App, caller: &Caller, command: Command) -> ApiResult<StatusCode> {
    app.write(caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers `{"items": [...]}` of what `select` picks from the model.
pub async fn list<R: Resource>(
    app: &App,
    stale: bool,
    select: impl FnOnce(&Model) -> Vec<R>,
) -> ApiResult<Json<List<R>>> {
    let items = app.read(stale, select).await?;
    Ok(Json(List { items }))
}

/// Answers the resource `find` returns with its ETag, or 404 naming `key`.
pub async fn get<R: Resource>(
    app: &App,
    stale: bool,
    key: &str,
    find: impl FnOnce(&Model) -> Option<R>,
) -> ApiResult<Response> {
    let resource = app.read(stale, find).await?.ok_or_else(|| ApiError::not_found(R::KIND, key))?;
    Ok(with_etag(StatusCode::OK, resource.revision(), &resource))
}
