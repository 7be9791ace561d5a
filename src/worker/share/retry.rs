//! `retry` in a share group, pure: how long a record waits before the
//! handler gets it again, and what happens when that wait cannot be held.
//!
//! The worker keeps a retried record (its acquisition lock stays with this
//! member) and hands it to the handler again after a pause: with
//! `--retry-delays` delivery n+1 waits the n-th delay, without it the
//! doubling pause of the other protocols (100 ms to 5 s) for up to
//! `--max-record-retries` retries. A `retry` after the last one gives up on
//! the record (a dead-letter copy if `--dead-letter-topic`, then REJECT).
//!
//! A pause that would outlive the record's lock cannot be held: when the
//! lock runs out the broker gives the record to any member at once. So the
//! worker holds it until shortly before the lock ends and RELEASEs it then:
//! the longest pause the lock allows, and a clean hand-back (the broker
//! delivers it again with its delivery count one higher). A RELEASE at once
//! would throw the whole pause away; waiting for the lock to run out would
//! do the same as the RELEASE, with the worker's acknowledgement refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::VerdictConfig;
use crate::record::Record;
use crate::worker::verdicts::RETRY_PAUSE;

/// How a share worker spaces the deliveries of a retried record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pauses {
    /// `--retry-delays`: delivery n+1 waits the n-th delay.
    Delays(Vec<Duration>),
    /// Doubling pauses, for up to `max_retries` retries.
    Doubling { max_retries: u32 },
}

/// What to do with a record the handler answered `retry` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Hand it to the handler again at this time.
    Again(Instant),
    /// The pause outlives the lock: RELEASE it at this time (shortly before
    /// the lock ends) and let the broker deliver it again.
    Release { at: Instant, pause: Duration },
    /// Retries are spent: give up on it, for this reason.
    GiveUp(String),
}

impl Pauses {
    pub(super) fn new(v: Option<&VerdictConfig>) -> Self {
        match v {
            Some(v) if !v.retry_delays.is_empty() => {
                Pauses::Delays(v.retry_delays.iter().map(|d| d.delay).collect())
            }
            v => Pauses::Doubling {
                max_retries: v.map_or(0, |v| v.max_retries),
            },
        }
    }

    /// The pause after delivery `deliveries` (1: the first) said `retry`;
    /// None: retries are spent.
    pub(super) fn pause(&self, deliveries: u32) -> Option<Duration> {
        let n = deliveries.max(1);
        match self {
            Pauses::Delays(d) => d.get(n as usize - 1).copied(),
            Pauses::Doubling { max_retries } => {
                (n <= *max_retries).then(|| RETRY_PAUSE.delay(n - 1))
            }
        }
    }

    /// Why a record whose retries are spent is given up on.
    fn spent(&self, deliveries: u32) -> String {
        let retried = deliveries.saturating_sub(1);
        match self {
            Pauses::Delays(d) => format!(
                "retried {retried} time(s) (--retry-delays: {} delay(s)), still `retry`",
                d.len()
            ),
            Pauses::Doubling { max_retries } => format!(
                "retried {retried} time(s) (--max-record-retries {max_retries}), still `retry`"
            ),
        }
    }

    /// The next step for a record whose delivery `deliveries` said `retry`
    /// at `now`, its lock ending no earlier than `lock_end`.
    pub(super) fn step(
        &self,
        deliveries: u32,
        now: Instant,
        lock_end: Instant,
        lock: Duration,
    ) -> Step {
        let Some(pause) = self.pause(deliveries) else {
            return Step::GiveUp(self.spent(deliveries));
        };
        // The acknowledgement must reach the broker before the lock ends.
        let last = lock_end.checked_sub(margin(lock)).unwrap_or(now).max(now);
        let due = now + pause;
        if due <= last {
            Step::Again(due)
        } else {
            Step::Release { at: last, pause }
        }
    }
}

/// How long before the lock's end a held record must be handed back or
/// handed on: a tenth of the lock, within 0.5 s and 5 s.
pub(super) fn margin(lock: Duration) -> Duration {
    (lock / 10).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// What waits in [`Waiting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wait {
    /// Hand the record to the handler again.
    Again(Record),
    /// RELEASE the record (its lock nears its end).
    Release,
}

/// Retried records waiting out their pause, by when.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    by_due: BTreeMap<(Instant, i32, i64), Wait>,
}

impl Waiting {
    pub(super) fn add(&mut self, at: Instant, partition: i32, offset: i64, w: Wait) {
        self.by_due.insert((at, partition, offset), w);
    }

    /// When the next one comes due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.by_due.keys().next().map(|k| k.0)
    }

    /// Those due at `now`, in the order they came due.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(i32, i64, Wait)> {
        let later = self.by_due.split_off(&(now, i32::MAX, i64::MAX));
        let due = std::mem::replace(&mut self.by_due, later);
        due.into_iter().map(|((_, p, o), w)| (p, o, w)).collect()
    }

    /// Every record waiting, to be RELEASEd (a stop).
    pub(super) fn take_all(&mut self) -> Vec<(i32, i64)> {
        std::mem::take(&mut self.by_due)
            .into_keys()
            .map(|(_, p, o)| (p, o))
            .collect()
    }

    /// The partitions with a record waiting (their share sessions must keep them).
    pub(super) fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.by_due.keys().map(|k| k.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: Duration = Duration::from_secs(30);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn delays_space_the_deliveries_and_then_give_up() {
        let p = Pauses::Delays(vec![secs(1.0), secs(2.0)]);
        let now = Instant::now();
        let end = now + LOCK;
        assert_eq!(p.step(1, now, end, LOCK), Step::Again(now + secs(1.0)));
        assert_eq!(p.step(2, now, end, LOCK), Step::Again(now + secs(2.0)));
        match p.step(3, now, end, LOCK) {
            Step::GiveUp(why) => assert!(
                why.contains("retried 2 time(s)") && why.contains("--retry-delays"),
                "{why}"
            ),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn without_delays_the_pause_doubles_up_to_max_record_retries() {
        let p = Pauses::Doubling { max_retries: 3 };
        let ms: Vec<Option<u128>> = (1..=4).map(|n| p.pause(n).map(|d| d.as_millis())).collect();
        assert_eq!(ms, [Some(100), Some(200), Some(400), None]);
        let none = Pauses::Doubling { max_retries: 0 };
        let now = Instant::now();
        match none.step(1, now, now + LOCK, LOCK) {
            Step::GiveUp(why) => assert!(why.contains("--max-record-retries 0"), "{why}"),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn a_pause_past_the_lock_releases_the_record_shortly_before_the_lock_ends() {
        let p = Pauses::Delays(vec![secs(40.0)]);
        let now = Instant::now();
        let end = now + secs(20.0);
        // 30 s lock: a 3 s margin.
        assert_eq!(
            p.step(1, now, end, LOCK),
            Step::Release {
                at: now + secs(17.0),
                pause: secs(40.0)
            }
        );
        // A pause that ends inside the margin cannot be held either.
        let p = Pauses::Delays(vec![secs(18.0)]);
        assert!(matches!(p.step(1, now, end, LOCK), Step::Release { .. }));
        let p = Pauses::Delays(vec![secs(17.0)]);
        assert_eq!(p.step(1, now, end, LOCK), Step::Again(now + secs(17.0)));
        // A lock nearly gone: RELEASE now.
        let p = Pauses::Delays(vec![secs(1.0)]);
        let gone = now + secs(1.0);
        assert_eq!(
            p.step(1, now, gone, LOCK),
            Step::Release {
                at: now,
                pause: secs(1.0)
            }
        );
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_lock_within_bounds() {
        assert_eq!(margin(secs(30.0)), secs(3.0));
        assert_eq!(margin(secs(2.0)), secs(0.5));
        assert_eq!(margin(secs(600.0)), secs(5.0));
    }

    #[test]
    fn config_picks_the_pauses() {
        assert_eq!(Pauses::new(None), Pauses::Doubling { max_retries: 0 });
        let mut v = VerdictConfig {
            dead_letter_topic: None,
            max_retries: 3,
            retry_delays: Vec::new(),
        };
        assert_eq!(Pauses::new(Some(&v)), Pauses::Doubling { max_retries: 3 });
        v.retry_delays = vec![crate::config::RetryDelay {
            delay: secs(1.0),
            label: "1s".into(),
        }];
        assert_eq!(Pauses::new(Some(&v)), Pauses::Delays(vec![secs(1.0)]));
    }

    #[test]
    fn waiting_records_come_due_in_order() {
        let mut w = Waiting::default();
        let now = Instant::now();
        w.add(now + secs(2.0), 0, 5, Wait::Release);
        w.add(now + secs(1.0), 1, 7, Wait::Release);
        assert_eq!(w.next_due(), Some(now + secs(1.0)));
        assert!(w.due(now).is_empty());
        let due = w.due(now + secs(1.5));
        assert_eq!(due, vec![(1, 7, Wait::Release)]);
        assert_eq!(w.partitions().collect::<Vec<_>>(), [0]);
        assert_eq!(w.take_all(), vec![(0, 5)]);
        assert_eq!(w.next_due(), None);
    }
}
