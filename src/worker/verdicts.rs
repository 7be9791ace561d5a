//! `--verdicts` in a classic or consumer group, pure: what each verdict does
//! to a record, and how far each partition may be committed.
//!
//! - `ok`: the record is done.
//! - `retry`: without `--retry-delays` it goes to the handler again after a
//!   pause that doubles with each attempt, behind the records sent meanwhile
//!   (so a retried record leaves its partition's order); after
//!   `--max-record-retries` retries the next `retry` treats it as rejected.
//!   With `--retry-delays` it is copied to the retry topic of its next delay
//!   and is done once the broker has that copy: nothing waits in memory, and
//!   its partition's commit moves on. After the last delay the next `retry`
//!   treats it as rejected.
//! - `reject REASON`: with `--dead-letter-topic` the record goes there, and
//!   is done once the broker has acknowledged that copy; without one the
//!   worker stops with a message naming the record (kswarm's behaviour for a
//!   handler that cannot handle a record: restarts, then exit 1).
//!
//! A partition is committed up to its lowest record not done: a record
//! waiting for a retry or for its copy holds the commit back, so a crash at
//! any point delivers it again and loses nothing. Attempts are counted per
//! assignment for in-memory retries (a record that moves to another worker
//! starts again at its first attempt); a retry topic's record carries the
//! attempts before it in a header.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::handler::{Judged, Verdict};
use crate::record::{Lane, Record};

/// Pauses before a retried record goes back to the handler: 100 ms doubling to 5 s.
pub(super) const RETRY_PAUSE: crate::backoff::Doubling =
    crate::backoff::Doubling::new(Duration::from_millis(100), Duration::from_secs(5));

/// What a `retry` verdict does to a record of one ledger's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryPath {
    /// Hand it over again after a doubling pause, up to this many retries.
    InMemory { max_retries: u32 },
    /// `--retry-delays`: copy it to the retry topic at `next`; None: this is
    /// the last retry topic, the delays are spent. `delays`: the flag's
    /// value, for messages.
    Topics { next: Option<u8>, delays: String },
}

impl RetryPath {
    /// The path of records read from `lane` with `--retry-delays` of these labels.
    pub fn topics(lane: Lane, labels: &[String]) -> Self {
        let next = match lane {
            Lane::Main => 0,
            Lane::Retry(i) => usize::from(i) + 1,
        };
        RetryPath::Topics {
            next: (next < labels.len()).then_some(next as u8),
            delays: labels.join(","),
        }
    }
}

/// What the worker must do about a judged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Produce this copy (to the dead-letter topic or a retry topic), then
    /// call [`Ledger::copied`].
    Copy(Reroute),
    /// No dead-letter topic: stop with this message (everything before the
    /// record is committed; it is delivered again after the restart).
    Stop(String),
}

/// Where a copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    DeadLetter,
    /// The retry topic of `--retry-delays`' delay at this index.
    Retry(u8),
}

/// A record on its way to the dead-letter topic or a retry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reroute {
    pub record: Record,
    pub reason: String,
    /// Deliveries to the handler, in every topic so far.
    pub attempts: u32,
    pub to: Dest,
}

#[derive(Debug)]
struct Held {
    record: Record,
    /// Deliveries to the handler so far.
    attempts: u32,
}

/// One assignment's records of one topic between the handler and the commit.
#[derive(Debug)]
pub struct Ledger {
    retry: RetryPath,
    dead_letter: bool,
    /// The handler's command, for messages.
    command: String,
    /// Per partition: offsets sent and not done, and the lowest offset ever sent.
    open: BTreeMap<i32, (BTreeSet<i64>, i64)>,
    /// Per partition: the highest offset done.
    done: BTreeMap<i32, i64>,
    held: HashMap<(i32, i64), Held>,
    /// Records waiting to go to the handler again, by when.
    retries: BTreeMap<(Instant, i32, i64), Record>,
}

impl Ledger {
    pub fn new(retry: RetryPath, dead_letter: bool, command: &str) -> Self {
        Ledger {
            retry,
            dead_letter,
            command: command.to_string(),
            open: BTreeMap::new(),
            done: BTreeMap::new(),
            held: HashMap::new(),
            retries: BTreeMap::new(),
        }
    }

    /// The record went to the handler (again, for a retry).
    pub fn sent(&mut self, r: &Record) {
        let key = (r.partition, r.offset);
        match self.held.get_mut(&key) {
            Some(h) => h.attempts += 1,
            None => {
                self.held.insert(
                    key,
                    Held {
                        record: r.clone(),
                        attempts: 1 + crate::worker::copies::attempts_before(r),
                    },
                );
            }
        }
        let (open, first) = self
            .open
            .entry(r.partition)
            .or_insert_with(|| (BTreeSet::new(), r.offset));
        open.insert(r.offset);
        *first = (*first).min(r.offset);
    }

    /// The handler's verdict on a record it was sent.
    pub fn judged(&mut self, j: Judged, now: Instant) -> Option<Action> {
        let key = (j.partition, j.offset);
        let attempts = self.held.get(&key).map_or(1, |h| h.attempts);
        let reason = match j.verdict {
            Verdict::Ok => {
                self.finish(key);
                return None;
            }
            Verdict::Retry => match &self.retry {
                RetryPath::InMemory { max_retries } if attempts <= *max_retries => {
                    if let Some(h) = self.held.get(&key) {
                        let due = now + RETRY_PAUSE.delay(attempts - 1);
                        self.retries
                            .insert((due, j.partition, j.offset), h.record.clone());
                    }
                    return None;
                }
                RetryPath::InMemory { max_retries } => format!(
                    "retried {} time(s) (--max-record-retries {max_retries}), still `retry`",
                    attempts - 1,
                ),
                RetryPath::Topics {
                    next: Some(next), ..
                } => {
                    return Some(Action::Copy(Reroute {
                        record: self.held.get(&key)?.record.clone(),
                        reason: "retry".into(),
                        attempts,
                        to: Dest::Retry(*next),
                    }))
                }
                RetryPath::Topics { next: None, delays } => format!(
                    "retried {} time(s) (--retry-delays {delays}), still `retry`",
                    attempts - 1,
                ),
            },
            Verdict::Reject(r) if r.is_empty() => "rejected by the handler".to_string(),
            Verdict::Reject(r) => r,
        };
        let record = self.held.get(&key)?.record.clone();
        if self.dead_letter {
            return Some(Action::Copy(Reroute {
                record,
                reason,
                attempts,
                to: Dest::DeadLetter,
            }));
        }
        Some(Action::Stop(poison_message(
            &self.command,
            &record,
            &reason,
            attempts,
        )))
    }

    /// The broker acknowledged the record's copy (dead-letter or retry).
    pub fn copied(&mut self, partition: i32, offset: i64) {
        self.finish((partition, offset));
    }

    /// A record of this ledger is done. One it does not hold (a verdict or
    /// a copy that outlived its generation) changes nothing: only records
    /// sent in this assignment may move its commits.
    fn finish(&mut self, key: (i32, i64)) {
        if self.held.remove(&key).is_none() {
            return;
        }
        if let Some((open, _)) = self.open.get_mut(&key.0) {
            open.remove(&key.1);
        }
        let d = self.done.entry(key.0).or_insert(key.1);
        *d = (*d).max(key.1);
    }

    /// Everything of `partition` up to the returned offset is done (None:
    /// nothing yet).
    pub fn done_through(&self, partition: i32) -> Option<i64> {
        let done = *self.done.get(&partition)?;
        match self.open.get(&partition) {
            Some((open, first)) => match open.first() {
                Some(&lowest) if lowest <= *first => None,
                Some(&lowest) => Some((lowest - 1).min(done)),
                None => Some(done),
            },
            None => Some(done),
        }
    }

    /// Records whose retry is due now, in the order they came due.
    pub fn due_retries(&mut self, now: Instant) -> Vec<Record> {
        let later = self.retries.split_off(&(now, i32::MAX, i64::MAX));
        let due = std::mem::replace(&mut self.retries, later);
        due.into_values().collect()
    }

    /// When the next retry comes due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.keys().next().map(|k| k.0)
    }

    /// Records sent and not done (retries waiting and dead-letter copies in
    /// flight included).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.held.len()
    }
}

/// The message of a worker that stops on a record (no dead-letter topic):
/// where it is, its first bytes, why, and the ways out.
pub fn poison_message(command: &str, r: &Record, reason: &str, attempts: u32) -> String {
    format!(
        "--exec '{command}' gave up on the record at partition {} offset {} ({reason}; \
         {attempts} delivery attempt(s)); its value begins {}. Without --dead-letter-topic \
         kswarm skips nothing: every record before it is committed and this one is delivered \
         again after the restart. Fix the handler or the record, or add --dead-letter-topic \
         TOPIC to set such records aside",
        r.partition,
        r.offset,
        first_bytes(r.value.as_deref())
    )
}

/// Up to 64 bytes of a value, for a message.
pub fn first_bytes(value: Option<&[u8]>) -> String {
    match value {
        None => "(null value)".to_string(),
        Some(v) => {
            let cut = &v[..v.len().min(64)];
            let more = if v.len() > 64 { "..." } else { "" };
            format!("{:?}{more}", String::from_utf8_lossy(cut))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: i32, o: i64) -> Record {
        Record {
            partition: p,
            offset: o,
            timestamp_ms: 0,
            key: None,
            value: Some(bytes::Bytes::from(format!("value-{o}"))),
            headers: vec![],
            delivery_count: None,
            lane: crate::record::Lane::Main,
        }
    }

    fn mem(max_retries: u32) -> RetryPath {
        RetryPath::InMemory { max_retries }
    }

    fn j(p: i32, o: i64, v: Verdict) -> Judged {
        Judged {
            lane: crate::record::Lane::Main,
            partition: p,
            offset: o,
            verdict: v,
            results: Vec::new(),
        }
    }

    #[test]
    fn ok_records_commit_in_order() {
        let mut l = Ledger::new(mem(3), true, "h");
        let now = Instant::now();
        for o in 10..13 {
            l.sent(&rec(0, o));
        }
        assert_eq!(l.done_through(0), None);
        assert_eq!(l.judged(j(0, 10, Verdict::Ok), now), None);
        assert_eq!(l.done_through(0), Some(10));
        l.judged(j(0, 11, Verdict::Ok), now);
        l.judged(j(0, 12, Verdict::Ok), now);
        assert_eq!(l.done_through(0), Some(12));
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn a_retry_holds_the_commit_back_until_it_is_done() {
        let mut l = Ledger::new(mem(3), true, "h");
        let now = Instant::now();
        for o in 0..3 {
            l.sent(&rec(0, o));
        }
        l.judged(j(0, 0, Verdict::Ok), now);
        assert_eq!(l.judged(j(0, 1, Verdict::Retry), now), None);
        l.judged(j(0, 2, Verdict::Ok), now);
        assert_eq!(l.done_through(0), Some(0), "1 is not done");
        assert!(l.due_retries(now).is_empty(), "not due at once");
        assert_eq!(l.next_retry(), Some(now + Duration::from_millis(100)));
        let again = l.due_retries(now + Duration::from_millis(100));
        assert_eq!(again, vec![rec(0, 1)]);
        l.sent(&again[0]);
        l.judged(j(0, 1, Verdict::Ok), now);
        assert_eq!(l.done_through(0), Some(2));
    }

    #[test]
    fn the_first_record_open_means_nothing_is_done() {
        let mut l = Ledger::new(mem(3), true, "h");
        let now = Instant::now();
        l.sent(&rec(0, 5));
        l.sent(&rec(0, 6));
        l.judged(j(0, 5, Verdict::Retry), now);
        l.judged(j(0, 6, Verdict::Ok), now);
        assert_eq!(l.done_through(0), None);
    }

    #[test]
    fn retries_run_out_into_the_dead_letter_topic() {
        let mut l = Ledger::new(mem(2), true, "h");
        let mut now = Instant::now();
        l.sent(&rec(1, 7));
        for attempt in 1..=2 {
            assert_eq!(l.judged(j(1, 7, Verdict::Retry), now), None, "{attempt}");
            now += Duration::from_secs(10);
            let r = l.due_retries(now);
            assert_eq!(r.len(), 1);
            l.sent(&r[0]);
        }
        let Some(Action::Copy(d)) = l.judged(j(1, 7, Verdict::Retry), now) else {
            panic!("third retry is one too many")
        };
        assert_eq!(d.attempts, 3);
        assert!(d.reason.contains("retried 2 time(s)"), "{}", d.reason);
        assert_eq!(l.done_through(1), None, "not done before the broker has it");
        l.copied(1, 7);
        assert_eq!(l.done_through(1), Some(7));
    }

    #[test]
    fn zero_retries_dead_letters_the_first_retry() {
        let mut l = Ledger::new(mem(0), true, "h");
        l.sent(&rec(0, 0));
        assert!(matches!(
            l.judged(j(0, 0, Verdict::Retry), Instant::now()),
            Some(Action::Copy(_))
        ));
    }

    #[test]
    fn a_reject_without_dead_letter_topic_stops_naming_the_record() {
        let mut l = Ledger::new(mem(3), false, "./h.sh");
        l.sent(&rec(3, 42));
        let Some(Action::Stop(m)) =
            l.judged(j(3, 42, Verdict::Reject("bad json".into())), Instant::now())
        else {
            panic!()
        };
        for want in [
            "partition 3 offset 42",
            "bad json",
            "\"value-42\"",
            "--dead-letter-topic",
            "./h.sh",
        ] {
            assert!(m.contains(want), "{want}: {m}");
        }
        let Some(Action::Copy(d)) = Ledger::new(mem(3), true, "h").tap_reject() else {
            panic!()
        };
        assert_eq!(d.reason, "rejected by the handler");
    }

    impl Ledger {
        fn tap_reject(mut self) -> Option<Action> {
            self.sent(&rec(0, 0));
            self.judged(j(0, 0, Verdict::Reject(String::new())), Instant::now())
        }
    }

    #[test]
    fn a_record_of_another_generation_moves_nothing() {
        let mut l = Ledger::new(mem(3), true, "h");
        l.copied(0, 50);
        l.judged(j(0, 51, Verdict::Ok), Instant::now());
        assert_eq!(l.done_through(0), None);
    }

    #[test]
    fn partitions_are_apart() {
        let mut l = Ledger::new(mem(3), true, "h");
        let now = Instant::now();
        l.sent(&rec(0, 0));
        l.sent(&rec(1, 0));
        l.sent(&rec(0, 1));
        l.judged(j(0, 0, Verdict::Retry), now);
        l.judged(j(1, 0, Verdict::Ok), now);
        l.judged(j(0, 1, Verdict::Ok), now);
        assert_eq!(l.done_through(0), None);
        assert_eq!(l.done_through(1), Some(0));
    }

    #[test]
    fn first_bytes_are_cut_and_quoted() {
        assert_eq!(first_bytes(None), "(null value)");
        assert_eq!(first_bytes(Some(b"a\nb")), "\"a\\nb\"");
        let long = vec![b'y'; 100];
        assert!(first_bytes(Some(&long)).ends_with("\"..."));
    }

    fn topics(lane: Lane) -> RetryPath {
        RetryPath::topics(lane, &["1s".to_string(), "3s".to_string()])
    }

    #[test]
    fn with_retry_topics_a_retry_is_a_copy_and_holds_nothing_in_memory() {
        let mut l = Ledger::new(topics(Lane::Main), true, "h");
        let now = Instant::now();
        for o in 0..3 {
            l.sent(&rec(0, o));
        }
        let Some(Action::Copy(c)) = l.judged(j(0, 1, Verdict::Retry), now) else {
            panic!("a retry is copied to the first retry topic")
        };
        assert_eq!(
            (c.to, c.attempts, c.reason.as_str()),
            (Dest::Retry(0), 1, "retry")
        );
        assert_eq!(l.next_retry(), None, "nothing waits in memory");
        l.judged(j(0, 0, Verdict::Ok), now);
        l.judged(j(0, 2, Verdict::Ok), now);
        assert_eq!(l.done_through(0), Some(0), "1 waits for its copy");
        l.copied(0, 1);
        assert_eq!(
            l.done_through(0),
            Some(2),
            "the copy done, the partition moves on"
        );
    }

    #[test]
    fn the_last_retry_topic_dead_letters_with_the_attempts_of_every_topic() {
        let mut l = Ledger::new(topics(Lane::Retry(1)), true, "h");
        let mut r = rec(0, 4);
        r.lane = Lane::Retry(1);
        r.headers = vec![(
            crate::worker::copies::HEADER_ATTEMPTS.into(),
            Some(bytes::Bytes::from_static(b"2")),
        )];
        l.sent(&r);
        let Some(Action::Copy(c)) = l.judged(j(0, 4, Verdict::Retry), Instant::now()) else {
            panic!()
        };
        assert_eq!(c.to, Dest::DeadLetter);
        assert_eq!(c.attempts, 3, "two deliveries before, this one");
        assert!(c.reason.contains("--retry-delays 1s,3s"), "{}", c.reason);
        // Without a dead-letter topic the worker stops on it, naming it.
        let mut l = Ledger::new(topics(Lane::Retry(1)), false, "./h");
        l.sent(&r);
        let Some(Action::Stop(m)) = l.judged(j(0, 4, Verdict::Retry), Instant::now()) else {
            panic!()
        };
        assert!(
            m.contains("offset 4") && m.contains("--retry-delays"),
            "{m}"
        );
    }

    #[test]
    fn a_middle_retry_topic_copies_on_to_the_next() {
        let mut l = Ledger::new(topics(Lane::Retry(0)), false, "h");
        let mut r = rec(1, 9);
        r.lane = Lane::Retry(0);
        l.sent(&r);
        let Some(Action::Copy(c)) = l.judged(j(1, 9, Verdict::Retry), Instant::now()) else {
            panic!()
        };
        assert_eq!(c.to, Dest::Retry(1));
        // A reject in a retry topic goes nowhere but the stop, as in the topic.
        l.sent(&rec(1, 10));
        assert!(matches!(
            l.judged(j(1, 10, Verdict::Reject("bad".into())), Instant::now()),
            Some(Action::Stop(_))
        ));
    }
}
