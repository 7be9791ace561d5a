//! How fast groups form and heal on the test broker, for choosing timeouts.
//! Prints its figures (run with --nocapture); the assertions are loose
//! bounds. Override the timeouts with KSWARM_BENCH="REBALANCE_MS,SESSION_MS[,HEARTBEAT_MS]"
//! (heartbeat default: a tenth of the session, at most 1 s).
//!
//!   KSWARM_BENCH=3000,6000,250 cargo test --test group_formation -- --nocapture --test-threads=1
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kswarm::config::Assignor;
use kswarm::config::GroupProtocol;
use kswarm::group::{evict, Assigned, GroupSettings, Member};
use support::{broker_list, brokers, create_topic};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn timeouts() -> (Duration, Duration, Duration) {
    let raw = std::env::var("KSWARM_BENCH").unwrap_or_else(|_| "3000,6000".into());
    let ms: Vec<u64> = raw
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .expect("KSWARM_BENCH=REBALANCE_MS,SESSION_MS[,HEARTBEAT_MS]")
        })
        .collect();
    let (r, s) = (Duration::from_millis(ms[0]), Duration::from_millis(ms[1]));
    let h = ms
        .get(2)
        .map_or((s / 10).min(Duration::from_secs(1)), |&h| {
            Duration::from_millis(h)
        });
    (r, s, h)
}

fn settings(group: &str, topic: &str) -> GroupSettings {
    let (rebalance, session, heartbeat) = timeouts();
    GroupSettings {
        brokers: broker_list(),
        connect_timeout: Duration::from_secs(10),
        client_id: "kswarm-bench".into(),
        group: group.into(),
        topic: topic.into(),
        session_timeout: session,
        session_timeout_auto: false,
        rebalance_timeout: rebalance,
        heartbeat_interval: heartbeat,
        assignors: vec![Assignor::Range],
        instance_id: None,
        protocol: kswarm::config::GroupProtocol::Classic,
        remote_assignor: None,
    }
}

struct Running {
    state: watch::Receiver<Option<Assigned>>,
    task: JoinHandle<()>,
    leave: tokio::sync::mpsc::Sender<()>,
}

fn start(s: GroupSettings) -> Running {
    let (tx, state) = watch::channel(None);
    let (leave, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let task = tokio::spawn(async move {
        let mut m = Member::connect(s).await.expect("connect");
        loop {
            tx.send_replace(Some(m.join().await.expect("join")));
            tokio::select! {
                r = m.rebalance_needed() => r.expect("heartbeat"),
                _ = rx.recv() => { m.leave().await.expect("leave"); tx.send_replace(None); return; }
            }
        }
    });
    Running { state, task, leave }
}

/// Time until the members own 0..n once each, in one generation.
async fn formed(ms: &[Running], n: i32, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let now: Option<Vec<Assigned>> = ms.iter().map(|m| m.state.borrow().clone()).collect();
        if let Some(a) = now {
            let same = a
                .windows(2)
                .all(|w| w[0].generation_id == w[1].generation_id);
            let all: Vec<i32> = a
                .iter()
                .flat_map(|x| x.partitions.iter().copied())
                .collect();
            let set: BTreeSet<i32> = all.iter().copied().collect();
            if same && all.len() == n as usize && set == (0..n).collect() {
                return t.elapsed();
            }
        }
        assert!(
            t.elapsed() < within,
            "group of {} did not form within {within:?}",
            ms.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(n: usize, heal: bool) {
    let (topic, group) = (support::unique("gf"), support::unique("g"));
    create_topic(&brokers(), &topic, n);
    let t = Instant::now();
    let mut ms: Vec<Running> = (0..n).map(|_| start(settings(&group, &topic))).collect();
    let form = formed(&ms, n as i32, Duration::from_secs(60)).await;
    let _ = t;
    let (r, s, h) = timeouts();
    eprintln!(
        "BENCH members={n} rebalance={r:?} session={s:?} heartbeat={h:?}: formed in {form:.2?}"
    );
    if !heal {
        for m in ms {
            m.leave.send(()).await.unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(10), m.task).await;
        }
        assert!(form < Duration::from_secs(30));
        return;
    }

    let gone = ms.remove(0);
    let t = Instant::now();
    gone.leave.send(()).await.unwrap();
    let leave = formed(&ms, n as i32, Duration::from_secs(60))
        .await
        .max(t.elapsed());

    let dead = ms.remove(0);
    let dead_id = dead.state.borrow().clone().unwrap().member_id;
    dead.task.abort();
    let t = Instant::now();
    evict(
        &support::eviction(&group, GroupProtocol::Classic),
        &[dead_id],
        &[],
    )
    .await
    .unwrap();
    let evicted = formed(&ms, n as i32, Duration::from_secs(60))
        .await
        .max(t.elapsed());

    let silent = ms.remove(0);
    silent.task.abort();
    let t = Instant::now();
    let expired = formed(&ms, n as i32, Duration::from_secs(120))
        .await
        .max(t.elapsed());

    eprintln!(
        "BENCH members={n} rebalance={r:?} session={s:?} heartbeat={h:?}: survivors own all after leave {leave:.2?}, \
         after evict {evicted:.2?}, after silent death {expired:.2?}"
    );
    for m in ms {
        m.leave.send(()).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), m.task).await;
    }
    assert!(form < Duration::from_secs(30));
}

#[tokio::test(flavor = "current_thread")]
async fn formation_times_of_2_members() {
    measure(2, false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn formation_times_of_8_members() {
    measure(8, true).await;
}
