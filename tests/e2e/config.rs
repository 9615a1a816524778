//! Settings from the TOML file and the environment, and what the desk
//! publishes about its CA.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_config_file_sets_options_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certdesk.toml");
    std::fs::write(
        &config,
        r#"
resend_limit_per_hour = 1
mail_from = "Certificates <certs@desk.example>"

[builtin_ca]
validation = "none"
max_days = 30
name = "Example Internal CA"
"#,
    )
    .unwrap();
    let smtp = SmtpServer::start();
    let desk = Desk::start_with_env(
        Some(&smtp),
        &["--config", config.to_str().unwrap()],
        &[("CERTDESK_MAX_DAYS", "20")],
    )
    .await;
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "app.example.com",
        "DNS:app.example.com",
        &[],
    );
    let mut body = order_body(&csr_pem, "it@example.com", None);
    body["days"] = json!(25);
    let (s, p, _) = desk.api.post("/api/v1/orders", Some(&body)).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("days")),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("between 1 and 20"),
        "{p}"
    );

    body["days"] = json!(20);
    let (s, o, _) = desk.api.post("/api/v1/orders", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_str().unwrap();
    let issued = desk.wait_order_state(id, "issued").await;
    let not_before = time::OffsetDateTime::parse(
        issued["certificate"]["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let not_after = time::OffsetDateTime::parse(
        issued["certificate"]["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        not_after - not_before <= time::Duration::days(20),
        "validity no longer than ordered"
    );

    let mail = smtp.wait_for(1, |m| m.is_fulfillment()).await.remove(0);
    assert!(
        mail.text.contains("Example Internal CA"),
        "the CA's configured name"
    );
    let (s, _, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/fulfillment-email"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, p, h) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/fulfillment-email"), None)
        .await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the file's limit of 1 an hour: {p}"
    );
    assert!(h.contains_key("retry-after"));
}

#[tokio::test]
async fn a_bad_setting_stops_the_desk_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[builtin_ca]\nmax_days = 500\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("builtin_ca.max_days"),
        "{}",
        stderr(&out)
    );
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("listen"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_data_folder_whose_database_is_damaged_stops_the_desk_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("certdesk.db"), vec![b'x'; 8192]).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    // The folder, and SQLite's own reason after it.
    assert!(err.contains("cannot open the database in"), "{err}");
    assert!(err.contains("not a database"), "{err}");
}

#[tokio::test]
async fn an_idn_admin_address_receives_the_certificate() {
    let (smtp, desk, csr_pem) = issuing_desk("xn--bcher-kva.example").await;
    let (s, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@bücher.example", None)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["admin_email"], "it@xn--bcher-kva.example");
    let mail = smtp.wait_for(1, |m| m.is_fulfillment()).await.remove(0);
    assert_eq!(mail.to, "it@xn--bcher-kva.example");
    let (s, a) = desk
        .api
        .get("/api/v1/approver-emails?domain=shop.b%C3%BCcher.example")
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["addresses"][0], "admin@xn--bcher-kva.example");
}

#[tokio::test]
async fn a_database_url_that_is_not_postgres_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", "mysql://root:hunter2@127.0.0.1/certdesk"])
        .env_remove("CERTDESK_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("database_url"), "{err}");
    assert!(err.contains("only PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2"), "the password stays out: {err}");
    assert!(
        !dir.path().join("certdesk.db").exists(),
        "no SQLite database was made instead"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_stops_the_desk_saying_where_but_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on a fresh free port.
    let port = free_port();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env(
            "CERTDESK_DATABASE_URL",
            format!("postgres://desk:hunter2@127.0.0.1:{port}/certdesk"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot open the database at postgres://desk:***@127.0.0.1:{port}/certdesk"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password stays out: {err}");
    // The reason, once: not a pool's timeout after 30 s.
    assert_eq!(err.matches("refused").count(), 1, "{err}");
}

#[tokio::test]
async fn a_data_folder_that_does_not_exist_yet_is_made_on_either_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new").join("data");
    let database = if on_postgres() {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    let port = free_port();
    let mut serve = std::process::Command::new(BIN);
    serve
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("CERTDESK_DATABASE_URL")
        .envs(database.iter().map(|d| ("CERTDESK_DATABASE_URL", &d.url)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().unwrap();
    let ready = wait_for_port(port, std::time::Duration::from_secs(30));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(ready, "the desk did not start: {}", stderr(&out));
    assert!(
        data.join("master.key").exists(),
        "the master key is kept there"
    );
    assert!(data.join("ca").is_dir(), "the built-in CA is kept there");
}
