//! The built-in catalog of AI services, merged with the services a config file adds or overrides.

use std::collections::BTreeMap;

use crate::config::{Config, ServiceEntry};
use crate::service::{Service, ServiceKind, ServiceName, StatusSource};

const OPENAI_STATUS: &str = "https://status.openai.com";
const ANTHROPIC_STATUS: &str = "https://status.claude.com";
const GOOGLE_CLOUD_STATUS: &str = "https://status.cloud.google.com/incidents.json";

struct Builtin {
    name: &'static str,
    title: &'static str,
    kind: ServiceKind,
    api_base: Option<&'static str>,
    api_key_env: Option<&'static str>,
    web_url: Option<&'static str>,
    status: Option<&'static str>,
    components: &'static [&'static str],
    local: bool,
    probe_model: Option<&'static str>,
}

/// The services aiwatch knows without any config. Component names are the ones the official
/// pages use (see the status-page fixtures).
const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "chatgpt",
        title: "ChatGPT",
        kind: ServiceKind::Openai,
        api_base: None,
        api_key_env: None,
        web_url: Some("https://chatgpt.com"),
        status: Some(OPENAI_STATUS),
        // ChatGPT's own features; Sora, Codex and the API products are other components.
        components: &[
            "Conversations",
            "Login",
            "Voice mode",
            "Image Generation",
            "File uploads",
            "Search",
            "Deep Research",
            "GPTs",
            "Agent",
            "Connectors/Apps",
        ],
        local: false,
        probe_model: None,
    },
    Builtin {
        name: "openai-api",
        title: "OpenAI API",
        kind: ServiceKind::Openai,
        api_base: Some("https://api.openai.com/v1"),
        api_key_env: Some("OPENAI_API_KEY"),
        web_url: None,
        status: Some(OPENAI_STATUS),
        // The API's endpoints ("Agents" is the Agents API; ChatGPT's "Agent" is not).
        components: &[
            "Chat Completions",
            "Responses",
            "Embeddings",
            "Realtime",
            "Batch",
            "Files",
            "Fine-tuning",
            "Images",
            "Audio",
            "Moderations",
            "Agents",
        ],
        local: false,
        probe_model: Some("gpt-4o-mini"),
    },
    Builtin {
        name: "claude",
        title: "Claude",
        kind: ServiceKind::Anthropic,
        api_base: None,
        api_key_env: None,
        web_url: Some("https://claude.ai"),
        status: Some(ANTHROPIC_STATUS),
        // Only the app: Claude Code, the Console and the API have components of their own.
        components: &["claude.ai"],
        local: false,
        probe_model: None,
    },
    Builtin {
        name: "anthropic-api",
        title: "Anthropic API",
        kind: ServiceKind::Anthropic,
        api_base: Some("https://api.anthropic.com/v1"),
        api_key_env: Some("ANTHROPIC_API_KEY"),
        web_url: None,
        status: Some(ANTHROPIC_STATUS),
        components: &["Claude API (api.anthropic.com)"],
        local: false,
        probe_model: Some("claude-3-5-haiku-latest"),
    },
    Builtin {
        name: "gemini-api",
        title: "Gemini API",
        kind: ServiceKind::Gemini,
        api_base: Some("https://generativelanguage.googleapis.com/v1beta"),
        api_key_env: Some("GEMINI_API_KEY"),
        web_url: None,
        status: Some(GOOGLE_CLOUD_STATUS),
        components: &["Gemini API", "Vertex Gemini API", "Vertex AI"],
        local: false,
        probe_model: Some("gemini-2.0-flash"),
    },
    Builtin {
        name: "mistral-api",
        title: "Mistral API",
        kind: ServiceKind::Openai,
        api_base: Some("https://api.mistral.ai/v1"),
        api_key_env: Some("MISTRAL_API_KEY"),
        web_url: None,
        status: Some("https://status.mistral.ai"),
        components: &[],
        local: false,
        probe_model: Some("mistral-small-latest"),
    },
    Builtin {
        name: "groq-api",
        title: "Groq API",
        kind: ServiceKind::Openai,
        api_base: Some("https://api.groq.com/openai/v1"),
        api_key_env: Some("GROQ_API_KEY"),
        web_url: None,
        status: Some("https://groqstatus.com"),
        components: &[],
        local: false,
        probe_model: Some("llama-3.1-8b-instant"),
    },
    Builtin {
        name: "deepseek-api",
        title: "DeepSeek API",
        kind: ServiceKind::Openai,
        api_base: Some("https://api.deepseek.com/v1"),
        api_key_env: Some("DEEPSEEK_API_KEY"),
        web_url: None,
        status: Some("https://status.deepseek.com"),
        components: &[],
        local: false,
        probe_model: Some("deepseek-chat"),
    },
    Builtin {
        name: "ollama",
        title: "Ollama (local)",
        kind: ServiceKind::Ollama,
        api_base: Some("http://127.0.0.1:11434"),
        api_key_env: None,
        web_url: None,
        status: None,
        components: &[],
        local: true,
        probe_model: None,
    },
    Builtin {
        name: "lmstudio",
        title: "LM Studio (local)",
        kind: ServiceKind::Openai,
        api_base: Some("http://127.0.0.1:1234/v1"),
        api_key_env: None,
        web_url: None,
        status: None,
        components: &[],
        local: true,
        probe_model: None,
    },
];

impl Builtin {
    fn to_service(&self) -> Service {
        Service {
            name: ServiceName::parse(self.name).expect("built-in names are valid"),
            title: self.title.to_owned(),
            kind: self.kind,
            api_base: self.api_base.map(str::to_owned),
            api_key_env: self.api_key_env.map(str::to_owned),
            web_url: self.web_url.map(str::to_owned),
            status: self.status.map(StatusSource::from_url),
            status_components: self.components.iter().map(|c| (*c).to_owned()).collect(),
            ca_file: None,
            interval: None,
            local: self.local,
            probe_model: self.probe_model.map(str::to_owned),
        }
    }
}

/// Every service aiwatch watches: the built-ins, with the config's entries applied on top.
#[derive(Clone, Debug)]
pub struct Catalog {
    services: BTreeMap<ServiceName, Service>,
    /// Names in display order: built-ins first, in catalog order, then the config's own.
    order: Vec<ServiceName>,
}

/// A name that is not in the catalog, with the names it most resembles.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown service `{name}`{}", suggestion_text(.suggestions))]
pub struct UnknownService {
    pub name: String,
    pub suggestions: Vec<String>,
}

fn suggestion_text(suggestions: &[String]) -> String {
    match suggestions {
        [] => "; run `aiwatch services` to list them".to_owned(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!("; did you mean one of: {}?", many.join(", ")),
    }
}

impl Catalog {
    /// The built-in catalog alone.
    pub fn builtin() -> Self {
        let mut catalog = Self {
            services: BTreeMap::new(),
            order: Vec::new(),
        };
        for builtin in BUILTINS {
            catalog.insert(builtin.to_service());
        }
        catalog
    }

    /// The built-in catalog with the config's `[[service]]` entries applied (validated already).
    pub fn with_config(config: &Config) -> Self {
        let mut catalog = Self::builtin();
        for entry in &config.services {
            let service = match catalog.services.get(&entry.name) {
                Some(existing) => entry.apply_to(existing.clone()),
                None => entry.to_new_service(),
            };
            catalog.insert(service);
        }
        catalog
    }

    fn insert(&mut self, service: Service) {
        if !self.services.contains_key(&service.name) {
            self.order.push(service.name.clone());
        }
        self.services.insert(service.name.clone(), service);
    }

    pub fn is_builtin(name: &str) -> bool {
        builtin_names().any(|b| b == name)
    }

    /// All services in display order.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.order.iter().map(|name| &self.services[name])
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// Finds a service by name; a miss names the closest matches.
    pub fn get(&self, name: &str) -> Result<&Service, UnknownService> {
        self.services.get(name).ok_or_else(|| UnknownService {
            name: name.to_owned(),
            suggestions: self.closest_names(name),
        })
    }

    fn closest_names(&self, name: &str) -> Vec<String> {
        closest_names(name, self.iter().map(|s| s.name.as_str()))
    }
}

/// The names of the built-in services, in catalog order.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// Up to three of `candidates` that look like `name`, best first.
pub fn closest_names<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .map(|candidate| {
            let mut score = strsim::jaro_winkler(&wanted, candidate);
            // A shared prefix ("openai" for "openai-api") is the strongest hint people give.
            if candidate.starts_with(&wanted) || wanted.starts_with(candidate) {
                score += 0.3;
            }
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// Applies a config entry to a built-in or creates a new service from it.
impl ServiceEntry {
    fn apply_to(&self, mut service: Service) -> Service {
        if let Some(kind) = self.kind {
            service.kind = kind;
        }
        if let Some(v) = &self.api_base {
            service.api_base = Some(v.clone());
        }
        if let Some(v) = &self.api_key_env {
            service.api_key_env = Some(v.clone());
        }
        if let Some(v) = &self.web_url {
            service.web_url = Some(v.clone());
        }
        if let Some(v) = &self.status_page {
            service.status = Some(StatusSource::from_url(v));
        }
        if let Some(v) = &self.status_components {
            service.status_components = v.clone();
        }
        if let Some(v) = &self.ca_file {
            service.ca_file = Some(v.clone());
        }
        if let Some(v) = self.interval {
            service.interval = Some(v);
        }
        service
    }

    fn to_new_service(&self) -> Service {
        let kind = self.kind.unwrap_or(if self.api_base.is_some() {
            ServiceKind::Openai
        } else {
            ServiceKind::Http
        });
        let local = self
            .api_base
            .as_deref()
            .or(self.web_url.as_deref())
            .is_some_and(crate::network::url_is_loopback);
        Service {
            name: self.name.clone(),
            title: self.name.to_string(),
            kind,
            api_base: self.api_base.clone(),
            api_key_env: self.api_key_env.clone(),
            web_url: self.web_url.clone(),
            status: self.status_page.as_deref().map(StatusSource::from_url),
            status_components: self.status_components.clone().unwrap_or_default(),
            ca_file: self.ca_file.clone(),
            interval: self.interval,
            local,
            probe_model: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_ten_promised_services() {
        let names: Vec<_> = Catalog::builtin()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "chatgpt",
                "openai-api",
                "claude",
                "anthropic-api",
                "gemini-api",
                "mistral-api",
                "groq-api",
                "deepseek-api",
                "ollama",
                "lmstudio"
            ]
        );
    }

    #[test]
    fn unknown_name_suggests_close_ones() {
        let err = Catalog::builtin().get("chatgtp").unwrap_err();
        assert_eq!(err.suggestions.first().map(String::as_str), Some("chatgpt"));
        let err = Catalog::builtin().get("openai").unwrap_err();
        assert!(err.suggestions.contains(&"openai-api".to_owned()), "{err}");
        assert!(err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn unknown_name_far_from_everything_points_at_the_list() {
        let err = Catalog::builtin().get("zzzzzz").unwrap_err();
        assert!(err.suggestions.is_empty());
        assert!(err.to_string().contains("aiwatch services"));
    }

    fn page(components: &[(&str, &str)]) -> crate::official::OfficialStatus {
        use crate::official::{Component, ComponentStatus, Indicator, OfficialStatus};
        OfficialStatus {
            indicator: Some(Indicator::Minor),
            components: components
                .iter()
                .map(|(name, status)| Component {
                    id: format!("id-{name}"),
                    name: (*name).to_owned(),
                    status: ComponentStatus::from_raw(status),
                    group: None,
                })
                .collect(),
            ..OfficialStatus::default()
        }
    }

    fn signal_of(
        catalog: &Catalog,
        service: &str,
        page: &crate::official::OfficialStatus,
    ) -> crate::cause::Status {
        page.view_for(&catalog.get(service).unwrap().status_components)
            .signal
    }

    #[test]
    fn chatgpt_web_api_and_sora_are_told_apart_on_the_openai_page() {
        use crate::cause::Status::{Degraded, Operational, Outage};
        let catalog = Catalog::builtin();
        let rows = [
            ("Conversations", "operational"),
            ("Login", "operational"),
            ("Chat Completions", "operational"),
            ("Responses", "operational"),
            ("Sora", "operational"),
            ("Codex Web", "operational"),
        ];
        let with = |name: &str, status: &str| {
            let changed: Vec<(&str, &str)> = rows
                .iter()
                .map(|(n, s)| if *n == name { (*n, status) } else { (*n, *s) })
                .collect();
            page(&changed)
        };
        let chatgpt_down = with("Conversations", "degraded_performance");
        assert_eq!(signal_of(&catalog, "chatgpt", &chatgpt_down), Degraded);
        assert_eq!(
            signal_of(&catalog, "openai-api", &chatgpt_down),
            Operational
        );
        let api_down = with("Chat Completions", "major_outage");
        assert_eq!(signal_of(&catalog, "chatgpt", &api_down), Operational);
        assert_eq!(signal_of(&catalog, "openai-api", &api_down), Outage);
        let sora_down = with("Sora", "major_outage");
        assert_eq!(signal_of(&catalog, "chatgpt", &sora_down), Operational);
        assert_eq!(signal_of(&catalog, "openai-api", &sora_down), Operational);
    }

    #[test]
    fn claude_app_api_and_claude_code_are_told_apart_on_the_anthropic_page() {
        use crate::cause::Status::{Operational, Outage};
        let catalog = Catalog::builtin();
        let code_down = page(&[
            ("claude.ai", "operational"),
            ("Claude API (api.anthropic.com)", "operational"),
            ("Claude Code", "major_outage"),
            ("Claude Console (platform.claude.com)", "operational"),
        ]);
        assert_eq!(signal_of(&catalog, "claude", &code_down), Operational);
        assert_eq!(
            signal_of(&catalog, "anthropic-api", &code_down),
            Operational
        );
        let api_down = page(&[
            ("claude.ai", "operational"),
            ("Claude API (api.anthropic.com)", "partial_outage"),
            ("Claude Code", "operational"),
        ]);
        assert_eq!(signal_of(&catalog, "claude", &api_down), Operational);
        assert_eq!(signal_of(&catalog, "anthropic-api", &api_down), Outage);
    }

    #[test]
    fn every_builtin_component_name_is_one_a_captured_page_uses() {
        let captured = [
            include_str!("../../aiwatch-probe/tests/fixtures/statuspages/openai-incidentio-summary-operational-2026-07-09.json"),
            include_str!("../../aiwatch-probe/tests/fixtures/statuspages/openai-incidentio-summary-degraded-2026-09-29.json"),
            include_str!("../../aiwatch-probe/tests/fixtures/statuspages/anthropic-summary-operational-2026-09-22.json"),
        ];
        let catalog = Catalog::builtin();
        for name in ["chatgpt", "openai-api", "claude", "anthropic-api"] {
            for component in &catalog.get(name).unwrap().status_components {
                let quoted = serde_json::to_string(component).unwrap();
                assert!(
                    captured.iter().any(|page| page.contains(&quoted)),
                    "{name}: no captured page has a component named {quoted}"
                );
            }
        }
    }

    #[test]
    fn config_overrides_builtin_by_name_and_adds_new_services() {
        let config = Config::parse(
            r#"
[[service]]
name = "openai-api"
api_base = "https://proxy.example.com/v1"

[[service]]
name = "team-llm"
api_base = "https://llm.example.com/v1"
api_key_env = "TEAM_LLM_KEY"
"#,
        )
        .unwrap();
        let catalog = Catalog::with_config(&config);
        let openai = catalog.get("openai-api").unwrap();
        assert_eq!(
            openai.api_base.as_deref(),
            Some("https://proxy.example.com/v1")
        );
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        let team = catalog.get("team-llm").unwrap();
        assert_eq!(team.kind, ServiceKind::Openai);
        assert_eq!(catalog.len(), 11);
        assert_eq!(catalog.iter().last().unwrap().name.as_str(), "team-llm");
    }
}
