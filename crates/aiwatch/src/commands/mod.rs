//! Dispatches each subcommand to its module.

mod agent;
pub mod alert;
mod check;
mod config;
mod drill;
pub mod gateway;
mod init;
mod man;
mod report;
pub mod serve;
mod services;
mod status;

use std::process::ExitCode;

use crate::cli::{AlertCommand, Cli, Command, ConfigCommand};

/// Runs the parsed command and returns its exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(cli.config.as_deref(), &args, args.verbose, args.quiet),
        Command::Status(args) => {
            status::run(cli.config.as_deref(), &args, args.verbose, args.quiet)
        }
        Command::Serve(args) => serve::run(cli.config.as_deref(), &args),
        Command::Gateway(args) => gateway::run(cli.config.as_deref(), &args),
        Command::Agent(args) => agent::run(&args),
        Command::Drill(args) => drill::run(cli.config.as_deref(), &args),
        Command::Services(args) => services::run(cli.config.as_deref(), &args),
        Command::Config(ConfigCommand::Check { file }) => {
            config::check(file.as_deref().or(cli.config.as_deref()))
        }
        Command::Alert(AlertCommand::Test {
            name,
            event,
            network,
        }) => alert::test(cli.config.as_deref(), &name, &event, &network),
        Command::Report(args) => report::run(cli.config.as_deref(), &args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "aiwatch", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man::write(&dir),
        Command::Init { force, print } => init::run(cli.config.as_deref(), force, print),
    }
}
