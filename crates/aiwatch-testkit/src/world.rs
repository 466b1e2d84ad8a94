//! Assembles a whole fake internet on loopback for one test: DNS, a "public" CA, providers,
//! status pages and the control host, plus the aiwatch config that points at them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::{canned, DnsAnswer, FakeDns, FakeServer, FakeStatusPage, ServerIdentity, TestCa};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The control host's name in the fake DNS.
pub const CONTROL_HOST: &str = "connectivity.fake.test";

/// One service of the world: a name from the catalog (or a new one) and the fake behind it.
pub struct FakeService {
    pub name: String,
    pub host: String,
    pub server: FakeServer,
    /// `api_base` (with path) or `web_url` the config points at.
    pub url: String,
    pub is_web: bool,
    pub kind: Option<String>,
    pub status_page: Option<String>,
    pub key_env: Option<String>,
}

/// Every fake a check needs, and the config that wires aiwatch to them.
pub struct World {
    pub dns: FakeDns,
    /// Plays the public web PKI: services declare it as their `ca_file`.
    pub public_ca: TestCa,
    /// Plays a corporate TLS interceptor.
    pub interceptor: TestCa,
    pub control: FakeServer,
    pub services: Vec<FakeService>,
    pub status_pages: Vec<(String, FakeStatusPage)>,
    dir: tempfile::TempDir,
    timeout: String,
}

impl World {
    /// A healthy `openai-api` (list-models, complete streams) and its green Statuspage page
    /// (Chat Completions, Responses, Embeddings): the world most daemon tests start from.
    pub async fn openai() -> World {
        let mut world = World::start().await;
        let api = world.api("openai-api", "api.openai.test", "/v1").await;
        api.route("GET", "/v1/models", canned::openai_models());
        api.route("POST", "/v1/chat/completions", canned::openai_stream(true));
        world
            .status_page("openai-api", "status.openai.test")
            .await
            .set_summary(&crate::summary_operational(&[
                "Chat Completions",
                "Responses",
                "Embeddings",
            ]));
        world
    }

    /// DNS, CAs and a healthy control host; no services yet.
    pub async fn start() -> World {
        let dns = FakeDns::start().await;
        let control = FakeServer::start(None).await;
        control.route("GET", "/generate_204", canned::generate_204());
        dns.set(CONTROL_HOST, DnsAnswer::Addresses(vec![LOOPBACK]));
        let dir = tempfile::tempdir().expect("a temp dir for the test world");
        let public_ca = TestCa::new("Test Public Root", "aiwatch test");
        let interceptor = TestCa::new("Zscaler Root CA", "Zscaler Inc.");
        public_ca.write_pem(dir.path(), "public-root.pem");
        interceptor.write_pem(dir.path(), "zscaler-root.pem");
        World {
            dns,
            public_ca,
            interceptor,
            control,
            services: Vec::new(),
            status_pages: Vec::new(),
            dir,
            timeout: "3s".into(),
        }
    }

    /// The folder that holds the world's files (PEMs, config).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn public_ca_path(&self) -> PathBuf {
        self.dir.path().join("public-root.pem")
    }

    pub fn interceptor_ca_path(&self) -> PathBuf {
        self.dir.path().join("zscaler-root.pem")
    }

    pub fn control_url(&self) -> String {
        format!("{}/generate_204", self.control.url(CONTROL_HOST))
    }

    /// Sets the check budget written into the config.
    pub fn set_timeout(&mut self, timeout: &str) {
        self.timeout = timeout.to_owned();
    }

    /// Adds an API service whose host resolves to loopback and presents a certificate from the
    /// public CA; `path` is the API base path (e.g. "/v1").
    pub async fn api(&mut self, name: &str, host: &str, path: &str) -> &FakeServer {
        let identity = self.public_ca.issue(&[host]);
        self.api_with_identity(name, host, path, &identity).await
    }

    /// A receiver of notifications (a webhook, chat or Alertmanager endpoint): `host` resolves
    /// to loopback and presents a certificate from the public CA. The caller owns it.
    pub async fn receiver(&self, host: &str) -> FakeServer {
        let server = FakeServer::start(Some(&self.public_ca.issue(&[host]))).await;
        self.dns.set(host, DnsAnswer::Addresses(vec![LOOPBACK]));
        server
    }

    /// Adds an API service presenting `identity` (an interceptor's or an expired certificate).
    pub async fn api_with_identity(
        &mut self,
        name: &str,
        host: &str,
        path: &str,
        identity: &ServerIdentity,
    ) -> &FakeServer {
        let server = FakeServer::start(Some(identity)).await;
        self.dns.set(host, DnsAnswer::Addresses(vec![LOOPBACK]));
        let url = format!("{}{path}", server.url(host));
        self.services.push(FakeService {
            name: name.to_owned(),
            host: host.to_owned(),
            server,
            url,
            is_web: false,
            kind: None,
            status_page: None,
            key_env: None,
        });
        &self.services.last().expect("just pushed").server
    }

    /// Adds a service on this machine over plain HTTP (Ollama, LM Studio): no DNS, no TLS.
    pub async fn local(&mut self, name: &str, path: &str) -> &FakeServer {
        let server = FakeServer::start(None).await;
        let url = format!("{}{path}", server.url("127.0.0.1"));
        self.services.push(FakeService {
            name: name.to_owned(),
            host: "127.0.0.1".to_owned(),
            server,
            url,
            is_web: false,
            kind: None,
            status_page: None,
            key_env: None,
        });
        &self.services.last().expect("just pushed").server
    }

    /// Adds a web front-end service (e.g. "chatgpt") served over TLS from the public CA.
    pub async fn web(&mut self, name: &str, host: &str) -> &FakeServer {
        let identity = self.public_ca.issue(&[host]);
        let server = FakeServer::start(Some(&identity)).await;
        self.dns.set(host, DnsAnswer::Addresses(vec![LOOPBACK]));
        let url = server.url(host);
        self.services.push(FakeService {
            name: name.to_owned(),
            host: host.to_owned(),
            server,
            url,
            is_web: true,
            kind: None,
            status_page: None,
            key_env: None,
        });
        &self.services.last().expect("just pushed").server
    }

    /// Adds a web front-end served over plain HTTP (no TLS, no `ca_file`): what a captive
    /// portal or a forwarding proxy can answer for.
    pub async fn web_plain(&mut self, name: &str, host: &str) -> &FakeServer {
        let server = FakeServer::start(None).await;
        self.dns.set(host, DnsAnswer::Addresses(vec![LOOPBACK]));
        let url = server.url(host);
        self.services.push(FakeService {
            name: name.to_owned(),
            host: host.to_owned(),
            server,
            url,
            is_web: true,
            kind: None,
            status_page: None,
            key_env: None,
        });
        &self.services.last().expect("just pushed").server
    }

    /// The fake behind a service added earlier.
    pub fn service(&self, name: &str) -> &FakeService {
        self.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no fake service `{name}` in this world"))
    }

    fn service_mut(&mut self, name: &str) -> &mut FakeService {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no fake service `{name}` in this world"))
    }

    /// Sets the `kind` written for a service (for services that are not built in).
    pub fn set_kind(&mut self, name: &str, kind: &str) {
        self.service_mut(name).kind = Some(kind.to_owned());
    }

    /// Names the key variable a service reads.
    pub fn set_key_env(&mut self, name: &str, var: &str) {
        self.service_mut(name).key_env = Some(var.to_owned());
    }

    /// Gives a service an official status page at `host` (started on first use).
    pub async fn status_page(&mut self, service: &str, host: &str) -> &FakeStatusPage {
        if !self.status_pages.iter().any(|(h, _)| h == host) {
            let identity = self.public_ca.issue(&[host]);
            let page = FakeStatusPage::start(Some(&identity)).await;
            self.dns.set(host, DnsAnswer::Addresses(vec![LOOPBACK]));
            self.status_pages.push((host.to_owned(), page));
        }
        let url = self.status_page_url(host);
        self.service_mut(service).status_page = Some(url);
        &self
            .status_pages
            .iter()
            .find(|(h, _)| h == host)
            .expect("started above")
            .1
    }

    fn status_page_url(&self, host: &str) -> String {
        let page = &self
            .status_pages
            .iter()
            .find(|(h, _)| h == host)
            .expect("status page started")
            .1;
        page.server().url(host)
    }

    /// The aiwatch config that points every added service at its fake.
    pub fn config_toml(&self) -> String {
        let mut out = format!(
            "[defaults]\ntimeout = \"{}\"\ncontrol_url = \"{}\"\n",
            self.timeout,
            self.control_url()
        );
        for s in &self.services {
            let _ = write!(out, "\n[[service]]\nname = \"{}\"\n", s.name);
            if let Some(kind) = &s.kind {
                let _ = writeln!(out, "kind = \"{kind}\"");
            }
            let field = if s.is_web { "web_url" } else { "api_base" };
            let _ = writeln!(out, "{field} = \"{}\"", s.url);
            if let Some(var) = &s.key_env {
                let _ = writeln!(out, "api_key_env = \"{var}\"");
            }
            if let Some(page) = &s.status_page {
                let _ = writeln!(out, "status_page = \"{page}\"");
            }
            if s.url.starts_with("https://") {
                let _ = writeln!(
                    out,
                    "ca_file = \"{}\"",
                    self.public_ca_path()
                        .display()
                        .to_string()
                        .replace('\\', "/")
                );
            }
        }
        out
    }

    /// Writes the config into the world's folder and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("aiwatch.toml");
        std::fs::write(&path, self.config_toml()).expect("write the test config");
        path
    }
}
