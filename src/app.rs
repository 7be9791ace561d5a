//! Subcommand dispatch and the mapping of errors to exit codes.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::{ExitWith, UsageError};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => crate::supervisor::run(a, &cli.log_level, &cli.log_format),
        Command::Plan(a) => crate::plan::run(&a),
        Command::Status(a) => crate::status::run(&a),
        Command::Produce(a) => crate::produce::run(&a),
        Command::Completions(a) => crate::install::print(&crate::install::completions(a.shell)),
        Command::Man => crate::install::print(&crate::install::man_page()?),
        Command::Worker(a) => crate::worker::cmd(a),
        Command::Guard(a) => crate::handler::guard::run(&a.command),
        Command::Spawned(_) => crate::worker::spawned(),
    }
}

/// 0 clean, 2 usage/configuration, otherwise 1 (or what `ExitWith` says).
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    let (code, message) = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                (2, u.to_string())
            } else if let Some(x) = e.downcast_ref::<ExitWith>() {
                (x.0, x.1.clone())
            } else {
                (1, format!("{e:#}"))
            }
        }
    };
    if !message.is_empty() {
        match crate::logging::LogFormat::current() {
            crate::logging::LogFormat::Text => eprintln!("kswarm: error: {message}"),
            crate::logging::LogFormat::Json => {
                tracing::error!(event = "exit", code, "{message}")
            }
        }
    }
    ExitCode::from(code)
}
