//! The fleet of slots: what the supervisor should do, decided from plain
//! data. Pure: no processes, no clock (every call takes `now`), no randomness
//! (the backoff jitter is injected). `mod.rs` feeds it events (a worker was
//! started, reported, exited; a signal; a timer) and carries out the
//! [`Action`]s it returns.
//!
//! One slot's lifecycle lives in [`super::slot`]; what becomes of a dead
//! worker's group member in [`super::handover`]; restart delays and the
//! crash-loop budget in [`super::backoff`]. Here: the decisions that concern
//! the fleet as a whole: restarts and when to give up, the modes (a rolling
//! restart, TTIN/TTOU one step at a time, the shutdown and its outcome), and
//! what sd_notify is told.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::backoff::{BackoffPolicy, Budget, Jitter};
use super::handover;
pub use super::slot::{Exit, Inherit, Joined, Membership, Pid, Slot, SlotState, StopReason};
use crate::config::RestartBudget;
use crate::metrics::RestartReason;
use crate::report::{Report, StopCause};

/// Signals the supervisor sends to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM to the worker: drain, commit, leave, exit 0.
    Term,
    /// SIGUSR1 to the worker: drain, commit, exit 0 without leaving, for the
    /// slot's next worker to take the member over (rolling restart).
    HandOver,
    /// SIGKILL to the worker.
    Kill,
}

/// sd_notify messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Reloading,
    Stopping,
    Status(String),
}

/// The end of `kswarm run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub message: String,
    /// The slot at fault, whose last stderr lines belong in the message.
    pub slot: Option<u32>,
    /// The short reason for the log line that starts the stop.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a worker process in this slot, then call [`Fleet::spawned`] or
    /// [`Fleet::spawn_failed`].
    Spawn {
        slot: u32,
    },
    Signal {
        pid: Pid,
        sig: Sig,
    },
    Notify(Notify),
    /// A worker died without leaving the group: make the coordinator drop
    /// its member now, so the rebalance need not wait for its session timeout.
    Evict {
        slot: u32,
        member_id: String,
    },
    /// Every worker has ended after a shutdown without leaving the group:
    /// make the coordinator drop all their members in one LeaveGroup.
    LeaveTogether {
        member_ids: Vec<String>,
    },
    /// Every worker has ended: exit the supervisor.
    Exit(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// --hang-timeout: SIGKILL a group member silent this long.
    pub hang: Duration,
    /// A worker that is not (yet) in the group may be silent this long instead
    /// (if longer than `hang`): joining waits for the broker and the other
    /// members.
    pub join: Duration,
    /// --shutdown-timeout plus a margin: SIGKILL a worker still stopping after this.
    pub stop: Duration,
    /// --broker-outage-limit: give up (exit 1) once a worker has been unable
    /// to reach the brokers this long; None: wait for them for ever.
    pub outage: Option<Duration>,
}

/// HUP: replace `current` (slot, old pid), then the `pending` ones, one at a time.
#[derive(Debug)]
struct Rolling {
    current: Option<(usize, Pid)>,
    pending: VecDeque<usize>,
}

/// A shutdown under way, and what its outcome will say.
#[derive(Debug, Default)]
struct Stop {
    failure: Option<Outcome>,
    forced: bool,
    unclean: Vec<String>,
}

#[derive(Debug)]
enum Mode {
    Normal,
    Rolling(Rolling),
    ShuttingDown(Stop),
    Done,
}

/// TTIN/TTOU asked for and not yet carried out: one change at a time, each
/// once the group is stable (a member that leaves while the group
/// rebalances can wedge it; see [`Fleet::settled`]).
#[derive(Debug, Default)]
struct Scaling {
    /// +1 per TTIN, -1 per TTOU.
    pending: i64,
    /// The group's generation when the last step began, and when.
    last_step: Option<(i32, Instant)>,
}

/// What sd_notify has been told.
#[derive(Debug, Default)]
struct Told {
    ready: bool,
    status: String,
}

/// All slots and the policy that moves them.
pub struct Fleet {
    slots: Vec<Slot>,
    /// Slots 0..target are wanted; the rest are retired or retiring.
    target: usize,
    mode: Mode,
    timeouts: Timeouts,
    policy: BackoffPolicy,
    budget: Budget,
    jitter: Jitter,
    told: Told,
    scaling: Scaling,
    /// At shutdown the workers hand over instead of leaving one by one, and
    /// the supervisor removes all their members in one LeaveGroup (see
    /// [`Fleet::leave_together`]).
    leave_together: bool,
}

impl Fleet {
    /// `workers` slots, all due to start at `now`: the first [`Fleet::tick`]
    /// returns one `Spawn` each.
    pub fn new(
        workers: u32,
        now: Instant,
        timeouts: Timeouts,
        policy: BackoffPolicy,
        budget: RestartBudget,
        jitter: Jitter,
    ) -> Self {
        let n = workers.max(1) as usize;
        Self {
            slots: (0..n).map(|_| Slot::new(now)).collect(),
            target: n,
            mode: Mode::Normal,
            timeouts,
            policy,
            budget: Budget::new(budget),
            jitter,
            told: Told::default(),
            scaling: Scaling::default(),
            leave_together: false,
        }
    }

    /// Stop the group's members together: at shutdown every worker drains,
    /// commits and exits without LeaveGroup, and once all have ended one
    /// LeaveGroup removes all their members ([`Action::LeaveTogether`]).
    ///
    /// Why: members that leave one by one put the group into a rebalance
    /// with the first LeaveGroup, and the rest leave during it. tansu keeps a
    /// leader that leaves while the group forms, so a group left that way
    /// names a departed leader and no later consumer (kswarm or another
    /// client) can form it. One LeaveGroup for all of them empties the group
    /// in one step. Off under --static-membership, whose members leave with
    /// their group.instance.id themselves.
    pub fn leave_together(mut self, on: bool) -> Self {
        self.leave_together = on;
        self
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Workers wanted now (changed by TTIN/TTOU).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Whether a rolling restart (HUP) is under way.
    pub fn is_rolling(&self) -> bool {
        matches!(self.mode, Mode::Rolling(_))
    }

    /// Workers wanted once every TTIN and TTOU so far is carried out.
    pub fn wanted(&self) -> usize {
        (self.target as i64 + self.scaling.pending).max(1) as usize
    }

    pub fn is_shutting_down(&self) -> bool {
        matches!(self.mode, Mode::ShuttingDown(_) | Mode::Done)
    }

    /// Live worker pids, in slot order.
    pub fn pids(&self) -> Vec<Pid> {
        self.slots.iter().filter_map(Slot::pid).collect()
    }

    pub fn slot_of(&self, pid: Pid) -> Option<usize> {
        self.slots.iter().position(|s| s.pid() == Some(pid))
    }

    /// What the next process of `slot` inherits, if anything (taken: asked
    /// once per start).
    pub fn take_inherit(&mut self, slot: u32) -> Option<Inherit> {
        self.slots.get_mut(slot as usize)?.take_inherit()
    }

    /// A member id a crashed supervisor's worker in `slot` held (from its
    /// state file): the slot's first worker joins under it, so the group need
    /// not wait for the dead member's session to expire.
    pub fn adopt(&mut self, slot: u32, member_id: String) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if let SlotState::Waiting { until, .. } = s.state {
                s.member_id = Some(member_id.clone());
                s.wait(until, Some(Inherit::Rejoin(member_id)));
            }
        }
    }

    /// Whether `slot` waits to be started (a `Spawn` for it is still wanted).
    pub fn is_due(&self, slot: u32) -> bool {
        !self.is_shutting_down() && self.slots.get(slot as usize).is_some_and(Slot::is_waiting)
    }

    /// The earliest time at which [`Fleet::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let shutting = self.is_shutting_down();
        let outage = self
            .outage_deadline()
            .filter(|_| !shutting)
            .map(|(due, _)| due);
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                SlotState::Waiting { until, .. } if !shutting => Some(until),
                SlotState::Joining(_) | SlotState::Member(..) if !shutting => {
                    s.silence_deadline(self.timeouts.hang, self.timeouts.join)
                }
                // Once SIGKILLed, only its exit (SIGCHLD) is awaited: a
                // deadline that no timer clears would spin the loop.
                SlotState::Stopping {
                    deadline, killed, ..
                } if !killed => Some(deadline),
                _ => None,
            })
            .chain(outage)
            .min()
    }

    /// When the first worker's broker outage passes --broker-outage-limit.
    fn outage_deadline(&self) -> Option<(Instant, usize)> {
        let limit = self.timeouts.outage?;
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (since, _) = s.worker()?.outage.as_ref()?;
                Some((*since + limit, i))
            })
            .min()
    }

    /// Timers: due starts, hung workers, workers that overstay their stop,
    /// a broker outage past its limit; and a scaling step that waited.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.due(now);
        out.extend(self.advance_scaling(now));
        out
    }

    fn due(&mut self, now: Instant) -> Vec<Action> {
        if !self.is_shutting_down() {
            if let Some((due, i)) = self.outage_deadline().filter(|(due, _)| *due <= now) {
                let (since, error) = self.slots[i]
                    .worker()
                    .and_then(|w| w.outage.clone())
                    .unwrap_or((due, String::new()));
                let failure = Outcome {
                    code: 1,
                    message: format!(
                        "the brokers could not be reached for {:?} (--broker-outage-limit {:?}); \
                         the last error (slot {i}): {error}. Check that the cluster is up and \
                         reachable from this host, or raise --broker-outage-limit (none waits for ever)",
                        now.saturating_duration_since(since),
                        self.timeouts.outage.unwrap_or_default()
                    ),
                    slot: None,
                    reason: "broker outage limit passed",
                };
                return self.begin_shutdown(Some(failure), now);
            }
        }
        let mut out = Vec::new();
        let shutting = self.is_shutting_down();
        let (hang, join, stop) = (self.timeouts.hang, self.timeouts.join, self.timeouts.stop);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let silent = slot.silence_deadline(hang, join).is_some_and(|d| d <= now);
            match &mut slot.state {
                SlotState::Waiting { until, .. } if !shutting && *until <= now => {
                    out.push(Action::Spawn { slot: i as u32 });
                }
                SlotState::Joining(_) | SlotState::Member(..) if !shutting && silent => {
                    let worker = slot.worker_mut().expect("a running worker");
                    if worker.suspected.is_none() {
                        // Let reports already on their way arrive first.
                        worker.suspected = Some(now);
                        continue;
                    }
                    let (pid, last_report) = (worker.pid, worker.last_report);
                    let why = if slot.membership().is_some() {
                        "--hang-timeout"
                    } else {
                        "while joining the group"
                    };
                    error!(
                        event = "worker_hung",
                        slot = i,
                        pid,
                        "slot {i} pid {pid}: no report for {:?} ({why}); killing it",
                        now.saturating_duration_since(last_report)
                    );
                    slot.stop(StopReason::Hung, now + stop, true);
                    out.push(Action::Signal {
                        pid,
                        sig: Sig::Kill,
                    });
                }
                SlotState::Stopping {
                    worker,
                    deadline,
                    killed,
                    reason,
                    ..
                } if *deadline <= now && !*killed => {
                    let pid = worker.pid;
                    warn!(
                        event = "worker_overstayed",
                        slot = i,
                        pid,
                        "slot {i} pid {pid}: still running {:?} after SIGTERM; sending SIGKILL",
                        stop
                    );
                    *killed = true;
                    if *reason == StopReason::Shutdown {
                        if let Mode::ShuttingDown(s) = &mut self.mode {
                            s.unclean.push(format!(
                                "slot {i} pid {pid} did not stop within --shutdown-timeout and was killed"
                            ));
                        }
                    }
                    out.push(Action::Signal {
                        pid,
                        sig: Sig::Kill,
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// A worker process was started for `slot`.
    pub fn spawned(&mut self, slot: u32, pid: Pid, now: Instant) -> Vec<Action> {
        info!(
            event = "worker_started",
            slot, pid, "slot {slot} pid {pid} started"
        );
        self.slots[slot as usize].started(pid, now);
        self.status()
    }

    /// Starting a worker for `slot` failed (e.g. the binary is gone): a crash.
    pub fn spawn_failed(&mut self, slot: u32, err: &str, now: Instant) -> Vec<Action> {
        error!(
            event = "spawn_failed",
            slot, "slot {slot}: cannot start a worker: {err}"
        );
        let i = slot as usize;
        self.slots[i].last_fatal = Some(format!("cannot start a worker: {err}"));
        let inherit = self.slots[i].take_inherit();
        self.crashed(
            i,
            None,
            RestartReason::Spawn,
            now,
            false,
            false,
            inherit,
            now,
        )
    }

    /// A report from the worker `pid` in `slot`.
    pub fn report(&mut self, slot: u32, pid: Pid, report: Report, now: Instant) -> Vec<Action> {
        let mut out = self.take_report(slot, pid, report, now);
        out.extend(self.advance_scaling(now));
        out
    }

    fn take_report(&mut self, slot: u32, pid: Pid, report: Report, now: Instant) -> Vec<Action> {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return Vec::new();
        };
        if s.pid() != Some(pid) {
            return Vec::new(); // a late line from a process already gone
        }
        s.heard(now);
        match report {
            Report::Started { .. } => Vec::new(),
            Report::Stats(stats) => {
                s.stats = Some(stats);
                Vec::new()
            }
            Report::MemberId { member_id } => {
                // Known before the join completes, so a worker that dies
                // mid-join is evicted instead of stalling the group.
                s.member_id = Some(member_id);
                Vec::new()
            }
            Report::Alive { records } => {
                s.records = records;
                if records > 0 {
                    if let Some(w) = s.worker_mut() {
                        w.progressed = true;
                    }
                }
                Vec::new()
            }
            Report::Joined {
                member_id,
                generation,
                partitions,
            } => {
                recovered(s, slot, pid, now);
                let member = Membership {
                    member_id,
                    generation,
                    partitions,
                };
                match s.joined(member.clone()) {
                    Joined::First => info!(
                        event = "worker_joined",
                        slot,
                        pid,
                        generation = member.generation,
                        partitions = ?member.partitions,
                        member = %member.member_id,
                        "slot {slot} pid {pid} joined generation {} partitions {:?} member {}",
                        member.generation, member.partitions, member.member_id
                    ),
                    Joined::Changed(old) => info!(
                        event = "worker_rebalanced",
                        slot,
                        pid,
                        generation = member.generation,
                        partitions = ?member.partitions,
                        member = %member.member_id,
                        "slot {slot} pid {pid} rebalanced: generation {} -> {} partitions {:?} -> {:?}",
                        old.generation, member.generation, old.partitions, member.partitions
                    ),
                    Joined::Same | Joined::HandOver | Joined::Ignored => {}
                }
                let mut out = self.status();
                out.extend(self.advance_rolling(now));
                out.extend(self.check_ready());
                out
            }
            Report::Revoked { partitions } => {
                if s.revoked() {
                    info!(
                        event = "worker_revoked",
                        slot,
                        pid,
                        "slot {slot} pid {pid} revoked partitions {partitions:?}; rejoining"
                    );
                }
                self.status()
            }
            Report::Stopping { reason } => {
                info!(event = "worker_stopping", slot, pid, reason = %reason, "slot {slot} pid {pid} stopping: {reason}");
                if let Some(w) = s.worker_mut() {
                    w.stopping = Some(reason);
                }
                Vec::new()
            }
            Report::Fatal { message } => {
                error!(
                    event = "worker_failed",
                    slot, pid, "slot {slot} pid {pid} failed: {message}"
                );
                s.last_fatal = Some(message);
                Vec::new()
            }
            Report::Outage { error } => {
                if let Some(w) = s.worker_mut() {
                    match &mut w.outage {
                        Some((_, e)) => *e = error,
                        None => {
                            warn!(
                                event = "broker_outage",
                                slot,
                                pid,
                                "slot {slot} pid {pid}: requests to the brokers fail: {error}"
                            );
                            w.outage = Some((now, error));
                        }
                    }
                }
                Vec::new()
            }
            Report::Recovered => {
                recovered(s, slot, pid, now);
                Vec::new()
            }
        }
    }

    /// The supervisor did not run for a while (SIGSTOP then SIGCONT, a
    /// frozen cgroup, a suspended machine): its workers' silence meanwhile
    /// was ours, not theirs. Restart every silence clock at `now`.
    pub fn resumed(&mut self, now: Instant) {
        for s in &mut self.slots {
            s.resumed(now);
        }
    }

    /// The worker `pid` ended (reaped after SIGCHLD).
    pub fn exited(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        let mut out = self.take_exit(pid, exit, now);
        out.extend(self.advance_scaling(now));
        out
    }

    fn take_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        let Some(i) = self.slot_of(pid) else {
            return Vec::new();
        };
        self.slots[i].last_exit = Some(exit);
        let shutting = self.is_shutting_down();
        // Exit 0 means it left the group itself. Anything else leaves a
        // member behind (see `handover`).
        let inherit = handover::inherit_after_exit(
            &self.slots[i].state,
            exit,
            shutting,
            self.slots[i].member_id.as_deref(),
        );
        let taken_over = matches!(inherit, Some(Inherit::TakeOver(_)));
        let dead_member = self.slots[i].member_id.clone();
        let state = std::mem::replace(&mut self.slots[i].state, SlotState::Retired);
        let mut out: Vec<Action> = match state {
            SlotState::Joining(w) | SlotState::Member(w, _) => {
                if shutting {
                    info!(event = "worker_ended", slot = i, pid, exit = %exit, "slot {i} pid {pid} ended with {exit}");
                    Vec::new()
                } else if exit.success() && w.stopping == Some(StopCause::StdoutClosed) {
                    // `kswarm run | head`: whoever reads the records is gone;
                    // restarting cannot help. Stop everyone, cleanly.
                    info!("slot {i} pid {pid}: stdout closed; stopping");
                    self.shutdown(now)
                } else if exit == Exit::Code(crate::report::EXIT_CONFIG) {
                    // Restarting cannot fix a configuration error.
                    let why = self.slots[i]
                        .last_fatal
                        .clone()
                        .unwrap_or_else(|| "a configuration error".into());
                    let failure = Outcome {
                        code: 2,
                        message: format!("slot {i} pid {pid} stopped on a configuration error, which restarting cannot fix: {why}"),
                        slot: Some(i as u32),
                        reason: "configuration error",
                    };
                    self.begin_shutdown(Some(failure), now)
                } else {
                    error!(
                        event = "worker_crashed",
                        slot = i,
                        pid,
                        exit = %exit,
                        "slot {i} pid {pid} ended unexpectedly with {exit}"
                    );
                    let in_outage = w.outage.is_some();
                    let why = match exit {
                        Exit::Signal(_) => RestartReason::Signal,
                        _ => RestartReason::Exit,
                    };
                    self.crashed(
                        i,
                        Some(exit),
                        why,
                        w.since,
                        w.progressed,
                        in_outage,
                        inherit,
                        now,
                    )
                }
            }
            SlotState::Stopping {
                worker,
                reason,
                killed,
                ..
            } => match reason {
                StopReason::Hung => {
                    warn!(event = "worker_ended", slot = i, pid, exit = %exit, "slot {i} pid {pid} (hung) ended with {exit}");
                    let in_outage = worker.outage.is_some();
                    self.crashed(
                        i,
                        Some(exit),
                        RestartReason::Hung,
                        worker.since,
                        worker.progressed,
                        in_outage,
                        inherit,
                        now,
                    )
                }
                StopReason::Rolling => {
                    log_stop(i, pid, exit, killed);
                    self.slots[i].wait(now, inherit);
                    self.due(now)
                }
                StopReason::Shrink => {
                    log_stop(i, pid, exit, killed);
                    self.slots.truncate(self.last_used() + 1);
                    Vec::new()
                }
                StopReason::Shutdown => {
                    log_stop(i, pid, exit, killed);
                    // Killed by the stop signal itself: it came before the
                    // worker set up its handler, with nothing to drain yet.
                    let clean = exit.success()
                        || exit == Exit::Signal(libc::SIGTERM)
                        || exit == Exit::Signal(libc::SIGUSR1);
                    if !clean && !killed {
                        if let Mode::ShuttingDown(s) = &mut self.mode {
                            s.unclean
                                .push(format!("slot {i} pid {pid} ended with {exit}"));
                        }
                    }
                    Vec::new()
                }
            },
            other @ (SlotState::Waiting { .. } | SlotState::Retired) => {
                self.slots[i].state = other;
                Vec::new()
            }
        };
        // A member that died without leaving, that nobody takes over soon:
        // evict it so the rest of the group need not wait for it. (A TTOU
        // may have dropped the slot altogether.)
        let restart_in = match self.slots.get(i).map(|s| &s.state) {
            Some(SlotState::Waiting { until, .. }) => Some(until.saturating_duration_since(now)),
            _ => None,
        };
        // At a shutdown with `leave_together` every member leaves at the end.
        let leaves_later = self.leave_together && self.is_shutting_down();
        if handover::evict_after_exit(exit, taken_over, restart_in, leaves_later) {
            if let Some(m) = dead_member {
                out.insert(
                    0,
                    Action::Evict {
                        slot: i as u32,
                        member_id: m,
                    },
                );
            }
        }
        out.extend(self.status());
        out.extend(self.advance_rolling(now));
        out.extend(self.check_done());
        out
    }

    /// TERM, first INT, or a spent budget: stop every worker gracefully.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        self.begin_shutdown(None, now)
    }

    /// A second INT: SIGKILL every worker now.
    pub fn kill_all(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.begin_shutdown(None, now);
        if let Mode::ShuttingDown(s) = &mut self.mode {
            s.forced = true;
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(pid) = s.kill() {
                warn!("slot {i} pid {pid}: killing (second interrupt)");
                out.push(Action::Signal {
                    pid,
                    sig: Sig::Kill,
                });
            }
        }
        out
    }

    /// TTIN: one worker more, once the group is stable (see [`Fleet::settled`]).
    pub fn grow(&mut self, now: Instant) -> Vec<Action> {
        if self.is_shutting_down() {
            return Vec::new();
        }
        self.scaling.pending += 1;
        self.log_scale_request("TTIN");
        self.advance_scaling(now)
    }

    /// TTOU: one worker less (never below one), once the group is stable.
    pub fn shrink(&mut self, now: Instant) -> Vec<Action> {
        if self.is_shutting_down() {
            return Vec::new();
        }
        if self.wanted() <= 1 {
            warn!("TTOU ignored: kswarm keeps at least one worker");
            return Vec::new();
        }
        self.scaling.pending -= 1;
        self.log_scale_request("TTOU");
        self.advance_scaling(now)
    }

    fn log_scale_request(&self, signal: &str) {
        let wanted = self.wanted();
        if self.scaling.pending == 0 {
            info!("{signal}: back to {wanted} workers as they are now");
        } else {
            info!(
                "{signal}: {wanted} workers wanted (now {}); changing one at a time, each once the group is stable",
                self.target
            );
        }
    }

    /// Whether the group is stable enough for the next scaling step: every
    /// wanted slot has a member, no removed one is still stopping, and all
    /// share one generation newer than the last step's (a member that left
    /// or joined starts a rebalance that the others see only at their next
    /// heartbeat). A step that brings no new generation within the join
    /// allowance does not block the next one for ever.
    fn settled(&self, now: Instant) -> bool {
        let (wanted, rest) = self.slots.split_at(self.target.min(self.slots.len()));
        if wanted.len() < self.target || rest.iter().any(|s| s.state != SlotState::Retired) {
            return false;
        }
        let mut gens = wanted.iter().map(|s| s.membership().map(|m| m.generation));
        let Some(Some(first)) = gens.next() else {
            return false;
        };
        if !gens.all(|g| g == Some(first)) {
            return false;
        }
        match self.scaling.last_step {
            None => true,
            Some((gen, at)) => {
                first > gen || now.saturating_duration_since(at) > self.timeouts.join
            }
        }
    }

    /// Carry out the next TTIN or TTOU if the group is stable.
    fn advance_scaling(&mut self, now: Instant) -> Vec<Action> {
        if self.scaling.pending == 0 || !matches!(self.mode, Mode::Normal) || !self.settled(now) {
            return Vec::new();
        }
        let gen = self
            .slots
            .iter()
            .filter_map(|s| s.membership().map(|m| m.generation))
            .max()
            .unwrap_or(-1);
        self.scaling.last_step = Some((gen, now));
        if self.scaling.pending > 0 {
            self.scaling.pending -= 1;
            self.grow_one(now)
        } else {
            self.scaling.pending += 1;
            self.shrink_one(now)
        }
    }

    /// One worker more, now.
    fn grow_one(&mut self, now: Instant) -> Vec<Action> {
        self.target += 1;
        let i = self.target - 1;
        info!(
            event = "worker_added",
            workers = self.target,
            "adding a worker (TTIN): now {} workers",
            self.target
        );
        if i >= self.slots.len() {
            self.slots.push(Slot::new(now));
        } else {
            let s = &mut self.slots[i];
            match s.state {
                SlotState::Retired => {
                    s.attempt = 0;
                    s.wait(now, None);
                }
                // still leaving after a TTOU: start a new one when it is gone
                SlotState::Stopping { .. } => s.restop(StopReason::Rolling),
                _ => {}
            }
        }
        let mut out = self.due(now);
        out.extend(self.status());
        out
    }

    /// One worker less (never below one), now: the highest slot stops gracefully.
    fn shrink_one(&mut self, now: Instant) -> Vec<Action> {
        if self.target <= 1 {
            warn!("TTOU ignored: kswarm keeps at least one worker");
            return Vec::new();
        }
        self.target -= 1;
        let i = self.target;
        info!(
            event = "worker_removed",
            slot = i,
            workers = self.target,
            "removing a worker (TTOU): slot {i}; now {} workers",
            self.target
        );
        let deadline = now + self.timeouts.stop;
        let s = &mut self.slots[i];
        let mut out = Vec::new();
        if let SlotState::Stopping {
            reason: StopReason::Rolling | StopReason::Shutdown | StopReason::Shrink,
            ..
        } = s.state
        {
            s.restop(StopReason::Shrink);
        } else if let Some(pid) = s.stop(StopReason::Shrink, deadline, false) {
            out.push(Action::Signal {
                pid,
                sig: Sig::Term,
            });
        }
        if s.state == SlotState::Retired {
            self.slots.truncate(self.last_used() + 1);
        }
        out.extend(self.status());
        out.extend(self.advance_rolling(now));
        out.extend(self.check_ready());
        out
    }

    /// HUP: replace every worker, one at a time, each once its predecessor's
    /// replacement has joined.
    pub fn rolling_restart(&mut self, now: Instant) -> Vec<Action> {
        match self.mode {
            Mode::Normal => {}
            Mode::Rolling(_) => {
                warn!("HUP ignored: a rolling restart is already running");
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        info!(
            event = "rolling_restart",
            workers = self.target,
            "rolling restart of {} workers (HUP)",
            self.target
        );
        self.mode = Mode::Rolling(Rolling {
            current: None,
            pending: (0..self.target).collect(),
        });
        let mut out = vec![Action::Notify(Notify::Reloading)];
        out.extend(self.advance_rolling(now));
        out
    }

    fn advance_rolling(&mut self, now: Instant) -> Vec<Action> {
        let Mode::Rolling(rolling) = &mut self.mode else {
            return Vec::new();
        };
        if let Some((i, old)) = rolling.current {
            let done = match self.slots.get(i) {
                None => true,
                Some(s) => match &s.state {
                    SlotState::Retired => true,
                    SlotState::Member(w, _) => w.pid != old,
                    _ => false,
                },
            };
            if !done {
                return Vec::new();
            }
            rolling.current = None;
        }
        while let Some(i) = rolling.pending.pop_front() {
            if i >= self.target {
                continue;
            }
            let s = &mut self.slots[i];
            if !s.is_active() {
                continue; // waiting or stopping: it gets a new process anyway
            }
            // The worker stays a member and its replacement takes it over:
            // no LeaveGroup, no rebalance (one mid-join is rejoined under its
            // member id instead).
            let Some(pid) = s.stop(StopReason::Rolling, now + self.timeouts.stop, false) else {
                continue;
            };
            info!(
                event = "worker_replacing",
                slot = i,
                pid,
                "slot {i} pid {pid}: replacing (rolling restart)"
            );
            rolling.current = Some((i, pid));
            return vec![Action::Signal {
                pid,
                sig: Sig::HandOver,
            }];
        }
        info!(event = "rolling_restart_done", "rolling restart done");
        self.mode = Mode::Normal;
        let mut out = vec![Action::Notify(Notify::Ready)];
        out.extend(self.status());
        out
    }

    /// A worker of slot `i` crashed (or hung, or could not be started): restart
    /// it after a backoff delay, its next worker inheriting `inherit`, or
    /// give up (exit 1) once the crash loop is plain. A worker that died while
    /// the brokers were out of reach (`in_outage`) did not crash on its own:
    /// waiting out an outage spends no budget.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn crashed(
        &mut self,
        i: usize,
        exit: Option<Exit>,
        why: RestartReason,
        since: Instant,
        progressed: bool,
        in_outage: bool,
        inherit: Option<Inherit>,
        now: Instant,
    ) -> Vec<Action> {
        if self.is_shutting_down() {
            self.slots[i].retire();
            return Vec::new();
        }
        if now.saturating_duration_since(since) >= self.policy.healthy_after {
            self.slots[i].attempt = 0;
        }
        if in_outage {
            info!("slot {i} ended during a broker outage; restarting it without spending the restart budget");
        } else if progressed {
            self.slots[i].fruitless = 0;
        } else {
            self.slots[i].fruitless += 1;
        }
        if let Some(failure) = (!in_outage).then(|| self.give_up(i, exit, now)).flatten() {
            self.slots[i].retire();
            return self.begin_shutdown(Some(failure), now);
        }
        let u = (self.jitter)();
        let s = &mut self.slots[i];
        let delay = self.policy.delay(s.attempt, u);
        s.attempt += 1;
        s.restarts += 1;
        *s.restart_reasons.entry(why).or_default() += 1;
        info!(
            event = "restart_scheduled",
            slot = i,
            restarts = s.restarts,
            delay_ms = delay.as_millis() as u64,
            attempt = s.attempt,
            "slot {i}: restart {} in {} ms (attempt {})",
            s.restarts,
            delay.as_millis(),
            s.attempt
        );
        s.wait(now + delay, inherit);
        if delay.is_zero() {
            return self.due(now);
        }
        Vec::new()
    }

    /// Why restarting slot `i` again is a crash loop, if it is: the restart
    /// budget is spent (--max-restarts N/WINDOW), or more than N of its
    /// workers in a row ended without acknowledging a record (however
    /// slowly: a handler that is killed as hung every 30 s is a loop too).
    fn give_up(&mut self, i: usize, exit: Option<Exit>, now: Instant) -> Option<Outcome> {
        let limit = self.budget.limit();
        let fatal = |s: &Slot| {
            s.last_fatal
                .as_ref()
                .map(|f| format!("; its last error: {f}"))
                .unwrap_or_default()
        };
        if !self.budget.try_spend(now) {
            let how = match (exit, self.slots[i].pid()) {
                (Some(e), Some(pid)) => format!("(pid {pid}) ended with {e}"),
                (Some(e), None) => format!("ended with {e}"),
                (None, _) => "could not be started".to_string(),
            };
            return Some(Outcome {
                code: 1,
                message: format!(
                    "slot {i} {how}; restart budget spent (--max-restarts {}/{:?}: {} restarts within {:?}); stopping. \
                     Fix the cause (see the worker's output), or allow more with --max-restarts N/WINDOW{}",
                    limit.max,
                    limit.window,
                    self.budget.spent(),
                    limit.window,
                    fatal(&self.slots[i])
                ),
                slot: Some(i as u32),
                reason: "restart budget spent",
            });
        }
        let fruitless = self.slots[i].fruitless;
        let loop_limit = limit.max.max(1);
        (fruitless > loop_limit).then(|| Outcome {
            code: 1,
            message: format!(
                "slot {i}: {fruitless} workers in a row ended without acknowledging a single record \
                 (the last with {}); that is a crash loop however slowly it turns (--max-restarts {}/..). \
                 Fix the cause (see the worker's output){}",
                exit.map_or("no start".to_string(), |e| e.to_string()),
                loop_limit,
                fatal(&self.slots[i])
            ),
            slot: Some(i as u32),
            reason: "crash loop",
        })
    }

    fn begin_shutdown(&mut self, failure: Option<Outcome>, now: Instant) -> Vec<Action> {
        if let Mode::ShuttingDown(s) = &mut self.mode {
            if s.failure.is_none() {
                s.failure = failure;
            }
            return Vec::new();
        }
        if matches!(self.mode, Mode::Done) {
            return Vec::new();
        }
        match &failure {
            Some(f) => error!(
                event = "stopping",
                reason = f.reason,
                "{}; stopping {} workers",
                f.reason,
                self.pids().len()
            ),
            None => info!(
                event = "stopping",
                reason = "signal",
                "stopping {} workers",
                self.pids().len()
            ),
        }
        self.mode = Mode::ShuttingDown(Stop {
            failure,
            ..Stop::default()
        });
        let mut out = vec![Action::Notify(Notify::Stopping)];
        let deadline = now + self.timeouts.stop;
        let sig = if self.leave_together {
            Sig::HandOver
        } else {
            Sig::Term
        };
        for s in &mut self.slots {
            if matches!(s.state, SlotState::Stopping { .. }) {
                s.restop(StopReason::Shutdown);
            } else if let Some(pid) = s.stop(StopReason::Shutdown, deadline, false) {
                out.push(Action::Signal { pid, sig });
            }
        }
        out.extend(self.check_done());
        out
    }

    fn check_done(&mut self) -> Vec<Action> {
        let Mode::ShuttingDown(stop) = &mut self.mode else {
            return Vec::new();
        };
        if self.slots.iter().any(|s| s.pid().is_some()) {
            return Vec::new();
        }
        let outcome = if let Some(f) = stop.failure.take() {
            f
        } else if stop.forced {
            Outcome {
                code: 1,
                message: "stopped by a second interrupt; workers were killed without committing"
                    .into(),
                slot: None,
                reason: "second interrupt",
            }
        } else if !stop.unclean.is_empty() {
            Outcome {
                code: 1,
                message: format!(
                    "{}; raise --shutdown-timeout if the handler needs longer to drain",
                    stop.unclean.join("; ")
                ),
                slot: None,
                reason: "unclean stop",
            }
        } else {
            info!(event = "stopped_cleanly", "all workers stopped cleanly");
            Outcome {
                code: 0,
                message: String::new(),
                slot: None,
                reason: "clean stop",
            }
        };
        self.mode = Mode::Done;
        let mut out = Vec::new();
        if self.leave_together {
            let member_ids: Vec<String> = self
                .slots
                .iter()
                .filter_map(|s| s.member_id.clone())
                .collect();
            if !member_ids.is_empty() {
                out.push(Action::LeaveTogether { member_ids });
            }
        }
        out.push(Action::Exit(outcome));
        out
    }

    fn check_ready(&mut self) -> Vec<Action> {
        if self.told.ready || self.is_shutting_down() {
            return Vec::new();
        }
        let all = self.slots[..self.target]
            .iter()
            .all(|s| s.membership().is_some());
        if !all {
            return Vec::new();
        }
        self.told.ready = true;
        info!(
            event = "all_joined",
            workers = self.target,
            "all {} workers joined",
            self.target
        );
        vec![Action::Notify(Notify::Ready)]
    }

    /// A STATUS= line when the summary changed.
    fn status(&mut self) -> Vec<Action> {
        let joined = self
            .slots
            .iter()
            .filter(|s| s.membership().is_some())
            .count();
        let partitions: usize = self
            .slots
            .iter()
            .filter_map(|s| s.membership().map(|m| m.partitions.len()))
            .sum();
        let restarts: u64 = self.slots.iter().map(|s| s.restarts).sum();
        let line = format!(
            "{joined}/{} workers joined, {partitions} partitions owned, {restarts} restarts",
            self.target
        );
        if line == self.told.status {
            return Vec::new();
        }
        self.told.status = line.clone();
        vec![Action::Notify(Notify::Status(line))]
    }

    fn last_used(&self) -> usize {
        self.slots
            .iter()
            .rposition(|s| s.state != SlotState::Retired)
            .unwrap_or(0)
            .max(self.target.saturating_sub(1))
    }
}

/// The worker's `Joined` or `Recovered` report ends its broker outage.
fn recovered(s: &mut Slot, slot: u32, pid: Pid, now: Instant) {
    if let Some((since, _)) = s.worker_mut().and_then(|w| w.outage.take()) {
        info!(
            event = "broker_recovered",
            slot,
            pid,
            "slot {slot} pid {pid}: the brokers answer again after {:?}",
            now.saturating_duration_since(since)
        );
    }
}

fn log_stop(i: usize, pid: Pid, exit: Exit, killed: bool) {
    if killed {
        warn!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} killed ({exit})");
    } else if exit.success() || exit == Exit::Signal(libc::SIGTERM) {
        info!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} stopped ({exit})");
    } else {
        warn!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} stopped with {exit}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::handover::EVICT_IF_RESTART_AFTER;
    use crate::supervisor::slot::SILENCE_CONFIRM;

    /// When a waiting slot starts next.
    fn until(s: &Slot) -> Instant {
        match s.state {
            SlotState::Waiting { until, .. } => until,
            ref other => panic!("not waiting: {other:?}"),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn slots(n: u32, budget: u32, t0: Instant) -> Fleet {
        Fleet::new(
            n,
            t0,
            Timeouts {
                hang: Duration::from_secs(5),
                join: Duration::from_secs(20),
                stop: Duration::from_secs(12),
                outage: None,
            },
            BackoffPolicy::default(),
            RestartBudget {
                max: budget,
                window: Duration::from_secs(60),
            },
            Box::new(|| 1.0), // longest delay of each attempt
        )
    }

    fn joined(gen: i32, parts: &[i32]) -> Report {
        Report::Joined {
            member_id: format!("m-{gen}"),
            generation: gen,
            partitions: parts.to_vec(),
        }
    }

    fn spawns(a: &[Action]) -> Vec<u32> {
        a.iter()
            .filter_map(|a| match a {
                Action::Spawn { slot } => Some(*slot),
                _ => None,
            })
            .collect()
    }

    fn signals(a: &[Action]) -> Vec<(Pid, Sig)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Signal { pid, sig } => Some((*pid, *sig)),
                _ => None,
            })
            .collect()
    }

    fn exit_of(a: &[Action]) -> Option<Outcome> {
        a.iter().find_map(|a| match a {
            Action::Exit(o) => Some(o.clone()),
            _ => None,
        })
    }

    /// Start all slots with pids 100, 101, ... and join them.
    fn started(n: u32, budget: u32, t0: Instant) -> Fleet {
        let mut s = slots(n, budget, t0);
        assert_eq!(spawns(&s.tick(t0)), (0..n).collect::<Vec<_>>());
        for i in 0..n {
            s.spawned(i, 100 + i as i32, t0);
        }
        for i in 0..n {
            let a = s.report(i, 100 + i as i32, joined(1, &[i as i32]), t0 + MS);
            let ready = a.contains(&Action::Notify(Notify::Ready));
            assert_eq!(ready, i == n - 1, "READY only once all joined");
        }
        s
    }

    #[test]
    fn starts_every_slot_and_is_ready_when_all_joined() {
        let t0 = Instant::now();
        let s = started(3, 10, t0);
        assert_eq!(s.pids(), vec![100, 101, 102]);
        assert!(
            matches!(s.slots()[2].state, SlotState::Member(_, ref member) if member.partitions == vec![2])
        );
    }

    #[test]
    fn crash_restarts_in_the_same_slot_with_growing_backoff() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        // first crash: restart within 50 ms
        let a = s.exited(101, Exit::Code(3), t0 + 10 * MS);
        assert!(spawns(&a).is_empty());
        let until = until(&s.slots()[1]);
        assert_eq!(until, t0 + 60 * MS);
        assert_eq!(s.next_deadline(), Some(until));
        assert!(spawns(&s.tick(until - MS)).is_empty());
        assert_eq!(spawns(&s.tick(until)), vec![1]);
        s.spawned(1, 200, until);
        // second crash right away: 100 ms
        s.exited(200, Exit::Signal(9), until + MS);
        assert_eq!(super::tests::until(&s.slots()[1]), until + MS + 100 * MS);
        assert_eq!(s.slots()[1].restarts, 2);
        assert_eq!(s.slots()[1].last_exit, Some(Exit::Signal(9)));
        // slot 0 untouched
        assert_eq!(s.slots()[0].pid(), Some(100));
    }

    #[test]
    fn healthy_run_resets_the_backoff() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Code(1), t0);
        let t1 = t0 + Duration::from_secs(1);
        s.tick(t1);
        s.spawned(0, 200, t1);
        // ran 40 s: the next delay is a first delay again
        let t2 = t1 + Duration::from_secs(40);
        s.report(0, 200, Report::Alive { records: 5 }, t2);
        s.exited(200, Exit::Code(1), t2);
        assert_eq!(until(&s.slots()[0]), t2 + 50 * MS);
        assert_eq!(s.slots()[0].records, 5);
    }

    #[test]
    fn spent_budget_stops_everyone_and_names_the_slot() {
        let t0 = Instant::now();
        let mut s = started(2, 2, t0);
        s.report(
            1,
            101,
            Report::Fatal {
                message: "handler exited 3".into(),
            },
            t0,
        );
        let mut t = t0;
        let mut pid = 101;
        for _ in 0..2 {
            assert!(exit_of(&s.exited(pid, Exit::Code(3), t)).is_none());
            t += Duration::from_secs(1);
            assert_eq!(spawns(&s.tick(t)), vec![1]);
            pid += 1000;
            s.spawned(1, pid, t);
        }
        // third crash within the window: over budget -> TERM slot 0, no restart
        let a = s.exited(pid, Exit::Code(3), t);
        assert_eq!(signals(&a), vec![(100, Sig::Term)]);
        assert!(a.contains(&Action::Notify(Notify::Stopping)));
        assert!(exit_of(&a).is_none(), "waits for slot 0 to stop");
        assert!(s.is_shutting_down());
        assert!(spawns(&s.tick(t + Duration::from_secs(1))).is_empty());
        let out = exit_of(&s.exited(100, Exit::Code(0), t + MS)).expect("exit");
        assert_eq!(out.code, 1);
        assert_eq!(out.slot, Some(1));
        assert!(out.message.contains("slot 1"), "{}", out.message);
        assert!(out.message.contains("exit status 3"), "{}", out.message);
        assert!(out.message.contains("--max-restarts"), "{}", out.message);
        assert!(out.message.contains("handler exited 3"), "{}", out.message);
    }

    #[test]
    fn graceful_shutdown_exits_zero_or_kills_after_the_timeout() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.shutdown(t0);
        assert_eq!(signals(&a), vec![(100, Sig::Term), (101, Sig::Term)]);
        assert!(s.shutdown(t0).is_empty(), "a second TERM changes nothing");
        assert!(exit_of(&s.exited(100, Exit::Code(0), t0 + MS)).is_none());
        // 101 ignores TERM: killed at the deadline
        assert!(signals(&s.tick(t0 + Duration::from_secs(11))).is_empty());
        let a = s.tick(t0 + Duration::from_secs(12));
        assert_eq!(signals(&a), vec![(101, Sig::Kill)]);
        // Killed: no timer is due any more (the loop would spin on one that
        // nothing clears); its exit is what comes next.
        assert_eq!(s.next_deadline(), None);
        let out = exit_of(&s.exited(101, Exit::Signal(9), t0 + Duration::from_secs(12))).unwrap();
        assert_eq!(out.code, 1);
        assert!(out.message.contains("slot 1"), "{}", out.message);

        let mut s = started(2, 10, t0);
        s.shutdown(t0);
        s.exited(100, Exit::Code(0), t0);
        let out = exit_of(&s.exited(101, Exit::Signal(libc::SIGTERM), t0)).unwrap();
        assert_eq!(
            out,
            Outcome {
                code: 0,
                message: String::new(),
                slot: None,
                reason: "clean stop",
            }
        );
    }

    fn leaves(a: &[Action]) -> Vec<Vec<String>> {
        a.iter()
            .filter_map(|a| match a {
                Action::LeaveTogether { member_ids } => Some(member_ids.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn at_shutdown_members_leave_together_after_the_last_worker_ended() {
        let t0 = Instant::now();
        let mut s = started(3, 10, t0).leave_together(true);
        let a = s.shutdown(t0);
        assert_eq!(
            signals(&a),
            vec![
                (100, Sig::HandOver),
                (101, Sig::HandOver),
                (102, Sig::HandOver)
            ]
        );
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert!(leaves(&a).is_empty() && exit_of(&a).is_none());
        // One is killed at the deadline: no eviction of its own (that would
        // be one member leaving alone); it leaves with the others.
        let a = s.exited(101, Exit::Signal(9), t0 + MS);
        assert!(evictions(&a).is_empty(), "{a:?}");
        // Killed by the hand-over signal before it could catch it: clean.
        let a = s.exited(102, Exit::Signal(libc::SIGUSR1), t0 + 2 * MS);
        assert_eq!(leaves(&a), vec![vec!["m-1".to_string(); 3]]);
        let exit_at = a.iter().position(|x| matches!(x, Action::Exit(_)));
        let leave_at = a
            .iter()
            .position(|x| matches!(x, Action::LeaveTogether { .. }));
        assert!(leave_at < exit_at, "leave before exiting: {a:?}");
        assert_eq!(exit_of(&a).unwrap().code, 1, "slot 1 ended with signal 9");

        // Without it (static membership) every worker leaves by itself.
        let mut s = started(1, 10, t0);
        assert_eq!(signals(&s.shutdown(t0)), vec![(100, Sig::Term)]);
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert!(leaves(&a).is_empty());
        assert_eq!(exit_of(&a).unwrap().code, 0);
    }

    #[test]
    fn second_interrupt_kills_at_once() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.shutdown(t0);
        let a = s.kill_all(t0 + MS);
        assert_eq!(signals(&a), vec![(100, Sig::Kill), (101, Sig::Kill)]);
        s.exited(100, Exit::Signal(9), t0 + MS);
        let out = exit_of(&s.exited(101, Exit::Signal(9), t0 + MS)).unwrap();
        assert_eq!(out.code, 1);
    }

    #[test]
    fn hung_worker_is_killed_and_restarted() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let t1 = t0 + Duration::from_secs(4);
        s.report(0, 100, Report::Alive { records: 0 }, t1);
        assert_eq!(s.next_deadline(), Some(t0 + MS + Duration::from_secs(5)));
        // Silent past the limit: one more moment for reports on their way...
        let t6 = t0 + Duration::from_secs(6);
        assert!(signals(&s.tick(t6)).is_empty());
        assert_eq!(s.next_deadline(), Some(t6 + SILENCE_CONFIRM));
        // ...then killed.
        let a = s.tick(t6 + SILENCE_CONFIRM);
        assert_eq!(signals(&a), vec![(101, Sig::Kill)]);
        let a = s.exited(101, Exit::Signal(9), t0 + Duration::from_secs(6));
        assert!(exit_of(&a).is_none());
        assert_eq!(
            s.take_inherit(1),
            Some(Inherit::TakeOver(Membership {
                member_id: "m-1".into(),
                generation: 1,
                partitions: vec![1]
            }))
        );
        assert!(matches!(s.slots()[1].state, SlotState::Waiting { .. }));
        assert_eq!(s.slots()[1].restarts, 1);
        // a worker still joining gets the longer join allowance
        let t2 = t0 + Duration::from_secs(7);
        s.tick(t2);
        s.spawned(1, 300, t2);
        let killed = |a: Vec<Action>| signals(&a).contains(&(300, Sig::Kill));
        assert!(!killed(s.tick(t2 + Duration::from_secs(19))));
        assert!(!killed(s.tick(t2 + Duration::from_secs(20))));
        assert!(killed(
            s.tick(t2 + Duration::from_secs(20) + SILENCE_CONFIRM)
        ));
    }

    #[test]
    fn a_slow_crash_loop_without_progress_stops_after_the_budget_count() {
        let t0 = Instant::now();
        let mut s = started(1, 3, t0);
        let (mut t, mut pid) = (t0, 100);
        // One crash every 40 s: never 3 within the 60 s window; 3 in a row
        // without progress are still within --max-restarts 3.
        for round in 0..3 {
            t += Duration::from_secs(40);
            let a = s.exited(pid, Exit::Signal(9), t);
            assert!(
                exit_of(&a).is_none() && !s.is_shutting_down(),
                "round {round}"
            );
            t += Duration::from_secs(1);
            assert_eq!(spawns(&s.tick(t)), vec![0]);
            pid += 1;
            s.spawned(0, pid, t);
        }
        // A worker that acknowledged records resets the count...
        s.report(0, pid, Report::Alive { records: 5 }, t);
        t += Duration::from_secs(40);
        s.exited(pid, Exit::Signal(9), t);
        assert_eq!(s.slots()[0].fruitless, 0);
        // ...and 4 fruitless ones in a row (more than --max-restarts 3) stop.
        for round in 0..4 {
            t += Duration::from_secs(40);
            s.tick(t);
            pid += 1;
            s.spawned(0, pid, t);
            t += Duration::from_secs(40);
            let a = s.exited(pid, Exit::Code(1), t);
            assert_eq!(s.is_shutting_down(), round == 3, "round {round}");
            if round == 3 {
                let out = exit_of(&a).expect("nothing else runs: exit at once");
                assert_eq!((out.code, out.slot), (1, Some(0)));
                assert!(
                    out.message.contains("4 workers in a row"),
                    "{}",
                    out.message
                );
            }
        }
    }

    #[test]
    fn a_worker_that_dies_in_a_broker_outage_spends_no_budget() {
        let t0 = Instant::now();
        let mut s = started(1, 1, t0);
        let outage = |e: &str| Report::Outage { error: e.into() };
        let (mut t, mut pid) = (t0, 100);
        for _ in 0..5 {
            s.report(0, pid, outage("no answer from b1:9092"), t);
            t += Duration::from_secs(1);
            let a = s.exited(pid, Exit::Code(1), t);
            assert!(!s.is_shutting_down() && exit_of(&a).is_none());
            t += Duration::from_secs(20);
            assert_eq!(spawns(&s.tick(t)), vec![0]);
            pid += 1;
            s.spawned(0, pid, t);
        }
        // Once the brokers answer, crashes count again.
        s.report(0, pid, Report::Recovered, t);
        s.exited(pid, Exit::Code(1), t);
        assert!(
            !s.is_shutting_down(),
            "the first crash is within --max-restarts 1"
        );
        t += Duration::from_secs(20);
        s.tick(t);
        pid += 1;
        s.spawned(0, pid, t);
        s.exited(pid, Exit::Code(1), t);
        assert!(s.is_shutting_down(), "the second spends the budget");
    }

    #[test]
    fn an_outage_past_its_limit_stops_with_1_and_the_error() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.timeouts.outage = Some(Duration::from_secs(60));
        let report = |e: &str| Report::Outage { error: e.into() };
        s.report(1, 101, report("first"), t0);
        // Outage reports keep the worker from looking hung.
        s.report(
            1,
            101,
            report("cannot reach b1:9092"),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(s.next_deadline(), Some(t0 + MS + Duration::from_secs(5)));
        s.report(
            0,
            100,
            Report::Alive { records: 0 },
            t0 + Duration::from_secs(59),
        );
        s.report(
            1,
            101,
            report("cannot reach b1:9092"),
            t0 + Duration::from_secs(59),
        );
        assert!(s.tick(t0 + Duration::from_secs(59)).is_empty());
        let a = s.tick(t0 + Duration::from_secs(60));
        assert!(s.is_shutting_down());
        assert_eq!(signals(&a).len(), 2, "every worker is stopped: {a:?}");
        s.exited(100, Exit::Code(0), t0 + Duration::from_secs(61));
        let out =
            exit_of(&s.exited(101, Exit::Code(0), t0 + Duration::from_secs(61))).expect("exit");
        assert_eq!(out.code, 1);
        assert!(
            out.message.contains("--broker-outage-limit"),
            "{}",
            out.message
        );
        assert!(
            out.message.contains("cannot reach b1:9092"),
            "{}",
            out.message
        );
    }

    #[test]
    fn a_configuration_error_stops_everyone_with_2_and_no_restart() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let message = "--exec '/nope': command not found (sh exit status 127)";
        s.report(
            1,
            101,
            Report::Fatal {
                message: message.into(),
            },
            t0,
        );
        let a = s.exited(101, Exit::Code(crate::report::EXIT_CONFIG), t0);
        assert!(spawns(&a).is_empty());
        assert_eq!(signals(&a), vec![(100, Sig::Term)]);
        let out = exit_of(&s.exited(100, Exit::Code(0), t0)).expect("exit");
        assert_eq!((out.code, out.slot), (2, Some(1)));
        assert!(out.message.contains(message), "{}", out.message);
    }

    #[test]
    fn time_the_supervisor_was_stopped_is_not_the_workers_silence() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        // Stopped for 60 s (hang 5 s): on waking, its timers are overdue.
        let woke = t0 + Duration::from_secs(60);
        s.resumed(woke);
        assert!(signals(&s.tick(woke)).is_empty(), "not killed as hung");
        assert_eq!(s.next_deadline(), Some(woke + Duration::from_secs(5)));
        let later = woke + Duration::from_secs(5);
        assert!(signals(&s.tick(later)).is_empty());
        assert_eq!(
            signals(&s.tick(later + SILENCE_CONFIRM)),
            vec![(100, Sig::Kill)],
            "but still if it stays silent after"
        );
        // A report that comes in the moment of grace saves it.
        let mut s = started(1, 10, t0);
        let late = t0 + Duration::from_secs(60);
        assert!(signals(&s.tick(late)).is_empty());
        s.report(0, 100, Report::Alive { records: 9 }, late + MS);
        assert!(signals(&s.tick(late + SILENCE_CONFIRM)).is_empty());
    }

    #[test]
    fn ttin_adds_and_ttou_removes_the_highest_slot() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.grow(t0);
        assert_eq!(spawns(&a), vec![2]);
        s.spawned(2, 102, t0);
        assert_eq!(s.target(), 3);
        // The group settles at a new generation before the next step.
        for (slot, pid) in [(0, 100), (1, 101), (2, 102)] {
            s.report(slot, pid, joined(2, &[slot as i32]), t0);
        }
        let a = s.shrink(t0);
        assert_eq!(signals(&a), vec![(102, Sig::Term)]);
        assert_eq!(s.target(), 2);
        let a = s.exited(102, Exit::Code(0), t0);
        assert!(spawns(&a).is_empty());
        assert_eq!(s.slots().len(), 2);
        for (slot, pid) in [(0, 100), (1, 101)] {
            s.report(slot, pid, joined(3, &[slot as i32]), t0);
        }
        s.shrink(t0);
        assert_eq!(s.target(), 1);
        s.exited(101, Exit::Code(0), t0);
        s.report(0, 100, joined(4, &[0, 1]), t0);
        assert!(s.shrink(t0).is_empty(), "never below one worker");
        assert_eq!(s.target(), 1);
        assert_eq!(s.pids(), vec![100]);
        // grow again reuses slot 1
        assert_eq!(spawns(&s.grow(t0)), vec![1]);
    }

    #[test]
    fn scaling_signals_are_counted_and_applied_one_at_a_time_once_the_group_is_stable() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        // Three TTINs at once: one worker now, the next once the group has
        // rebalanced with it.
        assert_eq!(spawns(&s.grow(t0)), vec![2]);
        assert!(s.grow(t0).is_empty());
        assert!(s.grow(t0).is_empty());
        assert_eq!(s.wanted(), 5);
        s.spawned(2, 102, t0);
        // The new worker joined, the others have not rejoined yet: not stable.
        assert!(spawns(&s.report(2, 102, joined(2, &[2]), t0)).is_empty());
        assert!(spawns(&s.report(0, 100, joined(2, &[0]), t0)).is_empty());
        let a = s.report(1, 101, joined(2, &[1]), t0);
        assert_eq!(
            spawns(&a),
            vec![3],
            "the second step once all share the new generation"
        );
        s.spawned(3, 103, t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102), (3, 103)] {
            s.report(slot, pid, joined(3, &[slot as i32]), t0);
        }
        assert_eq!(s.target(), 5);
        s.spawned(4, 104, t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102), (3, 103), (4, 104)] {
            s.report(slot, pid, joined(4, &[slot as i32]), t0);
        }
        // Two TTOUs: one worker leaves; the second only after the others
        // rejoined without it (a leave mid-rebalance can wedge a group).
        assert_eq!(signals(&s.shrink(t0)), vec![(104, Sig::Term)]);
        assert!(s.shrink(t0).is_empty());
        s.exited(104, Exit::Code(0), t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102)] {
            assert!(signals(&s.report(slot, pid, joined(5, &[slot as i32]), t0)).is_empty());
        }
        let a = s.report(3, 103, joined(5, &[3]), t0);
        assert_eq!(signals(&a), vec![(103, Sig::Term)]);
        assert_eq!((s.target(), s.wanted()), (3, 3));
        // A TTIN and a TTOU cancel out.
        s.exited(103, Exit::Code(0), t0);
        assert!(s.grow(t0).is_empty(), "not settled since the last step");
        assert_eq!(s.wanted(), 4);
        s.shrink(t0);
        assert_eq!(s.wanted(), 3);
    }

    #[test]
    fn hup_replaces_one_worker_at_a_time() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.rolling_restart(t0);
        assert!(a.contains(&Action::Notify(Notify::Reloading)));
        assert_eq!(signals(&a), vec![(100, Sig::HandOver)]);
        // old one hands over -> immediate replacement as the same member, no
        // budget spent, nobody evicted
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert_eq!(spawns(&a), vec![0]);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(
            s.take_inherit(0),
            Some(Inherit::TakeOver(Membership {
                member_id: "m-1".into(),
                generation: 1,
                partitions: vec![0],
            }))
        );
        s.spawned(0, 200, t0 + MS);
        assert!(
            signals(&s.tick(t0 + 2 * MS)).is_empty(),
            "waits for the join"
        );
        let a = s.report(0, 200, joined(1, &[0]), t0 + 3 * MS);
        assert_eq!(signals(&a), vec![(101, Sig::HandOver)]);
        // It joined a new generation just before the signal reached it: the
        // successor takes that one over.
        s.report(1, 101, joined(3, &[1]), t0 + 3 * MS);
        let a = s.exited(101, Exit::Code(0), t0 + 4 * MS);
        assert_eq!(spawns(&a), vec![1]);
        assert!(
            matches!(s.take_inherit(1), Some(Inherit::TakeOver(m)) if m.generation == 3),
            "the newest generation is taken over"
        );
        s.spawned(1, 201, t0 + 4 * MS);
        let a = s.report(1, 201, joined(3, &[1]), t0 + 5 * MS);
        assert!(a.contains(&Action::Notify(Notify::Ready)));
        assert_eq!(s.pids(), vec![200, 201]);
        assert_eq!(s.slots()[0].restarts + s.slots()[1].restarts, 0);
    }

    fn evictions(a: &[Action]) -> Vec<(u32, String)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Evict { slot, member_id } => Some((*slot, member_id.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hup_of_a_worker_still_joining_rejoins_under_its_member_id() {
        let t0 = Instant::now();
        let mut s = slots(1, 10, t0);
        s.tick(t0);
        s.spawned(0, 100, t0);
        s.report(
            0,
            100,
            Report::MemberId {
                member_id: "m-x".into(),
            },
            t0,
        );
        let a = s.rolling_restart(t0);
        assert_eq!(signals(&a), vec![(100, Sig::HandOver)]);
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert_eq!(spawns(&a), vec![0]);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin("m-x".into())));
    }

    #[test]
    fn a_member_in_good_standing_is_taken_over_not_evicted() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.exited(101, Exit::Signal(9), t0);
        assert!(evictions(&a).is_empty(), "{a:?}");
        let Some(Inherit::TakeOver(r)) = s.take_inherit(1) else {
            panic!("take over")
        };
        assert_eq!(
            (r.member_id.as_str(), r.generation, r.partitions),
            ("m-1", 1, vec![1])
        );
        assert_eq!(s.take_inherit(1), None, "only once");
        // a graceful stop at shutdown leaves nothing behind
        let a = s.shutdown(t0);
        assert!(evictions(&a).is_empty());
        let a = s.exited(100, Exit::Code(0), t0);
        assert!(evictions(&a).is_empty());
    }

    #[test]
    fn a_member_that_died_mid_rebalance_is_rejoined_by_a_quick_replacement() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.report(
            0,
            100,
            Report::Revoked {
                partitions: vec![0],
            },
            t0,
        );
        // first crash: the replacement starts within 50 ms and joins as m-1
        let a = s.exited(100, Exit::Code(1), t0);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin("m-1".into())));
        // the slot keeps that id while its next process has not reported one
        let t1 = t0 + Duration::from_secs(1);
        s.tick(t1);
        s.spawned(0, 200, t1);
        assert_eq!(s.slots()[0].member_id.as_deref(), Some("m-1"));
        // ...and follows the ids it reports
        s.report(
            0,
            200,
            Report::MemberId {
                member_id: "m-2".into(),
            },
            t1,
        );
        assert_eq!(s.slots()[0].member_id.as_deref(), Some("m-2"));
    }

    #[test]
    fn a_member_that_died_mid_rebalance_is_evicted_when_its_replacement_is_late() {
        let t0 = Instant::now();
        let mut s = started(1, 100, t0);
        // crash the slot mid-join until its backoff reaches a second
        let mut t = t0;
        let mut pid = 100;
        for n in 0.. {
            s.report(
                0,
                pid,
                Report::MemberId {
                    member_id: format!("m-{n}"),
                },
                t,
            );
            let a = s.exited(pid, Exit::Signal(9), t);
            let until = until(&s.slots()[0]);
            if until - t >= EVICT_IF_RESTART_AFTER {
                assert_eq!(evictions(&a), vec![(0, format!("m-{n}"))]);
                // evicted or not, the replacement joins under the same id
                assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin(format!("m-{n}"))));
                break;
            }
            assert!(evictions(&a).is_empty(), "attempt {n}: {a:?}");
            t = until;
            s.tick(t);
            pid += 1;
            s.spawned(0, pid, t);
        }
    }

    #[test]
    fn a_dead_member_is_evicted_when_no_replacement_comes() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.report(
            1,
            101,
            Report::Revoked {
                partitions: vec![1],
            },
            t0,
        );
        s.shutdown(t0);
        let a = s.exited(101, Exit::Signal(9), t0);
        assert_eq!(evictions(&a), vec![(1, "m-1".into())]);
        assert_eq!(s.take_inherit(1), None);
    }

    #[test]
    fn adopted_member_ids_go_to_the_first_workers() {
        let t0 = Instant::now();
        let mut s = slots(2, 10, t0);
        s.adopt(1, "old-1".into());
        s.adopt(7, "no such slot".into());
        assert_eq!(spawns(&s.tick(t0)), vec![0, 1]);
        assert_eq!(s.take_inherit(0), None);
        assert_eq!(s.take_inherit(1), Some(Inherit::Rejoin("old-1".into())));
    }

    #[test]
    fn closed_stdout_stops_everyone_cleanly() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.report(
            0,
            100,
            Report::Stopping {
                reason: StopCause::StdoutClosed,
            },
            t0,
        );
        let a = s.exited(100, Exit::Code(0), t0);
        assert_eq!(signals(&a), vec![(101, Sig::Term)]);
        assert!(spawns(&a).is_empty());
        let out = exit_of(&s.exited(101, Exit::Code(0), t0)).unwrap();
        assert_eq!(out.code, 0);
        // an exit 0 for any other reason is restarted
        let mut s = started(1, 10, t0);
        s.report(
            0,
            100,
            Report::Stopping {
                reason: "other".into(),
            },
            t0,
        );
        s.exited(100, Exit::Code(0), t0);
        assert!(matches!(s.slots()[0].state, SlotState::Waiting { .. }));
    }

    #[test]
    fn late_reports_from_old_pids_are_ignored() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Code(1), t0);
        assert!(s.report(0, 100, joined(9, &[0]), t0).is_empty());
        assert!(matches!(s.slots()[0].state, SlotState::Waiting { .. }));
        assert!(s.exited(12345, Exit::Code(0), t0).is_empty());
    }
}
