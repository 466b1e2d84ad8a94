//! Knows each provider family's cheapest authenticated call, its auth headers, and how to read
//! its model list.

use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{Service, ServiceKind};
use serde_json::Value;

use crate::layered::Ask;

/// The cheapest call that proves the key works: listing models costs no tokens.
pub struct ApiCall {
    pub url: String,
    /// e.g. `GET /models`.
    pub label: String,
    pub ask: Ask,
}

/// The auth headers for `kind`, built only for the key's own service.
pub fn auth_headers(kind: ServiceKind, key: Option<&ApiKey>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    match (kind, key) {
        (ServiceKind::Anthropic, key) => {
            headers.push(("anthropic-version", "2023-06-01".to_owned()));
            if let Some(key) = key {
                headers.push(("x-api-key", key.expose().to_owned()));
            }
        }
        (ServiceKind::Gemini, Some(key)) => {
            headers.push(("x-goog-api-key", key.expose().to_owned()));
        }
        (ServiceKind::Openai | ServiceKind::Ollama | ServiceKind::Http, Some(key)) => {
            headers.push(("authorization", format!("Bearer {}", key.expose())));
        }
        (_, None) => {}
    }
    headers
}

/// The list-models call for a service with an API base.
pub fn list_models(service: &Service, key: Option<&ApiKey>) -> Option<ApiCall> {
    let base = service.api_base.as_deref()?.trim_end_matches('/');
    let (path, label) = match service.kind {
        ServiceKind::Ollama => ("/api/tags", "GET /api/tags"),
        ServiceKind::Gemini => ("/models?pageSize=1", "GET /models"),
        ServiceKind::Http => ("", "GET"),
        ServiceKind::Openai | ServiceKind::Anthropic => ("/models", "GET /models"),
    };
    let mut ask = Ask::get();
    ask.headers = auth_headers(service.kind, key);
    ask.carries_key = key.is_some();
    Some(ApiCall {
        url: format!("{base}{path}"),
        label: label.to_owned(),
        ask,
    })
}

/// Model ids from a list-models answer in any family's shape.
pub fn model_ids(body: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let list = value
        .get("data")
        .or_else(|| value.get("models"))
        .and_then(Value::as_array)?;
    Some(
        list.iter()
            .filter_map(|m| {
                m.get("id")
                    .or_else(|| m.get("name"))
                    .and_then(Value::as_str)
                    .map(|s| s.trim_start_matches("models/").to_owned())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_of_every_family_are_read() {
        let openai = br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}"#;
        assert_eq!(model_ids(openai).unwrap(), ["gpt-4o-mini"]);
        let ollama = br#"{"models":[{"name":"llama3.2:latest","size":1}]}"#;
        assert_eq!(model_ids(ollama).unwrap(), ["llama3.2:latest"]);
        let gemini = br#"{"models":[{"name":"models/gemini-2.0-flash"}]}"#;
        assert_eq!(model_ids(gemini).unwrap(), ["gemini-2.0-flash"]);
        assert!(model_ids(b"<html>").is_none());
    }

    #[test]
    fn keys_go_in_each_family_s_own_header() {
        let key = ApiKey::new("k-1".into()).unwrap();
        let h = auth_headers(ServiceKind::Anthropic, Some(&key));
        assert!(h.contains(&("x-api-key", "k-1".into())));
        let h = auth_headers(ServiceKind::Openai, Some(&key));
        assert_eq!(h, vec![("authorization", "Bearer k-1".to_owned())]);
        assert!(auth_headers(ServiceKind::Openai, None).is_empty());
    }
}
