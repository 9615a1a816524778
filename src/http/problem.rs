//! RFC 9457 problem details: every API error names what went wrong, and for
//! bad input, the field.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, searchable error code.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:certdesk:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: &str) -> Problem {
        self.field = Some(field.to_string());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"certdesk\""),
            );
        }
        res
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        match e {
            ServiceError::Invalid {
                field,
                code,
                message,
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("{field}: {message}"),
            )
            .with_field(field),
            ServiceError::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            ServiceError::Unauthenticated => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid API token is required (Authorization: Bearer cdk_…)",
            ),
            ServiceError::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, "forbidden", m),
            ServiceError::Conflict { code, message } => {
                Problem::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::RateLimited {
                retry_after_secs,
                message,
            } => {
                let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                p.retry_after = Some(retry_after_secs);
                p
            }
            ServiceError::Unavailable(m) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            ServiceError::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the desk hit an internal error; the log has the details",
            ),
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Problem {
        // axum's own: 415 without a JSON content type, 422 for a JSON
        // document of the wrong shape, 413 for a body over the limit, else 400.
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Problem::new(
                status,
                "body_too_large",
                format!(
                    "the request body is larger than the {} KiB the desk accepts",
                    super::MAX_BODY / 1024
                ),
            );
        }
        // serde names the offending field in its message ("missing field `csr`").
        let detail = r.body_text();
        let field = detail
            .split('`')
            .nth(1)
            .filter(|_| detail.contains("field"))
            .map(str::to_string);
        let mut p = Problem::new(status, "invalid_body", detail);
        p.field = field;
        p
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}
