//! SSL › Certificates over plain HTTP: replacing a certificate (renewal) and
//! downloading it as PKCS#12, as a browser without JavaScript or a forger
//! does it. The Chromium test covers what a person clicks.

use reqwest::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::cert_store::{import_body, make_bundle, renewed, Bundle};
use crate::console_http::{set_password, ConsoleSession};
use crate::support::*;

const PASSWORD: &str = "a long enough password";

fn in_days(d: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(d)
}

/// The text of the element with this id, when it is shown.
fn shown_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_end = at + html[at..].find('>')?;
    if html[at..tag_end].contains("hidden") {
        return None;
    }
    let text = &html[tag_end + 1..];
    Some(text[..text.find('<')?].to_string())
}

async fn import(desk: &Desk, b: &Bundle) -> String {
    let (s, c, _) = desk
        .api
        .post("/api/v1/certificates", Some(&import_body(b)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().to_string()
}

/// Posts the PKCS#12 form: the account password, the file's password twice.
async fn post_pkcs12(
    s: &ConsoleSession,
    path: &str,
    csrf: &str,
    [password, export, again]: [&str; 3],
) -> reqwest::Response {
    s.post(
        path,
        &[
            ("csrf", csrf),
            ("password", password),
            ("export_password", export),
            ("export_password_confirm", again),
        ],
    )
    .await
}

async fn stored(desk: &Desk, id: &str) -> Value {
    let (s, c) = desk.api.get(&format!("/api/v1/certificates/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c
}

#[tokio::test]
async fn renewing_with_the_same_key_shows_the_new_expiry_on_the_certificate_page() {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "renew.example.com", 1, in_days(20));
    let id = import(&desk, &b).await;
    let before = stored(&desk, &id).await;
    let s = ConsoleSession::sign_in(&desk, "admin@localhost", PASSWORD)
        .await
        .unwrap();

    let (_, page) = s.get(&format!("/console/ssl/certificates/{id}")).await;
    assert!(
        page.contains(&format!("href=\"/console/ssl/certificates/{id}/replace\"")),
        "the certificate's page leads to the replace form"
    );
    let (status, form) = s
        .get(&format!("/console/ssl/certificates/{id}/replace"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        form.contains("Leave it empty to keep the stored key"),
        "{form}"
    );

    // The renewal comes without a key: the stored one is kept.
    let r = renewed(&b, "renew.example.com", in_days(400));
    let (status, page, location) = s
        .post_form(
            &format!("/console/ssl/certificates/{id}/replace"),
            &[
                ("csrf", &s.csrf),
                ("certificate", &r.cert),
                ("private_key", ""),
                ("chain", &r.chain),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let location = location.unwrap();
    assert_eq!(
        location,
        format!("/console/ssl/certificates/{id}?notice=replaced")
    );

    let after = stored(&desk, &id).await;
    assert_ne!(after["serial"], before["serial"]);
    let new_date = &after["not_after"].as_str().unwrap()[..10];
    let (_, page) = s.get(&location).await;
    assert_eq!(
        shown_text(&page, "notice").as_deref(),
        Some("The certificate has been replaced.")
    );
    let shown = shown_text(&page, "cert-not-after").unwrap();
    assert!(shown.starts_with(new_date), "{shown} is not {new_date}");
    assert!(
        shown_text(&page, "cert-expiry")
            .unwrap()
            .ends_with("days left"),
        "{page}"
    );
    assert_eq!(after["notes"], before["notes"]);

    // Same key: the stored key comes back as it was imported.
    let (_, k, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/private-key"),
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(k["private_key"], b.key.as_str());
    let replaced: Vec<_> = desk
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.1 == "certificate.replaced")
        .collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].3["new_key"], false);
}

#[tokio::test]
async fn a_renewal_for_another_key_is_refused_next_to_the_certificate_field_and_nothing_changes() {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "keep.example.com", 1, in_days(20));
    let id = import(&desk, &b).await;
    let before = stored(&desk, &id).await;
    let s = ConsoleSession::sign_in(&desk, "admin@localhost", PASSWORD)
        .await
        .unwrap();
    let path = format!("/console/ssl/certificates/{id}/replace");

    let other = make_bundle(dir.path(), "ec:P-256", "keep.example.com", 1, in_days(300));
    let (status, page, _) = s
        .post_form(
            &path,
            &[
                ("csrf", &s.csrf),
                ("certificate", &other.cert),
                ("chain", &other.chain),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        shown_text(&page, "certificate-error").as_deref(),
        Some(
            "This certificate is for a different key than the stored one. If it was issued \
             for a new key, give that private key too."
        ),
        "{page}"
    );
    assert_eq!(shown_text(&page, "private_key-error"), None);
    assert!(
        page.contains(other.cert.trim()),
        "the form keeps what was pasted"
    );

    // With a new key that is not the certificate's, the key field says so.
    let (status, page, _) = s
        .post_form(
            &path,
            &[
                ("csrf", &s.csrf),
                ("certificate", &other.cert),
                ("private_key", &b.key),
                ("chain", &other.chain),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        shown_text(&page, "private_key-error")
            .unwrap()
            .contains("does not belong to this certificate"),
        "{page}"
    );
    assert!(
        !page.contains(b.key.lines().nth(1).unwrap()),
        "a private key is never sent back"
    );
    assert_eq!(stored(&desk, &id).await, before, "nothing changed");
}

#[tokio::test]
async fn forged_viewer_and_foreign_replace_and_pkcs12_requests_are_refused() {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "guard.example.com", 1, in_days(20));
    let id = import(&desk, &b).await;
    let before = stored(&desk, &id).await;
    let r = renewed(&b, "guard.example.com", in_days(400));
    let replace = format!("/console/ssl/certificates/{id}/replace");
    let pkcs12 = format!("/console/ssl/certificates/{id}/pkcs12");
    let export = |password| [password, "file password", "file password"];

    // No CSRF token, or a forged one: 403, and nothing is replaced or exported.
    let admin = ConsoleSession::sign_in(&desk, "admin@localhost", PASSWORD)
        .await
        .unwrap();
    for csrf in [None, Some("forged")] {
        let mut form = vec![("certificate", r.cert.as_str()), ("chain", &r.chain)];
        form.extend(csrf.map(|c| ("csrf", c)));
        let (status, page, _) = admin.post_form(&replace, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("This form has expired"), "{page}");
        let res = post_pkcs12(&admin, &pkcs12, csrf.unwrap_or(""), export(PASSWORD)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().get(CONTENT_DISPOSITION).is_none());
    }

    // A viewer sees neither form and is refused both.
    desk.user("Default", "viewer@example.com", "viewer");
    set_password(&desk, "viewer@example.com", "viewer password 123");
    let viewer = ConsoleSession::sign_in(&desk, "viewer@example.com", "viewer password 123")
        .await
        .unwrap();
    let (status, page) = viewer.get(&format!("/console/ssl/certificates/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("guard.example.com")
            && !page.contains("replace-cert")
            && !page.contains("pkcs12-form"),
        "{page}"
    );
    let (status, _) = viewer.get(&replace).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = viewer
        .post_form(
            &replace,
            &[
                ("csrf", &viewer.csrf),
                ("certificate", &r.cert),
                ("chain", &r.chain),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let res = post_pkcs12(
        &viewer,
        &pkcs12,
        &viewer.csrf,
        export("viewer password 123"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Another account's certificate is not found.
    desk.user("Other Co", "other@other.example", "admin");
    set_password(&desk, "other@other.example", "other password 123");
    let other = ConsoleSession::sign_in(&desk, "other@other.example", "other password 123")
        .await
        .unwrap();
    for path in [format!("/console/ssl/certificates/{id}"), replace.clone()] {
        let (status, page) = other.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            page.contains("There is no such certificate in your account."),
            "{page}"
        );
    }
    let (status, _, _) = other
        .post_form(
            &replace,
            &[
                ("csrf", &other.csrf),
                ("certificate", &r.cert),
                ("chain", &r.chain),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = post_pkcs12(&other, &pkcs12, &other.csrf, export("other password 123")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    assert_eq!(stored(&desk, &id).await, before, "nothing changed");
    assert!(
        !desk
            .audit_events()
            .await
            .iter()
            .any(|e| e.1 == "certificate.replaced" || e.1 == "certificate.key_downloaded"),
        "nothing replaced, no key left the desk"
    );
}

#[tokio::test]
async fn the_pkcs12_download_asks_for_your_password_and_a_file_password_typed_twice() {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "shop.example.com", 1, in_days(90));
    let id = import(&desk, &b).await;
    let s = ConsoleSession::sign_in(&desk, "admin@localhost", PASSWORD)
        .await
        .unwrap();
    let path = format!("/console/ssl/certificates/{id}/pkcs12");
    // Each mistake: no file, and the message next to its field.
    for (password, export, again, field, message) in [
        (
            "not my password",
            "file password",
            "file password",
            "p12-password-error",
            "This is not your password: type the password you sign in with.",
        ),
        (
            PASSWORD,
            "file password",
            "file pasword",
            "export-password-confirm-error",
            "The two passwords differ: type the same password twice.",
        ),
        (
            PASSWORD,
            "short",
            "short",
            "export-password-error",
            "Choose a password of at least 8 characters for the file.",
        ),
        (
            PASSWORD,
            "",
            "",
            "export-password-error",
            "Choose a password of at least 8 characters for the file.",
        ),
    ] {
        let res = post_pkcs12(&s, &path, &s.csrf, [password, export, again]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert!(res.headers().get(CONTENT_DISPOSITION).is_none(), "{field}");
        assert!(res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = res.text().await.unwrap();
        assert_eq!(shown_text(&page, field).as_deref(), Some(message), "{page}");
    }
    assert!(
        !desk
            .audit_events()
            .await
            .iter()
            .any(|e| e.1 == "certificate.key_downloaded"),
        "no file, no download recorded"
    );

    let res = post_pkcs12(
        &s,
        &path,
        &s.csrf,
        [PASSWORD, "file password", "file password"],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[CONTENT_TYPE], "application/x-pkcs12");
    assert_eq!(
        h[CONTENT_DISPOSITION],
        "attachment; filename=\"shop.example.com.p12\""
    );
    assert_eq!(h[CACHE_CONTROL], "no-store");
    let p12 = dir.path().join("shop.p12");
    std::fs::write(&p12, res.bytes().await.unwrap()).unwrap();
    let opened = String::from_utf8(openssl(&[
        "pkcs12",
        "-in",
        p12.to_str().unwrap(),
        "-nodes",
        "-passin",
        "pass:file password",
    ]))
    .unwrap();
    assert!(
        opened.contains(b.cert.trim()) && opened.contains(b.chain.trim()),
        "the file holds the certificate and its chain: {opened}"
    );
    let begin = opened.find("-----BEGIN PRIVATE KEY-----").unwrap();
    let end = opened.find("-----END PRIVATE KEY-----").unwrap() + 25;
    let (from_file, imported) = (dir.path().join("p12-key.pem"), dir.path().join("in.pem"));
    std::fs::write(&from_file, &opened[begin..end]).unwrap();
    std::fs::write(&imported, &b.key).unwrap();
    let key = |f: &std::path::Path| openssl(&["pkey", "-in", f.to_str().unwrap()]);
    assert_eq!(
        key(&from_file),
        key(&imported),
        "the file holds the imported key"
    );

    // Audited exactly as the API's export is.
    let (s_api, _, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/pkcs12"),
            Some(&json!({"password": PASSWORD, "export_password": "file password"})),
        )
        .await;
    assert_eq!(s_api, StatusCode::OK);
    let exports: Vec<_> = desk
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.1 == "certificate.key_downloaded")
        .collect();
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert_eq!(exports[0], exports[1]);
    assert_eq!(
        (exports[0].2.as_str(), &exports[0].3),
        (id.as_str(), &json!({"format": "pkcs12"}))
    );
}
