//! `aiwatch services`: the catalog, built-in and configured, with where each key comes from.

use std::path::Path;
use std::process::ExitCode;

use aiwatch_core::Catalog;
use serde::Serialize;

use crate::cli::ServicesArgs;
use crate::load;

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    service: &'a aiwatch_core::Service,
    builtin: bool,
    key_set: Option<bool>,
}

pub fn run(config_path: Option<&Path>, args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let rows: Vec<Row<'_>> = loaded
        .catalog
        .iter()
        .map(|s| Row {
            service: s,
            builtin: Catalog::is_builtin(s.name.as_str()),
            key_set: s
                .api_key_env
                .as_deref()
                .map(|v| std::env::var(v).is_ok_and(|k| !k.trim().is_empty())),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let name_width = rows
        .iter()
        .map(|r| r.service.name.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<name_width$}  {:<9}  {:<50}  {:<27}  STATUS PAGE",
        "NAME", "KIND", "ENDPOINT", "KEY"
    );
    for row in &rows {
        let s = row.service;
        let endpoint = s
            .api_base
            .as_deref()
            .or(s.web_url.as_deref())
            .unwrap_or("-");
        let key = match (&s.api_key_env, row.key_set) {
            (Some(var), Some(true)) => format!("{var} (set)"),
            (Some(var), _) => format!("{var} (unset)"),
            (None, _) => "-".to_owned(),
        };
        let status = s.status.as_ref().map_or("-", |st| st.url());
        let origin = if row.builtin { "" } else { "  [config]" };
        println!(
            "{:<name_width$}  {:<9}  {:<50}  {:<27}  {status}{origin}",
            s.name.as_str(),
            s.kind.as_str(),
            endpoint,
            key
        );
    }
    if let Some(path) = &loaded.path {
        println!("\n{} services (config: {})", rows.len(), path.display());
    } else {
        println!("\n{} built-in services (no config file)", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}
