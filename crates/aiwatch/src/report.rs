//! Renders verdicts for people: one line per service, then its evidence with timings and the
//! advice; colors and a spinner only on a terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use aiwatch_core::verdict::Outcome;
use aiwatch_core::{Cause, Service, Status, Verdict};
use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::OwoColorize;

/// How much to print per service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// The verdict line only.
    Quiet,
    /// Evidence and advice for services that are not fine.
    Normal,
    /// Evidence for every service.
    Verbose,
}

/// Colors go to a terminal only, and never when NO_COLOR is set.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A spinner on stderr while the probes run.
pub fn spinner(services: usize, budget: Duration) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!(
        "checking {services} service{} (budget {})",
        if services == 1 { "" } else { "s" },
        humanize(budget)
    ));
    bar.enable_steady_tick(Duration::from_millis(80));
    bar
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn paint(text: &str, status: Status, cause: Cause, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    match (status, cause) {
        (Status::Operational, Cause::Ok) => text.green().to_string(),
        (Status::Outage, _) => text.red().bold().to_string(),
        (Status::Unknown, _) => text.magenta().to_string(),
        _ => text.yellow().to_string(),
    }
}

fn symbol(verdict: &Verdict) -> &'static str {
    if verdict.scope.is_users_side() {
        return "✗";
    }
    match (verdict.status, verdict.cause) {
        (Status::Operational, Cause::Ok) => "✓",
        (Status::Outage, _) => "✗",
        (Status::Unknown, _) => "?",
        _ => "!",
    }
}

/// Who is at fault, in words.
fn headline(verdict: &Verdict) -> String {
    let scope = verdict.scope.as_str();
    match (verdict.status, verdict.cause) {
        (Status::Operational, Cause::Ok) => "operational".into(),
        (status, cause) => format!("{} · {scope} · {}", status.as_str(), cause.as_str()),
    }
}

/// The report for several verdicts.
pub fn render(services: &[Service], verdicts: &[Verdict], detail: Detail, color: bool) -> String {
    let width = verdicts
        .iter()
        .map(|v| v.service.as_str().len())
        .max()
        .unwrap_or(8);
    let mut out = String::new();
    for (service, verdict) in services.iter().zip(verdicts) {
        let line = format!(
            "{} {:<width$}  {}",
            symbol(verdict),
            verdict.service.as_str(),
            headline(verdict)
        );
        let _ = writeln!(
            out,
            "{}",
            paint(&line, verdict.status, verdict.cause, color)
        );
        let fine = verdict.cause == Cause::Ok && verdict.status == Status::Operational;
        if detail == Detail::Quiet {
            continue;
        }
        let _ = writeln!(out, "    {}", verdict.summary);
        if fine && detail != Detail::Verbose {
            continue;
        }
        for line in &verdict.evidence {
            let mark = match line.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            let ms = line
                .ms
                .map(|ms| format!("{ms:>8.1} ms"))
                .unwrap_or_default();
            let text = format!("    {:<8} {mark}  {}", line.layer, line.detail);
            let text = if color && line.outcome == Outcome::Fail {
                text.red().to_string()
            } else if color {
                text.dimmed().to_string()
            } else {
                text
            };
            if ms.is_empty() {
                let _ = writeln!(out, "{text}");
            } else {
                let _ = writeln!(out, "{text}  {ms}");
            }
        }
        for advice in &verdict.advice {
            let _ = writeln!(out, "    → {advice}");
        }
        let _ = service;
    }
    out
}
