//! DESIGN rule 2: a process killed at any moment loses no accepted request,
//! and a request is delivered once.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn a_resend_accepted_before_a_crash_is_delivered_exactly_once_after_restart() {
    let mut smtp = SmtpServer::start();
    let mut desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com",
        &[],
    );
    let (_, order, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    let id = order["id"].as_str().unwrap().to_string();
    desk.wait_order_state(&id, "issued").await;
    smtp.wait_for(1, |m| m.is_fulfillment()).await;

    // The mail server goes away; one resend is tried and waits to be retried,
    // another is accepted just before the desk is killed.
    smtp.stop();
    let resend = format!("/api/v1/orders/{id}/fulfillment-email");
    let (s, tried, _) = desk.api.post(&resend, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let tried_id = tried["request_id"].as_str().unwrap().to_string();
    let o = desk
        .wait_order(&id, |o| {
            o["email_requests"].as_array().unwrap().iter().any(|r| {
                r["id"] == tried_id.as_str()
                    && r["error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("will retry"))
            })
        })
        .await;
    assert!(
        o["email_requests"].to_string().contains("will retry"),
        "the reason shows while it waits"
    );
    let (s, fresh, _) = desk.api.post(&resend, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let fresh_id = fresh["request_id"].as_str().unwrap().to_string();
    desk.kill();

    smtp.resume();
    desk.restart().await;
    desk.wait_emails_sent(&id, 3).await;
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    smtp.assert_each_sent_once(&[tried_id, fresh_id], 3);
}

/// Resends beyond the jobs the desk runs at once (16 on SQLite, 48 on
/// PostgreSQL: `certdesk::worker::tasks`) wait for a free slot
/// in the desk's memory, their jobs written leased to the desk. Killed while
/// they wait, the desk loses none: started again, it sends each once.
#[tokio::test]
async fn resends_waiting_behind_a_hung_mail_server_survive_a_crash_and_go_out_once() {
    resends_waiting_behind_a_hung_mail_server(false).await;
}

/// Stopped by SIGTERM instead, the desk gives back the leases of the jobs
/// it had not started, for any desk to take at once.
#[tokio::test]
async fn a_desk_stopping_gives_back_the_resends_it_had_not_started() {
    resends_waiting_behind_a_hung_mail_server(true).await;
}

async fn resends_waiting_behind_a_hung_mail_server(graceful: bool) {
    let smtp = SmtpServer::start();
    let mut desk = Desk::start(
        Some(&smtp),
        &["--validation", "none", "--resend-limit-per-hour", "100"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let name = "hung.example.com";
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
    let id = desk.place_order(&csr_pem, "admin@example.com").await;
    desk.wait_order_state(&id, "issued").await;
    desk.wait_emails_sent(&id, 1).await;

    // Every send from here on hangs, holding its slot.
    smtp.freeze();
    let slots = certdesk::worker::tasks(on_postgres());
    let resends = slots + 8;
    let resend = format!("/api/v1/orders/{id}/fulfillment-email");
    let mut requests = Vec::new();
    for _ in 0..resends {
        let (status, accepted, _) = desk.api.post(&resend, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        requests.push(accepted["request_id"].as_str().unwrap().to_string());
    }
    // As many are being sent as the desk runs at once, the rest wait:
    // every job held by this desk, none left for a claim (which the busy
    // workers could not make).
    assert_eq!(desk.leased_jobs().await, resends as i64);
    if graceful {
        desk.terminate();
        assert_eq!(
            desk.leased_jobs().await,
            slots as i64,
            "only the sends under way keep their leases"
        );
    } else {
        desk.kill();
    }

    smtp.thaw();
    desk.restart().await;
    desk.wait_emails_sent(&id, resends + 1).await;
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    smtp.assert_each_sent_once(&requests, resends + 1);
}

/// A listener that greets every connection with `reply` and hangs up: a
/// mail server refusing service, permanently (5xx) or for now (4xx).
fn refusing_smtp_server(reply: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut s = stream;
            let _ = s.write_all(reply);
        }
    });
    format!("smtp://127.0.0.1:{port}")
}

#[tokio::test]
async fn smtp_5xx_fails_the_request_with_the_servers_reply_and_4xx_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "www.example.com",
        "DNS:www.example.com",
        &[],
    );
    for (reply, state, shown) in [
        (&b"554 5.7.1 relay denied\r\n"[..], "failed", "relay denied"),
        (
            &b"421 4.3.2 try again later\r\n"[..],
            "queued",
            "will retry",
        ),
    ] {
        let url = refusing_smtp_server(reply);
        let desk = Desk::start(None, &["--validation", "none", "--smtp-url", &url]).await;
        let (_, order, _) = desk
            .api
            .post(
                "/api/v1/orders",
                Some(&order_body(&csr_pem, "it@example.com", None)),
            )
            .await;
        let id = order["id"].as_str().unwrap();
        let o = desk
            .wait_order(id, |o| {
                o["email_requests"].as_array().is_some_and(|r| {
                    r.iter().any(|r| {
                        r["state"] == state
                            && r["error"].as_str().is_some_and(|e| e.contains(shown))
                    })
                })
            })
            .await;
        assert_eq!(o["state"], "issued", "the certificate was issued: {o}");
        let error = o["email_requests"][0]["error"].as_str().unwrap();
        assert!(
            error.contains(&String::from_utf8_lossy(&reply[..3]).to_string()),
            "the server's reply is shown: {error}"
        );
    }
}

/// The fulfillment email goes out before the order is recorded issued, so
/// that both land in one commit; a mail server that hangs does not keep the
/// order looking unissued. The order shows issued with its email forwarded,
/// and the email goes out, once, when the server answers.
#[tokio::test]
async fn an_order_issued_behind_a_hung_mail_server_shows_issued_and_its_email_goes_out_once_it_answers(
) {
    let smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let name = "slow-mail.example.com";
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
    smtp.freeze();
    let id = desk.place_order(&csr_pem, "admin@example.com").await;
    let o = desk.wait_order_state(&id, "issued").await;
    let request = &o["email_requests"][0];
    assert_eq!(request["state"], "forwarded", "{o}");
    assert!(
        !issuance_log(&desk, &id)
            .await
            .contains(&"email.fulfillment.sent".to_string()),
        "nothing sent yet"
    );
    let request_id = request["id"].as_str().unwrap().to_string();

    smtp.thaw();
    assert_sent_once_after_the_issue(&desk, &smtp, &id, request_id).await;
}

/// With the mail server down when the certificate is issued, the order
/// shows issued with its email waiting and why, and the email goes out
/// when the server is back.
#[tokio::test]
async fn an_order_issued_while_the_mail_server_is_down_shows_issued_and_its_email_goes_out_when_it_returns(
) {
    let mut smtp = SmtpServer::start();
    let desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let name = "no-mail.example.com";
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
    smtp.stop();
    let id = desk.place_order(&csr_pem, "admin@example.com").await;
    let o = desk.wait_order_state(&id, "issued").await;
    let request = &o["email_requests"][0];
    assert_eq!(request["state"], "queued", "{o}");
    assert!(
        request["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("will retry")),
        "the reason shows while it waits: {o}"
    );
    let request_id = request["id"].as_str().unwrap().to_string();

    smtp.resume();
    assert_sent_once_after_the_issue(&desk, &smtp, &id, request_id).await;
}

/// The order's one email goes out once, and the audit log has it after the
/// issue.
async fn assert_sent_once_after_the_issue(
    desk: &Desk,
    smtp: &SmtpServer,
    order_id: &str,
    request_id: String,
) {
    desk.wait_emails_sent(order_id, 1).await;
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    smtp.assert_each_sent_once(&[request_id], 1);
    assert_eq!(
        issuance_log(desk, order_id).await,
        ["order.placed", "order.issued", "email.fulfillment.sent"]
    );
}

/// The audit log's actions about one order, oldest first.
async fn issuance_log(desk: &Desk, order_id: &str) -> Vec<String> {
    desk.audit_events()
        .await
        .into_iter()
        .filter(|(_, _, subject, _)| subject == order_id)
        .map(|(_, action, _, _)| action)
        .collect()
}
