//! `--retry-delays` in the partitioned worker: the retry topics it reads
//! beside its topic.
//!
//! A retry topic's partition belongs to the member that owns the topic's
//! partition of the same number (the copy task writes a retry copy there),
//! so retry partitions follow the group's assignment without joining the
//! group under another subscription: the member reads them with its own
//! committed offsets and commits them with its generation, like its own
//! partitions. A retry partition is held while its first record is not
//! due: its records wait here (up to [`HOLD`] per retry topic, after which
//! its fetch task waits too), and only what is due goes to the handler,
//! ahead of new records. Nothing sleeps and nothing spins: the generation
//! loop wakes when the next record comes due.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StartError;
use crate::config::StartFrom;
use crate::group::Member;
use crate::record::{Lane, Record};
use crate::worker::cluster::Cluster;
use crate::worker::copies::due_ms;
use crate::worker::fetch::{fetch_loop, FetchSettings, Fetched, FETCH_QUEUE};
use crate::worker::positions::Positions;
use crate::worker::verdicts::{Ledger, RetryPath};

/// Records of one retry topic held while not due; past it, its fetch task
/// waits (fetched answers queue in its channel, then it stops asking).
const HOLD: usize = 10_000;

/// One retry topic, for the worker's whole life.
pub(super) struct RetryTopic {
    pub index: u8,
    pub delay: Duration,
    pub cluster: Cluster,
    /// As the worker's `carried`, for this topic's partitions.
    pub carried: BTreeMap<i32, i64>,
}

impl RetryTopic {
    /// The partitions of this topic that go with `owned` partitions of the
    /// topic: the same numbers, where this topic has them.
    pub fn partitions_for(&self, owned: &[i32]) -> Vec<i32> {
        let count = self.cluster.partition_count() as i32;
        owned.iter().copied().filter(|&p| p < count).collect()
    }

    /// Where this topic's partitions that go with `owned` start: the
    /// group's committed offsets, what this worker carries, else the
    /// earliest offset (a retry topic is always read from its start).
    pub async fn positions(
        &mut self,
        member: &mut Member,
        owned: &[i32],
    ) -> Result<Positions, StartError> {
        let parts = self.partitions_for(owned);
        let topic = self.cluster.topic().to_string();
        let broker: BTreeMap<i32, Option<i64>> = member
            .committed_in(&topic, &parts)
            .await
            .map_err(StartError::Group)?
            .into_iter()
            .collect();
        let (mut positions, from) = Positions::plan(&parts, &broker, &self.carried);
        if !from.is_empty() {
            let starts = self
                .cluster
                .start_offsets(&from, StartFrom::Earliest)
                .await
                .map_err(StartError::Cluster)?;
            for (p, start) in starts {
                positions.start_at(p, start);
            }
        }
        Ok(positions)
    }

    /// Start reading this topic for one generation.
    pub fn start(
        &self,
        positions: Positions,
        ledger: Ledger,
        mut settings: FetchSettings,
    ) -> LaneRun {
        let (tx, rx) = mpsc::channel::<Fetched>(FETCH_QUEUE);
        settings.from = StartFrom::Earliest;
        let starts: Vec<(i32, i64)> = positions.starts().collect();
        // None of this topic's partitions goes with ours: nothing to read.
        let closed = starts.is_empty();
        let fetcher = if closed {
            tokio::spawn(async {})
        } else {
            tokio::spawn(fetch_loop(
                self.cluster.detached(),
                starts,
                tx,
                settings,
                HashMap::new(),
            ))
        };
        LaneRun {
            closed,
            index: self.index,
            delay: self.delay,
            positions,
            ledger,
            rx,
            fetcher,
            waiting: BTreeMap::new(),
            held: 0,
        }
    }
}

/// The ledger of a retry topic's records: `retry` goes on to the next
/// delay's topic, after the last one to the dead-letter topic.
pub(super) fn ledger(index: u8, labels: &[String], dead_letter: bool, command: &str) -> Ledger {
    Ledger::new(
        RetryPath::topics(Lane::Retry(index), labels),
        dead_letter,
        command,
    )
}

/// One retry topic during one generation.
pub(super) struct LaneRun {
    index: u8,
    delay: Duration,
    pub positions: Positions,
    pub ledger: Ledger,
    rx: mpsc::Receiver<Fetched>,
    fetcher: JoinHandle<()>,
    /// Per partition: fetched records not handed over yet, in offset order,
    /// with when each is due (ms since the Unix epoch).
    waiting: BTreeMap<i32, VecDeque<(i64, Record)>>,
    held: usize,
    /// Its fetch task ended (or never ran): nothing more comes.
    closed: bool,
}

impl Drop for LaneRun {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

impl LaneRun {
    pub fn stop_fetching(&mut self) {
        self.fetcher.abort();
    }

    /// A fetched answer of this topic: its records wait until due.
    /// Err: fetching cannot go on.
    pub fn fetched(&mut self, fetched: Option<Fetched>) -> Result<(), String> {
        match fetched {
            Some(Fetched::Records(records)) => {
                for mut r in records {
                    r.lane = Lane::Retry(self.index);
                    let due = due_ms(&r, self.delay);
                    self.waiting
                        .entry(r.partition)
                        .or_default()
                        .push_back((due, r));
                    self.held += 1;
                }
                Ok(())
            }
            Some(Fetched::Fatal(why)) => Err(why),
            None => {
                self.closed = true;
                Ok(())
            }
        }
    }

    /// The records due at `now_ms`, each partition's in offset order: a
    /// partition's first record not due holds the rest of it back.
    pub fn take_due(&mut self, now_ms: i64, out: &mut Vec<Record>) {
        for queue in self.waiting.values_mut() {
            while queue.front().is_some_and(|(due, _)| *due <= now_ms) {
                let (_, r) = queue.pop_front().expect("checked above");
                out.push(r);
                self.held -= 1;
            }
        }
    }

    /// When the first record held comes due (ms since the Unix epoch).
    pub fn next_due(&self) -> Option<i64> {
        self.waiting
            .values()
            .filter_map(|q| q.front())
            .map(|f| f.0)
            .min()
    }

    fn has_room(&self) -> bool {
        !self.closed && self.held < HOLD
    }
}

/// The next answer of any retry topic with room to hold it, and whose it is.
async fn next_fetched(lanes: &mut [LaneRun]) -> (usize, Option<Fetched>) {
    std::future::poll_fn(|cx| {
        for (i, lane) in lanes.iter_mut().enumerate() {
            if !lane.has_room() {
                continue;
            }
            if let Poll::Ready(f) = lane.rx.poll_recv(cx) {
                return Poll::Ready((i, f));
            }
        }
        Poll::Pending
    })
    .await
}

/// What the retry topics call for next.
pub(super) enum LaneEvent {
    /// An answer of the retry topic at this index.
    Fetched(usize, Option<Fetched>),
    /// A held record came due.
    Due,
}

/// The next answer of a retry topic with room for it, or the moment the
/// first held record comes due (never, without retry topics).
pub(super) async fn next_event(lanes: &mut [LaneRun]) -> LaneEvent {
    let due = lanes.iter().filter_map(LaneRun::next_due).min();
    tokio::select! {
        (i, f) = next_fetched(lanes) => LaneEvent::Fetched(i, f),
        _ = sleep_until_due(due) => LaneEvent::Due,
    }
}

async fn sleep_until_due(due: Option<i64>) {
    match due {
        Some(due) => {
            let wait = (due - now_ms()).max(0) as u64;
            tokio::time::sleep_until((Instant::now() + Duration::from_millis(wait)).into()).await
        }
        None => std::future::pending().await,
    }
}

pub(super) fn now_ms() -> i64 {
    crate::produce::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(p: i32, o: i64, due: i64) -> Record {
        Record {
            partition: p,
            offset: o,
            timestamp_ms: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![(
                crate::worker::copies::HEADER_DUE.into(),
                Some(Bytes::from(due.to_string())),
            )],
            delivery_count: None,
            lane: Lane::Main,
        }
    }

    fn lane() -> LaneRun {
        let (_tx, rx) = mpsc::channel(1);
        LaneRun {
            index: 1,
            delay: Duration::from_secs(1),
            positions: Positions::default(),
            ledger: ledger(1, &["1s".into(), "3s".into()], true, "h"),
            rx,
            fetcher: tokio::spawn(async {}),
            waiting: BTreeMap::new(),
            held: 0,
            closed: false,
        }
    }

    #[tokio::test]
    async fn a_partition_is_held_until_its_first_record_is_due() {
        let mut l = lane();
        let batch = vec![rec(0, 10, 100), rec(0, 11, 50), rec(1, 5, 80)];
        l.fetched(Some(Fetched::Records(batch))).unwrap();
        assert_eq!(l.next_due(), Some(80));
        let mut out = Vec::new();
        l.take_due(79, &mut out);
        assert!(out.is_empty());
        l.take_due(80, &mut out);
        let got: Vec<(i32, i64)> = out.iter().map(|r| (r.partition, r.offset)).collect();
        // Partition 0's offset 11 is due, but 10 before it is not: held.
        assert_eq!(got, [(1, 5)]);
        assert_eq!(out[0].lane, Lane::Retry(1), "tagged with its retry topic");
        out.clear();
        l.take_due(100, &mut out);
        let got: Vec<i64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(got, [10, 11], "in offset order");
        assert_eq!(l.next_due(), None);
        assert_eq!(l.held, 0);
    }

    #[tokio::test]
    async fn a_full_lane_is_not_read_from() {
        let mut l = lane();
        let far = now_ms() + 3_600_000;
        let batch: Vec<Record> = (0..HOLD as i64).map(|o| rec(0, o, far)).collect();
        l.fetched(Some(Fetched::Records(batch))).unwrap();
        assert!(!l.has_room());
        let mut lanes = vec![l];
        let r = tokio::time::timeout(Duration::from_millis(50), next_fetched(&mut lanes)).await;
        assert!(r.is_err(), "a lane holding {HOLD} records waits");
    }

    #[test]
    fn the_last_retry_topic_has_no_next() {
        let labels = ["1s".to_string(), "3s".to_string()];
        assert_eq!(
            RetryPath::topics(Lane::Main, &labels),
            RetryPath::Topics {
                next: Some(0),
                delays: "1s,3s".into()
            }
        );
        assert!(matches!(
            RetryPath::topics(Lane::Retry(0), &labels),
            RetryPath::Topics { next: Some(1), .. }
        ));
        assert!(matches!(
            RetryPath::topics(Lane::Retry(1), &labels),
            RetryPath::Topics { next: None, .. }
        ));
    }
}
