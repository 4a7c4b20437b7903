//! `hcictl`: the operators' command-line client of the hci controller HTTP API.
//!
//! A thin client: it turns verbs into API requests, fails over between controller URLs, and prints
//! answers as tables or JSON. This file only maps the outcome to the exit status the contract
//! promises (0 ok, 1 refused, 2 usage, 3 unreachable).

mod args;
mod client;
mod commands;
mod config;
mod error;
mod output;
mod resolve;
#[cfg(test)]
mod test_server;
mod views;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::error::EXIT_USAGE;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too, with exit code 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    let result = commands::run(cli, &mut lock).and_then(|()| lock.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
