//! What `--exec` and `--exec-batch` share: how a handler process is started
//! (`sh -c` under a guard, environment, own process group, dies with its
//! worker), how its stderr reaches ours, and how its end is described.
//!
//! # Dying with the worker
//! Each handler runs under a guard (`kswarm guard CMD`, see [`super::guard`]),
//! a child of its worker with `PR_SET_PDEATHSIG(SIGTERM)`: when the worker
//! dies, the guard SIGKILLs every process of the handler, grandchildren that
//! ignore SIGTERM and EOF or call `setsid` included. The kernel sends the
//! parent-death signal when the *thread* that forked the child exits, not the
//! process. So children must be spawned from a thread that lives as long as
//! the worker: the worker runs a tokio `current_thread` runtime, and every
//! spawn here happens inside `Handler::start` or a task of that runtime, i.e.
//! on the runtime's own thread. Never spawn handlers from `spawn_blocking` or
//! another short-lived thread (the guard would end the handler when that
//! thread retires).
//!
//! The handler gets its own process group (so a Ctrl-C on the terminal reaches
//! kswarm, which then drains the handler through stdin EOF instead of the
//! handler dying mid-record), and `kill` asks the guard to end it all.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{ChildStderr, Command};
use tokio::sync::{mpsc, oneshot};

use super::HandlerEnv;

/// Lines of handler stderr kept for error messages.
const TAIL_LINES: usize = 5;
/// Characters kept of each of those lines.
const TAIL_LINE_CHARS: usize = 300;
/// Longer stderr lines are passed on in pieces of this size.
const MAX_STDERR_LINE: u64 = 64 * 1024;

/// `kswarm guard CMD` (which runs `sh -c CMD`, see [`super::guard`]) with the
/// handler environment, its own process group, and SIGTERM when this worker
/// dies; stdin piped, stderr piped (to [`forward_stderr`]).
pub(super) fn command(cmd: &str, env: &HandlerEnv) -> Command {
    let mut c = Command::new(&env.guard_exe);
    let parent = nix::unistd::getpid().as_raw();
    c.arg0("kswarm")
        .arg("guard")
        .arg(cmd)
        .env("KSWARM_WORKER", env.slot.to_string())
        .env("KSWARM_GROUP", &env.group)
        .env("KSWARM_TOPIC", &env.topic)
        .env(super::guard::PARENT_ENV, parent.to_string())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes two raw syscalls (prctl,
    // getppid), allocates nothing, takes no lock and touches no shared state;
    // its error values are built from raw errno numbers (no allocation).
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            // SIGTERM, not SIGKILL: the guard must live on long enough to
            // kill the handler's processes.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The worker may have died between fork and prctl: then nobody
            // would stop us later, so do not start at all.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    c
}

/// The pid of the running handler's guard (0 = none), for `kill`.
#[derive(Debug, Clone, Default)]
pub(super) struct Group(Arc<AtomicI32>);

impl Group {
    pub(super) fn set(&self, pid: Option<u32>) {
        self.0.store(pid.map_or(0, |p| p as i32), Ordering::SeqCst);
    }

    pub(super) fn clear(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    pub(super) fn pid(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|p| *p > 0)
    }

    pub(super) fn is_running(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }

    /// End the handler and every process it started, if one is running:
    /// SIGTERM asks its guard to SIGKILL its whole subtree, then itself.
    pub(super) fn kill(&self) {
        let pid = self.0.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// The last few stderr lines of a handler, for error messages.
#[derive(Debug, Clone, Default)]
pub(super) struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let mut t: String = text.chars().take(TAIL_LINE_CHARS).collect();
        if t.len() < text.len() {
            t.push_str("...");
        }
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == TAIL_LINES {
            q.pop_front();
        }
        q.push_back(t);
    }

    /// `; its last stderr lines: "a" | "b"` or an empty string.
    pub(super) fn describe(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            return String::new();
        }
        let lines: Vec<String> = q.iter().map(|l| format!("{l:?}")).collect();
        format!("; its last stderr lines: {}", lines.join(" | "))
    }
}

/// Copies the handler's stderr to ours line by line, each prefixed with
/// `[worker SLOT] ` (or as a JSON log event, see `logging::handler_line`),
/// one write per line (lines up to PIPE_BUF never interleave with other
/// workers' lines on a shared pipe). Ends at the handler's EOF.
pub(super) async fn forward_stderr(stderr: ChildStderr, slot: u32, tail: Tail) {
    let mut reader = BufReader::new(stderr);
    let out = stderr_writer();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        tail.push(&line);
        // If our stderr is stuck, this waits, and so does the handler's next
        // stderr write: backpressure, not memory. If it is gone, keep draining.
        let _ = out
            .send(ToStderr::Line(slot, std::mem::take(&mut line)))
            .await;
    }
    // Everything is on our stderr before the handler's end is reported (and
    // before a worker that exits right after could lose it).
    let (done_tx, done_rx) = oneshot::channel();
    if out.send(ToStderr::Flushed(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
}

enum ToStderr {
    /// A line of the handler in this slot.
    Line(u32, Vec<u8>),
    /// Answered once every line sent before it is written.
    Flushed(oneshot::Sender<()>),
}

/// Lines for our stderr, written by one blocking thread (a stderr that blocks
/// must not stall the worker's runtime).
fn stderr_writer() -> mpsc::Sender<ToStderr> {
    static WRITER: std::sync::OnceLock<mpsc::Sender<ToStderr>> = std::sync::OnceLock::new();
    WRITER
        .get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<ToStderr>(1024);
            let spawned = std::thread::Builder::new()
                .name("kswarm-stderr".into())
                .spawn(move || {
                    use std::io::Write as _;
                    while let Some(msg) = rx.blocking_recv() {
                        match msg {
                            // One write per line: whole lines up to PIPE_BUF.
                            ToStderr::Line(slot, line) => {
                                if let Some(text) = crate::logging::handler_line(slot, &line) {
                                    let _ = std::io::stderr().write_all(&text);
                                }
                            }
                            ToStderr::Flushed(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(
                    "cannot start the stderr writer thread ({e}); handler stderr is dropped"
                );
            }
            tx
        })
        .clone()
}

/// `exit status 3`, `signal 9 (SIGKILL)`.
pub(super) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        format!("{status}")
    }
}

/// The explanation for the exit statuses `sh` uses when it could not run the
/// command at all (127 not found, 126 not executable); None otherwise.
pub(super) fn not_started(flag: &str, cmd: &str, status: ExitStatus) -> Option<String> {
    match status.code() {
        Some(127) => Some(format!(
            "{flag} '{cmd}': command not found (sh exit status 127); check the command's name and \
             that it is on PATH (or give its full path)"
        )),
        Some(126) => Some(format!(
            "{flag} '{cmd}': command found but could not be executed (sh exit status 126); \
             check its permissions (chmod +x) and its #! line"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_described() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exit status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            "signal 9 (SIGKILL)"
        );
        assert!(
            not_started("--exec", "nope", ExitStatus::from_raw(127 << 8))
                .unwrap()
                .contains("command not found")
        );
        assert!(not_started("--exec", "x", ExitStatus::from_raw(1 << 8)).is_none());
    }

    #[test]
    fn tail_keeps_last_lines_shortened() {
        let t = Tail::default();
        assert_eq!(t.describe(), "");
        for i in 0..8 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push("x".repeat(1000).as_bytes());
        let d = t.describe();
        assert!(
            !d.contains("line 3") && d.contains("line 4") && d.contains("line 7"),
            "{d}"
        );
        assert!(d.contains("..."), "{d}");
        assert!(d.len() < 1000, "{d}");
    }
}
