//! The heart of the desk through the REST API: order, approve by email,
//! issue, fulfillment email, resend.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn order_is_approved_from_the_email_link_and_the_certificate_reaches_the_admin() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, key) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com,DNS:example.com",
        &[],
    );

    // The approver addresses offered for the domain.
    let (status, approvers) = desk
        .api
        .get("/api/v1/approver-emails?domain=www.example.com")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        approvers["addresses"],
        json!([
            "admin@example.com",
            "administrator@example.com",
            "webmaster@example.com",
            "hostmaster@example.com",
            "postmaster@example.com"
        ])
    );

    let (status, order, headers) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(
                &csr_pem,
                "it-team@example.com",
                Some("hostmaster@example.com"),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], format!("/api/v1/orders/{id}").as_str());
    assert_eq!(order["names"], json!(["www.example.com", "example.com"]));
    assert_eq!(order["admin_email"], "it-team@example.com");

    // The CA mails the approver a link; opening it shows what is asked.
    let approval = smtp.wait_for(1, |m| m.is_approval()).await.remove(0);
    assert_eq!(approval.to, "hostmaster@example.com");
    assert!(approval.text.contains(&id));
    assert!(
        approval.text.contains("admin@localhost asked"),
        "the approval email names the user who placed the order: {}",
        approval.text
    );
    let link = approval.approval_link();
    let token = link.rsplit('/').next().unwrap();
    assert!(
        token.len() >= 22,
        "at least 128 random bits in the link: {token}"
    );
    desk.wait_order_state(&id, "pending_approval").await;
    let page = reqwest::get(&link).await.unwrap().text().await.unwrap();
    assert!(page.contains("www.example.com") && page.contains("example.com") && page.contains(&id));
    assert!(
        page.contains("admin@localhost"),
        "the page names the requester"
    );

    // Resending the approval email sends the same link while it is valid.
    let (status, resent, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/approval-email"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resent}");
    let approvals = smtp.wait_for(2, |m| m.is_approval()).await;
    assert_eq!(approvals[1].approval_link(), link);

    // Approve: single use.
    let http = reqwest::Client::new();
    let r = http
        .post(&link)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again = http
        .post(&link)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::GONE,
        "an approval link works once"
    );

    let issued = desk.wait_order_state(&id, "issued").await;
    assert_eq!(issued["status_label"], "Complete");
    let serial = issued["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        serial.len() >= 16,
        "serial carries at least 64 bits: {serial}"
    );

    // The fulfillment email goes to the admin given at order time.
    let first = smtp.wait_for(1, |m| m.is_fulfillment()).await.remove(0);
    assert_eq!(first.to, "it-team@example.com");
    assert!(first.subject.contains("www.example.com") && first.subject.contains(&id));
    for detail in [
        &serial,
        "www.example.com",
        "example.com",
        "ECDSA P-256",
        &id,
        "SHA-256 fingerprint",
    ] {
        assert!(first.text.contains(detail), "text body lacks {detail}");
        assert!(first.html.contains(detail), "HTML body lacks {detail}");
    }
    assert!(first.text.contains(
        issued["certificate"]["sha256_fingerprint"]
            .as_str()
            .unwrap()
    ));

    // Its certificate holds the CSR's key and chains to the built-in root.
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, first.attachment("certificate.pem")).unwrap();
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, first.attachment("chain.pem")).unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, desk.root_pem().await).unwrap();
    assert_eq!(public_key_of_cert(&cert), public_key_of_key(&key));
    assert_eq!(first.attachment("chain.pem"), desk.intermediate_pem().await);
    assert_eq!(
        first.attachment("fullchain.pem"),
        format!(
            "{}{}",
            first.attachment("certificate.pem"),
            first.attachment("chain.pem")
        )
    );
    let verify = std::process::Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            chain.to_str().unwrap(),
        ])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // "Resend email": the confirmation shows the admin given at order time.
    let (status, info) = desk
        .api
        .get(&format!("/api/v1/orders/{id}/fulfillment-email"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["recipient"], "it-team@example.com");
    assert_eq!(info["available"], true);
    let (status, accepted, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/fulfillment-email"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["recipient"], "it-team@example.com");
    assert_eq!(accepted["ca"], "builtin");
    let request_id = accepted["request_id"].as_str().unwrap().to_string();

    let both = smtp.wait_for(2, |m| m.is_fulfillment()).await;
    let second = &both[1];
    assert_eq!(second.to, first.to);
    assert_eq!(second.subject, first.subject);
    assert_eq!(second.text, first.text);
    assert_eq!(
        second.attachments, first.attachments,
        "a resend delivers an equal email"
    );
    assert_ne!(second.message_id, first.message_id);
    assert!(
        second.message_id.contains(&request_id),
        "Message-ID is tied to the request"
    );

    // The request's state shows in the order.
    let shown = desk
        .wait_order(&id, |o| {
            o["email_requests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == request_id.as_str() && r["state"] == "sent")
        })
        .await;
    let kinds: Vec<(String, String)> = shown["email_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().into(),
                r["trigger"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("approval", "initial"),
            ("approval", "resend"),
            ("fulfillment", "initial"),
            ("fulfillment", "resend")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[tokio::test]
async fn a_declined_order_is_never_issued() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "rsa:2048",
        "shop.example.org",
        "DNS:shop.example.org",
        &[],
    );
    let (_, order, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(
                &csr_pem,
                "ops@example.org",
                Some("admin@example.org"),
            )),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let link = smtp.wait_for(1, |m| m.is_approval()).await[0].approval_link();
    let r = reqwest::Client::new()
        .post(&link)
        .form(&[("decision", "decline")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let o = desk.wait_order_state(id, "declined").await;
    assert!(o["certificate"].is_null());
    let (status, p, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/fulfillment-email"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(smtp.messages().iter().all(|m| !m.is_fulfillment()));
}

#[tokio::test]
async fn without_validation_the_order_issues_at_once_and_without_smtp_mail_goes_to_the_outbox() {
    let desk = Desk::start(None, &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-384",
        "intranet.example.net",
        "DNS:intranet.example.net",
        &[],
    );
    let (status, order, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.net", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["state"], "submitted", "answered as placed: {order}");
    assert_eq!(order["email_requests"], serde_json::json!([]));
    let id = order["id"].as_str().unwrap();
    let o = desk.wait_order_state(id, "issued").await;
    assert_eq!(o["key_type"], "ECDSA P-384");
    // The email went out before the issue was recorded, in the same
    // commit: an issued order never shows its first email still on its way.
    assert_eq!(o["email_requests"][0]["state"], "sent", "{o}");
    // The answer to the POST is the order as stored: the same values a GET
    // shows, to the millisecond.
    for field in [
        "created_at",
        "common_name",
        "names",
        "days",
        "admin_email",
        "csr_pem",
    ] {
        assert_eq!(order[field], o[field], "{field}");
    }
    let outbox = desk.path("outbox");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let files: Vec<_> = std::fs::read_dir(&outbox)
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        let eml: Vec<_> = files
            .iter()
            .filter(|f| f.path().extension().is_some_and(|e| e == "eml"))
            .collect();
        if let Some(f) = eml.first() {
            let mail = Mail::parse(&std::fs::read(f.path()).unwrap());
            assert_eq!(mail.to, "it@example.net");
            assert!(mail.is_fulfillment() && mail.subject.contains("intranet.example.net"));
            assert!(mail
                .attachment("certificate.pem")
                .starts_with("-----BEGIN CERTIFICATE-----"));
            break;
        }
        assert!(std::time::Instant::now() < end, "no .eml in the outbox");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        desk.log().contains("outbox"),
        "the startup log says where mail goes"
    );
}

/// More orders at once than the desk submits from the requests that
/// placed them (`certdesk::worker::tasks` at a time: 16 on SQLite, 48 on
/// PostgreSQL): the rest wait in the queue for a worker.
/// Each order is issued once, and each administrator gets exactly one
/// fulfillment email.
#[tokio::test]
async fn a_burst_of_orders_is_each_issued_once_with_one_email() {
    let (smtp, desk, csr_pem) = issuing_desk("burst.example.com").await;
    let orders = certdesk::worker::tasks(on_postgres()) + 32;
    let posts: Vec<_> = (0..orders)
        .map(|i| {
            let api = desk.api.clone();
            let body = order_body(&csr_pem, &format!("admin{i}@example.com"), None);
            tokio::spawn(async move { api.post("/api/v1/orders", Some(&body)).await })
        })
        .collect();
    let mut ids = Vec::new();
    for p in posts {
        let (status, order, _) = p.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{order}");
        ids.push(order["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let o = desk.wait_order_state(id, "issued").await;
        let requests = o["email_requests"].as_array().unwrap();
        assert_eq!(requests.len(), 1, "{o}");
    }
    let mails = smtp.wait_for(orders, |m| m.is_fulfillment()).await;
    let mut to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    to.sort_unstable();
    to.dedup();
    assert_eq!(to.len(), orders, "one email per administrator");
    // Nothing more arrives: no order was submitted or mailed twice.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        smtp.messages()
            .iter()
            .filter(|m| m.is_fulfillment())
            .count(),
        orders
    );
    let log = desk.audit_events().await;
    let count = |what: &str| log.iter().filter(|(_, a, _, _)| a == what).count();
    assert_eq!(
        count("order.issued"),
        orders,
        "one issuance recorded per order"
    );
    assert_eq!(
        count("email.fulfillment.sent"),
        orders,
        "one email recorded sent per order"
    );
}

#[tokio::test]
async fn a_burst_of_resends_is_each_delivered_once_and_shown_sent() {
    let smtp = SmtpServer::start_pipelining();
    let desk = Desk::start(
        Some(&smtp),
        &["--validation", "none", "--resend-limit-per-hour", "100"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let name = "resends.example.com";
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
    let id = desk.place_order(&csr_pem, "admin@example.com").await;
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment()).await;
    // More at once than the desk runs jobs at once: some are sent from the
    // request, the rest wait in the queue for a worker.
    let resends = certdesk::worker::tasks(on_postgres()) + 32;
    let posts: Vec<_> = (0..resends)
        .map(|_| {
            let (api, path) = (
                desk.api.clone(),
                format!("/api/v1/orders/{id}/fulfillment-email"),
            );
            tokio::spawn(async move { api.post(&path, None).await })
        })
        .collect();
    let mut requests = Vec::new();
    for p in posts {
        let (status, accepted, _) = p.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        assert!(
            ["queued", "forwarded"].contains(&accepted["state"].as_str().unwrap()),
            "{accepted}"
        );
        requests.push(accepted["request_id"].as_str().unwrap().to_string());
    }
    let mails = smtp.wait_for(resends + 1, |m| m.is_fulfillment()).await;
    // The first email is built from the certificate as the CA signed it a
    // moment before, the resends from the CA's ledger: they say the same.
    let first = &mails[0];
    for resent in &mails[1..] {
        assert_eq!(resent.subject, first.subject);
        assert_eq!(resent.text, first.text);
        assert_eq!(resent.html, first.html);
        assert_eq!(resent.attachments, first.attachments);
    }
    // Nothing more arrives: no request was sent twice.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    smtp.assert_each_sent_once(&requests, resends + 1);
    let o = desk.wait_emails_sent(&id, resends + 1).await;
    assert_eq!(o["email_requests"].as_array().unwrap().len(), resends + 1);
}

#[tokio::test]
async fn a_mailbox_the_mail_server_refuses_shows_the_email_failed_with_its_reply_and_the_next_goes_out(
) {
    let (smtp, desk, csr_pem) = issuing_desk("refused.example.com").await;
    let refused = desk.place_order(&csr_pem, "refused@example.com").await;
    let o = desk
        .wait_order(&refused, |o| o["email_requests"][0]["state"] == "failed")
        .await;
    // The certificate was issued; only its email could not be delivered,
    // and the server's own words say why.
    assert_eq!(o["state"], "issued", "{o}");
    let error = o["email_requests"][0]["error"].as_str().unwrap();
    assert!(error.contains("550"), "{error}");
    assert!(error.contains("mailbox unavailable"), "{error}");

    // The refused transaction left nothing behind to confuse the next one:
    // its email goes out whole, to its own recipient.
    let delivered = desk.place_order(&csr_pem, "admin@example.com").await;
    desk.wait_emails_sent(&delivered, 1).await;
    let mail = smtp.wait_for(1, |m| m.is_fulfillment()).await.remove(0);
    assert_eq!(mail.to, "admin@example.com");
    assert!(mail.text.contains(&delivered), "{}", mail.text);
    assert_eq!(
        smtp.messages().len(),
        1,
        "nothing reached the refused mailbox"
    );
}

/// `field` of every order of the list `query` selects, following
/// `next_cursor` to the last page.
async fn all_pages(desk: &Desk, query: &str, field: &str) -> Vec<String> {
    let mut values = vec![];
    let mut cursor = String::new();
    loop {
        let (status, page) = desk
            .api
            .get(&format!("/api/v1/orders?{query}&cursor={cursor}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        values.extend(
            page["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o[field].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return values,
        }
    }
}

#[tokio::test]
async fn orders_are_listed_newest_first_with_filters_and_a_cursor() {
    let desk = Desk::start(None, &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids = vec![];
    for name in [
        "a.example.com",
        "b.example.com",
        "c.other.org",
        "d.example.com",
        "e.other.org",
    ] {
        let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
        let (status, o, _) = desk
            .api
            .post(
                "/api/v1/orders",
                Some(&order_body(&csr_pem, "it@example.com", None)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{o}");
        ids.push(o["id"].as_str().unwrap().to_string());
    }
    let seen = all_pages(&desk, "limit=2", "id").await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (_, page) = desk.api.get("/api/v1/orders?domain=other.org").await;
    let names: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["common_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["e.other.org", "c.other.org"]);
    let (_, page) = desk.api.get("/api/v1/orders?domain=b.example.com").await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);

    // An order for the bare domain and a name under it is listed once under
    // that domain; a domain's list pages with its own cursor, both ways.
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "f.example.com",
        "DNS:f.example.com,DNS:example.com",
        &[],
    );
    let (status, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    for (sort, expected) in [
        (
            "newest",
            [
                "f.example.com",
                "d.example.com",
                "b.example.com",
                "a.example.com",
            ],
        ),
        (
            "oldest",
            [
                "a.example.com",
                "b.example.com",
                "d.example.com",
                "f.example.com",
            ],
        ),
    ] {
        let names = all_pages(
            &desk,
            &format!("domain=example.com&sort={sort}&limit=1"),
            "common_name",
        )
        .await;
        assert_eq!(names, expected, "domain=example.com, sort={sort}");
    }

    desk.wait_order_state(&ids[0], "issued").await;
    let (_, page) = desk
        .api
        .get("/api/v1/orders?status=issued&domain=a.example.com")
        .await;
    assert_eq!(page["orders"][0]["id"], ids[0].as_str());
}
