//! Worker -> supervisor reports: one JSON object per line on a pipe
//! (the worker's `--report-fd`). Pure types and line codec; no I/O policy.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// The worker process is up (before any Kafka traffic).
    Started { pid: u32 },
    /// The coordinator gave us this member id; the join is still under way.
    MemberId { member_id: String },
    /// Joined (or rejoined) the group and owns these partitions.
    Joined {
        member_id: String,
        generation: i32,
        partitions: Vec<i32>,
    },
    /// Partitions were revoked; a rejoin follows.
    Revoked { partitions: Vec<i32> },
    /// Sent at least every heartbeat interval while healthy; `records` counts
    /// records acknowledged by the handler since the worker started.
    Alive { records: u64 },
    /// The worker's statistics for `--metrics-addr`, every second.
    Stats(crate::metrics::WorkerStats),
    /// The worker is stopping on purpose (signal, closed stdout).
    Stopping { reason: StopCause },
    /// The brokers cannot be reached (or answer nothing) right now; the
    /// worker waits and retries. Sent again every few seconds while it lasts.
    Outage { error: String },
    /// The brokers answer again after an outage.
    Recovered,
    /// A fatal error, just before a non-zero exit: 2 for a configuration
    /// error (restarting cannot help), 1 otherwise.
    Fatal { message: String },
    /// The worker ends to replace its handler, which passed a limit
    /// (`--handler-memory-max`, `--record-timeout`); what it acknowledged is
    /// committed. Sent just before its exit: a replacement, not a crash.
    Replacing {
        why: crate::handler::limits::Replacement,
    },
}

/// Why a worker stops on purpose (its `Stopping` report). On the pipe it
/// is the text of [`StopCause::label`], as it always was; a text the
/// supervisor does not know is kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum StopCause {
    /// TERM, INT or the hand-over signal.
    Signal,
    /// Whoever reads the stdout handler's output is gone (`kswarm run | head`):
    /// restarting cannot help, so the supervisor stops everyone, cleanly.
    StdoutClosed,
    /// A record the handler cannot take (the poison path).
    Poison,
    /// The share worker stops on a failure.
    Failure,
    Other(String),
}

impl StopCause {
    pub fn label(&self) -> &str {
        match self {
            StopCause::Signal => "signal",
            StopCause::StdoutClosed => "stdout closed",
            StopCause::Poison => "a record the handler cannot take",
            StopCause::Failure => "failure",
            StopCause::Other(s) => s,
        }
    }
}

impl From<&str> for StopCause {
    fn from(s: &str) -> Self {
        [
            StopCause::Signal,
            StopCause::StdoutClosed,
            StopCause::Poison,
            StopCause::Failure,
        ]
        .into_iter()
        .find(|c| c.label() == s)
        .unwrap_or_else(|| StopCause::Other(s.to_string()))
    }
}

impl From<String> for StopCause {
    fn from(s: String) -> Self {
        StopCause::from(s.as_str())
    }
}

impl From<StopCause> for String {
    fn from(c: StopCause) -> Self {
        c.label().to_string()
    }
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The exit status of a worker that stopped on a configuration error (a
/// handler that cannot be run, a setting the broker refuses): the supervisor
/// does not restart it and exits 2 itself.
pub const EXIT_CONFIG: i32 = 2;

impl Report {
    /// One line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("reports always serialize");
        s.push('\n');
        s
    }

    pub fn from_line(line: &str) -> Option<Self> {
        serde_json::from_str(line.trim_end()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Report::Joined {
            member_id: "m-1".into(),
            generation: 3,
            partitions: vec![0, 2],
        };
        let line = r.to_line();
        assert!(line.ends_with('\n'));
        assert!(line.contains("\"event\":\"joined\""));
        assert_eq!(Report::from_line(&line), Some(r));
        assert_eq!(Report::from_line("garbage"), None);
    }

    #[test]
    fn a_stop_cause_travels_as_its_text() {
        let r = Report::Stopping {
            reason: StopCause::StdoutClosed,
        };
        let line = r.to_line();
        assert!(line.contains(r#""reason":"stdout closed""#), "{line}");
        assert_eq!(Report::from_line(&line), Some(r));
        let other = r#"{"event":"stopping","reason":"something new"}"#;
        assert_eq!(
            Report::from_line(other),
            Some(Report::Stopping {
                reason: StopCause::Other("something new".into())
            })
        );
        assert_eq!(StopCause::from("signal"), StopCause::Signal);
    }
}
