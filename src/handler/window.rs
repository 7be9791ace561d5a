//! The in-flight window in time (`--max-in-flight-time`): how many records a
//! handler may hold unacknowledged so that it holds about that much work.
//!
//! A stop or a rebalance must wait until the handler has acknowledged what it
//! holds (or deliver it again). A fixed window of N records is N / rate of
//! work: 10,000 records take a handler of 1,000 records/s ten seconds, longer
//! than the shutdown timeout. So the window follows the handler's measured
//! rate: `rate x time`, between a floor and `--max-in-flight`.
//!
//! - The rate is measured over *busy* time only (while the handler holds
//!   records), so a handler that waits for records is not taken for slow.
//!   A sample ends after 100 ms of busy time or a whole window acknowledged.
//! - The window grows at most fourfold per sample (a fast handler reaches
//!   `--max-in-flight` within a few samples).
//! - A handler that acknowledges in batches (waits for K records, then
//!   acknowledges them) must get K records. When it has read everything it
//!   was given and acknowledged nothing for the whole `time`, the window
//!   doubles ([`Window::starved`]).
//!
//! Pure: every call takes `now`.

use std::time::{Duration, Instant};

/// A sample of the handler's rate ends after this much busy time.
const SAMPLE_BUSY: Duration = Duration::from_millis(100);
/// Growth per sample, at most.
const MAX_GROWTH: usize = 4;

#[derive(Debug, Clone)]
pub struct Window {
    time: Duration,
    floor: usize,
    max: usize,
    size: usize,
    /// The last event, and whether records were held since.
    last: Option<Instant>,
    busy: Duration,
    acked: u64,
    /// The last acknowledgement (or the time the handler got records while
    /// it held none), for [`Window::starved`].
    last_progress: Option<Instant>,
}

impl Window {
    /// `time`: the work a handler should hold; `floor..=max`: the bounds of
    /// the window in records (`floor` is also where it starts).
    pub fn new(time: Duration, floor: usize, max: usize) -> Self {
        let max = max.max(1);
        let floor = floor.clamp(1, max);
        Self {
            time,
            floor,
            max,
            size: floor,
            last: None,
            busy: Duration::ZERO,
            acked: 0,
            last_progress: None,
        }
    }

    /// Records the handler may hold now.
    pub fn size(&self) -> usize {
        self.size
    }

    fn pass(&mut self, now: Instant, held: usize) {
        if let Some(last) = self.last {
            if held > 0 {
                self.busy += now.saturating_duration_since(last);
            }
        }
        self.last = Some(now);
    }

    /// Records were handed over at `now`; `held` were unacknowledged before.
    pub fn handed(&mut self, now: Instant, held: usize) {
        self.pass(now, held);
        if held == 0 {
            self.last_progress = Some(now);
        }
    }

    /// `n` records were acknowledged at `now`; `held` were unacknowledged before.
    pub fn acked(&mut self, n: usize, now: Instant, held: usize) {
        self.pass(now, held);
        self.acked += n as u64;
        self.last_progress = Some(now);
        if self.busy >= SAMPLE_BUSY || self.acked >= self.size as u64 {
            let secs = self.busy.as_secs_f64();
            let want = if secs > 0.0 {
                let rate = self.acked as f64 / secs;
                (rate * self.time.as_secs_f64()).min(self.max as f64) as usize
            } else {
                self.max
            };
            self.size = want
                .min(self.size.saturating_mul(MAX_GROWTH))
                .clamp(self.floor, self.max);
            self.busy = Duration::ZERO;
            self.acked = 0;
        }
    }

    /// The handler holds `held` records, has read all of them, and has
    /// acknowledged nothing for the whole time bound: it waits for more
    /// before it acknowledges. Double the window so that it gets them.
    pub fn starved(&mut self, now: Instant, held: usize) {
        if held >= self.size
            && self
                .last_progress
                .is_some_and(|t| now.saturating_duration_since(t) >= self.time)
        {
            self.size = self.size.saturating_mul(2).min(self.max);
            self.last_progress = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A handler acknowledging `rate` records/s, always busy, for `secs`.
    fn run(w: &mut Window, t0: Instant, rate: usize, secs: u64) -> Instant {
        let mut now = t0;
        w.handed(now, 0);
        for _ in 0..secs * 100 {
            now += 10 * MS;
            let n = rate / 100;
            w.acked(n, now, w.size());
        }
        now
    }

    #[test]
    fn the_window_follows_the_rate_times_the_time_bound() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), 100, 10_000);
        assert_eq!(w.size(), 100);
        run(&mut w, t0, 2_000, 3);
        assert_eq!(w.size(), 2_000, "2,000 records/s x 1 s");
        let mut fast = Window::new(Duration::from_secs(1), 100, 10_000);
        run(&mut fast, t0, 1_000_000, 1);
        assert_eq!(fast.size(), 10_000, "capped by --max-in-flight");
        let mut slow = Window::new(Duration::from_secs(1), 100, 10_000);
        run(&mut slow, t0, 100, 3);
        assert_eq!(slow.size(), 100, "never below the floor");
    }

    #[test]
    fn idle_time_does_not_count_as_slowness() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), 10, 10_000);
        // 1,000 records/s while busy, but records come only now and then.
        let mut now = t0;
        for _ in 0..50 {
            w.handed(now, 0);
            now += 100 * MS;
            w.acked(100, now, 100);
            now += Duration::from_secs(1); // idle: nothing held
        }
        assert_eq!(w.size(), 1_000);
    }

    #[test]
    fn growth_is_gradual_and_a_slowdown_shrinks_it() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), 10, 10_000);
        w.handed(t0, 0);
        w.acked(10, t0 + MS, 10);
        assert_eq!(w.size(), 40, "at most fourfold per sample");
        let now = run(&mut w, t0 + MS, 5_000, 2);
        assert_eq!(w.size(), 5_000);
        run(&mut w, now, 500, 2);
        assert_eq!(w.size(), 500);
    }

    #[test]
    fn a_handler_that_acknowledges_in_batches_gets_its_batch() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), 100, 10_000);
        w.handed(t0, 0);
        w.starved(t0 + Duration::from_millis(500), 100);
        assert_eq!(w.size(), 100, "not yet a whole time bound");
        w.starved(t0 + Duration::from_secs(1), 100);
        assert_eq!(w.size(), 200);
        w.starved(t0 + Duration::from_millis(1500), 200);
        assert_eq!(w.size(), 200, "once per time bound");
        w.starved(t0 + Duration::from_secs(2), 200);
        assert_eq!(w.size(), 400);
        w.starved(t0 + Duration::from_secs(3), 100);
        assert_eq!(w.size(), 400, "only when the window is full");
    }
}
