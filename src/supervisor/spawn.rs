//! Starting one worker: re-execute our own binary as the hidden `kswarm
//! spawned` subcommand. The worker gets its validated settings whole, as
//! JSON on a pipe (fd 4), not as flags to parse again: nothing it is told
//! shows in `ps`, and no value is checked twice. It reports on a pipe (fd 3)
//! and its stderr comes back on a third.
//!
//! Process groups: every worker leads its own process group (pgid = its pid),
//! so that a terminal ^C reaches only the supervisor, which then decides: a
//! graceful stop, and on a second ^C SIGKILL. (systemd's KillMode=mixed sends
//! TERM to the main process only and SIGKILLs the whole cgroup at the end,
//! which fits.) Each handler leads a process group of its own under a guard
//! (see `handler::guard`).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStderr, Command, Stdio};

use clap::{Args, CommandFactory as _};

use super::slot::Inherit;
use crate::cli::WorkerArgs;
use crate::config::{Resume, RunConfig, WorkerConfig};
use crate::fds::{CONFIG_FD, REPORT_FD};

/// A started worker: its pid and our ends of its pipes.
pub struct Spawned {
    pub pid: i32,
    pub reports: File,
    pub stderr: ChildStderr,
}

/// The settings of the worker for `slot`: those of `run` that concern a
/// member (not the sizing, budget or outage limit, which are the
/// supervisor's), and what it inherits from the slot's last worker.
pub fn worker_config(
    run: &RunConfig,
    slot: u32,
    host_workers: usize,
    inherit: Option<&Inherit>,
) -> WorkerConfig {
    let (resume, rejoin) = match inherit {
        Some(Inherit::TakeOver(m)) => (
            Some(Resume {
                member_id: m.member_id.clone(),
                generation: m.generation,
                partitions: m.partitions.clone(),
            }),
            None,
        ),
        Some(Inherit::Rejoin(id)) => (None, Some(id.clone())),
        None => (None, None),
    };
    WorkerConfig {
        connect: run.connect.clone(),
        topic: run.topic.clone(),
        consume: run.consume.clone(),
        slot,
        report_fd: Some(REPORT_FD),
        resume,
        rejoin,
        host_id: run.sizing.host_id.clone(),
        host_workers: host_workers as u32,
        expired: Vec::new(),
    }
}

/// The `KSWARM_*` variables the worker's flags fall back to. They are
/// removed from the worker's environment (and so from its handler's): the
/// worker is told its settings on its config pipe, and a handler has no
/// business reading kswarm's settings (or, later, its secrets).
fn worker_flag_env_vars() -> Vec<String> {
    let cmd = WorkerArgs::augment_args(clap::Command::new("worker"));
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    // Global flags of the top-level command (e.g. KSWARM_LOG_LEVEL) are set
    // explicitly by `spawn`, not removed.
    let top = crate::cli::Cli::command();
    let globals: Vec<String> = top
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    names.retain(|n| !globals.contains(n));
    names.extend(
        [
            "KSWARM_MAX_RESTARTS",
            "KSWARM_BROKER_OUTAGE_LIMIT",
            "KSWARM_WORKERS",
            "KSWARM_PARTITIONS",
        ]
        .map(String::from),
    );
    names
}

/// Start the worker for `slot` with `config`. Call from the main thread
/// only: the parent-death signal fires when the *thread* that forked the
/// child ends.
pub fn spawn(
    exe: &Path,
    config: &WorkerConfig,
    log_level: &str,
    log_format: &str,
) -> io::Result<Spawned> {
    // O_CLOEXEC on every end: no other child (a later worker) inherits them.
    let (report_read, report_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let (config_read, config_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let supervisor = std::process::id();
    let json = serde_json::to_vec(config).map_err(io::Error::other)?;

    let mut cmd = Command::new(exe);
    // `ps` shows the name kswarm was started as, not /proc/self/exe.
    cmd.arg0(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "kswarm".into()),
    );
    cmd.args(["spawned", "--slot", &config.slot.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .env("KSWARM_SUPERVISOR_PID", supervisor.to_string())
        .env("KSWARM_LOG_LEVEL", log_level)
        .env("KSWARM_LOG_FORMAT", log_format)
        .process_group(0);
    for name in worker_flag_env_vars() {
        cmd.env_remove(name);
    }
    install_child_setup(
        &mut cmd,
        report_write.as_raw_fd(),
        config_read.as_raw_fd(),
        supervisor,
    );
    let mut child = cmd.spawn()?;
    drop(report_write); // the child holds the only write end now: EOF = it is gone
    drop(config_read);
    // After the spawn: a config larger than the pipe's buffer is read as it
    // is written.
    let mut config_write = File::from(config_write);
    config_write.write_all(&json)?;
    drop(config_write);
    let stderr = child.stderr.take().expect("stderr was piped");
    Ok(Spawned {
        pid: child.id() as i32,
        reports: File::from(report_read),
        stderr,
    })
    // `child` is dropped without waiting: the supervisor reaps every worker
    // itself with waitpid(-1) on SIGCHLD.
}

/// In the forked child, before exec: the report pipe on fd 3, the config
/// pipe on fd 4, and a SIGKILL from the kernel when the supervisor dies.
#[allow(unsafe_code)]
fn install_child_setup(cmd: &mut Command, report_fd: i32, config_fd: i32, supervisor: u32) {
    // SAFETY: `pre_exec` runs between fork and exec in the child, where only
    // async-signal-safe calls are allowed. The closure calls only dup2,
    // fcntl, prctl and getppid (all async-signal-safe syscalls), allocates
    // nothing, takes no locks, and captures integers by value.
    unsafe {
        cmd.pre_exec(move || {
            // Move each pipe to its number; dup2's copy has no FD_CLOEXEC,
            // so it survives exec. (A pipe already on its number only needs
            // FD_CLOEXEC cleared; one on the other's number is moved away
            // first.)
            let mut config_fd = config_fd;
            if config_fd == REPORT_FD {
                config_fd = libc::dup(config_fd);
                if config_fd == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (from, to) in [(report_fd, REPORT_FD), (config_fd, CONFIG_FD)] {
                let r = if from == to {
                    libc::fcntl(to, libc::F_SETFD, 0)
                } else {
                    libc::dup2(from, to)
                };
                if r == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl: then our
            // parent is already someone else, and no death signal will come.
            if libc::getppid() as u32 != supervisor {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::slot::Membership;
    use clap::Parser;

    fn run(args: &[&str]) -> RunConfig {
        let mut argv = vec!["kswarm", "run", "-b", "h:1", "-t", "t1", "-g", "g1"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!()
        };
        RunConfig::from_args(&run).unwrap()
    }

    #[test]
    fn a_worker_gets_the_consume_settings_whole_and_what_it_inherits() {
        let cfg = run(&[
            "--exec",
            "cat -n",
            "--max-restarts",
            "5/10s",
            "--hang-timeout",
            "9s",
            "-X",
            "fetch.max.bytes=100",
            "--static-membership",
            "--from",
            "latest",
        ]);
        let member = Membership {
            member_id: "m-1".into(),
            generation: 7,
            partitions: vec![0, 2],
        };
        let w = worker_config(&cfg, 2, 3, Some(&Inherit::TakeOver(member)));
        assert_eq!((w.slot, w.report_fd), (2, Some(REPORT_FD)));
        assert_eq!(w.consume.fetch_size, crate::config::FetchSize::Fixed(100));
        assert_eq!(w.consume.hang_timeout, std::time::Duration::from_secs(9));
        assert!(w.consume.static_membership);
        assert_eq!(w.instance_id().as_deref(), Some("g1-2"));
        let r = w.resume.clone().expect("a take-over");
        assert_eq!(
            (r.member_id.as_str(), r.generation, r.partitions),
            ("m-1", 7, vec![0, 2])
        );
        // What crosses the pipe comes back the same.
        let back: WorkerConfig = serde_json::from_slice(&serde_json::to_vec(&w).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{w:?}"));
        let w = worker_config(&cfg, 0, 3, Some(&Inherit::Rejoin("m-0".into())));
        assert_eq!((w.resume, w.rejoin.as_deref()), (None, Some("m-0")));
    }

    #[test]
    fn flag_env_vars_are_known() {
        let names = worker_flag_env_vars();
        for n in [
            "KSWARM_BROKERS",
            "KSWARM_EXEC",
            "KSWARM_GROUP",
            "KSWARM_MAX_RESTARTS",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(!names.contains(&"KSWARM_LOG_LEVEL".to_string()));
    }
}
