//! One share session per partition leader, on a task of its own: the
//! client side of KIP-932's ShareFetch and ShareAcknowledge (epoch 0 opens,
//! then 1, 2, ..; -1 closes), one request at a time, as the share worker's
//! loop commands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::lease::LockWindow;
use crate::group::streak::ShareRequest;
use crate::record::Record;
use crate::wire::share::{self as sw, AckType};
use crate::wire::BrokerConn;

/// Acknowledgements waiting to be sent, per partition.
pub(super) type Acks = BTreeMap<i32, Vec<(i64, AckType)>>;

/// One request for a leader's session task.
#[derive(Debug)]
pub(super) struct SessionCmd {
    /// Some(max records): ShareFetch; None: ShareAcknowledge.
    pub(super) fetch: Option<i32>,
    /// The partitions its session must hold.
    pub(super) want: Vec<i32>,
    pub(super) acks: Acks,
    /// Close the session (epoch -1) with `acks`, then end the task.
    pub(super) close: bool,
}

/// What one request brought back.
#[derive(Debug, Default)]
pub(super) struct SessionReply {
    pub(super) node: i32,
    pub(super) records: Vec<(Record, i16)>,
    /// When `records` were acquired, and the broker's lock on them.
    pub(super) window: Option<LockWindow>,
    /// Acquired offsets without a record: (partition, offset).
    pub(super) gaps: Vec<(i32, i64)>,
    /// Acknowledgements not sent (no session, a failed request): try again.
    pub(super) unsent: Acks,
    /// Acknowledgements the broker refused.
    pub(super) ack_failures: u64,
    pub(super) problem: Option<String>,
    /// Read the leaders again.
    pub(super) refresh: bool,
    /// The session is open after this request.
    pub(super) open: bool,
    /// This was the closing request.
    pub(super) closed: bool,
    /// How the broker answered (for the error streaks).
    pub(super) answer: Answer,
}

/// How the leader answered one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Answer {
    /// No answer: no connection, nothing to send, no reply in time (an
    /// outage, not the broker's verdict).
    #[default]
    None,
    /// A good answer (a ShareFetch: without errors, or with records).
    Good(ShareRequest),
    /// An error answer: the request and the error.
    Error(ShareRequest, String),
}

/// The client side of one leader's share session.
pub(super) struct SessionTask {
    pub(super) node: i32,
    pub(super) addr: String,
    pub(super) client_id: String,
    pub(super) connect_timeout: Duration,
    pub(super) group: String,
    pub(super) member_id: String,
    pub(super) topic_id: u128,
    pub(super) max_wait_ms: i32,
    pub(super) max_bytes: i32,
    pub(super) partition_max_bytes: i32,
    pub(super) conn: Option<BrokerConn>,
    /// The next request's epoch: 0 opens a session.
    pub(super) epoch: i32,
    /// The partitions the broker's session holds.
    pub(super) in_session: BTreeSet<i32>,
}

pub(super) async fn session_task(
    mut s: SessionTask,
    mut rx: mpsc::UnboundedReceiver<SessionCmd>,
    tx: mpsc::UnboundedSender<SessionReply>,
) {
    while let Some(cmd) = rx.recv().await {
        let close = cmd.close;
        let mut reply = s.run(cmd).await;
        reply.node = s.node;
        reply.open = s.epoch > 0 && s.conn.is_some();
        reply.closed = close;
        if reply.problem.is_some() && !close {
            // Pace retries after a failure.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = tx.send(reply);
        if close {
            return;
        }
    }
}

/// Kafka's share session epochs: 1, 2, .. i32::MAX, then 1 again.
fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX {
        1
    } else {
        e + 1
    }
}

/// Whether a partition error means the leader moved.
fn leader_moved(code: i16) -> bool {
    use crate::wire::codes::*;
    matches!(
        code,
        NOT_LEADER_OR_FOLLOWER
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
            | LEADER_NOT_AVAILABLE
            | UNKNOWN_TOPIC_OR_PARTITION
            | UNKNOWN_TOPIC_ID
    )
}

impl SessionTask {
    async fn run(&mut self, cmd: SessionCmd) -> SessionReply {
        if self.conn.as_ref().is_none_or(BrokerConn::is_broken) {
            self.broken();
            if cmd.close {
                return SessionReply::unsent(cmd.acks);
            }
            match BrokerConn::connect(&self.addr, &self.client_id, self.connect_timeout).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let mut reply = SessionReply::unsent(cmd.acks);
                    reply.problem = Some(format!("leader {}: {e}", self.addr));
                    reply.refresh = true;
                    return reply;
                }
            }
        }
        if cmd.close || cmd.fetch.is_none() {
            self.acknowledge(cmd).await
        } else {
            self.fetch(cmd).await
        }
    }

    /// How long a request may take: the broker's wait and then some.
    fn timeout(&self) -> Duration {
        self.connect_timeout.max(Duration::from_secs(10))
            + Duration::from_millis(self.max_wait_ms.max(0) as u64)
    }

    /// ShareAcknowledge `cmd.acks` (closing the session if `cmd.close`).
    async fn acknowledge(&mut self, cmd: SessionCmd) -> SessionReply {
        if self.epoch == 0 {
            // No session: nothing to acknowledge in (records acquired in
            // a session that is gone were released with it).
            return SessionReply::unsent(cmd.acks);
        }
        let mut reply = SessionReply::default();
        let epoch = if cmd.close {
            sw::CLOSE_EPOCH
        } else {
            self.epoch
        };
        let plan = sw::ShareAckPlan {
            group: &self.group,
            member_id: &self.member_id,
            epoch,
            topic_id: self.topic_id,
            partitions: batches(&cmd.acks),
        };
        let timeout = self.timeout();
        let conn = self.conn.as_mut().expect("connected before");
        match tokio::time::timeout(timeout, sw::share_acknowledge(conn, &plan)).await {
            Ok(Ok(a)) if a.error == 0 => {
                reply.answer = Answer::Good(ShareRequest::Acknowledge);
                self.epoch = if cmd.close { 0 } else { next_epoch(self.epoch) };
                for (p, code, msg) in a.partitions {
                    if code != 0 {
                        let n = cmd.acks.get(&p).map_or(0, |x| x.len() as u64);
                        reply.ack_failures += n;
                        debug!(
                            partition = p,
                            "ShareAcknowledge: {n} acknowledgement(s) refused: {} {}",
                            crate::wire::group_msgs::code_name(code),
                            msg.unwrap_or_default()
                        );
                    }
                }
            }
            Ok(Ok(a)) => {
                self.session_failed(a.error);
                reply.unsent = cmd.acks;
                let error = coded(a.error, a.error_message);
                reply.problem = Some(format!("ShareAcknowledge to {}: {error}", self.addr));
                reply.answer = Answer::Error(ShareRequest::Acknowledge, error);
            }
            Ok(Err(e)) => {
                self.broken();
                reply.unsent = cmd.acks;
                reply.problem = Some(e.to_string());
            }
            Err(_) => {
                self.broken();
                reply.unsent = cmd.acks;
                reply.problem = Some(format!("ShareAcknowledge to {}: no answer", self.addr));
            }
        }
        if cmd.close {
            self.conn = None;
        }
        reply
    }

    /// ShareFetch up to `cmd.fetch` records of `cmd.want`, with `cmd.acks`.
    async fn fetch(&mut self, cmd: SessionCmd) -> SessionReply {
        let mut reply = SessionReply::default();
        let want: BTreeSet<i32> = cmd.want.iter().copied().collect();
        let (parts, forgotten, carried) = if self.epoch == 0 {
            // Opening: no acknowledgements allowed; they go with the next one.
            reply.unsent = cmd.acks;
            (
                want.iter().map(|p| (*p, Vec::new())).collect::<Vec<_>>(),
                Vec::new(),
                Acks::new(),
            )
        } else {
            let mut parts: BTreeMap<i32, Vec<sw::AckBatch>> = want
                .difference(&self.in_session)
                .map(|p| (*p, Vec::new()))
                .collect();
            for (p, b) in batches(&cmd.acks) {
                parts.insert(p, b);
            }
            let forgotten: Vec<i32> = self
                .in_session
                .iter()
                .filter(|p| !want.contains(p) && !parts.contains_key(p))
                .copied()
                .collect();
            (parts.into_iter().collect(), forgotten, cmd.acks)
        };
        let max_records = cmd.fetch.unwrap_or(1).max(1);
        let plan = sw::ShareFetchPlan {
            group: &self.group,
            member_id: &self.member_id,
            epoch: self.epoch,
            topic_id: self.topic_id,
            partitions: parts,
            forgotten: forgotten.clone(),
            max_wait_ms: self.max_wait_ms,
            max_bytes: self.max_bytes,
            partition_max_bytes: self.partition_max_bytes,
            max_records,
            batch_size: max_records.min(500),
        };
        let timeout = self.timeout();
        let conn = self.conn.as_mut().expect("connected before");
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout, sw::share_fetch(conn, &plan)).await;
        let received = Instant::now();
        let a = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.broken();
                reply.put_back(carried);
                reply.problem = Some(e.to_string());
                return reply;
            }
            Err(_) => {
                self.broken();
                reply.put_back(carried);
                reply.problem = Some(format!("ShareFetch to {}: no answer", self.addr));
                return reply;
            }
        };
        if a.error != 0 {
            self.session_failed(a.error);
            reply.put_back(carried);
            let error = coded(a.error, a.error_message);
            reply.problem = Some(format!("ShareFetch to {}: {error}", self.addr));
            reply.answer = Answer::Error(ShareRequest::Fetch, error);
            return reply;
        }
        if self.epoch == 0 {
            debug!(
                leader = %self.addr,
                lock_ms = a.lock_timeout_ms,
                "share session open; acquired records are ours for {} ms",
                a.lock_timeout_ms
            );
        }
        reply.window = Some(LockWindow::new(sent, received, a.lock_timeout_ms));
        self.epoch = next_epoch(self.epoch);
        for p in &forgotten {
            self.in_session.remove(p);
        }
        self.in_session
            .extend(plan.partitions.iter().map(|(p, _)| *p));
        for p in a.partitions {
            take_partition(p, &carried, &mut reply);
        }
        reply.answer = fetch_answer(&reply);
        reply
    }

    /// The session is unknown or out of step: open a new one next time.
    fn session_failed(&mut self, code: i16) {
        if matches!(
            code,
            sw::SHARE_SESSION_NOT_FOUND | sw::INVALID_SHARE_SESSION_EPOCH
        ) {
            self.epoch = 0;
            self.in_session.clear();
        } else {
            self.broken();
        }
    }

    fn broken(&mut self) {
        self.conn = None;
        self.epoch = 0;
        self.in_session.clear();
    }
}

impl SessionReply {
    /// A reply that sent nothing: `acks` are to be tried again.
    fn unsent(acks: Acks) -> Self {
        SessionReply {
            unsent: acks,
            ..SessionReply::default()
        }
    }

    fn put_back(&mut self, acks: Acks) {
        for (p, a) in acks {
            self.unsent.entry(p).or_default().extend(a);
        }
    }
}

/// The acknowledgements of each partition as the wire's batches.
fn batches(acks: &Acks) -> Vec<(i32, Vec<sw::AckBatch>)> {
    acks.iter().map(|(p, a)| (*p, sw::ack_batches(a))).collect()
}

/// How a ShareFetch answered without a top-level error went: an error if
/// partitions failed and no record came, else a good one.
fn fetch_answer(reply: &SessionReply) -> Answer {
    match &reply.problem {
        Some(p) if reply.records.is_empty() => Answer::Error(ShareRequest::Fetch, p.clone()),
        _ => Answer::Good(ShareRequest::Fetch),
    }
}

/// An error code and the broker's message, for a problem report.
fn coded(code: i16, message: Option<String>) -> String {
    format!(
        "{}{}",
        crate::wire::group_msgs::code_name(code),
        message.map(|m| format!(": {m}")).unwrap_or_default()
    )
}

/// One partition of a ShareFetch answer: the outcome of the
/// acknowledgements it carried (`carried`), then its acquired records, the
/// offsets acquired without a record, and those to release.
fn take_partition(p: sw::SharePartitionAnswer, carried: &Acks, reply: &mut SessionReply) {
    if p.ack_error != 0 {
        let n = carried.get(&p.partition).map_or(0, |x| x.len() as u64);
        reply.ack_failures += n;
        debug!(
            partition = p.partition,
            "ShareFetch: {n} acknowledgement(s) refused: {} {}",
            crate::wire::group_msgs::code_name(p.ack_error),
            p.ack_error_message.clone().unwrap_or_default()
        );
    }
    if p.error != 0 {
        reply.refresh |= leader_moved(p.error);
        reply.problem = Some(format!(
            "partition {}: {}",
            p.partition,
            coded(p.error, p.error_message)
        ));
        return;
    }
    match sw::acquired_records(p.partition, p.records, &p.acquired, &mut reply.records) {
        Ok(left) => {
            reply
                .gaps
                .extend(left.gaps.into_iter().map(|o| (p.partition, o)));
            if !left.unread.is_empty() {
                reply
                    .unsent
                    .entry(p.partition)
                    .or_default()
                    .extend(left.unread.into_iter().map(|o| (o, AckType::Release)));
            }
        }
        Err(e) => {
            // Undecodable: release what was acquired (it comes back,
            // and after the delivery limit the broker archives it).
            warn!("{e}; releasing the records acquired with it");
            let rel = reply.unsent.entry(p.partition).or_default();
            for r in &p.acquired {
                rel.extend((r.first..=r.last).map(|o| (o, AckType::Release)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(7), 8);
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn a_fetch_with_failed_partitions_and_no_record_is_an_error_answer() {
        let mut r = SessionReply::default();
        assert_eq!(fetch_answer(&r), Answer::Good(ShareRequest::Fetch));
        r.problem = Some("partition 0: UnknownServerError (-1)".into());
        assert_eq!(
            fetch_answer(&r),
            Answer::Error(
                ShareRequest::Fetch,
                "partition 0: UnknownServerError (-1)".into()
            )
        );
        let rec = Record {
            partition: 1,
            offset: 0,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: Vec::new(),
            delivery_count: Some(1),
            lane: crate::record::Lane::Main,
        };
        r.records.push((rec, 1));
        assert_eq!(fetch_answer(&r), Answer::Good(ShareRequest::Fetch));
    }

    #[test]
    fn moved_leaders_are_told_apart() {
        assert!(leader_moved(crate::wire::codes::NOT_LEADER_OR_FOLLOWER));
        assert!(!leader_moved(crate::wire::codes::NONE));
        assert!(!leader_moved(sw::INVALID_RECORD_STATE));
    }
}
