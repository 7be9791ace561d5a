//! What a worker tells its supervisor (reports, one JSON line each on the
//! `--report-fd` pipe), and the clock of a broker outage, which is reported
//! while it lasts.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use crate::backoff::Doubling;
use crate::report::Report;

/// While the brokers cannot be reached: the pause before trying again
/// (0.5 s doubling to 10 s), and how often the supervisor hears that it
/// still lasts.
const OUTAGE_PAUSE: Doubling = Doubling::new(Duration::from_millis(500), Duration::from_secs(10));
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Writes reports to the supervisor's pipe; a no-op without `--report-fd`.
pub struct Reporter {
    out: Option<std::fs::File>,
}

impl Reporter {
    pub fn open(fd: Option<i32>) -> anyhow::Result<Self> {
        let out = match fd {
            // Re-opening /dev/fd/N gives us the pipe without unsafe fd adoption.
            Some(fd) => Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/dev/fd/{fd}"))
                    .with_context(|| format!("--report-fd {fd} is not open for writing"))?,
            ),
            None => None,
        };
        Ok(Self { out })
    }

    pub fn try_clone(&self) -> Self {
        Self {
            out: self.out.as_ref().and_then(|f| f.try_clone().ok()),
        }
    }

    pub fn send(&mut self, report: Report) {
        if let Some(out) = &mut self.out {
            // A supervisor that stopped reading is dead; PDEATHSIG ends us soon.
            let _ = out.write_all(report.to_line().as_bytes());
        }
    }
}

/// How long the brokers have been out of reach, and the pacing of retries.
#[derive(Debug, Default)]
pub struct OutageClock {
    /// `--brokers`, named in every report.
    brokers: String,
    since: Option<Instant>,
    attempts: u32,
    last_report: Option<Instant>,
}

impl OutageClock {
    /// The clock of a worker that reaches the brokers `brokers` (named in
    /// every report).
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            ..Self::default()
        }
    }

    /// One more failed try: log and report it (not every time), and return
    /// the pause before the next (doubling from 0.5 s to 10 s).
    /// `started`: when the failed try began (a try may itself retry for
    /// --connect-timeout before it gives up): the outage began then.
    pub fn failed(&mut self, reporter: &mut Reporter, error: &str, started: Instant) -> Duration {
        let error = if error.contains(&self.brokers) {
            error.to_string()
        } else {
            format!("--brokers {}: {error}", self.brokers)
        };
        let now = Instant::now();
        let since = *self.since.get_or_insert(started);
        let due = self
            .last_report
            .is_none_or(|t| now.duration_since(t) >= OUTAGE_REPORT_EVERY);
        if due {
            warn!(
                event = "broker_outage",
                "requests to the brokers fail, for {:?} now: {error}; waiting and retrying",
                now.duration_since(since)
            );
            reporter.send(Report::Outage {
                error: error.to_string(),
            });
            self.last_report = Some(now);
        }
        let pause = OUTAGE_PAUSE.delay(self.attempts);
        self.attempts += 1;
        pause
    }

    pub fn recovered(&mut self, reporter: &mut Reporter) {
        if let Some(since) = self.since.take() {
            info!(
                event = "broker_recovered",
                "the brokers answer again after {:?}",
                since.elapsed()
            );
            reporter.send(Report::Recovered);
        }
        self.attempts = 0;
        self.last_report = None;
    }
}
