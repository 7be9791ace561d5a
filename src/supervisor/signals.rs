//! Signals as typed events. One thread (signal-hook's iterator) turns the
//! process's signals into [`SignalEvent`]s on the supervisor's channel.

use std::sync::mpsc::Sender;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
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
            _ => return None,
        })
    }
}

/// Catch the supervisor's signals from now on and send them, typed, through
/// `wrap` to `tx`. Call before starting any worker so no SIGCHLD is missed.
/// (Handlers replace the default actions: TTIN/TTOU no longer stop us.)
pub fn listen<E: Send + 'static>(tx: Sender<E>, wrap: fn(SignalEvent) -> E) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                if let Some(ev) = SignalEvent::from_raw(raw) {
                    if tx.send(wrap(ev)).is_err() {
                        break;
                    }
                }
            }
        })?;
    Ok(())
}
