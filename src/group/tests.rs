//! Members of every protocol against a scripted in-process broker
//! ([`crate::wire::script`]): requests in, answers out, no Kafka running.
//! Each test scripts what the coordinator says and checks what the member
//! does: joins, rebalances, fenced members, refused commits, take-overs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::share::{ShareMember, ShareState};
use super::{evict, Assigned, Eviction, GroupError, GroupSettings, Member};
use crate::config::{Assignor, GroupProtocol};
use crate::wire::codes::*;
use crate::wire::script::{Reply, ScriptedBroker, Seen, SCRIPTED_TOPIC};

fn settings(b: &ScriptedBroker, protocol: GroupProtocol) -> GroupSettings {
    GroupSettings {
        brokers: vec![b.addr.clone()],
        connect_timeout: Duration::from_secs(2),
        client_id: "unit".into(),
        group: "g".into(),
        topic: SCRIPTED_TOPIC.into(),
        session_timeout: Duration::from_secs(6),
        session_timeout_auto: false,
        rebalance_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(20),
        assignors: vec![Assignor::Range],
        instance_id: None,
        protocol,
        remote_assignor: None,
    }
}

/// Wait (at most 5 s) until the broker has seen a request that `f` picks.
async fn until_seen(b: &ScriptedBroker, f: impl Fn(&Seen) -> bool) -> Seen {
    let t0 = Instant::now();
    loop {
        if let Some(s) = b.seen().into_iter().find(|s| f(s)) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "not seen; the broker saw {:#?}",
            b.seen()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within 5 s"))
}

/// The member ids a member's hook heard of, in order.
fn heard(m: &mut Member) -> Arc<Mutex<Vec<String>>> {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let into = ids.clone();
    m.on_member_id(move |id| into.lock().unwrap().push(id.to_string()));
    ids
}

/// A classic coordinator: hands out `m-N` ids on MEMBER_ID_REQUIRED, makes
/// every joiner the leader of a new generation, echoes the leader's
/// assignment in SyncGroup, and answers the rest with `code_of`.
struct ClassicScript {
    next_id: u32,
    generation: i32,
    /// Heartbeat codes to answer, first to last (then NONE).
    beats: Vec<i16>,
    /// JoinGroup codes for a known member id, first to last (then NONE).
    joins: Vec<i16>,
    /// OffsetCommit codes, first to last (then NONE).
    commits: Vec<i16>,
    /// OffsetFetches that find partition 2 in an open transaction.
    unsettled: u32,
}

impl ClassicScript {
    fn new() -> Self {
        Self {
            next_id: 1,
            generation: 0,
            beats: Vec::new(),
            joins: Vec::new(),
            commits: Vec::new(),
            unsettled: 0,
        }
    }

    fn answer(&mut self, seen: &Seen) -> Reply {
        match seen {
            Seen::JoinGroup {
                member_id,
                subscription,
                ..
            } if member_id.is_empty() => {
                let id = format!("m-{}", self.next_id);
                self.next_id += 1;
                let _ = subscription;
                join_reply(MEMBER_ID_REQUIRED, -1, &id, Vec::new())
            }
            Seen::JoinGroup {
                member_id,
                subscription,
                ..
            } => {
                let code = pop(&mut self.joins);
                if code != NONE {
                    return join_reply(code, -1, member_id, Vec::new());
                }
                self.generation += 1;
                let members = vec![(member_id.clone(), subscription.clone())];
                join_reply(NONE, self.generation, member_id, members)
            }
            Seen::Metadata { .. } => Reply::Partitions(3),
            Seen::SyncGroup {
                member_id,
                assignments,
                ..
            } => Reply::SyncGroup {
                error: NONE,
                assignment: assignments
                    .iter()
                    .find(|(m, _)| m == member_id)
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default(),
            },
            Seen::Heartbeat { .. } => Reply::Code(pop(&mut self.beats)),
            Seen::OffsetCommit { .. } => Reply::Code(pop(&mut self.commits)),
            Seen::LeaveGroup { .. } => Reply::Code(NONE),
            Seen::OffsetFetch { partitions, .. } => {
                let unsettled = std::mem::take(&mut self.unsettled);
                self.unsettled = unsettled.saturating_sub(1);
                let code = |p| match p {
                    2 if unsettled > 0 => UNSTABLE_OFFSET_COMMIT,
                    _ => NONE,
                };
                Reply::Offsets {
                    error: NONE,
                    offsets: partitions
                        .iter()
                        .map(|&p| (p, 100 + i64::from(p), code(p)))
                        .collect(),
                }
            }
            other => panic!("a classic member sent {other:?}"),
        }
    }
}

fn pop(codes: &mut Vec<i16>) -> i16 {
    if codes.is_empty() {
        NONE
    } else {
        codes.remove(0)
    }
}

fn join_reply(
    error: i16,
    generation_id: i32,
    member_id: &str,
    members: Vec<(String, bytes::Bytes)>,
) -> Reply {
    Reply::JoinGroup {
        error,
        generation_id,
        member_id: member_id.to_string(),
        leader: if members.is_empty() {
            String::new()
        } else {
            member_id.to_string()
        },
        protocol: Some("range".into()),
        members,
    }
}

async fn classic_broker(script: ClassicScript) -> ScriptedBroker {
    let script = Mutex::new(script);
    ScriptedBroker::start(move |seen| script.lock().unwrap().answer(seen)).await
}

#[tokio::test]
async fn classic_join_asks_for_an_id_leads_and_gets_every_partition() {
    let b = classic_broker(ClassicScript::new()).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    let ids = heard(&mut m);
    let a = within("join", m.join()).await.unwrap();
    assert_eq!(
        a,
        Assigned {
            generation_id: 1,
            member_id: "m-1".into(),
            leader: true,
            partitions: vec![0, 1, 2],
        }
    );
    assert_eq!(*ids.lock().unwrap(), vec!["m-1"]);
    let seen = b.seen();
    assert!(
        matches!(&seen[0], Seen::JoinGroup { member_id, protocols, .. } if member_id.is_empty() && protocols == &["range"])
    );
    assert!(matches!(&seen[1], Seen::JoinGroup { member_id, .. } if member_id == "m-1"));
    assert_eq!(
        seen[2],
        Seen::Metadata {
            topics: vec![SCRIPTED_TOPIC.into()]
        }
    );
    assert!(
        matches!(&seen[3], Seen::SyncGroup { member_id, generation_id: 1, assignments } if member_id == "m-1" && assignments.len() == 1)
    );
    // The heartbeat of generation 1 runs.
    until_seen(
        &b,
        |s| matches!(s, Seen::Heartbeat { member_id, generation_id: 1 } if member_id == "m-1"),
    )
    .await;
    let offsets = m.committed(&[0, 2]).await.unwrap();
    assert_eq!(offsets.get(&2), Some(&Some(102)));
    m.leave().await.unwrap();
    until_seen(
        &b,
        |s| matches!(s, Seen::LeaveGroup { member_ids, .. } if member_ids == &["m-1"]),
    )
    .await;
    assert_eq!(m.generation_id(), -1);
}

/// KIP-447: committed offsets are asked for as stable, and a partition
/// whose offsets sit in an open transaction is waited for past the connect
/// timeout (2 s here) instead of starting from the offset before it.
#[tokio::test]
async fn committed_offsets_wait_for_an_open_transaction_to_end() {
    let mut script = ClassicScript::new();
    script.unsettled = 9;
    let b = classic_broker(script).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    within("join", m.join()).await.unwrap();
    let started = Instant::now();
    let offsets = m.committed(&[0, 2]).await.unwrap();
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(offsets.get(&2), Some(&Some(102)));
    let fetches: Vec<bool> = b
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::OffsetFetch { require_stable, .. } => Some(require_stable),
            _ => None,
        })
        .collect();
    assert_eq!(fetches, vec![true; 10]);
    m.leave().await.unwrap();
}

#[tokio::test]
async fn classic_rebalance_notice_ends_the_generation_and_the_rejoin_keeps_the_id() {
    let mut script = ClassicScript::new();
    script.beats = vec![NONE, REBALANCE_IN_PROGRESS];
    let b = classic_broker(script).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    within("join", m.join()).await.unwrap();
    within("rebalance notice", m.rebalance_needed())
        .await
        .unwrap();
    let a = within("rejoin", m.join()).await.unwrap();
    assert_eq!((a.generation_id, a.member_id.as_str()), (2, "m-1"));
    until_seen(&b, |s| {
        matches!(
            s,
            Seen::Heartbeat {
                generation_id: 2,
                ..
            }
        )
    })
    .await;
    let joins = b
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::JoinGroup { .. }))
        .count();
    assert_eq!(joins, 3, "one id request, two joins under m-1");
}

#[tokio::test]
async fn classic_member_the_coordinator_forgot_starts_over_with_a_new_id() {
    let mut script = ClassicScript::new();
    script.beats = vec![UNKNOWN_MEMBER_ID];
    script.joins = vec![NONE, UNKNOWN_MEMBER_ID];
    let b = classic_broker(script).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    let ids = heard(&mut m);
    within("join", m.join()).await.unwrap();
    within("fenced", m.rebalance_needed()).await.unwrap();
    let a = within("rejoin", m.join()).await.unwrap();
    assert_eq!(a.member_id, "m-2");
    assert_eq!(*ids.lock().unwrap(), vec!["m-1", "m-2"]);
    assert_eq!(m.member_id(), "m-2");
}

#[tokio::test]
async fn classic_commits_refused_retried_or_fatal() {
    let mut script = ClassicScript::new();
    script.commits = vec![
        ILLEGAL_GENERATION,
        COORDINATOR_LOAD_IN_PROGRESS,
        NONE,
        NOT_COORDINATOR,
        NONE,
        GROUP_AUTHORIZATION_FAILED,
    ];
    let b = classic_broker(script).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    within("join", m.join()).await.unwrap();
    // A stale generation: nothing committed, rejoin.
    let e = m.commit(&[(0, 5)]).await.unwrap_err();
    assert!(matches!(e, GroupError::Rebalance), "{e:?}");
    // A transient error is retried until it passes.
    m.commit(&[(0, 5)]).await.unwrap();
    // A moved coordinator is found again on a new connection.
    let before = b.connections();
    m.commit(&[(1, 7)]).await.unwrap();
    assert!(
        b.connections() > before,
        "no reconnect after NOT_COORDINATOR"
    );
    // No rights: fatal, naming the flag.
    let GroupError::Fatal(msg) = m.commit(&[(0, 6)]).await.unwrap_err() else {
        panic!("not fatal")
    };
    assert!(msg.contains("--group"), "{msg}");
    let commits: Vec<_> = b
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::OffsetCommit {
                member_id,
                generation_id,
                offsets,
            } => Some((member_id, generation_id, offsets)),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 6);
    assert!(commits.iter().all(|(m, g, _)| m == "m-1" && *g == 1));
}

#[tokio::test]
async fn classic_take_over_beats_and_commits_as_the_dead_member() {
    let b = classic_broker(ClassicScript::new()).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Classic))
        .await
        .unwrap();
    let a = m.resume("dead-7", 7, vec![0, 1]);
    assert_eq!((a.generation_id, a.partitions.clone()), (7, vec![0, 1]));
    until_seen(
        &b,
        |s| matches!(s, Seen::Heartbeat { member_id, generation_id: 7 } if member_id == "dead-7"),
    )
    .await;
    m.commit(&[(1, 9)]).await.unwrap();
    let commit = until_seen(&b, |s| matches!(s, Seen::OffsetCommit { .. })).await;
    assert_eq!(
        commit,
        Seen::OffsetCommit {
            member_id: "dead-7".into(),
            generation_id: 7,
            offsets: vec![(1, 9)]
        }
    );
    assert!(
        !b.seen().iter().any(|s| matches!(s, Seen::JoinGroup { .. })),
        "a take-over must not join"
    );
}

#[tokio::test]
async fn classic_heartbeat_gives_the_generation_up_after_a_silent_session() {
    let silent = Arc::new(Mutex::new(false));
    let quiet = silent.clone();
    let mut script = ClassicScript::new();
    let b = ScriptedBroker::start(move |seen| {
        if *quiet.lock().unwrap() && matches!(seen, Seen::Heartbeat { .. }) {
            return Reply::Silence;
        }
        script.answer(seen)
    })
    .await;
    let mut s = settings(&b, GroupProtocol::Classic);
    s.session_timeout = Duration::from_millis(1500);
    let mut m = Member::connect(s).await.unwrap();
    within("join", m.join()).await.unwrap();
    *silent.lock().unwrap() = true;
    let t0 = Instant::now();
    within("rejoin notice", m.rebalance_needed()).await.unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "gave up after {took:?}, before a session"
    );
}

/// A consumer-protocol coordinator: epoch 0 joins get epoch 1 and
/// `first`; later beats keep the epoch, unless `next` says otherwise.
struct ConsumerScript {
    first: Vec<i32>,
    /// Answers to the beats after the join, first to last (then "unchanged").
    next: Vec<Reply>,
    epoch: i32,
}

impl ConsumerScript {
    fn answer(&mut self, seen: &Seen) -> Reply {
        match seen {
            Seen::ConsumerHeartbeat { epoch: 0, .. } => {
                self.epoch = 1;
                beat(NONE, 1, Some(self.first.clone()))
            }
            Seen::ConsumerHeartbeat { epoch: -1, .. } => beat(NONE, -1, None),
            Seen::ConsumerHeartbeat { .. } => {
                if self.next.is_empty() {
                    return beat(NONE, self.epoch, None);
                }
                let r = self.next.remove(0);
                if let Reply::Beat { epoch, .. } = &r {
                    self.epoch = (*epoch).max(self.epoch);
                }
                r
            }
            Seen::Metadata { .. } => Reply::Partitions(2),
            Seen::OffsetCommit { .. } => Reply::Code(NONE),
            other => panic!("a consumer-protocol member sent {other:?}"),
        }
    }
}

fn beat(error: i16, epoch: i32, assignment: Option<Vec<i32>>) -> Reply {
    Reply::Beat {
        error,
        epoch,
        interval_ms: 5000,
        assignment,
    }
}

async fn consumer_broker(first: Vec<i32>, next: Vec<Reply>) -> ScriptedBroker {
    let script = Mutex::new(ConsumerScript {
        first,
        next,
        epoch: 0,
    });
    ScriptedBroker::start(move |seen| script.lock().unwrap().answer(seen)).await
}

fn owned_at(s: &Seen, want_epoch: i32, want: &[i32]) -> bool {
    matches!(s, Seen::ConsumerHeartbeat { epoch, owned: Some(o), .. } if *epoch == want_epoch && o == want)
}

#[tokio::test]
async fn consumer_join_reconciles_a_new_assignment_and_commits_with_the_latest_epoch() {
    let b = consumer_broker(
        vec![0, 1],
        vec![
            beat(NONE, 1, None),
            beat(NONE, 2, Some(vec![1])),
            beat(NONE, 2, None),
            beat(NONE, 3, None),
        ],
    )
    .await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Consumer))
        .await
        .unwrap();
    let ids = heard(&mut m);
    let a = within("join", m.join()).await.unwrap();
    assert_eq!((a.generation_id, a.partitions.clone()), (1, vec![0, 1]));
    assert_eq!(a.member_id.len(), 22, "a KIP-1082 member id of our making");
    assert_eq!(*ids.lock().unwrap(), vec![a.member_id.clone()]);
    let first = &b.seen()[0];
    assert!(
        matches!(first, Seen::ConsumerHeartbeat { epoch: 0, owned: Some(o), subscribed: Some(t), .. } if o.is_empty() && t == &[SCRIPTED_TOPIC]),
        "{first:?}"
    );
    // The broker moves partition 0 away: the worker is told, and the next
    // join takes (and acknowledges) the new set.
    within("new assignment", m.rebalance_needed())
        .await
        .unwrap();
    let a2 = within("reconcile", m.join()).await.unwrap();
    assert_eq!((a2.generation_id, a2.partitions.clone()), (2, vec![1]));
    until_seen(&b, |s| owned_at(s, 2, &[1])).await;
    // The broker bumps the epoch without moving anything: commits carry it.
    until_seen(&b, |s| owned_at(s, 3, &[1])).await;
    m.commit(&[(1, 4)]).await.unwrap();
    let commit = until_seen(&b, |s| matches!(s, Seen::OffsetCommit { .. })).await;
    assert!(
        matches!(
            commit,
            Seen::OffsetCommit {
                generation_id: 3,
                ..
            }
        ),
        "{commit:?}"
    );
    m.leave().await.unwrap();
    until_seen(&b, |s| {
        matches!(s, Seen::ConsumerHeartbeat { epoch: -1, .. })
    })
    .await;
}

#[tokio::test]
async fn consumer_fenced_member_joins_again_under_a_new_id() {
    let b = consumer_broker(vec![0], vec![beat(FENCED_MEMBER_EPOCH, 0, None)]).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Consumer))
        .await
        .unwrap();
    let ids = heard(&mut m);
    let first = within("join", m.join()).await.unwrap().member_id;
    within("fenced", m.rebalance_needed()).await.unwrap();
    let again = within("rejoin", m.join()).await.unwrap();
    assert_ne!(again.member_id, first);
    assert_eq!(*ids.lock().unwrap(), vec![first, again.member_id.clone()]);
    until_seen(&b, |s| matches!(s, Seen::ConsumerHeartbeat { epoch: 0, member_id, .. } if *member_id == again.member_id)).await;
}

#[tokio::test]
async fn consumer_commit_with_a_stale_epoch_is_retried() {
    let commits = Arc::new(Mutex::new(vec![STALE_MEMBER_EPOCH, FENCED_MEMBER_EPOCH]));
    let script = Mutex::new(ConsumerScript {
        first: vec![0],
        next: Vec::new(),
        epoch: 0,
    });
    let c2 = commits.clone();
    let b = ScriptedBroker::start(move |seen| match seen {
        Seen::OffsetCommit { .. } => Reply::Code(pop(&mut c2.lock().unwrap())),
        other => script.lock().unwrap().answer(other),
    })
    .await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Consumer))
        .await
        .unwrap();
    within("join", m.join()).await.unwrap();
    // STALE_MEMBER_EPOCH: retried; FENCED_MEMBER_EPOCH: the member must rejoin.
    let e = m.commit(&[(0, 3)]).await.unwrap_err();
    assert!(matches!(e, GroupError::Rebalance), "{e:?}");
    let tries = b
        .seen()
        .iter()
        .filter(|s| matches!(s, Seen::OffsetCommit { .. }))
        .count();
    assert_eq!(tries, 2);
}

#[tokio::test]
async fn consumer_take_over_beats_as_the_dead_member_with_its_partitions() {
    let b = consumer_broker(vec![0], Vec::new()).await;
    let mut m = Member::connect(settings(&b, GroupProtocol::Consumer))
        .await
        .unwrap();
    m.resume("dead-member", 5, vec![1]);
    // The topic id is looked up first (a take-over knows partitions, not ids).
    until_seen(&b, |s| matches!(s, Seen::Metadata { .. })).await;
    let beat = until_seen(
        &b,
        |s| matches!(s, Seen::ConsumerHeartbeat { member_id, .. } if member_id == "dead-member"),
    )
    .await;
    assert!(owned_at(&beat, 5, &[1]), "{beat:?}");
    assert!(m.epochs().is_some());
    assert!(
        !b.seen()
            .iter()
            .any(|s| matches!(s, Seen::ConsumerHeartbeat { epoch: 0, .. })),
        "a take-over must not join"
    );
}

async fn state_until(
    rx: &mut tokio::sync::watch::Receiver<ShareState>,
    f: impl Fn(&ShareState) -> bool,
) -> ShareState {
    within("share state", async {
        loop {
            let now = rx.borrow_and_update().clone();
            if f(&now) {
                return now;
            }
            rx.changed().await.expect("share member ended");
        }
    })
    .await
}

#[tokio::test]
async fn share_member_is_assigned_rejoins_when_fenced_and_leaves() {
    let answers = Mutex::new(vec![
        beat(NONE, 1, Some(vec![0, 1])),
        beat(FENCED_MEMBER_EPOCH, 0, None),
        beat(NONE, 3, Some(vec![1])),
    ]);
    let b = ScriptedBroker::start(move |seen| match seen {
        Seen::ShareHeartbeat { epoch: -1, .. } => beat(NONE, -1, None),
        Seen::ShareHeartbeat { epoch, .. } => {
            let mut a = answers.lock().unwrap();
            if a.is_empty() {
                beat(NONE, *epoch, None)
            } else {
                a.remove(0)
            }
        }
        other => panic!("a share member sent {other:?}"),
    })
    .await;
    let mut m = ShareMember::start(settings(&b, GroupProtocol::Share));
    let mut rx = m.state();
    state_until(&mut rx, |s| {
        *s == ShareState::Assigned {
            epoch: 1,
            partitions: vec![0, 1],
        }
    })
    .await;
    state_until(&mut rx, |s| {
        *s == ShareState::Assigned {
            epoch: 3,
            partitions: vec![1],
        }
    })
    .await;
    m.leave(Duration::from_secs(5)).await;
    let joins = b
        .seen()
        .iter()
        .filter(|s| matches!(s, Seen::ShareHeartbeat { epoch: 0, .. }))
        .count();
    assert_eq!(joins, 2, "joined, was fenced, joined again");
    until_seen(
        &b,
        |s| matches!(s, Seen::ShareHeartbeat { epoch: -1, member_id } if *member_id == m.member_id),
    )
    .await;
}

/// Kafka's `Uuid.fromString`, which Kafka 4.1 applies to a share member's
/// id on every ShareFetch: at most 24 characters, URL-safe base64 of
/// exactly 16 bytes (the JDK's URL decoder takes it with or without padding).
fn kafka_uuid(s: &str) -> Option<[u8; 16]> {
    use base64::Engine as _;
    if s.len() > 24 {
        return None; // "Input string with prefix .. is too long to be decoded as a base64 UUID"
    }
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    b.try_into().ok()
}

#[test]
fn kafka_uuid_refuses_the_dashed_uuid_form() {
    assert_eq!(kafka_uuid("fa6e5552-caa5-4aa9-a974-c8a65f68a99a"), None);
    assert_eq!(
        kafka_uuid("AAAAAAAAAAAAAAAAAAAAAQ"),
        Some(1u128.to_be_bytes())
    );
    assert_eq!(
        kafka_uuid("AAAAAAAAAAAAAAAAAAAAAQ=="),
        Some(1u128.to_be_bytes())
    );
    assert_eq!(kafka_uuid("AAAA"), None);
}

#[tokio::test]
async fn share_member_ids_on_the_wire_are_kafka_uuids() {
    let b = ScriptedBroker::start(|seen| match seen {
        Seen::ShareHeartbeat { epoch, .. } => beat(NONE, (*epoch).max(1), Some(vec![0])),
        other => panic!("a share member sent {other:?}"),
    })
    .await;
    let one = ShareMember::start(settings(&b, GroupProtocol::Share));
    let two = ShareMember::start(settings(&b, GroupProtocol::Share));
    assert_ne!(one.member_id, two.member_id);
    for m in [&one, &two] {
        assert_eq!(m.member_id.len(), 22, "{}", m.member_id);
        assert!(kafka_uuid(&m.member_id).is_some(), "{}", m.member_id);
        let id = m.member_id.clone();
        until_seen(
            &b,
            |s| matches!(s, Seen::ShareHeartbeat { epoch: 0, member_id } if *member_id == id),
        )
        .await;
    }
}

#[tokio::test]
async fn share_member_answered_only_errors_for_a_session_fails_naming_the_request() {
    let b = ScriptedBroker::start(|seen| match seen {
        Seen::ShareHeartbeat { .. } => beat(UNKNOWN_SERVER_ERROR, 0, None),
        other => panic!("a share member sent {other:?}"),
    })
    .await;
    let mut s = settings(&b, GroupProtocol::Share);
    s.session_timeout = Duration::from_secs(1);
    let m = ShareMember::start(s);
    let mut rx = m.state();
    let t0 = Instant::now();
    let ShareState::Failing(msg) =
        state_until(&mut rx, |s| matches!(s, ShareState::Failing(_))).await
    else {
        unreachable!()
    };
    assert!(t0.elapsed() >= Duration::from_secs(1), "{msg}");
    assert!(
        msg.starts_with(&format!("ShareGroupHeartbeat to {} ", b.addr)),
        "{msg}"
    );
    assert!(msg.contains("UnknownServerError"), "{msg}");
}

#[tokio::test]
async fn share_member_of_a_broker_without_share_groups_fails_naming_the_way_out() {
    let b = ScriptedBroker::start(|_| beat(UNSUPPORTED_VERSION, 0, None)).await;
    let m = ShareMember::start(settings(&b, GroupProtocol::Share));
    let mut rx = m.state();
    let ShareState::Fatal(msg) = state_until(&mut rx, |s| matches!(s, ShareState::Fatal(_))).await
    else {
        unreachable!()
    };
    assert!(
        msg.contains("--group-protocol share") && msg.contains("4.2"),
        "{msg}"
    );
}

#[tokio::test]
async fn one_eviction_entry_point_for_every_protocol() {
    let codes = Arc::new(Mutex::new(vec![NOT_COORDINATOR]));
    let c2 = codes.clone();
    let b = ScriptedBroker::start(move |seen| match seen {
        Seen::LeaveGroup { .. } => Reply::Code(pop(&mut c2.lock().unwrap())),
        Seen::ConsumerHeartbeat { .. } | Seen::ShareHeartbeat { .. } => {
            beat(UNKNOWN_MEMBER_ID, -1, None)
        }
        other => panic!("an eviction sent {other:?}"),
    })
    .await;
    let dead = ["a".to_string(), "b".to_string()];
    for protocol in [
        GroupProtocol::Classic,
        GroupProtocol::Consumer,
        GroupProtocol::Share,
    ] {
        let e = Eviction::new(
            std::slice::from_ref(&b.addr),
            Duration::from_secs(2),
            "g",
            protocol,
        );
        within("evict", evict(&e, &dead, &[])).await.unwrap();
    }
    let seen = b.seen();
    // Classic: one LeaveGroup for both, tried again after NOT_COORDINATOR.
    let leaves: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::LeaveGroup { .. }))
        .collect();
    assert_eq!(leaves.len(), 2);
    assert!(matches!(leaves[1], Seen::LeaveGroup { member_ids, .. } if member_ids == &dead));
    // Consumer and share: a leave heartbeat each (unknown members are gone).
    for who in ["a", "b"] {
        assert!(seen.iter().any(|s| matches!(s, Seen::ConsumerHeartbeat { member_id, epoch: -1, .. } if member_id == who)));
        assert!(seen.iter().any(
            |s| matches!(s, Seen::ShareHeartbeat { member_id, epoch: -1 } if member_id == who)
        ));
    }
}
