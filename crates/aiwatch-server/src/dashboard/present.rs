//! How the dashboard words and marks things: state tones with an icon and a word (never color
//! alone), times, durations, percentages and latencies.

use aiwatch_core::Status;
use chrono::{DateTime, Datelike, Utc};
use maud::{html, Markup};

/// The visual family of a state: each has a color, an icon and a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tone {
    Ok,
    Unknown,
    Maint,
    Warn,
    Bad,
}

impl Tone {
    pub fn of(state: Status) -> Tone {
        match state {
            Status::Operational => Tone::Ok,
            Status::Degraded => Tone::Warn,
            Status::Outage => Tone::Bad,
            Status::Maintenance => Tone::Maint,
            Status::Unknown | Status::NotRunning => Tone::Unknown,
        }
    }

    /// The CSS suffix: `t-ok`, `f-ok`….
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Maint => "maint",
            Tone::Unknown => "unk",
        }
    }
}

/// The word for a state, capitalized for a label.
pub fn state_word(state: Status) -> &'static str {
    match state {
        Status::Operational => "Operational",
        Status::Degraded => "Degraded",
        Status::Outage => "Outage",
        Status::Maintenance => "Maintenance",
        Status::NotRunning => "Not running here",
        Status::Unknown => "No data",
    }
}

/// The word for an official signal.
pub fn signal_word(signal: Status) -> &'static str {
    match signal {
        Status::Operational => "operational",
        Status::Degraded => "degraded",
        Status::Outage => "outage",
        Status::Maintenance => "maintenance",
        Status::NotRunning => "not running here",
        Status::Unknown => "unknown",
    }
}

/// What the own probes are doing in a state, for "our probes: failing since 14:02".
pub fn probes_word(state: Status) -> &'static str {
    match state {
        Status::Operational => "passing",
        Status::Degraded => "degraded",
        Status::Outage => "failing",
        Status::Maintenance => "failing during maintenance",
        Status::NotRunning => "nothing answers: not running here",
        Status::Unknown => "cannot see the service",
    }
}

/// The icon of a tone: a shape drawn by the stylesheet, decorative (a word always goes with
/// it), and different for each tone so that state never rests on color alone.
pub fn icon(tone: Tone) -> Markup {
    html! {
        i class={"i i-" (tone.class())} {}
    }
}

/// A pill with icon and word, e.g. "✓ Operational".
pub fn state_pill(state: Status) -> Markup {
    let tone = Tone::of(state);
    html! {
        span class={"pill p-" (tone.class())} { (icon(tone)) (state_word(state)) }
    }
}

/// A time as `<time>`: "14:02 UTC" today, "3 Mar 14:02 UTC" this year, else with the year. The
/// script rewrites it in the reader's own time zone.
pub fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let text = if at.date_naive() == now.date_naive() {
        at.format("%H:%M UTC").to_string()
    } else if at.year() == now.year() {
        at.format("%-d %b %H:%M UTC").to_string()
    } else {
        at.format("%-d %b %Y %H:%M UTC").to_string()
    };
    html! { time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (text) } }
}

/// A day as "3 Mar".
pub fn day(at: DateTime<Utc>) -> String {
    at.format("%-d %b").to_string()
}

/// A span of time in words: "under a minute", "23 min", "3 h 12 min", "4 days".
pub fn duration(d: chrono::Duration) -> String {
    let minutes = d.num_minutes();
    if minutes < 1 {
        "under a minute".into()
    } else if minutes < 60 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        match minutes % 60 {
            0 => format!("{} h", minutes / 60),
            m => format!("{} h {m} min", minutes / 60),
        }
    } else {
        format!("{} days", minutes / (24 * 60))
    }
}

/// A ratio as a percentage, rounded down so that anything short of 100 % never reads "100 %".
pub fn percent(ratio: f64) -> String {
    if ratio >= 1.0 {
        return "100 %".into();
    }
    let floored = (ratio.max(0.0) * 10_000.0).floor() / 100.0;
    format!("{floored:.2} %")
}

/// A latency: "87 ms", "1.24 s".
pub fn ms(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

/// "1 incident", "3 incidents".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Whether a URL from a third party may become a link: plain http(s) only, so a status page
/// cannot slip in `javascript:` or `data:`.
pub fn safe_link(url: &str) -> Option<&str> {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        .then_some(url.trim())
        .filter(|u| !u.chars().any(|c| c.is_control() || c.is_whitespace()))
}

/// The core's plan-B line for `service` (ChatGPT or Claude failing while its API works), from
/// the statuses given, as a "Keep working" note; nothing when the core has no advice.
pub fn plan_b(
    service: &str,
    statuses: &[(aiwatch_core::ServiceName, aiwatch_core::Status)],
    viewer: aiwatch_core::plan_b::Viewer,
) -> Option<Markup> {
    let statuses: Vec<(&str, aiwatch_core::Status)> =
        statuses.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let line = aiwatch_core::plan_b::web_fallback(service, &statuses, viewer)?;
    Some(html! {
        p.planb role="note" { strong { "Keep working: " } (line) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_round_up_to_a_full_hundred() {
        assert_eq!(percent(1.0), "100 %");
        assert_eq!(percent(0.99999), "99.99 %");
        assert_eq!(percent(0.5), "50.00 %");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(chrono::Duration::seconds(20)), "under a minute");
        assert_eq!(duration(chrono::Duration::minutes(23)), "23 min");
        assert_eq!(duration(chrono::Duration::minutes(192)), "3 h 12 min");
        assert_eq!(duration(chrono::Duration::days(4)), "4 days");
    }

    #[test]
    fn only_http_links_are_linked() {
        assert!(safe_link("javascript:alert(1)").is_none());
        assert!(safe_link("JaVaScRiPt:alert(1)").is_none());
        assert!(safe_link("data:text/html,x").is_none());
        assert_eq!(
            safe_link("https://status.example.com/i/1"),
            Some("https://status.example.com/i/1")
        );
    }
}
