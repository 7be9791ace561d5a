//! The handler against real child processes, in-process: `sh -c` handlers
//! that acknowledge, crash, print a bad verdict, over-acknowledge or fail a
//! batch, and what [`Handler::next_event`] yields for each. No broker.
//!
//! A worker runs each handler under its own binary's hidden `guard`
//! subcommand; the unit-test binary has none, so a two-line script stands
//! in for it (`guard CMD` -> `sh -c CMD`, without the subreaper).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use super::*;

/// The stand-in for `kswarm guard CMD`, written once per test process.
fn guard_stand_in() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir();
        let path = dir.join(format!("kswarm-test-guard-{}", std::process::id()));
        let tmp = dir.join(format!("kswarm-test-guard-{}.tmp", std::process::id()));
        std::fs::write(&tmp, "#!/bin/sh\n# $1 is \"guard\"\nexec sh -c \"$2\"\n").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
    .clone()
}

async fn start(spec: HandlerSpec) -> Handler {
    let env = HandlerEnv {
        slot: 0,
        group: "g".into(),
        topic: "t".into(),
        retry_topics: Vec::new(),
        guard_exe: guard_stand_in(),
    };
    Handler::start(&spec, Format::Value, 100, env)
        .await
        .unwrap()
}

fn records(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
    offsets
        .map(|offset| Record {
            partition,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(Bytes::from(format!("value {offset}"))),
            headers: Vec::new(),
            delivery_count: None,
            lane: crate::record::Lane::Main,
        })
        .collect()
}

/// The handler's next event, within 10 s.
async fn next(h: &mut Handler) -> Option<HandlerEvent> {
    tokio::time::timeout(Duration::from_secs(10), h.next_event())
        .await
        .expect("the handler said nothing for 10 s")
}

/// Hand `records` over whole.
fn hand(h: &mut Handler, records: &[Record]) {
    let offered = h.offer(records, 64 * 1024);
    assert_eq!(offered.taken, records.len());
    assert!(offered.refused.is_none());
}

/// Acks until `offset` of `partition` is acknowledged; panics on anything else.
async fn acks_through(h: &mut Handler, partition: i32, offset: i64) {
    let mut last = -1;
    while last < offset {
        match next(h).await {
            Some(HandlerEvent::Ack(a)) => {
                assert_eq!(a.partition, partition);
                assert!(
                    a.offset > last,
                    "acks go forward: {} after {last}",
                    a.offset
                );
                last = a.offset;
            }
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    assert_eq!(last, offset);
}

#[tokio::test]
async fn an_exec_handler_acks_each_line_and_ends_cleanly() {
    let mut h = start(HandlerSpec::Exec(
        "while read -r l; do echo ok; done".into(),
    ))
    .await;
    hand(&mut h, &records(0, 0..5));
    acks_through(&mut h, 0, 4).await;
    assert_eq!(h.in_flight(), 0);
    hand(&mut h, &records(1, 0..3));
    acks_through(&mut h, 1, 2).await;
    h.close_input().await;
    assert_eq!(next(&mut h).await, None);
    let handled: Vec<(i32, u64)> = h.handled().0.iter().map(|&(p, n, _)| (p, n)).collect();
    assert_eq!(handled, vec![(0, 5), (1, 3)]);
}

#[tokio::test]
async fn an_exec_handler_that_crashes_mid_stream_fails_after_its_acks() {
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo ok; read -r l; echo 'boom' >&2; exit 3".into(),
    ))
    .await;
    hand(&mut h, &records(0, 0..3));
    acks_through(&mut h, 0, 0).await;
    match next(&mut h).await {
        Some(HandlerEvent::Failed(why)) => {
            assert!(why.contains("exit status 3"), "{why}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(h.first_unacked(), Some((0, 1)));
    assert_eq!(h.in_flight(), 2);
    assert!(!h.could_not_start());
}

#[tokio::test]
async fn an_exec_handler_that_cannot_start_says_so() {
    let mut h = start(HandlerSpec::Exec("kswarm-no-such-command-here".into())).await;
    hand(&mut h, &records(0, 0..1));
    match next(&mut h).await {
        Some(HandlerEvent::Failed(why)) => assert!(why.contains("not found"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(h.could_not_start());
}

#[tokio::test]
async fn verdicts_are_judged_per_record() {
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo ok; read -r l; echo 'reject bad json'; read -r l; echo retry; cat >/dev/null"
            .into(),
    ))
    .await;
    h.per_record(true);
    hand(&mut h, &records(2, 10..13));
    let mut judged = Vec::new();
    while judged.len() < 3 {
        match next(&mut h).await {
            Some(HandlerEvent::Judged(js)) => judged.extend(js),
            other => panic!("expected verdicts, got {other:?}"),
        }
    }
    let verdicts: Vec<(i32, i64, Verdict)> = judged
        .into_iter()
        .map(|j| (j.partition, j.offset, j.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (2, 10, Verdict::Ok),
            (2, 11, Verdict::Reject("bad json".into())),
            (2, 12, Verdict::Retry),
        ]
    );
    assert_eq!(h.in_flight(), 0);
    h.close_input().await;
    assert_eq!(next(&mut h).await, None);
}

#[tokio::test]
async fn a_bad_verdict_fails_the_handler() {
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo ok; read -r l; echo maybe; cat >/dev/null".into(),
    ))
    .await;
    h.per_record(true);
    hand(&mut h, &records(2, 10..12));
    let mut judged = Vec::new();
    let why = loop {
        match next(&mut h).await {
            Some(HandlerEvent::Judged(js)) => judged.extend(js),
            Some(HandlerEvent::Failed(why)) => break why,
            other => panic!("expected verdicts then a failure, got {other:?}"),
        }
    };
    // The good verdict read with the bad line in one read is not taken:
    // that record is delivered again, as every record not acknowledged.
    let first = Judged {
        lane: crate::record::Lane::Main,
        partition: 2,
        offset: 10,
        verdict: Verdict::Ok,
        results: Vec::new(),
    };
    assert!(judged.is_empty() || judged == vec![first], "{judged:?}");
    assert!(why.contains("printed \"maybe\""), "{why}");
    assert!(why.contains(verdict::VERDICT_FORMS), "{why}");
    h.kill();
}

#[tokio::test]
async fn an_exec_handler_acking_more_than_it_read_is_untrusted() {
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo ok; echo ok; echo ok; cat >/dev/null".into(),
    ))
    .await;
    hand(&mut h, &records(0, 0..2));
    loop {
        match next(&mut h).await {
            Some(HandlerEvent::Ack(_)) => {}
            Some(HandlerEvent::Untrusted(_)) => break,
            other => panic!("expected the handler to be untrusted, got {other:?}"),
        }
    }
    h.kill();
}

fn batch(command: &str) -> HandlerSpec {
    HandlerSpec::Batch {
        command: command.into(),
        size: 2,
        wait: Duration::from_millis(10),
        retries: 0,
    }
}

#[tokio::test]
async fn an_exec_batch_handler_acks_a_batch_that_exits_0() {
    let mut h = start(batch("cat >/dev/null")).await;
    hand(&mut h, &records(0, 0..4));
    acks_through(&mut h, 0, 3).await;
    h.close_input().await;
    assert_eq!(next(&mut h).await, None);
}

#[tokio::test]
async fn an_exec_batch_handler_failing_a_batch_fails_the_handler() {
    let mut h = start(batch("cat >/dev/null; exit 1")).await;
    hand(&mut h, &records(0, 0..2));
    match next(&mut h).await {
        Some(HandlerEvent::Failed(why)) => {
            assert!(
                why.contains("failed a batch of 2 record(s) with exit status 1"),
                "{why}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(h.in_flight(), 2);
    assert_eq!(h.first_unacked(), Some((0, 0)));
}

#[tokio::test]
async fn output_lines_give_each_record_its_results() {
    // Record 10: one plain line. Record 11: two results, then @done.
    // Record 12: no result. Record 13: a rejection (with --verdicts).
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo \"x-$l\"; read -r l; echo '@out a'; echo '@json {\"key\":\"k\",\"value\":\"b\"}'; \
         echo @done; read -r l; echo @done; read -r l; echo '@reject no'; cat >/dev/null"
            .into(),
    ))
    .await;
    h.with_outputs(true);
    hand(&mut h, &records(1, 10..14));
    let mut judged = Vec::new();
    while judged.len() < 4 {
        match next(&mut h).await {
            Some(HandlerEvent::Judged(js)) => judged.extend(js),
            other => panic!("expected finished records, got {other:?}"),
        }
    }
    let values = |j: &Judged| -> Vec<(Option<Bytes>, Option<Bytes>)> {
        j.results
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect()
    };
    assert_eq!(judged[0].offset, 10);
    assert_eq!(values(&judged[0]).len(), 1);
    assert!(values(&judged[0])[0]
        .1
        .as_deref()
        .is_some_and(|v| v.starts_with(b"x-")));
    assert_eq!(
        values(&judged[1]),
        vec![
            (None, Some(Bytes::from_static(b"a"))),
            (
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"b"))
            )
        ]
    );
    assert!(judged[2].results.is_empty() && judged[2].verdict == Verdict::Ok);
    assert_eq!(judged[3].verdict, Verdict::Reject("no".into()));
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn results_beyond_the_records_sent_are_not_trusted() {
    let mut h = start(HandlerSpec::Exec(
        "read -r l; echo one; echo '@out two'; cat >/dev/null".into(),
    ))
    .await;
    h.with_outputs(false);
    hand(&mut h, &records(0, 0..1));
    loop {
        match next(&mut h).await {
            Some(HandlerEvent::Judged(_)) => continue,
            Some(HandlerEvent::Untrusted(why)) => {
                assert!(why.contains("beyond"), "{why}");
                break;
            }
            other => panic!("expected Untrusted, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn one_read_of_acks_for_two_partitions_is_settled_only_when_both_are_taken() {
    // Both ack lines in one write: one absorb makes two Ack events.
    let mut h = start(HandlerSpec::Exec(
        "read -r a; read -r b; printf 'ok\\nok\\n'; cat >/dev/null".into(),
    ))
    .await;
    let mut both = records(0, 5..6);
    both.extend(records(1, 7..8));
    hand(&mut h, &both);
    assert!(!h.settled());
    let first = next(&mut h).await;
    assert!(matches!(first, Some(HandlerEvent::Ack(_))), "{first:?}");
    assert_eq!(h.in_flight(), 0);
    assert!(
        !h.settled(),
        "the second partition's ack is not taken yet: a drain must not stop here"
    );
    let second = next(&mut h).await;
    let (Some(HandlerEvent::Ack(a)), Some(HandlerEvent::Ack(b))) = (first, second) else {
        panic!("two acks expected")
    };
    let mut got = vec![(a.partition, a.offset), (b.partition, b.offset)];
    got.sort();
    assert_eq!(got, vec![(0, 5), (1, 7)]);
    assert!(h.settled());
}
