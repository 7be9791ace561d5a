//! What the fleet asks the supervisor to do, and how `kswarm run` ends.

use super::Pid;

/// Signals the supervisor sends to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM to the worker: drain, commit, leave, exit 0.
    Term,
    /// SIGUSR1 to the worker: drain, commit, exit 0 without leaving, for the
    /// slot's next worker to take the member over (rolling restart).
    HandOver,
    /// SIGKILL to the worker.
    Kill,
}

/// sd_notify messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Reloading,
    Stopping,
    Status(String),
}

/// The end of `kswarm run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub message: String,
    /// The slot at fault, whose last stderr lines belong in the message.
    pub slot: Option<u32>,
    /// The short reason for the log line that starts the stop.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a worker process in this slot, then call [`super::Fleet::spawned`]
    /// or [`super::Fleet::spawn_failed`].
    Spawn {
        slot: u32,
    },
    Signal {
        pid: Pid,
        sig: Sig,
    },
    Notify(Notify),
    /// A worker died without leaving the group: make the coordinator drop
    /// its member now, so the rebalance need not wait for its session timeout.
    Evict {
        slot: u32,
        member_id: String,
    },
    /// Every worker has ended after a shutdown without leaving the group:
    /// make the coordinator drop all their members in one LeaveGroup.
    LeaveTogether {
        member_ids: Vec<String>,
    },
    /// Every worker has ended: exit the supervisor.
    Exit(Outcome),
}
