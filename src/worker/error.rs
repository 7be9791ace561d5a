//! Why a worker stops with a failure. The variant decides the exit status
//! (and so whether the supervisor restarts the worker or stops): no
//! downcasting of `anyhow` errors decides it.

use crate::report::EXIT_CONFIG;

/// A worker's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Restarting cannot fix it (a handler that cannot be run, a setting
    /// the broker refuses, no rights): the worker exits with
    /// [`EXIT_CONFIG`] and the supervisor stops with exit status 2 instead
    /// of restarting it.
    #[error("{0}")]
    Config(String),
    /// The handler failed: it crashed, hung, ended, or broke its ack
    /// contract.
    #[error("{0}")]
    Handler(String),
    /// A record the handler cannot take (everything before it is delivered
    /// and committed).
    #[error("{0}")]
    Poison(String),
    /// A handler limit was passed (`--handler-memory-max`,
    /// `--record-timeout`): the worker committed what was acknowledged and
    /// ends so that the supervisor starts a new one, without spending the
    /// restart budget (its `Replacing` report says why).
    #[error("{message}")]
    Replace {
        why: crate::handler::limits::Replacement,
        message: String,
    },
    /// Anything else (the runtime, the report pipe, a group error): a
    /// restart may help.
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl WorkerError {
    /// The worker's exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            WorkerError::Config(_) => EXIT_CONFIG as u8,
            _ => 1,
        }
    }
}

impl From<anyhow::Error> for WorkerError {
    fn from(e: anyhow::Error) -> Self {
        WorkerError::Other(e)
    }
}

pub type Result<T> = std::result::Result<T, WorkerError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configuration_error_stops_the_supervisor() {
        assert_eq!(
            WorkerError::Config("x".into()).exit_code(),
            EXIT_CONFIG as u8
        );
        assert_eq!(WorkerError::Handler("x".into()).exit_code(), 1);
        assert_eq!(WorkerError::Poison("x".into()).exit_code(), 1);
        assert_eq!(WorkerError::Other(anyhow::anyhow!("x")).exit_code(), 1);
    }

    #[test]
    fn messages_are_kept_whole() {
        let e = anyhow::anyhow!("refused").context("cannot reach any of --brokers h:1");
        assert_eq!(
            WorkerError::Other(e).to_string(),
            "cannot reach any of --brokers h:1: refused"
        );
        assert_eq!(
            WorkerError::Handler("handler failed: exit 3".into()).to_string(),
            "handler failed: exit 3"
        );
    }
}
