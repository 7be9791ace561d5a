//! The errors that decide kswarm's exit code (see `app::exit_code`): 2 for
//! a usage or configuration error, 1 for a runtime failure, or the code an
//! `ExitWith` names (a worker's own failures are `worker::error::WorkerError`).
//! Every message names the flag or value at fault and the way out.

/// A bad flag or value (exit 2); the message names it and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

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
