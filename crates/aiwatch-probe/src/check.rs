//! Runs `aiwatch check`: for each service, the web and API probes, the optional streamed
//! completion and the official page, plus one control probe — all at once, within one budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::evidence::{ApiEvidence, CheckEvidence, OfficialOutcome, ProbeReport, Purpose};
use aiwatch_core::official::OfficialStatus;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{Service, ServiceKind, ServiceName, StatusSource};
use futures_util::future::join_all;
use rustls::client::WebPkiServerVerifier;
use tokio::time::Instant;

use crate::api::{list_models, model_ids};
use crate::dns::{Dns, DnsChoice};
use crate::layered::{probe, Ask, ProbeContext};
use crate::official::fetch_official;
use crate::proxy::ProxySettings;
use crate::stream::streamed_completion;
use crate::tls::Trust;
use crate::Error;

/// How a check runs.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The budget of the whole check.
    pub timeout: Duration,
    pub dns: DnsChoice,
    /// Extra roots (`--ca-file`): trusted, but counted as non-public.
    pub ca_files: Vec<PathBuf>,
    /// The neutral host; `None` skips the control probe.
    pub control_url: Option<String>,
    /// Also send one tiny streamed completion per API.
    pub deep: bool,
    pub proxies: ProxySettings,
}

/// Runs checks with one resolver, one trust store and one proxy setting.
pub struct Checker {
    ctx: ProbeContext,
    options: CheckOptions,
}

impl Checker {
    pub fn new(options: CheckOptions) -> Result<Self, Error> {
        // One query may use at most half the budget, so a slow resolver leaves time to report.
        let dns = Dns::new(&options.dns, options.timeout / 2)?;
        let trust = Trust::new(&options.ca_files)?;
        Ok(Self {
            ctx: ProbeContext {
                dns,
                proxies: options.proxies.clone(),
                trust,
            },
            options,
        })
    }

    /// The shared probe context (for the status poller and tests).
    pub fn context(&self) -> &ProbeContext {
        &self.ctx
    }

    /// Checks every service at once; the evidence comes back in the services' order.
    pub async fn run(
        &self,
        services: &[Service],
        keys: &HashMap<ServiceName, ApiKey>,
    ) -> Result<Vec<CheckEvidence>, Error> {
        let deadline = Instant::now() + self.options.timeout;
        let expected: Vec<Option<Arc<WebPkiServerVerifier>>> = services
            .iter()
            .map(|s| self.expected_verifier(s))
            .collect::<Result<_, _>>()?;

        let control = self.control(deadline);

        // Each distinct status page is fetched once, however many services it covers.
        let mut sources: Vec<(&StatusSource, Vec<String>)> = Vec::new();
        for service in services {
            if let Some(source) = &service.status {
                match sources.iter_mut().find(|(s, _)| *s == source) {
                    Some((_, products)) => {
                        products.extend(service.status_components.iter().cloned())
                    }
                    None => sources.push((source, service.status_components.clone())),
                }
            }
        }
        let pages = join_all(sources.iter().map(|(source, products)| async move {
            fetch_official(&self.ctx, source, products, deadline).await
        }));

        let checks = join_all(services.iter().zip(expected).map(|(service, expected)| {
            self.check_service(
                service,
                keys.get(&service.name),
                expected,
                self.options.deep,
                deadline,
            )
        }));

        let (control, pages, checks) = tokio::join!(control, pages, checks);
        let pages: HashMap<&StatusSource, &Result<OfficialStatus, String>> =
            sources.iter().map(|(s, _)| *s).zip(pages.iter()).collect();

        Ok(services
            .iter()
            .zip(checks)
            .map(|(service, ServiceProbes { web, api, stream })| {
                let official = match service.status.as_ref().and_then(|s| pages.get(s)) {
                    None => OfficialOutcome::NotConfigured,
                    Some(Err(error)) => OfficialOutcome::Unavailable {
                        error: error.clone(),
                    },
                    Some(Ok(page)) => {
                        OfficialOutcome::View(page.view_for(&service.status_components))
                    }
                };
                CheckEvidence {
                    control: control.clone(),
                    web,
                    api,
                    stream,
                    official,
                    budget: self.options.timeout,
                }
            })
            .collect())
    }

    /// The verifier for a service's own CA (`ca_file`), read once and reused for its checks.
    pub fn expected_verifier(
        &self,
        service: &Service,
    ) -> Result<Option<Arc<WebPkiServerVerifier>>, Error> {
        service
            .ca_file
            .as_deref()
            .map(|p| self.ctx.trust.expected_verifier(p))
            .transpose()
    }

    /// The control probe to the neutral host, if one is configured.
    pub async fn control(&self, deadline: Instant) -> Option<ProbeReport> {
        let url = self.options.control_url.as_ref()?;
        Some(
            probe(&self.ctx, Purpose::Control, url, Ask::get(), None, deadline)
                .await
                .report,
        )
    }

    /// Probes one service's web front-end and API (and, when `deep`, one streamed completion).
    pub async fn check_service(
        &self,
        service: &Service,
        key: Option<&ApiKey>,
        expected: Option<Arc<WebPkiServerVerifier>>,
        deep: bool,
        deadline: Instant,
    ) -> ServiceProbes {
        let web = async {
            let url = service.web_url.as_deref()?;
            let mut ask = Ask::get();
            ask.headers.push((
                "accept",
                "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8".into(),
            ));
            Some(
                probe(
                    &self.ctx,
                    Purpose::Web,
                    url,
                    ask,
                    expected.clone(),
                    deadline,
                )
                .await
                .report,
            )
        };
        let api = async {
            let call = list_models(service, key)?;
            let probed = probe(
                &self.ctx,
                Purpose::Api,
                &call.url,
                call.ask,
                expected.clone(),
                deadline,
            )
            .await;
            let mut report = probed.report;
            let ok = report
                .response()
                .is_some_and(|r| (200..300).contains(&r.status));
            let models = if ok { model_ids(&probed.body) } else { None };
            report.api = Some(ApiEvidence {
                call: call.label,
                key_env: service.api_key_env.clone(),
                key_present: key.is_some(),
                models: models.as_ref().map(Vec::len),
                key_withheld: probed
                    .key_withheld
                    .then(|| "TLS is intercepted; the key was not sent through it".to_owned()),
            });
            Some((report, models))
        };
        let (web, api) = tokio::join!(web, api);
        let (api, models) = match api {
            Some((report, models)) => (Some(report), models),
            None => (None, None),
        };

        let needs_key = !matches!(service.kind, ServiceKind::Ollama) && !service.local;
        let stream = if deep && models.is_some() && (key.is_some() || !needs_key) {
            let model = service
                .probe_model
                .clone()
                .or_else(|| models.as_ref().and_then(|m| m.first().cloned()));
            match model {
                Some(model) => Some(
                    streamed_completion(&self.ctx, service, &model, key, expected, deadline).await,
                ),
                None => None,
            }
        } else {
            None
        };
        ServiceProbes { web, api, stream }
    }
}

/// The own probes of one service.
#[derive(Clone, Debug)]
pub struct ServiceProbes {
    pub web: Option<ProbeReport>,
    pub api: Option<ProbeReport>,
    pub stream: Option<aiwatch_core::evidence::StreamEvidence>,
}
