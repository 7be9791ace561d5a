//! Record handlers: where a worker's records go, and how they come back
//! acknowledged.
//!
//! - stdout (no handler flag): lines on kswarm's stdout, acked once written
//!   (see `stdout` for how workers sharing one stdout never mix lines);
//! - `--exec CMD`: one long-running child, one ack line per record (`exec`);
//! - `--exec-batch CMD`: one run per batch, exit 0 acks it (`batch`).
//!
//! The [`Handler`] formats records on the worker's own thread into a
//! [`Chunk`] of lines ([`Handler::stage`]) and hands whole chunks to the
//! backend ([`Handler::flush`]): one channel message and one wake-up per
//! chunk, not per record. It keeps the positions of records staged and not
//! yet acknowledged, in send order. Every backend only says "the next n
//! records are done" (`Inner::Acked(n)`); the handler turns that into one
//! [`Ack`] per partition with the highest offset done. That order queue,
//! together with the worker staging at most [`Handler::room`] records (and
//! `send` waiting for room), bounds memory: at most `max_in_flight` records
//! exist between the worker and the handler process, whatever the backend.
//!
//! `--format value` with `--exec`: a value holding a newline would look like
//! two records to a line-reading handler, whose two ack lines would then
//! acknowledge a record it has not seen yet (lost on a crash). So such a
//! record fails the handler with a message pointing to `--format json`
//! (nothing is acknowledged past it; the worker restarts and kswarm stops
//! once the restart budget is spent). stdout and `--exec-batch` write such a
//! value as is.

mod batch;
mod child;
mod exec;
mod fold;
pub(crate) mod format;
pub mod guard;
pub mod limits;
pub mod output;
mod stdout;
pub mod verdict;
pub(crate) mod window;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Format, HandlerSpec};
use crate::record::{Lane, OutRecord, Record};

/// A record sent to the backend and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct Sent {
    offset: i64,
    partition: i32,
    lane: Lane,
    /// Bytes of its line.
    len: u32,
}

/// Formatted records on their way to a backend: their lines, one after
/// another, and where each line ends (the batch backend cuts batches there).
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub bytes: Vec<u8>,
    /// `bytes[..ends[0]]` is the first record's line, and so on.
    pub ends: Vec<usize>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
}

pub use batch::retry_delay;
pub use verdict::Verdict;

/// Per-record acknowledgement mode ([`Handler::per_record`]): what became of
/// the record at (partition, offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The topic it was read from (`--retry-delays`: a retry topic).
    pub lane: Lane,
    pub partition: i32,
    pub offset: i64,
    pub verdict: Verdict,
    /// `--output-topic`: the record's results (none otherwise).
    pub results: Vec<OutRecord>,
}

/// What an `--exec` handler's stdout lines are, when not one plain
/// acknowledgement per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLines {
    /// `--verdicts`: one verdict per record.
    Verdicts,
    /// `--output-topic`: results and the end of each record (see [`output`]).
    Outputs { verdicts: bool },
}

/// A record the handler finished: its verdict and its results.
#[derive(Debug)]
struct Finished {
    verdict: Verdict,
    results: Vec<OutRecord>,
}

/// The record at (partition, offset) and every record of that partition sent before it are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// What a handler process is told about where it runs (env KSWARM_WORKER,
/// KSWARM_GROUP, KSWARM_TOPIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerEnv {
    pub slot: u32,
    pub group: String,
    pub topic: String,
    /// `--retry-delays`: the retry topics, in order (the json format names
    /// the topic a record was read from).
    pub retry_topics: Vec<String>,
    /// The kswarm binary whose hidden `guard` subcommand runs each handler
    /// (see [`guard`]); a worker uses its own (`/proc/self/exe`).
    pub guard_exe: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerEvent {
    Ack(Ack),
    /// Per-record mode ([`Handler::per_record`]) instead of `Ack`: the next
    /// records in send order, each with its verdict (`Ok` for every line
    /// when the handler does not give verdicts).
    Judged(Vec<Judged>),
    /// Stdout handler only: our stdout was closed (`kswarm run ... | head`): a clean stop, not a crash.
    OutputClosed,
    /// The handler died, could not start, stopped reading, or broke the protocol: the worker must commit
    /// what was acked and exit non-zero (the supervisor restarts it; unacked records are delivered again).
    Failed(String),
    /// The handler printed ack lines that cannot be counting records (more lines than records it was
    /// sent or had read): none of its acknowledgements can be trusted. The worker must commit nothing
    /// more, take back what it committed for its current assignment, and exit non-zero.
    Untrusted(String),
}

/// Why [`Handler::stage`] or [`Handler::offer`] took no (more) records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The handler has stopped; its event says why.
    Stopped,
    /// This record cannot be handed to this handler (a newline in a value
    /// under `--format value` with `--exec`): everything before it can be
    /// delivered, nothing from it on. The message names partition and offset.
    Poison(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Stopped => f.write_str("the handler has stopped (its event says why)"),
            Refused::Poison(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Refused {}

/// What [`Handler::offer`] did with the records it was offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// Records taken (staged and handed over), from the front.
    pub taken: usize,
    /// Why it stopped before the end, if it did for another reason than a
    /// full in-flight window.
    pub refused: Option<Refused>,
}

/// What the backends tell the [`Handler`].
#[derive(Debug)]
enum Inner {
    /// The next n records, in send order, are done.
    Acked(usize),
    /// `--exec`: the handler printed `lines` ack lines, and by then had read
    /// `consumed` bytes of its stdin (None when that cannot be told). A
    /// handler acknowledges only records it has read: more acks than that
    /// prove that its ack lines do not count records.
    ExecAcked { lines: usize, consumed: Option<u64> },
    /// `--exec` with `--verdicts`: the verdicts of the next records, as
    /// `ExecAcked` otherwise.
    ExecVerdicts {
        verdicts: Vec<Verdict>,
        consumed: Option<u64>,
    },
    /// `--exec` with `--output-topic`: the next lines (see [`output`]), as
    /// `ExecAcked` otherwise.
    ExecOutputs {
        lines: Vec<output::OutLine>,
        consumed: Option<u64>,
    },
    /// stdout is closed (EPIPE).
    OutputClosed,
    /// The backend stopped for this reason.
    Failed(String),
    /// `sh` could not run the command at all (not found, not executable).
    NotStarted(String),
    /// The `--exec` child exited (`stderr`: its last lines, for messages).
    Exited {
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// stdout / batch: input closed and everything written or run.
    Drained,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stdout,
    Exec,
    Batch,
}

/// One worker's handler. Spawns on the current tokio runtime; see `child`
/// for why that must be the worker runtime's own thread.
pub struct Handler {
    kind: Kind,
    command: String,
    format: Format,
    max_in_flight: usize,
    /// The worker's topic, then its retry topics (the json format names
    /// the one a record was read from).
    topics: Vec<String>,
    /// None after close_input (or when the backend is gone).
    records: Option<mpsc::UnboundedSender<Chunk>>,
    /// Records staged and not yet handed to the backend.
    staged: Chunk,
    events: mpsc::UnboundedReceiver<Inner>,
    /// Records sent and not acknowledged, in send order.
    order: VecDeque<Sent>,
    /// Records acknowledged since the start, and their bytes.
    acked_total: u64,
    acked_bytes: u64,
    /// Per partition: records and bytes acknowledged since the start (the
    /// metrics; a few partitions per worker, so a short list).
    handled: Vec<(i32, u64, u64)>,
    /// When each chunk handed to the backend went, and how many of its
    /// records are not acknowledged yet (in order): acknowledgement latency.
    flushed: VecDeque<(Instant, usize)>,
    latency: crate::metrics::LatencyHistogram,
    /// `--max-in-flight-time`: the window that follows the handler's rate
    /// (None: only the count and byte bounds).
    window: Option<window::Window>,
    /// `--exec` on a worker's runtime: how much of its stdin the handler has read.
    stdin: Option<std::sync::Arc<exec::StdinState>>,
    /// `--exec`: the inode of the pipe it acknowledges on.
    ack_pipe: Option<u64>,
    /// The last acknowledgement, or when the handler last got records while
    /// it held none: how long it has held records without progress.
    progress_at: Instant,
    /// Bytes of their lines.
    in_flight_bytes: usize,
    /// No more records are staged while this many bytes are in flight.
    max_in_flight_bytes: usize,
    /// Events ready for next_event.
    pending: VecDeque<HandlerEvent>,
    /// No more events will come after `pending`.
    finished: bool,
    input_closed: bool,
    /// The handler ended because `sh` could not run its command.
    not_started: bool,
    group: child::Group,
    task: Option<tokio::task::AbortHandle>,
    /// Acknowledgements are told per record ([`HandlerEvent::Judged`]).
    per_record: bool,
    /// What an `--exec` handler's ack lines are (shared with its reader;
    /// unset: plain acknowledgements).
    lines: Arc<OnceLock<AckLines>>,
    /// `--output-topic`: the results given so far for the first record not
    /// finished.
    results: Vec<OutRecord>,
    /// Records that timed out twice (`--record-timeout`): never handed over.
    expired: limits::Expired,
}

impl Handler {
    pub async fn start(
        spec: &HandlerSpec,
        format: Format,
        max_in_flight: usize,
        env: HandlerEnv,
    ) -> anyhow::Result<Handler> {
        let (records_tx, records_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let group = child::Group::default();
        let mut task = None;
        let topics: Vec<String> = std::iter::once(env.topic.clone())
            .chain(env.retry_topics.iter().cloned())
            .collect();
        let (mut stdin, mut ack_pipe) = (None, None);
        let lines = Arc::new(OnceLock::new());
        let (kind, command) = match spec {
            HandlerSpec::Stdout => {
                stdout::start(records_rx, events_tx)?;
                (Kind::Stdout, String::new())
            }
            HandlerSpec::Exec(cmd) => {
                let probe = exec::start(
                    cmd,
                    &env,
                    records_rx,
                    events_tx,
                    group.clone(),
                    lines.clone(),
                )?;
                (stdin, ack_pipe) = (probe.stdin, probe.ack_pipe);
                (Kind::Exec, cmd.clone())
            }
            HandlerSpec::Batch {
                command,
                size,
                wait,
                retries,
            } => {
                let b = batch::Batcher {
                    cmd: command.clone(),
                    size: (*size).max(1),
                    wait: *wait,
                    retries: *retries,
                    env,
                    group: group.clone(),
                };
                let h = tokio::spawn(b.run(records_rx, events_tx));
                task = Some(h.abort_handle());
                (Kind::Batch, command.clone())
            }
        };
        Ok(Handler {
            kind,
            command,
            format,
            max_in_flight: max_in_flight.max(1),
            topics,
            records: Some(records_tx),
            staged: Chunk::default(),
            events: events_rx,
            order: VecDeque::new(),
            acked_total: 0,
            acked_bytes: 0,
            handled: Vec::new(),
            flushed: VecDeque::new(),
            latency: crate::metrics::LatencyHistogram::default(),
            window: None,
            stdin,
            ack_pipe,
            progress_at: Instant::now(),
            in_flight_bytes: 0,
            max_in_flight_bytes: usize::MAX,
            pending: VecDeque::new(),
            finished: false,
            input_closed: false,
            not_started: false,
            group,
            task,
            per_record: false,
            lines,
            results: Vec::new(),
            expired: limits::Expired::default(),
        })
    }

    /// From now on (call it before the first record) tell acknowledgements
    /// per record, as [`HandlerEvent::Judged`]. `verdicts`: an `--exec`
    /// handler's ack lines are verdicts (`--verdicts`); otherwise every
    /// line, or every record another backend finishes, is `Ok`.
    pub fn per_record(&mut self, verdicts: bool) {
        self.per_record = true;
        if verdicts && self.kind == Kind::Exec {
            let _ = self.lines.set(AckLines::Verdicts);
        }
    }

    /// `--output-topic` (an `--exec` handler; call it before the first
    /// record): its stdout lines are results ([`output`]), told per record
    /// as [`HandlerEvent::Judged`] with their results.
    pub fn with_outputs(&mut self, verdicts: bool) {
        self.per_record = true;
        let _ = self.lines.set(AckLines::Outputs { verdicts });
    }

    /// Stages and hands over one record, first waiting while max_in_flight records are
    /// unacknowledged (backpressure: a slow handler slows fetching instead of growing memory).
    /// Err if the handler is gone (a Failed event tells why) or refuses the record (then it
    /// fails with the reason). The worker offers whole fetched batches instead ([`Handler::offer`]).
    ///
    /// While it waits it reads the handler's events itself (kept for next_event). Cancelling
    /// it loses no event, but the record was then not sent (and is dropped).
    pub async fn send(&mut self, record: Record) -> anyhow::Result<()> {
        self.ready().await;
        if let Err(e) = self.stage(&record) {
            if let Refused::Poison(msg) = &e {
                self.fail(msg.clone());
            }
            return Err(e.into());
        }
        self.flush()
    }

    /// Records that may be staged before `max_in_flight` are unacknowledged
    /// (0 once the handler has stopped, or while the byte bound is reached).
    pub fn room(&self) -> usize {
        if self.finished || self.records.is_none() {
            return 0;
        }
        if self.in_flight_bytes >= self.max_in_flight_bytes {
            return 0;
        }
        self.max_in_flight.saturating_sub(self.order.len())
    }

    /// Also stop staging while `bytes` of formatted records are unacknowledged
    /// (`--max-in-flight-bytes`; one record is always let through, however large).
    pub fn limit_bytes(&mut self, bytes: usize) {
        self.max_in_flight_bytes = bytes.max(1);
    }

    /// Also keep the records in flight to about what the handler acknowledges
    /// in `time` (`--max-in-flight-time`, see [`window`]), so that a slow
    /// handler drains them within about `time` at a stop or a rebalance.
    /// `floor`: the window never goes below it (an `--exec-batch` handler
    /// needs whole batches).
    pub fn limit_time(&mut self, time: Duration, floor: usize) {
        self.window = Some(window::Window::new(time, floor, self.max_in_flight));
    }

    /// The window in records now.
    pub fn window(&self) -> usize {
        self.window
            .as_ref()
            .map_or(self.max_in_flight, |w| w.size().min(self.max_in_flight))
    }

    /// Bytes of the records staged or sent and not acked yet.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Stages and hands over as many of `records` (from the front) as the
    /// in-flight bounds allow, in chunks of about `chunk_bytes`. Never waits:
    /// when it takes fewer than all, offer the rest again after the next
    /// acknowledgement ([`Handler::next_event`]). A refused record is not
    /// taken; the records before it are handed over.
    pub fn offer(&mut self, records: &[Record], chunk_bytes: usize) -> Offered {
        let mut taken = 0;
        let now = Instant::now();
        let held = self.order.len();
        if let (Some(w), Some(stdin)) = (self.window.as_mut(), self.stdin.as_ref()) {
            // It read everything it holds and still acknowledges nothing.
            let handed = self.acked_bytes + self.in_flight_bytes as u64;
            let read_all = stdin.consumed().is_some_and(|c| c >= handed);
            if held > 0 && read_all && self.staged.ends.is_empty() {
                w.starved(now, held);
            }
        }
        let mut room = self.room().min(self.window().saturating_sub(held));
        let mut refused = None;
        for r in records {
            // The byte bound lets one record through, however large.
            if room == 0
                || (self.in_flight_bytes >= self.max_in_flight_bytes && !self.order.is_empty())
            {
                break;
            }
            if self.expired.contains(r.partition, r.offset) {
                match self.judge_expired(r) {
                    Ok(()) => {
                        taken += 1;
                        continue;
                    }
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if let Err(e) = self.stage(r) {
                refused = Some(e);
                break;
            }
            taken += 1;
            room -= 1;
            if self.staged.bytes.len() >= chunk_bytes && self.flush().is_err() {
                return Offered {
                    taken,
                    refused: Some(Refused::Stopped),
                };
            }
        }
        if self.flush().is_err() {
            refused = Some(Refused::Stopped);
        }
        if taken > 0 {
            if let Some(w) = self.window.as_mut() {
                w.handed(now, held);
            }
            if held == 0 {
                self.progress_at = now;
            }
        }
        Offered { taken, refused }
    }

    /// `--record-timeout`: these records timed out twice; they are not handed
    /// over again (see [`limits`]).
    pub fn expire(&mut self, expired: limits::Expired) {
        self.expired = expired;
    }

    /// A record that timed out twice, instead of handing it over: with
    /// verdicts it is judged `reject timeout` (the dead-letter path);
    /// otherwise it is refused as a poison record.
    fn judge_expired(&mut self, r: &Record) -> Result<(), Refused> {
        let verdicts = matches!(
            self.lines.get(),
            Some(AckLines::Verdicts | AckLines::Outputs { verdicts: true })
        );
        if self.per_record && verdicts {
            self.pending.push_back(HandlerEvent::Judged(vec![Judged {
                lane: r.lane,
                partition: r.partition,
                offset: r.offset,
                verdict: Verdict::Reject("timeout".into()),
                results: Vec::new(),
            }]));
            return Ok(());
        }
        Err(Refused::Poison(format!(
            "the record at partition {} offset {} timed out twice (--record-timeout): the \
             handler never finished it. Every record before it was delivered and committed; \
             kswarm skips nothing without --verdicts and --dead-letter-topic, which set such \
             a record aside with reason `timeout`",
            r.partition, r.offset
        )))
    }

    /// The pid of the running handler's guard: every process of the
    /// handler descends from it (None: no handler process runs now).
    pub fn guard_pid(&self) -> Option<i32> {
        self.group.pid()
    }

    /// The record held longest and for how long (`--record-timeout`):
    /// records are acknowledged in order, so the first unacknowledged one
    /// has been held since the last acknowledgement or since it was handed
    /// over, whichever came later.
    pub fn oldest_held(&self, now: Instant) -> Option<((i32, i64), Duration)> {
        Some((self.first_unacked()?, self.stalled_for(now)?))
    }

    /// Formats one record into the chunk for the backend (call [`Handler::flush`]
    /// to hand it over; never await with records staged). Does not wait: the
    /// caller keeps to [`Handler::room`]. Err if the handler has stopped or
    /// cannot take this record ([`Refused::Poison`]: nothing is failed yet,
    /// the records staged before it can still be handed over).
    pub fn stage(&mut self, record: &Record) -> Result<(), Refused> {
        if self.finished || self.records.is_none() {
            return Err(Refused::Stopped);
        }
        if self.kind == Kind::Exec
            && self.format == Format::Value
            && format::value_breaks_line(record)
        {
            return Err(Refused::Poison(format!(
                "--exec '{}': the record at partition {} offset {} has a newline in its value; \
                 with --format value each record must be one line (the handler acknowledges \
                 one line per record); use --format json, which escapes newlines. Every record \
                 before it was delivered and committed; kswarm stops here and skips nothing",
                self.command, record.partition, record.offset
            )));
        }
        let start = self.staged.bytes.len();
        let topic = match record.lane {
            Lane::Main => &self.topics[0],
            Lane::Retry(i) => self
                .topics
                .get(usize::from(i) + 1)
                .unwrap_or(&self.topics[0]),
        };
        format::encode(self.format, topic, record, &mut self.staged.bytes);
        let len = self.staged.bytes.len() - start;
        self.staged.ends.push(self.staged.bytes.len());
        self.in_flight_bytes += len;
        self.order.push_back(Sent {
            offset: record.offset,
            partition: record.partition,
            lane: record.lane,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        });
        Ok(())
    }

    /// Bytes staged and not yet handed over.
    pub fn staged_bytes(&self) -> usize {
        self.staged.bytes.len()
    }

    /// Hands the staged records to the backend. Err if the backend is gone
    /// (its events say why).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.staged.ends.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.staged);
        self.flushed.push_back((Instant::now(), chunk.len()));
        let Some(tx) = &self.records else {
            anyhow::bail!("the handler has stopped (its event says why)");
        };
        if tx.send(chunk).is_err() {
            // The backend is gone; the reason is (or will be) in its events.
            self.records = None;
            anyhow::bail!("the handler has stopped (its event says why)");
        }
        Ok(())
    }

    /// Returns once there is [`Handler::room`], or the handler has stopped (then `stage`
    /// fails). Cancel-safe: events read meanwhile are kept for next_event. (It borrows the
    /// handler mutably, like next_event, so the two cannot be arms of one select!.)
    pub async fn ready(&mut self) {
        while !self.finished
            && (self.order.len() >= self.max_in_flight
                || self.in_flight_bytes >= self.max_in_flight_bytes)
        {
            let ev = self.events.recv().await;
            self.absorb(ev);
        }
    }

    /// Next event; None after close_input() once everything sent has been acked or failed. Cancel-safe (tokio::select!).
    pub async fn next_event(&mut self) -> Option<HandlerEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            if self.finished {
                return None;
            }
            let ev = self.events.recv().await;
            self.absorb(ev);
        }
    }

    /// How long the handler has held records without acknowledging any
    /// (None: it holds none).
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        (!self.order.is_empty()).then(|| now.saturating_duration_since(self.progress_at))
    }

    /// Why a handler that acknowledges nothing is taken for hung, for the
    /// worker's message: which processes could still acknowledge.
    pub fn stall_message(&self, stalled: Duration, limit_flag: &str) -> String {
        let what = match self.kind {
            Kind::Stdout => {
                "the stdout writer (whoever reads kswarm's stdout does not read)".to_string()
            }
            Kind::Exec => format!("--exec '{}'", self.command),
            Kind::Batch => format!("--exec-batch '{}'", self.command),
        };
        let mut msg = format!(
            "{what} holds {} record(s) and has acknowledged none for {stalled:?} ({limit_flag})",
            self.order.len()
        );
        if let Some(inode) = self.ack_pipe {
            let holders = crate::proctree::pipe_holders(inode);
            let named: Vec<String> = holders.iter().map(|(p, c)| format!("{p} ({c})")).collect();
            if named.is_empty() {
                msg.push_str("; no process has its stdout open any more");
            } else {
                msg.push_str(&format!(
                    "; processes that can still write its acknowledgements: {}. If the handler \
                     closed its stdout while a process it started keeps it open, nothing can \
                     acknowledge any more",
                    named.join(", ")
                ));
            }
        }
        msg.push_str("; it is taken for hung and restarted (raise --hang-timeout for a handler that needs longer per record)");
        msg
    }

    /// Whether the handler ended because `sh` could not run its command at
    /// all (exit status 127 or 126): a configuration error, if it never
    /// acknowledged anything.
    pub fn could_not_start(&self) -> bool {
        self.not_started
    }

    /// (partition, offset) of the first record sent and not acknowledged.
    pub fn first_unacked(&self) -> Option<(i32, i64)> {
        self.order.front().map(|s| (s.partition, s.offset))
    }

    /// Records staged or sent and not acked yet.
    pub fn in_flight(&self) -> usize {
        self.order.len()
    }

    /// Nothing in flight, and every acknowledgement already taken by
    /// [`Handler::next_event`]: one batch of ack lines can make several
    /// events (one per partition), and a drain that stopped at an empty
    /// in-flight count would leave the last of them untaken (uncommitted).
    pub fn settled(&self) -> bool {
        self.order.is_empty() && self.pending.is_empty()
    }

    /// No more records: the handler finishes what it has (staged records
    /// included); its acks still arrive via next_event.
    pub async fn close_input(&mut self) {
        let _ = self.flush();
        self.input_closed = true;
        self.records = None;
    }

    /// Kill the handler's whole process group now (shutdown timeout passed).
    pub fn kill(&mut self) {
        self.group.kill();
        if let Some(t) = self.task.take() {
            t.abort();
        }
        // Keep what was acknowledged before the kill.
        while !self.finished {
            match self.events.try_recv() {
                Ok(ev) => self.absorb(Some(ev)),
                Err(_) => break,
            }
        }
        if !self.finished {
            let what = match self.kind {
                Kind::Stdout => "the stdout writer".to_string(),
                Kind::Exec => format!("--exec '{}'", self.command),
                Kind::Batch => format!("--exec-batch '{}'", self.command),
            };
            self.fail(format!(
                "{what} was killed with {} record(s) not acknowledged (--shutdown-timeout passed)",
                self.order.len()
            ));
        }
        self.records = None;
    }

    fn fail(&mut self, msg: String) {
        self.pending.push_back(HandlerEvent::Failed(msg));
        self.finished = true;
        self.records = None;
        self.staged = Chunk::default();
    }
}

impl Drop for Handler {
    /// A handler process never outlives its Handler (error paths of the worker included).
    fn drop(&mut self) {
        if self.group.is_running() {
            self.group.kill();
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
