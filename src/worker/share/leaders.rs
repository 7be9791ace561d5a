//! The share worker's side of its leaders: one share session task per
//! partition leader (started on first use), each leader's next request
//! (a ShareFetch with the acknowledgements for its partitions, or a
//! ShareAcknowledge), their replies, and the closing of every session at
//! the end of a stop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::lease::{Lease, LockWindow};
use super::session::{session_task, Acks, Answer, SessionCmd, SessionReply, SessionTask};
use super::{End, ShareWorker, CLOSE_WAIT};
use crate::wire::share::AckType;
use crate::worker::error::WorkerError;

/// The most records one ShareFetch asks for: half the records a partition
/// lets be locked at once (`share.partition.max.record.locks`: the group's
/// own setting, else the broker's, 2,000 by default; None where the broker
/// does not tell it, taken as that default). Asking for all 2,000 took every
/// lock of the partition, so the next ShareFetch, which carries their
/// acknowledgements, found none free and waited out `fetch.wait.max.ms` each
/// time: 40,000 records/s for 2 workers on 2 partitions against 320,000 with
/// 1,000 (2026-12-07).
pub(super) fn records_per_fetch(locks: Option<i32>) -> i32 {
    const DEFAULT_LOCKS: i32 = 2000;
    (locks.unwrap_or(DEFAULT_LOCKS) / 2).max(1)
}

/// One leader's share session, as the worker loop sees it.
pub(super) struct SessionHandle {
    tx: mpsc::UnboundedSender<SessionCmd>,
    /// A request is under way (one at a time per session).
    pub(super) busy: bool,
    /// The session is open (acknowledgements can be sent without a fetch).
    open: bool,
}

impl ShareWorker {
    /// The session task of `node` (started on first use).
    fn session(&mut self, node: i32) -> Option<&mut SessionHandle> {
        if !self.sessions.contains_key(&node) {
            let addr = self.cluster.addr(node)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let task = SessionTask {
                node,
                addr,
                client_id: self.cluster.client_id().to_string(),
                connect_timeout: self.cluster.connect_timeout(),
                group: self.core.cfg.consume.group.clone(),
                member_id: self.member.member_id.clone(),
                topic_id: self.topic_id,
                max_wait_ms: self.core.cfg.consume.fetch_wait_ms,
                max_bytes: self.core.cfg.consume.fetch_size.wire(),
                partition_max_bytes: self.core.cfg.consume.partition_fetch_max_bytes,
                conn: None,
                epoch: 0,
                in_session: BTreeSet::new(),
            };
            tokio::spawn(session_task(task, rx, self.replies_tx.clone()));
            self.sessions.insert(
                node,
                SessionHandle {
                    tx,
                    busy: false,
                    open: false,
                },
            );
        }
        self.sessions.get_mut(&node)
    }

    /// Start each idle leader's next request: a ShareFetch (with the
    /// acknowledgements for its partitions) when the handler has room, else
    /// a ShareAcknowledge when acknowledgements wait.
    pub(super) fn dispatch(&mut self, stopping: bool) {
        let room = self
            .feed
            .handler
            .room()
            .min(
                self.feed
                    .handler
                    .window()
                    .saturating_sub(self.feed.handler.in_flight()),
            )
            .saturating_sub(self.queue.len());
        let fetch = !stopping && self.queue.is_empty() && room > 0;
        // Per leader: the partitions to read (assigned) and those to keep in
        // its session (records held or acknowledgements due).
        let mut by_node: BTreeMap<i32, (BTreeSet<i32>, BTreeSet<i32>)> = BTreeMap::new();
        let mut leaderless = false;
        let held: Vec<i32> = (self.handed.iter())
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| *p)
            .chain(
                self.acks
                    .iter()
                    .filter(|(_, a)| !a.is_empty())
                    .map(|(p, _)| *p),
            )
            .chain(self.waiting.partitions())
            .collect();
        for (&p, read) in self
            .assigned
            .iter()
            .map(|p| (p, true))
            .chain(held.iter().map(|p| (p, false)))
        {
            let Some(l) = self.cluster.leader(p) else {
                leaderless = true;
                continue;
            };
            let e = by_node.entry(l.node).or_default();
            if read && !stopping {
                e.0.insert(p);
            }
            e.1.insert(p);
        }
        if leaderless {
            debug!("a partition has no known leader now");
        }
        let mut fetched = 0usize;
        for (node, (read, keep)) in by_node {
            let acks: Acks = keep
                .iter()
                .filter_map(|p| self.acks.get(p).filter(|a| !a.is_empty()).map(|_| *p))
                .collect::<Vec<_>>()
                .into_iter()
                .filter_map(|p| self.acks.remove(&p).map(|a| (p, a)))
                .collect();
            let Some(s) = self.session(node) else {
                self.put_back(acks);
                continue;
            };
            if s.busy {
                self.put_back(acks);
                continue;
            }
            let cmd = if fetch && !read.is_empty() && fetched == 0 {
                fetched += 1;
                SessionCmd {
                    fetch: Some(room.min(self.fetch_records as usize) as i32),
                    want: keep.union(&read).copied().collect(),
                    acks,
                    close: false,
                }
            } else if !acks.is_empty() && s.open {
                SessionCmd {
                    fetch: None,
                    want: keep.iter().copied().collect(),
                    acks,
                    close: false,
                }
            } else {
                self.put_back(acks);
                continue;
            };
            let s = self.sessions.get_mut(&node).expect("started above");
            if s.tx.send(cmd).is_ok() {
                s.busy = true;
            }
        }
    }

    fn put_back(&mut self, acks: Acks) {
        for (p, mut a) in acks {
            let e = self.acks.entry(p).or_default();
            a.append(e);
            *e = a;
        }
    }

    pub(super) async fn replied(&mut self, mut r: SessionReply, stopping: bool) {
        if let Some(s) = self.sessions.get_mut(&r.node) {
            s.busy = false;
            s.open = r.open;
        }
        let stuck = self.streak(r.node, std::mem::take(&mut r.answer));
        self.put_back(r.unsent);
        self.ack_failures += r.ack_failures;
        for (p, o) in r.gaps {
            self.acks.entry(p).or_default().push((o, AckType::Gap));
        }
        let window = r.window.unwrap_or_else(|| {
            let now = Instant::now();
            LockWindow::new(now, now, 0)
        });
        for (rec, count) in r.records {
            if count > 1 {
                self.redelivered += 1;
            }
            if stopping {
                self.ack(rec.partition, rec.offset, AckType::Release);
            } else {
                let key = (rec.partition, rec.offset);
                let mut lease = Lease::new(count, window);
                // Held past its lock by the handler: told once.
                lease.warned = self.reacquired(key);
                self.leases.insert(key, lease);
                self.queue.push_back(rec);
            }
        }
        if let Some(p) = r.problem {
            let now = Instant::now();
            let due = self
                .last_problem
                .as_ref()
                .is_none_or(|(t, m)| *m != p || now.duration_since(*t) >= Duration::from_secs(5));
            if due {
                warn!(slot = self.core.cfg.slot, "share fetch: {p}; retrying");
                self.last_problem = Some((now, p));
            }
        }
        if r.refresh {
            if let Err(e) = self.cluster.refresh().await {
                debug!("share fetch: reading the leaders again: {e:#}");
            }
        }
        if let Some(why) = stuck {
            if self.stop.is_none() {
                let e = WorkerError::Other(anyhow::anyhow!(why));
                let deadline = self.drain_deadline();
                self.stop_with(End::Failed(e), deadline, true).await;
            } else {
                warn!(slot = self.core.cfg.slot, "{why}");
            }
        }
    }

    /// Count a leader's answer in its error streaks: Some(why the worker
    /// ends) when one request had nothing but error answers for a whole
    /// session timeout.
    fn streak(&mut self, node: i32, answer: Answer) -> Option<String> {
        let broker = self
            .cluster
            .addr(node)
            .unwrap_or_else(|| format!("node {node}"));
        match answer {
            Answer::None => None,
            Answer::Good(req) => {
                self.errors.answered(req, &broker);
                None
            }
            Answer::Error(req, error) => self.errors.failed(req, &broker, &error, Instant::now()),
        }
    }

    /// Close every session with the acknowledgements still due (epoch -1:
    /// whatever else it acquired goes back at once).
    pub(super) async fn close_sessions(&mut self) {
        let nodes: Vec<i32> = self.sessions.keys().copied().collect();
        let mut waiting = 0;
        for node in nodes {
            let keep: Vec<i32> = self
                .acks
                .keys()
                .copied()
                .filter(|p| self.cluster.leader(*p).map(|l| l.node) == Some(node))
                .collect();
            let acks: Acks = keep
                .iter()
                .filter_map(|p| self.acks.remove(p).map(|a| (*p, a)))
                .collect();
            let s = self.sessions.get_mut(&node).expect("listed");
            let cmd = SessionCmd {
                fetch: None,
                want: keep,
                acks,
                close: true,
            };
            if s.tx.send(cmd).is_ok() {
                waiting += 1;
            }
        }
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while waiting > 0 {
            match tokio::time::timeout_at(deadline, self.replies.recv()).await {
                Ok(Some(r)) => {
                    if r.closed {
                        waiting -= 1;
                    }
                    self.ack_failures += r.ack_failures;
                    let lost: usize = r.unsent.values().map(Vec::len).sum();
                    if lost > 0 {
                        warn!(
                            slot = self.core.cfg.slot,
                            "{lost} acknowledgement(s) could not be sent before stopping; those records are delivered again"
                        );
                    }
                }
                _ => break,
            }
        }
        let left: usize = self.acks.values().map(Vec::len).sum();
        if left > 0 {
            warn!(
                slot = self.core.cfg.slot,
                "{left} acknowledgement(s) had no open share session to go to; those records are delivered again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::records_per_fetch;

    #[test]
    fn a_share_fetch_asks_for_half_the_lock_limit() {
        assert_eq!(records_per_fetch(None), 1000, "the broker's default, 2,000");
        assert_eq!(records_per_fetch(Some(2000)), 1000);
        assert_eq!(records_per_fetch(Some(4000)), 2000);
        assert_eq!(records_per_fetch(Some(100)), 50);
        assert_eq!(records_per_fetch(Some(1)), 1, "never nothing");
        assert_eq!(records_per_fetch(Some(0)), 1);
        assert_eq!(records_per_fetch(Some(-5)), 1);
    }
}
