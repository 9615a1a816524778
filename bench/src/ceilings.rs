//! What this machine can do at most, measured in the same run as the desk:
//! the figures the desk's are divided by.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Small transactions committed per second by one connection, with the
/// desk's own settings (WAL, synchronous=NORMAL), on the same disk as its
/// database: the most a single SQLite writer can commit one by one. Straight
/// through SQLite's C API (rusqlite), so the figure is SQLite's, not a
/// driver's.
pub async fn sqlite_commits_per_second(dir: &Path, duration: Duration) -> Result<f64> {
    let path = dir.join("commit-probe.db");
    let probe = path.clone();
    let rate = tokio::task::spawn_blocking(move || -> Result<f64> {
        let conn = rusqlite::Connection::open(&probe)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)",
        )?;
        let t0 = Instant::now();
        let mut commits = 0u64;
        while t0.elapsed() < duration {
            conn.execute_batch("BEGIN")?;
            conn.prepare_cached("INSERT INTO probe (payload) VALUES (?)")?
                .execute(["a job row of about this size, with a key and a payload"])?;
            conn.execute_batch("COMMIT")?;
            commits += 1;
        }
        Ok(commits as f64 / t0.elapsed().as_secs_f64())
    })
    .await??;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

/// ECDSA P-256 signatures per second on all cores: `openssl speed -multi`.
pub fn ecdsa_p256_signs_per_second(cores: usize, seconds: u64) -> Result<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string()])
        .args(["-multi", &cores.to_string(), "ecdsap256"])
        .output()
        .context("run openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  33412.0  11567.0"
    let line = text
        .lines()
        .find(|l| l.contains("(nistp256)"))
        .with_context(|| format!("no nistp256 line in openssl speed's output: {text}"))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers
        .len()
        .checked_sub(2)
        .map(|i| numbers[i])
        .context("no sign/s column")
}
