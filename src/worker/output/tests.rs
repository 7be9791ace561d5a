//! The transactional producer against a scripted in-process broker
//! (`wire::script`): the requests of a transaction in their order, and what
//! a fenced generation, a fenced producer and a record too large lead to.
//! The scripted broker finalizes no `transaction.version`, so these run the
//! KIP-98 requests (transaction version 1).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::wire::script::{Reply, ScriptedBroker, Seen};

const GOOD_GENERATION: i32 = 5;

fn settings(addr: &str) -> OutputSettings {
    OutputSettings {
        brokers: vec![addr.to_string()],
        client_id: "kswarm-test".into(),
        connect_timeout: Duration::from_secs(2),
        transactional_id: "kswarm-g-t-h-0".into(),
        transaction_timeout: Duration::from_secs(20),
        output_topic: "out".into(),
        dead_letter_topic: None,
        group: "g".into(),
        input_topic: "t".into(),
        window: Duration::from_secs(2),
    }
}

fn meta(generation: i32) -> GroupMetadata {
    GroupMetadata {
        group: "g".into(),
        member_id: "m-1".into(),
        generation,
        instance_id: None,
    }
}

fn rec(v: &str) -> OutRecord {
    OutRecord {
        key: None,
        value: Some(Bytes::from(v.to_string())),
        headers: Vec::new(),
    }
}

/// A broker whose Produce answers `produce_code`; TxnOffsetCommit of any
/// generation but [`GOOD_GENERATION`] answers ILLEGAL_GENERATION.
async fn broker(produce_code: i16) -> ScriptedBroker {
    ScriptedBroker::start(move |seen| match seen {
        Seen::Metadata { .. } => Reply::Partitions(2),
        Seen::InitProducerId { .. } => Reply::Producer {
            error: 0,
            id: 7,
            epoch: 3,
        },
        Seen::Produce { .. } => Reply::Code(produce_code),
        Seen::TxnOffsetCommit { generation_id, .. } if *generation_id != GOOD_GENERATION => {
            Reply::Code(crate::wire::codes::ILLEGAL_GENERATION)
        }
        _ => Reply::Code(0),
    })
    .await
}

/// The transaction requests seen so far (Metadata left out).
fn txn_requests(b: &ScriptedBroker) -> Vec<Seen> {
    b.seen()
        .into_iter()
        .filter(|s| !matches!(s, Seen::Metadata { .. }))
        .collect()
}

#[tokio::test]
async fn a_commit_writes_the_results_then_the_offsets_in_one_transaction() {
    let b = broker(0).await;
    let mut out = Output::start(settings(&b.addr)).await.unwrap();
    out.send(1, vec![rec("a"), rec("b")], false).await.unwrap();
    out.commit(&[(1, 10)], &meta(GOOD_GENERATION))
        .await
        .unwrap();
    let produce = |base: i32, values: &[&str]| Seen::Produce {
        topic: "out".into(),
        partition: 1,
        transactional: true,
        base_sequence: base,
        values: values.iter().map(|v| Bytes::from(v.to_string())).collect(),
    };
    let one_commit = |offset: i64| {
        vec![
            Seen::AddOffsetsToTxn { group: "g".into() },
            Seen::TxnOffsetCommit {
                member_id: "m-1".into(),
                generation_id: GOOD_GENERATION,
                producer_epoch: 3,
                offsets: vec![(1, offset)],
            },
            Seen::EndTxn {
                commit: true,
                producer_epoch: 3,
            },
        ]
    };
    let mut want = vec![
        Seen::InitProducerId {
            transactional_id: "kswarm-g-t-h-0".into(),
        },
        Seen::AddPartitionsToTxn {
            partitions: vec![("out".into(), 1)],
        },
        produce(0, &["a", "b"]),
    ];
    want.extend(one_commit(10));
    assert_eq!(txn_requests(&b), want);
    // The next transaction adds its partition again; the sequence goes on.
    out.send(1, vec![rec("c")], false).await.unwrap();
    out.commit(&[(1, 11)], &meta(GOOD_GENERATION))
        .await
        .unwrap();
    want.push(Seen::AddPartitionsToTxn {
        partitions: vec![("out".into(), 1)],
    });
    want.push(produce(2, &["c"]));
    want.extend(one_commit(11));
    assert_eq!(txn_requests(&b), want);
    // Nothing to commit: nothing is sent.
    out.commit(&[], &meta(GOOD_GENERATION)).await.unwrap();
    assert_eq!(txn_requests(&b).len(), want.len());
}

#[tokio::test]
async fn a_fenced_generation_aborts_and_commits_nothing_more() {
    let b = broker(0).await;
    let mut out = Output::start(settings(&b.addr)).await.unwrap();
    out.send(0, vec![rec("zombie")], false).await.unwrap();
    let e = out.commit(&[(0, 3)], &meta(4)).await.unwrap_err();
    assert!(matches!(e, TxnError::GroupMoved(_)), "{e:?}");
    assert!(e.to_string().contains("KIP-447"), "{e}");
    let seen = txn_requests(&b);
    assert_eq!(
        seen.last(),
        Some(&Seen::EndTxn {
            commit: false,
            producer_epoch: 3
        }),
        "{seen:?}"
    );
    // The same generation again: refused without asking the broker.
    let before = txn_requests(&b).len();
    out.send(0, vec![rec("more")], false).await.unwrap();
    assert!(matches!(
        out.commit(&[(0, 4)], &meta(4)).await,
        Err(TxnError::GroupMoved(_))
    ));
    assert!(out.failure().is_none());
    // A new generation commits again.
    out.send(0, vec![rec("fresh")], false).await.unwrap();
    out.commit(&[(0, 3)], &meta(GOOD_GENERATION)).await.unwrap();
    let after = txn_requests(&b);
    assert!(after[before..].contains(&Seen::EndTxn {
        commit: true,
        producer_epoch: 3
    }));
    let zombie_results = after
        .iter()
        .filter(|s| matches!(s, Seen::Produce { values, .. } if values.iter().any(|v| &v[..] == b"more")))
        .count();
    assert_eq!(
        zombie_results, 0,
        "the fenced generation's results were dropped"
    );
}

#[tokio::test]
async fn a_fenced_producer_fails_every_later_commit() {
    let b = broker(state::PRODUCER_FENCED).await;
    let mut out = Output::start(settings(&b.addr)).await.unwrap();
    out.send(0, vec![rec("x")], false).await.unwrap();
    let e = out
        .commit(&[(0, 1)], &meta(GOOD_GENERATION))
        .await
        .unwrap_err();
    assert!(matches!(e, TxnError::Aborted(_)), "{e:?}");
    assert!(e.to_string().contains("taken over"), "{e}");
    assert!(!txn_requests(&b)
        .iter()
        .any(|s| matches!(s, Seen::TxnOffsetCommit { .. })));
    let before = txn_requests(&b).len();
    assert!(out.commit(&[(0, 1)], &meta(GOOD_GENERATION)).await.is_err());
    assert_eq!(
        txn_requests(&b).len(),
        before,
        "no request after the failure"
    );
    assert!(out.failure().is_some());
}

#[tokio::test]
async fn a_result_too_large_is_fatal_and_names_the_limit() {
    let b = broker(state::MESSAGE_TOO_LARGE).await;
    let mut out = Output::start(settings(&b.addr)).await.unwrap();
    out.send(0, vec![rec(&"y".repeat(5000))], false)
        .await
        .unwrap();
    let e = out
        .commit(&[(0, 1)], &meta(GOOD_GENERATION))
        .await
        .unwrap_err();
    let TxnError::Fatal(m) = e else {
        panic!("{e:?}")
    };
    assert!(m.contains("max.message.bytes") && m.contains("out"), "{m}");
}

#[tokio::test]
async fn init_producer_id_waits_out_a_transaction_still_ending() {
    // A replacement's InitProducerId while the coordinator still aborts its
    // predecessor's transaction: CONCURRENT_TRANSACTIONS, then the id.
    let tries = Arc::new(Mutex::new(0));
    let t2 = tries.clone();
    let b = ScriptedBroker::start(move |seen| match seen {
        Seen::Metadata { .. } => Reply::Partitions(1),
        Seen::InitProducerId { .. } => {
            let mut n = t2.lock().unwrap();
            *n += 1;
            if *n < 3 {
                Reply::Producer {
                    error: state::CONCURRENT_TRANSACTIONS,
                    id: -1,
                    epoch: -1,
                }
            } else {
                Reply::Producer {
                    error: 0,
                    id: 9,
                    epoch: 1,
                }
            }
        }
        _ => Reply::Code(0),
    })
    .await;
    let out = Output::start(settings(&b.addr)).await.unwrap();
    assert_eq!(*tries.lock().unwrap(), 3);
    assert_eq!(out.producer, ProducerIdentity { id: 9, epoch: 1 });
}
