//! Signals as typed events. One thread (signal-hook's iterator) turns the
//! process's signals into [`SignalEvent`]s on the supervisor's channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use signal_hook::consts::{SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook::iterator::Signals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGCHLD: one or more workers changed state; reap them.
    Child,
    /// SIGTERM: graceful stop.
    Terminate,
    /// SIGINT: graceful stop; a second one kills at once.
    Interrupt,
    /// SIGHUP: rolling restart.
    Reload,
    /// SIGTTIN: one worker more.
    Grow,
    /// SIGTTOU: one worker less.
    Shrink,
    /// SIGCONT: we were stopped (SIGSTOP, SIGTSTP) and run again.
    Continued,
}

impl SignalEvent {
    fn from_raw(sig: i32) -> Option<Self> {
        Some(match sig {
            SIGCHLD => Self::Child,
            SIGTERM => Self::Terminate,
            SIGINT => Self::Interrupt,
            SIGHUP => Self::Reload,
            SIGTTIN => Self::Grow,
            SIGTTOU => Self::Shrink,
            SIGCONT => Self::Continued,
            _ => return None,
        })
    }
}

/// Counts every delivery of one signal. The iterator below merges
/// deliveries that come before it wakes up (it only learns "TTIN came"); a
/// TTIN asks for one worker each, so those two are counted one by one.
fn count(signal: i32) -> std::io::Result<Arc<AtomicUsize>> {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    // SAFETY: the action runs in the signal handler; it only increments an
    // atomic (lock-free, async-signal-safe) and allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        signal_hook::low_level::register(signal, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })?;
    }
    Ok(n)
}

/// Catch the supervisor's signals from now on and send them, typed, through
/// `wrap` to `tx`. Call before starting any worker so no SIGCHLD is missed.
/// (Handlers replace the default actions: TTIN/TTOU no longer stop us.)
/// Every TTIN and TTOU the kernel delivers becomes one event (the kernel
/// itself keeps only one of each pending while we cannot take it).
pub fn listen<E: Send + 'static>(tx: Sender<E>, wrap: fn(SignalEvent) -> E) -> std::io::Result<()> {
    let grow = count(SIGTTIN)?;
    let shrink = count(SIGTTOU)?;
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU, SIGCONT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                let Some(ev) = SignalEvent::from_raw(raw) else {
                    continue;
                };
                let times = match ev {
                    SignalEvent::Grow => grow.swap(0, Ordering::SeqCst),
                    SignalEvent::Shrink => shrink.swap(0, Ordering::SeqCst),
                    _ => 1,
                };
                for _ in 0..times {
                    if tx.send(wrap(ev)).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
