//! `kswarm run`: the supervisor, parent of one worker process per slot.
//!
//! It holds no Kafka state: it sizes the topic (a short-lived runtime that is
//! gone before the first worker starts), then re-executes its own binary as
//! `kswarm worker` once per slot ([`spawn`]). From then on one thread-light
//! loop drives everything: a signal thread, and two reader threads per worker
//! (its report pipe and its stderr) feed one channel of [`Event`]s; the main
//! thread owns the pure state machine ([`fleet::Fleet`]), carries out its
//! actions (spawn, signal, evict, sd_notify, exit) and wakes up for its timers
//! with `recv_timeout`. Workers are started from the main thread only, because
//! PR_SET_PDEATHSIG fires when the thread that forked them ends.
//!
//! Reaping is driven by SIGCHLD: `waitpid(-1, WNOHANG)` until nothing is left.
//! Each worker leads its own process group (see [`spawn`] for why); a dead
//! worker's group member is evicted at once ([`evict`]), the one piece of
//! Kafka traffic the supervisor does, on a thread of its own.

pub(crate) mod backoff;
pub(crate) mod evict;
pub(crate) mod fleet;
pub(crate) mod grow;
pub(crate) mod handover;
pub(crate) mod metrics_server;
pub(crate) mod notify;
pub(crate) mod parked;
pub(crate) mod signals;
pub(crate) mod slot;
pub(crate) mod spawn;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;
use tracing::{debug, info, warn};

use crate::cli::RunArgs;
use crate::config::{GroupProtocol, RunConfig};
use crate::error::ExitWith;
use crate::report::Report;
use crate::state_file;
use backoff::{thread_rng_jitter, BackoffPolicy};
use fleet::{Action, Exit, Fleet, Inherit, Outcome, Pid, Sig, Timeouts};
use notify::Notifier;
use parked::Parked;
use signals::SignalEvent;

/// Lines of each slot's stderr kept for the crash-loop message.
const STDERR_TAIL: usize = 10;
/// Grace on top of --shutdown-timeout before SIGKILL: the worker's own
/// deadline should fire first.
const STOP_MARGIN: Duration = Duration::from_secs(2);
/// A worker's own check of its handler comes first (see `Timeouts::hang`).
const HANG_MARGIN: Duration = Duration::from_secs(5);
/// Waking up this much later than a timer asked means we were stopped.
const PAUSED_AFTER: Duration = Duration::from_secs(1);

/// Everything the main loop waits for.
#[derive(Debug)]
pub enum Event {
    Signal(SignalEvent),
    Report {
        slot: u32,
        pid: Pid,
        report: Report,
    },
    Stderr {
        slot: u32,
        pid: Pid,
        line: String,
    },
    /// A worker's stderr reached end of file.
    StderrClosed {
        slot: u32,
    },
    /// A worker's report pipe reached end of file: every report it sent has
    /// been read.
    ReportsClosed {
        pid: Pid,
    },
}

/// How long a worker outside the group may stay silent: connecting, then a
/// JoinGroup that waits up to the rebalance timeout (twice: a first join is
/// often answered with "rejoin"), then the session timeout of members that
/// left without a word, plus slack.
fn join_allowance(cfg: &RunConfig) -> Duration {
    let c = &cfg.consume;
    cfg.connect.connect_timeout
        + 2 * c.rebalance_timeout
        + c.session_timeout
        + Duration::from_secs(10)
}

/// `kswarm run`. Returns when every worker has ended: `Ok` after a clean
/// stop, [`ExitWith`] 1 with the reason otherwise.
pub fn run(args: RunArgs, log_level: &str, log_format: &str) -> anyhow::Result<()> {
    let cfg = RunConfig::from_args(&args)?;
    // Before anything touches the topic or the group: one run per group and
    // topic on this host (see `state_file`).
    let state_dir = state_file::dir_for_run()?;
    let _run_lock = state_file::lock(&state_dir, &cfg.consume.group, &cfg.topic)?;
    crate::connect::prepare(&cfg.connect)?;
    if cfg.consume.group_protocol == GroupProtocol::Consumer && !cfg.consume.session_timeout_auto {
        tracing::warn!(
            "--session-timeout: not used with --group-protocol consumer, where the broker sets the \
             session (group.consumer.session.timeout.ms, 45 s by default); ignored"
        );
    }
    if cfg.consume.group_protocol == GroupProtocol::Share && !cfg.consume.session_timeout_auto {
        tracing::warn!(
            "--session-timeout: not used with --group-protocol share, where the broker sets the \
             session (group.share.session.timeout.ms, 45 s by default); ignored"
        );
    }
    // Before sizing and forking: a bad or busy --metrics-addr is a usage error.
    let metrics: Option<metrics_server::Shared> = match &cfg.metrics_addr {
        Some(addr) => {
            let shared = metrics_server::Shared::default();
            metrics_server::start(addr, shared.clone())?;
            Some(shared)
        }
        None => None,
    };
    // Sizing runs (and drops) its own runtime before any worker is forked.
    let workers = crate::plan::prepare_for_run(&cfg)?.workers;
    // Workers run the very binary the supervisor runs, even after a package
    // upgrade replaced the file on disk: /proc/self/exe is that image.
    let exe = Path::new("/proc/self/exe")
        .exists()
        .then(|| PathBuf::from("/proc/self/exe"))
        .map_or_else(std::env::current_exe, Ok)
        .context("cannot find kswarm's own binary to start workers")?;

    // Processes that a dead worker's handler leaves behind are re-parented to
    // us rather than to init, and killed (see `kill_strays`).
    if let Err(e) = crate::proctree::become_subreaper() {
        warn!("cannot become a child subreaper ({e}); a handler's processes may outlive a dead worker");
    }
    let (tx, rx) = mpsc::channel::<Event>();
    signals::listen(tx.clone(), Event::Signal).context("cannot install signal handlers")?;

    let now = Instant::now();
    let mut slots = Fleet::new(
        workers,
        now,
        Timeouts {
            // The worker ends itself when its handler stalls for
            // --hang-timeout (with a message saying why); the supervisor's
            // kill is for a worker that stops reporting altogether.
            hang: cfg.consume.hang_timeout + HANG_MARGIN,
            join: join_allowance(&cfg),
            stop: cfg.consume.shutdown_timeout + STOP_MARGIN,
            outage: cfg.broker_outage_limit,
        },
        BackoffPolicy::default(),
        cfg.max_restarts,
        thread_rng_jitter(),
    )
    .leave_together(!cfg.consume.static_membership);
    info!(
        "starting {workers} workers for topic {} group {} (pid {})",
        cfg.topic,
        cfg.consume.group,
        std::process::id()
    );
    // Join under the members our predecessor for this group had: if it was
    // killed they are still in the group (taking them back beats waiting for
    // their sessions to expire); if it stopped, a broker that forgot them
    // hands out new ids (and tansu gets back a leader it may still name).
    if let Some(old) = state_file::read_previous(&state_dir, &cfg.consume.group, &cfg.topic) {
        for m in old.members.into_iter().filter(|m| m.slot < workers) {
            info!(
                "slot {}: joining as member {}, left by the previous kswarm (pid {})",
                m.slot, m.member_id, old.pid
            );
            slots.adopt(m.slot, m.member_id);
        }
    }
    let notifier = Notifier::from_env();
    let evictor = evict::Evictor::start(&cfg);
    let wanted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(slots.wanted()));
    let _grower = grow::Grower::start(&cfg, wanted.clone());
    let mut tails = Tails::new();
    let mut pending: VecDeque<Action> = slots.tick(now).into();
    let mut parked = Parked::default();
    let mut written: Option<state_file::SupervisorState> = None;

    loop {
        wanted.store(slots.wanted(), std::sync::atomic::Ordering::Relaxed);
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Spawn { slot } => {
                    let now = Instant::now();
                    if !slots.is_due(slot) {
                        continue; // asked twice in one batch; already started
                    }
                    let inherit = slots.take_inherit(slot);
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
                    match spawn::spawn(
                        &exe,
                        &spawn::worker_config(&cfg, slot, slots.wanted(), inherit.as_ref()),
                        log_level,
                        log_format,
                    ) {
                        Ok(w) => {
                            read_worker(&tx, slot, w.pid, w.reports, w.stderr);
                            pending.extend(slots.spawned(slot, w.pid, now));
                        }
                        Err(e) => pending.extend(slots.spawn_failed(slot, &e.to_string(), now)),
                    }
                }
                Action::Signal { pid, sig } => send_signal(pid, sig),
                Action::Notify(n) => notifier.send(&n),
                Action::Evict { slot, member_id } => evictor.evict(slot, member_id),
                Action::LeaveTogether { member_ids } => evictor.leave_together(member_ids),
                Action::Exit(outcome) => {
                    kill_strays(&[]);
                    // The state file stays: the next run joins under its member ids.
                    let last = snapshot(&slots, &cfg);
                    if written.as_ref() != Some(&last) {
                        state_file::write_state(&state_dir, &last);
                    }
                    evictor.drain(cfg.connect.connect_timeout.min(Duration::from_secs(5)));
                    return finish(outcome, &mut tails, &rx);
                }
            }
        }
        // Exits that waited long enough for their reports.
        let late = parked.due(Instant::now());
        if !late.is_empty() {
            for (pid, exit) in late {
                pending.extend(slots.exited(pid, exit, Instant::now()));
            }
            kill_strays(&slots.pids());
            continue;
        }
        // Timers that came due while acting (a zero restart delay, say).
        if slots.next_deadline().is_some_and(|d| d <= Instant::now()) {
            pending.extend(slots.tick(Instant::now()));
            continue;
        }
        let snapshot = snapshot(&slots, &cfg);
        if written.as_ref() != Some(&snapshot) {
            state_file::write_state(&state_dir, &snapshot);
            written = Some(snapshot);
        }
        if let Some(m) = &metrics {
            let view = metrics_view(&slots, &cfg);
            if let Ok(mut v) = m.lock() {
                *v = view;
            }
        }

        let deadline = match (slots.next_deadline(), parked.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let waited_from = Instant::now();
        let event = match deadline {
            Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            },
            None => Some(rx.recv().expect("we hold a sender")),
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
                slots.resumed(now);
            }
        }
        match event {
            None => {}
            Some(Event::Signal(sig)) => match sig {
                SignalEvent::Child => {
                    for (pid, exit) in parked.reaped(reap(), now) {
                        pending.extend(slots.exited(pid, exit, Instant::now()));
                    }
                    kill_strays(&slots.pids());
                }
                SignalEvent::Terminate => pending.extend(slots.shutdown(now)),
                SignalEvent::Interrupt if slots.is_shutting_down() => {
                    pending.extend(slots.kill_all(now))
                }
                SignalEvent::Interrupt => {
                    info!("interrupted; stopping gracefully (interrupt again to kill at once)");
                    pending.extend(slots.shutdown(now))
                }
                SignalEvent::Reload => pending.extend(slots.rolling_restart(now)),
                SignalEvent::Grow => pending.extend(slots.grow(now)),
                SignalEvent::Shrink => pending.extend(slots.shrink(now)),
                SignalEvent::Continued => slots.resumed(now),
            },
            Some(Event::Report { slot, pid, report }) => {
                debug!("slot {slot} pid {pid} reports {report:?}");
                pending.extend(slots.report(slot, pid, report, now));
            }
            Some(Event::Stderr { slot, pid, line }) => tails.keep(slot, pid, line),
            Some(Event::StderrClosed { .. }) => {}
            Some(Event::ReportsClosed { pid }) => {
                if let Some((pid, exit)) = parked.reports_closed(pid) {
                    pending.extend(slots.exited(pid, exit, Instant::now()));
                    kill_strays(&slots.pids());
                }
            }
        }
    }
}

/// What `--metrics-addr` shows of the slots (see [`crate::metrics`]).
fn metrics_view(slots: &Fleet, cfg: &RunConfig) -> crate::metrics::FleetView {
    crate::metrics::FleetView {
        group: cfg.consume.group.clone(),
        topic: cfg.topic.clone(),
        target: slots.target(),
        rolling_restart: slots.is_rolling(),
        shutting_down: slots.is_shutting_down(),
        slots: slots
            .slots()
            .iter()
            .enumerate()
            .filter(|(i, s)| *i < slots.target() || s.pid().is_some())
            .map(|(i, s)| {
                let member = s.membership();
                crate::metrics::SlotView {
                    slot: i as u32,
                    pid: s.pid(),
                    joined: member.is_some(),
                    partitions: member.map(|m| m.partitions.clone()).unwrap_or_default(),
                    restarts: s.restart_reasons.clone(),
                    stats: s.stats.clone(),
                    rss_bytes: None,
                }
            })
            .collect(),
    }
}

/// What `kswarm status` shows of this supervisor (see [`state_file`]).
fn snapshot(slots: &Fleet, cfg: &RunConfig) -> state_file::SupervisorState {
    let workers = slots
        .slots()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let pid = s.pid()?;
            let member = s.membership();
            Some(state_file::WorkerState {
                slot: i as u32,
                pid: pid as u32,
                // A worker still joining shows the id it joins under.
                member_id: member
                    .map(|m| m.member_id.clone())
                    .or_else(|| s.member_id.clone()),
                generation: member.map(|m| m.generation),
                partitions: member.map(|m| m.partitions.clone()).unwrap_or_default(),
                records: s.records,
                restarts: s.restarts.min(u32::MAX as u64) as u32,
            })
        })
        .collect();
    let members = slots
        .slots()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some(state_file::SlotMember {
                slot: i as u32,
                member_id: s.member_id.clone()?,
            })
        })
        .collect();
    state_file::SupervisorState {
        pid: std::process::id(),
        group: cfg.consume.group.clone(),
        topic: cfg.topic.clone(),
        workers,
        members,
    }
}

/// The last stderr lines of each slot's current process, for the message
/// that ends a crash loop.
struct Tails(HashMap<u32, (Pid, VecDeque<String>)>);

impl Tails {
    fn new() -> Self {
        Self(HashMap::new())
    }

    fn keep(&mut self, slot: u32, pid: Pid, line: String) {
        let (owner, lines) = self.0.entry(slot).or_insert_with(|| (pid, VecDeque::new()));
        if *owner != pid {
            // a new process in this slot: its predecessor's lines are history
            *owner = pid;
            lines.clear();
        }
        if lines.len() == STDERR_TAIL {
            lines.pop_front();
        }
        lines.push_back(strip_ansi(&line));
    }

    fn get(&self, slot: u32) -> Option<&VecDeque<String>> {
        self.0.get(&slot).map(|(_, lines)| lines)
    }
}

/// Worker logs are colored for a terminal; an error message is not.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn finish(outcome: Outcome, tails: &mut Tails, rx: &mpsc::Receiver<Event>) -> anyhow::Result<()> {
    if outcome.code == 0 {
        return Ok(());
    }
    if let Some(slot) = outcome.slot {
        // The failed worker's last lines may still be in its pipe: read on
        // until its stderr closes (a handler it left behind may hold it open,
        // so not for long).
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(ev) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            match ev {
                Event::Stderr { slot: s, pid, line } => tails.keep(s, pid, line),
                Event::StderrClosed { slot: s } if s == slot => break,
                _ => {}
            }
        }
    }
    let mut msg = outcome.message;
    if let Some(tail) = outcome.slot.and_then(|s| tails.get(s)) {
        if !tail.is_empty() {
            msg.push_str(&format!(
                "\nlast stderr lines of slot {}:",
                outcome.slot.unwrap_or_default()
            ));
            for line in tail {
                msg.push_str("\n  ");
                msg.push_str(line);
            }
        }
    }
    Err(ExitWith(outcome.code, msg).into())
}

/// Collect every ended child without blocking.
fn reap() -> Vec<(Pid, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(NixPid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                out.push((pid.as_raw(), Exit::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                warn!("waitpid failed: {e}");
                break;
            }
        }
    }
    out
}

/// Our children that are not workers: processes a dead worker's handler
/// left behind (its guard was killed with it), re-parented to us because we
/// are a subreaper. They are killed with everything below them.
fn kill_strays(workers: &[Pid]) {
    let me = std::process::id() as Pid;
    let strays: Vec<Pid> = crate::proctree::children(me)
        .into_iter()
        .filter(|p| !workers.contains(p))
        .collect();
    if !strays.is_empty() {
        warn!(
            event = "strays_killed",
            count = strays.len(),
            "killing {} process(es) left behind by a dead worker's handler: {strays:?}",
            strays.len()
        );
        crate::proctree::kill_trees(&strays, || {});
    }
}

fn send_signal(pid: Pid, sig: Sig) {
    let target = NixPid::from_raw(pid);
    let result = match sig {
        Sig::Term => kill(target, Signal::SIGTERM),
        Sig::HandOver => kill(target, Signal::SIGUSR1),
        // The worker leads its process group; its handler is in it too.
        Sig::Kill => killpg(target, Signal::SIGKILL).or_else(|_| kill(target, Signal::SIGKILL)),
    };
    if let Err(e) = result {
        debug!("signal {sig:?} to pid {pid}: {e}");
    }
}

/// Reader threads for one worker: reports become events; stderr lines are
/// forwarded to our stderr at once and kept (as events) for error messages.
fn read_worker(
    tx: &Sender<Event>,
    slot: u32,
    pid: Pid,
    reports: std::fs::File,
    stderr: std::process::ChildStderr,
) {
    let rtx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("reports-{slot}"))
        .spawn(move || {
            for line in BufReader::new(reports).lines() {
                let Ok(line) = line else { break };
                match Report::from_line(&line) {
                    Some(report) => {
                        if rtx.send(Event::Report { slot, pid, report }).is_err() {
                            break;
                        }
                    }
                    None => debug!("slot {slot} pid {pid}: unreadable report line {line:?}"),
                }
            }
            let _ = rtx.send(Event::ReportsClosed { pid });
        });
    if let Err(e) = spawned {
        warn!("slot {slot}: cannot start a report reader: {e}");
    }
    let etx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("stderr-{slot}"))
        .spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = etx.send(Event::StderrClosed { slot });
                        break;
                    }
                    Ok(_) => {
                        let _ = std::io::stderr().lock().write_all(&buf);
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        if etx.send(Event::Stderr { slot, pid, line }).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        warn!("slot {slot}: cannot start a stderr reader: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_of_the_current_process() {
        let mut t = Tails::new();
        t.keep(0, 10, "old".into());
        t.keep(0, 11, "\u{1b}[31mERROR\u{1b}[0m new".into());
        for i in 0..STDERR_TAIL {
            t.keep(1, 20, format!("line {i}"));
        }
        t.keep(1, 20, "last".into());
        assert_eq!(
            t.get(0).unwrap(),
            &VecDeque::from(vec!["ERROR new".to_string()])
        );
        let one = t.get(1).unwrap();
        assert_eq!(one.len(), STDERR_TAIL);
        assert_eq!(one.back().unwrap(), "last");
        assert_eq!(one.front().unwrap(), "line 1");
    }
}
