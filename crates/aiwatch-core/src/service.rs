//! Defines a watched service: its name, provider family, endpoints, key and official status source.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A service's name: lowercase ASCII letters, digits and dashes, as the config contract says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks `raw` against `[a-z0-9-]+` and returns the reason when it does not match.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a service name must not be empty".into());
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "`{raw}` contains `{bad}`; a service name uses only a-z, 0-9 and -"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The provider family: decides how the API is authenticated, which call is the cheapest check,
/// and how error bodies read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// OpenAI and every OpenAI-compatible API (Mistral, Groq, DeepSeek, LM Studio, vLLM, …).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
    /// A local Ollama server (native API plus its OpenAI-compatible `/v1`).
    Ollama,
    /// A plain HTTP(S) URL: reachability only.
    Http,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
            Self::Http => "http",
        }
    }
}

/// Where a service's official status comes from, told apart by the URL's shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "format", content = "url", rename_all = "snake_case")]
pub enum StatusSource {
    /// An Atlassian Statuspage or an incident.io page with its Statuspage-compatible `/api/v2`.
    Statuspage(String),
    /// Google Cloud's `incidents.json`.
    GoogleCloud(String),
    /// An Atom or RSS history feed.
    Feed(String),
}

impl StatusSource {
    /// Reads the format from the URL: a feed ends in .atom/.rss/.xml, Google Cloud has its own
    /// host, and everything else is taken as a Statuspage-style base URL.
    pub fn from_url(url: &str) -> Self {
        let trimmed = url.trim_end_matches('/');
        let lower = trimmed.to_ascii_lowercase();
        if lower.ends_with(".atom") || lower.ends_with(".rss") || lower.ends_with(".xml") {
            Self::Feed(trimmed.to_owned())
        } else if lower.contains("status.cloud.google.com") || lower.ends_with("/incidents.json") {
            Self::GoogleCloud(trimmed.to_owned())
        } else {
            Self::Statuspage(trimmed.to_owned())
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Statuspage(u) | Self::GoogleCloud(u) | Self::Feed(u) => u,
        }
    }
}

/// One watched service, complete after the catalog and the config were merged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    pub name: ServiceName,
    /// A short human title ("ChatGPT", "OpenAI API").
    pub title: String,
    pub kind: ServiceKind,
    /// The API base URL, e.g. `https://api.openai.com/v1`.
    pub api_base: Option<String>,
    /// The environment variable that holds the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// The web front-end people use in a browser.
    pub web_url: Option<String>,
    pub status: Option<StatusSource>,
    /// Official components that stand for this service on its status page.
    pub status_components: Vec<String>,
    /// A private CA this service is expected to present (private deployments).
    pub ca_file: Option<PathBuf>,
    /// How often `serve` checks it; `None` takes the default.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub interval: Option<Duration>,
    /// Runs on this machine (Ollama, LM Studio): unreachable means "not started", not an outage.
    pub local: bool,
    /// Model used by `check --deep` for its one tiny streamed completion.
    pub probe_model: Option<String>,
}

fn serialize_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_accepts_the_contract_alphabet_only() {
        assert!(ServiceName::parse("team-llm2").is_ok());
        assert!(ServiceName::parse("").is_err());
        let err = ServiceName::parse("Team_LLM").unwrap_err();
        assert!(err.contains("`T`"), "{err}");
    }

    #[test]
    fn status_source_is_told_apart_by_url_shape() {
        assert_eq!(
            StatusSource::from_url("https://status.claude.com/"),
            StatusSource::Statuspage("https://status.claude.com".into())
        );
        assert!(matches!(
            StatusSource::from_url("https://status.claude.com/history.atom"),
            StatusSource::Feed(_)
        ));
        assert!(matches!(
            StatusSource::from_url("https://status.cloud.google.com/incidents.json"),
            StatusSource::GoogleCloud(_)
        ));
    }
}
