//! What the control plane's own answers get (the admin API, health, metrics, the docs page,
//! the edge's internal routes), and mock answers do not (those are exactly what the mock
//! defines, as at the edge):
//! - security headers (`nosniff`, no framing, no referrer, a restrictive CSP, HSTS);
//! - gzip or brotli for bodies over 1 KB when the client accepts them, unless it sends
//!   `x-no-compression`;
//! - a deadline, `REQUEST_TIMEOUT_MS`: a request still running then is a JSON 503 (and its
//!   transaction, dropped, rolls back);
//! - CORS for browser clients of the admin API, from `CORS_ALLOWED_ORIGINS` only.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;

/// The admin API's JSON needs nothing from a browser.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// Swagger UI: its own script and styles (inline ones included) and data: images.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

/// Security headers, compression and the deadline; CORS when `cors` is `Some`.
pub fn protect<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    csp: &'static str,
    timeout: Duration,
    cors: Option<CorsLayer>,
) -> Router<S> {
    let router = router
        .layer(axum::middleware::from_fn(move |request, next| deadline(timeout, request, next)))
        .layer(
            CompressionLayer::new()
                .compress_when(SizeAbove::new(1024).and(NotForContentType::GRPC)),
        )
        .layer(axum::middleware::map_request(honour_no_compression));
    let router = security_headers(router, csp);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

fn security_headers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    csp: &'static str,
) -> Router<S> {
    let headers: [(HeaderName, &'static str); 5] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, csp),
        // Ignored by browsers over plain HTTP; in production TLS ends at the ingress.
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"),
    ];
    headers.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)))
    })
}

/// `x-no-compression`: the client wants the body as is, whatever it accepts.
async fn honour_no_compression(mut request: Request) -> Request {
    if request.headers().contains_key("x-no-compression") {
        request.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    request
}

async fn deadline(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not finish within {} ms (REQUEST_TIMEOUT_MS)",
            timeout.as_millis()
        ))
        .into_response(),
    }
}

/// CORS for the admin API from `CORS_ALLOWED_ORIGINS` (`*` for any); `None` when empty.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}
