//! Developer tasks as code: `cargo xtask bench …` measures aiwatch against loopback fakes.

mod bench_check;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "check", rest @ ..] => bench_check::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask bench check [--runs N]\n\n  bench check   wall time of `aiwatch check` for the whole catalog against loopback\n                fakes (healthy and blackholed), and binary start-up time"
            );
            bail!("unknown task: {}", args.join(" "))
        }
    }
}
