//! Handler limits (`--handler-memory-max`, `--record-timeout`): what the
//! worker measures of its handler and when it replaces it.
//!
//! # Who measures, and why the worker
//! The worker samples its own handler: it knows the handler's guard pid
//! (every handler process descends from it, see [`super::guard`]), and it is
//! the one that can replace the handler the graceful way (commit what was
//! acknowledged, leave the rest to be delivered again). The supervisor would
//! have to find the guard below each worker and then ask the worker anyway.
//! The cost is one `/proc` scan and one `smaps_rollup` read per handler
//! process per [`SAMPLE_EVERY`], on the worker's own thread.
//!
//! # What is measured
//! PSS (`Pss:` of `/proc/PID/smaps_rollup`), summed over the guard and all
//! its descendants: shared pages count once across the tree, so a handler
//! that forks workers sharing a big read-only image is not charged N times
//! (RSS would be). The guard itself is a few hundred KiB.
//!
//! # What a record timeout leads to
//! The first time a record is held past `--record-timeout`, the handler is
//! replaced and the record delivered again. The supervisor counts timeouts
//! per record (a worker's count ends with it); a record that timed out
//! twice is *expired* for every later worker ([`Expired`]): it is not given
//! to a handler again but judged `reject timeout` (the dead-letter topic
//! with `--verdicts` and `--dead-letter-topic`; a share group's REJECT), or
//! refused as a poison record (kswarm stops on it, as for a crash).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::RestartReason;
use crate::proctree;

/// How often the handler's memory is sampled at most.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Records kept expired at most (a bound on the supervisor's bookkeeping).
pub const MAX_EXPIRED: usize = 10_000;

/// Why a worker replaces its handler (its `Replacing` report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "snake_case")]
pub enum Replacement {
    /// The handler's process tree used `used` bytes (PSS), over `max`.
    Memory { used: u64, max: u64 },
    /// The handler held the record at (partition, offset) for `held_ms`,
    /// past `--record-timeout`.
    RecordTimeout {
        partition: i32,
        offset: i64,
        held_ms: u64,
    },
}

impl Replacement {
    pub fn reason(&self) -> RestartReason {
        match self {
            Replacement::Memory { .. } => RestartReason::Memory,
            Replacement::RecordTimeout { .. } => RestartReason::RecordTimeout,
        }
    }

    /// The record that timed out, if that is the reason.
    pub fn record(&self) -> Option<(i32, i64)> {
        match self {
            Replacement::RecordTimeout {
                partition, offset, ..
            } => Some((*partition, *offset)),
            Replacement::Memory { .. } => None,
        }
    }
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replacement::Memory { used, max } => write!(
                f,
                "the handler's processes use {} (PSS), over --handler-memory-max {}",
                show_bytes(*used),
                show_bytes(*max)
            ),
            Replacement::RecordTimeout {
                partition,
                offset,
                held_ms,
            } => write!(
                f,
                "the handler held the record at partition {partition} offset {offset} for \
                 {:.1}s, past --record-timeout",
                *held_ms as f64 / 1000.0
            ),
        }
    }
}

/// `157286400` -> `150.0 MiB`.
pub fn show_bytes(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The `Pss:` figure of a `/proc/PID/smaps_rollup` text, in bytes.
pub fn pss_from_rollup(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n * 1024),
        Some(_) => None,
    }
}

/// PSS of `root` and all its descendants now, bytes. None: `root` is gone.
/// A process that ends mid-scan adds nothing.
pub fn tree_pss(root: i32) -> Option<u64> {
    let own = std::fs::read_to_string(format!("/proc/{root}/smaps_rollup")).ok()?;
    let mut total = pss_from_rollup(&own).unwrap_or(0);
    let table = proctree::snapshot();
    for pid in proctree::descendants(&table, root) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            total += pss_from_rollup(&text).unwrap_or(0);
        }
    }
    Some(total)
}

/// `--handler-memory-max`: samples at most every [`SAMPLE_EVERY`].
#[derive(Debug)]
pub struct MemoryLimit {
    max: u64,
    next_at: Option<Instant>,
    /// The last sample, bytes.
    pub last: Option<u64>,
}

impl MemoryLimit {
    pub fn new(max: u64) -> Self {
        Self {
            max,
            next_at: None,
            last: None,
        }
    }

    /// Sample the tree under `root` if one is due; Some: over the limit.
    pub fn check(&mut self, root: Option<i32>, now: Instant) -> Option<Replacement> {
        if self.next_at.is_some_and(|t| now < t) {
            return None;
        }
        self.next_at = Some(now + SAMPLE_EVERY);
        self.last = root.and_then(tree_pss);
        self.judge(self.last?)
    }

    /// A sample of `used` bytes: over the limit or not.
    pub fn judge(&self, used: u64) -> Option<Replacement> {
        (used > self.max).then_some(Replacement::Memory {
            used,
            max: self.max,
        })
    }
}

/// Records that timed out twice: never given to a handler again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired(BTreeSet<(i32, i64)>);

impl Expired {
    pub fn new(records: impl IntoIterator<Item = (i32, i64)>) -> Self {
        Self(records.into_iter().collect())
    }

    pub fn contains(&self, partition: i32, offset: i64) -> bool {
        !self.0.is_empty() && self.0.contains(&(partition, offset))
    }
}

/// The supervisor's count of record timeouts, fleet-wide (a record may move
/// to another slot at a rebalance).
#[derive(Debug, Clone, Default)]
pub struct TimeoutBook {
    counts: std::collections::BTreeMap<(i32, i64), u32>,
}

/// After a timeout is counted: what becomes of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// First time: delivered again, to the new handler.
    Again,
    /// Second time (or later): a poison record from now on.
    Poison,
}

impl TimeoutBook {
    /// One more timeout of the record at (partition, offset).
    pub fn timed_out(&mut self, partition: i32, offset: i64) -> Fate {
        if self.counts.len() >= MAX_EXPIRED && !self.counts.contains_key(&(partition, offset)) {
            // Forget the lowest: old offsets are committed past long ago.
            let first = self.counts.keys().next().copied();
            if let Some(k) = first {
                self.counts.remove(&k);
            }
        }
        let n = self.counts.entry((partition, offset)).or_default();
        *n += 1;
        if *n >= 2 {
            Fate::Poison
        } else {
            Fate::Again
        }
    }

    /// How many times the record timed out.
    pub fn count(&self, partition: i32, offset: i64) -> u32 {
        self.counts.get(&(partition, offset)).copied().unwrap_or(0)
    }

    /// The records every new worker must not give to its handler.
    pub fn expired(&self) -> Vec<(i32, i64)> {
        self.counts
            .iter()
            .filter(|(_, n)| **n >= 2)
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "55d0c0a6e000-7ffd2b9ff000 ---p 00000000 00:00 0                  [rollup]
Rss:               12345 kB
Pss:                4096 kB
Pss_Anon:           3000 kB
Pss_File:           1096 kB
Shared_Clean:        100 kB
";

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        assert_eq!(pss_from_rollup(ROLLUP), Some(4096 * 1024));
        assert_eq!(pss_from_rollup("Rss: 1 kB\n"), None, "no Pss line");
        assert_eq!(pss_from_rollup("Pss: lots kB\n"), None);
        assert_eq!(pss_from_rollup("Pss: 3 MB\n"), None, "an unknown unit");
        assert_eq!(pss_from_rollup("Pss_Anon: 3 kB\nPss: 2 kB"), Some(2048));
    }

    #[test]
    fn this_process_tree_has_a_pss() {
        let me = std::process::id() as i32;
        let pss = tree_pss(me).expect("our own smaps_rollup is readable");
        assert!(pss > 100 * 1024, "{pss}");
        assert_eq!(tree_pss(i32::MAX), None, "no such process");
    }

    #[test]
    fn memory_is_sampled_at_a_bounded_rate_and_judged_against_the_limit() {
        let me = Some(std::process::id() as i32);
        let mut m = MemoryLimit::new(1);
        let t0 = Instant::now();
        assert!(matches!(
            m.check(me, t0),
            Some(Replacement::Memory { max: 1, .. })
        ));
        assert!(m.last.is_some());
        m.last = None;
        assert_eq!(m.check(me, t0 + SAMPLE_EVERY / 2), None, "not due yet");
        assert_eq!(m.last, None, "nothing was read");
        assert!(m.check(me, t0 + SAMPLE_EVERY).is_some(), "due again");
        let m = MemoryLimit::new(150 << 20);
        assert_eq!(m.judge(150 << 20), None, "at the limit is not over it");
        let over = m.judge((150 << 20) + 1).unwrap();
        assert_eq!(over.reason(), RestartReason::Memory);
        assert!(
            over.to_string()
                .contains("over --handler-memory-max 150.0 MiB"),
            "{over}"
        );
        assert_eq!(MemoryLimit::new(1).check(None, t0), None, "no handler");
    }

    #[test]
    fn a_record_is_poison_the_second_time_it_times_out() {
        let mut b = TimeoutBook::default();
        assert_eq!(b.timed_out(0, 7), Fate::Again);
        assert_eq!(b.timed_out(1, 7), Fate::Again, "another partition");
        assert!(b.expired().is_empty());
        assert_eq!(b.timed_out(0, 7), Fate::Poison);
        assert_eq!(b.count(0, 7), 2);
        assert_eq!(b.expired(), vec![(0, 7)]);
        let e = Expired::new(b.expired());
        assert!(e.contains(0, 7) && !e.contains(1, 7) && !e.contains(0, 8));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut b = TimeoutBook::default();
        for o in 0..(MAX_EXPIRED as i64 + 5) {
            b.timed_out(0, o);
        }
        assert_eq!(b.counts.len(), MAX_EXPIRED);
        assert_eq!(b.count(0, 0), 0, "the lowest went first");
    }

    #[test]
    fn replacements_name_their_figures() {
        let r = Replacement::RecordTimeout {
            partition: 2,
            offset: 41,
            held_ms: 3500,
        };
        assert_eq!(r.reason(), RestartReason::RecordTimeout);
        assert_eq!(r.record(), Some((2, 41)));
        assert_eq!(
            r.to_string(),
            "the handler held the record at partition 2 offset 41 for 3.5s, past --record-timeout"
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""limit":"record_timeout""#), "{json}");
        assert_eq!(serde_json::from_str::<Replacement>(&json).unwrap(), r);
    }
}
