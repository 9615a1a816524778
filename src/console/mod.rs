//! `/console`: the web console, server-rendered, every asset embedded.
//!
//! Security › SSL › Orders lists the account's orders; "Send" in the Email
//! column opens a confirmation showing the administrator address given at
//! order time, and "Resend email" asks the order's CA to send the
//! fulfillment email again. Without JavaScript the same flow runs through a
//! confirmation page.

mod certs;
mod pages;
mod session;
mod views;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::service::{Desk, ServiceError};

#[derive(Clone)]
pub struct ConsoleState {
    pub desk: Arc<Desk>,
    pub throttle: Arc<session::LoginThrottle>,
    /// Mark cookies Secure: the desk is reached over https.
    pub secure_cookies: bool,
}

pub fn router(desk: Arc<Desk>, secure_cookies: bool) -> Router {
    let state = ConsoleState {
        desk,
        throttle: Arc::new(session::LoginThrottle::default()),
        secure_cookies,
    };
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/ssl/orders") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/ssl/orders") }),
        )
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/lang/{code}", get(pages::switch_language))
        .route("/console/ssl/orders", get(pages::orders))
        .route(
            "/console/ssl/orders/new",
            get(pages::new_order_form).post(pages::place_order),
        )
        .route("/console/ssl/orders/{id}", get(pages::order_detail))
        .route(
            "/console/ssl/orders/{id}/resend",
            get(pages::resend_confirm).post(pages::resend),
        )
        .route(
            "/console/ssl/orders/{id}/email-status",
            get(pages::email_status),
        )
        .route(
            "/console/ssl/orders/{id}/approval-email",
            post(pages::resend_approval),
        )
        .route("/console/ssl/orders/{id}/cancel", post(pages::cancel))
        .route("/console/csr/decode", post(pages::decode_csr))
        .route("/console/ssl/certificates", get(certs::list))
        .route(
            "/console/ssl/certificates/import",
            get(certs::import_form).post(certs::import),
        )
        .route("/console/ssl/certificates/{id}", get(certs::detail))
        .route(
            "/console/ssl/certificates/{id}/download/{part}",
            get(certs::download),
        )
        .route(
            "/console/ssl/certificates/{id}/key",
            post(certs::download_key),
        )
        .route(
            "/console/ssl/certificates/{id}/pkcs12",
            post(certs::download_pkcs12),
        )
        .route(
            "/console/ssl/certificates/{id}/replace",
            get(certs::replace_form).post(certs::replace),
        )
        .route(
            "/console/ssl/certificates/{id}/notes",
            post(certs::save_notes),
        )
        .route("/console/ssl/certificates/{id}/delete", post(certs::delete))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
        .route("/assets/certdesk.css", get(css))
        .route("/assets/console.js", get(js))
}

/// The console loads nothing from elsewhere and runs no inline script.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

const CSS: &str = include_str!("../../assets/certdesk.css");
const JS: &str = include_str!("../../assets/console.js");

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

pub(crate) fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Unauthenticated => StatusCode::UNAUTHORIZED,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::Conflict { .. } => StatusCode::CONFLICT,
        ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
