//! The desk under test: the real `certdesk` binary, started and stopped the
//! way an operator does, on its embedded SQLite default or on PostgreSQL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct DeskProcess {
    bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub url: String,
    database_url: Option<String>,
    smtp_port: u16,
    child: Option<Child>,
}

pub const ADMIN_EMAIL: &str = "bench@certdesk-bench.com";

impl DeskProcess {
    /// First start on an empty data folder: creates the CA and the
    /// administrator, and returns the API token it prints once.
    pub async fn create(
        bin: &Path,
        data: &Path,
        database_url: Option<&str>,
        smtp_port: u16,
    ) -> Result<(DeskProcess, String)> {
        let mut desk = DeskProcess {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            port: free_port()?,
            url: String::new(),
            database_url: database_url.map(str::to_string),
            smtp_port,
            child: None,
        };
        desk.url = format!("http://127.0.0.1:{}", desk.port);
        let mut child = desk.command().stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("piped");
        desk.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = line.trim().strip_prefix("API token:") {
                    let _ = tx.send(t.trim().to_string());
                }
            }
        });
        let token = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the desk's first start printed no API token")?;
        desk.wait_ready(Duration::from_secs(60)).await?;
        Ok((desk, token))
    }

    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("desk.log"))
            .expect("open the desk's log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--smtp-url")
            .arg(format!("smtp://127.0.0.1:{}", self.smtp_port))
            .arg("--admin-email")
            .arg(ADMIN_EMAIL)
            // Issuance at once (no approver), and no hourly cap on resends:
            // the benchmark resends the same orders many times.
            .arg("--validation")
            .arg("none")
            .arg("--resend-limit-per-hour")
            .arg("100000000")
            .env("CERTDESK_LOG", "warn")
            .env_remove("CERTDESK_MASTER_KEY")
            .env_remove("CERTDESK_DATABASE_URL")
            .envs(
                self.database_url
                    .iter()
                    .map(|u| ("CERTDESK_DATABASE_URL", u)),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd
    }

    /// Starts the desk and returns the time from spawn to its first healthy
    /// answer (polled every millisecond).
    pub async fn start(&mut self) -> Result<Duration> {
        let t0 = Instant::now();
        self.child = Some(self.command().spawn()?);
        self.wait_ready(Duration::from_secs(120)).await?;
        Ok(t0.elapsed())
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let end = Instant::now() + limit;
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the desk exited ({status}); see {}",
                    self.data.join("desk.log").display()
                );
            }
            if Instant::now() > end {
                bail!("the desk did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn pid(&self) -> Result<u32> {
        Ok(self.child.as_ref().context("desk not running")?.id())
    }

    /// Resident set size, from /proc.
    pub fn rss_bytes(&self) -> Result<u64> {
        let pid = self.child.as_ref().context("desk not running")?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    /// SIGTERM, as an operator's service manager stops it; SIGKILL after 30 s.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > end {
                    child.kill()?;
                    child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// `certdesk admin …` on the data folder, with `stdin` as its input.
    pub fn admin(&self, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env("CERTDESK_LOG", "warn")
            .env_remove("CERTDESK_DATABASE_URL")
            .envs(
                self.database_url
                    .iter()
                    .map(|u| ("CERTDESK_DATABASE_URL", u)),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "certdesk admin {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for DeskProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
