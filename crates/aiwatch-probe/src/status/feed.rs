//! Parses Atom/RSS incident-history feeds (Atlassian Statuspage `/history.atom`,
//! `/history.rss`) into incidents and maintenances, using `feed-rs` for the XML.
//!
//! One entry is one incident (or maintenance). Its HTML holds every update, newest first, as
//! `<p><small>Feb <var>4</var>, <var>17:06</var> UTC</small><br><strong>Status</strong> - body</p>`.
//! What is done with it:
//! - Labels map to statuses: Investigating/Identified/Monitoring/Resolved/Postmortem are
//!   incident statuses; `Update` carries the status of the update before it (older), or
//!   Investigating when there is none; Scheduled/In progress/Verifying/Completed are maintenance
//!   statuses, and an entry with any of them is a maintenance (its status = the newest
//!   maintenance label). Any other label is `IncidentStatus::Unknown(label)` — which counts as
//!   active, never as resolved. Update statuses are written like the JSON API's
//!   (`resolved`, `in_progress`, …).
//! - Both active and resolved incidents are listed (resolved ones with status resolved), so a
//!   history view can show them.
//! - Feeds carry no impact: incidents get `Impact::Unknown("")`, maintenances
//!   `Impact::Maintenance` (Statuspage's default for them).
//! - Indicator: `minor` when any incident is active (the feed cannot say how bad), else
//!   `maintenance` when a maintenance is in progress or verifying, else `none`.
//! - Update times come from the `<small>` date, which has no year: the year is taken from the
//!   entry's `published` (else `updated`), and a date that would fall more than two days after
//!   it belongs to the year before. `created_at` = the oldest update's time, `updated_at` =
//!   the newest one's, `resolved_at` = the newest one's when resolved; each falls back to the
//!   entry's `published`/`updated` when the dates cannot be read.
//! - The id is the incident code from the entry link (`…/incidents/<code>`, the same id the
//!   JSON API uses, and the same for Atom and RSS), else the entry id.
//! - Entries without `<small>`/`<strong>` markup (other generators) are read best-effort: the
//!   text after `Status:` gives the label when present; otherwise the status is
//!   `Unknown("")`.

use aiwatch_core::official::{
    Impact, Incident, IncidentStatus, IncidentUpdate, Indicator, Maintenance, MaintenanceStatus,
    OfficialStatus,
};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::first_of_each_id;
use super::json::{describe_markup, format_error, trim_start};
use crate::Error;

const FORMAT: &str = "atom/rss feed";

/// Parses an Atom or RSS incident-history feed into incidents (active and resolved) and
/// maintenances; see the module documentation for how entries are read.
pub fn parse_feed(body: &[u8]) -> Result<OfficialStatus, Error> {
    let head = trim_start(body);
    if head.is_empty() {
        return Err(format_error(FORMAT, "empty body, not a feed"));
    }
    if is_html(head) {
        return Err(format_error(
            FORMAT,
            describe_markup(head, "an Atom/RSS feed"),
        ));
    }
    if head[0] == b'{' || head[0] == b'[' {
        // feed-rs would read a JSON Feed, but a JSON error body must not pass for an empty,
        // all-clear history.
        return Err(format_error(FORMAT, "got JSON, not an Atom/RSS feed"));
    }
    let feed = feed_rs::parser::Builder::new()
        .sanitize_content(false)
        .build()
        .parse(body)
        .map_err(|e| format_error(FORMAT, format!("not a readable Atom/RSS feed: {e}")))?;

    let mut incidents = Vec::new();
    let mut maintenances = Vec::new();
    for entry in &feed.entries {
        match read_entry(entry) {
            Item::Incident(incident) => incidents.push(incident),
            Item::Maintenance(maintenance) => maintenances.push(maintenance),
        }
    }
    let incidents = first_of_each_id(incidents, |i| &i.id);
    let maintenances = first_of_each_id(maintenances, |m| &m.id);

    let indicator = if incidents.iter().any(|i| !i.status.is_resolved()) {
        Indicator::Minor
    } else if maintenances.iter().any(|m| m.status.is_active()) {
        Indicator::Maintenance
    } else {
        Indicator::None
    };
    Ok(OfficialStatus {
        page_name: feed.title.as_ref().and_then(|t| page_name(&t.content)),
        page_url: page_link(&feed.links),
        indicator: Some(indicator),
        description: None,
        components: Vec::new(),
        incidents,
        maintenances,
        updated_at: feed.updated.or(feed.published),
    })
}

fn is_html(head: &[u8]) -> bool {
    let start = head[..head.len().min(512)].to_ascii_lowercase();
    start.starts_with(b"<!doctype html") || start.starts_with(b"<html")
}

/// "Claude Status - Incident History" → "Claude Status".
fn page_name(title: &str) -> Option<String> {
    let title = title.trim();
    let title = title.strip_suffix("Incident History").map_or(title, |t| {
        t.trim_end().trim_end_matches(['-', '–']).trim_end()
    });
    (!title.is_empty()).then(|| title.to_owned())
}

/// The page's (or entry's) own link: `rel="alternate"` or no rel, never `self`.
fn page_link(links: &[feed_rs::model::Link]) -> Option<String> {
    links
        .iter()
        .find(|l| matches!(l.rel.as_deref(), None | Some("alternate")))
        .map(|l| l.href.trim().to_owned())
        .filter(|href| !href.is_empty())
}

enum Item {
    Incident(Incident),
    Maintenance(Maintenance),
}

/// What an update's `<strong>` label says.
#[derive(Clone, Debug)]
enum Label {
    Incident(IncidentStatus),
    Maintenance(MaintenanceStatus),
    Update,
    Other(String),
    Missing,
}

impl Label {
    fn read(raw: Option<&str>) -> Self {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Label::Missing;
        };
        let code = raw.to_ascii_lowercase().replace([' ', '-'], "_");
        match code.as_str() {
            "investigating" | "identified" | "monitoring" | "resolved" | "postmortem" => {
                Label::Incident(IncidentStatus::from_raw(&code))
            }
            "scheduled" | "in_progress" | "verifying" | "completed" => {
                Label::Maintenance(MaintenanceStatus::from_raw(&code))
            }
            "update" => Label::Update,
            _ => Label::Other(raw.to_owned()),
        }
    }
}

/// One update as written in the entry's HTML.
struct RawUpdate {
    label: Option<String>,
    body: String,
    created_at: Option<DateTime<Utc>>,
}

fn read_entry(entry: &feed_rs::model::Entry) -> Item {
    let url = page_link(&entry.links);
    let id = url
        .as_deref()
        .and_then(incident_code)
        .unwrap_or_else(|| entry.id.clone());
    let name = entry
        .title
        .as_ref()
        .map(|t| t.content.trim().to_owned())
        .unwrap_or_default();
    let html = entry
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .or(entry.summary.as_ref().map(|s| s.content.as_str()))
        .unwrap_or("");
    let reference = entry.published.or(entry.updated);
    let raw_updates = split_updates(html, reference);
    let labels: Vec<Label> = raw_updates
        .iter()
        .map(|u| Label::read(u.label.as_deref()))
        .collect();
    let updates: Vec<IncidentUpdate> = raw_updates
        .into_iter()
        .map(|u| IncidentUpdate {
            status: u
                .label
                .map(|l| l.trim().to_ascii_lowercase().replace(' ', "_"))
                .unwrap_or_default(),
            body: u.body,
            created_at: u.created_at,
        })
        .collect();
    let newest = updates.first().and_then(|u| u.created_at);
    let oldest = updates.last().and_then(|u| u.created_at);
    let updated_at = newest.or(entry.updated).or(entry.published);

    if let Some(status) = labels.iter().find_map(|l| match l {
        Label::Maintenance(status) => Some(status.clone()),
        _ => None,
    }) {
        return Item::Maintenance(Maintenance {
            id,
            name,
            status,
            impact: Impact::Maintenance,
            scheduled_for: None,
            scheduled_until: None,
            url,
            components: Vec::new(),
            updates,
        });
    }
    let status = current_status(&labels);
    let resolved_at = status.is_resolved().then_some(updated_at).flatten();
    Item::Incident(Incident {
        id,
        name,
        status,
        impact: Impact::Unknown(String::new()),
        created_at: oldest.or(entry.published),
        updated_at,
        resolved_at,
        url,
        components: Vec::new(),
        updates,
    })
}

/// The newest label that says a status; `Update` defers to the one before it.
fn current_status(labels: &[Label]) -> IncidentStatus {
    let mut saw_update = false;
    for label in labels {
        match label {
            Label::Incident(status) => return status.clone(),
            Label::Other(raw) => return IncidentStatus::Unknown(raw.clone()),
            Label::Update => saw_update = true,
            Label::Maintenance(_) | Label::Missing => {}
        }
    }
    if saw_update {
        IncidentStatus::Investigating
    } else {
        IncidentStatus::Unknown(String::new())
    }
}

/// `https://status.claude.com/incidents/pvbysfjjrf8m` → `pvbysfjjrf8m`.
fn incident_code(url: &str) -> Option<String> {
    let (_, rest) = url.rsplit_once("/incidents/")?;
    let code = rest.split(['/', '?', '#']).next()?.trim();
    (!code.is_empty()).then(|| code.to_owned())
}

/// Splits an entry's HTML into its updates, newest first. Each update starts at a `<small>`
/// (its date); without any, at each `<strong>`; without either, the whole text is one update.
fn split_updates(html: &str, reference: Option<DateTime<Utc>>) -> Vec<RawUpdate> {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let mut starts: Vec<usize> = lower.match_indices("<small").map(|(i, _)| i).collect();
    if starts.is_empty() {
        starts = lower.match_indices("<strong").map(|(i, _)| i).collect();
    }
    if starts.is_empty() {
        let text = html_to_text(html);
        if text.is_empty() {
            return Vec::new();
        }
        return vec![RawUpdate {
            label: status_prefix_label(&text),
            body: text,
            created_at: None,
        }];
    }
    let ends = starts.iter().skip(1).copied().chain([html.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|(&start, end)| read_update(&html[start..end], &lower[start..end], reference))
        .collect()
}

/// Reads `<small>DATE</small><br><strong>LABEL</strong> - BODY</p>` (the date is optional).
fn read_update(html: &str, lower: &str, reference: Option<DateTime<Utc>>) -> RawUpdate {
    let mut rest = 0;
    let mut created_at = None;
    if lower.starts_with("<small") {
        if let Some((inner, after)) = element(html, lower, 0, "small") {
            created_at = parse_update_time(&html_to_text(inner), reference);
            rest = after;
        }
    }
    let mut label = None;
    if let Some(open) = lower[rest..].find("<strong") {
        if let Some((inner, after)) = element(html, lower, rest + open, "strong") {
            let text = html_to_text(inner);
            label = (!text.is_empty()).then_some(text);
            rest = after;
        }
    }
    let body = html_to_text(&html[rest..]);
    let body = body
        .strip_prefix(['-', '–', ':'])
        .map_or(body.as_str(), str::trim_start)
        .to_owned();
    RawUpdate {
        label,
        body,
        created_at,
    }
}

/// The inner HTML of the element `<tag …>…</tag>` opening at `open`, and the offset after it.
fn element<'h>(html: &'h str, lower: &str, open: usize, tag: &str) -> Option<(&'h str, usize)> {
    let inner_start = open + lower[open..].find('>')? + 1;
    let close = format!("</{tag}");
    let inner_len = lower[inner_start..].find(&close)?;
    let inner_end = inner_start + inner_len;
    let after = lower[inner_end..]
        .find('>')
        .map_or(lower.len(), |i| inner_end + i + 1);
    Some((&html[inner_start..inner_end], after))
}

/// The label after "Status:" in a plain-text entry ("Status: Investigating …").
fn status_prefix_label(text: &str) -> Option<String> {
    const KNOWN: &[&str] = &[
        "investigating",
        "identified",
        "monitoring",
        "resolved",
        "postmortem",
        "scheduled",
        "in progress",
        "verifying",
        "completed",
    ];
    let at = text.find("Status:")?;
    let rest = text[at + "Status:".len()..].trim_start();
    for known in KNOWN {
        if rest.len() >= known.len()
            && rest.is_char_boundary(known.len())
            && rest[..known.len()].eq_ignore_ascii_case(known)
        {
            return Some(rest[..known.len()].to_owned());
        }
    }
    let word: String = rest.chars().take_while(|c| c.is_alphabetic()).collect();
    (!word.is_empty()).then_some(word)
}

/// Turns an HTML fragment into text: tags dropped (`<br>` and `</p>` become line breaks),
/// entities decoded, surrounding whitespace trimmed.
fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('>') else {
            // A lone '<' is text.
            text.push_str(after);
            rest = "";
            break;
        };
        let tag = after[1..close].trim().to_ascii_lowercase();
        let name = tag.split([' ', '/']).find(|s| !s.is_empty()).unwrap_or("");
        if name == "br" || tag == "/p" {
            text.push('\n');
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    crate::entities::decode(&text).trim().to_owned()
}

/// Reads "Feb  4, 17:06 UTC" (optionally with a year, or "5:06 PM"); the year, when absent,
/// comes from `reference` (see the module documentation).
fn parse_update_time(text: &str, reference: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let mut month = None;
    let mut day = None;
    let mut year = None;
    let mut clock = None;
    let mut pm = None;
    for token in text.split(|c: char| c.is_whitespace() || c == ',') {
        let token = token.trim_matches('.');
        if token.is_empty() {
            continue;
        }
        if month.is_none() {
            if let Some(m) = month_number(token) {
                month = Some(m);
                continue;
            }
        }
        if let Some((h, m)) = token.split_once(':') {
            if let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) {
                clock = Some((h, m));
            }
        } else if token.eq_ignore_ascii_case("am") || token.eq_ignore_ascii_case("pm") {
            pm = Some(token.eq_ignore_ascii_case("pm"));
        } else if token.len() <= 2 && token.bytes().all(|b| b.is_ascii_digit()) {
            day = day.or(token.parse::<u32>().ok());
        } else if token.len() == 4 && token.bytes().all(|b| b.is_ascii_digit()) {
            year = year.or(token.parse::<i32>().ok());
        }
    }
    let (month, day, (mut hour, minute)) = (month?, day?, clock?);
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let at = |year: i32| {
        NaiveDate::from_ymd_opt(year, month, day)?
            .and_hms_opt(hour, minute, 0)
            .map(|t| t.and_utc())
    };
    if let Some(year) = year {
        return at(year);
    }
    let reference = reference?;
    let time = at(reference.year())?;
    let latest = reference.checked_add_signed(Duration::days(2))?;
    if time > latest {
        return at(reference.year() - 1);
    }
    Some(time)
}

fn month_number(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    if token.len() < 3 || !token.is_char_boundary(3) {
        return None;
    }
    let prefix = token[..3].to_ascii_lowercase();
    let number = MONTHS.iter().position(|m| *m == prefix)?;
    // "Feb" and "February" are months; "Febxyz" is not.
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ][number];
    let lower = token.to_ascii_lowercase();
    (full.starts_with(&lower) || lower == "sept").then_some(number as u32 + 1)
}
