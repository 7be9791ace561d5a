//! Restart delays: exponential backoff with jitter, and the crash-loop budget.
//!
//! Pure: the random source is injected (a function returning a number in
//! `[0, 1)`), so tests pin the delays; time is passed in as `Instant`s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RestartBudget;

/// A source of uniform numbers in `[0, 1)`.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// The jitter of production: the thread-local RNG.
pub fn thread_rng_jitter() -> Jitter {
    use rand::Rng;
    Box::new(|| rand::thread_rng().gen::<f64>())
}

/// How long a slot waits before its next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Upper bound of the first delay (uniform in `[0, first]`): a crashed
    /// worker's partitions should be consumed again fast.
    pub first: Duration,
    /// Delays double from `first` up to this cap.
    pub cap: Duration,
    /// A worker that ran this long resets its slot's attempt count.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(50),
            cap: Duration::from_secs(15),
            healthy_after: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    /// Delay before restart number `attempt` (0-based) of one slot, given a
    /// jitter sample `u` in `[0, 1)`. Attempt 0 is uniform in `[0, first]`;
    /// attempt n > 0 is "full jitter" in `[ceil/2, ceil]` with
    /// `ceil = min(cap, first * 2^n)`, so delays keep growing but never align.
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.5
        };
        if attempt == 0 {
            return self.first.mul_f64(u);
        }
        crate::backoff::Doubling::new(self.first, self.cap).jittered(attempt, u)
    }
}

/// `--max-restarts N/WINDOW`: restarts within the sliding window.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: RestartBudget,
    recent: VecDeque<Instant>,
}

impl Budget {
    pub fn new(limit: RestartBudget) -> Self {
        Self {
            limit,
            recent: VecDeque::new(),
        }
    }

    pub fn limit(&self) -> RestartBudget {
        self.limit
    }

    /// Record one more restart at `now`. `false` when it would exceed the
    /// budget (the caller gives up instead of restarting).
    pub fn try_spend(&mut self, now: Instant) -> bool {
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= self.limit.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.limit.max as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Restarts counted in the current window.
    pub fn spent(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_fast_then_doubles_to_the_cap() {
        let p = BackoffPolicy::default();
        assert_eq!(p.delay(0, 0.0), Duration::ZERO);
        assert_eq!(p.delay(0, 1.0), Duration::from_millis(50));
        assert!(p.delay(0, 0.5) <= Duration::from_millis(50));
        // attempt 1: ceil 100ms, range [50, 100]
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.delay(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, 1.0), Duration::from_millis(400));
        // capped
        assert_eq!(p.delay(9, 1.0), Duration::from_secs(15));
        assert_eq!(p.delay(40, 1.0), Duration::from_secs(15));
        assert_eq!(p.delay(40, 0.0), Duration::from_millis(7500));
        // monotone upper bound
        let mut last = Duration::ZERO;
        for a in 0..30 {
            let d = p.delay(a, 1.0);
            assert!(d >= last, "attempt {a}: {d:?} < {last:?}");
            last = d;
        }
        // garbage jitter stays in range
        assert!(p.delay(3, f64::NAN) <= Duration::from_millis(400));
        assert!(p.delay(3, 7.0) <= Duration::from_millis(400));
    }

    #[test]
    fn budget_is_a_sliding_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = Budget::new(RestartBudget {
            max: 3,
            window: s(60),
        });
        assert!(b.try_spend(t0));
        assert!(b.try_spend(t0 + s(1)));
        assert!(b.try_spend(t0 + s(2)));
        assert!(!b.try_spend(t0 + s(3)), "4th within 60s exceeds 3/60s");
        assert_eq!(b.spent(), 3);
        // the first one ages out at t0+60
        assert!(b.try_spend(t0 + s(60)));
        assert!(!b.try_spend(t0 + s(60)));
    }

    #[test]
    fn zero_budget_never_restarts() {
        let mut b = Budget::new(RestartBudget {
            max: 0,
            window: Duration::from_secs(1),
        });
        assert!(!b.try_spend(Instant::now()));
    }
}
