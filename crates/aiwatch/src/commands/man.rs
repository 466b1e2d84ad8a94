//! `aiwatch man DIR` (hidden; used by `cargo xtask dist`): writes `aiwatch.1` and one page per
//! subcommand (`aiwatch-check.1`, …) with clap_mangen, from the same definitions as `--help`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

fn render(command: &clap::Command, dir: &Path, name: &'static str) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone().name(name))
        .render(&mut page)
        .context("render a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}

pub fn write(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = Cli::command();
    command.build();
    render(&command, dir, "aiwatch")?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // Leaked once per subcommand of a short-lived command: clap names are 'static.
        let name: &'static str = Box::leak(format!("aiwatch-{}", sub.get_name()).into_boxed_str());
        render(sub, dir, name)?;
    }
    println!("man pages written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
