//! The `aiwatch` binary: parses the command line, runs the command, turns the outcome into an
//! exit code. Everything else lives in the library crates.

mod cli;
mod commands;
mod exit;
mod load;
mod report;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => exit::report_error(&error),
    }
}
