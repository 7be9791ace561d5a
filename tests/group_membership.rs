//! Consumer-group membership against the real broker: in-process members
//! (the library API) and real peers (confluent-kafka / librdkafka).
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kswarm::config::Assignor;
use kswarm::config::GroupProtocol;
use kswarm::group::{evict, Assigned, GroupError, GroupSettings, Member};
use support::{broker_list, brokers, create_topic};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const SESSION: Duration = Duration::from_secs(6);
const REBALANCE: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_millis(300);

fn settings(group: &str, topic: &str) -> GroupSettings {
    GroupSettings {
        brokers: broker_list(),
        connect_timeout: Duration::from_secs(10),
        client_id: "kswarm-test".into(),
        group: group.into(),
        topic: topic.into(),
        session_timeout: SESSION,
        session_timeout_auto: false,
        rebalance_timeout: REBALANCE,
        heartbeat_interval: HEARTBEAT,
        assignors: vec![Assignor::Range, Assignor::RoundRobin],
        instance_id: None,
        protocol: kswarm::config::GroupProtocol::Classic,
        remote_assignor: None,
    }
}

/// [`settings`] with a long session: a hand-over that waited for a session to
/// expire (30 s) is then told apart with a wide margin from one that did not.
fn long_session(group: &str, topic: &str) -> GroupSettings {
    GroupSettings {
        session_timeout: LONG_SESSION,
        ..settings(group, topic)
    }
}

const LONG_SESSION: Duration = Duration::from_secs(30);

/// Three members of a fresh group on a fresh 4-partition topic, settled:
/// (topic, group, members).
async fn three_settled(
    prefix: &str,
    s: fn(&str, &str) -> GroupSettings,
) -> (String, String, Vec<Running>) {
    let (topic, group) = (support::unique(prefix), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let ms: Vec<Running> = (0..3).map(|_| Running::start(s(&group, &topic))).collect();
    settle(
        &ms.iter().collect::<Vec<_>>(),
        &[],
        4,
        Duration::from_secs(60),
    )
    .await;
    (topic, group, ms)
}

/// Wait until `ms` own all 4 partitions again; how long it took, and who owns what.
async fn settle_rest(ms: &[Running], within: Duration) -> (Duration, Vec<Assigned>) {
    settle(&ms.iter().collect::<Vec<_>>(), &[], 4, within).await
}

enum Cmd {
    Leave(oneshot::Sender<()>),
    Commit(Vec<(i32, i64)>, oneshot::Sender<Result<(), GroupError>>),
}

/// A member living on its own task like a worker: join, wait for a
/// rebalance, join again; publishes its latest assignment.
struct Running {
    state: watch::Receiver<Option<Assigned>>,
    cmd: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(s: GroupSettings) -> Self {
        let (tx, state) = watch::channel(None);
        let (cmd, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(async move {
            let mut m = Member::connect(s).await.expect("connect");
            loop {
                let a = m.join().await.expect("join");
                tx.send_replace(Some(a));
                loop {
                    tokio::select! {
                        r = m.rebalance_needed() => { r.expect("heartbeat"); break; }
                        c = rx.recv() => match c {
                            Some(Cmd::Leave(done)) => {
                                m.leave().await.expect("leave");
                                m.leave().await.expect("leave twice is fine");
                                tx.send_replace(None);
                                let _ = done.send(());
                                return;
                            }
                            Some(Cmd::Commit(offs, done)) => { let _ = done.send(m.commit(&offs).await); }
                            None => return,
                        }
                    }
                }
            }
        });
        Self { state, cmd, task }
    }

    fn current(&self) -> Option<Assigned> {
        self.state.borrow().clone()
    }

    async fn leave(self) {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Leave(tx)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("leave in time")
            .unwrap();
    }

    async fn commit(&self, offs: Vec<(i32, i64)>) -> Result<(), GroupError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Commit(offs, tx)).await.unwrap();
        rx.await.unwrap()
    }

    /// Die without a word: no LeaveGroup, heartbeats stop.
    fn crash(self) {
        self.task.abort();
    }
}

/// A librdkafka consumer in a child process; its latest assignment.
struct Peer {
    child: Child,
    latest: Arc<Mutex<Option<Vec<i32>>>>,
}

impl Peer {
    /// librdkafka (confluent-kafka) with these assignors.
    fn start(group: &str, topic: &str, assignors: &str) -> Self {
        Self::spawn("ck_member.py", &[group, topic, assignors])
    }

    /// kafka-python with the range assignor.
    fn start_kafka_python(group: &str, topic: &str) -> Self {
        Self::spawn("kp_member.py", &[group, topic])
    }

    fn spawn(script: &str, args: &[&str]) -> Self {
        let (group, topic) = (args[0], args[1]);
        let mut child = Command::new(support::python())
            .arg(support::repo_root().join("tests/peers").join(script))
            .args(["consume", &support::brokers(), topic, group])
            .args(&args[2..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python peer");
        let latest = Arc::new(Mutex::new(None));
        let l2 = latest.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if let Some(a) = v.get("assigned") {
                    let parts = a
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap() as i32)
                        .collect();
                    *l2.lock().unwrap() = Some(parts);
                } else if v.get("revoked").is_some() {
                    *l2.lock().unwrap() = None;
                }
            }
        });
        Self { child, latest }
    }

    fn current(&self) -> Option<Vec<i32>> {
        self.latest.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The partitions of each owner, if they cover 0..n exactly once.
fn is_partition(owners: &[Vec<i32>], n: i32) -> bool {
    let mut seen = BTreeSet::new();
    for o in owners {
        for &p in o {
            if !seen.insert(p) {
                return false;
            }
        }
    }
    seen == (0..n).collect()
}

/// Wait until the in-process members (all in one generation) and the peers
/// own 0..n disjointly, and that holds for `hold`. The time it took.
async fn settle(
    members: &[&Running],
    peers: &[&Peer],
    n: i32,
    within: Duration,
) -> (Duration, Vec<Assigned>) {
    let start = Instant::now();
    let hold = Duration::from_millis(1500);
    let mut good_since: Option<(Instant, Vec<Assigned>)> = None;
    loop {
        let now: Option<Vec<Assigned>> = members.iter().map(|m| m.current()).collect();
        let peer_now: Option<Vec<Vec<i32>>> = peers.iter().map(|p| p.current()).collect();
        let ok = match (&now, &peer_now) {
            (Some(ms), Some(ps)) => {
                let same_gen = ms
                    .windows(2)
                    .all(|w| w[0].generation_id == w[1].generation_id);
                let mut owners: Vec<Vec<i32>> = ms.iter().map(|a| a.partitions.clone()).collect();
                owners.extend(ps.iter().cloned());
                same_gen && is_partition(&owners, n)
            }
            _ => false,
        };
        if ok {
            let ms = now.clone().unwrap();
            match &good_since {
                Some((t, prev)) if *prev == ms => {
                    if t.elapsed() >= hold {
                        return (*t - start, ms);
                    }
                }
                _ => good_since = Some((Instant::now(), ms)),
            }
        } else {
            good_since = None;
        }
        assert!(
            start.elapsed() < within,
            "no stable complete assignment within {within:?}: members {now:?}, peers {peer_now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn three_members_share_six_partitions() {
    let (topic, group) = (support::unique("gm-three"), support::unique("g"));
    create_topic(&brokers(), &topic, 6);
    let ms: Vec<Running> = (0..3)
        .map(|_| Running::start(settings(&group, &topic)))
        .collect();
    let refs: Vec<&Running> = ms.iter().collect();
    let (took, a) = settle(&refs, &[], 6, Duration::from_secs(60)).await;
    eprintln!("3 members settled in {took:?}: {a:?}");
    assert!(a.iter().all(|x| x.partitions.len() == 2), "{a:?}");
    assert_eq!(a.iter().filter(|x| x.leader).count(), 1, "{a:?}");
    let ids: BTreeSet<&str> = a.iter().map(|x| x.member_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    for m in ms {
        m.leave().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn mixed_group_with_librdkafka() {
    let (topic, group) = (support::unique("gm-mixed"), support::unique("g"));
    create_topic(&brokers(), &topic, 6);
    // librdkafka first, so that it leads: it decodes our subscriptions and
    // computes the assignment we decode.
    let peer = Peer::start(&group, &topic, "range,roundrobin");
    settle(&[], &[&peer], 6, Duration::from_secs(60)).await;
    let a = Running::start(settings(&group, &topic));
    let b = Running::start(settings(&group, &topic));
    let (took, got) = settle(&[&a, &b], &[&peer], 6, Duration::from_secs(60)).await;
    let theirs = peer.current().unwrap();
    eprintln!("2 kswarm + 1 librdkafka settled in {took:?}: {got:?} + {theirs:?}");
    assert_eq!(theirs.len(), 2, "librdkafka got {theirs:?}");
    assert!(got.iter().all(|x| x.partitions.len() == 2), "{got:?}");
    assert!(
        got.iter().all(|x| !x.leader),
        "librdkafka should have stayed the leader: {got:?}"
    );
    drop(peer);
    // Without the peer, the two of us own everything again (one of us leads).
    let (_, got) = settle(&[&a, &b], &[], 6, Duration::from_secs(30)).await;
    assert_eq!(got.iter().filter(|x| x.leader).count(), 1, "{got:?}");
    a.leave().await;
    b.leave().await;
}

/// The coordinator picks the one assignor every member offers (roundrobin,
/// not our first choice range) and we take part in it. (tansu fixes the
/// protocol from the first member: a member offering only roundrobin to a
/// group formed by a range-first member gets INCONSISTENT_GROUP_PROTOCOL,
/// where Kafka would rebalance onto roundrobin; so the peer comes first here.)
#[tokio::test(flavor = "current_thread")]
async fn common_assignor_is_chosen() {
    let (topic, group) = (support::unique("gm-rr"), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let peer = Peer::start(&group, &topic, "roundrobin");
    settle(&[], &[&peer], 4, Duration::from_secs(60)).await;
    let a = Running::start(settings(&group, &topic)); // offers range, roundrobin
    let (_, got) = settle(&[&a], &[&peer], 4, Duration::from_secs(60)).await;
    let theirs = peer.current().unwrap();
    eprintln!("roundrobin: ours {got:?}, librdkafka {theirs:?}");
    // Member ids sort "kswarm-test-.." before librdkafka's "rdkafka-..":
    // roundrobin deals 0 and 2 to us (range would give us 0 and 1).
    assert_eq!(got[0].partitions, vec![0, 2]);
    assert_eq!(theirs, vec![1, 3]);
    drop(peer);
    a.leave().await;
}

/// Our leader runs the assignor the coordinator chose.
#[tokio::test(flavor = "current_thread")]
async fn our_leader_runs_roundrobin() {
    let (topic, group) = (support::unique("gm-rr2"), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let mut s = settings(&group, &topic);
    s.assignors = vec![Assignor::RoundRobin];
    let (a, b) = (Running::start(s.clone()), Running::start(s));
    let (_, got) = settle(&[&a, &b], &[], 4, Duration::from_secs(60)).await;
    let mut parts: Vec<Vec<i32>> = got.iter().map(|x| x.partitions.clone()).collect();
    parts.sort();
    assert_eq!(parts, vec![vec![0, 2], vec![1, 3]], "{got:?}");
    a.leave().await;
    b.leave().await;
}

#[tokio::test(flavor = "current_thread")]
async fn mixed_group_with_kafka_python_and_librdkafka() {
    let (topic, group) = (support::unique("gm-kp"), support::unique("g"));
    create_topic(&brokers(), &topic, 5);
    let a = Running::start(settings(&group, &topic));
    let kp = Peer::start_kafka_python(&group, &topic);
    let ck = Peer::start(&group, &topic, "range");
    let (took, got) = settle(&[&a], &[&kp, &ck], 5, Duration::from_secs(90)).await;
    let (theirs_kp, theirs_ck) = (kp.current().unwrap(), ck.current().unwrap());
    eprintln!("kswarm + kafka-python + librdkafka settled in {took:?}: {got:?} + {theirs_kp:?} + {theirs_ck:?}");
    // range over 5 partitions and 3 members: sizes 2, 2, 1.
    let mut sizes = vec![got[0].partitions.len(), theirs_kp.len(), theirs_ck.len()];
    sizes.sort();
    assert_eq!(sizes, vec![1, 2, 2]);
    drop(kp);
    drop(ck);
    settle(&[&a], &[], 5, Duration::from_secs(30)).await;
    a.leave().await;
}

#[tokio::test(flavor = "current_thread")]
async fn commit_is_read_back_by_librdkafka() {
    let (topic, group) = (support::unique("gm-commit"), support::unique("g"));
    create_topic(&brokers(), &topic, 3);
    let m = Running::start(settings(&group, &topic));
    settle(&[&m], &[], 3, Duration::from_secs(30)).await;
    m.commit(vec![(0, 5), (2, 42)]).await.expect("commit");

    // Read back through our own OffsetFetch.
    let mut reader = Member::connect(settings(&group, &topic)).await.unwrap();
    let ours = reader.committed(&[0, 1, 2]).await.unwrap();
    assert_eq!(ours[&0], Some(5));
    assert_eq!(ours[&1], None);
    assert_eq!(ours[&2], Some(42));

    // And through librdkafka.
    let out = Command::new(support::python())
        .arg(support::repo_root().join("tests/peers/ck_member.py"))
        .args(["committed", &support::brokers(), &topic, &group, "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["committed"]["0"], 5);
    assert_eq!(v["committed"]["1"], serde_json::Value::Null);
    assert_eq!(v["committed"]["2"], 42);
    m.leave().await;
}

#[tokio::test(flavor = "current_thread")]
async fn clean_leave_hands_over_quickly() {
    let (_, _, mut ms) = three_settled("gm-leave", long_session).await;
    let gone = ms.remove(0);
    let t = Instant::now();
    gone.leave().await;
    let leaving = t.elapsed();
    let (took, a) = settle_rest(&ms, Duration::from_secs(30)).await;
    let took = leaving + took;
    eprintln!("after a clean leave the survivors own everything in {took:?}: {a:?}");
    assert!(
        took < LONG_SESSION / 2,
        "handover took {took:?}: it waited for the session timeout ({LONG_SESSION:?})?"
    );
    for m in ms {
        m.leave().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn silent_member_expires_after_session_timeout() {
    let (_, _, mut ms) = three_settled("gm-dead", settings).await;
    ms.remove(0).crash();
    let t = Instant::now();
    let (took, a) = settle_rest(&ms, Duration::from_secs(60)).await;
    eprintln!("after a silent death the survivors own everything after {took:?}: {a:?}");
    assert!(
        took >= SESSION / 2,
        "{took:?}: too fast for a member that merely went silent"
    );
    let _ = t;
    for m in ms {
        m.leave().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn evicted_member_is_replaced_quickly() {
    let (_, group, mut ms) = three_settled("gm-evict", long_session).await;
    let dead = ms.remove(0);
    let dead_id = dead.current().unwrap().member_id;
    dead.crash();
    let t = Instant::now();
    evict(
        &support::eviction(&group, GroupProtocol::Classic),
        &[dead_id],
        &[],
    )
    .await
    .expect("evict");
    let evicting = t.elapsed();
    let (took, a) = settle_rest(&ms, Duration::from_secs(30)).await;
    let took = evicting + took;
    eprintln!("after evict() the survivors own everything in {took:?}: {a:?}");
    assert!(
        took < LONG_SESSION / 2,
        "eviction took {took:?}: it waited for the session timeout ({LONG_SESSION:?})?"
    );
    // Evicting a member that is already gone is fine.
    let again = a[0].member_id.clone() + "-nobody";
    evict(
        &support::eviction(&group, GroupProtocol::Classic),
        &[again],
        &[],
    )
    .await
    .expect("evict unknown");
    for m in ms {
        m.leave().await;
    }
}

/// Commits and generations: a commit right after the rebalance notice (the
/// eager "commit on revoke") and a commit from a member the group moved on
/// without (must be `Rebalance`, never a silent success).
#[tokio::test(flavor = "current_thread")]
async fn commit_with_stale_generation_is_refused() {
    let (topic, group) = (support::unique("gm-gen"), support::unique("g"));
    create_topic(&brokers(), &topic, 2);
    let mut a = Member::connect(settings(&group, &topic)).await.unwrap();
    let first = a.join().await.unwrap();
    assert_eq!(first.partitions, vec![0, 1]);
    a.commit(&[(0, 1)])
        .await
        .expect("commit in a stable generation");

    let b = Running::start(settings(&group, &topic));
    tokio::time::timeout(Duration::from_secs(20), a.rebalance_needed())
        .await
        .expect("a hears of the rebalance")
        .expect("no heartbeat failure");
    // The eager protocol's commit on revoke: the generation is still ours
    // while the group prepares the rebalance, and the coordinator takes it.
    // Without it a rebalance delivers everything since the last commit again.
    a.commit(&[(0, 2)])
        .await
        .expect("a commit after the rebalance notice, before rejoining, is accepted");

    // a never rejoins: the group goes on without it.
    settle(&[&b], &[], 2, Duration::from_secs(60)).await;
    let stale = a.commit(&[(0, 3)]).await;
    assert!(
        matches!(stale, Err(GroupError::Rebalance)),
        "stale commit: {stale:?}"
    );
    let got = a.committed(&[0]).await.unwrap();
    assert_eq!(
        got[&0],
        Some(2),
        "the commit on revoke counts, the stale one does not"
    );
    drop(a);
    b.leave().await;
}

/// A member with no assignor in common with the group gets a fatal error
/// that names --assignor, not an endless retry.
#[tokio::test(flavor = "current_thread")]
async fn no_common_assignor_is_fatal_and_names_the_flag() {
    let (topic, group) = (support::unique("gm-incons"), support::unique("g"));
    create_topic(&brokers(), &topic, 2);
    let mut rr = settings(&group, &topic);
    rr.assignors = vec![Assignor::RoundRobin];
    let a = Running::start(rr);
    settle(&[&a], &[], 2, Duration::from_secs(30)).await;
    let mut range_only = settings(&group, &topic);
    range_only.assignors = vec![Assignor::Range];
    let mut b = Member::connect(range_only).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), b.join())
        .await
        .expect("join answers")
        .unwrap_err();
    match &err {
        GroupError::Fatal(m) => assert!(m.contains("--assignor"), "{m}"),
        other => panic!("expected Fatal, got {other:?}"),
    }
    a.leave().await;
}

/// [`settings`] for the consumer group protocol (KIP-848; the broker assigns
/// and sets the session: 45 s on Kafka).
fn consumer_protocol(group: &str, topic: &str) -> GroupSettings {
    GroupSettings {
        protocol: kswarm::config::GroupProtocol::Consumer,
        ..settings(group, topic)
    }
}

/// Wait until `ms` own the 4 partitions between them, each some; how long it took.
async fn consumer_settled(ms: &[Running], within: Duration) -> (Duration, Vec<Assigned>) {
    let t = Instant::now();
    loop {
        let now: Option<Vec<Assigned>> = ms.iter().map(|m| m.current()).collect();
        if let Some(now) = now {
            let owners: Vec<Vec<i32>> = now.iter().map(|a| a.partitions.clone()).collect();
            if is_partition(&owners, 4) && owners.iter().all(|o| !o.is_empty()) {
                return (t.elapsed(), now);
            }
        }
        assert!(
            t.elapsed() < within,
            "no complete assignment within {within:?}: {:?}",
            ms.iter().map(|m| m.current()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Under the consumer protocol a dead member keeps its partitions for the
/// broker's session (45 s); evicting it (a leave heartbeat on its behalf)
/// moves them at once, and evicting an unknown member is fine.
#[tokio::test(flavor = "current_thread")]
async fn consumer_protocol_evicted_member_is_replaced_quickly() {
    let (topic, group) = (support::unique("gm-cp-evict"), support::unique("g"));
    create_topic(&brokers(), &topic, 4);
    let mut ms: Vec<Running> = (0..3)
        .map(|_| Running::start(consumer_protocol(&group, &topic)))
        .collect();
    let (took, a) = consumer_settled(&ms, Duration::from_secs(60)).await;
    eprintln!("3 consumer-protocol members settled in {took:?}: {a:?}");
    let dead = ms.remove(0);
    let dead_id = dead.current().unwrap().member_id;
    dead.crash();
    let t = Instant::now();
    kswarm::group::evict(
        &support::eviction(&group, GroupProtocol::Consumer),
        &[dead_id],
        &[],
    )
    .await
    .expect("evict");
    let (_, a) = consumer_settled(&ms, Duration::from_secs(40)).await;
    let took = t.elapsed();
    eprintln!("after the eviction the survivors own everything in {took:?}: {a:?}");
    assert!(
        took < Duration::from_secs(10),
        "eviction took {took:?}: it waited for the broker's session (45 s)?"
    );
    kswarm::group::evict(
        &support::eviction(&group, GroupProtocol::Consumer),
        &["nobody-of-this-group".to_string()],
        &[],
    )
    .await
    .expect("evicting an unknown member");
    for m in ms {
        m.leave().await;
    }
}
