//! Subcommand dispatch and the mapping of errors to exit codes.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::UsageError;

/// A failure that must end the process with a specific exit code (after its
/// message has been printed by whoever built it).
#[derive(Debug)]
pub struct ExitWith(pub u8, pub String);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitWith {}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => crate::supervisor::run(a, &cli.log_level),
        Command::Plan(a) => crate::plan::run(&a),
        Command::Status(a) => crate::status::run(&a),
        Command::Produce(a) => crate::produce::run(&a),
        Command::Worker(a) => crate::worker::cmd(a),
        Command::Guard(a) => crate::handler::guard::run(&a.command),
    }
}

/// 0 clean, 2 usage/configuration, otherwise 1 (or what `ExitWith` says).
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("kswarm: error: {u}");
                return ExitCode::from(2);
            }
            if let Some(x) = e.downcast_ref::<ExitWith>() {
                if !x.1.is_empty() {
                    eprintln!("kswarm: error: {}", x.1);
                }
                return ExitCode::from(x.0);
            }
            eprintln!("kswarm: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
