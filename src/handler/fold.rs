//! How a [`Handler`] folds what its backend says (acks, verdicts, result
//! lines, failures) into its in-flight order and the events the worker takes.

use std::time::Instant;

use super::*;

impl Handler {
    /// Folds one backend event into `order` / `pending` / `finished`.
    pub(super) fn absorb(&mut self, ev: Option<Inner>) {
        if self.finished {
            return;
        }
        match ev {
            Some(Inner::Acked(n)) => self.acked(n, None, None),
            Some(Inner::ExecAcked { lines, consumed }) => self.acked(lines, consumed, None),
            Some(Inner::ExecVerdicts { verdicts, consumed }) => {
                let finished = verdicts
                    .into_iter()
                    .map(|verdict| Finished {
                        verdict,
                        results: Vec::new(),
                    })
                    .collect::<Vec<_>>();
                self.acked(finished.len(), consumed, Some(finished))
            }
            Some(Inner::ExecOutputs { lines, consumed }) => self.outputs(lines, consumed),
            Some(Inner::OutputClosed) => {
                self.pending.push_back(HandlerEvent::OutputClosed);
                self.finished = true;
                self.records = None;
                self.staged = Chunk::default();
            }
            Some(Inner::Failed(msg)) => self.fail(msg),
            Some(Inner::NotStarted(msg)) => {
                self.not_started = true;
                self.fail(msg)
            }
            Some(Inner::Exited { status, stderr }) => {
                let unacked = self.order.len();
                let first = self.order.front().map(|f| (f.partition, f.offset));
                let input_closed = self.input_closed;
                match exec::exit_message(
                    &self.command,
                    status,
                    &stderr,
                    unacked,
                    input_closed,
                    first,
                ) {
                    None => {
                        if !status.success() {
                            tracing::warn!(
                                "--exec '{}' ended with {} after acknowledging every record{stderr}",
                                self.command,
                                child::describe_status(status)
                            );
                        }
                        self.finished = true;
                    }
                    Some(msg) => {
                        self.not_started =
                            child::not_started("--exec", &self.command, status).is_some();
                        self.fail(msg)
                    }
                }
            }
            Some(Inner::Drained) => {
                if self.order.is_empty() {
                    self.finished = true;
                } else {
                    let n = self.order.len();
                    self.fail(format!(
                        "internal error: handler stopped with {n} record(s) unacknowledged"
                    ));
                }
            }
            None => self.fail("internal error: the handler's tasks ended without a reason".into()),
        }
    }

    /// `--output-topic`: fold the handler's lines into finished records.
    pub(super) fn outputs(&mut self, lines: Vec<output::OutLine>, consumed: Option<u64>) {
        let mut finished = Vec::new();
        for line in lines {
            if finished.len() >= self.order.len() {
                let sent = self.order.len();
                self.untrusted(format!(
                    "--exec '{}': the handler gave results or finished records beyond the \
                     {sent} record(s) it was sent",
                    self.command
                ));
                return;
            }
            match line {
                output::OutLine::Result(r) => self.results.push(r),
                output::OutLine::Last(r) => {
                    self.results.push(r);
                    finished.push(Finished {
                        verdict: Verdict::Ok,
                        results: std::mem::take(&mut self.results),
                    });
                }
                output::OutLine::Done(verdict) => finished.push(Finished {
                    verdict,
                    results: std::mem::take(&mut self.results),
                }),
            }
        }
        if !finished.is_empty() {
            self.acked(finished.len(), consumed, Some(finished));
        }
    }

    pub(super) fn acked(
        &mut self,
        n: usize,
        consumed: Option<u64>,
        verdicts: Option<Vec<Finished>>,
    ) {
        if n > self.order.len() {
            let sent = self.order.len();
            self.untrusted(format!(
                "--exec '{}': the handler printed more lines on its stdout than records it was \
                 sent ({n} lines, {sent} record(s) waiting)",
                self.command
            ));
            return;
        }
        let now = Instant::now();
        if let Some(w) = self.window.as_mut() {
            w.acked(n, now, self.order.len());
        }
        if n > 0 {
            self.progress_at = now;
        }
        // One Ack per partition, with the highest offset acknowledged (records of a
        // partition are sent in offset order, so the last one seen is the highest).
        let mut acks: Vec<(Ack, u64, u64)> = Vec::new();
        let mut judged = Vec::with_capacity(if self.per_record { n } else { 0 });
        let mut verdicts = verdicts.map(Vec::into_iter);
        for Sent {
            partition,
            offset,
            lane,
            len,
        } in self.order.drain(..n)
        {
            if self.per_record {
                let (verdict, results) = match verdicts.as_mut().and_then(Iterator::next) {
                    Some(f) => (f.verdict, f.results),
                    None => (Verdict::Ok, Vec::new()),
                };
                judged.push(Judged {
                    lane,
                    partition,
                    offset,
                    verdict,
                    results,
                });
            }
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(len as usize);
            self.acked_bytes += u64::from(len);
            match acks.iter_mut().find(|a| a.0.partition == partition) {
                Some(a) => {
                    a.0.offset = offset;
                    a.1 += 1;
                    a.2 += u64::from(len);
                }
                None => acks.push((Ack { partition, offset }, 1, u64::from(len))),
            }
        }
        self.acked_total += n as u64;
        self.count_handled(&acks, n, now);
        let acks: Vec<Ack> = acks.into_iter().map(|a| a.0).collect();
        if let Some(read) = consumed {
            if self.acked_bytes > read {
                self.untrusted(format!(
                    "--exec '{}': the handler acknowledged records it had not read yet \
                     ({} record(s) acknowledged, but it had read only {read} of the {} bytes \
                     they take on its stdin)",
                    self.command, self.acked_total, self.acked_bytes
                ));
                return;
            }
        }
        if self.per_record {
            if !judged.is_empty() {
                self.pending.push_back(HandlerEvent::Judged(judged));
            }
        } else {
            self.pending.extend(acks.into_iter().map(HandlerEvent::Ack));
        }
    }

    /// The metrics of `n` records just acknowledged: per partition, and how
    /// long each waited since its chunk went to the backend.
    pub(super) fn count_handled(&mut self, acks: &[(Ack, u64, u64)], n: usize, now: Instant) {
        for (a, records, bytes) in acks {
            match self.handled.iter_mut().find(|h| h.0 == a.partition) {
                Some(h) => {
                    h.1 += records;
                    h.2 += bytes;
                }
                None => self.handled.push((a.partition, *records, *bytes)),
            }
        }
        let mut left = n;
        while left > 0 {
            let Some((at, count)) = self.flushed.front_mut() else {
                break;
            };
            let take = left.min(*count);
            self.latency
                .observe(now.saturating_duration_since(*at), take as u64);
            *count -= take;
            left -= take;
            if *count == 0 {
                self.flushed.pop_front();
            }
        }
    }

    /// Per partition (records, bytes) acknowledged since the start, and the
    /// acknowledgement latency histogram.
    pub fn handled(&self) -> (&[(i32, u64, u64)], &crate::metrics::LatencyHistogram) {
        (&self.handled, &self.latency)
    }

    /// The ack stream broke its contract: nothing it said can be trusted.
    /// Acks not yet taken by the worker are dropped with it.
    pub(super) fn untrusted(&mut self, what: String) {
        self.pending
            .retain(|e| !matches!(e, HandlerEvent::Ack(_) | HandlerEvent::Judged(_)));
        self.pending.push_back(HandlerEvent::Untrusted(format!(
            "{what}; each stdout line acknowledges one record, so print exactly one line per \
             record after handling it and send logs and other output to stderr (>&2). kswarm \
             trusts none of its acknowledgements: it takes back what it committed for this \
             worker's current partitions, and those records are delivered again"
        )));
        self.finished = true;
        self.records = None;
        self.staged = Chunk::default();
    }
}
