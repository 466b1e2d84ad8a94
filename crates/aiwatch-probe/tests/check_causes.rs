//! One test per cause code: a loopback world reproduces the situation, the real probes run
//! against it, and the verdict's status, scope and cause are asserted exactly.

use std::collections::HashMap;
use std::time::Duration;

use aiwatch_core::classify::classify;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Cause, Config, Scope, ServiceName, Status, Verdict};
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_testkit::{canned, closed_port, Blackhole, DnsAnswer, FakeProxy, Reply, World};

/// How one check is run against a world.
struct Run {
    services: Vec<&'static str>,
    keys: Vec<(&'static str, &'static str)>,
    extra_ca: bool,
    deep: bool,
    control: bool,
    proxies: ProxySettings,
    timeout: Duration,
}

impl Run {
    fn of(services: &[&'static str]) -> Self {
        Self {
            services: services.to_vec(),
            keys: Vec::new(),
            extra_ca: false,
            deep: false,
            control: true,
            proxies: ProxySettings::none(),
            timeout: Duration::from_secs(3),
        }
    }

    fn key(mut self, service: &'static str, key: &'static str) -> Self {
        self.keys.push((service, key));
        self
    }

    fn deep(mut self) -> Self {
        self.deep = true;
        self
    }

    /// Trust the interceptor's root as this machine would after IT installed it.
    fn trusting_interceptor(mut self) -> Self {
        self.extra_ca = true;
        self
    }

    fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn proxies(mut self, p: ProxySettings) -> Self {
        self.proxies = p;
        self
    }

    async fn verdicts(self, world: &World) -> Vec<Verdict> {
        let config = Config::parse(&world.config_toml()).expect("the world's config is valid");
        let catalog = Catalog::with_config(&config);
        let services: Vec<_> = self
            .services
            .iter()
            .map(|n| catalog.get(n).expect("service in catalog").clone())
            .collect();
        // The status pages' certificates come from the test "public" CA, trusted as an extra
        // root; the interceptor's root only when the test says so.
        let mut ca_files = vec![world.public_ca_path()];
        if self.extra_ca {
            ca_files.push(world.interceptor_ca_path());
        }
        let checker = Checker::new(CheckOptions {
            timeout: self.timeout,
            dns: DnsChoice::Server(world.dns.addr()),
            ca_files,
            control_url: self.control.then(|| world.control_url()),
            deep: self.deep,
            proxies: self.proxies,
        })
        .expect("checker");
        let keys: HashMap<ServiceName, ApiKey> = self
            .keys
            .iter()
            .map(|(s, k)| {
                (
                    ServiceName::parse(s).unwrap(),
                    ApiKey::new((*k).to_owned()).unwrap(),
                )
            })
            .collect();
        let evidence = checker.run(&services, &keys).await.expect("check runs");
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .to_utc();
        services
            .iter()
            .zip(&evidence)
            .map(|(s, e)| classify(s, e, now))
            .collect()
    }

    async fn verdict(self, world: &World) -> Verdict {
        self.verdicts(world).await.remove(0)
    }
}

fn assert_verdict(v: &Verdict, status: Status, scope: Scope, cause: Cause) {
    assert_eq!(
        (v.status, v.scope, v.cause),
        (status, scope, cause),
        "\nsummary: {}\nevidence: {:#?}",
        v.summary,
        v.evidence
    );
    if cause != Cause::Ok {
        assert!(!v.advice.is_empty(), "a problem always comes with advice");
    }
}

/// A world with the OpenAI API behind a healthy fake and a green status page.
async fn openai_world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    let page = world.status_page("openai-api", "status.openai.test").await;
    page.set_summary(&aiwatch_testkit::summary_operational(&[
        "Chat Completions",
        "Responses",
        "Embeddings",
    ]));
    world
}

fn api_server(world: &World) -> &aiwatch_testkit::FakeServer {
    &world.service("openai-api").server
}

// === healthy ===

#[tokio::test]
async fn healthy_api_with_key_is_operational() {
    let world = openai_world().await;
    let v = Run::of(&["openai-api"])
        .key("openai-api", "sk-test-1")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
    let seen = api_server(&world).requests();
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-1"));
    assert!(v.official.is_some());
}

#[tokio::test]
async fn healthy_api_without_key_is_reachable_and_says_so() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_401());
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
    assert!(api_server(&world).requests()[0]
        .header("authorization")
        .is_none());
    assert!(
        v.advice.iter().any(|a| a.contains("OPENAI_API_KEY")),
        "{:?}",
        v.advice
    );
}

// === network side ===

#[tokio::test]
async fn nxdomain_while_control_works_is_local_dns_failure() {
    let world = openai_world().await;
    world.dns.set("api.openai.test", DnsAnswer::NxDomain);
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Operational, Scope::Local, Cause::DnsFailure);
}

#[tokio::test]
async fn null_answer_is_dns_filtered() {
    let world = openai_world().await;
    world.dns.set(
        "api.openai.test",
        DnsAnswer::Addresses(vec!["0.0.0.0".parse().unwrap()]),
    );
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Operational, Scope::Local, Cause::DnsFiltered);
    assert!(
        api_server(&world).requests().is_empty(),
        "no probe goes to a sinkhole"
    );
}

#[tokio::test]
async fn refused_port_is_tcp_refused() {
    let mut world = World::start().await;
    world.api("openai-api", "api.openai.test", "/v1").await;
    let closed = closed_port();
    world.services[0].url = format!("https://api.openai.test:{}/v1", closed.port());
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::TcpRefused);
}

#[tokio::test]
async fn blackholed_port_is_tcp_timeout_within_budget() {
    let mut world = World::start().await;
    world.api("openai-api", "api.openai.test", "/v1").await;
    let hole = Blackhole::start().await;
    world.services[0].url = format!("https://api.openai.test:{}/v1", hole.addr().port());
    let started = std::time::Instant::now();
    let v = Run::of(&["openai-api"])
        .timeout(Duration::from_millis(800))
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::TcpTimeout);
    // Generous: proves the check is bounded, not how fast it is (that is the benchmark's job).
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn chain_through_installed_interceptor_root_is_tls_intercepted_and_key_withheld() {
    let mut world = World::start().await;
    let identity = world.interceptor.issue(&["api.openai.test"]);
    let api = world
        .api_with_identity("openai-api", "api.openai.test", "/v1", &identity)
        .await;
    api.route("GET", "/v1/models", canned::openai_401());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "sk-secret")
        .trusting_interceptor()
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::Local, Cause::TlsIntercepted);
    assert!(v.summary.contains("Zscaler Root CA"), "{}", v.summary);
    let seen = world.service("openai-api").server.requests();
    assert!(
        seen.iter().all(|r| r.header("authorization").is_none()),
        "the key never crosses an interceptor"
    );
}

#[tokio::test]
async fn chain_from_unknown_interceptor_is_tls_intercepted_naming_it() {
    let mut world = World::start().await;
    let identity = world.interceptor.issue(&["api.openai.test"]);
    world
        .api_with_identity("openai-api", "api.openai.test", "/v1", &identity)
        .await;
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::TlsIntercepted);
    assert!(v.advice[0].contains("Zscaler Root CA"), "{:?}", v.advice);
}

/// A world whose `api.openai.test` is answered by the "Zscaler Root CA" interceptor's own
/// certificate (trusted, as after IT installed its root), with a status page.
async fn intercepted_openai_world(reply: Reply) -> World {
    let mut world = World::start().await;
    let identity = world.interceptor.issue(&["api.openai.test"]);
    let api = world
        .api_with_identity("openai-api", "api.openai.test", "/v1", &identity)
        .await;
    api.route("GET", "/v1/models", reply);
    let page = world.status_page("openai-api", "status.openai.test").await;
    page.set_summary(&aiwatch_testkit::summary_operational(&["Chat Completions"]));
    world
}

#[tokio::test]
async fn interceptors_own_502_is_tls_intercepted_never_a_provider_outage() {
    let world = intercepted_openai_world(canned::interceptor_bad_gateway()).await;
    // The status page fails through the interceptor too.
    world.status_pages[0]
        .1
        .fail_with(canned::interceptor_bad_gateway());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .trusting_interceptor()
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::TlsIntercepted);
    assert!(v.summary.contains("Zscaler Root CA"), "{}", v.summary);
    assert_eq!(v.fault().exit_code(), 3, "the user's side, never exit 2");
}

#[tokio::test]
async fn provider_json_error_through_trusted_interceptor_is_still_provider_side() {
    let world = intercepted_openai_world(canned::openai_error(
        500,
        "server_error",
        None,
        "The server had an error while processing your request",
    ))
    .await;
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .trusting_interceptor()
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::ProviderError);
}

#[tokio::test]
async fn provider_request_id_on_a_bare_502_through_interceptor_proves_the_provider() {
    let world = intercepted_openai_world(
        Reply::text(502, "text/html", "<html><body>Bad Gateway</body></html>")
            .header("x-request-id", canned::OPENAI_REQUEST_ID)
            .header("server", "cloudflare"),
    )
    .await;
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .trusting_interceptor()
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::ProviderError);
}

#[tokio::test]
async fn plain_proxys_own_502_is_proxy_error_never_a_provider_outage() {
    let mut world = World::start().await;
    world.web_plain("intranet-chat", "chat.intranet.test").await;
    let proxy = FakeProxy::rejecting(502).await;
    let proxies = ProxySettings::from_values(
        None,
        Some(&proxy.url()),
        Some(aiwatch_testkit::world::CONTROL_HOST),
    )
    .unwrap();
    let v = Run::of(&["intranet-chat"])
        .proxies(proxies)
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::ProxyError);
    assert!(
        world.service("intranet-chat").server.requests().is_empty(),
        "the proxy answered, the service never saw the request"
    );
}

#[tokio::test]
async fn expired_certificate_is_tls_invalid() {
    let mut world = World::start().await;
    let identity = world.public_ca.issue_expired(&["api.openai.test"]);
    world
        .api_with_identity("openai-api", "api.openai.test", "/v1", &identity)
        .await;
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::TlsInvalid);
    assert!(v.summary.contains("expired"), "{}", v.summary);
}

#[tokio::test]
async fn proxy_that_refuses_connect_is_proxy_error() {
    let world = openai_world().await;
    let proxy = FakeProxy::rejecting(403).await;
    let proxies = ProxySettings::from_values(Some(&proxy.url()), None, None).unwrap();
    let v = Run::of(&["openai-api"])
        .proxies(proxies)
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::ProxyError);
}

#[tokio::test]
async fn working_proxy_is_used_and_reported() {
    let world = openai_world().await;
    let proxy = FakeProxy::start().await;
    proxy.map_host("api.openai.test", "127.0.0.1".parse().unwrap());
    proxy.map_host("status.openai.test", "127.0.0.1".parse().unwrap());
    let proxies = ProxySettings::from_values(Some(&proxy.url()), None, None).unwrap();
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .proxies(proxies)
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
    assert!(
        proxy
            .connects()
            .iter()
            .any(|c| c.starts_with("api.openai.test:")),
        "{:?}",
        proxy.connects()
    );
    assert!(
        v.evidence.iter().any(|e| e.layer == "proxy"),
        "{:#?}",
        v.evidence
    );
}

#[tokio::test]
async fn portal_redirect_on_control_with_failing_service_is_captive_portal() {
    let world = openai_world().await;
    world.dns.set("api.openai.test", DnsAnswer::NxDomain);
    world.control.route(
        "GET",
        "/generate_204",
        canned::captive_portal_redirect("http://login.hotel-wifi.test/"),
    );
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::CaptivePortal);
}

#[tokio::test]
async fn plain_http_web_redirected_to_an_unrelated_host_is_captive_portal_though_control_is_clean()
{
    let mut world = World::start().await;
    let web = world.web_plain("intranet-chat", "chat.intranet.test").await;
    web.route(
        "GET",
        "/",
        canned::captive_portal_redirect("http://login.hotel-wifi.test/portal?continue=1"),
    );
    let v = Run::of(&["intranet-chat"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::CaptivePortal);
    assert_eq!(v.fault().exit_code(), 3);
    assert_eq!(
        world.service("intranet-chat").server.requests().len(),
        1,
        "the redirect is reported, never followed"
    );
}

#[tokio::test]
async fn plain_http_api_of_http_kind_redirected_to_a_portal_is_captive_portal() {
    let mut world = World::start().await;
    let api = world.web_plain("intranet-llm", "llm.intranet.test").await;
    api.route(
        "GET",
        "/v1",
        canned::captive_portal_redirect("http://portal.airport-wifi.test/login"),
    );
    world.services[0].url.push_str("/v1");
    world.services[0].is_web = false;
    world.set_kind("intranet-llm", "http");
    let v = Run::of(&["intranet-llm"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::CaptivePortal);
}

#[tokio::test]
async fn plain_http_redirect_to_https_of_the_same_site_is_fine() {
    let mut world = World::start().await;
    let web = world.web_plain("intranet-chat", "chat.intranet.test").await;
    web.route(
        "GET",
        "/",
        Reply::empty(301).header("location", "https://www.chat.intranet.test/"),
    );
    let v = Run::of(&["intranet-chat"]).verdict(&world).await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
}

#[tokio::test]
async fn control_failing_too_blames_the_users_connection() {
    let world = openai_world().await;
    world.dns.set("api.openai.test", DnsAnswer::NxDomain);
    world
        .dns
        .set(aiwatch_testkit::world::CONTROL_HOST, DnsAnswer::NxDomain);
    world.dns.set("status.openai.test", DnsAnswer::NxDomain);
    let v = Run::of(&["openai-api"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::DnsFailure);
    assert!(
        v.summary.contains("Your internet connection"),
        "{}",
        v.summary
    );
}

#[tokio::test]
async fn cloudflare_challenge_on_api_host_is_bot_challenge() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::cloudflare_challenge());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::Local, Cause::BotChallenge);
}

#[tokio::test]
async fn cloudflare_1020_on_web_is_bot_challenge_but_plain_challenge_is_fine() {
    let mut world = World::start().await;
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", canned::cloudflare_challenge());
    let v = Run::of(&["chatgpt"]).verdict(&world).await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
    assert!(v.summary.contains("browser check"), "{}", v.summary);
    world
        .service("chatgpt")
        .server
        .route("GET", "/", canned::cloudflare_block_1020());
    let v = Run::of(&["chatgpt"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::BotChallenge);
    world
        .service("chatgpt")
        .server
        .route("GET", "/", canned::cloudflare_rate_limited_1015());
    let v = Run::of(&["chatgpt"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::Local, Cause::BotChallenge);
}

// === account side ===

#[tokio::test]
async fn rejected_key_is_auth_invalid_never_an_outage() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_401());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "sk-revoked")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::Account, Cause::AuthInvalid);
    assert!(v.advice[0].contains("OPENAI_API_KEY"), "{:?}", v.advice);
    let json = serde_json::to_string(&v).unwrap();
    assert!(
        !json.contains("sk-revoked"),
        "the key never appears in output"
    );
}

#[tokio::test]
async fn insufficient_quota_is_quota_exhausted() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_insufficient_quota());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(
        &v,
        Status::Operational,
        Scope::Account,
        Cause::QuotaExhausted,
    );
}

#[tokio::test]
async fn rate_limit_429_is_rate_limited() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_rate_limited());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::Account, Cause::RateLimited);
}

#[tokio::test]
async fn unsupported_country_is_region_unsupported() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_region_unsupported());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(
        &v,
        Status::Operational,
        Scope::Account,
        Cause::RegionUnsupported,
    );
}

#[tokio::test]
async fn unknown_model_in_deep_check_is_model_unavailable() {
    let world = openai_world().await;
    api_server(&world).route(
        "POST",
        "/v1/chat/completions",
        canned::openai_model_not_found(),
    );
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .deep()
        .verdict(&world)
        .await;
    assert_verdict(
        &v,
        Status::Operational,
        Scope::Account,
        Cause::ModelUnavailable,
    );
}

#[tokio::test]
async fn anthropic_permission_error_is_permission_denied() {
    let mut world = World::start().await;
    let api = world
        .api("anthropic-api", "api.anthropic.test", "/v1")
        .await;
    api.route(
        "GET",
        "/v1/models",
        canned::anthropic_error(
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
    );
    let v = Run::of(&["anthropic-api"])
        .key("anthropic-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(
        &v,
        Status::Operational,
        Scope::Account,
        Cause::PermissionDenied,
    );
    let seen = world.service("anthropic-api").server.requests();
    assert_eq!(seen[0].header("x-api-key"), Some("k"));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
}

// === provider side ===

#[tokio::test]
async fn server_error_while_page_is_green_is_possible_unreported_outage() {
    let world = openai_world().await;
    api_server(&world).route(
        "GET",
        "/v1/models",
        canned::openai_error(
            500,
            "server_error",
            None,
            "The server had an error while processing your request",
        ),
    );
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::ProviderError);
    assert!(v.summary.contains("unreported"), "{}", v.summary);
}

#[tokio::test]
async fn anthropic_529_is_provider_overloaded_and_the_failed_request_an_outage() {
    let mut world = World::start().await;
    let api = world
        .api("anthropic-api", "api.anthropic.test", "/v1")
        .await;
    api.route("GET", "/v1/models", canned::anthropic_overloaded());
    let v = Run::of(&["anthropic-api"])
        .key("anthropic-api", "k")
        .verdict(&world)
        .await;
    // The one request of this check failed: an outage for its user, whatever the code.
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::ProviderOverloaded);
}

#[tokio::test]
async fn official_incident_with_provider_errors_is_confirmed_global_outage() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", canned::openai_503_overloaded());
    world.status_pages[0]
        .1
        .set_summary(&aiwatch_testkit::summary_with_incident(
            &[
                ("Chat Completions", "major_outage"),
                ("Responses", "major_outage"),
                ("Embeddings", "operational"),
            ],
            "Elevated error rates on the API",
            "major",
        ));
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::OfficialIncident);
    assert!(v.summary.contains("Elevated error rates"), "{}", v.summary);
}

#[tokio::test]
async fn official_degraded_while_probes_work_is_degraded_official_incident() {
    let world = openai_world().await;
    world.status_pages[0]
        .1
        .set_summary(&aiwatch_testkit::summary_with_incident(
            &[("Chat Completions", "degraded_performance")],
            "Increased latency",
            "minor",
        ));
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Degraded, Scope::Global, Cause::OfficialIncident);
}

#[tokio::test]
async fn component_under_maintenance_is_maintenance() {
    let world = openai_world().await;
    let mut summary: serde_json::Value =
        serde_json::from_slice(&aiwatch_testkit::summary_operational(&["Chat Completions"]))
            .unwrap();
    summary["components"][0]["status"] = "under_maintenance".into();
    summary["status"]["indicator"] = "maintenance".into();
    world.status_pages[0]
        .1
        .set_summary(summary.to_string().as_bytes());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Maintenance, Scope::Global, Cause::Maintenance);
}

#[tokio::test]
async fn slow_answer_is_slow_responses() {
    let world = openai_world().await;
    api_server(&world).route(
        "GET",
        "/v1/models",
        canned::openai_models().delay(Duration::from_millis(700)),
    );
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .timeout(Duration::from_secs(1))
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Degraded, Scope::Global, Cause::SlowResponses);
}

#[tokio::test]
async fn web_first_byte_after_4s_is_slow_even_well_within_the_budget() {
    let mut world = World::start().await;
    let web = world.web("slow-chat", "chat.slow.test").await;
    // 4 s against the 3 s web threshold; the 20 s budget keeps the half-budget rule out of it.
    web.route("GET", "/", canned::web_home().delay(Duration::from_secs(4)));
    let v = Run::of(&["slow-chat"])
        .timeout(Duration::from_secs(20))
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Degraded, Scope::Global, Cause::SlowResponses);
    assert_eq!(v.fault().exit_code(), 1);
}

#[tokio::test]
async fn stream_without_finish_marker_is_truncated_responses() {
    let world = openai_world().await;
    api_server(&world).route("POST", "/v1/chat/completions", canned::openai_stream(false));
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .deep()
        .verdict(&world)
        .await;
    assert_verdict(
        &v,
        Status::Degraded,
        Scope::Global,
        Cause::TruncatedResponses,
    );
}

#[tokio::test]
async fn complete_stream_passes_the_deep_check() {
    let world = openai_world().await;
    api_server(&world).route("POST", "/v1/chat/completions", canned::openai_stream(true));
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .deep()
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Operational, Scope::None, Cause::Ok);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.layer == "stream" && e.detail.contains("first token")),
        "{:#?}",
        v.evidence
    );
    let post = api_server(&world)
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["stream"], true);
    assert!(
        body["max_tokens"].as_u64().unwrap() <= 5,
        "a health check never runs up a bill"
    );
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_provider_error_not_a_panic() {
    let world = openai_world().await;
    api_server(&world).route("GET", "/v1/models", Reply::garbage());
    let v = Run::of(&["openai-api"])
        .key("openai-api", "k")
        .verdict(&world)
        .await;
    assert_verdict(&v, Status::Outage, Scope::Global, Cause::ProviderError);
}

#[tokio::test]
async fn unexpected_web_status_is_unknown() {
    let mut world = World::start().await;
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", Reply::text(404, "text/plain", "nope"));
    let v = Run::of(&["chatgpt"]).verdict(&world).await;
    assert_verdict(&v, Status::Unknown, Scope::None, Cause::Unknown);
}

#[tokio::test]
async fn local_server_not_running_is_local_not_an_internet_problem() {
    let mut world = World::start().await;
    world.local("ollama", "").await;
    world.services[0].url = format!("http://127.0.0.1:{}", closed_port().port());
    let v = Run::of(&["ollama"]).verdict(&world).await;
    assert_verdict(&v, Status::NotRunning, Scope::Local, Cause::TcpRefused);
    assert!(v.summary.contains("not running"), "{}", v.summary);
}

#[tokio::test]
async fn one_status_page_serves_every_service_it_covers() {
    let mut world = openai_world().await;
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", canned::web_home());
    world.status_page("chatgpt", "status.openai.test").await;
    let verdicts = Run::of(&["openai-api", "chatgpt"])
        .key("openai-api", "k")
        .verdicts(&world)
        .await;
    assert_eq!(verdicts.len(), 2);
    assert_eq!(world.status_pages.len(), 1);
    assert_eq!(
        world.status_pages[0].1.server().requests().len(),
        1,
        "fetched once for both"
    );
}
