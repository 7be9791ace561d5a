//! The share worker's verdicts and locks: what `ok`, `retry` and `reject`
//! do to an acquired record ([`super::retry`] decides the pauses), records
//! whose retry pause is over, and the warning for a handler that holds a
//! record past the broker's acquisition lock.

use std::time::{Duration, Instant};

use tracing::warn;

use super::retry::{Step, Wait};
use super::ShareWorker;
use crate::handler::{Judged, Verdict};
use crate::wire::share::AckType;
use crate::worker::verdicts::{Dest, Reroute};

impl ShareWorker {
    /// The handler's verdict on one record: ok -> ACCEPT; retry -> held and
    /// handed to the handler again after a pause (RELEASEd shortly before
    /// its lock ends if the pause outlives it) until the retries are spent;
    /// reject, or retries spent -> a dead-letter copy first if
    /// --dead-letter-topic, then REJECT (the broker archives it).
    pub(super) fn judged(&mut self, j: Judged) {
        let Judged {
            partition,
            offset,
            verdict,
            ..
        } = j;
        if let Some(q) = self.handed.get_mut(&partition) {
            if let Some(i) = q.iter().position(|&o| o == offset) {
                q.remove(i);
            }
        }
        let key = (partition, offset);
        let record = self.held.remove(&key);
        let lease = self.leases.get(&key).cloned();
        let deliveries = lease.as_ref().map_or(1, |l| l.deliveries());
        let reason = match verdict {
            Verdict::Ok => return self.ack(partition, offset, AckType::Accept),
            Verdict::Retry if self.stop.is_some() => {
                // No more handing out: it goes back to the pool.
                self.retried += 1;
                return self.ack(partition, offset, AckType::Release);
            }
            Verdict::Retry => {
                let now = Instant::now();
                let step = match &lease {
                    Some(l) => self
                        .pauses
                        .step(deliveries, now, l.lock_end(), l.window.lock),
                    None => self
                        .pauses
                        .step(deliveries, now, now, super::lease::DEFAULT_LOCK),
                };
                match step {
                    Step::GiveUp(why) => why,
                    Step::Again(at) => {
                        self.retried += 1;
                        // Not kept (no --verdicts?): it cannot go again; back to the pool.
                        let w = record.map_or(Wait::Release, Wait::Again);
                        self.waiting.add(at, partition, offset, w);
                        return;
                    }
                    Step::Release { at, pause } => {
                        self.retried += 1;
                        let lock = lease.map_or(super::lease::DEFAULT_LOCK, |l| l.window.lock);
                        self.tell_cut(partition, offset, pause, lock);
                        self.waiting.add(at, partition, offset, Wait::Release);
                        return;
                    }
                }
            }
            Verdict::Reject(r) if r.is_empty() => "rejected by the handler".to_string(),
            Verdict::Reject(r) => r,
        };
        self.give_up(partition, offset, record, reason, deliveries);
    }

    /// A record rejected, or out of retries: a dead-letter copy first if
    /// --dead-letter-topic (REJECTed once the broker has it), else REJECT.
    fn give_up(
        &mut self,
        partition: i32,
        offset: i64,
        record: Option<crate::record::Record>,
        reason: String,
        deliveries: u32,
    ) {
        self.rejected += 1;
        match (self.feed.copies.as_ref(), record) {
            (Some(dl), Some(record)) => {
                self.leases.remove(&(partition, offset));
                self.copies.insert((partition, offset));
                dl.send(Reroute {
                    record,
                    reason,
                    attempts: deliveries,
                    to: Dest::DeadLetter,
                });
            }
            _ => {
                warn!(
                    slot = self.core.cfg.slot,
                    partition,
                    offset,
                    "record rejected ({reason}) after {deliveries} delivery(ies): REJECTed, the broker archives it"
                );
                self.ack(partition, offset, AckType::Reject);
            }
        }
    }

    /// Once per worker: a retry pause outlives the record lock.
    fn tell_cut(&mut self, partition: i32, offset: i64, pause: Duration, lock: Duration) {
        if std::mem::replace(&mut self.cut_told, true) {
            return;
        }
        warn!(
            slot = self.core.cfg.slot,
            partition,
            offset,
            "a retry pause of {pause:?} would outlive the record's acquisition lock ({:?}, the share group's share.record.lock.duration.ms): \
             the worker holds the record until shortly before its lock ends and RELEASEs it then, and the broker delivers it again \
             (delivery count one higher, to any worker). To wait whole pauses, raise the lock (kafka-configs.sh --alter --entity-type groups \
             --entity-name {} --add-config share.record.lock.duration.ms=MS, at most the broker's group.share.max.record.lock.duration.ms) \
             or shorten --retry-delays. (Said once per worker.)",
            lock,
            self.core.cfg.consume.group
        );
    }

    /// Records whose retry pause is over: to the handler again (before
    /// newer records), or RELEASEd.
    pub(super) fn retries_due(&mut self) {
        let due = self.waiting.due(Instant::now());
        for (p, o, w) in due.into_iter().rev() {
            match w {
                Wait::Again(mut r) => {
                    let lease = self.leases.get_mut(&(p, o));
                    if let Some(l) = lease {
                        l.again += 1;
                        r.delivery_count = Some(l.deliveries().min(u16::MAX as u32) as u16);
                    }
                    self.queue.push_front(r);
                }
                Wait::Release => self.ack(p, o, AckType::Release),
            }
        }
    }

    /// Every second: name the records the handler has held past their lock
    /// (once each), the lock and the way out. kswarm cannot renew a lock
    /// (RENEW needs ShareAcknowledge v2; see `lease`).
    pub(super) fn check_locks(&mut self) {
        let now = Instant::now();
        let mut first = None;
        let mut more = 0usize;
        for (p, q) in &self.handed {
            for o in q {
                let Some(l) = self.leases.get_mut(&(*p, *o)) else {
                    continue;
                };
                if l.warned {
                    continue;
                }
                if let Some(held) = l.outlived(now) {
                    l.warned = true;
                    match first {
                        None => first = Some((*p, *o, held, l.window.lock)),
                        Some(_) => more += 1,
                    }
                }
            }
        }
        if let Some((partition, offset, held, lock)) = first {
            self.tell_outlived(partition, offset, held, lock, more);
        }
    }

    /// A fetch brought `key` again while this worker still holds it (the
    /// handler has it): its lock ran out. Tell it now, unless told already;
    /// true if the handler holds it.
    pub(super) fn reacquired(&mut self, key: (i32, i64)) -> bool {
        let Some(old) = self.leases.get(&key) else {
            return false;
        };
        let handed = self.handed.get(&key.0).is_some_and(|q| q.contains(&key.1));
        if handed && !old.warned {
            let held = Instant::now().saturating_duration_since(old.window.received);
            let lock = old.window.lock;
            self.tell_outlived(key.0, key.1, held, lock, 0);
        }
        handed
    }

    /// The warning for records the handler held past their lock.
    fn tell_outlived(
        &self,
        partition: i32,
        offset: i64,
        held: Duration,
        lock: Duration,
        more: usize,
    ) {
        let others = if more > 0 {
            format!(" (and {more} more record(s) just now)")
        } else {
            String::new()
        };
        warn!(
            event = "share_lock_outlived",
            slot = self.core.cfg.slot,
            partition,
            offset,
            "the handler has held record {partition}@{offset} for {:.1} s, past the broker's acquisition lock of {:.1} s{others}: \
             the broker has taken it back and delivers it again (to any worker), and this worker's acknowledgement of it will be refused. \
             Keep the handler's work per record under the lock, or raise the lock: the share group's share.record.lock.duration.ms \
             (kafka-configs.sh --alter --entity-type groups --entity-name {} --add-config share.record.lock.duration.ms=MS; at most the \
             broker's group.share.max.record.lock.duration.ms). kswarm cannot renew a lock (RENEW, KIP-1222) yet.",
            held.as_secs_f64(),
            lock.as_secs_f64(),
            self.core.cfg.consume.group
        );
    }
}
