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
use super::{format, HandlerEnv, Inner};
use crate::config::Format;
use crate::record::Record;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// After a run exited, how long we wait for the rest of its stderr.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Delay before retry number `retry` (1 = the first retry).
pub fn retry_delay(retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

pub(super) struct Batcher {
    pub cmd: String,
    pub size: usize,
    pub wait: Duration,
    pub retries: u32,
    pub format: Format,
    pub env: HandlerEnv,
    pub group: Group,
}

impl Batcher {
    /// Runs until the record channel closes (then `Drained`) or a batch fails.
    pub(super) async fn run(
        self,
        mut records: mpsc::UnboundedReceiver<Record>,
        events: mpsc::UnboundedSender<Inner>,
    ) {
        let mut buf = Vec::new();
        let mut closed = false;
        while !closed {
            let Some(first) = records.recv().await else {
                break;
            };
            let deadline = Instant::now() + self.wait;
            buf.clear();
            format::encode(self.format, &first, &mut buf);
            drop(first);
            let mut n = 1;
            while n < self.size {
                match tokio::time::timeout_at(deadline, records.recv()).await {
                    Ok(Some(r)) => {
                        format::encode(self.format, &r, &mut buf);
                        n += 1;
                    }
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            match self.run_with_retries(&buf, n).await {
                Ok(()) => {
                    if events.send(Inner::Acked(n)).is_err() {
                        return;
                    }
                }
                Err(msg) => {
                    let _ = events.send(Inner::Failed(msg));
                    return;
                }
            }
        }
        let _ = events.send(Inner::Drained);
    }

    async fn run_with_retries(&self, input: &[u8], n: usize) -> Result<(), String> {
        let mut retry = 0;
        loop {
            let (status, tail) = self.run_once(input).await?;
            if status.success() {
                return Ok(());
            }
            if let Some(msg) = child::not_started("--exec-batch", &self.cmd, status) {
                return Err(format!("{msg}{tail}"));
            }
            if retry >= self.retries {
                return Err(format!(
                    "--exec-batch '{}': the handler failed a batch of {n} record(s) with {} \
                     {} time(s) (1 run + --batch-retries {}); the records stay uncommitted and \
                     will be delivered again after the restart{tail}",
                    self.cmd,
                    child::describe_status(status),
                    retry + 1,
                    self.retries,
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_5s() {
        let ms: Vec<u128> = (1..=9).map(|r| retry_delay(r).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(retry_delay(1000), MAX_DELAY);
    }
}
