//! The mail server: postfix's `smtp-sink`, a real SMTP server made for
//! measuring clients. It writes each message it accepts to a file of its
//! own (on tmpfs); a watcher thread in this process notes the moment each
//! file is closed (inotify) and the Message-ID in it, so the benchmark
//! measures delivery latency itself, not from the desk's records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use inotify::{Inotify, WatchMask};

#[derive(Default)]
struct Arrivals {
    count: u64,
    last: Option<Instant>,
    /// Message-ID's left part → when the sink closed the message's file. Only kept
    /// while `track` is on (the latency scenario), to bound memory.
    by_id: HashMap<String, Instant>,
    track: bool,
}

pub struct Sink {
    pub port: u16,
    dir: PathBuf,
    child: Child,
    arrivals: Arc<Mutex<Arrivals>>,
}

impl Sink {
    pub fn start(dir: &Path) -> Result<Sink> {
        std::fs::create_dir_all(dir)?;
        let port = crate::desk::free_port()?;
        let mut cmd = Command::new("smtp-sink");
        if unsafe { libc::geteuid() } == 0 {
            // smtp-sink drops root; the folder must be writable after that.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
            cmd.args(["-u", "nobody"]);
        }
        let inotify = Inotify::init().context("inotify")?;
        inotify
            .watches()
            .add(dir, WatchMask::CLOSE_WRITE)
            .context("watch the sink's folder")?;
        let child = cmd
            .arg("-d")
            .arg(format!("{}/m.", dir.display()))
            // Up to 1024 sessions at once, a listen backlog of 1024.
            .args(["-m", "1024"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start smtp-sink (Debian package postfix)")?;
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let watch = arrivals.clone();
        let folder = dir.to_path_buf();
        std::thread::spawn(move || watch_folder(inotify, &folder, &watch));
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > end {
                bail!("smtp-sink did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Sink {
            port,
            dir: dir.to_path_buf(),
            child,
            arrivals,
        })
    }

    /// Messages accepted so far.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn count(&self) -> u64 {
        self.arrivals.lock().unwrap().count
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        self.arrivals.lock().unwrap().last
    }

    /// From now on, remember when each Message-ID arrived.
    pub fn track(&self, on: bool) {
        let mut a = self.arrivals.lock().unwrap();
        a.track = on;
        if !on {
            a.by_id.clear();
        }
    }

    /// When the message of the desk's email request `request_id` arrived
    /// (its Message-ID is `<request id@domain>`).
    pub fn arrival_of_request(&self, request_id: &str) -> Option<Instant> {
        self.arrivals.lock().unwrap().by_id.get(request_id).copied()
    }

    /// Waits until `count()` reaches `n`; false if it stalls for `idle`.
    pub async fn wait_for(&self, n: u64, idle: Duration) -> bool {
        let mut seen = self.count();
        let mut since = Instant::now();
        loop {
            let now = self.count();
            if now >= n {
                return true;
            }
            if now != seen {
                seen = now;
                since = Instant::now();
            } else if since.elapsed() > idle {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn watch_folder(mut inotify: Inotify, dir: &Path, arrivals: &Mutex<Arrivals>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let events = match inotify.read_events_blocking(&mut buf) {
            Ok(e) => e,
            Err(_) => return,
        };
        let at = Instant::now();
        for event in events {
            let Some(name) = event.name else { continue };
            let path = dir.join(name);
            let tracking = arrivals.lock().unwrap().track;
            let id = if tracking {
                std::fs::read(&path).ok().and_then(|m| message_id(&m))
            } else {
                None
            };
            let _ = std::fs::remove_file(&path);
            let mut a = arrivals.lock().unwrap();
            a.count += 1;
            a.last = Some(at);
            if let Some(id) = id {
                a.by_id.insert(id, at);
            }
        }
    }
}

/// The Message-ID's left part, from the message's header block.
fn message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let value = value.trim().trim_start_matches('<');
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.split('@').next().unwrap_or(value).to_string())
    })
}

/// The sink's own acceptance rate: postfix's `smtp-source` sending
/// `messages` messages of `size` bytes over `sessions` parallel sessions.
pub fn smtp_source_rate(sink: &Sink, messages: u64, sessions: u32, size: u32) -> Result<f64> {
    let before = sink.count();
    let t0 = Instant::now();
    let status = Command::new("smtp-source")
        .args(["-s", &sessions.to_string()])
        .args(["-m", &messages.to_string()])
        .args(["-l", &size.to_string()])
        .args([
            "-f",
            "source@certdesk-bench.com",
            "-t",
            "sink@certdesk-bench.com",
        ])
        .arg(format!("127.0.0.1:{}", sink.port))
        .status()
        .context("run smtp-source (Debian package postfix)")?;
    if !status.success() {
        bail!("smtp-source failed: {status}");
    }
    let target = before + messages;
    let end = Instant::now() + Duration::from_secs(30);
    while sink.count() < target && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    let last = sink.last_arrival().unwrap_or_else(Instant::now);
    Ok(messages as f64 / last.duration_since(t0).as_secs_f64())
}
