//! The plain types of group membership: the settings a member is built
//! from, what a join hands back, and the errors every protocol returns.

use std::time::Duration;

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

    /// How this member's group removes a member on its behalf.
    pub fn eviction(&self) -> crate::group::Eviction {
        crate::group::Eviction::new(
            &self.brokers,
            self.connect_timeout,
            &self.group,
            self.protocol,
        )
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

/// What the heartbeat knows about our generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Beating fine.
    Alive,
    /// The group rebalances, or our generation is stale: rejoin.
    /// `reset_member`: the coordinator forgot our member id.
    Rebalance { reset_member: bool },
    /// Retrying cannot help.
    Fatal(String),
}

/// Why retrying our static membership cannot work on an old broker.
pub(crate) const STATIC_HINT: &str =
    "--static-membership needs a broker with JoinGroup v5+ (Kafka 2.3 or later); run without --static-membership";

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
