//! The console in real headless Chromium: what a person sees and clicks.
//! The screenshots in docs/screenshots/ come from these tests.

use std::time::Duration;

use fantoccini::key::Key;

use crate::browser::Browser;
use crate::console_http::set_password;
use crate::support::*;

const PASSWORD: &str = "a long enough password";

/// Fills in and sends the sign-in form.
async fn submit_sign_in(b: &Browser, desk: &Desk, email: &str, password: &str) {
    b.goto(&format!("{}/console", desk.url)).await;
    b.wait_for("#sign-in").await;
    b.fill("#email", email).await;
    b.fill("#password", password).await;
    b.click("#sign-in").await;
}

async fn sign_in(b: &Browser, desk: &Desk, email: &str, password: &str) {
    submit_sign_in(b, desk, email, password).await;
    // Signed in once a console page with the sign-out button has loaded: a
    // navigation started before then would lose to the sign-in's redirect.
    b.wait_for("#sign-out").await;
}

async fn dialog_open(b: &Browser) -> bool {
    b.attr_of("#resend-dialog", "open").await.is_some()
}

#[tokio::test]
async fn order_in_the_console_approve_and_resend_the_fulfillment_email_from_the_orders_screen() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com,DNS:example.com",
        &[],
    );

    let b = Browser::start().await;
    b.desktop().await;
    // A wrong password first: one message, naming neither part.
    submit_sign_in(&b, &desk, "admin@localhost", "not the password").await;
    b.wait_for_text("#login-error", "The email or password is not correct.")
        .await;
    sign_in(&b, &desk, "admin@localhost", PASSWORD).await;
    b.wait_for("#orders-empty").await;
    assert!(b
        .text_of("#orders-empty")
        .await
        .contains("No certificates ordered yet"));

    // Security › SSL › Orders is in the navigation.
    b.click("#menu-security summary").await;
    assert_eq!(b.text_of("#nav-ssl-orders").await, "Orders");

    // The order form decodes the CSR as it is pasted, and offers the approvers.
    b.click("#new-order").await;
    b.fill("#csr", "not a CSR").await;
    b.wait_for_text("#csr-error", "not readable PEM").await;
    b.fill("#csr", &csr_pem).await;
    b.wait_for_text("#csr-names", "www.example.com, example.com")
        .await;
    assert_eq!(b.text_of("#csr-key").await, "ECDSA P-256");
    b.wait_for("#approver_email option[value='hostmaster@example.com']")
        .await;
    b.select("#approver_email", "hostmaster@example.com").await;
    b.fill("#admin_name", "Web Team").await;
    b.fill("#admin_email", "not-an-address").await;
    b.screenshot("order-form").await;
    b.click("#place-order").await;
    // Errors show next to their field; the form keeps what was typed.
    b.wait_for_text("#admin-email-error", "@").await;
    b.fill("#admin_email", "webteam@example.com").await;
    b.select("#approver_email", "hostmaster@example.com").await;
    b.click("#place-order").await;
    b.wait_for_text("#order-status", "Pending CA approval")
        .await;
    assert!(b
        .text_of("#admin-contact")
        .await
        .contains("webteam@example.com"));
    let order_url = b.url().await;
    let id = order_url.rsplit('/').next().unwrap().to_string();

    // The approver approves from the link in the email, on a page styled like the console.
    let approval = smtp.wait_for(1, |m| m.is_approval()).await.remove(0);
    assert_eq!(approval.to, "hostmaster@example.com");
    b.goto(&approval.approval_link()).await;
    assert!(b.text_of("#ca-names").await.contains("example.com"));
    b.screenshot("approval-page").await;
    b.click("#approve").await;
    b.wait_for_text("#ca-message", "issued").await;
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment()).await;

    // SSL › Orders: Complete, with Send in the Email column.
    b.goto(&format!("{}/console/ssl/orders", desk.url)).await;
    let row = format!("#order-{id}");
    b.wait_for_text(&format!("{row} .badge"), "Complete").await;
    b.wait_for_text(&format!("{row} .email-state"), "sent")
        .await;

    // Send → the dialog shows the administrator given at order time; Cancel sends nothing.
    b.click(&format!("{row} button.send")).await;
    assert!(dialog_open(&b).await);
    assert_eq!(b.text_of("#resend-recipient").await, "webteam@example.com");
    assert_eq!(b.text_of("#resend-ca").await, "certdesk built-in CA");
    b.click("#resend-cancel").await;
    assert!(!dialog_open(&b).await);
    // Escape closes it too.
    b.click(&format!("{row} button.send")).await;
    assert!(dialog_open(&b).await);
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&char::from(Key::Escape).to_string())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!dialog_open(&b).await, "Escape closes the dialog");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        smtp.messages()
            .iter()
            .filter(|m| m.is_fulfillment())
            .count(),
        1,
        "cancel sent nothing"
    );

    // Resend email: the notice names the CA and the address; the row follows the request.
    b.click(&format!("{row} button.send")).await;
    b.screenshot("resend-dialog").await;
    b.click("#resend-confirm").await;
    b.wait_for_text("#notice", "Fulfillment email requested from certdesk built-in CA; it will be sent to webteam@example.com.").await;
    assert!(!dialog_open(&b).await);
    let mails = smtp.wait_for(2, |m| m.is_fulfillment()).await;
    assert!(mails.iter().all(|m| m.to == "webteam@example.com"));
    b.wait_for_text(&format!("{row} .email-state"), "sent")
        .await;
    b.screenshot("orders").await;
    b.phone().await;
    b.screenshot("orders-phone").await;
    b.desktop().await;

    // The order page shows the history of both emails.
    b.goto(&order_url).await;
    let history = b.text_of("#email-requests").await;
    assert!(
        history.contains("Approval request") && history.contains("Certificate (resent)"),
        "{history}"
    );
    b.close().await;
}

#[tokio::test]
async fn italian_console_says_invia_and_invia_nuovamente_email() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "negozio.example.it",
        "DNS:negozio.example.it",
        &[],
    );
    let mut body = order_body(&csr_pem, "tecnico@example.it", None);
    body["language"] = serde_json::json!("it");
    let (_, o, _) = desk.api.post("/api/v1/orders", Some(&body)).await;
    let id = o["id"].as_str().unwrap().to_string();
    desk.wait_order_state(&id, "issued").await;
    let mail = smtp.wait_for(1, |m| m.is_fulfillment()).await.remove(0);
    assert!(
        mail.subject
            .starts_with("Il tuo certificato SSL per negozio.example.it"),
        "{}",
        mail.subject
    );

    // The browser asks for Italian.
    let b = Browser::start_with_language("it").await;
    b.desktop().await;
    b.goto(&format!("{}/console", desk.url)).await;
    assert_eq!(b.text_of("#sign-in").await, "Accedi");
    b.fill("#email", "admin@localhost").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-in").await;
    let row = format!("#order-{id}");
    b.wait_for_text(&format!("{row} .badge"), "Completato")
        .await;
    assert_eq!(b.text_of("h1").await, "Ordini SSL");
    assert_eq!(b.text_of(&format!("{row} button.send")).await, "Invia");
    b.click(&format!("{row} button.send")).await;
    assert_eq!(b.text_of("#resend-confirm").await, "Invia nuovamente email");
    assert_eq!(b.text_of("#resend-cancel").await, "Annulla");
    b.screenshot("resend-dialog-it").await;
    b.click("#resend-confirm").await;
    b.wait_for_text(
        "#notice",
        "Email di consegna richiesta a certdesk built-in CA; sarà inviata a tecnico@example.it.",
    )
    .await;
    b.wait_for_text(&format!("{row} .email-state"), "inviata")
        .await;

    // Switching language is the user's choice and sticks.
    b.click("#lang-en").await;
    b.wait_for_text("h1", "SSL orders").await;
    b.goto(&format!("{}/console/ssl/orders/{id}", desk.url))
        .await;
    b.wait_for_text("#order-status", "Complete").await;
    b.close().await;
}

#[tokio::test]
async fn a_viewer_sees_orders_but_no_send_button() {
    let (_smtp, desk, csr_pem) = issuing_desk("view.example.com").await;
    let (_, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    let id = o["id"].as_str().unwrap().to_string();
    desk.wait_order_state(&id, "issued").await;
    desk.user("Default", "viewer@example.com", "viewer");
    set_password(&desk, "viewer@example.com", PASSWORD);

    let b = Browser::start().await;
    sign_in(&b, &desk, "viewer@example.com", PASSWORD).await;
    let row = format!("#order-{id}");
    b.wait_for_text(&format!("{row} .badge"), "Complete").await;
    assert!(
        !b.exists(&format!("{row} button.send")).await,
        "no Send for a viewer"
    );
    assert!(!b.exists("#new-order").await, "no ordering for a viewer");
    b.goto(&format!("{}/console/ssl/orders/{id}", desk.url))
        .await;
    b.wait_for("#order-status").await;
    assert!(!b.exists("#detail-resend").await);
    b.close().await;
}

#[tokio::test]
async fn a_certificate_imported_in_the_console_is_listed_with_its_expiry_downloads_as_pem_and_renews_in_place(
) {
    let desk = Desk::start(None, &[]).await;
    set_password(&desk, "admin@localhost", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(12);
    let b = crate::cert_store::make_bundle(dir.path(), "ec:P-256", "shop.example.com", 1, soon);

    let bw = Browser::start().await;
    bw.desktop().await;
    sign_in(&bw, &desk, "admin@localhost", PASSWORD).await;
    bw.goto(&format!("{}/console/ssl/certificates", desk.url))
        .await;
    bw.wait_for("#certs-empty").await;
    bw.click("#import-cert").await;
    // The classic trap first: the intermediates pasted into the certificate field.
    bw.fill("#certificate", &format!("{}{}", b.cert, b.chain))
        .await;
    bw.fill("#private_key", &b.key).await;
    bw.click("#import-submit").await;
    bw.wait_for_text("#certificate-error", "chain").await;
    bw.fill("#certificate", &b.cert).await;
    bw.fill("#private_key", &b.key).await;
    bw.fill("#chain", &b.chain).await;
    bw.fill("#notes", "shop front").await;
    bw.screenshot("certificate-import").await;
    bw.click("#import-submit").await;
    bw.wait_for_text("#notice", "imported").await;
    assert!(bw
        .text_of("#cert-names")
        .await
        .contains("www.shop.example.com"));

    bw.goto(&format!("{}/console/ssl/certificates", desk.url))
        .await;
    let row = bw.text_of("#certs-table tbody tr").await;
    assert!(
        row.contains("shop.example.com") && row.contains("days left") && row.contains("shop front"),
        "{row}"
    );
    assert!(
        bw.exists("#certs-table .expiry.soon").await,
        "under 30 days shows in the warning colour"
    );
    bw.screenshot("certificates").await;

    // The PEM download is the certificate that went in.
    let href = bw.attr_of("#certs-table a.cn", "href").await.unwrap();
    let id = href.rsplit('/').next().unwrap().to_string();
    let (_, pem) = crate::console_http::ConsoleSession::sign_in(&desk, "admin@localhost", PASSWORD)
        .await
        .unwrap()
        .get(&format!(
            "/console/ssl/certificates/{id}/download/certificate"
        ))
        .await;
    assert_eq!(pem, b.cert);

    // Renewal: Replace certificate on its page; the stored key is kept, and
    // the page shows the new expiry.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    let r = crate::cert_store::renewed(&b, "shop.example.com", later);
    bw.goto(&format!("{}/console/ssl/certificates/{id}", desk.url))
        .await;
    bw.click("#replace-cert").await;
    bw.fill("#certificate", &r.cert).await;
    bw.fill("#chain", &r.chain).await;
    bw.screenshot("certificate-replace").await;
    bw.click("#replace-submit").await;
    bw.wait_for_text("#notice", "replaced").await;
    let (_, c) = desk.api.get(&format!("/api/v1/certificates/{id}")).await;
    let new_date = &c["not_after"].as_str().unwrap()[..10];
    assert!(bw.text_of("#cert-not-after").await.starts_with(new_date));
    assert!(
        bw.exists("#cert-expiry.ok").await,
        "no longer in the warning colour"
    );
    bw.screenshot("certificate").await;
    bw.close().await;
}
