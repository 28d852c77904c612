//! The HTTP layer's one error type. Client errors become
//! `{"error": {"code", "message", "field"?}}` with their 4xx status; anything unexpected is
//! logged once, here, with its cause chain and answered as an opaque 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read at all (malformed JSON, a bad query string).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 422: the request was read but a field is invalid.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 401: a credential is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but the role is too small.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 405.
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    /// 409: a uniqueness rule or a concurrent change.
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    /// 413.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// 429: over a rate limit; the middleware adds `Retry-After` and `X-RateLimit-*`.
    #[error("{0}")]
    RateLimited(String),
    /// 503: the request could not be finished in time, or a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// 502: a dependency (the edge) refused or failed; the message says how.
    #[error("{0}")]
    BadGateway(String),
    /// 500: never shown to the client beyond its code.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Every error's body: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `invalid_field`, `not_found`, `conflict`, ….
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The offending input, by its path (`responses[0].status`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<edgemock_shared::Error> for ApiError {
    fn from(e: edgemock_shared::Error) -> Self {
        Self::Invalid { field: e.field, message: e.message }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return Self::Conflict { field: None, message: "that already exists".to_owned() };
        }
        Self::Internal(anyhow::Error::new(e).context("database error"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code, None),
            Self::Invalid { field, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field.clone()))
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            Self::Conflict { field, .. } => (StatusCode::CONFLICT, "conflict", field.clone()),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "upstream_failed", None),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "unexpected error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let message = match &self {
            Self::Internal(_) => "an unexpected error occurred; it has been logged".to_owned(),
            Self::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let body = ErrorBody { error: ErrorDetail { code, message, field } };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
