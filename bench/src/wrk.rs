//! Closed-loop HTTP load from a separate process: `wrk` (Debian package
//! wrk), 16 connections on 2 threads, latencies measured by wrk itself.
//! A Lua `done` hook prints wrk's figures as one JSON line for us to read.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const CONNECTIONS: u32 = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    /// Responses with a status of 400 or more.
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub bytes: u64,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"bytes":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.bytes))
end
"#;

/// A GET load on `path` with `headers`.
pub fn get(
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    duration: Duration,
    work: &Path,
) -> Result<WrkResult> {
    run(base, path, headers, duration, work, "")
}

/// A POST load with an empty body, cycling through `paths`.
pub fn post_cycle(
    base: &str,
    paths: &[String],
    headers: &[(&str, String)],
    duration: Duration,
    work: &Path,
) -> Result<WrkResult> {
    let list = paths
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        r#"
local paths = {{{list}}}
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("POST", paths[i], nil, "")
end
"#
    );
    run(base, &paths[0], headers, duration, work, &script)
}

fn run(
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    duration: Duration,
    work: &Path,
    script: &str,
) -> Result<WrkResult> {
    let lua = work.join(format!("wrk-{}.lua", std::process::id()));
    std::fs::write(&lua, format!("{script}\n{DONE}"))?;
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "2", "-c", &CONNECTIONS.to_string()])
        .arg("-d")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .args(["--timeout", "10s", "-s"])
        .arg(&lua);
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("{base}{path}"));
    let shown = format!(
        "wrk {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().context("run wrk (Debian package wrk)")?;
    let _ = std::fs::remove_file(&lua);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{shown} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .with_context(|| format!("no summary from wrk: {stdout}"))?;
    let r: WrkResult = serde_json::from_str(line)?;
    if r.non_2xx > 0 || r.socket_errors > 0 || r.requests == 0 {
        bail!(
            "{path}: {} of {} responses were errors, {} socket errors",
            r.non_2xx,
            r.requests,
            r.socket_errors
        );
    }
    Ok(r)
}
