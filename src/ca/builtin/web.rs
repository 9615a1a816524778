//! The built-in CA's public pages: the approval page reached from the
//! approver's email, and the CA certificates (AIA points here).
//!
//! Opening the link only shows the request; approving takes a POST, so mail
//! scanners that prefetch links cannot approve anything.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use html_escape::encode_text as esc;
use serde::Deserialize;

use super::{BuiltinCa, Decision, LedgerState, ID};
use crate::crypto::sha256;

pub fn router(ca: Arc<BuiltinCa>) -> Router {
    Router::new()
        .route(&format!("/ca/{ID}/root.pem"), get(root_pem))
        .route(&format!("/ca/{ID}/intermediate.pem"), get(intermediate_pem))
        .route(&format!("/ca/{ID}/intermediate.crt"), get(intermediate_der))
        .route(&format!("/ca/{ID}/intermediate.crl"), get(crl))
        .route(
            &format!("/ca/{ID}/approve/{{token}}"),
            get(show).post(decide),
        )
        .with_state(ca)
}

async fn root_pem(State(ca): State<Arc<BuiltinCa>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        ca.root_pem(),
    )
        .into_response()
}

async fn intermediate_pem(State(ca): State<Arc<BuiltinCa>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        ca.intermediate_pem(),
    )
        .into_response()
}

async fn intermediate_der(State(ca): State<Arc<BuiltinCa>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        ca.intermediate_der.clone(),
    )
        .into_response()
}

async fn crl(State(ca): State<Arc<BuiltinCa>>) -> Response {
    match ca.crl() {
        Ok(der) => ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response(),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "CRL unavailable",
            &esc(&e.to_string()),
        ),
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>\
body{{font-family:system-ui,sans-serif;background:#f4f6f8;color:#1f2933;margin:0}}\
main{{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 3px #0002}}\
h1{{font-size:1.4rem;margin-top:0}}dt{{font-weight:600;margin-top:.6rem}}dd{{margin:0}}\
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #888;cursor:pointer;margin-right:.6rem}}\
.approve{{background:#1a7f37;color:#fff;border-color:#1a7f37}}.note{{color:#52606d}}\
</style></head><body><main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title)
    );
    (status, Html(html)).into_response()
}

fn gone(state: LedgerState) -> Response {
    let what = match state {
        LedgerState::Issued => "approved; the certificate has been issued",
        LedgerState::Declined => "declined",
        LedgerState::Cancelled => "cancelled by the requester",
        LedgerState::Pending => "still pending",
    };
    page(
        StatusCode::GONE,
        "This request has already been decided",
        &format!("<p>This certificate request was {what}. The link cannot be used again.</p>"),
    )
}

async fn show(State(ca): State<Arc<BuiltinCa>>, Path(token): Path<String>) -> Response {
    let order = match ca
        .ledger
        .find_by_token_hash(&sha256(token.as_bytes()))
        .await
    {
        Ok(Some(o)) => o,
        Ok(None) => return unknown(),
        Err(e) => return unavailable(e),
    };
    if order.state != LedgerState::Pending {
        return gone(order.state);
    }
    if order
        .approval_expires_at
        .is_some_and(|t| t < time::OffsetDateTime::now_utc())
    {
        return expired();
    }
    let names: String = order
        .names
        .iter()
        .map(|n| format!("<li><code>{}</code></li>", esc(n)))
        .collect();
    let body = format!(
        "<p>{ca_name} has been asked to issue an SSL/TLS certificate. As an administrator of the \
domain, you decide whether it may.</p>\
<dl><dt>Names on the certificate</dt><dd><ul>{names}</ul></dd>\
<dt>Requested by</dt><dd>{requester}</dd>\
<dt>The certificate will be sent to</dt><dd>{admin} ({admin_name})</dd>\
<dt>Order</dt><dd><code>{order}</code></dd>\
<dt>Validity</dt><dd>{days} days</dd></dl>\
<form method=\"post\"><button class=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\
<button name=\"decision\" value=\"decline\">Decline</button></form>\
<p class=\"note\">Approve only if you expect this request. This link works once.</p>",
        ca_name = esc(&ca.config.name),
        requester = esc(order.requester.as_str()),
        admin = esc(order.admin_email.as_str()),
        admin_name = esc(&order.admin_name),
        order = esc(&order.desk_order_id),
        days = order.days.min(ca.config.max_days),
    );
    page(StatusCode::OK, "Approve a certificate request", &body)
}

#[derive(Deserialize)]
struct DecisionForm {
    decision: String,
}

async fn decide(
    State(ca): State<Arc<BuiltinCa>>,
    Path(token): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let approve = match form.decision.as_str() {
        "approve" => true,
        "decline" => false,
        _ => {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose approve or decline",
                "<p>The form must say <code>approve</code> or <code>decline</code>.</p>",
            )
        }
    };
    match ca.decide(&token, approve).await {
        Ok(Decision::Approved(meta)) => page(
            StatusCode::OK,
            "Approved",
            &format!(
                "<p>Thank you. The certificate has been issued (serial <code>{}</code>) and sent to \
the domain administrator.</p>",
                esc(&meta.serial)
            ),
        ),
        Ok(Decision::Declined) => page(
            StatusCode::OK,
            "Declined",
            "<p>The request has been declined. No certificate will be issued.</p>",
        ),
        Ok(Decision::AlreadyDecided(state)) => gone(state),
        Ok(Decision::Expired) => expired(),
        Ok(Decision::UnknownLink) => unknown(),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not decided yet",
            &format!("<p>The decision could not be recorded: {}. Please try again.</p>", esc(&e.to_string())),
        ),
    }
}

fn unknown() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Unknown approval link",
        "<p>This approval link is not valid. Check that it was copied whole.</p>",
    )
}

fn expired() -> Response {
    page(
        StatusCode::GONE,
        "This approval link has expired",
        "<p>Ask the requester to send the approval email again; it will carry a new link.</p>",
    )
}

fn unavailable(e: sqlx::Error) -> Response {
    tracing::error!(error = %e, "CA ledger unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "<p>Please try again in a moment.</p>",
    )
}
