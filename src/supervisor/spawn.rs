//! Starting one worker: re-execute our own binary as the hidden `kswarm worker`
//! subcommand with a report pipe on fd 3 and a stderr pipe.
//!
//! Process groups: every worker leads its own process group (pgid = its pid),
//! which its handler (`sh -c CMD`) joins. So the supervisor can SIGKILL a hung
//! worker *and* its handler with one `killpg`, and a terminal ^C reaches only
//! the supervisor, which then decides: TERM to each worker, and on a second
//! ^C SIGKILL to each group. (systemd's KillMode=mixed sends TERM to the main
//! process only and SIGKILLs the whole cgroup at the end, which fits.)

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStderr, Command, Stdio};

use clap::{Args, CommandFactory as _};

use super::slot::Inherit;
use crate::cli::{RunArgs, WorkerArgs};

/// The fd number on which a worker finds its report pipe.
pub const REPORT_FD: i32 = 3;

/// A started worker: its pid and our ends of its pipes.
pub struct Spawned {
    pub pid: i32,
    pub reports: File,
    pub stderr: ChildStderr,
}

/// `worker --slot S --report-fd 3` plus the connect, topic and consume flags
/// of `run` (not the sizing, budget or hang flags, which are the supervisor's).
pub fn worker_argv(run: &RunArgs, slot: u32, inherit: Option<&Inherit>) -> Vec<OsString> {
    let c = &run.consume;
    let mut v: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: &str| {
        v.push(name.into());
        v.push(value.into());
    };
    flag("--brokers", &run.connect.brokers);
    flag("--connect-timeout", &run.connect.connect_timeout);
    flag("--topic", &run.topic);
    flag("--group", &c.group);
    if let Some(cmd) = &c.exec {
        flag("--exec", cmd);
    }
    if let Some(cmd) = &c.exec_batch {
        flag("--exec-batch", cmd);
    }
    flag("--batch-size", &c.batch_size);
    flag("--batch-wait", &c.batch_wait);
    flag("--batch-retries", &c.batch_retries);
    flag("--format", &c.format);
    flag("--from", &c.from);
    flag("--session-timeout", &c.session_timeout);
    flag("--rebalance-timeout", &c.rebalance_timeout);
    flag("--heartbeat-interval", &c.heartbeat_interval);
    flag("--commit-interval", &c.commit_interval);
    flag("--assignor", &c.assignor);
    if let Some(p) = &c.instance_prefix {
        flag("--instance-prefix", p);
    }
    flag("--max-in-flight", &c.max_in_flight);
    flag("--max-in-flight-bytes", &c.max_in_flight_bytes);
    flag("--max-in-flight-time", &c.max_in_flight_time);
    flag("--shutdown-timeout", &c.shutdown_timeout);
    flag("--hang-timeout", &c.hang_timeout);
    for kv in &c.extra {
        flag("-X", kv);
    }
    flag("--slot", &slot.to_string());
    flag("--report-fd", &REPORT_FD.to_string());
    match inherit {
        Some(Inherit::TakeOver(m)) => {
            flag("--resume-member-id", &m.member_id);
            flag("--resume-generation", &m.generation.to_string());
            let parts: Vec<String> = m.partitions.iter().map(i32::to_string).collect();
            flag("--resume-partitions", &parts.join(","));
        }
        Some(Inherit::Rejoin(id)) => flag("--rejoin-member-id", id),
        None => {}
    }
    if c.static_membership {
        v.push("--static-membership".into());
    }
    let mut argv: Vec<OsString> = vec!["worker".into()];
    argv.extend(v);
    argv
}

/// The `KSWARM_*` variables the worker's flags fall back to. The argv above
/// carries every value, so these are removed from the worker's environment:
/// an inherited `KSWARM_EXEC` must not fight an explicit `--exec-batch`.
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
    names
}

/// Start the worker for `slot`. Call from the main thread only: the
/// parent-death signal fires when the *thread* that forked the child ends.
pub fn spawn(
    exe: &Path,
    run: &RunArgs,
    slot: u32,
    inherit: Option<&Inherit>,
    log_level: &str,
    log_format: &str,
) -> io::Result<Spawned> {
    // O_CLOEXEC on both ends: no other child (a later worker) inherits them.
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let write_raw = write_end.as_raw_fd();
    let supervisor = std::process::id();

    let mut cmd = Command::new(exe);
    // `ps` shows the name kswarm was started as, not /proc/self/exe.
    cmd.arg0(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "kswarm".into()),
    );
    cmd.args(worker_argv(run, slot, inherit))
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
    install_child_setup(&mut cmd, write_raw, supervisor);
    let mut child = cmd.spawn()?;
    drop(write_end); // the child holds the only write end now: EOF = it is gone
    let stderr = child.stderr.take().expect("stderr was piped");
    Ok(Spawned {
        pid: child.id() as i32,
        reports: File::from(read_end),
        stderr,
    })
    // `child` is dropped without waiting: the supervisor reaps every worker
    // itself with waitpid(-1) on SIGCHLD.
}

/// In the forked child, before exec: put the report pipe on fd 3, and ask
/// the kernel to SIGKILL us when the supervisor dies.
#[allow(unsafe_code)]
fn install_child_setup(cmd: &mut Command, report_fd: i32, supervisor: u32) {
    // SAFETY: `pre_exec` runs between fork and exec in the child, where only
    // async-signal-safe calls are allowed. The closure calls only dup2, fcntl,
    // prctl and getppid (all async-signal-safe syscalls), allocates nothing,
    // takes no locks, and captures two integers by value.
    unsafe {
        cmd.pre_exec(move || {
            if report_fd == REPORT_FD {
                // Already on fd 3 (dup2 would be a no-op): just clear O_CLOEXEC.
                if libc::fcntl(REPORT_FD, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(report_fd, REPORT_FD) == -1 {
                // dup2's copy has no FD_CLOEXEC, so it survives exec.
                return Err(io::Error::last_os_error());
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

    #[test]
    fn worker_argv_carries_consume_flags_but_not_supervisor_flags() {
        let cli = crate::cli::Cli::try_parse_from([
            "kswarm",
            "run",
            "-b",
            "h:1",
            "-t",
            "t1",
            "-g",
            "g1",
            "-w",
            "3",
            "-p",
            "keep",
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
        ])
        .unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!()
        };
        let argv = worker_argv(&run, 2, None);
        let s: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = s.join(" ");
        assert_eq!(s[0], "worker");
        for want in [
            "--brokers h:1",
            "--topic t1",
            "--group g1",
            "--exec cat -n",
            "-X fetch.max.bytes=100",
            "--slot 2",
            "--report-fd 3",
            "--static-membership",
            "--from latest",
            "--hang-timeout 9s",
        ] {
            assert!(joined.contains(want), "{want} missing in {joined}");
        }
        for not in ["--workers", "--partitions", "--max-restarts", "5/10s"] {
            assert!(!joined.contains(not), "{not} leaked into {joined}");
        }
        // and the worker accepts it
        let mut full = vec!["kswarm".to_string()];
        full.extend(s);
        let parsed = crate::cli::Cli::try_parse_from(full).expect("worker argv parses");
        let crate::cli::Command::Worker(w) = parsed.command else {
            panic!()
        };
        assert_eq!((w.slot, w.report_fd), (2, Some(3)));
        assert_eq!(w.consume.exec.as_deref(), Some("cat -n"));
        assert!(w.consume.static_membership);

        // a replacement that takes over a dead member
        let m = Membership {
            member_id: "kswarm-2-abc".into(),
            generation: 7,
            partitions: vec![0, 3],
        };
        let cfg_of = |inherit: &Inherit| {
            let mut full = vec![std::ffi::OsString::from("kswarm")];
            full.extend(worker_argv(&run, 2, Some(inherit)));
            let parsed = crate::cli::Cli::try_parse_from(full).expect("inherit argv parses");
            let crate::cli::Command::Worker(w) = parsed.command else {
                panic!()
            };
            crate::config::WorkerConfig::from_args(&w).unwrap()
        };
        let cfg = cfg_of(&Inherit::TakeOver(m.clone()));
        let r = cfg.resume.expect("resume");
        assert_eq!(
            (r.member_id.as_str(), r.generation, r.partitions),
            ("kswarm-2-abc", 7, vec![0, 3])
        );
        assert_eq!(cfg.rejoin, None);
        // no partitions is still a valid take-over
        let m = Membership {
            partitions: vec![],
            ..m
        };
        let cfg = cfg_of(&Inherit::TakeOver(m));
        assert_eq!(cfg.resume.unwrap().partitions, Vec::<i32>::new());
        // a replacement that joins under its predecessor's member id
        let cfg = cfg_of(&Inherit::Rejoin("kswarm-2-def".into()));
        assert_eq!(cfg.resume, None);
        assert_eq!(cfg.rejoin.as_deref(), Some("kswarm-2-def"));
    }

    #[test]
    fn flag_env_vars_are_known() {
        let names = worker_flag_env_vars();
        assert!(names.contains(&"KSWARM_EXEC".to_string()));
        assert!(names.contains(&"KSWARM_BROKERS".to_string()));
        assert!(!names.contains(&"KSWARM_LOG_LEVEL".to_string()));
    }
}
