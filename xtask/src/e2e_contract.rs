//! `cargo xtask e2e contract`: `docs/openapi.yaml` is checked against what `aiwatch serve`
//! really answers. The spec must be a valid OpenAPI 3.1 document (`openapi-spec-validator`),
//! and Schemathesis (`st run --checks all`) fuzzes every documented operation of a live
//! `serve` watching loopback fakes: no 5xx, every status, header, content type and body as
//! documented, invalid input refused and valid input accepted.
//!
//! So that the bodies it checks are not all empty lists, the server first gets something to
//! say: one service fails until an incident is open, and two alert channels (a receiver that
//! takes everything, and a closed port) fill the outbox with sent and pending deliveries.
//!
//! Both Python tools go into a venv under `$HOME/.cache/aiwatch/venv-contract`, created when
//! missing and reinstalled when their pinned versions change. The run is bounded (examples per
//! operation, a per-request timeout and a hard deadline) and only talks to 127.0.0.1. Extra
//! arguments go to `st run` as they are, e.g. `cargo xtask e2e contract --seed N
//! --include-path /api/incidents` to replay a failure; the JUnit report, the Schemathesis
//! configuration and hooks of the last run are in `artifacts/e2e/contract/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch_testkit::{canned, FakeServer, Reply};
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The spec under test.
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
/// The pinned tools: a newer Schemathesis may add checks, so it comes in by a change here.
const PACKAGES: &[(&str, &str)] = &[
    ("schemathesis", "4.32.5"),
    ("openapi-spec-validator", "0.9.0"),
];
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "50";
/// One request's limit, in seconds.
const REQUEST_TIMEOUT: &str = "10";
/// The whole Schemathesis run's limit; past it the run is killed and the suite fails.
const DEADLINE: Duration = Duration::from_secs(15 * 60);
/// The token of the one agent the contract's server declares (region `contract`), so the
/// agent endpoints are exercised past their 401s.
const AGENT_TOKEN: &str = "contract-agent-token-0123456789abcdef";
/// How long the server may take to open the incident and queue its alerts.
const SETTLE: Duration = Duration::from_secs(30);

/// Runs the suite against a fresh `serve` of `binary`; `extra` goes to `st run`.
pub(crate) async fn run(binary: &Path, extra: &[&str]) -> Result<()> {
    let venv = Venv::ensure()?;
    let spec = std::fs::canonicalize(SPEC).with_context(|| format!("read {SPEC}"))?;
    venv.validate(&spec)?;
    let artifacts = std::fs::canonicalize(".")?.join("artifacts/e2e/contract");
    std::fs::create_dir_all(&artifacts)?;

    let world = crate::e2e::world().await;
    let receiver = FakeServer::start(None).await;
    receiver.route("POST", "/hook", Reply::empty(204));
    // `serve` inherits this process's environment: the agent's token is read from it.
    std::env::set_var("CONTRACT_AGENT_TOKEN", AGENT_TOKEN);
    let alerts = format!(
        "\n[[agent]]\nregion = \"contract\"\ntoken_env = \"CONTRACT_AGENT_TOKEN\"\n\n[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n\n[[alert]]\nname = \"nobody-home\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n",
        receiver.addr(),
        aiwatch_testkit::closed_port()
    );
    let serve = crate::e2e::start_serve_with(binary, &world, &alerts)?;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_error(500, "server_error", None, "boom"),
    );
    let seen = Seen::wait_for(&serve.base_url).await?;

    let hooks = artifacts.join("hooks.py");
    std::fs::write(&hooks, HOOKS)?;
    let config = artifacts.join("schemathesis.toml");
    std::fs::write(&config, seen.config(&hooks))?;

    let mut st = tokio::process::Command::new(venv.bin("st"));
    st.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&spec)
        .args(["--url", &serve.base_url])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", REQUEST_TIMEOUT])
        .args(["--max-redirects", "0"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit"])
        .arg("--report-junit-path")
        .arg(artifacts.join("junit.xml"))
        .arg("--no-color")
        // The server has no token of its own; the agent endpoints take the agent's.
        .args(["-H", &format!("Authorization: Bearer {AGENT_TOKEN}")])
        .args(extra)
        // Whatever else it writes stays with the artifacts, out of the work tree.
        .current_dir(&artifacts)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        st.env_remove(var);
    }
    st.env("NO_PROXY", "127.0.0.1,localhost");
    println!(
        "e2e contract: st --config-file {} run {} --url {} --checks all --max-examples {MAX_EXAMPLES} {}",
        config.display(),
        spec.display(),
        serve.base_url,
        extra.join(" ")
    );
    let mut child = st.spawn().context("start st (Schemathesis)")?;
    let status = match tokio::time::timeout(DEADLINE, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            let _ = child.kill().await;
            bail!(
                "Schemathesis did not finish within {} s; killed",
                DEADLINE.as_secs()
            );
        }
    };
    drop(serve);
    if !status.success() {
        bail!(
            "Schemathesis found failures ({status}); its JUnit report is {}",
            artifacts.join("junit.xml").display()
        );
    }
    println!("e2e contract: docs/openapi.yaml is valid OpenAPI 3.1 and `aiwatch serve` keeps it");
    Ok(())
}

/// Schemathesis hooks for what OpenAPI cannot say.
const HOOKS: &str = r#"# Written by `cargo xtask e2e contract` (xtask/src/e2e_contract.rs) for one run.
import schemathesis


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # The history reads (and so checks) `limit` only with granularity=raw, as the spec says:
    # a limit goes with raw, so that an out-of-range one reaches the check that refuses it.
    if case.operation.label != "GET /api/services/{name}/history":
        return
    query = case.query
    if query and "limit" in query and query.get("granularity", "minute") in ("minute", "hour", "day"):
        query["granularity"] = "raw"
"#;

/// What the live server watches and has to show, for Schemathesis's dictionaries.
struct Seen {
    services: Vec<String>,
    incidents: Vec<String>,
    alerts: Vec<String>,
}

impl Seen {
    /// Waits until an incident is open and the outbox has deliveries, then reads the names.
    async fn wait_for(base_url: &str) -> Result<Seen> {
        let started = Instant::now();
        loop {
            let services = names(&get_json(base_url, "/api/services")?, "name");
            let incidents = names(&get_json(base_url, "/api/incidents")?, "id");
            let outbox = get_json(base_url, "/api/v1/alerts")?;
            let alerts = names(&outbox["channels"], "name");
            let delivered = outbox["deliveries"]
                .as_array()
                .is_some_and(|d| !d.is_empty());
            if !incidents.is_empty() && delivered {
                println!(
                    "e2e contract: {} services, {} incidents, {} alert channels with deliveries",
                    services.len(),
                    incidents.len(),
                    alerts.len()
                );
                return Ok(Seen {
                    services,
                    incidents,
                    alerts,
                });
            }
            if started.elapsed() > SETTLE {
                bail!(
                    "no incident with alert deliveries within {} s of a failing service",
                    SETTLE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Schemathesis's configuration: valid names are drawn often enough that the operations
    /// are tested past their 404s, and valid ranges are valid together.
    fn config(&self, hooks: &Path) -> String {
        // Every `from` is before every `to`, and at most 400 days before it; in RFC 3339's
        // forms: UTC or an offset, with or without fractions of a second.
        let now = chrono::Utc::now();
        let at = |ago: chrono::Duration, offset_minutes: i32, digits: chrono::SecondsFormat| {
            let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("an offset");
            (now - ago)
                .with_timezone(&offset)
                .to_rfc3339_opts(digits, offset_minutes == 0)
        };
        let (days, hours) = (chrono::Duration::days, chrono::Duration::hours);
        let froms = [
            at(hours(1), 0, chrono::SecondsFormat::Secs),
            at(days(1), 330, chrono::SecondsFormat::Millis),
            at(days(7), -480, chrono::SecondsFormat::Nanos),
            at(days(90), 0, chrono::SecondsFormat::Micros),
            at(days(398), 60, chrono::SecondsFormat::Secs),
        ];
        let tos = [
            at(
                chrono::Duration::minutes(30),
                0,
                chrono::SecondsFormat::Millis,
            ),
            at(chrono::Duration::zero(), -300, chrono::SecondsFormat::Secs),
            at(-days(1), 0, chrono::SecondsFormat::Secs),
        ];
        let list = |names: &[String]| {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        format!(
            r#"# Written by `cargo xtask e2e contract` (xtask/src/e2e_contract.rs) for one run.
hooks = {hooks:?}

[dictionaries.services]
values = {services}

[dictionaries.incidents]
values = {incidents}

[dictionaries.alerts]
values = {alerts}

[parameters]
"path.name" = {{ dictionary = "services", probability = 0.8 }}
"query.service" = {{ dictionary = "services", probability = 0.5 }}
# A report names a watched service, or it is refused (400): no static schema can list them.
"body.service" = {{ dictionary = "services", probability = 1.0 }}
"path.id" = {{ dictionary = "incidents", probability = 0.5 }}
# Agents speak for their own region (the token's): a push for another one is refused (403).
"query.region" = {{ dictionary = "regions", probability = 0.8 }}
"body.region" = {{ dictionary = "regions", probability = 0.8 }}
"query.alert" = {{ dictionary = "alerts", probability = 0.5 }}
# `from` must be before `to` and at most 400 days before it, a rule across two parameters
# that OpenAPI cannot state: valid ranges draw from times that make a valid range in any pair.
"query.from" = {{ dictionary = "from", probability = 1.0 }}
"query.to" = {{ dictionary = "to", probability = 1.0 }}

[dictionaries.regions]
values = ["contract"]

# Whether a push is accepted depends on the server's state — the services it assigns, the last
# seven days, the sequence numbers it holds — which no schema can state: a schema-valid push may
# rightly be refused (400 for a service name the server does not know, 422 for the rest).
[[operations]]
include-path = "/api/v1/agent/observations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "413", "422", "503"]

[dictionaries.from]
values = {from}

[dictionaries.to]
values = {to}
"#,
            hooks = hooks.display().to_string(),
            services = list(&self.services),
            incidents = list(&self.incidents),
            alerts = list(&self.alerts),
            from = list(&froms),
            to = list(&tos),
        )
    }
}

/// `GET path` as JSON.
fn get_json(base_url: &str, path: &str) -> Result<Value> {
    let (status, body) = crate::e2e::http_get(base_url, path)?;
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path} is not JSON: {body}"))
}

/// The `key` string of every element of `list`.
fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect()
}

/// The venv that holds the pinned tools.
struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// Creates the venv when missing and installs the pinned tools when any is missing or at
    /// another version.
    fn ensure() -> Result<Venv> {
        let home = std::env::var("HOME").context("HOME is not set")?;
        let venv = Venv {
            dir: PathBuf::from(home).join(".cache/aiwatch/venv-contract"),
        };
        if !venv.bin("python").exists() {
            println!(
                "e2e contract: creating a Python venv in {}",
                venv.dir.display()
            );
            std::fs::create_dir_all(venv.dir.parent().context("venv folder")?)?;
            let create = || {
                Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv.dir)
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !create() {
                // Debian's python3 has venv (and the pip it seeds) in a package of its own.
                let _ = std::fs::remove_dir_all(&venv.dir);
                crate::e2e::install(&["python3-venv"])?;
                if !create() {
                    bail!("python3 -m venv {} failed", venv.dir.display());
                }
            }
        }
        let wanted: Vec<String> = PACKAGES
            .iter()
            .map(|(name, version)| format!("m.version('{name}') == '{version}'"))
            .collect();
        let check = format!(
            "import importlib.metadata as m, sys\nsys.exit(0 if {} else 1)",
            wanted.join(" and ")
        );
        if !venv.quietly(&["-c", &check]) {
            let pinned: Vec<String> = PACKAGES
                .iter()
                .map(|(name, version)| format!("{name}=={version}"))
                .collect();
            println!("e2e contract: pip install {}", pinned.join(" "));
            let status = Command::new(venv.bin("python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(&pinned)
                .status()
                .context("run pip")?;
            if !status.success() || !venv.quietly(&["-c", &check]) {
                bail!("pip install {} failed", pinned.join(" "));
            }
        }
        Ok(venv)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// Whether `python args…` succeeds (its output discarded).
    fn quietly(&self, args: &[&str]) -> bool {
        Command::new(self.bin("python"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `openapi-spec-validator` must accept the spec.
    fn validate(&self, spec: &Path) -> Result<()> {
        let output = Command::new(self.bin("openapi-spec-validator"))
            .arg(spec)
            .output()
            .context("run openapi-spec-validator")?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("openapi-spec-validator rejects {}:\n{said}", spec.display());
        }
        println!("e2e contract: openapi-spec-validator: {}", said.trim());
        Ok(())
    }
}
