//! A real browser for the console tests: Debian's Chromium, headless, driven
//! over WebDriver by its own chromedriver (fantoccini as the client).
//!
//! Each `Browser` has its own chromedriver on a free 127.0.0.1 port and its
//! own empty Chromium profile in a temporary folder, so tests running in
//! parallel threads never share a port or a profile. `close()` ends the
//! session (Chromium quits) and stops chromedriver; if a test panics first,
//! dropping the `Browser` kills Chromium and chromedriver by process id.
//!
//! The helpers panic with the page's URL and visible text on failure, so a
//! console test reads as a list of steps:
//!
//! ```ignore
//! let browser = Browser::start().await;
//! browser.goto(&format!("{}/console", desk.url)).await;
//! browser.fill("#email", "admin@localhost").await;
//! browser.click("button[type=submit]").await;
//! browser.wait_for_text("h1", "Orders").await;
//! browser.screenshot("orders").await;
//! browser.close().await;
//! ```

// Helpers for the console tests to come; not all are used yet.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::free_port;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long `wait_for` and the helpers built on it wait for an element.
pub const WAIT: Duration = Duration::from_secs(10);

/// The desktop size used for screenshots, and a phone's (iPhone 12 to 15).
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// Flags Chromium needs here, running as root without network
/// (/work/shared/TESTING.md); `--user-data-dir` is added per browser.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    // Same pixels on every machine: no HiDPI scaling, no overlay scrollbars
    // changing the layout width.
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
];

pub struct Browser {
    pub client: fantoccini::Client,
    driver: Driver,
}

/// The chromedriver process, the Chromium it started, and the temporary
/// folder holding Chromium's profile and chromedriver's log.
struct Driver {
    child: Child,
    chromium_pid: Option<u32>,
    dir: tempfile::TempDir,
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Kills Chromium (when still a child of our chromedriver) and chromedriver.
    fn kill(&mut self) {
        if let Some(pid) = self.chromium_pid.take() {
            if parent_of(pid) == Some(self.child.id()) {
                // SAFETY: plain syscall on a pid checked to be our Chromium.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The parent pid of `pid`, from /proc (None when it is gone).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Browser {
    /// Starts chromedriver on a free 127.0.0.1 port and a headless Chromium
    /// session in English (`Accept-Language: en-US,en`) with a 1280x900
    /// viewport.
    pub async fn start() -> Browser {
        Browser::start_with_language("en-US").await
    }

    /// As `start`, with Chromium's UI and `Accept-Language` in `lang`
    /// (e.g. "it" for the Italian console, "en-US" sends "en-US,en").
    pub async fn start_with_language(lang: &str) -> Browser {
        // A free port can be taken by another test between our probe and
        // chromedriver's bind; then chromedriver exits and we try again.
        let mut errors = vec![];
        for _ in 0..3 {
            match Browser::try_start(lang).await {
                Ok(b) => {
                    b.desktop().await;
                    return b;
                }
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start Chromium via chromedriver (Debian `chromium` and \
             `chromium-driver`; scripts/test installs them):\n{}",
            errors.join("\n---\n")
        );
    }

    async fn try_start(lang: &str) -> Result<Browser, String> {
        let dir = tempfile::Builder::new()
            .prefix("certdesk-browser-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).map_err(|e| format!("profile dir: {e}"))?;
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {CHROMEDRIVER}: {e}"))?;
        let mut driver = Driver {
            child,
            chromium_pid: None,
            dir,
        };

        // Wait until chromedriver accepts connections (or exits).
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(format!(
                    "chromedriver on port {port} exited ({status}); log:\n{}",
                    driver.log()
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() > end {
                return Err(format!(
                    "chromedriver did not listen on port {port}; log:\n{}",
                    driver.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        // Headless Chromium's window still counts a frame around the
        // viewport (900 high gives 757); `start` then sets the viewport.
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        args.push(format!("--lang={lang}"));
        let accept_languages = match lang.split_once('-') {
            Some((base, _)) => format!("{lang},{base}"),
            None => lang.to_string(),
        };
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 30_000, "script": 10_000 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": { "intl.accept_languages": accept_languages },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| {
                format!(
                    "new WebDriver session on port {port}: {e}; chromedriver log:\n{}",
                    driver.log()
                )
            })?;
        driver.chromium_pid = client
            .capabilities()
            .and_then(|c| c.get("goog:processID"))
            .and_then(Value::as_u64)
            .map(|p| p as u32);
        Ok(Browser { client, driver })
    }

    /// Closes the session (Chromium quits) and stops chromedriver.
    pub async fn close(self) {
        let Browser { client, mut driver } = self;
        if let Err(e) = client.close().await {
            eprintln!("closing the WebDriver session: {e}");
        } else if let Some(pid) = driver.chromium_pid {
            // Give Chromium a moment to exit on its own before the kill.
            let end = Instant::now() + Duration::from_secs(5);
            while parent_of(pid) == Some(driver.child.id()) && Instant::now() < end {
                if is_zombie(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        driver.kill();
    }

    /// chromedriver's log so far (for a failing test's message).
    pub fn driver_log(&self) -> String {
        self.driver.log()
    }

    /// Where screenshots go: docs/screenshots/ in the crate.
    /// docs/screenshots/ when CERTDESK_SCREENSHOTS=1 (to refresh the ones
    /// the README shows), else target/screenshots/: every run takes them, but
    /// only a deliberate run changes committed files.
    pub fn screenshot_dir() -> PathBuf {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        if std::env::var("CERTDESK_SCREENSHOTS").as_deref() == Ok("1") {
            root.join("docs/screenshots")
        } else {
            root.join("target/screenshots")
        }
    }

    /// Saves a PNG of the viewport to `screenshot_dir()/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = match self.client.screenshot().await {
            Ok(png) => png,
            Err(e) => panic!("screenshot {name} of {}: {e}", self.url().await),
        };
        assert!(
            png.starts_with(b"\x89PNG"),
            "screenshot {name} is not a PNG"
        );
        let dir = Browser::screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        // Write then rename: a reader never sees half a file.
        let tmp = dir.join(format!(".{name}.png.{}", std::process::id()));
        std::fs::write(&tmp, &png).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.png"))).unwrap();
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("could not open {url}: {e}");
        }
    }

    /// The page's current URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("<unknown URL: {e}>"))
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client.title().await.unwrap_or_default()
    }

    /// What a panic message needs: the URL, the title and the visible text.
    async fn context(&self) -> String {
        let body = match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let mut body: String = body.chars().take(2000).collect();
        if body.is_empty() {
            body = "<no visible text>".into();
        }
        format!(
            "page {} (title {:?}); its text:\n{body}",
            self.url().await,
            self.title().await
        )
    }

    /// Waits up to 10 s for an element matching the CSS selector.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no element {css:?} after {WAIT:?} ({e}) on {}",
                self.context().await
            ),
        }
    }

    /// Waits up to 10 s until the first element matching `css` contains
    /// `needle` in its visible text, and returns that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let end = Instant::now() + WAIT;
        let mut last = None;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if text.contains(needle) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > end {
                panic!(
                    "{css:?} never contained {needle:?} in {WAIT:?} (last text: {last:?}) on {}",
                    self.context().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element matching `css` is on the page now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// The visible text of the first element matching `css` (waits for it).
    pub async fn text_of(&self, css: &str) -> String {
        let el = self.wait_for(css).await;
        match el.text().await {
            Ok(t) => t,
            Err(e) => panic!("text of {css:?}: {e} on {}", self.context().await),
        }
    }

    /// The visible texts of all elements matching `css` (waits for the first).
    pub async fn texts_of(&self, css: &str) -> Vec<String> {
        self.wait_for(css).await;
        let els = self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default();
        let mut texts = Vec::with_capacity(els.len());
        for el in els {
            texts.push(el.text().await.unwrap_or_default());
        }
        texts
    }

    /// An attribute of the first element matching `css` (waits for it).
    pub async fn attr_of(&self, css: &str, attr: &str) -> Option<String> {
        let el = self.wait_for(css).await;
        match el.attr(attr).await {
            Ok(v) => v,
            Err(e) => panic!(
                "attribute {attr} of {css:?}: {e} on {}",
                self.context().await
            ),
        }
    }

    /// Clicks the first element matching `css` (waits for it). A click that
    /// submits a form returns once the next page has loaded.
    pub async fn click(&self, css: &str) {
        let el = self.wait_for(css).await;
        if let Err(e) = el.click().await {
            panic!("click {css:?}: {e} on {}", self.context().await);
        }
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_for(css).await;
        if let Err(e) = el.clear().await {
            panic!("clear {css:?}: {e} on {}", self.context().await);
        }
        if let Err(e) = el.send_keys(text).await {
            panic!("type into {css:?}: {e} on {}", self.context().await);
        }
    }

    /// Chooses the `<option>` with this value in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let el = self.wait_for(css).await;
        if let Err(e) = el.select_by_value(value).await {
            panic!(
                "select {value:?} in {css:?}: {e} on {}",
                self.context().await
            );
        }
    }

    /// Makes the viewport (what the page sees as `innerWidth` x
    /// `innerHeight`, and what a screenshot holds) exactly `width` x `height`.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let c = &self.client;
        c.set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("set window size {width}x{height}: {e}"));
        // The window may add a frame around the viewport: measure, adjust.
        for _ in 0..3 {
            let (w, h) = self.viewport().await;
            if (w, h) == (width, height) {
                return;
            }
            let (ow, oh) = c.get_window_size().await.unwrap();
            let nw = (ow as i64 + width as i64 - w as i64).max(1) as u32;
            let nh = (oh as i64 + height as i64 - h as i64).max(1) as u32;
            c.set_window_size(nw, nh).await.unwrap();
        }
        let got = self.viewport().await;
        assert_eq!(got, (width, height), "viewport size");
    }

    /// The viewport size as the page sees it.
    pub async fn viewport(&self) -> (u32, u32) {
        let v = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .unwrap_or_else(|e| panic!("read the viewport size: {e}"));
        let n = |i: usize| v[i].as_u64().unwrap_or(0) as u32;
        (n(0), n(1))
    }

    /// A 1280x900 viewport (the size of the docs' screenshots).
    pub async fn desktop(&self) {
        self.set_viewport(DESKTOP.0, DESKTOP.1).await;
    }

    /// A 390x844 viewport, a phone's.
    pub async fn phone(&self) {
        self.set_viewport(PHONE.0, PHONE.1).await;
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
