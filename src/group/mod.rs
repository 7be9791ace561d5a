//! Consumer-group membership over the wire (the classic protocol):
//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetFetch,
//! OffsetCommit, LeaveGroup — speaking the standard ConsumerProtocol and
//! assignor names, so librdkafka, Java and kafka-python members can share the
//! group with ours.
//!
//! - [`member`]: one member's state machine ([`Member`]).
//! - [`heartbeat`]: the background heartbeat task of the current generation.
//! - [`coordinator`]: bootstrap, FindCoordinator, retry pacing; [`evict`].
//! - [`errors`]: what each Kafka error code means for a member.
//!
//! A worker drives a [`Member`] like this (eager protocol: everything is
//! revoked at each rebalance):
//!
//! ```text
//! let mut m = Member::connect(GroupSettings::from_worker(&cfg)).await?;
//! loop {
//!     let a = m.join().await?;                 // a.partitions: ours for a.generation_id
//!     let start = m.committed(&a.partitions).await?;
//!     loop {
//!         tokio::select! {
//!             r = m.rebalance_needed() => { r?; break; }   // cancel-safe
//!             .. fetch, hand to the handler, then m.commit(&acked).await
//!                (Err(GroupError::Rebalance) => break) ..
//!         }
//!     }
//!     m.commit(&acked).await.ok();             // commit on revoke, then rejoin
//! }
//! // on shutdown: m.commit(..), then m.leave()
//! ```

pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod errors;
pub(crate) mod heartbeat;
pub(crate) mod member;
pub(crate) mod share;

use std::time::Duration;

pub use consumer::evict_consumer_members;
pub use coordinator::evict;
pub use member::Member;

/// Everything a member needs to know.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub brokers: Vec<String>,
    pub connect_timeout: Duration,
    pub client_id: String,
    pub group: String,
    pub topic: String,
    pub session_timeout: Duration,
    /// Raise the session timeout when the broker refuses it (`--session-timeout auto`).
    pub session_timeout_auto: bool,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignors: Vec<crate::config::Assignor>,
    pub instance_id: Option<String>,
    /// `--group-protocol`.
    pub protocol: crate::config::GroupProtocol,
    /// Consumer protocol: the server-side assignor to ask for.
    pub remote_assignor: Option<String>,
}

impl GroupSettings {
    pub fn from_worker(cfg: &crate::config::WorkerConfig) -> Self {
        Self {
            brokers: cfg.connect.brokers.clone(),
            connect_timeout: cfg.connect.connect_timeout,
            client_id: crate::group_size::client_id(cfg.slot, cfg.host_workers, &cfg.host_id),
            group: cfg.consume.group.clone(),
            topic: cfg.topic.clone(),
            session_timeout: cfg.consume.session_timeout,
            session_timeout_auto: cfg.consume.session_timeout_auto,
            rebalance_timeout: cfg.consume.rebalance_timeout,
            heartbeat_interval: cfg.consume.heartbeat_interval,
            assignors: cfg.consume.assignors.clone(),
            instance_id: cfg.instance_id(),
            protocol: cfg.consume.group_protocol,
            remote_assignor: cfg.consume.remote_assignor.clone(),
        }
    }

    /// Settings enough to find the coordinator of `group` and send it one
    /// request on a dead member's behalf (the supervisor's evictions).
    pub fn for_eviction(brokers: &[String], connect_timeout: Duration, group: &str) -> Self {
        Self {
            brokers: brokers.to_vec(),
            connect_timeout,
            client_id: "kswarm-supervisor".into(),
            group: group.to_string(),
            topic: String::new(),
            session_timeout: Duration::from_secs(45),
            session_timeout_auto: false,
            rebalance_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            assignors: Vec::new(),
            instance_id: None,
            protocol: crate::config::GroupProtocol::Share,
            remote_assignor: None,
        }
    }

    /// Deadline for an ordinary request (not JoinGroup/SyncGroup, which may
    /// wait for the rest of the group).
    pub(crate) fn request_timeout(&self) -> Duration {
        self.connect_timeout.max(Duration::from_secs(10))
    }
}

/// The outcome of a successful join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub generation_id: i32,
    pub member_id: String,
    pub leader: bool,
    /// Sorted partitions of `settings.topic`.
    pub partitions: Vec<i32>,
}

#[derive(thiserror::Error, Debug)]
pub enum GroupError {
    /// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID (after
    /// resetting the member id)...: stop work on the partitions and join again.
    #[error("group rebalance: rejoin needed")]
    Rebalance,
    /// Retrying cannot help (fenced instance id, bad group id, no rights,
    /// unsupported broker...): the message names the cause and the way out.
    #[error("{0}")]
    Fatal(String),
    /// Retriable transport problems that persisted past the retry window.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::{Assignor, WorkerConfig};
    use clap::Parser;

    fn worker(extra: &[&str]) -> WorkerConfig {
        let mut args = vec![
            "kswarm", "worker", "-b", "h:1", "-t", "logs", "-g", "grp", "--slot", "3",
        ];
        args.extend_from_slice(extra);
        let Command::Worker(w) = Cli::try_parse_from(args).unwrap().command else {
            unreachable!()
        };
        WorkerConfig::from_args(&w).unwrap()
    }

    #[test]
    fn settings_from_worker_flags() {
        let s = GroupSettings::from_worker(&worker(&[
            "--session-timeout",
            "6s",
            "--heartbeat-interval",
            "500ms",
            "--assignor",
            "roundrobin,range",
        ]));
        assert_eq!(s.brokers, vec!["h:1"]);
        assert_eq!((s.group.as_str(), s.topic.as_str()), ("grp", "logs"));
        assert_eq!(s.session_timeout, Duration::from_secs(6));
        assert_eq!(s.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(s.assignors, vec![Assignor::RoundRobin, Assignor::Range]);
        assert_eq!(s.instance_id, None);
        assert!(s.client_id.contains('3'));

        let s = GroupSettings::from_worker(&worker(&["--static-membership"]));
        assert_eq!(s.instance_id.as_deref(), Some("grp-3"));
    }
}
