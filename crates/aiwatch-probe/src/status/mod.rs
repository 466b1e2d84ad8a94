//! Pure parsers for official status pages: bytes in, the core's normalized
//! [`OfficialStatus`](aiwatch_core::official::OfficialStatus) model out, no I/O.
//!
//! | format | parser |
//! |---|---|
//! | Atlassian Statuspage `/api/v2/summary.json`, and incident.io's compatible one | [`parse_statuspage_summary`] |
//! | Statuspage `incidents.json`, `incidents/unresolved.json` | [`parse_statuspage_incidents`] |
//! | Statuspage `scheduled-maintenances.json`, `/upcoming.json`, `/active.json` | [`parse_statuspage_maintenances`] |
//! | Google Cloud `status.cloud.google.com/incidents.json` | [`parse_google_cloud_incidents`] |
//! | Atom / RSS incident-history feeds | [`parse_feed`] |
//!
//! Rules every parser follows:
//! - Enum values go through `from_raw`: a value the format did not define becomes `Unknown(raw)`,
//!   never a panic and never a silent "operational".
//! - A body that is not the format (an HTML page served with 200, truncated JSON, JSON of the
//!   wrong shape, a field of the wrong type) is an
//!   [`Error::StatusFormat`](crate::Error::StatusFormat) whose reason says what was found and
//!   where; a missing optional field or an unreadable timestamp is not an error.
//! - When an id appears twice in one collection, the first occurrence is kept and the later
//!   ones are dropped.
//! - Work is linear in the size of the body (the size cap itself is the fetcher's job).

mod feed;
mod google_cloud;
mod json;
mod statuspage;
mod time;

use std::collections::HashSet;

pub use feed::parse_feed;
pub use google_cloud::parse_google_cloud_incidents;
pub use statuspage::{
    parse_statuspage_incidents, parse_statuspage_maintenances, parse_statuspage_summary,
};

/// Keeps the first item of each id, in order.
fn first_of_each_id<T>(items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .into_iter()
        .filter(|item| seen.insert(id(item).to_owned()))
        .collect()
}

/// Removes repeated strings, keeping the first of each, in order.
fn dedup_keep_order(values: Vec<String>) -> Vec<String> {
    first_of_each_id(values, String::as_str)
}

/// Orders updates newest first when every one has a time; otherwise keeps the page's order
/// (which is newest first on every format seen).
fn newest_first(updates: &mut [aiwatch_core::official::IncidentUpdate]) {
    if updates.iter().all(|u| u.created_at.is_some()) {
        updates.sort_by_key(|u| std::cmp::Reverse(u.created_at));
    }
}

/// Parses a status page in the format its source says it is in.
pub fn parse(
    source: &aiwatch_core::service::StatusSource,
    body: &[u8],
    products: &[String],
) -> Result<aiwatch_core::official::OfficialStatus, crate::Error> {
    use aiwatch_core::service::StatusSource;
    match source {
        StatusSource::Statuspage(_) => parse_statuspage_summary(body),
        StatusSource::GoogleCloud(_) => parse_google_cloud_incidents(body, products),
        StatusSource::Feed(_) => parse_feed(body),
    }
}
