//! Bad input gets a clear error naming the field, with the exact status.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

fn tampered(csr_pem: &str) -> String {
    let mut der = pem::parse(csr_pem).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01; // inside the signature's last bytes
    pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der))
}

#[tokio::test]
async fn each_csr_fault_is_refused_with_its_own_error_on_the_csr_field() {
    let desk = Desk::start(None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |name: &str| csr(d, "ec:P-256", name, &format!("DNS:{name}"), &[]).0;
    let many: Vec<String> = (0..101).map(|i| format!("DNS:h{i}.example.com")).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "hello, I am not a CSR".into(), "csr_bad_pem"),
        (
            "a certificate, not a CSR",
            String::from_utf8(openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "/dev/null",
                "-subj",
                "/CN=x.example.com",
                "-days",
                "1",
            ]))
            .unwrap(),
            "csr_not_a_csr",
        ),
        (
            "tampered signature",
            tampered(&ok("www.example.com")),
            "csr_bad_signature",
        ),
        (
            "RSA 1024",
            csr(d, "rsa:1024", "www.example.com", "DNS:www.example.com", &[]).0,
            "csr_rsa_too_small",
        ),
        (
            "RSA 2052",
            csr(d, "rsa:2052", "www.example.com", "DNS:www.example.com", &[]).0,
            "csr_rsa_bits_not_multiple_of_8",
        ),
        (
            "RSA e=3",
            csr(
                d,
                "rsa:2048:3",
                "www.example.com",
                "DNS:www.example.com",
                &[],
            )
            .0,
            "csr_rsa_bad_exponent",
        ),
        (
            "P-521",
            csr(d, "ec:P-521", "www.example.com", "DNS:www.example.com", &[]).0,
            "csr_unsupported_curve",
        ),
        (
            "secp256k1",
            csr(
                d,
                "ec:secp256k1",
                "www.example.com",
                "DNS:www.example.com",
                &[],
            )
            .0,
            "csr_unsupported_curve",
        ),
        (
            "Ed25519",
            csr(d, "ed25519", "www.example.com", "DNS:www.example.com", &[]).0,
            "csr_ed25519_not_allowed",
        ),
        (
            "bad DNS name",
            csr(d, "ec:P-256", "www.example.com", "DNS:exa_mple..com", &[]).0,
            "csr_invalid_name",
        ),
        (
            "wildcard inside",
            csr(
                d,
                "ec:P-256",
                "www.example.com",
                "DNS:www.*.example.com",
                &[],
            )
            .0,
            "csr_bad_wildcard",
        ),
        (
            "partial wildcard",
            csr(d, "ec:P-256", "www.example.com", "DNS:w*.example.com", &[]).0,
            "csr_bad_wildcard",
        ),
        (
            "IP address",
            csr(
                d,
                "ec:P-256",
                "www.example.com",
                "DNS:www.example.com,IP:192.0.2.1",
                &[],
            )
            .0,
            "csr_ip_address_not_allowed",
        ),
        (
            "101 names",
            csr(d, "ec:P-256", "h0.example.com", &many.join(","), &[]).0,
            "csr_too_many_names",
        ),
        (
            "CA:TRUE",
            csr(
                d,
                "ec:P-256",
                "www.example.com",
                "DNS:www.example.com",
                &["basicConstraints=critical,CA:TRUE"],
            )
            .0,
            "csr_requests_ca",
        ),
    ];
    for (what, csr_pem, code) in cases {
        let (status, p, headers) = desk
            .api
            .post(
                "/api/v1/orders",
                Some(&order_body(
                    &csr_pem,
                    "it@example.com",
                    Some("admin@example.com"),
                )),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {p}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
        assert_eq!(p["field"], "csr", "{what}: {p}");
        assert_eq!(p["code"], code, "{what}: {p}");
        assert!(
            p["detail"].as_str().unwrap().starts_with("csr: "),
            "{what}: {p}"
        );
        // The same check, before ordering.
        let (status, p, _) = desk
            .api
            .post("/api/v1/csr/decode", Some(&json!({ "csr": csr_pem })))
            .await;
        assert_eq!(
            (status, p["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{what} decode: {p}"
        );
    }
    let (_, page) = desk.api.get("/api/v1/orders").await;
    assert_eq!(page["orders"], json!([]), "no bad input became an order");
}

#[tokio::test]
async fn bad_fields_and_other_peoples_orders_get_the_exact_status() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com",
        &[],
    );

    let order = |admin: &str, approver: Option<&str>| order_body(&csr_pem, admin, approver);
    let with = |mut v: Value, k: &str, val: Value| {
        v[k] = val;
        v
    };
    let field_cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "CR/LF in the admin email",
            order(
                "it@example.com\r\nBcc: victim@example.org",
                Some("admin@example.com"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin_email",
            "invalid_email",
        ),
        (
            "no @ in the admin email",
            order("it.example.com", Some("admin@example.com")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin_email",
            "invalid_email",
        ),
        (
            "LF in the approver",
            order("it@example.com", Some("admin@example.com\nBcc: x@y.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "approver_email",
            "invalid_email",
        ),
        (
            "approver not of the domain",
            order("it@example.com", Some("admin@evil.example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "approver_email",
            "approver_not_allowed",
        ),
        (
            "no approver",
            order("it@example.com", None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "approver_email",
            "required",
        ),
        (
            "line break in the name",
            with(
                order("it@example.com", Some("admin@example.com")),
                "admin_name",
                json!("A\r\nB"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin_name",
            "invalid_text",
        ),
        (
            "400 days",
            with(
                order("it@example.com", Some("admin@example.com")),
                "days",
                json!(400),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "days",
            "invalid_validity",
        ),
        (
            "0 days",
            with(
                order("it@example.com", Some("admin@example.com")),
                "days",
                json!(0),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "days",
            "invalid_validity",
        ),
        (
            "unknown CA",
            with(
                order("it@example.com", Some("admin@example.com")),
                "ca",
                json!("nope"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ca",
            "unknown_ca",
        ),
        (
            "missing csr",
            json!({"admin_email": "it@example.com"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "csr",
            "invalid_body",
        ),
        (
            "unknown language",
            with(
                order("it@example.com", Some("admin@example.com")),
                "language",
                json!("xx"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "language",
            "unsupported_language",
        ),
    ];
    for (what, body, status, field, code) in field_cases {
        let (s, p, _) = desk.api.post("/api/v1/orders", Some(&body)).await;
        assert_eq!(s, status, "{what}: {p}");
        assert_eq!(p["field"], field, "{what}: {p}");
        assert_eq!(p["code"], code, "{what}: {p}");
    }
    let (s, p) = desk.api.get("/api/v1/orders?status=shipped").await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("status")),
        "{p}"
    );
    let (s, p) = desk.api.get("/api/v1/orders?cursor=not-a-cursor").await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor")),
        "{p}"
    );
    let (s, _) = Api::new(&desk.url, "cdk_wrong").get("/api/v1/orders").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A pending order: resending its fulfillment email is too early.
    let (s, pending, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order("it@example.com", Some("admin@example.com"))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pending}");
    let pending_id = pending["id"].as_str().unwrap().to_string();
    let (s, p, _) = desk
        .api
        .post(
            &format!("/api/v1/orders/{pending_id}/fulfillment-email"),
            None,
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_state")),
        "{p}"
    );

    // Unknown order, and another account's order: both "not found".
    let (s, p) = desk
        .api
        .get("/api/v1/orders/01a22500-0000-7000-8000-000000000000")
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let stranger = desk
        .api
        .as_user(&desk.user("Other Co", "someone@other.example", "admin"));
    for path in ["", "/fulfillment-email"] {
        let (s, _) = stranger
            .get(&format!("/api/v1/orders/{pending_id}{path}"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "GET {path}");
    }
    for path in ["/fulfillment-email", "/approval-email", "/cancel"] {
        let (s, _, _) = stranger
            .post(&format!("/api/v1/orders/{pending_id}{path}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "POST {path}");
    }
    let (_, page) = stranger.get("/api/v1/orders").await;
    assert_eq!(
        page["orders"],
        json!([]),
        "another account's orders are not listed"
    );

    // Issue it, then: a viewer cannot resend; the 6th resend in an hour waits.
    let link = smtp.wait_for(1, |m| m.is_approval()).await[0].approval_link();
    reqwest::Client::new()
        .post(&link)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    desk.wait_order_state(&pending_id, "issued").await;
    let resend = format!("/api/v1/orders/{pending_id}/fulfillment-email");
    let viewer = desk
        .api
        .as_user(&desk.user("Default", "auditor@example.com", "viewer"));
    let (s, p) = viewer.get(&resend).await;
    assert_eq!(s, StatusCode::OK, "a viewer may look: {p}");
    let (s, p, _) = viewer.post(&resend, None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{p}"
    );
    let (s, p, _) = viewer
        .post(
            "/api/v1/orders",
            Some(&order("it@example.com", Some("admin@example.com"))),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");

    let (s, first, _) = desk
        .api
        .post_with(&resend, None, &[("Idempotency-Key", "retry-1")])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, again, _) = desk
        .api
        .post_with(&resend, None, &[("Idempotency-Key", "retry-1")])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        again["request_id"], first["request_id"],
        "a retried POST gets the first answer"
    );
    for _ in 0..4 {
        let (s, p, _) = desk.api.post(&resend, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    }
    let (s, p, headers) = desk.api.post(&resend, None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{p}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (3000..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("next request is possible in"));
    // A refused request with a key is refused again when retried (the key
    // is not spent on a request that was never made), and a key used for an
    // accepted one still gives that first answer.
    for _ in 0..2 {
        let (s, p, _) = desk
            .api
            .post_with(&resend, None, &[("Idempotency-Key", "retry-2")])
            .await;
        assert_eq!(
            (s, p["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
            "{p}"
        );
    }
    let (s, again, _) = desk
        .api
        .post_with(&resend, None, &[("Idempotency-Key", "retry-1")])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["request_id"], first["request_id"]);

    // An issued order can no longer be cancelled.
    let (s, p, _) = desk
        .api
        .post(&format!("/api/v1/orders/{pending_id}/cancel"), None)
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_cancellable")),
        "{p}"
    );
}
