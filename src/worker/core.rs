//! What the partitioned worker (`worker::Worker`, classic and consumer
//! protocols) and the share worker (`worker::share`) have in common, written
//! once: the link to the supervisor and the brokers' availability ([`Core`]:
//! reports, fatal errors, the wait through a broker outage, the stop, the
//! liveness), and the handler's side ([`Feed`]: its start, the records it
//! acknowledged, its failures and hangs, the dead-letter copies, the
//! statistics).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use super::copies::{Copies, Outcome, Targets};
use super::error::{self, WorkerError};
use super::report::{OutageClock, Reporter};
use super::shutdown::Shutdown;
use crate::config::WorkerConfig;
use crate::handler::limits::{Expired, MemoryLimit, Replacement};
use crate::handler::{Handler, HandlerEnv};
use crate::metrics::{PartitionStats, VerdictCounts, WorkerStats};
use crate::report::Report;

/// Staged bytes handed to the handler at once at most (a fetched batch is
/// staged whole unless it formats to more than this).
pub(super) const CHUNK_BYTES: usize = 256 * 1024;
/// The in-flight window never goes below this many records (see
/// `handler::window`).
const MIN_WINDOW: usize = 100;
/// Alive reports to the supervisor, this often.
pub(super) const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// The worker's settings, its link to the supervisor, the clock of a broker
/// outage and the stop.
pub(super) struct Core {
    pub cfg: WorkerConfig,
    pub reporter: Reporter,
    /// Whether (and since when) the brokers are out of reach.
    pub outage: OutageClock,
    pub shutdown: Shutdown,
    /// When the last Alive report went out, and the acknowledged count then.
    pub last_alive: (Instant, u64),
}

impl Core {
    /// Open the report pipe (and say the worker started), and watch for stop
    /// signals.
    pub fn open(cfg: WorkerConfig) -> anyhow::Result<Core> {
        let mut reporter = Reporter::open(cfg.report_fd)?;
        reporter.send(Report::Started {
            pid: std::process::id(),
        });
        let shutdown = Shutdown::from_signals()?;
        let outage = OutageClock::new(&cfg.connect.brokers.join(","));
        Ok(Core {
            cfg,
            reporter,
            outage,
            shutdown,
            last_alive: (Instant::now(), 0),
        })
    }

    /// Report a fatal error to the supervisor (its variant decides the
    /// worker's exit status).
    pub fn fatal(&mut self, e: WorkerError) -> WorkerError {
        if let WorkerError::Replace { why, .. } = &e {
            // Not a failure: the supervisor starts the next worker.
            self.reporter.send(Report::Replacing { why: why.clone() });
            return e;
        }
        self.reporter.send(Report::Fatal {
            message: format!("{e:#}"),
        });
        e
    }

    /// A try at the brokers failed (`started`: when it began): log and
    /// report the outage (not every time), then wait the pause before the
    /// next try. False: a stop came first.
    pub async fn wait_out(&mut self, error: &dyn Display, started: Instant) -> bool {
        let pause = self.failed(error, started);
        pause_unless_stopped(pause, &mut self.shutdown).await
    }

    /// A try at the brokers failed: log and report it; the pause before the
    /// next try.
    pub fn failed(&mut self, error: &dyn Display, started: Instant) -> Duration {
        self.outage
            .failed(&mut self.reporter, &format!("{error:#}"), started)
    }

    /// The brokers answer (again).
    pub fn recovered(&mut self) {
        self.outage.recovered(&mut self.reporter);
    }

    /// Tell the supervisor the worker lives, and how many records its
    /// handler acknowledged so far.
    pub fn alive(&mut self, records: u64) {
        self.last_alive = (Instant::now(), records);
        self.reporter.send(Report::Alive { records });
    }
}

/// The handler and what the worker keeps of what it handed over.
pub(super) struct Feed {
    pub handler: Handler,
    /// Records handed to the handler since the worker started; minus the
    /// handler's in-flight count, the records it acknowledged.
    pub sent: u64,
    /// `--dead-letter-topic`: the task that writes dead-letter copies.
    pub copies: Option<Copies>,
    /// `--handler-memory-max`.
    memory: Option<MemoryLimit>,
    /// `--record-timeout`.
    record_timeout: Option<Duration>,
}

impl Feed {
    /// The worker's handler with its in-flight bounds, and the dead-letter
    /// task if any; `per_record`: its acknowledgements come per record
    /// ([`Handler::per_record`]: `--verdicts`, or a share group, which
    /// acknowledges records one by one).
    pub async fn start(cfg: &WorkerConfig, per_record: bool) -> error::Result<Feed> {
        let mut handler = Handler::start(
            &cfg.consume.handler,
            cfg.consume.format,
            cfg.consume.max_in_flight,
            HandlerEnv {
                slot: cfg.slot,
                group: cfg.consume.group.clone(),
                topic: cfg.topic.clone(),
                retry_topics: cfg
                    .consume
                    .verdicts
                    .as_ref()
                    .map(|v| v.retry_topics(&cfg.topic))
                    .unwrap_or_default(),
                guard_exe: "/proc/self/exe".into(),
            },
        )
        .await?;
        handler.limit_bytes(cfg.consume.max_in_flight_bytes);
        // An --exec-batch handler needs two whole batches in flight (one running,
        // one filling); other handlers start small and grow with their rate.
        let floor = match &cfg.consume.handler {
            crate::config::HandlerSpec::Batch { size, .. } => size.saturating_mul(2),
            _ => MIN_WINDOW,
        };
        handler.limit_time(cfg.consume.max_in_flight_time, floor);
        if cfg.consume.output.is_some() {
            handler.with_outputs(cfg.consume.verdicts.is_some());
        } else if per_record {
            handler.per_record(cfg.consume.verdicts.is_some());
        }
        handler.expire(Expired::new(cfg.expired.iter().copied()));
        Ok(Feed {
            handler,
            sent: 0,
            copies: start_copies(cfg),
            memory: cfg.consume.handler_memory_max.map(MemoryLimit::new),
            record_timeout: cfg.consume.record_timeout,
        })
    }

    /// Records the handler acknowledged since the worker started.
    pub fn acked(&self) -> u64 {
        self.sent.saturating_sub(self.handler.in_flight() as u64)
    }

    /// A handler failure for the worker's exit: a handler that could not be
    /// started at all is a configuration error.
    pub fn handler_failure(&self, why: String) -> WorkerError {
        if self.acked() == 0 && self.handler.could_not_start() {
            return WorkerError::Config(why);
        }
        WorkerError::Handler(format!("handler failed: {why}"))
    }

    /// A handler that holds records and acknowledged none for `limit`
    /// (--hang-timeout) has failed, however few records it holds.
    /// Every tick: a handler over one of its limits must be replaced
    /// (`--record-timeout`, `--handler-memory-max`), or ended as hung
    /// (`--hang-timeout`). The worker commits what was acknowledged and
    /// returns the error.
    pub fn check_limits(&mut self, hang: Duration) -> Option<WorkerError> {
        let now = Instant::now();
        let why = self.record_timed_out(now).or_else(|| {
            let root = self.handler.guard_pid();
            self.memory.as_mut()?.check(root, now)
        });
        match why {
            Some(why) => {
                let message = format!("{why}; the handler is replaced: what it acknowledged is committed, the rest is delivered again to the new one");
                tracing::warn!(
                    event = "handler_replaced",
                    reason = why.reason().label(),
                    "{message}"
                );
                Some(WorkerError::Replace { why, message })
            }
            None => self.hung(hang),
        }
    }

    /// `--record-timeout`: the record held longest, if past the limit.
    fn record_timed_out(&self, now: Instant) -> Option<Replacement> {
        let limit = self.record_timeout?;
        let ((partition, offset), held) = self.handler.oldest_held(now)?;
        (held >= limit).then_some(Replacement::RecordTimeout {
            partition,
            offset,
            held_ms: held.as_millis() as u64,
        })
    }

    pub fn hung(&self, limit: Duration) -> Option<WorkerError> {
        let stalled = self.handler.stalled_for(Instant::now())?;
        if stalled < limit {
            return None;
        }
        let why = self.handler.stall_message(stalled, "--hang-timeout");
        Some(WorkerError::Handler(format!("handler failed: {why}")))
    }

    /// The statistics `--metrics-addr` shows, for the partitions `owned`
    /// and those handled before (their commits and high watermarks are the
    /// caller's to fill).
    pub fn stats(&self, owned: &[i32], rebalances: u64, verdicts: VerdictCounts) -> WorkerStats {
        let (handled, latency) = self.handler.handled();
        WorkerStats {
            partitions: partition_stats(owned, handled).into_values().collect(),
            in_flight_records: self.handler.in_flight() as u64,
            in_flight_bytes: self.handler.in_flight_bytes() as u64,
            ack_latency: latency.clone(),
            rebalances,
            verdicts,
            handler_memory_bytes: self.memory.as_ref().and_then(|m| m.last),
        }
    }
}

/// `--dead-letter-topic`, `--retry-delays`: the task that writes the copies.
fn start_copies(cfg: &WorkerConfig) -> Option<Copies> {
    if cfg.consume.output.is_some() {
        // Dead-letter copies go into the output transaction instead (and
        // --retry-delays does not go with --output-topic).
        return None;
    }
    let v = cfg.consume.verdicts.as_ref()?;
    // Share groups hold a retried record for its delay: no retry topics.
    let retry: Vec<(String, Duration)> = match cfg.consume.group_protocol {
        crate::config::GroupProtocol::Share => Vec::new(),
        _ => v
            .retry_delays
            .iter()
            .map(|d| (d.topic(&cfg.topic), d.delay))
            .collect(),
    };
    if v.dead_letter_topic.is_none() && retry.is_empty() {
        return None;
    }
    Some(Copies::start(
        cfg.connect.clone(),
        Targets {
            dead_letter: v.dead_letter_topic.clone(),
            retry,
            source: cfg.topic.clone(),
            group: cfg.consume.group.clone(),
        },
    ))
}

/// Wait `pause`; false if a stop comes first (at once if it came before).
async fn pause_unless_stopped(pause: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => true,
        _ = shutdown.recv() => false,
    }
}

/// The copy task's next outcome (never without the task).
pub(super) async fn copy_outcome(dl: Option<&mut Copies>) -> Outcome {
    match dl {
        Some(d) => match d.outcomes.recv().await {
            Some(o) => o,
            None => Outcome::Fatal("the task that writes copies ended".into()),
        },
        None => std::future::pending().await,
    }
}

/// Per partition owned now or handled before: the records and bytes the
/// handler acknowledged (`handled`: partition, records, bytes); the rest of
/// each entry is the caller's to fill.
fn partition_stats(owned: &[i32], handled: &[(i32, u64, u64)]) -> BTreeMap<i32, PartitionStats> {
    let mut parts: BTreeMap<i32, PartitionStats> = owned
        .iter()
        .map(|&p| {
            (
                p,
                PartitionStats {
                    partition: p,
                    ..PartitionStats::default()
                },
            )
        })
        .collect();
    for &(p, records, bytes) in handled {
        let e = parts.entry(p).or_insert_with(|| PartitionStats {
            partition: p,
            ..PartitionStats::default()
        });
        e.records = records;
        e.bytes = bytes;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_cover_owned_and_formerly_handled_partitions() {
        let parts = partition_stats(&[0, 2], &[(2, 10, 100), (5, 3, 30)]);
        let got: Vec<(i32, u64, u64)> = parts
            .values()
            .map(|s| (s.partition, s.records, s.bytes))
            .collect();
        assert_eq!(got, vec![(0, 0, 0), (2, 10, 100), (5, 3, 30)]);
        assert!(parts.values().all(|s| s.committed.is_none()));
    }

    #[tokio::test]
    async fn no_dead_letter_task_never_yields_an_outcome() {
        let r = tokio::time::timeout(Duration::from_millis(20), copy_outcome(None)).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn an_outage_wait_ends_early_on_a_stop() {
        let (trigger, mut shutdown) = Shutdown::channel();
        assert!(pause_unless_stopped(Duration::from_millis(10), &mut shutdown).await);
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            pause_unless_stopped(Duration::from_secs(30), &mut shutdown).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        trigger.stop(crate::worker::shutdown::Stop::Leave);
        assert!(!waiting.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_outage_pause_doubles_and_resets_on_recovery() {
        let mut reporter = Reporter::open(None).unwrap();
        let mut clock = OutageClock::new("h:1");
        let now = Instant::now();
        let pauses: Vec<Duration> = (0..7)
            .map(|_| clock.failed(&mut reporter, "refused", now))
            .collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000, 10000, 10000]);
        clock.recovered(&mut reporter);
        assert_eq!(clock.failed(&mut reporter, "refused", now).as_millis(), 500);
    }
}
