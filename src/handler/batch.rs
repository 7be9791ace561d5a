//! `--exec-batch CMD`: gather up to `size` records or `wait` time, run
//! `sh -c CMD` with the batch on its stdin; exit status 0 acknowledges the
//! whole batch. A non-zero status runs the same batch again after 100 ms,
//! 200 ms, 400 ms, .. (at most 5 s) up to `retries` times, then the handler
//! fails. Exit statuses 126/127 (sh could not run the command) fail at once.
//!
//! Batches run one after another (a partition's records stay in order and a
//! batch is acknowledged only after every earlier one). The handler's stdout is
//! kswarm's stdout; its stderr is prefixed like `--exec`'s.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::child::{self, Group, Tail};
use super::{Chunk, HandlerEnv, Inner};

/// Pauses between runs of a failed batch: 100 ms doubling to 5 s.
const RETRY_PAUSE: crate::backoff::Doubling =
    crate::backoff::Doubling::new(Duration::from_millis(100), Duration::from_secs(5));
/// After a run exited, how long we wait for the rest of its stderr.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Delay before retry number `retry` (1 = the first retry).
pub fn retry_delay(retry: u32) -> Duration {
    RETRY_PAUSE.delay(retry.saturating_sub(1))
}

pub(super) struct Batcher {
    pub cmd: String,
    pub size: usize,
    pub wait: Duration,
    pub retries: u32,
    pub env: HandlerEnv,
    pub group: Group,
}

impl Batcher {
    /// Runs until the record channel closes (then `Drained`) or a batch fails.
    pub(super) async fn run(
        self,
        mut records: mpsc::UnboundedReceiver<Chunk>,
        events: mpsc::UnboundedSender<Inner>,
    ) {
        let mut buf = Vec::new();
        // Records of a chunk that did not fit the last batch: (chunk, first record).
        let mut rest: Option<(Chunk, usize)> = None;
        let mut closed = false;
        loop {
            let (first, from) = match rest.take() {
                Some(r) => r,
                None if closed => break,
                None => match records.recv().await {
                    Some(c) => (c, 0),
                    None => break,
                },
            };
            let deadline = Instant::now() + self.wait;
            buf.clear();
            let mut n = 0;
            rest = take_records(first, from, self.size, &mut buf, &mut n);
            while n < self.size && rest.is_none() && !closed {
                match tokio::time::timeout_at(deadline, records.recv()).await {
                    Ok(Some(c)) => rest = take_records(c, 0, self.size - n, &mut buf, &mut n),
                    Ok(None) => closed = true,
                    Err(_) => break,
                }
            }
            match self.run_with_retries(&buf, n).await {
                Ok(()) => {
                    if events.send(Inner::Acked(n)).is_err() {
                        return;
                    }
                }
                Err(failure) => {
                    let _ = events.send(failure);
                    return;
                }
            }
        }
        let _ = events.send(Inner::Drained);
    }

    async fn run_with_retries(&self, input: &[u8], n: usize) -> Result<(), Inner> {
        let mut retry = 0;
        loop {
            let (status, tail) = self.run_once(input).await.map_err(Inner::Failed)?;
            if status.success() {
                return Ok(());
            }
            if let Some(msg) = child::not_started("--exec-batch", &self.cmd, status) {
                return Err(Inner::NotStarted(format!("{msg}{tail}")));
            }
            if retry >= self.retries {
                return Err(Inner::Failed(format!(
                    "--exec-batch '{}': the handler failed a batch of {n} record(s) with {} \
                     {} time(s) (1 run + --batch-retries {}); the records stay uncommitted and \
                     will be delivered again after the restart{tail}",
                    self.cmd,
                    child::describe_status(status),
                    retry + 1,
                    self.retries,
                )));
            }
            retry += 1;
            let delay = retry_delay(retry);
            tracing::warn!(
                "--exec-batch '{}' failed a batch of {n} with {}; retry {retry}/{} in {delay:?}",
                self.cmd,
                child::describe_status(status),
                self.retries
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One run: the batch on stdin, our stdout as its stdout.
    async fn run_once(&self, input: &[u8]) -> Result<(std::process::ExitStatus, String), String> {
        let mut c = child::command(&self.cmd, &self.env);
        c.stdout(std::process::Stdio::inherit());
        let mut proc = c.spawn().map_err(|e| {
            format!(
                "--exec-batch '{}': could not start the handler with sh -c: {e}",
                self.cmd
            )
        })?;
        self.group.set(proc.id());
        let mut stdin = proc.stdin.take().expect("stdin is piped");
        let stderr = proc.stderr.take().expect("stderr is piped");
        let tail = Tail::default();
        let stderr_done = tokio::spawn(child::forward_stderr(stderr, self.env.slot, tail.clone()));
        let write = async move {
            // A handler may exit without reading all of it; its status decides.
            let _ = stdin.write_all(input).await;
        };
        let (_, status) = tokio::join!(write, proc.wait());
        self.group.clear();
        let _ = tokio::time::timeout(DRAIN_GRACE, stderr_done).await;
        let status = status.map_err(|e| {
            format!(
                "--exec-batch '{}': waiting for the handler failed: {e}",
                self.cmd
            )
        })?;
        Ok((status, tail.describe()))
    }
}

/// Appends at most `max` records of `chunk`, from record `from` on, to `buf`
/// and counts them in `n`; returns what is left of the chunk.
fn take_records(
    chunk: Chunk,
    from: usize,
    max: usize,
    buf: &mut Vec<u8>,
    n: &mut usize,
) -> Option<(Chunk, usize)> {
    let to = chunk.len().min(from.saturating_add(max));
    let start = if from == 0 { 0 } else { chunk.ends[from - 1] };
    let end = if to == 0 { 0 } else { chunk.ends[to - 1] };
    buf.extend_from_slice(&chunk.bytes[start..end]);
    *n += to - from;
    (to < chunk.len()).then_some((chunk, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(lines: &[&str]) -> Chunk {
        let mut c = Chunk::default();
        for l in lines {
            c.bytes.extend_from_slice(l.as_bytes());
            c.ends.push(c.bytes.len());
        }
        c
    }

    #[test]
    fn batches_are_cut_at_record_boundaries() {
        let (mut buf, mut n) = (Vec::new(), 0);
        // Values may hold newlines (--format value): the cut follows the ends, not the bytes.
        let rest = take_records(chunk(&["a\n", "b\nb\n", "c\n"]), 0, 2, &mut buf, &mut n);
        assert_eq!((buf.as_slice(), n), (&b"a\nb\nb\n"[..], 2));
        let (c, from) = rest.expect("one record left");
        assert_eq!(from, 2);
        let (mut buf, mut n) = (Vec::new(), 0);
        assert!(take_records(c, from, 5, &mut buf, &mut n).is_none());
        assert_eq!((buf.as_slice(), n), (&b"c\n"[..], 1));
    }

    #[test]
    fn backoff_doubles_from_100ms_to_5s() {
        let ms: Vec<u128> = (1..=9).map(|r| retry_delay(r).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(retry_delay(1000), Duration::from_secs(5));
    }
}
