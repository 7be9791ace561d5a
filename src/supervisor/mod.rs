//! `kswarm run`: the supervisor, parent of one worker process per slot.
//!
//! It holds no Kafka state: it sizes the topic (a short-lived runtime that is
//! gone before the first worker starts), then re-executes its own binary as
//! `kswarm worker` once per slot ([`spawn`]). From then on one thread-light
//! loop drives everything: a signal thread, and two reader threads per worker
//! (its report pipe and its stderr) feed one channel of [`Event`]s; the main
//! thread owns the pure state machine ([`fleet::Fleet`]), carries out its
//! actions (spawn, signal, evict, sd_notify, exit) and wakes up for its timers
//! with `recv_timeout`. That thread is a [`Supervisor`]: like gunicorn's
//! arbiter, it waits for the next event, turns it into a `Fleet` call in a
//! small `handle_*` method, and carries out the returned actions in one
//! `perform`. Workers are started from the main thread only, because
//! PR_SET_PDEATHSIG fires when the thread that forked them ends.
//!
//! Reaping is driven by SIGCHLD: `waitpid(-1, WNOHANG)` until nothing is left.
//! Each worker leads its own process group (see [`spawn`] for why); a dead
//! worker's group member is evicted at once ([`evict`]), the one piece of
//! Kafka traffic the supervisor does, on a thread of its own.

mod arbiter;
pub(crate) mod backoff;
pub(crate) mod evict;
pub(crate) mod fleet;
pub(crate) mod grow;
pub(crate) mod handover;
pub(crate) mod health;
pub(crate) mod metrics_server;
pub(crate) mod notify;
pub(crate) mod parked;
pub(crate) mod signals;
pub(crate) mod slot;
pub(crate) mod spawn;
mod tails;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;
use tracing::{debug, info, warn};

use crate::cli::RunArgs;
use crate::config::{GroupProtocol, RunConfig};
use crate::report::Report;
use crate::state_file;
use arbiter::{Supervisor, WorkerLog};
use backoff::{thread_rng_jitter, BackoffPolicy};
use fleet::{Exit, Fleet, Outcome, Pid, Sig, Timeouts};
use signals::SignalEvent;
use tails::Tails;

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
/// stop, [`crate::error::ExitWith`] 1 with the reason otherwise.
pub fn run(args: RunArgs, log_level: &str, log_format: &str) -> anyhow::Result<()> {
    let cfg = RunConfig::from_args(&args)?;
    // Before anything touches the topic or the group: one run per group and
    // topic on this host (see `state_file`).
    let state_dir = state_file::dir_for_run()?;
    let _run_lock = state_file::lock(&state_dir, &cfg.consume.group, &cfg.topic)?;
    crate::connect::prepare(&cfg.connect)?;
    warn_of_unused_session_timeout(&cfg);
    // Before sizing and forking: a bad or busy --metrics-addr is a usage error.
    let metrics = start_metrics_server(&cfg)?;
    // Sizing runs (and drops) its own runtime before any worker is forked.
    let workers = crate::plan::prepare_for_run_in(&cfg, Some(&state_dir))?.workers;
    let exe = own_binary()?;
    let log = WorkerLog {
        level: log_level.to_string(),
        format: log_format.to_string(),
    };
    Supervisor::start(cfg, exe, log, workers, state_dir, metrics)?.run()
}

/// The protocol whose broker sets the session: --session-timeout is not
/// used. (Under share groups the broker sets the session too, and the flag
/// says how long a worker bears error answers in a row: match it to the
/// broker's group.share.session.timeout.ms.)
fn warn_of_unused_session_timeout(cfg: &RunConfig) {
    if cfg.consume.group_protocol == GroupProtocol::Consumer && !cfg.consume.session_timeout_auto {
        tracing::warn!(
            "--session-timeout: not used with --group-protocol consumer, where the broker sets the \
             session (group.consumer.session.timeout.ms, 45 s by default); ignored"
        );
    }
}

/// `--metrics-addr`: serve the metrics from now on.
fn start_metrics_server(cfg: &RunConfig) -> anyhow::Result<Option<metrics_server::Shared>> {
    let Some(addr) = &cfg.metrics_addr else {
        return Ok(None);
    };
    let shared = metrics_server::Shared::default();
    let share = metrics_server::ShareFigures::default();
    metrics_server::start(addr, shared.clone(), share.clone())?;
    if cfg.consume.group_protocol == GroupProtocol::Share {
        let (group, topic) = (cfg.consume.group.clone(), cfg.topic.clone());
        crate::status::spawn_backlog_poller(cfg.connect.clone(), group, topic, share)?;
    }
    Ok(Some(shared))
}

/// Workers run the very binary the supervisor runs, even after a package
/// upgrade replaced the file on disk: /proc/self/exe is that image.
fn own_binary() -> anyhow::Result<PathBuf> {
    Path::new("/proc/self/exe")
        .exists()
        .then(|| PathBuf::from("/proc/self/exe"))
        .map_or_else(std::env::current_exe, Ok)
        .context("cannot find kswarm's own binary to start workers")
}

/// The fleet for `workers` workers, with the timeouts of `cfg`.
fn new_fleet(cfg: &RunConfig, workers: u32, now: Instant) -> Fleet {
    Fleet::new(
        workers,
        now,
        Timeouts {
            // The worker ends itself when its handler stalls for
            // --hang-timeout (with a message saying why); the supervisor's
            // kill is for a worker that stops reporting altogether.
            hang: cfg.consume.hang_timeout + HANG_MARGIN,
            join: join_allowance(cfg),
            stop: cfg.consume.shutdown_timeout + STOP_MARGIN,
            outage: cfg.broker_outage_limit,
        },
        BackoffPolicy::default(),
        cfg.max_restarts,
        thread_rng_jitter(),
    )
    .leave_together(!cfg.consume.static_membership)
}

/// Join under the members our predecessor for this group had: if it was
/// killed they are still in the group (taking them back beats waiting for
/// their sessions to expire); if it stopped, a broker that forgot them
/// hands out new ids (and tansu gets back a leader it may still name).
fn adopt_previous_members(fleet: &mut Fleet, cfg: &RunConfig, state_dir: &Path, workers: u32) {
    let Some(old) = state_file::read_previous(state_dir, &cfg.consume.group, &cfg.topic) else {
        return;
    };
    for m in old.members.into_iter().filter(|m| m.slot < workers) {
        info!(
            "slot {}: joining as member {}, left by the previous kswarm (pid {})",
            m.slot, m.member_id, old.pid
        );
        fleet.adopt(m.slot, m.member_id);
    }
}

/// The outcome's message, with the last stderr lines of the slot at fault.
fn with_stderr_tail(outcome: Outcome, tails: &Tails) -> String {
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
    msg
}

/// What `--metrics-addr` shows of the slots (see [`crate::metrics`]).
fn metrics_view(slots: &Fleet, cfg: &RunConfig) -> crate::metrics::FleetView {
    crate::metrics::FleetView {
        group: cfg.consume.group.clone(),
        topic: cfg.topic.clone(),
        target: slots.target(),
        rolling_restart: slots.is_rolling(),
        shutting_down: slots.is_shutting_down(),
        share: Vec::new(),
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
                    last_restart: last_restart(s),
                    unhealthy: health::unhealthy(s),
                }
            })
            .collect(),
    }
}

/// The slot's last restart, in wall-clock time (for a scrape or `status`
/// later than this view).
fn last_restart(s: &crate::supervisor::slot::Slot) -> Option<crate::metrics::LastRestart> {
    let (reason, at) = s.last_restart?;
    let ago = Instant::now().saturating_duration_since(at).as_secs();
    Some(crate::metrics::LastRestart {
        reason,
        at_unix_secs: crate::metrics::unix_now().saturating_sub(ago),
    })
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
                last_restart: last_restart(s),
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
