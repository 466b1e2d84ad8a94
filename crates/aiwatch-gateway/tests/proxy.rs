//! An upstream on plain HTTP behind an authenticated forward proxy (HTTP_PROXY with
//! credentials): every request the gateway sends carries `Proxy-Authorization`.

use std::collections::HashMap;
use std::time::Duration;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Config, ServiceName};
use aiwatch_gateway::auth::ClientKeys;
use aiwatch_gateway::{Gateway, GatewaySetup};
use aiwatch_probe::{CheckOptions, DnsChoice, ProxySettings};
use aiwatch_testkit::{canned, FakeProxy, FakeServer};

#[tokio::test]
async fn a_plain_http_upstream_behind_an_authenticated_proxy_gets_the_credentials() {
    let upstream = FakeServer::start(None).await;
    upstream.route("GET", "/v1/models", canned::openai_models());
    let proxy = FakeProxy::start().await.with_credentials("team", "s3cret");
    let proxy_url = format!(
        "http://team:s3cret@{}",
        proxy.url().trim_start_matches("http://")
    );
    let config = Config::parse(&format!(
        "[[service]]\nname = \"lan-llm\"\nkind = \"openai\"\napi_base = \"http://127.0.0.1:{}/v1\"\n\n[gateway]\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"lan-llm:m\"]\n",
        upstream.addr().port()
    ))
    .expect("config");
    let catalog = Catalog::with_config(&config);
    let gw = Gateway::new(GatewaySetup {
        config,
        catalog,
        keys: HashMap::<ServiceName, ApiKey>::new(),
        client_keys: ClientKeys::parse("client-key-0123456789abcdef"),
        network: CheckOptions {
            timeout: Duration::from_secs(5),
            dns: DnsChoice::System,
            ca_files: Vec::new(),
            control_url: None,
            deep: false,
            proxies: ProxySettings::from_values(None, Some(&proxy_url), None).expect("proxy"),
        },
        monitor: None,
    })
    .expect("gateway");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let listed = gw.upstreams[0].list_models(deadline).await;
    assert!(listed.is_ok(), "the proxy let it through: {listed:?}");
    assert_eq!(
        proxy.forwarded().len(),
        1,
        "the request went through the proxy"
    );
    assert_eq!(upstream.requests().len(), 1, "and reached the upstream");
    assert!(
        upstream.requests()[0]
            .header("proxy-authorization")
            .is_none(),
        "the credentials stop at the proxy"
    );
}
