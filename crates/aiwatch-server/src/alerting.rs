//! Alerts in the daemon: hands the core's rules the one fused picture the engine shows every
//! surface (never raw probe results), and runs the deliverer over the store's outbox. What
//! the rules decide is saved by the writer in the transaction of the incident change that
//! caused it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aiwatch_alerts::Deliverer;
use aiwatch_core::alert_rules::{
    AlertRules, Decided, IncidentBrief, KeyPicture, Notification, OfficialNote, Picture, UsageSpike,
};
use aiwatch_core::cause::AdviceContext;
use aiwatch_store::{DeliveryQuery, Store};
use chrono::{DateTime, Utc};

use crate::engine::Engine;

/// How far back decisions are read to resume the rules after a restart.
const RESUME_WINDOW_DAYS: i64 = 14;
/// At most this many decisions are read back.
const RESUME_LIMIT: usize = 50_000;

/// Where the gateway's usage spikes come from, when the gateway runs in the same process.
pub type UsageSource = Arc<dyn Fn() -> Vec<UsageSpike> + Send + Sync>;

/// The daemon's alerting: the rules with what they have told, and the delivery worker.
pub struct Alerting {
    rules: Mutex<AlertRules>,
    pub deliverer: Arc<Deliverer>,
    /// The dashboard's base address, for links.
    dashboard: String,
    usage: OnceLock<UsageSource>,
}

impl Alerting {
    /// Builds the rules for the deliverer's channels and resumes them from the outbox.
    pub fn new(
        rules: AlertRules,
        deliverer: Arc<Deliverer>,
        dashboard: String,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Self, aiwatch_store::Error> {
        let mut rules = rules;
        let decided: Vec<Decided> = store
            .deliveries(&DeliveryQuery {
                since: Some(now - chrono::Duration::days(RESUME_WINDOW_DAYS)),
                limit: RESUME_LIMIT,
                oldest_first: true,
                ..DeliveryQuery::default()
            })?
            .into_iter()
            .map(|d| Decided {
                alert: d.alert,
                message: d.message,
            })
            .collect();
        rules.resume(&decided);
        Ok(Self {
            rules: Mutex::new(rules),
            deliverer,
            dashboard: dashboard.trim_end_matches('/').to_owned(),
            usage: OnceLock::new(),
        })
    }

    /// Feeds the gateway's usage spikes to the rules (`usage_spike` events).
    pub fn set_usage_source(&self, source: UsageSource) {
        let _ = self.usage.set(source);
    }

    /// What the rules owe at `now`, from the engine's current picture.
    pub fn evaluate(&self, engine: &Engine, now: DateTime<Utc>) -> Vec<Notification> {
        let picture = self.picture(engine, now);
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .evaluate(&picture)
    }

    fn picture(&self, engine: &Engine, now: DateTime<Utc>) -> Picture {
        let incidents: HashMap<_, _> = engine
            .open_incidents()
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect();
        let mut keys = Vec::new();
        for (service, now_of) in engine.services.iter().zip(engine.services_now()) {
            let official = engine.official_of(&service.name);
            let note = official.view.as_ref().map(|view| OfficialNote {
                indicator: view.indicator.as_ref().map(|i| i.as_str().to_owned()),
                incident: view.incidents.first().map(|i| i.name.clone()),
                url: view
                    .incidents
                    .first()
                    .and_then(|i| i.url.clone())
                    .or_else(|| service.status.as_ref().map(|s| s.url().to_owned())),
            });
            let host = service
                .api_base
                .as_deref()
                .or(service.web_url.as_deref())
                .and_then(aiwatch_core::network::url_host);
            for component in now_of.components {
                let assessment = component.assessment;
                let cause = assessment.notice.map_or(assessment.cause, |n| n.cause());
                let advice = cause.advice(&AdviceContext {
                    key_env: service.api_key_env.as_deref(),
                    host,
                    issuer: None,
                    local_service: service.local,
                });
                keys.push(KeyPicture {
                    incident: incidents.get(&component.key).map(|i| IncidentBrief {
                        id: i.id.clone(),
                        opened_at: i.opened_at,
                        confirmed: i.confirmed,
                    }),
                    key: component.key,
                    title: service.title.clone(),
                    assessment,
                    since: component.since,
                    summary: component.description,
                    advice,
                    official: note.clone(),
                });
            }
        }
        Picture {
            at: now,
            keys,
            monitor_online: engine.monitor_online_now(),
            usage_spikes: self.usage.get().map(|source| source()).unwrap_or_default(),
            dashboard: self.dashboard.clone(),
        }
    }
}
