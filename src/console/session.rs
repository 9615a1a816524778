//! Console sign-in: session cookies, CSRF tokens, and slowing down repeated
//! failed sign-ins.
//!
//! The session cookie is HttpOnly, SameSite=Lax, and Secure when the desk is
//! served over TLS. It carries a random token; the database keeps its hash.
//! Every state-changing request carries the session's CSRF token (a form
//! field, or the X-CSRF-Token header from the console's script).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::ConsoleState;
use crate::domain::account::Actor;
use crate::i18n::Lang;

pub const SESSION_COOKIE: &str = "certdesk_session";
pub const LANG_COOKIE: &str = "certdesk_lang";
/// Double-submit token for the sign-in form, which has no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "certdesk_login_csrf";
pub const SESSION_HOURS: i64 = 12;

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The language of the page: the user's choice (cookie), else the browser's.
pub fn language(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(|c| Lang::parse(&c))
        .unwrap_or_else(|| {
            crate::i18n::negotiate(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

/// A signed-in console user.
pub struct ConsoleUser {
    pub actor: Actor,
    pub csrf: String,
    pub lang: Lang,
}

impl ConsoleUser {
    /// Refuses a state-changing request without this session's CSRF token.
    pub fn check_csrf(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), CsrfRejected> {
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or(form_token)
            .unwrap_or("");
        if same_token(given, &self.csrf) {
            Ok(())
        } else {
            Err(CsrfRejected(self.lang))
        }
    }
}

impl ConsoleUser {
    /// The fields of a posted form, once its CSRF token is checked.
    pub fn checked_form(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<std::collections::HashMap<String, String>, CsrfRejected> {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        self.check_csrf(headers, form.get("csrf").map(String::as_str))?;
        Ok(form)
    }
}

/// A state-changing request without a valid CSRF token: 403.
pub struct CsrfRejected(Lang);

impl IntoResponse for CsrfRejected {
    fn into_response(self) -> Response {
        super::pages::error_page(
            self.0,
            StatusCode::FORBIDDEN,
            &crate::i18n::t(self.0, "error-csrf"),
        )
    }
}

impl FromRequestParts<ConsoleState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let lang = language(&parts.headers);
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/console");
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/console/login?next={next}")).into_response()
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match state.desk.find_session(&token).await {
            Ok(Some(s)) => Ok(ConsoleUser {
                actor: Actor::from(s.user),
                csrf: s.csrf_token,
                lang,
            }),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::error!(error = %e, "session look-up failed");
                Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        }
    }
}

/// Failed sign-ins per address: after a few, each answer waits longer, so
/// guessing passwords gets slow while a typo costs nothing.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

const FREE_FAILURES: u32 = 3;
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(16);

impl LoginThrottle {
    /// How long to wait before answering a sign-in for `email`.
    pub fn delay(&self, email: &str) -> Duration {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&email.to_ascii_lowercase()) {
            Some((n, at)) if *n >= FREE_FAILURES && at.elapsed() < FORGET_AFTER => {
                Duration::from_secs(1 << (n - FREE_FAILURES).min(4)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: forget stale entries before the map could grow large.
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < FORGET_AFTER);
        }
        let entry = map
            .entry(email.to_ascii_lowercase())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET_AFTER {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    pub fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&email.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_are_free_then_each_waits_longer() {
        let t = LoginThrottle::default();
        for _ in 0..3 {
            assert_eq!(t.delay("a@example.com"), Duration::ZERO);
            t.failed("A@example.com");
        }
        assert_eq!(t.delay("a@example.com"), Duration::from_secs(1));
        t.failed("a@example.com");
        assert_eq!(t.delay("a@example.com"), Duration::from_secs(2));
        for _ in 0..10 {
            t.failed("a@example.com");
        }
        assert_eq!(t.delay("a@example.com"), MAX_DELAY);
        t.succeeded("a@example.com");
        assert_eq!(t.delay("a@example.com"), Duration::ZERO);
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; certdesk_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
