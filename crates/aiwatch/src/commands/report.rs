//! `aiwatch report SERVICE --symptom S`: posts one problem report to an aiwatch server, as the
//! reporter whose random token lives in the user's data dir, and prints what others report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aiwatch_core::evidence::{HttpOutcome, Purpose};
use aiwatch_core::symptom::Symptom;
use aiwatch_probe::layered::{probe, Ask};
use anyhow::Context;
use http::Method;
use serde_json::{json, Value};

use crate::cli::ReportArgs;
use crate::exit;
use crate::load;

/// The reporter token: made once, kept in the user's data dir (readable by the user only).
fn reporter_token() -> anyhow::Result<String> {
    let path: PathBuf = dirs::data_dir()
        .map(|d| d.join("aiwatch"))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("reporter-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if token.len() >= 16 {
            return Ok(token);
        }
    }
    let token: String = (0..32)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(token)
}

pub fn run(config_path: Option<&Path>, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if Symptom::parse(&args.symptom).is_none() {
        return Err(exit::usage(format!(
            "--symptom: `{}` is not one of {}",
            args.symptom,
            Symptom::vocabulary()
        )));
    }
    let server = match &args.server {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let listen = load::load(config_path)
                .map(|l| l.config.server.listen)
                .unwrap_or_else(|_| aiwatch_core::config::ServerConfig::default().listen);
            format!("http://{listen}")
        }
    };
    let token = reporter_token()?;
    let checker = load::plain_checker(&args.network, std::time::Duration::from_secs(10))?;
    let body = json!({
        "service": args.service,
        "symptom": args.symptom,
        "region": args.region,
        "comment": args.comment,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let call = |method: Method, path: String, body: Option<Vec<u8>>| {
        let ctx = checker.context().clone();
        let token = token.clone();
        let url = format!("{server}{path}");
        async move {
            let mut headers = vec![
                ("x-aiwatch-reporter", token),
                ("accept", "application/json".to_owned()),
            ];
            if body.is_some() {
                headers.push(("content-type", "application/json".to_owned()));
            }
            let probed = probe(
                &ctx,
                Purpose::Api,
                &url,
                Ask {
                    method,
                    headers,
                    body: body.map(bytes::Bytes::from),
                    carries_key: false,
                    body_cap: 256 * 1024,
                },
                None,
                deadline,
            )
            .await;
            let status = match &probed.report.http {
                Some(HttpOutcome::Response(r)) => Some(r.status),
                _ => None,
            };
            (status, probed)
        }
    };
    let (status, probed) = runtime.block_on(call(
        Method::POST,
        "/api/v1/reports".into(),
        Some(serde_json::to_vec(&body)?),
    ));
    let answer: Value = serde_json::from_slice(&probed.body).unwrap_or(Value::Null);
    match status {
        Some(202) => {
            if answer["counted"] == true {
                println!("Reported: {} — {}.", args.service, args.symptom);
            } else {
                println!(
                    "You already reported {} this hour; it counts once.",
                    args.service
                );
            }
        }
        Some(code) => {
            let why = answer["error"].as_str().unwrap_or("no reason given");
            eprintln!("aiwatch report: {server} refused the report ({code}): {why}");
            return Ok(ExitCode::from(2));
        }
        None => {
            eprintln!(
                "aiwatch report: {server} could not be reached: {}",
                aiwatch_probe::official::failure_text(&probed.report)
            );
            return Ok(ExitCode::from(2));
        }
    }
    let (status, probed) = runtime.block_on(call(
        Method::GET,
        format!("/api/v1/services/{}/reports", args.service),
        None,
    ));
    if status == Some(200) {
        let now: Value = serde_json::from_slice(&probed.body).unwrap_or(Value::Null);
        let level = now["level"].as_str().unwrap_or("none");
        let hour = now["last_hour"]["total"].as_u64().unwrap_or(0);
        let words = match level {
            "likely" => "likely problems: far more reports than usual",
            "possible" => "possible problems: more reports than usual",
            _ => "no unusual number of reports",
        };
        println!("Others: {hour} reports in the last hour; {words}.");
    }
    Ok(ExitCode::SUCCESS)
}
