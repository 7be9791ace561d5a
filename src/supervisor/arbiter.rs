//! The supervisor's main thread, as gunicorn's arbiter: wait for the next
//! event, turn it into [`Fleet`] calls in a small `handle_*` method, carry
//! out the returned [`Action`]s in [`Supervisor::perform`]. The decisions
//! are the fleet's; this is the shell that touches processes, pipes and
//! files.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{debug, info, warn};

use super::fleet::{Action, Exit, Fleet, Inherit, Outcome, Pid};
use super::notify::Notifier;
use super::parked::Parked;
use super::signals::{self, SignalEvent};
use super::tails::Tails;
use super::{
    adopt_previous_members, evict, grow, kill_strays, metrics_server, metrics_view, new_fleet,
    read_worker, reap, send_signal, snapshot, spawn, with_stderr_tail, Event, PAUSED_AFTER,
};
use crate::config::RunConfig;
use crate::error::ExitWith;
use crate::report::Report;
use crate::state_file;

/// How workers log (kswarm's own --log-level and --log-format).
pub(super) struct WorkerLog {
    pub level: String,
    pub format: String,
}

/// The state file `kswarm status` reads, and what was last written to it.
struct StateFile {
    dir: PathBuf,
    written: Option<state_file::SupervisorState>,
}

impl StateFile {
    /// Write `now` unless it is what the file says already.
    fn write(&mut self, now: state_file::SupervisorState) {
        if self.written.as_ref() != Some(&now) {
            state_file::write_state(&self.dir, &now);
            self.written = Some(now);
        }
    }
}

/// The supervisor's shell around [`Fleet`]: it waits for the next event,
/// hands it to the fleet (`handle_*`), and carries out the actions the
/// fleet returns ([`Supervisor::perform`]).
pub(super) struct Supervisor {
    cfg: RunConfig,
    exe: PathBuf,
    log: WorkerLog,
    fleet: Fleet,
    /// Actions the fleet asked for, not yet carried out.
    pending: VecDeque<Action>,
    /// Exits that wait for the end of their worker's reports.
    parked: Parked,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    tails: Tails,
    state: StateFile,
    metrics: Option<metrics_server::Shared>,
    notifier: Notifier,
    evictor: evict::Evictor,
    /// Workers wanted, for the group-wide sizing thread.
    wanted: Arc<AtomicUsize>,
    _grower: grow::Grower,
}

impl Supervisor {
    /// Everything set up for `workers` workers, the first of which are due
    /// to start.
    pub fn start(
        cfg: RunConfig,
        exe: PathBuf,
        log: WorkerLog,
        workers: u32,
        state_dir: PathBuf,
        metrics: Option<metrics_server::Shared>,
    ) -> anyhow::Result<Self> {
        // Processes that a dead worker's handler leaves behind are re-parented to
        // us rather than to init, and killed (see `kill_strays`).
        if let Err(e) = crate::proctree::become_subreaper() {
            warn!("cannot become a child subreaper ({e}); a handler's processes may outlive a dead worker");
        }
        let (tx, rx) = mpsc::channel::<Event>();
        signals::listen(tx.clone(), Event::Signal).context("cannot install signal handlers")?;
        let now = Instant::now();
        let mut fleet = new_fleet(&cfg, workers, now);
        info!(
            "starting {workers} workers for topic {} group {} (pid {})",
            cfg.topic,
            cfg.consume.group,
            std::process::id()
        );
        adopt_previous_members(&mut fleet, &cfg, &state_dir, workers);
        let evictor = evict::Evictor::start(&cfg);
        let wanted = Arc::new(AtomicUsize::new(fleet.wanted()));
        let grower = grow::Grower::start(&cfg, wanted.clone(), state_dir.clone());
        Ok(Self {
            pending: fleet.tick(now).into(),
            cfg,
            exe,
            log,
            fleet,
            parked: Parked::default(),
            tx,
            rx,
            tails: Tails::new(),
            state: StateFile {
                dir: state_dir,
                written: None,
            },
            metrics,
            notifier: Notifier::from_env(),
            evictor,
            wanted,
            _grower: grower,
        })
    }

    /// The main loop: act, catch up with what came due meanwhile, publish
    /// the state, wait for the next event and hand it to the fleet.
    pub fn run(mut self) -> anyhow::Result<()> {
        loop {
            self.wanted.store(self.fleet.wanted(), Ordering::Relaxed);
            while let Some(action) = self.pending.pop_front() {
                if let Some(outcome) = self.perform(action) {
                    return self.finish(outcome);
                }
            }
            if self.handle_late_exits() || self.handle_due_timers() {
                continue;
            }
            self.publish();
            if let (Some(event), now) = self.wait() {
                self.handle(event, now);
            }
        }
    }

    /// Hand an event to the method that turns it into fleet calls.
    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Signal(sig) => self.handle_signal(sig, now),
            Event::Report { slot, pid, report } => self.handle_report(slot, pid, report, now),
            Event::Stderr { slot, pid, line } => self.tails.keep(slot, pid, line),
            Event::StderrClosed { .. } => {}
            Event::ReportsClosed { pid } => self.handle_reports_closed(pid),
        }
    }

    /// Carry out one action of the fleet; the outcome if it is the end.
    fn perform(&mut self, action: Action) -> Option<Outcome> {
        match action {
            Action::Spawn { slot } => self.spawn(slot),
            Action::Signal { pid, sig } => send_signal(pid, sig),
            Action::Notify(n) => self.notifier.send(&n),
            Action::Evict { slot, member_id } => self.evictor.evict(slot, member_id),
            Action::LeaveTogether { member_ids } => self.evictor.leave_together(member_ids),
            Action::Exit(outcome) => return Some(outcome),
        }
        None
    }

    /// Start a worker in `slot`, unless it was started already.
    fn spawn(&mut self, slot: u32) {
        let now = Instant::now();
        if !self.fleet.is_due(slot) {
            return; // asked twice in one batch; already started
        }
        let inherit = self.fleet.take_inherit(slot);
        match &inherit {
            Some(Inherit::TakeOver(m)) => info!(
                event = "takeover",
                slot,
                member = %m.member_id,
                generation = m.generation,
                "slot {slot}: the replacement takes over member {} (generation {}, partitions {:?})",
                m.member_id, m.generation, m.partitions
            ),
            Some(Inherit::Rejoin(id)) => {
                debug!("slot {slot}: the next worker joins as member {id}")
            }
            None => {}
        }
        let mut config =
            spawn::worker_config(&self.cfg, slot, self.fleet.wanted(), inherit.as_ref());
        config.expired = self.fleet.expired_records();
        let actions = match spawn::spawn(&self.exe, &config, &self.log.level, &self.log.format) {
            Ok(w) => {
                read_worker(&self.tx, slot, w.pid, w.reports, w.stderr);
                self.fleet.spawned(slot, w.pid, now)
            }
            Err(e) => self.fleet.spawn_failed(slot, &e.to_string(), now),
        };
        self.pending.extend(actions);
    }

    /// The worker `pid` ended and every report it sent has been read.
    fn exited(&mut self, pid: Pid, exit: Exit) {
        self.pending
            .extend(self.fleet.exited(pid, exit, Instant::now()));
    }

    /// Exits that waited long enough for their reports. Whether there were any.
    fn handle_late_exits(&mut self) -> bool {
        let late = self.parked.due(Instant::now());
        if late.is_empty() {
            return false;
        }
        for (pid, exit) in late {
            self.exited(pid, exit);
        }
        kill_strays(&self.fleet.pids());
        true
    }

    /// Timers that came due while acting (a zero restart delay, say).
    /// Whether there were any.
    fn handle_due_timers(&mut self) -> bool {
        let now = Instant::now();
        if self.fleet.next_deadline().is_none_or(|d| d > now) {
            return false;
        }
        self.pending.extend(self.fleet.tick(Instant::now()));
        true
    }

    /// What `kswarm status` and `--metrics-addr` show.
    fn publish(&mut self) {
        self.state.write(snapshot(&self.fleet, &self.cfg));
        if let Some(m) = &self.metrics {
            let view = metrics_view(&self.fleet, &self.cfg);
            if let Ok(mut v) = m.lock() {
                *v = view;
            }
        }
    }

    /// The next event, or None when a timer is due first; and the time.
    fn wait(&mut self) -> (Option<Event>, Instant) {
        let deadline = match (self.fleet.next_deadline(), self.parked.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let waited_from = Instant::now();
        let event = match deadline {
            Some(due) => match self
                .rx
                .recv_timeout(due.saturating_duration_since(Instant::now()))
            {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            },
            None => Some(self.rx.recv().expect("we hold a sender")),
        };
        let now = Instant::now();
        // Woken far later than asked: we were stopped (SIGSTOP, a frozen
        // cgroup, a suspended machine). The workers' reports of that time
        // are still in their pipes; their silence was ours.
        if let Some(due) = deadline {
            if now > due.max(waited_from) + PAUSED_AFTER {
                warn!(
                    event = "supervisor_resumed",
                    "the supervisor did not run for {:?}; not counting that as its workers' silence",
                    now.saturating_duration_since(due.max(waited_from))
                );
                self.fleet.resumed(now);
            }
        }
        (event, now)
    }

    fn handle_signal(&mut self, sig: SignalEvent, now: Instant) {
        let actions = match sig {
            SignalEvent::Child => return self.handle_child(now),
            SignalEvent::Terminate => self.fleet.shutdown(now),
            SignalEvent::Interrupt if self.fleet.is_shutting_down() => self.fleet.kill_all(now),
            SignalEvent::Interrupt => {
                info!("interrupted; stopping gracefully (interrupt again to kill at once)");
                self.fleet.shutdown(now)
            }
            SignalEvent::Reload => self.fleet.rolling_restart(now),
            SignalEvent::Grow => self.fleet.grow(now),
            SignalEvent::Shrink => self.fleet.shrink(now),
            SignalEvent::Continued => return self.fleet.resumed(now),
        };
        self.pending.extend(actions);
    }

    fn handle_report(&mut self, slot: u32, pid: Pid, report: Report, now: Instant) {
        debug!("slot {slot} pid {pid} reports {report:?}");
        self.pending
            .extend(self.fleet.report(slot, pid, report, now));
    }

    /// SIGCHLD: reap; an exit whose reports are all read goes to the fleet,
    /// the others wait for their reports (see [`Parked`]).
    fn handle_child(&mut self, now: Instant) {
        for (pid, exit) in self.parked.reaped(reap(), now) {
            self.exited(pid, exit);
        }
        kill_strays(&self.fleet.pids());
    }

    /// A worker's report pipe closed: its exit, if parked, goes on.
    fn handle_reports_closed(&mut self, pid: Pid) {
        if let Some((pid, exit)) = self.parked.reports_closed(pid) {
            self.exited(pid, exit);
            kill_strays(&self.fleet.pids());
        }
    }

    /// Every worker has ended: leave the state file for the next run (it
    /// joins under its member ids), let evictions finish, and say how it went.
    fn finish(mut self, outcome: Outcome) -> anyhow::Result<()> {
        kill_strays(&[]);
        self.state.write(snapshot(&self.fleet, &self.cfg));
        self.evictor
            .drain(self.cfg.connect.connect_timeout.min(Duration::from_secs(5)));
        if outcome.code == 0 {
            return Ok(());
        }
        if let Some(slot) = outcome.slot {
            self.read_last_stderr(slot);
        }
        Err(ExitWith(outcome.code, with_stderr_tail(outcome, &self.tails)).into())
    }

    /// The failed worker's last lines may still be in its pipe: read on
    /// until its stderr closes (a handler it left behind may hold it open,
    /// so not for long).
    fn read_last_stderr(&mut self, slot: u32) {
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(ev) = self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            match ev {
                Event::Stderr { slot: s, pid, line } => self.tails.keep(s, pid, line),
                Event::StderrClosed { slot: s } if s == slot => break,
                _ => {}
            }
        }
    }
}
