//! What the share worker knows of each record it has acquired: the
//! broker's delivery count, kswarm's own deliveries of it since (held
//! retries), and when the broker's acquisition lock ends.
//!
//! The lock (`group.share.record.lock.duration.ms`, 30 s by default) comes
//! with every ShareFetch answer (AcquisitionLockTimeoutMs). It starts when
//! the broker acquires the records, somewhere between the request going
//! out and its answer coming back: decisions that must end inside the lock
//! (holding a retry) count from the request, the warning that a handler
//! outlived it counts from the answer.
//!
//! kswarm cannot renew a lock (RENEW, KIP-1222, is an acknowledgement type
//! of ShareFetch/ShareAcknowledge v2, which the kafka-protocol crate kswarm
//! uses does not encode), so a handler must finish within the lock.

use std::time::{Duration, Instant};

/// The broker's default record lock, for an answer that names none.
pub(super) const DEFAULT_LOCK: Duration = Duration::from_secs(30);

/// When one ShareFetch acquired its records, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LockWindow {
    /// The request went out (the lock started no earlier).
    pub(super) sent: Instant,
    /// Its answer came back (the lock started no later).
    pub(super) received: Instant,
    pub(super) lock: Duration,
}

impl LockWindow {
    /// The window of a ShareFetch sent at `sent`, answered at `received`
    /// with AcquisitionLockTimeoutMs `lock_ms`.
    pub(super) fn new(sent: Instant, received: Instant, lock_ms: i32) -> Self {
        let lock = if lock_ms > 0 {
            Duration::from_millis(lock_ms as u64)
        } else {
            DEFAULT_LOCK
        };
        LockWindow {
            sent,
            received,
            lock,
        }
    }
}

/// One acquired record not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lease {
    /// The broker's delivery count of this acquisition.
    pub(super) count: i16,
    /// kswarm's own deliveries to the handler since (held retries).
    pub(super) again: u32,
    pub(super) window: LockWindow,
    /// The handler was told it outlived the lock.
    pub(super) warned: bool,
}

impl Lease {
    pub(super) fn new(count: i16, window: LockWindow) -> Self {
        Lease {
            count,
            again: 0,
            window,
            warned: false,
        }
    }

    /// Deliveries to a handler so far, the current one included: the
    /// broker's count plus kswarm's held retries. (A lower bound when a
    /// record comes back from the broker after earlier held retries: those
    /// were counted by the worker that held them.)
    pub(super) fn deliveries(&self) -> u32 {
        self.count.max(1) as u32 + self.again
    }

    /// The lock ends no earlier than this: the end to plan within.
    pub(super) fn lock_end(&self) -> Instant {
        self.window.sent + self.window.lock
    }

    /// At `now`, the lock has surely run out: for how long the record has
    /// been ours (counted from the answer that brought it), if so.
    pub(super) fn outlived(&self, now: Instant) -> Option<Duration> {
        let held = now.saturating_duration_since(self.window.received);
        (held > self.window.lock).then_some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(lock_ms: i32) -> LockWindow {
        let sent = Instant::now();
        LockWindow::new(sent, sent + Duration::from_millis(400), lock_ms)
    }

    #[test]
    fn an_answer_without_a_lock_time_gets_the_broker_default() {
        assert_eq!(window(0).lock, DEFAULT_LOCK);
        assert_eq!(window(-1).lock, DEFAULT_LOCK);
        assert_eq!(window(15_000).lock, Duration::from_secs(15));
    }

    #[test]
    fn deliveries_add_held_retries_to_the_broker_count() {
        let mut l = Lease::new(1, window(30_000));
        assert_eq!(l.deliveries(), 1);
        l.again = 2;
        assert_eq!(l.deliveries(), 3);
        let l = Lease::new(0, window(30_000));
        assert_eq!(l.deliveries(), 1, "a count of 0 is a first delivery");
        let l = Lease::new(4, window(30_000));
        assert_eq!(l.deliveries(), 4);
    }

    #[test]
    fn the_lock_ends_from_the_request_and_is_outlived_from_the_answer() {
        let w = window(10_000);
        let l = Lease::new(1, w);
        assert_eq!(l.lock_end(), w.sent + Duration::from_secs(10));
        // Past the end counted from the request, not from the answer.
        assert_eq!(l.outlived(w.sent + Duration::from_millis(10_200)), None);
        let at = w.received + Duration::from_millis(10_001);
        assert_eq!(l.outlived(at), Some(Duration::from_millis(10_001)));
    }
}
