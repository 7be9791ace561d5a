//! Static membership (group instance ids) against the real broker.
mod support;

use std::time::{Duration, Instant};

use kswarm::config::Assignor;
use kswarm::config::GroupProtocol;
use kswarm::group::{evict, GroupSettings, Member};
use support::{broker_list, brokers, create_topic};

fn settings(group: &str, topic: &str, instance: &str) -> GroupSettings {
    GroupSettings {
        brokers: broker_list(),
        connect_timeout: Duration::from_secs(10),
        client_id: "kswarm-static-test".into(),
        group: group.into(),
        topic: topic.into(),
        session_timeout: Duration::from_secs(6),
        session_timeout_auto: false,
        rebalance_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        assignors: vec![Assignor::Range],
        instance_id: Some(instance.into()),
        protocol: kswarm::config::GroupProtocol::Classic,
        remote_assignor: None,
    }
}

/// A static member that crashed (no LeaveGroup) and comes back under the
/// same instance id gets its partitions back, in the same generation: no
/// rebalance for the rest of the group. (tansu hands the restarted instance
/// the same member id again, so the FENCED_INSTANCE_ID path of a still-living
/// old incarnation cannot be shown on it; its classification is unit-tested.)
#[tokio::test(flavor = "current_thread")]
async fn restarted_static_member_gets_its_partitions_back() {
    let (topic, group) = (support::unique("gs"), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let mut a = Member::connect(settings(&group, &topic, &format!("{group}-0")))
        .await
        .unwrap();
    let mut b = Member::connect(settings(&group, &topic, &format!("{group}-1")))
        .await
        .unwrap();
    let (ja, jb) = tokio::join!(a.join(), b.join());
    let (ja, jb) = (ja.unwrap(), jb.unwrap());
    assert_eq!(ja.generation_id, jb.generation_id);
    // Range over instance ids: "-0" sorts first.
    assert_eq!(
        (ja.partitions.clone(), jb.partitions.clone()),
        (vec![0, 1], vec![2, 3])
    );

    // b lives on like a worker: rejoins whenever told, publishes each join.
    let (tx, mut b_joins) = tokio::sync::mpsc::unbounded_channel();
    let b_task = tokio::spawn(async move {
        loop {
            b.rebalance_needed().await.unwrap();
            let j = b.join().await.unwrap();
            tx.send(j).unwrap();
        }
    });

    drop(a); // crash: heartbeats stop, no LeaveGroup
    let mut again = Member::connect(settings(&group, &topic, &format!("{group}-0")))
        .await
        .unwrap();
    let t = Instant::now();
    let back = tokio::time::timeout(Duration::from_secs(30), again.join())
        .await
        .unwrap()
        .unwrap();
    eprintln!("static rejoin took {:?}: {back:?}", t.elapsed());
    assert_eq!(back.partitions, vec![0, 1]);
    // b keeps its partitions, whether or not the broker made it rejoin: wait
    // until b is in the generation `again` joined (no sleep standing in for
    // "no rebalance").
    let mut b_now = jb.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while b_now.generation_id != back.generation_id {
        match tokio::time::timeout_at(deadline, b_joins.recv()).await {
            Ok(Some(j)) => b_now = j,
            _ => panic!(
                "b never joined generation {}: {b_now:?}",
                back.generation_id
            ),
        }
    }
    eprintln!("b: {jb:?} -> {b_now:?}");
    assert_eq!(b_now.partitions, vec![2, 3]);
    assert_eq!(b_now.generation_id, back.generation_id);
    b_task.abort();
    again.leave().await.unwrap();
}

/// evict() by group instance id (LeaveGroup v3+ members[]) makes the group
/// drop a crashed static member. (On tansu this is no faster than the
/// session timeout, and evicting the static *leader* leaves the group stuck
/// until that instance rejoins; so the follower is evicted here.)
#[tokio::test(flavor = "current_thread")]
async fn evicting_a_static_member_by_instance_id() {
    let (topic, group) = (support::unique("gs-ev"), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let mut a = Member::connect(settings(&group, &topic, &format!("{group}-0")))
        .await
        .unwrap();
    let mut b = Member::connect(settings(&group, &topic, &format!("{group}-1")))
        .await
        .unwrap();
    let (ja, jb) = tokio::join!(a.join(), b.join());
    let (ja, jb) = (ja.unwrap(), jb.unwrap());
    assert_eq!(
        (ja.partitions.clone(), jb.partitions.clone()),
        (vec![0, 1], vec![2, 3])
    );
    let (mut keep, gone, gone_instance) = if ja.leader {
        (a, b, format!("{group}-1"))
    } else {
        (b, a, format!("{group}-0"))
    };

    let (tx, mut joins) = tokio::sync::mpsc::unbounded_channel();
    let keep_task = tokio::spawn(async move {
        loop {
            keep.rebalance_needed().await.unwrap();
            tx.send(keep.join().await.unwrap()).unwrap();
        }
    });
    drop(gone); // crash
    let t = Instant::now();
    evict(
        &support::eviction(&group, GroupProtocol::Classic),
        &[],
        &[gone_instance],
    )
    .await
    .expect("evict");
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let j = joins.recv().await.unwrap();
            if j.partitions == vec![0, 1, 2, 3] {
                return j;
            }
        }
    })
    .await
    .expect("the survivor takes over");
    eprintln!(
        "static evict: the survivor owns everything after {:?}: {got:?}",
        t.elapsed()
    );
    keep_task.abort();
}
