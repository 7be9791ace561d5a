//! `kswarm guard CMD` (hidden): the parent of every handler process, so that
//! no handler process outlives its worker, whatever it does.
//!
//! # Why a guard process
//! A handler is `sh -c CMD`, and CMD may start further processes that ignore
//! SIGTERM, ignore EOF on stdin, or leave the process group. The kernel's
//! parent-death signal (PR_SET_PDEATHSIG) reaches only a direct child, and a
//! process group misses whatever calls `setsid`. A cgroup would catch all of
//! them but needs a delegated cgroup tree, which kswarm cannot count on when
//! started from a shell or an init script. So each handler runs under a small
//! guard, which is:
//! - a child subreaper (PR_SET_CHILD_SUBREAPER): every process the handler
//!   starts stays in the guard's subtree, even after its own parent exits;
//! - tied to its worker: PR_SET_PDEATHSIG(SIGTERM) set by the worker, plus a
//!   check of its parent pid every second;
//! - the one to clean up: when the worker dies (SIGKILL included, and a
//!   SIGKILLed supervisor kills its workers), when the worker asks (SIGTERM:
//!   `Handler::kill`), or when `sh` itself ends, it SIGKILLs its whole subtree
//!   and exits with `sh`'s status (a signal is re-raised), so the worker sees
//!   the handler's own exit status.
//!
//! The guard gives its stdin and stdout to `sh` and keeps neither (so the
//! worker still sees the handler close its stdout). If the guard itself is
//! SIGKILLed, `sh` dies with it (its PDEATHSIG) and the rest of the subtree
//! is re-parented to the supervisor, a subreaper too, which kills it.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, getppid, Pid};

use crate::proctree;

/// The environment variable with the worker's pid (the guard's expected parent).
pub const PARENT_ENV: &str = "KSWARM_GUARD_PARENT";
/// The only `KSWARM_*` variables a handler sees (set by its worker, see
/// `child::command`). Every other one (kswarm's flag fallbacks, the state
/// directory, the log settings, the supervisor's pid) is kswarm's business:
/// a handler that runs `kswarm` itself must not inherit them either.
pub const HANDLER_VARS: [&str; 3] = ["KSWARM_WORKER", "KSWARM_GROUP", "KSWARM_TOPIC"];

/// The names among `vars` to remove from the handler's environment: each
/// `KSWARM_*` but [`HANDLER_VARS`].
fn kswarm_vars_to_remove(
    vars: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    vars.filter(|n| {
        let n = n.to_string_lossy();
        n.starts_with("KSWARM_") && !HANDLER_VARS.contains(&n.as_ref())
    })
    .collect()
}

/// How often the guard checks that its worker is still its parent.
const PARENT_CHECK: Duration = Duration::from_secs(1);

/// Runs the guard; returns only on a set-up failure (before `sh` started).
pub fn run(cmd: &str) -> anyhow::Result<()> {
    let parent: Option<i32> = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
    proctree::become_subreaper()
        .context("cannot become a child subreaper (PR_SET_CHILD_SUBREAPER)")?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .context("cannot block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("cannot open a signalfd")?;
    if parent.is_some_and(|p| getppid().as_raw() != p) {
        // The worker died before our PDEATHSIG was armed: start nothing.
        std::process::exit(1);
    }

    let mut sh = Command::new("sh");
    sh.arg("-c").arg(cmd);
    for name in kswarm_vars_to_remove(std::env::vars_os().map(|(n, _)| n)) {
        sh.env_remove(name);
    }
    let me = getpid().as_raw();
    // SAFETY: runs in the forked child before exec; prctl and getppid are
    // async-signal-safe raw syscalls; nothing is allocated or locked.
    #[allow(unsafe_code)]
    unsafe {
        sh.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != me {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    // std resets the signal mask of the child, so sh starts with none blocked.
    let child = match sh.spawn() {
        Ok(c) => c,
        // As sh itself would answer a command it cannot run.
        Err(e) => {
            eprintln!("kswarm guard: cannot start sh -c: {e}");
            std::process::exit(127);
        }
    };
    let sh_pid = Pid::from_raw(child.id() as i32);
    drop(child); // reaped below with waitpid
    give_away_stdio();

    let status = loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(PARENT_CHECK).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, timeout);
        let mut stop = parent.is_some_and(|p| getppid().as_raw() != p);
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo != Signal::SIGCHLD as u32 {
                stop = true;
            }
        }
        if stop {
            // The worker is gone, or asks us to end the handler now.
            kill_subtree();
            reraise(Signal::SIGKILL);
        }
        if let Some(s) = reap(sh_pid) {
            break s;
        }
    };
    // sh has ended: whatever it left behind goes with it.
    kill_subtree();
    match status {
        WaitStatus::Exited(_, code) => std::process::exit(code),
        WaitStatus::Signaled(_, sig, _) => reraise(sig),
        _ => std::process::exit(1),
    }
}

/// stdin and stdout belong to the handler: the worker must see EOF on the
/// handler's stdout when the handler closes it, not when the guard exits.
fn give_away_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// Collect every ended child; the status of `main` if it was among them.
fn reap(main: Pid) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return found,
            Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) if p == main => {
                found = Some(s)
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return found,
        }
    }
}

fn reap_strays() {
    let _ = reap(Pid::from_raw(0));
}

/// SIGKILL everything below us.
fn kill_subtree() {
    proctree::kill_descendants(getpid().as_raw(), reap_strays);
}

/// End this process as `sig` would have: the worker sees the handler's
/// signal, not an exit code standing for it.
fn reraise(sig: Signal) -> ! {
    // SAFETY: SIG_DFL is not a handler function; nothing else changes.
    #[allow(unsafe_code)]
    let _ = unsafe { signal::signal(sig, signal::SigHandler::SigDfl) };
    let mut all = SigSet::empty();
    all.add(sig);
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
    let _ = signal::raise(sig);
    std::process::exit(128 + sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_kswarm_vars_reach_the_handler() {
        let names = [
            "KSWARM_WORKER",
            "KSWARM_GROUP",
            "KSWARM_TOPIC",
            "KSWARM_STATE_DIR",
            "KSWARM_LOG_LEVEL",
            "KSWARM_LOG_FORMAT",
            "KSWARM_SUPERVISOR_PID",
            PARENT_ENV,
            "PATH",
            "MY_KSWARM_THING",
        ];
        let gone = kswarm_vars_to_remove(names.iter().map(std::ffi::OsString::from));
        assert_eq!(
            gone,
            [
                "KSWARM_STATE_DIR",
                "KSWARM_LOG_LEVEL",
                "KSWARM_LOG_FORMAT",
                "KSWARM_SUPERVISOR_PID",
                PARENT_ENV,
            ]
        );
    }
}
