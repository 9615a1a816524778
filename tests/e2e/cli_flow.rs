//! The same story through the `certdesk` command line.

use serde_json::Value;

use crate::support::*;

fn json_out(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test]
async fn cli_orders_resends_and_cancels_like_the_api() {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "rsa:2048",
        "mail.example.com",
        "DNS:mail.example.com",
        &[],
    );
    let csr_file = dir.path().join("mail.csr");
    std::fs::write(&csr_file, &csr_pem).unwrap();
    let csr_arg = csr_file.to_str().unwrap();

    let out = desk.cli(&["csr", "decode", csr_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("RSA 2048") && stdout(&out).contains("mail.example.com"));

    let out = desk.cli(&["approver-emails", "mail.example.com"]);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "admin@example.com",
            "administrator@example.com",
            "webmaster@example.com",
            "hostmaster@example.com",
            "postmaster@example.com"
        ]
    );

    let order = json_out(&desk.cli(&[
        "order",
        "create",
        "--csr",
        csr_arg,
        "--admin-email",
        "postmaster-team@example.com",
        "--admin-name",
        "Mail Team",
        "--approver-email",
        "webmaster@example.com",
        "--days",
        "30",
        "--output",
        "json",
    ]));
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(order["days"], 30);

    let out = desk.cli(&["order", "list"]);
    assert!(
        stdout(&out).contains(&id) && stdout(&out).contains("Pending CA approval"),
        "{}",
        stdout(&out)
    );

    smtp.wait_for(1, |m| m.is_approval()).await;
    desk.wait_order_state(&id, "pending_approval").await;
    let out = desk.cli(&["order", "resend-approval", &id]);
    assert!(
        stdout(&out).contains("webmaster@example.com"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let link = smtp.wait_for(2, |m| m.is_approval()).await[1].approval_link();

    // Before issue, resend-email fails with the server's message.
    let out = desk.cli(&["order", "resend-email", &id, "--yes"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only once the certificate is issued"),
        "{}",
        stderr(&out)
    );

    reqwest::Client::new()
        .post(&link)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment()).await;

    // The confirmation names the admin given at order time; "n" sends nothing.
    let out = desk.cli_as(&desk.token, &["order", "resend-email", &id], Some("n\n"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Resend the fulfillment email to postmaster-team@example.com? [y/N]"),
        "{}",
        stderr(&out)
    );
    let out = desk.cli_as(&desk.token, &["order", "resend-email", &id], Some("y\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Fulfillment email requested from certdesk built-in CA; it will be sent to postmaster-team@example.com"));
    let mails = smtp.wait_for(2, |m| m.is_fulfillment()).await;
    assert_eq!(mails.len(), 2, "the declined confirmation sent nothing");
    assert!(mails.iter().all(|m| m.to == "postmaster-team@example.com"));

    let shown = desk.wait_emails_sent(&id, 4).await;
    assert_eq!(shown["state"], "issued");
    let out = desk.cli(&["order", "show", &id]);
    let text = stdout(&out);
    assert!(
        text.contains("Complete")
            && text.contains("fulfillment")
            && text.contains("resend")
            && text.contains("sent"),
        "{text}"
    );

    // Cancel: fine while pending, refused once issued.
    let out = desk.cli(&["order", "cancel", &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("can no longer be cancelled"),
        "{}",
        stderr(&out)
    );
    let order2 = json_out(&desk.cli(&[
        "order",
        "create",
        "--csr",
        csr_arg,
        "--admin-email",
        "it@example.com",
        "--approver-email",
        "admin@example.com",
        "--output",
        "json",
    ]));
    let id2 = order2["id"].as_str().unwrap().to_string();
    let approval2 = smtp.wait_for(3, |m| m.is_approval()).await.pop().unwrap();
    let cancelled = json_out(&desk.cli(&["order", "cancel", &id2, "--output", "json"]));
    assert_eq!(cancelled["state"], "cancelled");
    let r = reqwest::Client::new()
        .post(approval2.approval_link())
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::GONE,
        "a cancelled order's link cannot approve"
    );

    let filtered =
        json_out(&desk.cli(&["order", "list", "--status", "cancelled", "--output", "json"]));
    assert_eq!(filtered["orders"].as_array().unwrap().len(), 1);
    let out = desk.cli(&["order", "list", "--status", "bogus"]);
    assert!(
        !out.status.success() && stderr(&out).contains("status"),
        "{}",
        stderr(&out)
    );

    // A viewer can read but not resend; the CLI says so and exits non-zero.
    let viewer = desk.user("Default", "viewer@example.com", "viewer");
    let out = desk.cli_as(&viewer, &["order", "show", &id], None);
    assert!(out.status.success());
    let out = desk.cli_as(&viewer, &["order", "resend-email", &id, "--yes"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("viewer"), "{}", stderr(&out));
}

#[tokio::test]
async fn admin_commands_work_on_the_data_folder_and_report_errors() {
    let desk = Desk::start(None, &[]).await;
    let out = desk.cli(&["admin", "account", "create", "Acme Hosting"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = desk.cli(&["admin", "account", "create", "Acme Hosting"]);
    assert!(
        !out.status.success() && stderr(&out).contains("already exists"),
        "{}",
        stderr(&out)
    );
    let out = desk.cli(&[
        "admin",
        "user",
        "create",
        "--account",
        "Acme Hosting",
        "--email",
        "ops@acme.example",
        "--role",
        "member",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = desk.cli(&[
        "admin",
        "user",
        "create",
        "--account",
        "Acme Hosting",
        "--email",
        "bad\r\n@acme.example",
        "--role",
        "member",
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("email"),
        "{}",
        stderr(&out)
    );
    let out = desk.cli(&["admin", "token", "create", "--email", "ops@acme.example"]);
    let token = stdout(&out);
    assert!(
        token.starts_with("cdk_") && token.trim().lines().count() == 1,
        "the token alone: {token:?}"
    );
    let me = json_out(&desk.cli_as(token.trim(), &["--output", "json", "order", "list"], None));
    assert_eq!(me["orders"].as_array().unwrap().len(), 0);
    let out = desk.cli(&["admin", "token", "create", "--email", "nobody@acme.example"]);
    assert!(
        !out.status.success() && stderr(&out).contains("user not found"),
        "{}",
        stderr(&out)
    );
    let out = desk.cli(&[
        "admin",
        "user",
        "set-password",
        "--email",
        "ops@acme.example",
    ]);
    assert!(!out.status.success(), "an empty password is refused");
    let out = desk.cli_as(
        &desk.token,
        &[
            "admin",
            "user",
            "set-password",
            "--email",
            "ops@acme.example",
        ],
        Some("correct horse battery staple\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Tokens are kept hashed: the database does not hold the token itself.
    for (_, bytes) in desk.database_contents().await {
        assert!(!bytes
            .windows(token.trim().len())
            .any(|w| w == token.trim().as_bytes()));
    }
    let out = desk.cli_as("", &["order", "list"], None);
    assert!(
        !out.status.success() && stderr(&out).contains("no API token"),
        "{}",
        stderr(&out)
    );
}
