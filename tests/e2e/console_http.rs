//! The console over plain HTTP: what a browser without JavaScript, or a
//! forger, gets. The Chromium tests cover what a person clicks.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

use crate::support::*;

/// A signed-in console session, as cookies and the page's CSRF token.
pub struct ConsoleSession {
    base: String,
    cookies: String,
    pub csrf: String,
    http: reqwest::Client,
}

fn cookie_pairs(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect()
}

fn hidden_csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a CSRF field on the page")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

pub fn set_password(desk: &Desk, email: &str, password: &str) {
    let out = desk.cli_as(
        &desk.token,
        &["admin", "user", "set-password", "--email", email],
        Some(password),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

impl ConsoleSession {
    pub async fn sign_in(
        desk: &Desk,
        email: &str,
        password: &str,
    ) -> Result<ConsoleSession, (StatusCode, String)> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = http
            .get(format!("{}/console/login", desk.url))
            .send()
            .await
            .unwrap();
        let login_cookie = cookie_pairs(&form).join("; ");
        let csrf = hidden_csrf(&form.text().await.unwrap());
        let res = http
            .post(format!("{}/console/login", desk.url))
            .header(COOKIE, &login_cookie)
            .form(&[
                ("email", email),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/console/ssl/orders"),
            ])
            .send()
            .await
            .unwrap();
        if res.status() != StatusCode::SEE_OTHER {
            let status = res.status();
            return Err((status, res.text().await.unwrap()));
        }
        let cookies = cookie_pairs(&res).join("; ");
        let mut s = ConsoleSession {
            base: desk.url.clone(),
            cookies,
            csrf: String::new(),
            http,
        };
        let (_, page) = s.get("/console/ssl/orders").await;
        s.csrf = hidden_csrf(&page);
        Ok(s)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{}{}", self.base, path))
            .header(COOKIE, &self.cookies)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Posts a form and returns the whole response (a download's headers and bytes).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{}", self.base, path))
            .header(COOKIE, &self.cookies)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let res = self.post(path, form).await;
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (res.status(), res.text().await.unwrap(), location)
    }
}

async fn issued_order(desk: &Desk, smtp: &SmtpServer, cn: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", cn, &format!("DNS:{cn}"), &[]);
    let (s, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "webteam@example.com", None)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_str().unwrap().to_string();
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment() && m.subject.contains(cn))
        .await;
    id
}

#[tokio::test]
async fn without_javascript_send_leads_to_a_confirmation_page_that_resends() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(
        Some(&smtp),
        &["--validation", "none", "--resend-limit-per-hour", "2"],
    )
    .await;
    set_password(&desk, "admin@localhost", "a long enough password");
    let id = issued_order(&desk, &smtp, "nojs.example.com").await;
    let s = ConsoleSession::sign_in(&desk, "admin@localhost", "a long enough password")
        .await
        .unwrap();

    let (status, page) = s.get("/console/ssl/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("action=\"/console/ssl/orders/{id}/resend\"")),
        "a Send form per issued order"
    );
    let (status, confirm) = s.get(&format!("/console/ssl/orders/{id}/resend")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("webteam@example.com") && confirm.contains("certdesk built-in CA"));

    let (status, _, location) = s
        .post_form(
            &format!("/console/ssl/orders/{id}/resend"),
            &[("csrf", &s.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    let (_, after) = s.get(&location).await;
    assert!(
        after.contains("Fulfillment email requested from certdesk built-in CA; it will be sent to webteam@example.com."),
        "{after}"
    );
    smtp.wait_for(2, |m| m.is_fulfillment()).await;

    // Past the hourly limit the page says when the next resend is possible.
    s.post_form(
        &format!("/console/ssl/orders/{id}/resend"),
        &[("csrf", &s.csrf)],
    )
    .await;
    let (status, page, _) = s
        .post_form(
            &format!("/console/ssl/orders/{id}/resend"),
            &[("csrf", &s.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("The next resend is possible in"), "{page}");
}

#[tokio::test]
async fn forged_and_foreign_requests_are_refused() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    set_password(&desk, "admin@localhost", "a long enough password");
    let id = issued_order(&desk, &smtp, "forged.example.com").await;
    let admin = ConsoleSession::sign_in(&desk, "admin@localhost", "a long enough password")
        .await
        .unwrap();

    // No CSRF token, or a wrong one: refused, and nothing is queued.
    for form in [vec![], vec![("csrf", "forged")]] {
        let (status, page, _) = admin
            .post_form(&format!("/console/ssl/orders/{id}/resend"), &form)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    }
    let (_, order) = desk.api.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(
        order["email_requests"].as_array().unwrap().len(),
        1,
        "only the initial email"
    );

    // A viewer sees no Send button, and a forged POST with a valid token is refused.
    desk.user("Default", "viewer@example.com", "viewer");
    set_password(&desk, "viewer@example.com", "viewer password 123");
    let viewer = ConsoleSession::sign_in(&desk, "viewer@example.com", "viewer password 123")
        .await
        .unwrap();
    let (_, page) = viewer.get("/console/ssl/orders").await;
    assert!(
        page.contains("forged.example.com") && !page.contains("send-form"),
        "{page}"
    );
    let (status, _, _) = viewer
        .post_form(
            &format!("/console/ssl/orders/{id}/resend"),
            &[("csrf", &viewer.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Another account's order is not found.
    desk.user("Other Co", "other@other.example", "admin");
    set_password(&desk, "other@other.example", "other password 123");
    let other = ConsoleSession::sign_in(&desk, "other@other.example", "other password 123")
        .await
        .unwrap();
    for path in [
        format!("/console/ssl/orders/{id}"),
        format!("/console/ssl/orders/{id}/resend"),
    ] {
        let (status, _) = other.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = other
        .post_form(
            &format!("/console/ssl/orders/{id}/resend"),
            &[("csrf", &other.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, order) = desk.api.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["email_requests"].as_array().unwrap().len(), 1);

    // Signed out, the console sends you to the sign-in page.
    let (status, _, location) = admin
        .post_form("/console/logout", &[("csrf", &admin.csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/console/login"));
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/console/ssl/orders", desk.url))
        .header(COOKIE, &admin.cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the old session no longer works"
    );
}

#[tokio::test]
async fn wrong_credentials_get_one_message_and_the_session_cookie_is_locked_down() {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", "a long enough password");
    let (status, page) = match ConsoleSession::sign_in(&desk, "admin@localhost", "wrong").await {
        Err(e) => e,
        Ok(_) => panic!("signed in with a wrong password"),
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status2, page2) = match ConsoleSession::sign_in(&desk, "nobody@example.com", "wrong").await
    {
        Err(e) => e,
        Ok(_) => panic!("signed in as nobody"),
    };
    assert_eq!(status2, status);
    let message = "The email or password is not correct.";
    assert!(
        page.contains(message) && page2.contains(message),
        "the same message, naming neither part"
    );

    // The session cookie: HttpOnly and SameSite=Lax.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{}/console/login", desk.url))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_pairs(&form).join("; ");
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let res = http
        .post(format!("{}/console/login", desk.url))
        .header(COOKIE, &login_cookie)
        .form(&[
            ("email", "admin@localhost"),
            ("password", "a long enough password"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    let set = res
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.starts_with("certdesk_session=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Lax"),
        "{set}"
    );
    // A sign-in without the form's token is refused.
    let res = http
        .post(format!("{}/console/login", desk.url))
        .form(&[
            ("email", "admin@localhost"),
            ("password", "a long enough password"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
