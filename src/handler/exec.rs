//! `--exec CMD`: one long-running `sh -c CMD` per worker. Records go to its
//! stdin, one line each; every line it prints on stdout acknowledges the next
//! unacknowledged record (the [`Handler`](super::Handler) maps line counts to
//! records, in send order).
//!
//! Four tasks on the worker's runtime, so that writing records and reading
//! acknowledgements never wait for each other (a handler blocked on a full
//! stdout pipe would otherwise stop reading its stdin, and both sides hang):
//! - writer: chunks of lines (formatted by the worker, see `Chunk`) -> stdin,
//!   one write each, so a burst costs few syscalls and a lone record is
//!   written at once;
//! - reader: stdout -> number of lines -> `Inner::Acked(n)`;
//! - stderr: to our stderr with a `[worker N] ` prefix (see `child`);
//! - monitor: waits for the child and tells how it ended (`Inner::Exited`), or
//!   that it stopped reading stdin / closed stdout while still running.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

use super::child::{self, Group, Tail};
use super::{Chunk, HandlerEnv, Inner};
/// Pipe buffer we ask the kernel for (the default 64 KiB costs throughput;
/// 1 MiB is the unprivileged limit by default). Best effort.
const PIPE_SIZE: i32 = 1024 * 1024;
/// After the handler closed stdout or stopped reading stdin, how long we wait
/// for it to exit (an exit status explains more than "broken pipe").
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// After the handler exited, how long we wait for the rest of its stdout and
/// stderr (a grandchild may still hold them open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Starts the child and its tasks. Must run on the worker runtime's thread
/// (see `child` on PDEATHSIG).
pub(super) fn start(
    cmd: &str,
    env: &HandlerEnv,
    records: mpsc::UnboundedReceiver<Chunk>,
    events: mpsc::UnboundedSender<Inner>,
    group: Group,
) -> anyhow::Result<()> {
    let mut c = child::command(cmd, env);
    c.stdout(std::process::Stdio::piped());
    let mut proc = c.spawn().map_err(|e| {
        anyhow::anyhow!("--exec '{cmd}': could not start the handler with sh -c: {e}")
    })?;
    group.set(proc.id());
    let stdin = proc.stdin.take().expect("stdin is piped");
    let stdout = proc.stdout.take().expect("stdout is piped");
    let stderr = proc.stderr.take().expect("stderr is piped");
    set_pipe_size(&stdin);
    set_pipe_size(&stdout);

    let tail = Tail::default();
    let (broken_tx, broken_rx) = oneshot::channel();
    let (eof_tx, eof_rx) = oneshot::channel();
    tokio::spawn(write_records(stdin, records, broken_tx));
    tokio::spawn(read_acks(stdout, events.clone(), eof_tx));
    let stderr_done = tokio::spawn(child::forward_stderr(stderr, env.slot, tail.clone()));
    let cmd = cmd.to_string();
    tokio::spawn(async move {
        let mut eof_rx = Some(eof_rx);
        let mut broken_rx = Some(broken_rx);
        let status = loop {
            tokio::select! {
                s = proc.wait() => break s,
                r = async { eof_rx.as_mut().expect("guarded").await }, if eof_rx.is_some() => {
                    eof_rx = None;
                    let _ = r;
                    if let Ok(s) = tokio::time::timeout(EXIT_GRACE, proc.wait()).await {
                        break s;
                    }
                    let _ = events.send(Inner::Failed(format!(
                        "--exec '{cmd}': the handler closed its stdout but keeps running, so it \
                         can acknowledge nothing more; it must print one line per record on stdout{}",
                        tail.describe()
                    )));
                    let _ = proc.wait().await;
                    group.clear();
                    return;
                }
                r = async { broken_rx.as_mut().expect("guarded").await }, if broken_rx.is_some() => {
                    broken_rx = None;
                    let Ok(err) = r else { continue }; // writer ended normally (input closed)
                    if let Ok(s) = tokio::time::timeout(EXIT_GRACE, proc.wait()).await {
                        break s;
                    }
                    let _ = events.send(Inner::Failed(format!(
                        "--exec '{cmd}': the handler stopped reading its stdin ({err}) but keeps \
                         running; it must read records from stdin until EOF{}",
                        tail.describe()
                    )));
                    let _ = proc.wait().await;
                    group.clear();
                    return;
                }
            }
        };
        group.clear();
        // Every ack line it printed must be counted before we report the exit.
        if let Some(rx) = eof_rx {
            let _ = tokio::time::timeout(DRAIN_GRACE, rx).await;
        }
        let _ = tokio::time::timeout(DRAIN_GRACE, stderr_done).await;
        let event = match status {
            Ok(status) => Inner::Exited {
                status,
                stderr: tail.describe(),
            },
            Err(e) => Inner::Failed(format!(
                "--exec '{cmd}': waiting for the handler failed: {e}"
            )),
        };
        let _ = events.send(event);
    });
    Ok(())
}

/// Writes chunks of record lines until the channel closes (then closes stdin:
/// EOF tells the handler to finish) or the pipe breaks (reported on `broken`).
async fn write_records(
    mut stdin: ChildStdin,
    mut records: mpsc::UnboundedReceiver<Chunk>,
    broken: oneshot::Sender<std::io::Error>,
) {
    while let Some(chunk) = records.recv().await {
        if let Err(e) = stdin.write_all(&chunk.bytes).await {
            let _ = broken.send(e);
            return;
        }
    }
    // Dropping stdin closes the pipe.
}

/// Counts stdout lines; each is one acknowledgement.
async fn read_acks(
    mut stdout: ChildStdout,
    events: mpsc::UnboundedSender<Inner>,
    eof: oneshot::Sender<()>,
) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let lines = memchr::memchr_iter(b'\n', &buf[..n]).count();
                if lines > 0 && events.send(Inner::Acked(lines)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = eof.send(());
}

fn set_pipe_size(fd: &impl std::os::fd::AsRawFd) {
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
    );
}

/// What the exit of an `--exec` handler means. None: a clean end (we closed
/// its input and it acknowledged everything). Otherwise the message for
/// `HandlerEvent::Failed`.
pub(super) fn exit_message(
    cmd: &str,
    status: std::process::ExitStatus,
    stderr: &str,
    unacked: usize,
    input_closed: bool,
) -> Option<String> {
    if input_closed && unacked == 0 {
        return None;
    }
    if let Some(msg) = child::not_started("--exec", cmd, status) {
        return Some(format!("{msg}{stderr}"));
    }
    let status = child::describe_status(status);
    Some(if input_closed {
        format!(
            "--exec '{cmd}': the handler ended ({status}) with {unacked} record(s) not \
             acknowledged; it must print one line on stdout per record it handled before it \
             exits{stderr}"
        )
    } else {
        format!(
            "--exec '{cmd}': the handler ended ({status}) while kswarm was still sending it \
             records ({unacked} not acknowledged); an --exec handler must keep reading stdin \
             until EOF and print one line per record (for one run per batch use \
             --exec-batch){stderr}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn exit_messages() {
        let ok = ExitStatus::from_raw(0);
        assert_eq!(exit_message("cat", ok, "", 0, true), None);
        assert_eq!(
            exit_message("cat", ExitStatus::from_raw(1 << 8), "", 0, true),
            None
        );
        let m = exit_message("head -n 3", ok, "", 7, false).unwrap();
        assert!(
            m.contains("exit status 0") && m.contains("7 not acknowledged"),
            "{m}"
        );
        let m = exit_message("nope", ExitStatus::from_raw(127 << 8), "; x", 1, false).unwrap();
        assert!(m.contains("command not found") && m.ends_with("; x"), "{m}");
        let m = exit_message("x", ExitStatus::from_raw(9), "", 2, true).unwrap();
        assert!(m.contains("SIGKILL") && m.contains("2 record(s)"), "{m}");
    }
}
