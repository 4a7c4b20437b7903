//! The single API error type and its wire body, shared by the controller (which produces it) and
//! `hcictl` (which prints it).
//!
//! Every refusal carries a stable snake_case code, a human message naming the field or constraint,
//! and the HTTP status it maps to. The state machine produces the same type, so a refusal decided at
//! apply time reaches the operator unchanged.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of refusal this is; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a field is malformed or names something that does not exist.
    InvalidInput,
    /// 401: missing or unknown bearer token.
    Unauthorized,
    /// 403: the token is valid but may not do this.
    Forbidden,
    /// 404: the resource in the path does not exist.
    NotFound,
    /// 409: the request conflicts with current state (name taken, in use, overlap).
    Conflict,
    /// 409: no capacity or quota left.
    NoCapacity,
    /// 405: the endpoint exists but not with this method.
    MethodNotAllowed,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge,
    /// 412: `If-Match` did not match the resource's current ETag.
    PreconditionFailed,
    /// 503: no leader or no quorum right now; retry.
    Unavailable,
    /// 500: a bug or a storage failure; never used for bad input.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::NoCapacity => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoCapacity => "no_capacity",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refusal: code + message. `field` names the offending input field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, ToSchema)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }
    /// 400 naming the field: the message always starts with the field name.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self { code: ErrorCode::InvalidInput, message: format!("{field}: {why}"), field: Some(field.to_string()) }
    }
    pub fn not_found(kind: &str, key: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{kind} '{key}' does not exist"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn no_capacity(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NoCapacity, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn precondition_failed(current_etag: &str) -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            format!("If-Match does not match the current ETag {current_etag}; re-read the resource and retry"),
        )
    }
    /// The code that goes with an HTTP status produced outside our handlers (framework rejections).
    pub fn code_for_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            412 => ErrorCode::PreconditionFailed,
            413 => ErrorCode::PayloadTooLarge,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::InvalidInput,
            _ => ErrorCode::Internal,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.as_str().to_string(), message: self.message.clone() } }
    }
}

/// The JSON body of every non-2xx response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_input`, `conflict`, `no_capacity`.
    pub code: String,
    /// Human text naming the field or the constraint.
    pub message: String,
}
