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
//! - reader: stdout -> number of lines -> `Inner::ExecAcked`, with how much
//!   of its stdin the handler had read by then (a handler that acknowledges
//!   more than it has read breaks the contract: see `StdinState`);
//! - stderr: to our stderr with a `[worker N] ` prefix (see `child`);
//! - monitor: waits for the child and tells how it ended (`Inner::Exited`), or
//!   that it stopped reading stdin / closed stdout while still running.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

use super::child::{self, Group, Tail};
use super::{AckLines, Chunk, HandlerEnv, Inner};
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
/// What the [`Handler`](super::Handler) can look at while the handler runs.
pub(super) struct Probe {
    /// The handler's stdin, when it can be told exactly (see [`StdinState`]).
    pub stdin: Option<Arc<StdinState>>,
    /// The inode of the pipe the handler acknowledges on (its stdout).
    pub ack_pipe: Option<u64>,
}

pub(super) fn start(
    cmd: &str,
    env: &HandlerEnv,
    records: mpsc::UnboundedReceiver<Chunk>,
    events: mpsc::UnboundedSender<Inner>,
    group: Group,
    mode: Arc<OnceLock<AckLines>>,
) -> anyhow::Result<Probe> {
    let mut c = child::command(cmd, env);
    c.stdout(std::process::Stdio::piped());
    let mut proc = c.spawn().map_err(|e| {
        anyhow::anyhow!("--exec '{cmd}': could not start the handler with sh -c: {e}")
    })?;
    group.set(proc.id());
    let stdin = proc.stdin.take().expect("stdin is piped");
    let stdout = proc.stdout.take().expect("stdout is piped");
    let ack_pipe = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&stdout))
        .ok()
        .map(|st| st.st_ino);
    let stderr = proc.stderr.take().expect("stderr is piped");
    set_pipe_size(&stdin);
    set_pipe_size(&stdout);

    let tail = Tail::default();
    let (broken_tx, broken_rx) = oneshot::channel();
    let (eof_tx, eof_rx) = oneshot::channel();
    let stdin_state = Arc::new(StdinState {
        fd: std::os::fd::AsRawFd::as_raw_fd(&stdin),
        written: AtomicU64::new(0),
        open: AtomicBool::new(true),
    });
    // Telling how much of its stdin the handler has read needs the writer
    // and the reader on one thread (see `StdinState`): a worker's runtime.
    let same_thread = matches!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    tokio::spawn(write_records(
        stdin,
        records,
        broken_tx,
        stdin_state.clone(),
    ));
    let probe = same_thread.then_some(stdin_state);
    tokio::spawn(read_acks(
        stdout,
        events.clone(),
        eof_tx,
        probe.clone(),
        LineReader {
            mode,
            verdicts: Default::default(),
            outputs: Default::default(),
            cmd: cmd.to_string(),
        },
    ));
    let stderr_done = tokio::spawn(child::forward_stderr(stderr, env.slot, tail.clone()));
    tokio::spawn(
        ExitWatch {
            proc,
            cmd: cmd.to_string(),
            events,
            group,
            tail,
            stderr_done,
        }
        .run(eof_rx, broken_rx),
    );
    Ok(Probe {
        stdin: probe,
        ack_pipe,
    })
}

/// Waits for the handler to exit and reports how: its exit status once its
/// last acks and stderr are read, or why it is stuck (stdout closed or
/// stdin no longer read while it keeps running).
struct ExitWatch {
    proc: tokio::process::Child,
    cmd: String,
    events: mpsc::UnboundedSender<Inner>,
    group: Group,
    tail: Tail,
    stderr_done: tokio::task::JoinHandle<()>,
}

impl ExitWatch {
    async fn run(
        mut self,
        eof_rx: oneshot::Receiver<()>,
        broken_rx: oneshot::Receiver<std::io::Error>,
    ) {
        let mut eof_rx = Some(eof_rx);
        let mut broken_rx = Some(broken_rx);
        let status = loop {
            tokio::select! {
                s = self.proc.wait() => break s,
                r = async { eof_rx.as_mut().expect("guarded").await }, if eof_rx.is_some() => {
                    eof_rx = None;
                    let _ = r;
                    let why = "closed its stdout but keeps running, so it can acknowledge nothing \
                               more; it must print one line per record on stdout";
                    match self.exit_within_grace(why).await {
                        Some(s) => break s,
                        None => return,
                    }
                }
                r = async { broken_rx.as_mut().expect("guarded").await }, if broken_rx.is_some() => {
                    broken_rx = None;
                    let Ok(err) = r else { continue }; // writer ended normally (input closed)
                    let why = format!(
                        "stopped reading its stdin ({err}) but keeps running; it must read records \
                         from stdin until EOF"
                    );
                    match self.exit_within_grace(&why).await {
                        Some(s) => break s,
                        None => return,
                    }
                }
            }
        };
        self.group.clear();
        // Every ack line it printed must be counted before we report the exit.
        if let Some(rx) = eof_rx {
            let _ = tokio::time::timeout(DRAIN_GRACE, rx).await;
        }
        let _ = tokio::time::timeout(DRAIN_GRACE, &mut self.stderr_done).await;
        let event = match status {
            Ok(status) => Inner::Exited {
                status,
                stderr: self.tail.describe(),
            },
            Err(e) => Inner::Failed(format!(
                "--exec '{}': waiting for the handler failed: {e}",
                self.cmd
            )),
        };
        let _ = self.events.send(event);
    }

    /// The handler's exit status if it exits within [`EXIT_GRACE`];
    /// otherwise report it stuck (`why`), wait for its end, and None.
    async fn exit_within_grace(
        &mut self,
        why: &str,
    ) -> Option<std::io::Result<std::process::ExitStatus>> {
        if let Ok(s) = tokio::time::timeout(EXIT_GRACE, self.proc.wait()).await {
            return Some(s);
        }
        let _ = self.events.send(Inner::Failed(format!(
            "--exec '{}': the handler {why}{}",
            self.cmd,
            self.tail.describe()
        )));
        let _ = self.proc.wait().await;
        self.group.clear();
        None
    }
}

/// The handler's stdin pipe as the ack reader sees it: how many bytes went
/// into it, and (with FIONREAD) how many still wait in it, so how many the
/// handler has read. Exact only when writer and reader run on one thread: the
/// writer adds each write's bytes right after the write returns, with no
/// await in between, and the reader asks only while the pipe is open (the fd
/// number cannot have been closed and reused).
pub(super) struct StdinState {
    fd: std::os::fd::RawFd,
    written: AtomicU64,
    open: AtomicBool,
}

impl StdinState {
    /// Bytes of its stdin the handler has read so far.
    pub(super) fn consumed(&self) -> Option<u64> {
        let waiting = self.unread()?;
        Some(self.written.load(Ordering::SeqCst).saturating_sub(waiting))
    }

    /// Bytes in its stdin pipe that the handler has not read yet.
    fn unread(&self) -> Option<u64> {
        if !self.open.load(Ordering::SeqCst) {
            return None;
        }
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points
        // at a live local; the fd is the open write end of the handler's
        // stdin pipe (checked just above, on the thread that would close it).
        #[allow(unsafe_code)]
        let r = unsafe { libc::ioctl(self.fd, libc::FIONREAD, &mut waiting) };
        if r != 0 || waiting < 0 {
            return None;
        }
        Some(waiting as u64)
    }
}

/// Writes chunks of record lines until the channel closes (then closes stdin:
/// EOF tells the handler to finish) or the pipe breaks (reported on `broken`).
async fn write_records(
    mut stdin: ChildStdin,
    mut records: mpsc::UnboundedReceiver<Chunk>,
    broken: oneshot::Sender<std::io::Error>,
    state: Arc<StdinState>,
) {
    'chunks: while let Some(chunk) = records.recv().await {
        let mut rest = &chunk.bytes[..];
        while !rest.is_empty() {
            match stdin.write(rest).await {
                Ok(0) => {
                    let _ = broken.send(std::io::ErrorKind::WriteZero.into());
                    break 'chunks;
                }
                Ok(n) => {
                    state.written.fetch_add(n as u64, Ordering::SeqCst);
                    rest = &rest[n..];
                }
                Err(e) => {
                    let _ = broken.send(e);
                    break 'chunks;
                }
            }
        }
    }
    state.open.store(false, Ordering::SeqCst);
    // Dropping stdin closes the pipe.
}

/// What the ack lines are ([`AckLines`], set before the first record;
/// unset: each line acknowledges one record) and the line cutters.
struct LineReader {
    mode: Arc<OnceLock<AckLines>>,
    verdicts: super::verdict::Lines,
    outputs: super::output::Lines,
    cmd: String,
}

impl LineReader {
    /// The event of one read's bytes (None: no whole line yet).
    fn event(&mut self, bytes: &[u8], consumed: impl Fn() -> Option<u64>) -> Option<Inner> {
        match self.mode.get() {
            Some(AckLines::Verdicts) => match self.verdicts.feed(bytes) {
                Ok(v) if v.is_empty() => None,
                Ok(verdicts) => Some(Inner::ExecVerdicts {
                    verdicts,
                    consumed: consumed(),
                }),
                Err(line) => Some(Inner::Failed(format!(
                    "--exec '{}': with --verdicts each line the handler prints on stdout \
                     must be {} (one per record, in order), but it printed {line}; send \
                     logs to stderr (>&2)",
                    self.cmd,
                    super::verdict::VERDICT_FORMS
                ))),
            },
            Some(AckLines::Outputs { verdicts }) => {
                self.outputs.verdicts = *verdicts;
                match self.outputs.feed(bytes) {
                    Ok(l) if l.is_empty() => None,
                    Ok(lines) => Some(Inner::ExecOutputs {
                        lines,
                        consumed: consumed(),
                    }),
                    Err(why) => Some(Inner::Failed(format!(
                        "--exec '{}' with --output-topic: {why}. Each stdout line is a result \
                         (a plain line also finishes its record), or one of {}; send logs to \
                         stderr (>&2)",
                        self.cmd,
                        super::output::DIRECTIVES
                    ))),
                }
            }
            _ => {
                let lines = memchr::memchr_iter(b'\n', bytes).count();
                (lines > 0).then(|| Inner::ExecAcked {
                    lines,
                    consumed: consumed(),
                })
            }
        }
    }
}

/// Reads the handler's stdout; each line acknowledges one record (or, per
/// [`AckLines`], gives its verdict or its results).
async fn read_acks(
    mut stdout: ChildStdout,
    events: mpsc::UnboundedSender<Inner>,
    eof: oneshot::Sender<()>,
    stdin: Option<Arc<StdinState>>,
    mut reader: LineReader,
) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let consumed = || stdin.as_ref().and_then(|s| s.consumed());
                let Some(event) = reader.event(&buf[..n], consumed) else {
                    continue;
                };
                let failed = matches!(event, Inner::Failed(_));
                if events.send(event).is_err() || failed {
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
/// `HandlerEvent::Failed`. `first`: (partition, offset) of the first record
/// not acknowledged, most likely the one it died on.
pub(super) fn exit_message(
    cmd: &str,
    status: std::process::ExitStatus,
    stderr: &str,
    unacked: usize,
    input_closed: bool,
    first: Option<(i32, i64)>,
) -> Option<String> {
    if input_closed && unacked == 0 {
        return None;
    }
    if let Some(msg) = child::not_started("--exec", cmd, status) {
        return Some(format!("{msg}{stderr}"));
    }
    let status = child::describe_status(status);
    let where_ = match first {
        Some((p, o)) => format!(
            "; the first record not acknowledged is at partition {p} offset {o} (delivered \
             again after the restart; a record that always kills the handler can be set aside \
             with --verdicts and --dead-letter-topic)"
        ),
        None => String::new(),
    };
    Some(if input_closed {
        format!(
            "--exec '{cmd}': the handler ended ({status}) with {unacked} record(s) not \
             acknowledged; it must print one line on stdout per record it handled before it \
             exits{where_}{stderr}"
        )
    } else {
        format!(
            "--exec '{cmd}': the handler ended ({status}) while kswarm was still sending it \
             records ({unacked} not acknowledged); an --exec handler must keep reading stdin \
             until EOF and print one line per record (for one run per batch use \
             --exec-batch){where_}{stderr}"
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
        assert_eq!(exit_message("cat", ok, "", 0, true, None), None);
        assert_eq!(
            exit_message("cat", ExitStatus::from_raw(1 << 8), "", 0, true, None),
            None
        );
        let m = exit_message("head -n 3", ok, "", 7, false, None).unwrap();
        assert!(
            m.contains("exit status 0") && m.contains("7 not acknowledged"),
            "{m}"
        );
        let m = exit_message(
            "nope",
            ExitStatus::from_raw(127 << 8),
            "; x",
            1,
            false,
            Some((0, 1)),
        )
        .unwrap();
        assert!(m.contains("command not found") && m.ends_with("; x"), "{m}");
        let m = exit_message("x", ExitStatus::from_raw(9), "; y", 2, true, Some((3, 40))).unwrap();
        assert!(m.contains("SIGKILL") && m.contains("2 record(s)"), "{m}");
        assert!(
            m.contains("partition 3 offset 40") && m.ends_with("; y"),
            "{m}"
        );
    }
}
