//! Real parts for the end-to-end tests: a real SMTP server process
//! (aiosmtpd writing a Maildir), the real `certdesk` binary on a random port
//! with a fresh data folder, and CSRs made by openssl.
//!
//! The whole suite runs on either database (DESIGN rule 5): SQLite by
//! default; with `CERTDESK_E2E_DATABASE=postgres` every desk gets a fresh
//! database of its own on the PostgreSQL server at `CERTDESK_TEST_POSTGRES`
//! (`scripts/test` runs the suite both ways).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_certdesk");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Rows of a query on a desk's database, read directly, each mapped by
/// `|r| …` (a macro, as the row type differs between the two databases).
macro_rules! rows {
    ($desk:expr, $query:expr, |$r:ident| $map:expr) => {{
        use sqlx::Row;
        match &$desk.database {
            Some(db) => {
                let mut c = db.connect().await;
                let rows = sqlx::query($query).fetch_all(&mut c).await.unwrap();
                rows.iter().map(|$r| $map).collect()
            }
            None => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename($desk.path("certdesk.db"))
                    .read_only(true);
                let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
                let rows = sqlx::query($query).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows.iter().map(|$r| $map).collect()
            }
        }
    }};
}

/// A real SMTP server: Debian's python3-aiosmtpd with its Maildir handler.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    maildir: PathBuf,
    pipelining: bool,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// aiosmtpd as it comes: one command at a time.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(false)
    }

    /// aiosmtpd offering PIPELINING, as production servers do, and
    /// refusing the mailbox `refused@…` with a 550
    /// (tests/e2e/pipelining_mailbox.py).
    pub fn start_pipelining() -> SmtpServer {
        SmtpServer::start_with(true)
    }

    fn start_with(pipelining: bool) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let mut s = SmtpServer {
            child: None,
            port: free_port(),
            maildir,
            pipelining,
            _dir: dir,
        };
        s.resume();
        s
    }

    /// Starts (again) on the same port and Maildir.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "SMTP server already running");
        let handler = if self.pipelining {
            "pipelining_mailbox.PipeliningMailbox"
        } else {
            "aiosmtpd.handlers.Mailbox"
        };
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", handler])
            .arg(&self.maildir)
            .env(
                "PYTHONPATH",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (Debian python3-aiosmtpd; scripts/test installs it)");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(15)),
            "aiosmtpd did not start"
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Each request's message arrived exactly once (matched by the
    /// request id in its Message-ID), and `fulfillment` of them in all.
    pub fn assert_each_sent_once(&self, requests: &[String], fulfillment: usize) {
        let mails = self.messages();
        for request in requests {
            let n = mails
                .iter()
                .filter(|m| m.message_id.contains(request.as_str()))
                .count();
            assert_eq!(n, 1, "request {request} delivered {n} times");
        }
        assert_eq!(
            mails.iter().filter(|m| m.is_fulfillment()).count(),
            fulfillment
        );
    }

    /// SIGSTOP: connections are still taken by the kernel, but nothing
    /// answers them — a mail server hung, or too slow to matter.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`SmtpServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("SMTP server running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(self.maildir.join("new"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| Mail::parse(&std::fs::read(p).unwrap()))
            .collect()
    }

    /// Waits until `n` messages match `pred`, and returns them.
    pub async fn wait_for(&self, n: usize, pred: impl Fn(&Mail) -> bool) -> Vec<Mail> {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<Mail> = self.messages().into_iter().filter(|m| pred(m)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < end,
                "expected {n} matching messages, got {}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A delivered message, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub to: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<(String, Vec<u8>)>,
}

impl Mail {
    pub fn parse(raw: &[u8]) -> Mail {
        use mail_parser::MimeHeaders;
        let m = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("parsable message");
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string();
        Mail {
            subject: m.subject().unwrap_or_default().to_string(),
            to,
            message_id: m.message_id().unwrap_or_default().to_string(),
            text: m.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
            html: m.body_html(0).map(|t| t.to_string()).unwrap_or_default(),
            attachments: m
                .attachments()
                .map(|a| {
                    (
                        a.attachment_name().unwrap_or_default().to_string(),
                        a.contents().to_vec(),
                    )
                })
                .collect(),
        }
    }

    pub fn attachment(&self, name: &str) -> String {
        let (_, body) = self
            .attachments
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no attachment {name} in {:?}", self.subject));
        String::from_utf8(body.clone()).unwrap()
    }

    /// In English or Italian, as the order's language says.
    pub fn is_fulfillment(&self) -> bool {
        self.subject.starts_with("Your SSL certificate for")
            || self.subject.starts_with("Il tuo certificato SSL per")
    }

    pub fn is_approval(&self) -> bool {
        self.subject
            .starts_with("Approve the SSL certificate request")
            || self
                .subject
                .starts_with("Approva la richiesta di certificato SSL")
    }

    pub fn approval_link(&self) -> String {
        let start = self
            .text
            .find("http://")
            .expect("approval link in the text body");
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

/// Which database the suite runs on.
pub fn on_postgres() -> bool {
    match std::env::var("CERTDESK_E2E_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("CERTDESK_E2E_DATABASE={other:?}: expected sqlite or postgres"),
    }
}

/// A fresh PostgreSQL database for one desk, dropped with it.
pub struct TestDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        use sqlx::Connection;
        let server = std::env::var("CERTDESK_TEST_POSTGRES").expect(
            "CERTDESK_E2E_DATABASE=postgres needs CERTDESK_TEST_POSTGRES=postgres://USER@HOST:PORT/DB \
             (scripts/test starts a server when none is reachable)",
        );
        let name = format!("certdesk_e2e_{:016x}", rand_suffix());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {server}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        TestDatabase {
            server,
            name,
            url: url.to_string(),
        }
    }

    pub async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime: a thread of its own may block.
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The real `certdesk serve` on a random port with its own data folder (and,
/// on PostgreSQL, its own database).
pub struct Desk {
    child: Option<Child>,
    pub url: String,
    pub token: String,
    pub data: tempfile::TempDir,
    pub database: Option<TestDatabase>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub api: Api,
}

impl Desk {
    pub async fn start(smtp: Option<&SmtpServer>, extra: &[&str]) -> Desk {
        Desk::start_with_env(smtp, extra, &[]).await
    }

    pub async fn start_with_env(
        smtp: Option<&SmtpServer>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Desk {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data.path().display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        if let Some(s) = smtp {
            args.push("--smtp-url".into());
            args.push(s.url());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let url = format!("http://127.0.0.1:{port}");
        let database = if on_postgres() {
            Some(TestDatabase::create().await)
        } else {
            None
        };
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(db) = &database {
            env.push(("CERTDESK_DATABASE_URL".into(), db.url.clone()));
        }
        let mut desk = Desk {
            child: None,
            url: url.clone(),
            token: String::new(),
            data,
            database,
            args,
            env,
            api: Api::new(&url, ""),
        };
        let first_output = desk.spawn();
        let token = first_output
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("API token:")
                    .map(|t| t.trim().to_string())
            })
            .expect("first start prints the administrator's API token");
        desk.token = token.clone();
        desk.api = Api::new(&url, &token);
        desk.wait_ready().await;
        desk
    }

    /// Spawns the process and returns what it printed on stdout until ready.
    fn spawn(&mut self) -> String {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("desk.log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(&self.args)
            .env("CERTDESK_LOG", "info")
            .env_remove("CERTDESK_MASTER_KEY")
            .env_remove("CERTDESK_DATABASE_URL")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start certdesk");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        // The first-run banner is printed before the listener starts; read it
        // on a thread so a desk that prints nothing does not block us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if line.contains("CERTDESK_TOKEN=") {
                    break;
                }
            }
            let _ = tx.send(text);
        });
        rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.url)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "desk did not become ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flushing — as a crash or `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: the desk stops as an operator stops it, and has exited when
    /// this returns.
    pub fn terminate(&mut self) {
        let mut c = self.child.take().expect("the desk is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the desk did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the desk first");
        self.spawn();
        self.wait_ready().await;
    }

    /// Changes an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("desk.log")).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.data.path().join(rel)
    }

    /// Runs the CLI against this desk with the administrator's token.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args, None)
    }

    pub fn cli_as(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .env("CERTDESK_URL", &self.url)
            .env("CERTDESK_TOKEN", token)
            .env("HOME", self.data.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CERTDESK_CONFIG")
            .env("CERTDESK_DATA_DIR", self.data.path())
            .env_remove("CERTDESK_DATABASE_URL")
            .envs(
                self.database
                    .iter()
                    .map(|db| ("CERTDESK_DATABASE_URL", db.url.as_str())),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// A user of a new account (or of the first account when `account` is
    /// "Default") with the given role; returns its API token.
    pub fn user(&self, account: &str, email: &str, role: &str) -> String {
        if account != "Default" {
            let out = self.cli(&["admin", "account", "create", account]);
            assert!(
                out.status.success() || stderr(&out).contains("already exists"),
                "{}",
                stderr(&out)
            );
        }
        let out = self.cli(&[
            "admin",
            "user",
            "create",
            "--account",
            account,
            "--email",
            email,
            "--role",
            role,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = self.cli(&["admin", "token", "create", "--email", email]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    pub async fn root_pem(&self) -> String {
        reqwest::get(format!("{}/ca/builtin/root.pem", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn intermediate_pem(&self) -> String {
        reqwest::get(format!("{}/ca/builtin/intermediate.pem", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the order reaches `state`, and returns it.
    pub async fn wait_order_state(&self, id: &str, state: &str) -> Value {
        self.wait_order(id, |o| o["state"] == state).await
    }

    /// The order once `n` of its email requests are sent.
    pub async fn wait_emails_sent(&self, id: &str, n: usize) -> Value {
        self.wait_order(id, |o| {
            o["email_requests"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "sent")
                .count()
                == n
        })
        .await
    }

    /// Places an order for `csr_pem` with `admin` as its administrator and
    /// no approver, and returns its id.
    pub async fn place_order(&self, csr_pem: &str, admin: &str) -> String {
        let (status, order, _) = self
            .api
            .post("/api/v1/orders", Some(&order_body(csr_pem, admin, None)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order["id"].as_str().unwrap().to_string()
    }

    pub async fn wait_order(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, o) = self.api.get(&format!("/api/v1/orders/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{o}");
            if pred(&o) {
                return o;
            }
            assert!(
                Instant::now() < end,
                "order never got there: {o}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Desk {
    /// The audit log as the desk wrote it, oldest first: (actor, action,
    /// subject, detail), read from its database.
    pub async fn audit_events(&self) -> Vec<(String, String, String, Value)> {
        let rows: Vec<(String, String, String, String)> = rows!(
            self,
            "SELECT actor, action, subject, detail FROM audit_events ORDER BY id",
            |r| (r.get(0), r.get(1), r.get(2), r.get(3))
        );
        rows.into_iter()
            .map(|(actor, action, subject, detail)| {
                (
                    actor,
                    action,
                    subject,
                    serde_json::from_str(&detail).unwrap(),
                )
            })
            .collect()
    }

    /// Jobs in the desk's queue that a desk holds the lease of.
    pub async fn leased_jobs(&self) -> i64 {
        let n: Vec<i64> = rows!(
            self,
            "SELECT COUNT(*) FROM jobs WHERE locked_until IS NOT NULL",
            |r| r.get(0)
        );
        n[0]
    }

    /// Everything the desk's database holds, as (where, bytes): on SQLite the
    /// database file with its WAL and shared-memory files, on PostgreSQL every
    /// row of every table (text as UTF-8, binary columns as their raw bytes).
    pub async fn database_contents(&self) -> Vec<(String, Vec<u8>)> {
        let Some(db) = &self.database else {
            return ["certdesk.db", "certdesk.db-wal", "certdesk.db-shm"]
                .into_iter()
                .filter_map(|f| Some((f.to_string(), std::fs::read(self.path(f)).ok()?)))
                .collect();
        };
        use sqlx::Row;
        let mut c = db.connect().await;
        let columns = sqlx::query(
            "SELECT table_name::text, column_name::text, data_type::text
             FROM information_schema.columns WHERE table_schema = 'public'
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let mut out = Vec::new();
        for col in &columns {
            let (table, column, kind): (String, String, String) =
                (col.get(0), col.get(1), col.get(2));
            let sql = if kind == "bytea" {
                format!("SELECT coalesce(\"{column}\", ''::bytea) FROM \"{table}\"")
            } else {
                format!(
                    "SELECT convert_to(coalesce(\"{column}\"::text, ''), 'UTF8') FROM \"{table}\""
                )
            };
            let rows = sqlx::query(&sql);
            let mut bytes = Vec::new();
            for r in rows.fetch_all(&mut c).await.unwrap() {
                bytes.extend(r.get::<Vec<u8>, _>(0));
                bytes.push(b'\n');
            }
            out.push((format!("{table}.{column}"), bytes));
        }
        out
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn as_user(&self, token: &str) -> Api {
        Api::new(&self.base, token)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> (StatusCode, Value, HeaderMap) {
        self.post_with(path, body, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }
}

/// Runs openssl, panicking with its error output on failure.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A CSR made by openssl. `key` is a genpkey spec (`ec:P-256`, `rsa:2048`,
/// `rsa:2048:3` for exponent 3, `ed25519`); `sans` e.g. `DNS:a.example.com`.
pub fn csr(dir: &Path, key: &str, cn: &str, sans: &str, extra_ext: &[&str]) -> (String, PathBuf) {
    let key_path = dir.join(format!("key-{}.pem", rand_suffix()));
    let kp = key_path.to_str().unwrap();
    let parts: Vec<&str> = key.split(':').collect();
    let mut gen: Vec<String> = vec!["genpkey".into(), "-out".into(), kp.into()];
    match parts[0] {
        "ec" => gen.extend(
            ["-algorithm", "EC", "-pkeyopt"]
                .map(String::from)
                .into_iter()
                .chain([format!("ec_paramgen_curve:{}", parts[1])]),
        ),
        "rsa" => {
            gen.extend(
                ["-algorithm", "RSA", "-pkeyopt"]
                    .map(String::from)
                    .into_iter()
                    .chain([format!("rsa_keygen_bits:{}", parts[1])]),
            );
            if let Some(e) = parts.get(2) {
                gen.extend(["-pkeyopt".to_string(), format!("rsa_keygen_pubexp:{e}")]);
            }
        }
        "ed25519" => gen.extend(["-algorithm", "ED25519"].map(String::from)),
        other => panic!("unknown key spec {other}"),
    }
    openssl(&gen.iter().map(String::as_str).collect::<Vec<_>>());
    let subj = format!("/CN={cn}");
    let mut req: Vec<String> = vec![
        "req".into(),
        "-new".into(),
        "-key".into(),
        kp.into(),
        "-subj".into(),
        subj,
    ];
    if !sans.is_empty() {
        req.extend(["-addext".into(), format!("subjectAltName={sans}")]);
    }
    for e in extra_ext {
        req.extend(["-addext".into(), e.to_string()]);
    }
    let pem = openssl(&req.iter().map(String::as_str).collect::<Vec<_>>());
    (String::from_utf8(pem).unwrap(), key_path)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 32
}

/// The SubjectPublicKeyInfo DER of a certificate or a CSR, via openssl.
pub fn public_key_of_cert(cert_pem_path: &Path) -> Vec<u8> {
    openssl(&[
        "x509",
        "-in",
        cert_pem_path.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ])
}

pub fn public_key_of_key(key_path: &Path) -> Vec<u8> {
    openssl(&["pkey", "-in", key_path.to_str().unwrap(), "-pubout"])
}

/// A desk that issues at once (validation off) and mails its own SMTP
/// server, with a P-256 CSR for `name`: how most issuance tests start. The
/// server pipelines, as production ones do; `SmtpServer::start` elsewhere
/// keeps the one-command-at-a-time path tested.
pub async fn issuing_desk(name: &str) -> (SmtpServer, Desk, String) {
    let smtp = SmtpServer::start_pipelining();
    let desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (csr_pem, _) = csr(dir.path(), "ec:P-256", name, &format!("DNS:{name}"), &[]);
    (smtp, desk, csr_pem)
}

pub fn order_body(csr: &str, admin: &str, approver: Option<&str>) -> Value {
    serde_json::json!({
        "csr": csr,
        "admin_email": admin,
        "admin_name": "Domain Admin",
        "approver_email": approver,
    })
}
