//! One slot: a stable worker number (0..N) whose process changes with every
//! restart. Its state carries the data that only that state has (a waiting
//! slot's start time and what its next worker inherits; a running worker's
//! pid and silence clock; a member's place in the group; a stopping worker's
//! deadline), and it changes only through the methods here. Pure: every
//! call takes `now`.
//!
//! ```text
//! Waiting{until, inherit} --start--> Joining(worker) --joined--> Member(worker, membership)
//!      ^                               |      ^-------revoked------'        |
//!      |  (exit: a delay)              '--- exit / hang / stop -------------'
//!      '--------------------- Stopping{worker, deadline, reason} --exit--> Waiting | Retired
//! ```

use std::fmt;
use std::time::{Duration, Instant};

pub type Pid = i32;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// A worker's place in the consumer group, from its last `Joined` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub member_id: String,
    pub generation: i32,
    pub partitions: Vec<i32>,
}

/// What a slot's next worker inherits from the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    /// A member in good standing that died: carry on as it (same member id
    /// and generation, no rebalance).
    TakeOver(Membership),
    /// A member id without a generation to carry on with (the worker died
    /// mid-join, left, or belonged to a crashed supervisor): join under it.
    Rejoin(String),
}

/// Why the supervisor asked a worker to stop; decides what follows its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// HUP: start its replacement at once, no backoff, no budget.
    Rolling,
    /// TTOU: the slot is retired.
    Shrink,
    /// No report for --hang-timeout: killed; counts as a crash.
    Hung,
    /// TERM/INT or a spent budget: the slot is retired.
    Shutdown,
}

/// A live worker process and what it has told the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub pid: Pid,
    pub since: Instant,
    /// Its last report: its silence clock.
    pub last_report: Instant,
    /// When its silence first passed its limit: it is killed only if no
    /// report comes within [`SILENCE_CONFIRM`] more (reports of a time the
    /// supervisor did not run may still be on their way).
    pub suspected: Option<Instant>,
    /// The reason it gave in its `Stopping` report.
    pub stopping: Option<crate::report::StopCause>,
    /// Whether it has acknowledged a record.
    pub progressed: bool,
    /// Since when it cannot reach the brokers (its `Outage` reports), and
    /// the last error it gave.
    pub outage: Option<Outage>,
    /// It ends to replace its handler, which passed a limit (its
    /// `Replacing` report): a replacement, not a crash.
    pub replacing: Option<crate::handler::limits::Replacement>,
}

/// A broker outage a worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// Its first `Outage` report.
    pub since: Instant,
    /// The error of its latest one.
    pub error: String,
}

/// See [`Worker::suspected`].
pub const SILENCE_CONFIRM: Duration = Duration::from_millis(500);

impl Worker {
    fn new(pid: Pid, now: Instant) -> Self {
        Self {
            pid,
            since: now,
            last_report: now,
            suspected: None,
            stopping: None,
            progressed: false,
            outage: None,
            replacing: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting to (re)start at `until`; its next worker inherits `inherit`.
    Waiting {
        until: Instant,
        inherit: Option<Inherit>,
    },
    /// A worker that is not (or no longer) a group member: connecting,
    /// joining, rejoining after a rebalance.
    Joining(Worker),
    /// A worker that is a group member.
    Member(Worker, Membership),
    /// Asked to stop (SIGTERM or SIGUSR1, SIGKILL once `killed`); SIGKILL at
    /// `deadline`. `inherit`: what the slot's next worker takes over (the
    /// member of a hung worker or of one replaced by a rolling restart).
    Stopping {
        worker: Worker,
        deadline: Instant,
        reason: StopReason,
        killed: bool,
        inherit: Option<Inherit>,
    },
    /// Not in use (TTOU, shutdown).
    Retired,
}

/// How a `Joined` report changed a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// It became a member.
    First,
    /// A member before: its generation or partitions changed from `old`.
    Changed(Membership),
    /// A member before, in the same place.
    Same,
    /// A worker handing over (rolling restart) joined a new generation: its
    /// successor takes that one over.
    HandOver,
    /// Nothing to do (a stopping worker's late report).
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub state: SlotState,
    /// Restart attempts since the last healthy run (drives the backoff).
    pub attempt: u32,
    /// Restarts of this slot since kswarm started.
    pub restarts: u64,
    /// Workers of this slot in a row that ended without acknowledging any
    /// record: a crash loop, however slowly it turns.
    pub fruitless: u32,
    pub last_exit: Option<Exit>,
    /// The message of the last `Fatal` report of this slot.
    pub last_fatal: Option<String>,
    /// The slot's group member id: its current worker's, from its reports,
    /// or until it reports one, the one it was started with (see [`Inherit`]).
    pub member_id: Option<String>,
    /// Records acknowledged, from the last `Alive` report.
    pub records: u64,
    /// Restarts by reason (the metrics' `reason` label).
    pub restart_reasons: std::collections::BTreeMap<crate::metrics::RestartReason, u64>,
    /// The latest statistics of its worker (`--metrics-addr`).
    pub stats: Option<crate::metrics::WorkerStats>,
    /// Its last restart: why and when (`/healthz`, `status`).
    pub last_restart: Option<(crate::metrics::RestartReason, Instant)>,
    /// Handler replacements for memory in a row (reset by a worker that
    /// ends for another reason): a handler that leaks, reported as such.
    pub memory_in_a_row: u32,
}

impl Slot {
    pub fn new(now: Instant) -> Self {
        Self {
            state: SlotState::Waiting {
                until: now,
                inherit: None,
            },
            attempt: 0,
            restarts: 0,
            fruitless: 0,
            last_exit: None,
            last_fatal: None,
            member_id: None,
            records: 0,
            restart_reasons: Default::default(),
            stats: None,
            last_restart: None,
            memory_in_a_row: 0,
        }
    }

    pub fn worker(&self) -> Option<&Worker> {
        match &self.state {
            SlotState::Joining(w) | SlotState::Member(w, _) => Some(w),
            SlotState::Stopping { worker, .. } => Some(worker),
            SlotState::Waiting { .. } | SlotState::Retired => None,
        }
    }

    pub fn worker_mut(&mut self) -> Option<&mut Worker> {
        match &mut self.state {
            SlotState::Joining(w) | SlotState::Member(w, _) => Some(w),
            SlotState::Stopping { worker, .. } => Some(worker),
            SlotState::Waiting { .. } | SlotState::Retired => None,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        self.worker().map(|w| w.pid)
    }

    pub fn membership(&self) -> Option<&Membership> {
        match &self.state {
            SlotState::Member(_, m) => Some(m),
            _ => None,
        }
    }

    /// Whether a worker of this slot is running and not asked to stop.
    pub fn is_active(&self) -> bool {
        matches!(self.state, SlotState::Joining(_) | SlotState::Member(..))
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.state, SlotState::Waiting { .. })
    }

    /// Wait to start at `until`; the next worker inherits `inherit`.
    pub fn wait(&mut self, until: Instant, inherit: Option<Inherit>) {
        self.state = SlotState::Waiting { until, inherit };
    }

    pub fn retire(&mut self) {
        self.state = SlotState::Retired;
    }

    /// What the next worker inherits (taken: asked once per start).
    pub fn take_inherit(&mut self) -> Option<Inherit> {
        match &mut self.state {
            SlotState::Waiting { inherit, .. } => inherit.take(),
            _ => None,
        }
    }

    /// A worker process was started.
    pub fn started(&mut self, pid: Pid, now: Instant) {
        self.state = SlotState::Joining(Worker::new(pid, now));
    }

    /// Any report of the current worker: it is not silent.
    pub fn heard(&mut self, now: Instant) {
        if let SlotState::Joining(w) | SlotState::Member(w, _) = &mut self.state {
            w.last_report = now;
        }
        if let Some(w) = self.worker_mut() {
            w.suspected = None;
        }
    }

    /// The supervisor did not run for a while: restart the silence clock.
    pub fn resumed(&mut self, now: Instant) {
        if let Some(w) = self.worker_mut() {
            w.suspected = None;
        }
        self.heard(now);
    }

    /// The worker joined (or rejoined) the group as `member`.
    pub fn joined(&mut self, member: Membership) -> Joined {
        self.member_id = Some(member.member_id.clone());
        let state = std::mem::replace(&mut self.state, SlotState::Retired);
        let (state, change) = match state {
            SlotState::Joining(w) => (SlotState::Member(w, member), Joined::First),
            SlotState::Member(w, old) => {
                let change =
                    if old.partitions != member.partitions || old.generation != member.generation {
                        Joined::Changed(old)
                    } else {
                        Joined::Same
                    };
                (SlotState::Member(w, member), change)
            }
            SlotState::Stopping {
                worker,
                deadline,
                reason: StopReason::Rolling,
                killed,
                inherit: Some(Inherit::TakeOver(_)),
            } => (
                SlotState::Stopping {
                    worker,
                    deadline,
                    reason: StopReason::Rolling,
                    killed,
                    inherit: Some(Inherit::TakeOver(member)),
                },
                Joined::HandOver,
            ),
            other => (other, Joined::Ignored),
        };
        self.state = state;
        change
    }

    /// Its partitions were revoked: a member no longer, until it rejoins.
    /// Whether it was one.
    pub fn revoked(&mut self) -> bool {
        let state = std::mem::replace(&mut self.state, SlotState::Retired);
        let (state, was) = match state {
            SlotState::Member(w, _) => (SlotState::Joining(w), true),
            other => (other, false),
        };
        self.state = state;
        was
    }

    /// Ask the running worker to stop (or note it was killed, `killed`);
    /// its pid, to signal. A member's next worker takes it over when the
    /// stop is a hand-over (`Rolling`) or the worker hung (`Hung`). A worker
    /// already stopping is left as it is (see [`Slot::restop`]); a waiting
    /// slot is retired.
    pub fn stop(&mut self, reason: StopReason, deadline: Instant, killed: bool) -> Option<Pid> {
        let state = std::mem::replace(&mut self.state, SlotState::Retired);
        let (state, pid) = match state {
            SlotState::Joining(worker) => {
                let pid = worker.pid;
                (
                    SlotState::Stopping {
                        worker,
                        deadline,
                        reason,
                        killed,
                        inherit: None,
                    },
                    Some(pid),
                )
            }
            SlotState::Member(worker, member) => {
                let pid = worker.pid;
                let inherit = matches!(reason, StopReason::Rolling | StopReason::Hung)
                    .then(|| Inherit::TakeOver(member));
                (
                    SlotState::Stopping {
                        worker,
                        deadline,
                        reason,
                        killed,
                        inherit,
                    },
                    Some(pid),
                )
            }
            stopping @ SlotState::Stopping { .. } => (stopping, None),
            SlotState::Waiting { .. } => (SlotState::Retired, None),
            SlotState::Retired => (SlotState::Retired, None),
        };
        self.state = state;
        pid
    }

    /// A worker already stopping now stops for `reason` (what follows its
    /// exit changes: a TTOU after a HUP retires the slot, say).
    pub fn restop(&mut self, reason: StopReason) {
        if let SlotState::Stopping { reason: r, .. } = &mut self.state {
            *r = reason;
        }
    }

    /// A stopping worker is SIGKILLed now; its pid if it was not already.
    pub fn kill(&mut self) -> Option<Pid> {
        match &mut self.state {
            SlotState::Stopping { worker, killed, .. } if !*killed => {
                *killed = true;
                Some(worker.pid)
            }
            _ => None,
        }
    }

    /// When a silent worker counts as hung: `hang` after its last report as
    /// a member, `join` (if longer) while it is not one; a moment more once
    /// suspected.
    pub fn silence_deadline(&self, hang: Duration, join: Duration) -> Option<Instant> {
        let (w, limit) = match &self.state {
            SlotState::Member(w, _) => (w, hang),
            SlotState::Joining(w) => (w, hang.max(join)),
            _ => return None,
        };
        Some(match w.suspected {
            Some(t) => t + SILENCE_CONFIRM,
            None => w.last_report + limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(generation: i32, partitions: &[i32]) -> Membership {
        Membership {
            member_id: "m".into(),
            generation,
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn a_slot_goes_through_its_states_by_its_methods() {
        let t0 = Instant::now();
        let mut s = Slot::new(t0);
        assert!(s.is_waiting() && s.pid().is_none());
        s.started(7, t0);
        assert_eq!((s.pid(), s.is_active()), (Some(7), true));
        assert_eq!(s.joined(member(1, &[0])), Joined::First);
        assert_eq!(s.member_id.as_deref(), Some("m"));
        assert_eq!(s.joined(member(1, &[0])), Joined::Same);
        assert_eq!(
            s.joined(member(2, &[0, 1])),
            Joined::Changed(member(1, &[0]))
        );
        assert!(s.revoked());
        assert!(s.membership().is_none() && s.is_active());
        assert!(!s.revoked(), "not a member any more");
        s.joined(member(3, &[1]));
        // A rolling restart keeps the member for the next worker.
        assert_eq!(s.stop(StopReason::Rolling, t0, false), Some(7));
        assert!(matches!(
            &s.state,
            SlotState::Stopping { inherit: Some(Inherit::TakeOver(m)), .. } if m.generation == 3
        ));
        // ...and follows it to a new generation while it hands over.
        assert_eq!(s.joined(member(4, &[1])), Joined::HandOver);
        assert_eq!(
            s.stop(StopReason::Shutdown, t0, false),
            None,
            "already stopping"
        );
        assert_eq!(s.kill(), Some(7));
        assert_eq!(s.kill(), None);
    }

    #[test]
    fn a_stop_of_a_stopping_worker_changes_nothing_and_a_shutdown_keeps_no_member() {
        let t0 = Instant::now();
        let mut s = Slot::new(t0);
        s.started(7, t0);
        s.joined(member(1, &[0]));
        s.stop(StopReason::Hung, t0, true);
        assert_eq!(s.stop(StopReason::Shutdown, t0, false), None);
        assert!(matches!(
            s.state,
            SlotState::Stopping {
                reason: StopReason::Hung,
                ..
            }
        ));
        s.restop(StopReason::Shutdown);
        assert!(matches!(
            s.state,
            SlotState::Stopping {
                reason: StopReason::Shutdown,
                ..
            }
        ));
        let mut s = Slot::new(t0);
        s.started(8, t0);
        s.joined(member(1, &[0]));
        s.stop(StopReason::Shutdown, t0, false);
        assert!(matches!(s.state, SlotState::Stopping { inherit: None, .. }));
        let mut w = Slot::new(t0);
        assert_eq!(w.stop(StopReason::Shrink, t0, false), None);
        assert_eq!(
            w.state,
            SlotState::Retired,
            "a waiting slot retires at once"
        );
    }

    #[test]
    fn silence_is_measured_from_the_last_report_and_confirmed() {
        let t0 = Instant::now();
        let (hang, join) = (Duration::from_secs(5), Duration::from_secs(20));
        let mut s = Slot::new(t0);
        assert_eq!(s.silence_deadline(hang, join), None);
        s.started(7, t0);
        assert_eq!(s.silence_deadline(hang, join), Some(t0 + join), "joining");
        s.joined(member(1, &[0]));
        let t1 = t0 + Duration::from_secs(3);
        s.heard(t1);
        assert_eq!(s.silence_deadline(hang, join), Some(t1 + hang));
        s.worker_mut().unwrap().suspected = Some(t1 + hang);
        assert_eq!(
            s.silence_deadline(hang, join),
            Some(t1 + hang + SILENCE_CONFIRM)
        );
        s.heard(t1 + hang);
        assert_eq!(s.worker().unwrap().suspected, None);
    }
}
