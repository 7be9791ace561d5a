//! Exponential backoff, the one formula behind every retry pause in kswarm:
//! restarts of crashed workers (with jitter, `supervisor::backoff`), group
//! requests (`group::coordinator::Pacer`), fetches, `--exec-batch` retries
//! and waiting out broker outages. Pure: the jitter sample is passed in.

use std::time::Duration;

/// `first`, doubling with every attempt, never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    pub first: Duration,
    pub cap: Duration,
}

impl Doubling {
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap }
    }

    /// The pause before try number `attempt + 1` (attempt 0: `first`).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first
            .checked_mul(1u32 << attempt.min(24))
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// [`Doubling::delay`] with "equal jitter": uniform in `[d/2, d]` for the
    /// sample `u` in `[0, 1)`, so that many retrying processes drift apart.
    pub fn jittered(&self, attempt: u32, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.5
        };
        self.delay(attempt).mul_f64(0.5 + 0.5 * u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_to_the_cap() {
        let d = Doubling::new(Duration::from_millis(100), Duration::from_secs(5));
        let ms: Vec<u128> = (0..9).map(|a| d.delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(d.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let d = Doubling::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(d.jittered(2, 0.0), Duration::from_millis(200));
        assert_eq!(d.jittered(2, 0.999_999).as_millis(), 399);
        assert_eq!(d.jittered(2, f64::NAN), Duration::from_millis(300));
    }
}
