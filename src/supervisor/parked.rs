//! Worker exits that wait for the end of the worker's report pipe (pure):
//! SIGCHLD and the report reader race, and an exit handled before the
//! report saying why the worker stopped would look like a crash.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::slot::{Exit, Pid};

/// How long a worker's exit waits for the rest of its reports (see
/// `Parked`): its pipe closes as it dies, so this is only a bound.
const REPORT_GRACE: Duration = Duration::from_millis(300);

/// Exits reaped before the worker's last reports were read: SIGCHLD and the
/// report reader race, and an exit handled before the report saying why
/// ("stdout closed") would look like a crash. Each waits for its pipe's end
/// of file, at most [`REPORT_GRACE`].
#[derive(Default)]
pub struct Parked {
    exits: Vec<ParkedExit>,
    /// Workers whose reports ended before their exit was reaped.
    closed: HashSet<Pid>,
}

/// A reaped exit waiting for its worker's reports to end.
struct ParkedExit {
    pid: Pid,
    exit: Exit,
    /// When it goes on without them.
    until: Instant,
}

impl Parked {
    /// Reaped exits: those whose reports are all read come back at once.
    pub fn reaped(&mut self, reaped: Vec<(Pid, Exit)>, now: Instant) -> Vec<(Pid, Exit)> {
        let mut ready = Vec::new();
        for (pid, exit) in reaped {
            if self.closed.remove(&pid) {
                ready.push((pid, exit));
            } else {
                self.exits.push(ParkedExit {
                    pid,
                    exit,
                    until: now + REPORT_GRACE,
                });
            }
        }
        ready
    }

    /// `pid`'s reports ended: its exit, if it was waiting.
    pub fn reports_closed(&mut self, pid: Pid) -> Option<(Pid, Exit)> {
        match self.exits.iter().position(|e| e.pid == pid) {
            Some(i) => {
                let e = self.exits.remove(i);
                Some((e.pid, e.exit))
            }
            None => {
                self.closed.insert(pid);
                None
            }
        }
    }

    /// Exits that waited long enough.
    pub fn due(&mut self, now: Instant) -> Vec<(Pid, Exit)> {
        let (due, wait): (Vec<_>, Vec<_>) = self.exits.drain(..).partition(|e| e.until <= now);
        self.exits = wait;
        due.into_iter().map(|e| (e.pid, e.exit)).collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.exits.iter().map(|e| e.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(1);

    #[test]
    fn an_exit_waits_for_its_reports_to_end() {
        let (mut p, t0) = (Parked::default(), Instant::now());
        assert!(p.reaped(vec![(7, Exit::Code(0))], t0).is_empty());
        assert_eq!(p.next_deadline(), Some(t0 + REPORT_GRACE));
        assert_eq!(p.reports_closed(8), None, "another worker's end of reports");
        assert_eq!(p.reports_closed(7), Some((7, Exit::Code(0))));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn reports_that_ended_first_let_the_exit_through_at_once() {
        let (mut p, t0) = (Parked::default(), Instant::now());
        assert_eq!(p.reports_closed(7), None);
        assert_eq!(
            p.reaped(vec![(7, Exit::Code(0)), (9, Exit::Code(1))], t0),
            vec![(7, Exit::Code(0))]
        );
        assert_eq!(p.next_deadline(), Some(t0 + REPORT_GRACE));
    }

    #[test]
    fn an_exit_whose_reports_never_end_is_due_after_the_grace() {
        let (mut p, t0) = (Parked::default(), Instant::now());
        p.reaped(vec![(7, Exit::Code(0))], t0);
        assert!(p.due(t0 + REPORT_GRACE - T).is_empty());
        assert_eq!(p.due(t0 + REPORT_GRACE), vec![(7, Exit::Code(0))]);
        assert!(p.due(t0 + REPORT_GRACE * 2).is_empty(), "handed out once");
    }
}
