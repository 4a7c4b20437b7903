//! The one API error type mapped to HTTP, and extractors whose rejections use it.
//!
//! Every refusal leaves as `{"error": {"code", "message"}}` with the status its code implies; bad
//! JSON, bad query strings and bad headers are 400s naming what was wrong, never a 5xx.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hci_shared::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Wraps the shared [`ApiError`] so it can be turned into an HTTP response here.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.0.code == ErrorCode::Internal {
            tracing::error!(message = %self.0.message, "internal error");
        }
        let mut response = (status, Json(self.0.body())).into_response();
        if self.0.code == ErrorCode::Unavailable {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, HttpError>;

/// A JSON body whose every rejection is a 400 naming the field (or the syntax error).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(HttpError(json_rejection(rejection))),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    // axum's text is "Failed to deserialize the JSON body into the target type: <path>: <why>".
    let detail = text.split_once("target type: ").map(|(_, d)| d.to_string()).unwrap_or(text);
    let (field, why) = match &rejection {
        JsonRejection::JsonDataError(_) => match detail.split_once(": ") {
            Some((path, why)) if !path.contains(' ') && path != "." => (path.to_string(), why.to_string()),
            _ => ("body".to_string(), detail),
        },
        JsonRejection::MissingJsonContentType(_) => ("content-type".into(), "must be application/json".into()),
        _ => ("body".to_string(), detail),
    };
    ApiError::invalid(&field, why)
}

/// Query parameters whose rejection is a 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                let field = failing_parameter::<T>(parts.uri.query().unwrap_or_default());
                Err(HttpError(ApiError::invalid(field.as_deref().unwrap_or("query"), e.body_text())))
            }
            Err(e) => Err(HttpError(ApiError::invalid("query", e.body_text()))),
        }
    }
}

/// The parameter whose value does not parse (a bad number names no field in serde's message): the
/// first `key=value` that fails on its own for another reason than a missing field.
fn failing_parameter<T: DeserializeOwned>(query: &str) -> Option<String> {
    query.split('&').filter(|pair| !pair.is_empty()).find_map(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let uri: axum::http::Uri = format!("/?{pair}").parse().ok()?;
        match axum::extract::Query::<T>::try_from_uri(&uri) {
            Err(e) if !e.body_text().contains("missing field") => Some(key.to_string()),
            _ => None,
        }
    })
}

/// `?stale=true` on any GET.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Serve from this member's applied state without a leader round-trip.
    #[serde(default)]
    pub stale: bool,
}

/// The revision named by `If-Match` (`"12"`, `W/"12"` or `*` for any).
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<u64>);

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_if_match(&parts.headers).map(IfMatch).map_err(HttpError)
    }
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("if-match") else { return Ok(None) };
    let text = value.to_str().map_err(|_| ApiError::invalid("If-Match", "is not ASCII"))?.trim();
    if text == "*" {
        return Ok(None);
    }
    let unquoted = text.trim_start_matches("W/").trim_matches('"');
    unquoted
        .parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::invalid("If-Match", format!("'{text}' is not an ETag this API issued")))
}

/// A resource response with its `ETag`.
pub fn with_etag<T: Serialize>(status: StatusCode, revision: u64, body: &T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&hci_shared::resources::etag(revision)) {
        response.headers_mut().insert("etag", value);
    }
    response
}
