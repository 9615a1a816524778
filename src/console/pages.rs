//! Console handlers. Each one calls the same `service` functions as the API;
//! none touches the database directly.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::session::{self, ConsoleUser, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use super::views::*;
use super::ConsoleState;
use crate::crypto::{random_token, sha256};
use crate::domain::order::{EmailKind, EmailRequest, EmailRequestState, Order, OrderState};
use crate::i18n::{self, Lang};
use crate::service::fulfillment::human_duration;
use crate::service::orders::{ListQuery, OrderInput};
use crate::service::{accounts, ServiceError};

const PAGE_SIZE: u32 = 25;

pub(super) fn chrome(user: &ConsoleUser, path: &str) -> Chrome {
    Chrome {
        lang: user.lang,
        user_email: Some(user.actor.email.to_string()),
        csrf: user.csrf.clone(),
        path: path.to_string(),
        can_order: user.actor.role.can_order(),
    }
}

pub(super) fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => i18n::t(lang, "error-not-found"),
        StatusCode::FORBIDDEN => i18n::t(lang, "error-forbidden"),
        _ => i18n::t(lang, "error-title"),
    };
    let page = ErrorPage {
        c: Chrome {
            lang,
            user_email: None,
            csrf: String::new(),
            path: "/console".into(),
            can_order: false,
        },
        title,
        message: message.to_string(),
    };
    (status, render(page)).into_response()
}

/// A service error as a page, in the user's language where the desk has
/// words of its own (not found, forbidden), else the service's message.
pub(super) fn service_error_page(user: &ConsoleUser, e: ServiceError) -> Response {
    let lang = user.lang;
    match e {
        ServiceError::NotFound(what) => error_page(
            lang,
            StatusCode::NOT_FOUND,
            &i18n::t(
                lang,
                if what == "certificate" {
                    "error-certificate-not-found"
                } else {
                    "error-order-not-found"
                },
            ),
        ),
        ServiceError::Forbidden(_) => {
            error_page(lang, StatusCode::FORBIDDEN, &i18n::t(lang, "error-viewer"))
        }
        ServiceError::Conflict { message, .. } => error_page(lang, StatusCode::CONFLICT, &message),
        ServiceError::RateLimited {
            retry_after_secs, ..
        } => error_page(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            &rate_limited_text(lang, retry_after_secs),
        ),
        ServiceError::Invalid { message, .. } => {
            error_page(lang, StatusCode::UNPROCESSABLE_ENTITY, &message)
        }
        ServiceError::Unavailable(m) => error_page(lang, StatusCode::SERVICE_UNAVAILABLE, &m),
        ServiceError::Unauthenticated => Redirect::to("/console/login").into_response(),
        ServiceError::Internal(_) => error_page(
            lang,
            StatusCode::INTERNAL_SERVER_ERROR,
            &i18n::t(lang, "error-internal"),
        ),
    }
}

fn rate_limited_text(lang: Lang, secs: u64) -> String {
    let when = (OffsetDateTime::now_utc() + time::Duration::seconds(secs as i64))
        .format(&time::macros::format_description!("[hour]:[minute] UTC"))
        .unwrap_or_default();
    i18n::t_args(
        lang,
        "resend-rate-limited",
        &[("wait", &human_duration(secs)), ("time", &when)],
    )
}

pub(super) fn date(t: OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

pub(super) fn datetime(t: OffsetDateTime) -> String {
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_else(|_| t.format(&Rfc3339).unwrap_or_default())
}

fn state_label(lang: Lang, s: OrderState) -> String {
    i18n::t(lang, &format!("state-{}", s.as_str()))
}

fn email_state(lang: Lang, r: &EmailRequest) -> (String, String) {
    let label = i18n::t(lang, &format!("email-state-{}", r.state.as_str()));
    (label, format!("email-{}", r.state.as_str()))
}

pub(super) fn form_value(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

// ---------------------------------------------------------------- sign-in

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only paths inside the console: never an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console/ssl/orders".into(),
    }
}

fn login_page(
    lang: Lang,
    email: &str,
    error: Option<String>,
    next: &str,
    secure: bool,
) -> Response {
    let token = random_token(24);
    let page = LoginPage {
        c: Chrome {
            lang,
            user_email: None,
            csrf: String::new(),
            path: "/console/login".into(),
            can_order: false,
        },
        title: i18n::t(lang, "login-title"),
        email: email.to_string(),
        error: error.clone(),
        next: next.to_string(),
        login_csrf: token.clone(),
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(LOGIN_CSRF_COOKIE, &token, 3600, secure),
        )],
        render(page),
    )
        .into_response()
}

pub async fn login_form(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_page(
        session::language(&headers),
        "",
        None,
        &safe_next(q.next.as_deref()),
        st.secure_cookies,
    )
}

pub async fn login(State(st): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = session::language(&headers);
    let f = form_value(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let next = safe_next(f.get("next").map(String::as_str));
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_token(get("csrf"), &expected) {
        return error_page(lang, StatusCode::FORBIDDEN, &i18n::t(lang, "error-csrf"));
    }
    let email = get("email").trim().to_string();
    let delay = st.throttle.delay(&email);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match accounts::verify_password(st.desk.store.as_ref(), &email, get("password")).await {
        Ok(Some(user)) => {
            st.throttle.succeeded(&email);
            let token = random_token(32);
            let csrf = random_token(32);
            let expires = OffsetDateTime::now_utc() + time::Duration::hours(session::SESSION_HOURS);
            if let Err(e) = st
                .desk
                .store
                .create_session(&sha256(token.as_bytes()), &user.id, &csrf, expires)
                .await
            {
                tracing::error!(error = %e, "cannot create a session");
                return error_page(
                    lang,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &i18n::t(lang, "error-internal"),
                );
            }
            let cookie = session::set_cookie(
                SESSION_COOKIE,
                &token,
                session::SESSION_HOURS * 3600,
                st.secure_cookies,
            );
            (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, next)],
            )
                .into_response()
        }
        Ok(None) => {
            st.throttle.failed(&email);
            // One message for a wrong address and a wrong password alike.
            login_page(
                lang,
                &email,
                Some(i18n::t(lang, "login-failed")),
                &next,
                st.secure_cookies,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            error_page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                &i18n::t(lang, "error-internal"),
            )
        }
    }
}

pub async fn logout(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = user.checked_form(&headers, &body) {
        return r.into_response();
    }
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        let _ = st.desk.end_session(&token).await;
    }
    let clear = session::set_cookie(SESSION_COOKIE, "", 0, st.secure_cookies);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear),
            (header::LOCATION, "/console/login".to_string()),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LangQuery {
    back: Option<String>,
}

pub async fn switch_language(
    State(st): State<ConsoleState>,
    Path(code): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::parse(&code).unwrap_or_default();
    let back = safe_next(q.back.as_deref());
    let cookie = session::set_cookie(
        session::LANG_COOKIE,
        lang.as_str(),
        365 * 24 * 3600,
        st.secure_cookies,
    );
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, back)],
    )
        .into_response()
}

// ---------------------------------------------------------------- orders

#[derive(Deserialize, Default)]
pub struct OrdersQuery {
    status: Option<String>,
    domain: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    /// An email request just made, to announce.
    notice: Option<String>,
}

fn ca_name(st: &ConsoleState, id: &str) -> String {
    st.desk
        .cas
        .get(id)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| id.to_string())
}

fn notice_for(st: &ConsoleState, lang: Lang, order: &Order, r: &EmailRequest) -> String {
    let id = match r.kind {
        EmailKind::Fulfillment => "resend-notice",
        EmailKind::Approval => "approval-notice",
    };
    i18n::t_args(
        lang,
        id,
        &[
            ("ca", &ca_name(st, &order.ca)),
            ("address", r.recipient.as_str()),
        ],
    )
}

pub async fn orders(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Query(q): Query<OrdersQuery>,
    uri: axum::http::Uri,
) -> Response {
    let lang = user.lang;
    let query = ListQuery {
        status: q.status.clone(),
        domain: q.domain.clone(),
        cursor: q.cursor.clone(),
        limit: Some(PAGE_SIZE),
        sort: q.sort.clone(),
    };
    let (page, error) = match st.desk.list_orders(&user.actor, &query).await {
        Ok(p) => (Some(p), None),
        Err(ServiceError::Invalid { message, .. }) => (None, Some(message)),
        Err(e) => return service_error_page(&user, e),
    };
    let orders: Vec<Order> = page
        .as_ref()
        .map(|p| p.orders.iter().map(|s| s.order.clone()).collect())
        .unwrap_or_default();
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
    let latest: HashMap<String, EmailRequest> = match st
        .desk
        .store
        .latest_email_requests(&ids, EmailKind::Fulfillment)
        .await
    {
        Ok(v) => v.into_iter().map(|r| (r.order_id.clone(), r)).collect(),
        Err(e) => return service_error_page(&user, e.into()),
    };
    let mut notice = None;
    if let Some(request_id) = q.notice.as_deref() {
        if let Ok(Some(r)) = st.desk.store.get_email_request(request_id).await {
            // Only announce the user's own account's requests.
            if let Some(o) = st
                .desk
                .store
                .get_order(&user.actor.account_id, &r.order_id)
                .await
                .ok()
                .flatten()
            {
                notice = Some(notice_for(&st, lang, &o, &r));
            }
        }
    }
    let rows = orders
        .iter()
        .map(|o| {
            let (email_state, email_class) = match latest.get(&o.id) {
                Some(r) => {
                    let (l, c) = email_state(lang, r);
                    (Some(l), c)
                }
                None => (None, String::new()),
            };
            OrderRow {
                id: o.id.clone(),
                common_name: o.common_name.clone(),
                other_names: o
                    .names
                    .iter()
                    .filter(|n| **n != o.common_name)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                state: o.state.as_str().to_string(),
                status_label: state_label(lang, o.state),
                ca_name: ca_name(&st, &o.ca),
                created: date(o.created_at),
                expires: o.certificate.as_ref().map(|c| date(c.not_after)),
                can_send: o.state == OrderState::Issued && user.actor.role.can_order(),
                recipient: o.admin_email.to_string(),
                email_state,
                email_class,
            }
        })
        .collect();
    let keep = |cursor: Option<&str>| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &q.status),
            ("domain", &q.domain),
            ("sort", &q.sort),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                s.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        format!("/console/ssl/orders?{}", s.finish())
    };
    let next_url = page
        .as_ref()
        .and_then(|p| p.next_cursor.as_deref())
        .map(|c| keep(Some(c)));
    let first_url = q.cursor.as_ref().map(|_| keep(None));
    let filtered = [&q.status, &q.domain]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
    render(OrdersPage {
        c: chrome(
            &user,
            uri.path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/console/ssl/orders"),
        ),
        title: i18n::t(lang, "orders-title"),
        rows,
        statuses: [
            OrderState::PendingApproval,
            OrderState::Issued,
            OrderState::Declined,
            OrderState::Cancelled,
            OrderState::Failed,
        ]
        .into_iter()
        .map(|s| (s.as_str().to_string(), state_label(lang, s)))
        .collect(),
        status: q.status.unwrap_or_default(),
        domain: q.domain.unwrap_or_default(),
        sort: q.sort.unwrap_or_default(),
        filtered,
        next_url,
        first_url,
        notice,
        error,
    })
}

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    notice: Option<String>,
}

pub async fn order_detail(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let lang = user.lang;
    let detail = match st.desk.order_detail(&user.actor, &id).await {
        Ok(d) => d,
        Err(e) => return service_error_page(&user, e),
    };
    let o = &detail.order;
    let notice = q
        .notice
        .and_then(|n| detail.email_requests.iter().find(|r| r.id == n))
        .map(|r| notice_for(&st, lang, o, r));
    let requests = detail
        .email_requests
        .iter()
        .rev()
        .map(|r| {
            let (state, class) = email_state(lang, r);
            RequestRow {
                kind: i18n::t(
                    lang,
                    &format!("req-kind-{}-{}", r.kind.as_str(), r.trigger.as_str()),
                ),
                recipient: r.recipient.to_string(),
                state,
                class,
                error: r.error.clone(),
                when: datetime(r.created_at),
            }
        })
        .collect();
    let view = OrderView {
        id: o.id.clone(),
        common_name: o.common_name.clone(),
        names: o.names.join(", "),
        state: o.state.as_str().into(),
        status_label: state_label(lang, o.state),
        ca_name: ca_name(&st, &o.ca),
        key_type: o.key_type.clone(),
        days: o.days,
        admin_name: o.admin_name.clone(),
        admin_email: o.admin_email.to_string(),
        approver_email: o.approver_email.as_ref().map(|a| a.to_string()),
        language: Lang::parse(&o.language)
            .unwrap_or_default()
            .label()
            .to_string(),
        created: datetime(o.created_at),
        failure: o.failure_reason.clone(),
        cert: o.certificate.as_ref().map(|c| CertView {
            serial: c.serial.clone(),
            not_before: datetime(c.not_before),
            not_after: datetime(c.not_after),
            fingerprint: c.sha256_fingerprint.clone(),
            issuer: c.issuer.clone(),
        }),
    };
    render(OrderPage {
        c: chrome(&user, &format!("/console/ssl/orders/{}", o.id)),
        title: o.common_name.clone(),
        can_send: o.state == OrderState::Issued,
        can_resend_approval: o.state == OrderState::PendingApproval && o.approver_email.is_some(),
        can_cancel: matches!(o.state, OrderState::Submitted | OrderState::PendingApproval),
        o: view,
        requests,
        notice,
    })
}

// ---------------------------------------------------------------- resend

fn resend_page(
    st: &ConsoleState,
    user: &ConsoleUser,
    order: &Order,
    error: Option<String>,
) -> Response {
    render(ResendPage {
        c: chrome(user, &format!("/console/ssl/orders/{}/resend", order.id)),
        title: i18n::t(user.lang, "resend-title"),
        order_id: order.id.clone(),
        common_name: order.common_name.clone(),
        recipient: order.admin_email.to_string(),
        ca_name: ca_name(st, &order.ca),
        error,
    })
}

/// The confirmation as a page of its own, for browsers without JavaScript.
pub async fn resend_confirm(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Response {
    match st.desk.scoped_order(&user.actor, &id).await {
        Ok(order) => resend_page(&st, &user, &order, None),
        Err(e) => service_error_page(&user, e),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// "Resend email": from the dialog (JSON) or the confirmation page (form).
pub async fn resend(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = user.lang;
    let f = form_value(&body);
    let json = wants_json(&headers);
    if let Err(r) = user.check_csrf(&headers, f.get("csrf").map(String::as_str)) {
        return if json {
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": i18n::t(lang, "error-csrf")})),
            )
                .into_response()
        } else {
            r.into_response()
        };
    }
    let result = st
        .desk
        .request_fulfillment_email(&user.actor, &id, None)
        .await;
    match (result, json) {
        (Ok(accepted), true) => {
            let notice = i18n::t_args(
                lang,
                "resend-notice",
                &[
                    ("ca", &accepted.ca_name),
                    ("address", accepted.recipient.as_str()),
                ],
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "notice": notice,
                    "request_id": accepted.request_id,
                    "state": accepted.state,
                    "state_label": i18n::t(lang, &format!("email-state-{}", accepted.state.as_str())),
                })),
            )
                .into_response()
        }
        (Ok(accepted), false) => Redirect::to(&format!(
            "/console/ssl/orders?notice={}",
            accepted.request_id
        ))
        .into_response(),
        (
            Err(ServiceError::RateLimited {
                retry_after_secs, ..
            }),
            true,
        ) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"error": rate_limited_text(lang, retry_after_secs)})),
        )
            .into_response(),
        (Err(e), true) => {
            let status = super::status_of(&e);
            let message = match &e {
                ServiceError::NotFound(_) => i18n::t(lang, "error-order-not-found"),
                ServiceError::Forbidden(_) => i18n::t(lang, "error-viewer"),
                other => other.to_string(),
            };
            (status, Json(json!({"error": message}))).into_response()
        }
        (Err(e @ (ServiceError::RateLimited { .. } | ServiceError::Conflict { .. })), false) => {
            match st.desk.scoped_order(&user.actor, &id).await {
                Ok(order) => {
                    let message = match e {
                        ServiceError::RateLimited {
                            retry_after_secs, ..
                        } => rate_limited_text(lang, retry_after_secs),
                        other => other.to_string(),
                    };
                    let mut res = resend_page(&st, &user, &order, Some(message));
                    *res.status_mut() = StatusCode::CONFLICT;
                    res
                }
                Err(e) => service_error_page(&user, e),
            }
        }
        (Err(e), false) => service_error_page(&user, e),
    }
}

#[derive(Deserialize)]
pub struct StatusQuery {
    request: String,
}

/// Where one email request stands, for the Orders row to update itself.
pub async fn email_status(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Response {
    let lang = user.lang;
    let requests = match st.desk.fulfillment_email_info(&user.actor, &id).await {
        Ok(info) => info.requests,
        Err(e) => {
            return (super::status_of(&e), Json(json!({"error": e.to_string()}))).into_response()
        }
    };
    let Some(r) = requests.into_iter().find(|r| r.id == q.request) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": i18n::t(lang, "error-not-found")})),
        )
            .into_response();
    };
    let (label, class) = email_state(lang, &r);
    let done = matches!(r.state, EmailRequestState::Sent | EmailRequestState::Failed);
    Json(json!({"state": r.state, "label": label, "class": class, "error": r.error, "done": done}))
        .into_response()
}

pub async fn resend_approval(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = user.checked_form(&headers, &body) {
        return r.into_response();
    }
    match st.desk.resend_approval_email(&user.actor, &id, None).await {
        Ok(a) => Redirect::to(&format!("/console/ssl/orders/{id}?notice={}", a.request_id))
            .into_response(),
        Err(e) => service_error_page(&user, e),
    }
}

pub async fn cancel(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = user.checked_form(&headers, &body) {
        return r.into_response();
    }
    match st.desk.cancel_order(&user.actor, &id).await {
        Ok(_) => Redirect::to(&format!("/console/ssl/orders/{id}")).into_response(),
        Err(e) => service_error_page(&user, e),
    }
}

// ---------------------------------------------------------------- new order

fn cas(st: &ConsoleState) -> Vec<(String, String)> {
    st.desk
        .cas
        .ids()
        .into_iter()
        .map(|id| (id.clone(), ca_name(st, &id)))
        .collect()
}

fn decoded_summary(lang: Lang, s: &crate::service::orders::CsrSummary) -> String {
    CsrSummary {
        t_names: i18n::t(lang, "detail-names"),
        t_key: i18n::t(lang, "detail-key"),
        t_subject: i18n::t(lang, "csr-subject"),
        names: s.names.join(", "),
        key_type: s.key_type.clone(),
        subject: s.subject.clone(),
    }
    .render()
    .unwrap_or_default()
}

fn approvers_of(s: &crate::service::orders::CsrSummary) -> Vec<String> {
    s.approver_emails
        .iter()
        .flat_map(|c| c.addresses.iter().map(|a| a.to_string()))
        .collect()
}

fn new_order_page(
    st: &ConsoleState,
    user: &ConsoleUser,
    form: OrderForm,
    errors: FieldErrors,
    error: Option<String>,
) -> NewOrderPage {
    let policy = st
        .desk
        .cas
        .get(&form.ca)
        .or_else(|| st.desk.cas.get(&st.desk.settings.default_ca))
        .map(|c| c.policy());
    let (decoded, approvers) = match (&policy, form.csr.trim().is_empty(), &errors.csr) {
        (Some(p), false, None) => match crate::service::orders::decode(&form.csr, &p.csr) {
            Ok(s) => (Some(decoded_summary(user.lang, &s)), approvers_of(&s)),
            Err(_) => (None, vec![]),
        },
        _ => (None, vec![]),
    };
    NewOrderPage {
        c: chrome(user, "/console/ssl/orders/new"),
        title: i18n::t(user.lang, "new-title"),
        max_days: policy.as_ref().map(|p| p.max_days).unwrap_or(90),
        form,
        errors,
        error,
        decoded,
        approvers,
        cas: cas(st),
    }
}

pub async fn new_order_form(State(st): State<ConsoleState>, user: ConsoleUser) -> Response {
    if !user.actor.role.can_order() {
        return error_page(
            user.lang,
            StatusCode::FORBIDDEN,
            &i18n::t(user.lang, "error-viewer"),
        );
    }
    let form = OrderForm {
        ca: st.desk.settings.default_ca.clone(),
        days: st.desk.settings.default_days.to_string(),
        language: user.lang.as_str().to_string(),
        ..OrderForm::default()
    };
    render(new_order_page(
        &st,
        &user,
        form,
        FieldErrors::default(),
        None,
    ))
}

pub async fn place_order(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = user.lang;
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let form = OrderForm {
        csr: get("csr"),
        ca: get("ca"),
        days: get("days"),
        approver_email: get("approver_email"),
        admin_name: get("admin_name"),
        admin_email: get("admin_email"),
        language: get("language"),
    };
    let mut errors = FieldErrors::default();
    let days = match form.days.trim() {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                errors.set("days", i18n::t(lang, "new-days-invalid"));
                None
            }
        },
    };
    // "Check CSR" without JavaScript: show the decoded CSR and its approvers.
    if get("action") == "check" || errors.days.is_some() {
        if let Some(p) = st.desk.cas.get(&form.ca).map(|c| c.policy()) {
            if let Err(ServiceError::Invalid { message, .. }) =
                crate::service::orders::decode(&form.csr, &p.csr)
            {
                errors.set("csr", message);
            }
        }
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(new_order_page(&st, &user, form, errors, None)),
        )
            .into_response();
    }
    let input = OrderInput {
        csr: form.csr.clone(),
        admin_email: form.admin_email.clone(),
        admin_name: form.admin_name.clone(),
        approver_email: Some(form.approver_email.clone()).filter(|a| !a.is_empty()),
        ca: Some(form.ca.clone()).filter(|c| !c.is_empty()),
        days,
        language: Some(form.language.clone()).filter(|l| !l.is_empty()),
    };
    match st.desk.place_order(&user.actor, input, None).await {
        Ok(order) => {
            Redirect::to(&format!("/console/ssl/orders/{}", order.order.id)).into_response()
        }
        Err(ServiceError::Invalid { field, message, .. }) => {
            let general = if errors.set(field, message.clone()) {
                None
            } else {
                Some(message)
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                render(new_order_page(&st, &user, form, errors, general)),
            )
                .into_response()
        }
        Err(e) => service_error_page(&user, e),
    }
}

#[derive(Deserialize)]
pub struct DecodeInput {
    csr: String,
    ca: Option<String>,
}

/// Decodes the pasted CSR as the user types (JSON for the form's script).
pub async fn decode_csr(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Json(input): Json<DecodeInput>,
) -> Response {
    if let Err(r) = user.check_csrf(&headers, None) {
        return r.into_response();
    }
    let ca = input
        .ca
        .unwrap_or_else(|| st.desk.settings.default_ca.clone());
    let Some(ca) = st.desk.cas.get(&ca) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"field": "ca", "error": "unknown CA"})),
        )
            .into_response();
    };
    match crate::service::orders::decode(&input.csr, &ca.policy().csr) {
        Ok(s) => {
            Json(json!({"html": decoded_summary(user.lang, &s), "approvers": approvers_of(&s)}))
                .into_response()
        }
        Err(ServiceError::Invalid { field, message, .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"field": field, "error": message})),
        )
            .into_response(),
        Err(e) => (super::status_of(&e), Json(json!({"error": e.to_string()}))).into_response(),
    }
}
