//! Rotating the master key while the desk runs.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn rotating_the_master_key_keeps_the_ca_and_its_approval_links_working() {
    let smtp = SmtpServer::start();
    let mut desk = Desk::start(Some(&smtp), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com",
        &[],
    );
    let (_, o, _) = desk
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
    let id = o["id"].as_str().unwrap().to_string();
    let link = smtp.wait_for(1, |m| m.is_approval()).await[0].approval_link();
    desk.wait_order_state(&id, "pending_approval").await;

    let old_key = std::fs::read_to_string(desk.path("master.key")).unwrap();
    let sealed_before = std::fs::read(desk.path("ca/intermediate.key.sealed")).unwrap();
    let out = desk.cli(&["--output", "json", "admin", "rotate-master-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["ca_secrets"], 3,
        "root key, intermediate key and the pending approval link: {report}"
    );
    assert_ne!(
        std::fs::read_to_string(desk.path("master.key")).unwrap(),
        old_key
    );
    assert_ne!(
        std::fs::read(desk.path("ca/intermediate.key.sealed")).unwrap(),
        sealed_before
    );
    assert!(
        !desk.path("master.key.previous").exists(),
        "the old key is dropped once everything is re-sealed"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(desk.path("master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The running desk opens the re-sealed link: the resend carries the same one.
    let (s, _, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/approval-email"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        smtp.wait_for(2, |m| m.is_approval()).await[1].approval_link(),
        link
    );

    // Restarted with only the new key, the CA still signs.
    desk.kill();
    desk.restart().await;
    let r = reqwest::Client::new()
        .post(&link)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment()).await;

    // A second rotation finds nothing pending but the CA keys.
    let out = desk.cli(&["--output", "json", "admin", "rotate-master-key"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ca_secrets"], 2, "{report}");
}

#[tokio::test]
async fn a_master_key_from_the_environment_rotates_to_the_one_given() {
    let old = "11".repeat(32);
    let new = "22".repeat(32);
    let mut desk = Desk::start_with_env(
        None,
        &["--validation", "none"],
        &[("CERTDESK_MASTER_KEY", &old)],
    )
    .await;
    assert!(
        !desk.path("master.key").exists(),
        "no key file when the key comes from the environment"
    );
    let rotate = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["admin", "rotate-master-key", "--data-dir"])
            .arg(desk.data.path());
        if let Some(db) = &desk.database {
            cmd.env("CERTDESK_DATABASE_URL", &db.url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = rotate(&[("CERTDESK_MASTER_KEY", &old)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("CERTDESK_NEW_MASTER_KEY"),
        "{}",
        stderr(&out)
    );
    let out = rotate(&[
        ("CERTDESK_MASTER_KEY", &old),
        ("CERTDESK_NEW_MASTER_KEY", &new),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    desk.kill();
    desk.set_env("CERTDESK_MASTER_KEY", &new);
    desk.restart().await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "env.example.com",
        "DNS:env.example.com",
        &[],
    );
    let (_, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    desk.wait_order_state(o["id"].as_str().unwrap(), "issued")
        .await;
}
