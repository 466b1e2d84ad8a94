//! Exit codes and the one place where errors become messages and codes.

use std::process::ExitCode;

/// EX_USAGE: the command line was wrong.
pub const USAGE: u8 = 64;
/// EX_CONFIG: the config file (or a file it names) is wrong.
pub const CONFIG: u8 = 78;
/// EX_SOFTWARE: anything else that stopped aiwatch.
pub const SOFTWARE: u8 = 70;

/// An error that knows its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

pub fn config(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: CONFIG,
        message: message.into(),
    }
    .into()
}

/// Prints the error chain and picks the exit code.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Failure>().map_or(SOFTWARE, |f| f.code);
    eprintln!("aiwatch: {error:#}");
    ExitCode::from(code)
}
