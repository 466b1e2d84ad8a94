//! Problem reports from people ("is anyone else seeing this?"): who is a reporter (a random
//! token in a cookie or header, kept only as a salted hash whose salt changes every day — no
//! address is ever stored), one counted report per reporter, service and window, floods held
//! back per token and per address, and what reports and public posts say about a service now.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use aiwatch_core::observation::Region;
use aiwatch_core::scrub::scrub;
use aiwatch_core::symptom::Symptom;
use aiwatch_core::ServiceName;
use aiwatch_inbound::throttle::Throttle;
use aiwatch_store::{NewReport, Store};
use chrono::{DateTime, Utc};

/// The cookie that carries a browser's reporter token.
pub const COOKIE: &str = "aiwatch_reporter";
/// The header that carries a script's (or the CLI's) reporter token.
pub const HEADER: &str = "x-aiwatch-reporter";
/// A comment is cut to this many characters.
pub const COMMENT_CAP: usize = 500;
/// The `meta` key of the server's secret the reporter hashes are keyed with.
const SECRET_KEY: &str = "reporter_secret";

/// Why a report was not taken.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// A field is wrong; the message says which values are allowed.
    Invalid(String),
    /// Too many reports from this reporter or address lately.
    TooMany(Duration),
    Store,
}

/// A report as received, before validation.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    pub service: String,
    pub symptom: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Takes reports: validation, the reporter's hash, the window, the limits.
pub struct ReportDesk {
    secret: ring::hmac::Key,
    /// One counted report per reporter, service and window.
    pub window: Duration,
    per_token: Throttle<u64>,
    per_address: Throttle,
    /// The regions each service has been reported from in this run: bounded, so made-up
    /// region names cannot grow the detector's series (past the cap they count as "other").
    regions:
        std::sync::Mutex<std::collections::HashMap<ServiceName, std::collections::HashSet<String>>>,
}

/// Distinct regions per service before new ones count as "other".
pub const REGIONS_PER_SERVICE: usize = 32;

impl ReportDesk {
    /// Keys the reporter hashes with the server's secret (made once, kept in the store).
    pub fn new(store: &dyn Store, window: Duration) -> Result<Self, aiwatch_store::Error> {
        let secret = store.meta_value(SECRET_KEY, &random_hex(32))?;
        Ok(Self {
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
            window: window.max(Duration::from_secs(60)),
            // A reporter may correct itself a few times, not flood.
            per_token: Throttle::new(10, Duration::from_secs(6)),
            // A shared address (an office, a school) reports for many people.
            per_address: Throttle::new(60, Duration::from_secs(1)),
            regions: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// A new reporter token (for a browser without the cookie).
    pub fn new_token() -> String {
        random_hex(16)
    }

    /// The reporter's stored identity: an HMAC of the token and the day, so it cannot be
    /// linked across days, nor back to the token.
    pub fn reporter_hash(&self, token: &str, at: DateTime<Utc>) -> String {
        let day = at.date_naive().to_string();
        let tag = ring::hmac::sign(&self.secret, format!("{day}\n{token}").as_bytes());
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Validates a report and saves it; `Ok(counted)`.
    pub fn take(
        &self,
        store: &dyn Store,
        services: &[ServiceName],
        incoming: Incoming,
        token: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<bool, Refusal> {
        let report = self.validate(services, incoming, token, now)?;
        self.per_token
            .take(token_key(token))
            .map_err(Refusal::TooMany)?;
        if let Some(ip) = address {
            self.per_address.take(ip).map_err(Refusal::TooMany)?;
        }
        store.insert_report(&report).map_err(|e| {
            tracing::error!(error = %e, "a problem report could not be saved");
            Refusal::Store
        })
    }

    fn validate(
        &self,
        services: &[ServiceName],
        incoming: Incoming,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<NewReport, Refusal> {
        let service = services
            .iter()
            .find(|s| s.as_str() == incoming.service)
            .cloned()
            .ok_or_else(|| {
                let close = aiwatch_core::catalog::closest_names(
                    &incoming.service,
                    services.iter().map(ServiceName::as_str),
                );
                let hint = if close.is_empty() {
                    format!(
                        "watched services: {}",
                        services
                            .iter()
                            .map(ServiceName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!("did you mean {}?", close.join(", "))
                };
                Refusal::Invalid(format!(
                    "`service`: `{}` is not watched here; {hint}",
                    cut(&incoming.service, 64)
                ))
            })?;
        let symptom = Symptom::parse(&incoming.symptom).ok_or_else(|| {
            Refusal::Invalid(format!(
                "`symptom`: `{}` is not one of {}",
                cut(&incoming.symptom, 64),
                Symptom::vocabulary()
            ))
        })?;
        let region = match incoming.region.as_deref().map(str::trim) {
            None | Some("") => Region::from("unknown"),
            Some(r) if is_coarse_region(r) => {
                let r = r.to_ascii_lowercase();
                let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
                let known = regions.entry(service.clone()).or_default();
                if known.contains(&r) || known.len() < REGIONS_PER_SERVICE {
                    known.insert(r.clone());
                    Region::from(r)
                } else {
                    Region::from("other")
                }
            }
            Some(r) => {
                return Err(Refusal::Invalid(format!(
                    "`region`: `{}` is not a region name (letters, digits and dashes, at most 32, like \"eu-west\" or \"fr\")",
                    cut(r, 64)
                )))
            }
        };
        if token.len() < 16 || token.len() > 128 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Refusal::Invalid(
                "the reporter token (cookie or X-Aiwatch-Reporter) must be 16 to 128 visible characters".into(),
            ));
        }
        let comment = incoming
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| scrub(&cut(c, COMMENT_CAP), &[]).into_owned());
        let window = i64::try_from(self.window.as_millis()).unwrap_or(3_600_000);
        let start = now.timestamp_millis().div_euclid(window) * window;
        Ok(NewReport {
            service,
            region,
            symptom: symptom.id().to_owned(),
            reporter: self.reporter_hash(token, now),
            window_start: DateTime::from_timestamp_millis(start).unwrap_or(now),
            at: now,
            comment,
        })
    }
}

fn is_coarse_region(raw: &str) -> bool {
    (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn cut(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

/// The throttle's key for a token (the token itself is not kept in the table).
fn token_key(token: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        // The OS has no randomness to give: fall back to a weaker source rather than fail.
        buf.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk() -> (tempfile::TempDir, aiwatch_store::SqliteStore, ReportDesk) {
        let dir = tempfile::tempdir().unwrap();
        let store = aiwatch_store::SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let desk = ReportDesk::new(&store, Duration::from_secs(3600)).unwrap();
        (dir, store, desk)
    }

    fn services() -> Vec<ServiceName> {
        vec![ServiceName::parse("chatgpt").unwrap()]
    }

    fn report(symptom: &str) -> Incoming {
        Incoming {
            service: "chatgpt".into(),
            symptom: symptom.into(),
            ..Incoming::default()
        }
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn one_reporter_counts_once_per_service_and_window() {
        let (_d, store, desk) = desk();
        let now = Utc::now();
        assert_eq!(
            desk.take(&store, &services(), report("cannot_load"), TOKEN, None, now),
            Ok(true)
        );
        assert_eq!(
            desk.take(&store, &services(), report("blank_page"), TOKEN, None, now),
            Ok(false)
        );
        let other = "fedcba9876543210fedc";
        assert_eq!(
            desk.take(&store, &services(), report("cannot_load"), other, None, now),
            Ok(true)
        );
    }

    #[test]
    fn the_stored_reporter_is_a_hash_that_changes_every_day() {
        let (_d, _store, desk) = desk();
        let day1: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        let day2: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let a = desk.reporter_hash(TOKEN, day1);
        assert_eq!(
            a,
            desk.reporter_hash(TOKEN, day1 + chrono::Duration::hours(5))
        );
        assert_ne!(a, desk.reporter_hash(TOKEN, day2));
        assert!(!a.contains(TOKEN));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn unknown_services_and_symptoms_are_refused_with_the_allowed_values() {
        let (_d, store, desk) = desk();
        let now = Utc::now();
        let mut wrong = report("cannot_load");
        wrong.service = "chatgtp".into();
        let Err(Refusal::Invalid(text)) = desk.take(&store, &services(), wrong, TOKEN, None, now)
        else {
            panic!("refused");
        };
        assert!(text.contains("did you mean chatgpt"), "{text}");
        let Err(Refusal::Invalid(text)) =
            desk.take(&store, &services(), report("broken"), TOKEN, None, now)
        else {
            panic!("refused");
        };
        assert!(
            text.contains("login_loop") && text.contains("missing_history"),
            "{text}"
        );
    }

    #[test]
    fn comments_are_capped_and_scrubbed_of_keys() {
        let (_d, _store, desk) = desk();
        let mut r = report("other");
        r.comment = Some(format!(
            "my key sk-proj-{} fails {}",
            "a".repeat(40),
            "x".repeat(900)
        ));
        let saved = desk.validate(&services(), r, TOKEN, Utc::now()).unwrap();
        let comment = saved.comment.unwrap();
        assert!(
            comment.chars().count() <= COMMENT_CAP + 20,
            "{}",
            comment.len()
        );
        assert!(!comment.contains(&"a".repeat(40)), "{comment}");
    }

    #[test]
    fn made_up_regions_past_the_cap_count_as_other() {
        let (_d, _store, desk) = desk();
        let mut last = String::new();
        for i in 0..=REGIONS_PER_SERVICE {
            let mut r = report("other");
            r.region = Some(format!("region-{i}"));
            last = desk
                .validate(&services(), r, TOKEN, Utc::now())
                .unwrap()
                .region
                .to_string();
        }
        assert_eq!(last, "other");
    }

    #[test]
    fn a_flooding_reporter_is_held_back() {
        let (_d, store, desk) = desk();
        let now = Utc::now();
        let mut refused = None;
        for _ in 0..20 {
            if let Err(e) = desk.take(&store, &services(), report("other"), TOKEN, None, now) {
                refused = Some(e);
                break;
            }
        }
        assert!(matches!(refused, Some(Refusal::TooMany(_))), "{refused:?}");
    }
}
