//! The built-in CA's public pages: the approval page reached from the
//! approver's email, and the CA certificates (AIA points here).
//!
//! Opening the link only shows the request; approving takes a POST, so mail
//! scanners that prefetch links cannot approve anything.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use html_escape::encode_text as esc;
use serde::Deserialize;

use super::{BuiltinCa, Decision, LedgerOrder, LedgerState, ID};
use crate::crypto::sha256;
use crate::i18n::{t, t_args, Lang};

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
        Err(e) => {
            tracing::error!(error = %e, "CRL unavailable");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// A page styled like the console (its stylesheet, no inline style or
/// script), in `lang`.
fn page(lang: Lang, status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · certdesk</title><link rel=\"stylesheet\" href=\"/assets/certdesk.css\"></head>\
<body><header class=\"topbar\"><span class=\"brand\">cert<span>desk</span></span></header>\
<main><section class=\"card narrow approval\"><h1>{title}</h1>{body}</section></main></body></html>",
        lang = lang.as_str(),
        title = esc(title)
    );
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn message(lang: Lang, status: StatusCode, title: &str, body: &str) -> Response {
    page(
        lang,
        status,
        &t(lang, title),
        &format!("<p id=\"ca-message\">{}</p>", esc(&t(lang, body))),
    )
}

fn gone(lang: Lang, state: LedgerState) -> Response {
    let body = match state {
        LedgerState::Issued | LedgerState::Pending => "ca-decided-issued",
        LedgerState::Declined => "ca-decided-declined",
        LedgerState::Cancelled => "ca-decided-cancelled",
    };
    message(lang, StatusCode::GONE, "ca-decided-title", body)
}

fn order_lang(order: &LedgerOrder) -> Lang {
    Lang::parse(&order.language).unwrap_or_default()
}

fn browser_lang(headers: &HeaderMap) -> Lang {
    crate::i18n::negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

async fn show(
    State(ca): State<Arc<BuiltinCa>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let order = match ca
        .ledger
        .find_by_token_hash(&sha256(token.as_bytes()))
        .await
    {
        Ok(Some(o)) => o,
        Ok(None) => return unknown(browser_lang(&headers)),
        Err(e) => return unavailable(browser_lang(&headers), e),
    };
    let lang = order_lang(&order);
    if order.state != LedgerState::Pending {
        return gone(lang, order.state);
    }
    if order
        .approval_expires_at
        .is_some_and(|t| t < time::OffsetDateTime::now_utc())
    {
        return message(
            lang,
            StatusCode::GONE,
            "ca-expired-title",
            "ca-expired-body",
        );
    }
    let names: String = order
        .names
        .iter()
        .map(|n| format!("<li><code>{}</code></li>", esc(n)))
        .collect();
    let days = order.days.min(ca.config.max_days).to_string();
    let body = format!(
        "<p>{intro}</p>\
<dl class=\"facts\"><dt>{t_names}</dt><dd><ul class=\"names\" id=\"ca-names\">{names}</ul></dd>\
<dt>{t_requester}</dt><dd id=\"ca-requester\">{requester}</dd>\
<dt>{t_sent_to}</dt><dd>{admin_name} &lt;{admin}&gt;</dd>\
<dt>{t_order}</dt><dd><code>{order}</code></dd>\
<dt>{t_validity}</dt><dd>{validity}</dd></dl>\
<form method=\"post\" class=\"actions\"><button class=\"primary\" name=\"decision\" value=\"approve\" id=\"approve\">{approve}</button>\
<button name=\"decision\" value=\"decline\" id=\"decline\">{decline}</button></form>\
<p class=\"muted small\">{note}</p>",
        intro = esc(&t_args(lang, "ca-approve-intro", &[("ca", &ca.config.name)])),
        t_names = esc(&t(lang, "ca-names")),
        t_requester = esc(&t(lang, "ca-requested-by")),
        t_sent_to = esc(&t(lang, "ca-sent-to")),
        t_order = esc(&t(lang, "ca-order")),
        t_validity = esc(&t(lang, "ca-validity")),
        requester = esc(order.requester.as_str()),
        admin = esc(order.admin_email.as_str()),
        admin_name = esc(&order.admin_name),
        order = esc(&order.desk_order_id),
        validity = esc(&t_args(lang, "ca-days", &[("days", &days)])),
        approve = esc(&t(lang, "ca-approve")),
        decline = esc(&t(lang, "ca-decline")),
        note = esc(&t(lang, "ca-note")),
    );
    page(lang, StatusCode::OK, &t(lang, "ca-approve-title"), &body)
}

#[derive(Deserialize)]
struct DecisionForm {
    decision: String,
}

async fn decide(
    State(ca): State<Arc<BuiltinCa>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
) -> Response {
    // The order's language, when the link is known.
    let lang = match ca
        .ledger
        .find_by_token_hash(&sha256(token.as_bytes()))
        .await
    {
        Ok(Some(o)) => order_lang(&o),
        _ => browser_lang(&headers),
    };
    let approve = match form.decision.as_str() {
        "approve" => true,
        "decline" => false,
        _ => {
            return message(
                lang,
                StatusCode::UNPROCESSABLE_ENTITY,
                "ca-choose-title",
                "ca-choose-body",
            )
        }
    };
    match ca.decide(&token, approve).await {
        Ok(Decision::Approved(meta)) => page(
            lang,
            StatusCode::OK,
            &t(lang, "ca-approved-title"),
            &format!(
                "<p id=\"ca-message\">{}</p>",
                esc(&t_args(
                    lang,
                    "ca-approved-body",
                    &[("serial", &meta.serial)]
                ))
            ),
        ),
        Ok(Decision::Declined) => message(
            lang,
            StatusCode::OK,
            "ca-declined-title",
            "ca-declined-body",
        ),
        Ok(Decision::AlreadyDecided(state)) => gone(lang, state),
        Ok(Decision::Expired) => message(
            lang,
            StatusCode::GONE,
            "ca-expired-title",
            "ca-expired-body",
        ),
        Ok(Decision::UnknownLink) => unknown(lang),
        Err(e) => {
            tracing::warn!(error = %e, "an approval could not be recorded");
            message(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                "ca-unavailable-title",
                "ca-unavailable-body",
            )
        }
    }
}

fn unknown(lang: Lang) -> Response {
    message(
        lang,
        StatusCode::NOT_FOUND,
        "ca-unknown-title",
        "ca-unknown-body",
    )
}

fn unavailable(lang: Lang, e: super::ledger::LedgerError) -> Response {
    tracing::error!(error = %e, "CA ledger unavailable");
    message(
        lang,
        StatusCode::SERVICE_UNAVAILABLE,
        "ca-unavailable-title",
        "ca-unavailable-body",
    )
}
