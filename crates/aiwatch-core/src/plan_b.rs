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

/// Lines of advice on how to keep working, for the verdicts of one check (empty: nothing to add).
pub fn advice(verdicts: &[Verdict]) -> Vec<String> {
    let of = |name: &str| verdicts.iter().find(|v| v.service.as_str() == name);
    let works = |v: &Verdict| v.status == Status::Operational;
    let mut out = Vec::new();
    for (web, api, api_title) in WEB_AND_API {
        if let (Some(w), Some(a)) = (of(web), of(api)) {
            if w.status.is_trouble() && works(a) {
                out.push(format!(
                    "{web} is failing here, but the {api_title} works with your key: scripts keep running, and `aiwatch gateway` gives you an OpenAI-compatible endpoint to point any client at (docs/gateway.md)."
                ));
            }
        }
    }
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
