//! `/api/v1`: JSON over HTTP with bearer tokens. Each handler is a thin
//! adapter onto one `service` function.

// A Problem is built once per failed request and turned into a response at
// once: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use crate::domain::account::Actor;
use crate::service::certificates::{CertificateQuery, ImportRequest};
use crate::service::orders::{ListQuery, OrderInput};
use crate::service::{orders, Desk, ServiceError};

pub fn router(desk: Arc<Desk>) -> Router {
    Router::new()
        .route("/api/v1/orders", post(place_order).get(list_orders))
        .route("/api/v1/orders/{id}", get(show_order))
        .route("/api/v1/orders/{id}/cancel", post(cancel_order))
        .route("/api/v1/orders/{id}/approval-email", post(resend_approval))
        .route(
            "/api/v1/orders/{id}/fulfillment-email",
            get(fulfillment_info).post(request_fulfillment),
        )
        .route("/api/v1/approver-emails", get(approver_emails))
        .route("/api/v1/csr/decode", post(decode_csr))
        .route("/api/v1/cas", get(list_cas))
        .route("/api/v1/me", get(me))
        .route(
            "/api/v1/certificates",
            post(import_certificate).get(list_certificates),
        )
        .route(
            "/api/v1/certificates/{id}",
            get(show_certificate)
                .patch(edit_certificate)
                .put(replace_certificate)
                .delete(delete_certificate),
        )
        .route("/api/v1/certificates/{id}/pem", get(certificate_pem))
        .route(
            "/api/v1/certificates/{id}/private-key",
            post(certificate_key),
        )
        .route("/api/v1/certificates/{id}/pkcs12", post(certificate_pkcs12))
        .fallback(not_found)
        .with_state(desk)
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct ApiActor(pub Actor);

impl FromRequestParts<Arc<Desk>> for ApiActor {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        desk: &Arc<Desk>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ServiceError::Unauthenticated)?;
        Ok(ApiActor(desk.authenticate_token(token).await?))
    }
}

/// `Json` whose rejections are problem documents naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(Problem::from)
    }
}

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(Problem::from)
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
            key.map(|k| Some(k.to_string())).ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                )
                .with_field("Idempotency-Key")
            })
        }
    }
}

type ApiResult = Result<Response, Problem>;

async fn place_order(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    headers: HeaderMap,
    ApiJson(input): ApiJson<OrderInput>,
) -> ApiResult {
    let key = idempotency_key(&headers)?;
    let order = desk.place_order(&actor, input, key).await?;
    let location = format!("/api/v1/orders/{}", order.order.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response())
}

async fn list_orders(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    Ok(Json(desk.list_orders(&actor, &q).await?).into_response())
}

async fn show_order(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(desk.order_detail(&actor, &id).await?).into_response())
}

async fn cancel_order(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(desk.cancel_order(&actor, &id).await?).into_response())
}

async fn resend_approval(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let key = idempotency_key(&headers)?;
    let accepted = desk.resend_approval_email(&actor, &id, key).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn fulfillment_info(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(desk.fulfillment_email_info(&actor, &id).await?).into_response())
}

async fn request_fulfillment(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let key = idempotency_key(&headers)?;
    let accepted = desk.request_fulfillment_email(&actor, &id, key).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

#[derive(Deserialize)]
struct DomainQuery {
    domain: Option<String>,
}

async fn approver_emails(ApiActor(_): ApiActor, ApiQuery(q): ApiQuery<DomainQuery>) -> ApiResult {
    let domain = q.domain.unwrap_or_default();
    if domain.trim().is_empty() {
        return Err(ServiceError::invalid("domain", "required", "give ?domain=example.com").into());
    }
    let choice = orders::approver_emails(&domain)?;
    Ok(Json(serde_json::json!({
        "domain": domain.trim(),
        "registrable_domain": choice.registrable_domain,
        "addresses": choice.addresses,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeInput {
    csr: String,
    ca: Option<String>,
}

async fn decode_csr(
    State(desk): State<Arc<Desk>>,
    ApiActor(_): ApiActor,
    ApiJson(input): ApiJson<DecodeInput>,
) -> ApiResult {
    let ca_id = input.ca.unwrap_or_else(|| desk.settings.default_ca.clone());
    let ca = desk.cas.get(&ca_id).ok_or_else(|| {
        ServiceError::invalid("ca", "unknown_ca", format!("no CA named {ca_id:?}"))
    })?;
    Ok(Json(orders::decode(&input.csr, &ca.policy().csr)?).into_response())
}

#[derive(Serialize)]
struct CaView {
    id: String,
    name: String,
    max_days: u32,
    needs_approver: bool,
    default: bool,
}

async fn list_cas(State(desk): State<Arc<Desk>>, ApiActor(_): ApiActor) -> ApiResult {
    let cas: Vec<CaView> = desk
        .cas
        .ids()
        .into_iter()
        .filter_map(|id| desk.cas.get(&id).cloned())
        .map(|ca| {
            let p = ca.policy();
            CaView {
                id: ca.id().to_string(),
                name: ca.name().to_string(),
                max_days: p.max_days,
                needs_approver: p.needs_approver,
                default: ca.id() == desk.settings.default_ca,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "cas": cas })).into_response())
}

async fn me(ApiActor(actor): ApiActor) -> ApiResult {
    Ok(Json(serde_json::json!({
        "user_id": actor.user_id,
        "account_id": actor.account_id,
        "email": actor.email,
        "role": actor.role,
    }))
    .into_response())
}

async fn import_certificate(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult {
    let c = desk.import_certificate(&actor, req).await?;
    let location = format!("/api/v1/certificates/{}", c.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(c)).into_response())
}

async fn list_certificates(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    ApiQuery(q): ApiQuery<CertificateQuery>,
) -> ApiResult {
    Ok(Json(desk.list_certificates(&actor, &q).await?).into_response())
}

async fn show_certificate(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(desk.certificate(&actor, &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    notes: String,
}

async fn edit_certificate(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<EditInput>,
) -> ApiResult {
    Ok(Json(
        desk.update_certificate_notes(&actor, &id, &input.notes)
            .await?,
    )
    .into_response())
}

async fn replace_certificate(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult {
    Ok(Json(desk.replace_certificate(&actor, &id, req).await?).into_response())
}

async fn delete_certificate(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> ApiResult {
    desk.delete_certificate(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct PemQuery {
    part: Option<String>,
}

async fn certificate_pem(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PemQuery>,
) -> ApiResult {
    let files = desk.certificate_files(&actor, &id).await?;
    let body = match q.part.as_deref().unwrap_or("fullchain") {
        "certificate" => files.certificate,
        "chain" => files.chain,
        "fullchain" => files.fullchain,
        other => {
            return Err(ServiceError::invalid(
                "part",
                "unknown_part",
                format!("unknown part {other:?}; use certificate, chain or fullchain"),
            )
            .into())
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDownload {
    /// The user's own password, typed again.
    password: String,
    /// For PKCS#12: the password protecting the file.
    export_password: Option<String>,
}

async fn certificate_key(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<KeyDownload>,
) -> ApiResult {
    let pem = desk.private_key_pem(&actor, &id, &input.password).await?;
    Ok(Json(serde_json::json!({ "private_key": pem })).into_response())
}

async fn certificate_pkcs12(
    State(desk): State<Arc<Desk>>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<KeyDownload>,
) -> ApiResult {
    let export = input.export_password.unwrap_or_default();
    let p12 = desk.pkcs12(&actor, &id, &input.password, &export).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pkcs12")], p12).into_response())
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}
