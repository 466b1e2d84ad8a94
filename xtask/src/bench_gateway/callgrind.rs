//! `cargo xtask bench gateway callgrind`: the gateway's cost per request in CPU instructions,
//! which, unlike requests per second, does not move with whatever else the machine is doing.
//! The `aiwatch gateway` of profile `measure` (what dist ships, with line tables) runs under
//! `valgrind --tool=callgrind` in front of the loopback mock; after a warm-up the counters are
//! zeroed, a fixed number of requests is sent, the counters are dumped, and their total is
//! divided by the number of requests. The busiest
//! functions (callgrind_annotate) say where the instructions go.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;

use super::workspace_root;
use super::{
    aiwatch_binary, build_mock, connect, free_port, kill_children_on_ctrl_c, start_aiwatch_under,
    LoadRequest, Proc,
};

struct Options {
    warmup: usize,
    requests: usize,
    connections: usize,
    top: usize,
    /// A binary to measure instead of building this tree's (an earlier build, to compare).
    binary: Option<PathBuf>,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options {
        warmup: 2_000,
        requests: 10_000,
        connections: 1,
        top: 30,
        binary: None,
    };
    let mut rest = args;
    loop {
        let number = |n: &str, flag: &str| -> Result<usize> {
            n.parse().with_context(|| format!("{flag} takes a number"))
        };
        rest = match rest {
            [] => break,
            ["--warmup", n, more @ ..] => {
                options.warmup = number(n, "--warmup")?;
                more
            }
            ["--requests", n, more @ ..] => {
                options.requests = number(n, "--requests")?;
                more
            }
            ["--connections", n, more @ ..] => {
                options.connections = number(n, "--connections")?;
                more
            }
            ["--binary", path, more @ ..] => {
                options.binary = Some(PathBuf::from(path));
                more
            }
            ["--top", n, more @ ..] => {
                options.top = number(n, "--top")?;
                more
            }
            _ => bail!(
                "usage: cargo xtask bench gateway callgrind [--warmup N] [--requests N] [--connections C] [--top N] [--binary PATH]"
            ),
        };
    }
    if options.requests == 0 || options.connections == 0 {
        bail!("--requests and --connections must be at least 1");
    }
    Ok(options)
}

pub fn run(args: &[&str]) -> Result<()> {
    let options = parse_options(args)?;
    kill_children_on_ctrl_c();
    println!("bench gateway callgrind: installing valgrind (first time only) and building aiwatch (profile `measure`)");
    crate::e2e::install(&["valgrind"])?;
    let work = tempfile::Builder::new()
        .prefix("aiwatch-bench-callgrind")
        .tempdir()?;
    // A copy: the shared target directory's binary may be rebuilt by another build meanwhile.
    let built = match &options.binary {
        Some(path) => path.clone(),
        None => aiwatch_binary()?,
    };
    let binary = work.path().join("aiwatch");
    std::fs::copy(&built, &binary).context("copy the measured binary")?;
    build_mock();
    let mock = Proc::mock(work.path(), "primary", free_port()?)?;
    let out_prefix = work.path().join("callgrind.out");
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}.%p", out_prefix.display()),
    ];
    let target = start_aiwatch_under(
        &wrapper,
        &binary,
        work.path(),
        mock.addr.port(),
        free_port()?,
        Duration::from_secs(180),
    )?;
    let pid = target
        .proc
        .as_ref()
        .map(Proc::pid)
        .context("no gateway process")?;
    let request = Arc::new(LoadRequest::new(&target)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    println!(
        "  warm-up: {} requests over {} connection(s)",
        options.warmup, options.connections
    );
    runtime.block_on(send(&request, options.warmup, options.connections))?;
    callgrind_control(&["--zero"], pid)?;
    let started = Instant::now();
    runtime.block_on(send(&request, options.requests, options.connections))?;
    let took = started.elapsed();
    callgrind_control(&["--dump=measured"], pid)?;
    let dumped = wait_for_dump(work.path(), pid)?;
    let total = totals(&dumped)?;
    drop(target);
    drop(mock);
    // Kept past the temporary directory, for callgrind_annotate or kcachegrind.
    let dir = workspace_root().join("artifacts/bench");
    std::fs::create_dir_all(&dir)?;
    let dump = dir.join("gateway.callgrind.out");
    std::fs::copy(&dumped, &dump)?;

    let per_request = total as f64 / options.requests as f64;
    println!(
        "\n## Gateway instructions per request (callgrind)\n\n`cargo xtask bench gateway callgrind {}`\n",
        args.join(" ")
    );
    println!(
        "{} measured requests over {} connection(s) after {} of warm-up, {:.1} s under valgrind: \
         **{:.0} instructions per request** ({total} in all, every thread of the gateway)\n",
        options.requests,
        options.connections,
        options.warmup,
        took.as_secs_f64(),
        per_request
    );
    if options.top > 0 {
        print_top(&dump, options.top, options.requests)?;
    }
    Ok(())
}

/// Sends `count` chat requests over `connections` keep-alive connections, each one after the
/// other on its connection; every answer must be a 200.
async fn send(request: &Arc<LoadRequest>, count: usize, connections: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let share = count / connections + usize::from(c < count % connections);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(request.addr, Duration::from_secs(10)).await?;
            for _ in 0..share {
                let response = sender.send_request(request.build()?).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                if status != 200 {
                    bail!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    );
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.context("sender task")??;
    }
    Ok(())
}

fn callgrind_control(args: &[&str], pid: u32) -> Result<()> {
    let output = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .context("run callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The dump `callgrind_control --dump` asked for: `callgrind.out.PID.N`, once written whole.
fn wait_for_dump(dir: &Path, pid: u32) -> Result<PathBuf> {
    let prefix = format!("callgrind.out.{pid}.");
    let started = Instant::now();
    loop {
        let found = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            });
        if let Some(path) = found {
            if totals(&path).is_ok() {
                return Ok(path);
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("callgrind wrote no dump {prefix}* in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The dump's total instruction count (its `totals:` line, or `summary:` in older formats).
fn totals(dump: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(dump)?;
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no totals line in the dump yet")
}

/// The functions with the most instructions of their own, per request.
fn print_top(dump: &Path, top: usize, requests: usize) -> Result<()> {
    let output = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .context("run callgrind_annotate")?;
    let text = String::from_utf8_lossy(&output.stdout);
    println!(
        "| instructions/request | share | function (own instructions, callgrind_annotate) |\n|---:|---:|---|"
    );
    let total: f64 = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(f64::NAN);
    let rows: Vec<(f64, String)> = text
        .lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(2)
        .filter_map(|l| {
            let l = l.trim();
            let (count, rest) = l.split_once(' ')?;
            let count: f64 = count.replace(',', "").parse().ok()?;
            // Newer annotate versions put the percentage in parentheses after the count.
            let rest = rest.trim_start();
            let rest = match rest.strip_prefix('(') {
                Some(r) => r.split_once(')').map_or(r, |(_, after)| after).trim_start(),
                None => rest,
            };
            Some((count, rest.to_owned()))
        })
        .collect();
    // Frames still running at the dump (each thread's main loop, down to the runtime) show
    // everything under them as their own: several rows with the very same count, which a
    // function's own work does not make.
    let stacked =
        |count: f64| count >= 0.05 * total && rows.iter().filter(|(c, _)| *c == count).count() >= 3;
    let rows = rows.iter().filter(|(count, _)| !stacked(*count)).take(top);
    for (count, function) in rows {
        let function: String = function.chars().take(160).collect();
        println!(
            "| {:.0} | {:.1} % | `{}` |",
            count / requests as f64,
            100.0 * count / total,
            function.replace('|', "\\|")
        );
    }
    println!("\nfull profile: callgrind_annotate {}", dump.display());
    Ok(())
}
