//! The dashboard in a real browser: Debian's headless chromium driven over WebDriver
//! (chromedriver on a loopback port) loads the overview and a service page of a running
//! `aiwatch serve`, watches a service go down after the caller breaks its fake, and checks the
//! console, the requests and the screenshots a person would judge.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a service may take to show as down after `make_down`.
const DOWN_WITHIN: Duration = Duration::from_secs(60);
/// Desktop and phone viewports of the screenshots.
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// Runs the browser suite against `base_url` (e.g. `http://127.0.0.1:8080`); `make_down` must
/// make one of the watched services fail. Screenshots and a report go to `artifacts`.
pub async fn run(base_url: &str, artifacts: &Path, make_down: impl Fn()) -> Result<()> {
    let base_url = base_url.trim_end_matches('/');
    std::fs::create_dir_all(artifacts)?;
    let driver = ChromeDriver::start()?;
    let profile = tempfile::tempdir().context("a fresh browser profile")?;
    let client = connect(&driver, profile.path()).await?;
    let mut suite = Suite {
        client,
        base_url: base_url.to_owned(),
        artifacts: artifacts.to_owned(),
        console: Vec::new(),
        requests: Vec::new(),
        report: Vec::new(),
    };
    let mut outcome = suite.run(&make_down).await;
    // The logs are read even when a step failed: they usually say why.
    let collected = suite.collect_logs().await;
    if outcome.is_ok() {
        outcome = collected.and_then(|()| suite.verify_logs());
    }
    if let Err(e) = &outcome {
        suite.report.push(format!("FAILED: {e:#}"));
        suite
            .report
            .push(format!("console errors: {:?}", suite.console));
    }
    let report = suite.report.join("\n");
    std::fs::write(artifacts.join("browser-report.txt"), format!("{report}\n"))?;
    let _ = suite.client.clone().close().await;
    outcome?;
    println!("e2e browser:\n{report}");
    Ok(())
}

/// A chromedriver this suite started, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> Result<ChromeDriver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg("--log-level=WARNING")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver (Debian package chromium-driver)")?;
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if driver.ready() {
                return Ok(driver);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("chromedriver did not become ready on {}", driver.url)
    }
}

impl ChromeDriver {
    /// Whether `/status` says ready. chromedriver keeps connections open, so the answer is read
    /// until it says so rather than to the end.
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let authority = self.url.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let request =
            format!("GET /status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("\"ready\":true") {
                return true;
            }
        }
        false
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &ChromeDriver, profile: &Path) -> Result<Client> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,800",
    ];
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium_binary(), "args": args },
        "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .context("open a WebDriver session in chromium")
}

fn chromium_binary() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
}

/// chromedriver's log endpoint (`browser` is the console, `performance` the DevTools events).
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}

struct Suite {
    client: Client,
    base_url: String,
    artifacts: std::path::PathBuf,
    /// Console entries of level SEVERE: (page, message).
    console: Vec<(String, String)>,
    /// Every URL the pages requested.
    requests: Vec<String>,
    report: Vec<String>,
}

impl Suite {
    async fn run(&mut self, make_down: &impl Fn()) -> Result<()> {
        self.viewport(DESKTOP).await?;
        // Refresh in place every 2 s so going down shows up without a reload.
        self.goto("/").await?;
        self.client
            .execute(
                "localStorage.setItem('aiwatch.refresh', '2'); return true;",
                vec![],
            )
            .await?;
        self.goto("/").await?;
        let bars = self.client.find_all(Locator::Css("svg.bars")).await?.len();
        if bars == 0 {
            bail!("the overview shows no uptime bars");
        }
        let before = self.states().await?;
        self.report.push(format!(
            "overview: {bars} uptime bar sets; states before: {}",
            describe(&before)
        ));
        self.tooltip_on_focus().await?;
        self.shoot("overview-desktop").await?;
        let first = before
            .first()
            .map(|(name, _)| name.clone())
            .context("no service on the overview")?;
        self.goto(&format!("/services/{first}")).await?;
        self.client
            .find(Locator::Css("svg.chart"))
            .await
            .context("the service page draws a latency chart")?;
        self.goto("/").await?;

        make_down();
        let started = Instant::now();
        let down = loop {
            let now = self.states().await?;
            let newly_down = now.iter().find(|(name, state)| {
                is_down(state) && before.iter().any(|(n, s)| n == name && !is_down(s))
            });
            if let Some((name, state)) = newly_down {
                break (name.clone(), state.clone());
            }
            if started.elapsed() > DOWN_WITHIN {
                self.shoot("overview-timeout").await?;
                bail!(
                    "no service was shown as down within {DOWN_WITHIN:?} of make_down; states: {}",
                    describe(&now)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        self.report.push(format!(
            "{} shown as {} {:.1?} after make_down, refreshed in place",
            down.0,
            down.1,
            started.elapsed()
        ));
        let headline = self
            .client
            .find(Locator::Css("#headline"))
            .await?
            .text()
            .await?;
        if !headline.contains("trouble") {
            bail!("the headline does not say there is trouble: {headline}");
        }
        self.shoot("overview-desktop-down").await?;

        let service_path = format!("/services/{}", down.0);
        self.goto(&service_path).await?;
        let pill = self
            .client
            .find(Locator::Css(".pagehead .pill"))
            .await?
            .text()
            .await?;
        if !is_down(&pill) {
            bail!("{service_path} shows {pill}, not down");
        }
        self.client
            .find(Locator::Css("svg.bars"))
            .await
            .context("the service page has its uptime bars")?;
        self.shoot("service-desktop").await?;
        self.goto("/incidents").await?;
        self.shoot("incidents-desktop").await?;
        self.goto(&format!(
            "/just-me?service={}&symptom=login-loop&symptom=access-denied",
            down.0
        ))
        .await?;
        self.shoot("just-me-desktop").await?;

        self.viewport(PHONE).await?;
        self.goto("/").await?;
        self.shoot("overview-phone").await?;
        self.goto(&service_path).await?;
        self.shoot("service-phone").await?;
        Ok(())
    }

    /// Each service's name and the word on its state pill, in page order.
    async fn states(&self) -> Result<Vec<(String, String)>> {
        let value = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('article.svc')).map(a => \
                 [a.getAttribute('aria-labelledby').replace(/^svc-/, ''), (a.querySelector('.head .pill') || {}).textContent || '']);",
                vec![],
            )
            .await?;
        let list = value.as_array().context("a list of states")?;
        Ok(list
            .iter()
            .filter_map(|pair| {
                Some((
                    pair.get(0)?.as_str()?.to_owned(),
                    pair.get(1)?.as_str()?.trim().to_owned(),
                ))
            })
            .collect())
    }

    /// Keyboard focus on an uptime bar shows the day's tooltip.
    async fn tooltip_on_focus(&mut self) -> Result<()> {
        let text = self
            .client
            .execute("const b = document.querySelector('svg.bars'); b.focus(); const t = document.getElementById('aiw-tip'); return t && !t.hidden ? t.innerText.replace(/\\s+/g, ' ') : null;", vec![])
            .await?;
        let text = text
            .as_str()
            .context("focusing an uptime bar shows no tooltip")?
            .to_owned();
        self.report.push(format!("tooltip on focus: {text}"));
        self.client
            .execute("document.activeElement.blur(); return true;", vec![])
            .await?;
        Ok(())
    }

    async fn goto(&mut self, path: &str) -> Result<()> {
        let url = format!("{}{path}", self.base_url);
        self.client
            .goto(&url)
            .await
            .with_context(|| format!("load {url}"))?;
        self.client.wait().for_element(Locator::Css("main")).await?;
        self.collect_logs().await
    }

    /// Sizes the window so that the page's viewport is exactly `width × height`.
    async fn viewport(&self, (width, height): (u32, u32)) -> Result<()> {
        self.client.set_window_size(width, height).await?;
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0) as i64,
            inner[1].as_u64().unwrap_or(0) as i64,
        );
        let (dw, dh) = (i64::from(width) - iw, i64::from(height) - ih);
        if dw != 0 || dh != 0 {
            self.client
                .set_window_size(
                    (i64::from(width) + dw).max(100) as u32,
                    (i64::from(height) + dh).max(100) as u32,
                )
                .await?;
        }
        Ok(())
    }

    /// Saves the viewport and the whole page as PNGs.
    async fn shoot(&mut self, name: &str) -> Result<()> {
        let viewport = self.client.screenshot().await?;
        std::fs::write(self.artifacts.join(format!("{name}.png")), viewport)?;
        let size = self.client.execute("return [window.innerWidth, window.innerHeight, document.documentElement.scrollHeight];", vec![]).await?;
        let (w, h, full) = (
            size[0].as_u64().unwrap_or(0) as u32,
            size[1].as_u64().unwrap_or(0) as u32,
            size[2].as_u64().unwrap_or(0) as u32,
        );
        if full > h {
            self.viewport((w, full.min(8000))).await?;
            let whole = self.client.screenshot().await?;
            std::fs::write(self.artifacts.join(format!("{name}-full.png")), whole)?;
            self.viewport((w, h)).await?;
        }
        self.report.push(format!(
            "screenshot {}",
            self.artifacts.join(format!("{name}.png")).display()
        ));
        Ok(())
    }

    /// Moves the browser's console errors and requested URLs out of chromedriver's buffers.
    async fn collect_logs(&mut self) -> Result<()> {
        let page = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let console = self
            .client
            .issue_cmd(GetLog("browser"))
            .await
            .context("read the console log")?;
        for entry in console.as_array().into_iter().flatten() {
            if entry["level"] == "SEVERE" {
                self.console.push((
                    page.clone(),
                    entry["message"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        let performance = self
            .client
            .issue_cmd(GetLog("performance"))
            .await
            .context("read the network log")?;
        for entry in performance.as_array().into_iter().flatten() {
            let Ok(message) =
                serde_json::from_str::<Value>(entry["message"].as_str().unwrap_or_default())
            else {
                continue;
            };
            if message["message"]["method"] != "Network.requestWillBeSent" {
                continue;
            }
            // Only what our pages asked for: the browser's own pages (its start page) load
            // chrome:// resources that are none of the dashboard's doing.
            let params = &message["message"]["params"];
            let document = params["documentURL"].as_str().unwrap_or_default();
            if !document.starts_with(&self.base_url) {
                continue;
            }
            if let Some(url) = params["request"]["url"].as_str() {
                self.requests.push(url.to_owned());
            }
        }
        Ok(())
    }

    fn verify_logs(&mut self) -> Result<()> {
        let foreign: Vec<&String> = self
            .requests
            .iter()
            .filter(|u| {
                !(u.starts_with(&format!("{}/", self.base_url))
                    || u.as_str() == self.base_url
                    || u.starts_with("data:")
                    || u.starts_with("about:"))
            })
            .collect();
        if self.requests.is_empty() {
            bail!("the network log recorded no requests; cannot tell where the pages went");
        }
        if !foreign.is_empty() {
            bail!("requests left the server's origin: {foreign:?}");
        }
        if !self.console.is_empty() {
            bail!("the console has errors: {:?}", self.console);
        }
        self.report.push(format!(
            "{} requests, all to {}; no console errors",
            self.requests.len(),
            self.base_url
        ));
        Ok(())
    }
}

fn is_down(state: &str) -> bool {
    matches!(state.trim(), "Outage" | "Degraded")
}

fn describe(states: &[(String, String)]) -> String {
    states
        .iter()
        .map(|(n, s)| format!("{n}={s}"))
        .collect::<Vec<_>>()
        .join(", ")
}
