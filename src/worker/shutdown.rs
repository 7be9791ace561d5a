//! A worker's stop, as one small type passed down (tokio's mini-redis
//! `shutdown.rs` is the model): `is_shutdown()` asks, `recv().await` waits.
//!
//! Two kinds of stop: TERM or INT leave the group (drain, commit, leave);
//! USR1 hands the member over, what the supervisor sends for a rolling
//! restart and at shutdown: drain and commit the same way, but stay in the
//! group; the slot's next worker takes the member over without a rebalance,
//! or at shutdown the supervisor removes all members in one LeaveGroup. A
//! TERM or INT after a USR1 still leaves.

use tokio::sync::watch;

/// How the worker was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// TERM or INT: leave the group.
    Leave,
    /// USR1: stay in the group for the supervisor to hand on.
    HandOver,
}

/// The receiving side: every part of the worker that must notice a stop
/// holds a clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<Option<Stop>>,
}

/// The sending side: the signal watcher (or a test).
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<Option<Stop>>,
}

impl Shutdown {
    /// A stop that only `Trigger` sets (no signal handlers): for tests.
    pub fn channel() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(None);
        (Trigger { tx }, Shutdown { rx })
    }

    /// TERM, INT and USR1 of this process set the stop.
    pub fn from_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let (trigger, shutdown) = Shutdown::channel();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        tokio::spawn(async move {
            loop {
                let stop = tokio::select! {
                    _ = term.recv() => Stop::Leave,
                    _ = int.recv() => Stop::Leave,
                    _ = usr1.recv() => Stop::HandOver,
                };
                trigger.stop(stop);
            }
        });
        Ok(shutdown)
    }

    /// Whether a stop was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Whether the member stays in the group for the supervisor to hand on
    /// (the stop came from USR1, and no TERM or INT since).
    pub fn hands_over(&self) -> bool {
        *self.rx.borrow() == Some(Stop::HandOver)
    }

    /// Resolves once a stop is asked for (at once if it was); never if the
    /// trigger is gone without one.
    pub async fn recv(&mut self) {
        if self.is_shutdown() {
            return;
        }
        while self.rx.changed().await.is_ok() {
            if self.is_shutdown() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

impl Trigger {
    /// Ask for a stop. A hand-over does not undo a leave asked for before.
    pub fn stop(&self, stop: Stop) {
        // Every signal wakes the waiters, as before (one that changes
        // nothing changes nothing they look at).
        self.tx.send_modify(|now| {
            *now = match (*now, stop) {
                (Some(Stop::Leave), Stop::HandOver) => Some(Stop::Leave),
                _ => Some(stop),
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_wakes_every_clone() {
        let (trigger, mut a) = Shutdown::channel();
        let mut b = a.clone();
        assert!(!a.is_shutdown());
        let waiter = tokio::spawn(async move {
            b.recv().await;
            b.hands_over()
        });
        tokio::task::yield_now().await;
        trigger.stop(Stop::Leave);
        a.recv().await;
        assert!(a.is_shutdown());
        assert!(!waiter.await.unwrap());
    }

    #[test]
    fn a_leave_after_a_hand_over_leaves() {
        let (trigger, s) = Shutdown::channel();
        trigger.stop(Stop::HandOver);
        assert!(s.is_shutdown() && s.hands_over());
        trigger.stop(Stop::Leave);
        assert!(!s.hands_over());
    }

    #[test]
    fn a_hand_over_after_a_leave_still_leaves() {
        let (trigger, s) = Shutdown::channel();
        trigger.stop(Stop::Leave);
        trigger.stop(Stop::HandOver);
        assert!(s.is_shutdown() && !s.hands_over());
    }

    #[tokio::test]
    async fn recv_never_fires_without_a_stop() {
        let (trigger, mut s) = Shutdown::channel();
        drop(trigger);
        let r = tokio::time::timeout(std::time::Duration::from_millis(20), s.recv()).await;
        assert!(r.is_err());
        assert!(!s.is_shutdown());
    }
}
