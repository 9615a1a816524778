//! SSL › Certificates: the certificate store in the console.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{chrome, datetime, error_page, render, service_error_page};
use super::session::ConsoleUser;
use super::views::*;
use super::ConsoleState;
use crate::i18n::{self, Lang};
use crate::service::certificates::{
    CertificateQuery, CertificateView, ImportRequest, MIN_EXPORT_PASSWORD_CHARS,
};
use crate::service::ServiceError;

fn days_text(lang: Lang, v: &CertificateView) -> (String, String) {
    if v.expired {
        (
            i18n::t_count(lang, "certs-expired-ago", -v.days_left, &[]),
            "expired".into(),
        )
    } else {
        let class = if v.expiring_soon { "soon" } else { "ok" };
        (
            i18n::t_count(lang, "certs-days-left", v.days_left, &[]),
            class.into(),
        )
    }
}

/// The name a certificate goes by: its common name, else its first name.
fn shown_name(v: &CertificateView) -> String {
    v.common_name
        .clone()
        .or_else(|| v.names.first().cloned())
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
pub struct ListParams {
    name: Option<String>,
    expiring_within_days: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

pub async fn list(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Query(q): Query<ListParams>,
    uri: axum::http::Uri,
) -> Response {
    let lang = user.lang;
    let expiring = q.expiring_within_days.clone().filter(|d| !d.is_empty());
    let query = CertificateQuery {
        name: q.name.clone(),
        expiring_within_days: expiring.as_deref().and_then(|d| d.parse().ok()),
        cursor: q.cursor.clone(),
        limit: Some(25),
    };
    let (page, error) = match st.desk.list_certificates(&user.actor, &query).await {
        Ok(p) => (Some(p), None),
        Err(ServiceError::Invalid { message, .. }) => (None, Some(message)),
        Err(e) => return service_error_page(&user, e),
    };
    let rows = page
        .as_ref()
        .map(|p| {
            p.certificates
                .iter()
                .map(|v| {
                    let (days_left, expiry_class) = days_text(lang, v);
                    let cn = shown_name(v);
                    CertRow {
                        id: v.id.clone(),
                        other_names: v
                            .names
                            .iter()
                            .filter(|n| **n != cn)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                        common_name: cn,
                        issuer: v.issuer.clone(),
                        expires: super::pages::date(v.not_after),
                        days_left,
                        expiry_class,
                        key_type: v.key_type.clone(),
                        notes: v.notes.clone(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let keep = |cursor: Option<&str>| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(n) = q.name.as_deref().filter(|n| !n.is_empty()) {
            s.append_pair("name", n);
        }
        if let Some(d) = &expiring {
            s.append_pair("expiring_within_days", d);
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        format!("/console/ssl/certificates?{}", s.finish())
    };
    render(CertificatesPage {
        c: chrome(
            &user,
            uri.path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/console/ssl/certificates"),
        ),
        title: i18n::t(lang, "certs-title"),
        rows,
        name: q.name.clone().unwrap_or_default(),
        expiring: expiring.clone().unwrap_or_default(),
        notice: q
            .notice
            .as_deref()
            .map(|n| i18n::t(lang, &format!("certs-notice-{n}"))),
        error,
        next_url: page
            .as_ref()
            .and_then(|p| p.next_cursor.as_deref())
            .map(|c| keep(Some(c))),
        first_url: q.cursor.as_ref().map(|_| keep(None)),
    })
}

fn detail_page(
    user: &ConsoleUser,
    v: &CertificateView,
    notice: Option<String>,
    error: Option<String>,
    p12: Pkcs12Errors,
) -> Response {
    let lang = user.lang;
    let (days_left, expiry_class) = days_text(lang, v);
    let cn = shown_name(v);
    let warnings = v
        .warnings
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["message"].as_str().map(str::to_string))
        .collect();
    render(CertificatePage {
        c: chrome(user, &format!("/console/ssl/certificates/{}", v.id)),
        title: cn.clone(),
        v: CertDetail {
            id: v.id.clone(),
            common_name: cn,
            names: v.names.join(", "),
            issuer: v.issuer.clone(),
            serial: v.serial.clone(),
            not_before: datetime(v.not_before),
            not_after: datetime(v.not_after),
            days_left,
            expiry_class,
            key_type: v.key_type.clone(),
            fingerprint: v.sha256_fingerprint.clone(),
            notes: v.notes.clone(),
            chain: v
                .chain
                .iter()
                .map(|l| {
                    format!(
                        "{} ({} {})",
                        l.subject,
                        i18n::t(lang, "certs-until"),
                        super::pages::date(l.not_after)
                    )
                })
                .collect(),
            warnings,
        },
        p12,
        export_hint: i18n::t_count(
            lang,
            "certs-p12-export-hint",
            MIN_EXPORT_PASSWORD_CHARS as i64,
            &[],
        ),
        export_min_chars: MIN_EXPORT_PASSWORD_CHARS,
        notice,
        error,
    })
}

#[derive(Deserialize, Default)]
pub struct DetailParams {
    notice: Option<String>,
}

pub async fn detail(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(q): Query<DetailParams>,
) -> Response {
    match st.desk.certificate(&user.actor, &id).await {
        Ok(v) => detail_page(
            &user,
            &v,
            q.notice
                .map(|n| i18n::t(user.lang, &format!("certs-notice-{n}"))),
            None,
            Pkcs12Errors::default(),
        ),
        Err(e) => service_error_page(&user, e),
    }
}

pub async fn download(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path((id, part)): Path<(String, String)>,
) -> Response {
    let files = match st.desk.certificate_files(&user.actor, &id).await {
        Ok(f) => f,
        Err(e) => return service_error_page(&user, e),
    };
    let (body, name) = match part.as_str() {
        "certificate" => (files.certificate, "cert.pem"),
        "chain" => (files.chain, "chain.pem"),
        "fullchain" => (files.fullchain, "fullchain.pem"),
        _ => {
            return error_page(
                user.lang,
                StatusCode::NOT_FOUND,
                &i18n::t(user.lang, "error-not-found"),
            )
        }
    };
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn download_key(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let password = f.get("password").cloned().unwrap_or_default();
    match st.desk.private_key_pem(&user.actor, &id, &password).await {
        Ok(pem) => (
            [
                (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"key.pem\"".to_string(),
                ),
            ],
            pem,
        )
            .into_response(),
        Err(ServiceError::Invalid { message, .. }) => {
            match st.desk.certificate(&user.actor, &id).await {
                Ok(v) => {
                    let mut r =
                        detail_page(&user, &v, None, Some(message), Pkcs12Errors::default());
                    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    r
                }
                Err(e) => service_error_page(&user, e),
            }
        }
        Err(e) => service_error_page(&user, e),
    }
}

/// A name safe for a downloaded file: `*.example.com` → `_.example.com`.
fn file_stem(v: &CertificateView) -> String {
    let name = shown_name(v);
    let stem: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_') {
                ch
            } else {
                '_'
            }
        })
        .collect();
    if stem.trim_matches(['.', '_']).is_empty() {
        "certificate".into()
    } else {
        stem
    }
}

/// The certificate, its chain and its key as one PKCS#12 file, protected by
/// a password the user chooses (typed twice), once they typed their own
/// password again. Audited by the service like the API's export.
pub async fn download_pkcs12(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let lang = user.lang;
    let v = match st.desk.certificate(&user.actor, &id).await {
        Ok(v) => v,
        Err(e) => return service_error_page(&user, e),
    };
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let mut errors = Pkcs12Errors::default();
    let mut general = None;
    if field("export_password") != field("export_password_confirm") {
        errors.export_password_confirm = Some(i18n::t(lang, "certs-p12-mismatch"));
    } else {
        match st
            .desk
            .pkcs12(
                &user.actor,
                &id,
                field("password"),
                field("export_password"),
            )
            .await
        {
            Ok(p12) => {
                return (
                    [
                        (header::CONTENT_TYPE, "application/x-pkcs12".to_string()),
                        (
                            header::CONTENT_DISPOSITION,
                            format!("attachment; filename=\"{}.p12\"", file_stem(&v)),
                        ),
                        // A private key: never kept by a cache, whatever the
                        // layers around this handler do.
                        (header::CACHE_CONTROL, "no-store".to_string()),
                    ],
                    p12,
                )
                    .into_response();
            }
            Err(ServiceError::Invalid { field, message, .. }) => match field {
                "password" => errors.password = Some(i18n::t(lang, "certs-p12-wrong-password")),
                "export_password" => {
                    errors.export_password = Some(i18n::t_count(
                        lang,
                        "certs-p12-too-short",
                        MIN_EXPORT_PASSWORD_CHARS as i64,
                        &[],
                    ))
                }
                _ => general = Some(message),
            },
            Err(e) => return service_error_page(&user, e),
        }
    }
    let mut r = detail_page(&user, &v, None, general, errors);
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    r
}

pub async fn save_notes(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    match st
        .desk
        .update_certificate_notes(
            &user.actor,
            &id,
            f.get("notes").map(String::as_str).unwrap_or(""),
        )
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/console/ssl/certificates/{id}?notice=saved")).into_response()
        }
        Err(e) => service_error_page(&user, e),
    }
}

pub async fn delete(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = user.checked_form(&headers, &body) {
        return r.into_response();
    }
    match st.desk.delete_certificate(&user.actor, &id).await {
        Ok(()) => Redirect::to("/console/ssl/certificates?notice=deleted").into_response(),
        Err(e) => service_error_page(&user, e),
    }
}

const BUNDLE_FIELDS: [&str; 3] = ["certificate", "private_key", "chain"];

/// The fields of the import and replace forms a refusal can be shown next to.
const FORM_FIELDS: [&str; 6] = [
    "certificate",
    "private_key",
    "chain",
    "key_password",
    "pkcs12",
    "pkcs12_password",
];

/// The certificate, key and chain fields as posted, with any messages.
/// `replacing`: the private key may stay empty to keep the stored one.
fn bundle_form(
    lang: Lang,
    values: &HashMap<String, String>,
    errors: &HashMap<&'static str, String>,
    replacing: bool,
) -> BundleForm {
    let fields = BUNDLE_FIELDS
        .iter()
        .map(|name| ImportField {
            name,
            label: i18n::t(lang, &format!("certs-field-{name}")),
            hint: if replacing && *name == "private_key" {
                i18n::t(lang, "certs-replace-hint-private_key")
            } else {
                i18n::t(lang, &format!("certs-hint-{name}"))
            },
            // A private key is never sent back into a page.
            value: if *name == "private_key" {
                String::new()
            } else {
                values.get(*name).cloned().unwrap_or_default()
            },
            error: errors.get(name).cloned(),
        })
        .collect();
    BundleForm {
        fields,
        key_password_error: errors.get("key_password").cloned(),
        pkcs12_error: errors
            .get("pkcs12")
            .or(errors.get("pkcs12_password"))
            .cloned(),
        allow_expired: values.get("allow_expired").is_some_and(|v| v == "true"),
    }
}

/// What the import and replace forms post, as the service takes it.
fn bundle_request(f: &HashMap<String, String>) -> ImportRequest {
    let get = |k: &str| f.get(k).cloned().filter(|v| !v.trim().is_empty());
    ImportRequest {
        certificate: get("certificate"),
        fullchain: None,
        private_key: get("private_key"),
        key_password: get("key_password"),
        chain: get("chain"),
        pkcs12: get("pkcs12"),
        pkcs12_password: get("pkcs12_password"),
        csr: None,
        notes: get("notes"),
        allow_expired: f.get("allow_expired").is_some_and(|v| v == "true"),
    }
}

/// A refusal next to the field it names, or above the form when the form
/// has no such field.
fn place_error(field: &str, message: String) -> (HashMap<&'static str, String>, Option<String>) {
    let mut errors = HashMap::new();
    match FORM_FIELDS.iter().find(|k| **k == field) {
        Some(k) => {
            errors.insert(*k, message);
            (errors, None)
        }
        None => (errors, Some(message)),
    }
}

fn import_page(
    user: &ConsoleUser,
    values: &HashMap<String, String>,
    errors: &HashMap<&'static str, String>,
    error: Option<String>,
) -> Response {
    let lang = user.lang;
    render(ImportPage {
        c: chrome(user, "/console/ssl/certificates/import"),
        title: i18n::t(lang, "certs-import"),
        form: bundle_form(lang, values, errors, false),
        notes: values.get("notes").cloned().unwrap_or_default(),
        error,
    })
}

pub async fn import_form(user: ConsoleUser) -> Response {
    if !user.actor.role.can_order() {
        return error_page(
            user.lang,
            StatusCode::FORBIDDEN,
            &i18n::t(user.lang, "error-viewer"),
        );
    }
    import_page(&user, &HashMap::new(), &HashMap::new(), None)
}

pub async fn import(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    match st
        .desk
        .import_certificate(&user.actor, bundle_request(&f))
        .await
    {
        Ok(v) => Redirect::to(&format!(
            "/console/ssl/certificates/{}?notice=imported",
            v.id
        ))
        .into_response(),
        Err(ServiceError::Invalid { field, message, .. }) => {
            let (errors, general) = place_error(field, message);
            let mut r = import_page(&user, &f, &errors, general);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => service_error_page(&user, e),
    }
}

fn replace_page(
    user: &ConsoleUser,
    v: &CertificateView,
    values: &HashMap<String, String>,
    errors: &HashMap<&'static str, String>,
    error: Option<String>,
) -> Response {
    let lang = user.lang;
    let cn = shown_name(v);
    render(ReplacePage {
        c: chrome(user, &format!("/console/ssl/certificates/{}/replace", v.id)),
        title: format!("{}: {cn}", i18n::t(lang, "certs-replace")),
        id: v.id.clone(),
        common_name: cn,
        not_after: datetime(v.not_after),
        key_type: v.key_type.clone(),
        form: bundle_form(lang, values, errors, true),
        error,
    })
}

pub async fn replace_form(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Response {
    if !user.actor.role.can_order() {
        return error_page(
            user.lang,
            StatusCode::FORBIDDEN,
            &i18n::t(user.lang, "error-viewer"),
        );
    }
    match st.desk.certificate(&user.actor, &id).await {
        Ok(v) => replace_page(&user, &v, &HashMap::new(), &HashMap::new(), None),
        Err(e) => service_error_page(&user, e),
    }
}

/// Renewal: the new certificate takes the entry's place, with the stored key
/// unless a new one is given; the same service call as the API's PUT.
pub async fn replace(
    State(st): State<ConsoleState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match user.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let mut req = bundle_request(&f);
    // Notes are edited on the certificate's page; a replacement keeps them.
    req.notes = None;
    let new_key = req.private_key.is_some() || req.pkcs12.is_some();
    match st.desk.replace_certificate(&user.actor, &id, req).await {
        Ok(_) => {
            Redirect::to(&format!("/console/ssl/certificates/{id}?notice=replaced")).into_response()
        }
        Err(ServiceError::Invalid {
            field,
            code,
            message,
        }) => {
            let v = match st.desk.certificate(&user.actor, &id).await {
                Ok(v) => v,
                Err(e) => return service_error_page(&user, e),
            };
            // Without a new key the stored one was tried: the certificate the
            // user gave is what does not fit, not the empty key field.
            let (errors, general) = if code == "import_key_mismatch" && !new_key {
                place_error(
                    "certificate",
                    i18n::t(user.lang, "certs-replace-key-mismatch"),
                )
            } else {
                place_error(field, message)
            };
            let mut r = replace_page(&user, &v, &f, &errors, general);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => service_error_page(&user, e),
    }
}
