//! The member-to-member Raft endpoints: decode, hand to openraft, encode its answer.
//!
//! Bodies use the project codec. A body that does not decode is a 400 and never reaches Raft.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hci_shared::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::App;

#[allow(clippy::result_large_err)] // the Err is the ready-made 400 response
fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    codec::decode(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable raft message: {e}")).into_response())
}

fn encode<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding raft answer: {e}")).into_response(),
    }
}

pub async fn append(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => encode(&app.raft.append_entries(req).await),
        Err(r) => r,
    }
}

pub async fn vote(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => encode(&app.raft.vote(req).await),
        Err(r) => r,
    }
}

pub async fn snapshot(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => encode(&app.raft.install_snapshot(req).await),
        Err(r) => r,
    }
}
