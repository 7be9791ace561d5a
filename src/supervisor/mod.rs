//! `kswarm run`: the supervisor, parent of one worker process per slot.
//!
//! It holds no Kafka state: it sizes the topic (a short-lived runtime that is
//! gone before the first worker starts), then re-executes its own binary as
//! `kswarm worker` once per slot ([`spawn`]). From then on one thread-light
//! loop drives everything: a signal thread, and two reader threads per worker
//! (its report pipe and its stderr) feed one channel of [`Event`]s; the main
//! thread owns the pure state machine ([`slots::Slots`]), carries out its
//! actions (spawn, signal, sd_notify, exit) and wakes up for its timers with
//! `recv_timeout`. Workers are started from the main thread only, because
//! PR_SET_PDEATHSIG fires when the thread that forked them ends.
//!
//! Reaping is driven by SIGCHLD: `waitpid(-1, WNOHANG)` until nothing is left.

pub mod backoff;
pub mod notify;
pub mod signals;
pub mod slots;
pub mod spawn;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;
use tracing::{debug, info, warn};

use crate::app::ExitWith;
use crate::cli::RunArgs;
use crate::config::RunConfig;
use crate::report::Report;
use backoff::{thread_rng_jitter, BackoffPolicy};
use notify::Notifier;
use signals::SignalEvent;
use slots::{Action, Exit, Outcome, Pid, Sig, Slots, Timeouts};

/// Lines of each slot's stderr kept for the crash-loop message.
const STDERR_TAIL: usize = 10;
/// Grace on top of --shutdown-timeout before SIGKILL: the worker's own
/// deadline should fire first.
const STOP_MARGIN: Duration = Duration::from_secs(2);

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
        line: String,
    },
    /// A worker's stderr reached end of file.
    StderrClosed {
        slot: u32,
    },
}

/// `kswarm run`. Returns when every worker has ended: `Ok` after a clean
/// stop, [`ExitWith`] 1 with the reason otherwise.
pub fn run(args: RunArgs, log_level: &str) -> anyhow::Result<()> {
    let cfg = RunConfig::from_args(&args)?;
    // Sizing runs (and drops) its own runtime before any worker is forked.
    let workers = crate::plan::prepare_for_run(&cfg)?.workers;
    let exe =
        std::env::current_exe().context("cannot find kswarm's own binary to start workers")?;

    let (tx, rx) = mpsc::channel::<Event>();
    signals::listen(tx.clone(), Event::Signal).context("cannot install signal handlers")?;

    let now = Instant::now();
    let mut slots = Slots::new(
        workers,
        now,
        Timeouts {
            hang: cfg.hang_timeout,
            stop: cfg.consume.shutdown_timeout + STOP_MARGIN,
        },
        BackoffPolicy::default(),
        cfg.max_restarts,
        thread_rng_jitter(),
    );
    info!(
        "starting {workers} workers for topic {} group {} (pid {})",
        cfg.topic,
        cfg.consume.group,
        std::process::id()
    );
    let notifier = Notifier::from_env();
    let mut tails: HashMap<u32, VecDeque<String>> = HashMap::new();
    let mut pending: VecDeque<Action> = slots.tick(now).into();
    let mut written: Option<state::SupervisorState> = None;

    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Spawn { slot } => {
                    let now = Instant::now();
                    if !slots.is_due(slot) {
                        continue; // asked twice in one batch; already started
                    }
                    match spawn::spawn(&exe, &args, slot, log_level) {
                        Ok(w) => {
                            read_worker(&tx, slot, w.pid, w.reports, w.stderr);
                            pending.extend(slots.spawned(slot, w.pid, now));
                        }
                        Err(e) => pending.extend(slots.spawn_failed(slot, &e.to_string(), now)),
                    }
                }
                Action::Signal { pid, sig } => send_signal(pid, sig),
                Action::Notify(n) => notifier.send(&n),
                Action::Exit(outcome) => {
                    state::remove_state(&cfg.consume.group, std::process::id());
                    return finish(outcome, &mut tails, &rx);
                }
            }
            if pending.is_empty() && slots.next_deadline().is_some_and(|d| d <= Instant::now()) {
                pending.extend(slots.tick(Instant::now()));
            }
        }
        if slots.next_deadline().is_some_and(|d| d <= Instant::now()) {
            pending.extend(slots.tick(Instant::now()));
            continue;
        }
        let snapshot = snapshot(&slots, &cfg);
        if written.as_ref() != Some(&snapshot) {
            state::write_state(&snapshot);
            written = Some(snapshot);
        }

        let event = match slots.next_deadline() {
            Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            },
            None => Some(rx.recv().expect("we hold a sender")),
        };
        let now = Instant::now();
        match event {
            None => {}
            Some(Event::Signal(sig)) => match sig {
                SignalEvent::Child => {
                    for (pid, exit) in reap() {
                        pending.extend(slots.exited(pid, exit, Instant::now()));
                    }
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
            },
            Some(Event::Report { slot, pid, report }) => {
                debug!("slot {slot} pid {pid} reports {report:?}");
                pending.extend(slots.report(slot, pid, report, now));
            }
            Some(Event::Stderr { slot, line }) => keep_line(&mut tails, slot, line),
            Some(Event::StderrClosed { .. }) => {}
        }
    }
}

/// What `kswarm status` shows of this supervisor (see [`state`]).
fn snapshot(slots: &Slots, cfg: &RunConfig) -> state::SupervisorState {
    let workers = slots
        .slots()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let pid = s.state.pid()?;
            let member = match &s.state {
                slots::SlotState::Running { member, .. } => Some(member),
                _ => None,
            };
            Some(state::WorkerState {
                slot: i as u32,
                pid: pid as u32,
                member_id: member.map(|m| m.member_id.clone()),
                generation: member.map(|m| m.generation),
                partitions: member.map(|m| m.partitions.clone()).unwrap_or_default(),
                records: s.records,
                restarts: s.restarts.min(u32::MAX as u64) as u32,
            })
        })
        .collect();
    state::SupervisorState {
        pid: std::process::id(),
        group: cfg.consume.group.clone(),
        topic: cfg.topic.clone(),
        workers,
    }
}

fn keep_line(tails: &mut HashMap<u32, VecDeque<String>>, slot: u32, line: String) {
    let tail = tails.entry(slot).or_default();
    if tail.len() == STDERR_TAIL {
        tail.pop_front();
    }
    tail.push_back(line);
}

fn finish(
    outcome: Outcome,
    tails: &mut HashMap<u32, VecDeque<String>>,
    rx: &mpsc::Receiver<Event>,
) -> anyhow::Result<()> {
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
                Event::Stderr { slot: s, line } => keep_line(tails, s, line),
                Event::StderrClosed { slot: s } if s == slot => break,
                _ => {}
            }
        }
    }
    let mut msg = outcome.message;
    if let Some(tail) = outcome.slot.and_then(|s| tails.get(&s)) {
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

fn send_signal(pid: Pid, sig: Sig) {
    let target = NixPid::from_raw(pid);
    let result = match sig {
        Sig::Term => kill(target, Signal::SIGTERM),
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
                        if etx.send(Event::Stderr { slot, line }).is_err() {
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
