//! Lenient timestamp reading for status pages: RFC 3339 with any offset, the same without a
//! zone (taken as UTC), and `None` for anything else — a bad timestamp never fails a page.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Longest text worth trying; status-page timestamps are about 30 characters.
const MAX_LEN: usize = 64;

const WITH_OFFSET: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];
const WITHOUT_ZONE: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// Reads `2026-10-07T21:44:41.466Z`, `2022-06-28T16:08:29+00:00`, `…+0200`,
/// `2026-10-07 21:44:41` (no zone: UTC), `2026-10-07T21:44:41 UTC`; anything else is `None`.
pub(crate) fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let text = raw.trim();
    if text.is_empty() || text.len() > MAX_LEN {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in WITH_OFFSET {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = text
        .strip_suffix("UTC")
        .or_else(|| text.strip_suffix("GMT"))
        .map_or(text, str::trim_end);
    WITHOUT_ZONE
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive, format).ok())
        .map(|t| t.and_utc())
}
