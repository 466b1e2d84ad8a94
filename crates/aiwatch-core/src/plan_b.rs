//! How to keep working, decided across a check's verdicts: when a web front-end fails but the
//! same provider's API answers, say that scripts keep running and the gateway gives an
//! OpenAI-compatible endpoint; when every cloud API checked fails, point at a local model.

use crate::{Status, Verdict};

/// Web front-ends and the API of the same provider.
const WEB_AND_API: &[(&str, &str, &str)] = &[
    ("chatgpt", "openai-api", "OpenAI API"),
    ("claude", "anthropic-api", "Anthropic API"),
];

/// Local model runtimes in the catalog.
const LOCAL: &[&str] = &["ollama", "lmstudio"];

/// Every cloud API the check measured fails (and it measured at least one): the moment to
/// look at the local plan B ([`crate::local_model::readiness`]).
pub fn every_cloud_api_fails(verdicts: &[Verdict]) -> bool {
    let cloud: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| v.service.as_str().ends_with("-api") && v.status.is_measured())
        .collect();
    !cloud.is_empty() && cloud.iter().all(|v| v.status == Status::Outage)
}

/// Who reads the advice, which decides what "works" rests on and how it is said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// `aiwatch check` on the user's machine, with the user's own key.
    ThisMachine,
    /// A dashboard reader: the monitor's own checks, made with the server's key.
    Dashboard,
    /// A reader who says the web app fails for them (`/just-me`), whatever the monitor sees.
    StuckReader,
}

/// When a web front-end (ChatGPT, Claude) fails but its provider's API works: how to keep
/// working through the API. `statuses` are the current statuses by service name; `None` when
/// `service` is not such a front-end, or its API is not known to work.
pub fn web_fallback(service: &str, statuses: &[(&str, Status)], viewer: Viewer) -> Option<String> {
    let (web, api, api_title) = WEB_AND_API.iter().find(|(web, ..)| *web == service)?;
    let status = |name: &str| statuses.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    let web_fails = viewer == Viewer::StuckReader || status(web).is_some_and(Status::is_trouble);
    if !web_fails || status(api) != Some(Status::Operational) {
        return None;
    }
    Some(match viewer {
        Viewer::ThisMachine => format!(
            "{web} is failing here, but the {api_title} works with your key: scripts keep running, and `aiwatch gateway` gives you an OpenAI-compatible endpoint to point any client at (docs/gateway.md)."
        ),
        Viewer::Dashboard => format!(
            "{web} is failing, but the {api_title} works (this monitor checks it with an API key): scripts and apps that call the API keep running, and `aiwatch gateway` gives you an OpenAI-compatible endpoint to point any client at."
        ),
        Viewer::StuckReader => format!(
            "If {web} does not work for you, the {api_title} does (this monitor checks it with an API key): scripts and apps that call the API keep running, and `aiwatch gateway` gives you an OpenAI-compatible endpoint to point any client at."
        ),
    })
}

/// Lines of advice on how to keep working, for the verdicts of one check (empty: nothing to add).
pub fn advice(verdicts: &[Verdict]) -> Vec<String> {
    let of = |name: &str| verdicts.iter().find(|v| v.service.as_str() == name);
    let works = |v: &Verdict| v.status == Status::Operational;
    let statuses: Vec<(&str, Status)> = verdicts
        .iter()
        .map(|v| (v.service.as_str(), v.status))
        .collect();
    let mut out: Vec<String> = WEB_AND_API
        .iter()
        .filter_map(|(web, ..)| web_fallback(web, &statuses, Viewer::ThisMachine))
        .collect();
    if every_cloud_api_fails(verdicts) {
        let running: Vec<&str> = LOCAL
            .iter()
            .copied()
            .filter(|name| of(name).is_some_and(works))
            .collect();
        out.push(if running.is_empty() {
            "Every cloud API checked is failing: plan B is a local model (Ollama, LM Studio, llama.cpp); `aiwatch drill` says whether one is installed and can run here.".to_owned()
        } else {
            format!(
                "Every cloud API checked is failing, and {} runs here: put it last in a gateway route and keep working (`aiwatch drill` checks it).",
                running.join(" and ")
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cause, Scope, ServiceName};

    fn verdict(name: &str, status: Status) -> Verdict {
        Verdict {
            service: ServiceName::parse(name).unwrap(),
            status,
            scope: Scope::Global,
            cause: Cause::Ok,
            summary: String::new(),
            evidence: Vec::new(),
            advice: Vec::new(),
            official: None,
            checked_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    #[test]
    fn web_down_and_api_fine_says_scripts_keep_running_and_how() {
        let lines = advice(&[
            verdict("chatgpt", Status::Outage),
            verdict("openai-api", Status::Operational),
        ]);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("OpenAI API works") && lines[0].contains("aiwatch gateway"));
        assert!(advice(&[
            verdict("chatgpt", Status::Operational),
            verdict("openai-api", Status::Operational)
        ])
        .is_empty());
    }

    #[test]
    fn every_viewer_gets_the_api_fallback_only_while_the_api_works() {
        use Status::{Degraded, Operational, Outage};
        let cases = [
            // (service, web, api, viewer, expected start of the line)
            (
                "chatgpt",
                Outage,
                Operational,
                Viewer::Dashboard,
                Some("chatgpt is failing, but the OpenAI API works"),
            ),
            (
                "claude",
                Degraded,
                Operational,
                Viewer::Dashboard,
                Some("claude is failing, but the Anthropic API works"),
            ),
            ("chatgpt", Operational, Operational, Viewer::Dashboard, None),
            ("chatgpt", Outage, Outage, Viewer::Dashboard, None),
            (
                "chatgpt",
                Operational,
                Operational,
                Viewer::StuckReader,
                Some("If chatgpt does not work for you, the OpenAI API does"),
            ),
            ("chatgpt", Operational, Degraded, Viewer::StuckReader, None),
            ("openai-api", Outage, Operational, Viewer::Dashboard, None),
        ];
        for (service, web, api, viewer, expected) in cases {
            let (web_name, api_name) = if service == "claude" {
                ("claude", "anthropic-api")
            } else {
                ("chatgpt", "openai-api")
            };
            let got = web_fallback(service, &[(web_name, web), (api_name, api)], viewer);
            match expected {
                Some(start) => {
                    let line = got.unwrap_or_default();
                    assert!(
                        line.starts_with(start),
                        "{service} {web:?} {api:?} {viewer:?}: {line}"
                    );
                    assert!(line.contains("aiwatch gateway"), "{line}");
                }
                None => assert_eq!(got, None, "{service} {web:?} {api:?} {viewer:?}"),
            }
        }
    }

    #[test]
    fn all_cloud_apis_down_points_at_the_local_model_that_runs() {
        let lines = advice(&[
            verdict("openai-api", Status::Outage),
            verdict("anthropic-api", Status::Outage),
            verdict("ollama", Status::Operational),
        ]);
        assert!(lines[0].contains("ollama runs here"), "{lines:?}");
        let none = advice(&[verdict("openai-api", Status::Outage)]);
        assert!(none[0].contains("aiwatch drill"));
    }
}
