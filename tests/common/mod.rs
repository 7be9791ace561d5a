//! Shared helpers for integration tests: the broker under test, unique names,
//! the kswarm binary and the Python peers' venv.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The broker to test against. A missing broker is a failure, never a skip:
/// run the suite through `scripts/test.sh`, which starts one.
pub fn brokers() -> String {
    std::env::var("KSWARM_TEST_BROKERS").expect(
        "KSWARM_TEST_BROKERS is not set: run the tests with scripts/test.sh (it starts a local broker)",
    )
}

/// Which broker the suite runs against (`KSWARM_TEST_BROKER`, set by
/// scripts/test.sh): Apache Kafka, the reference, or tansu, the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Kafka,
    Tansu,
}

pub fn broker_kind() -> Broker {
    match std::env::var("KSWARM_TEST_BROKER").as_deref() {
        Ok("tansu") => Broker::Tansu,
        Ok("kafka") | Err(_) => Broker::Kafka,
        Ok(other) => panic!("KSWARM_TEST_BROKER={other}: use kafka or tansu"),
    }
}

/// The pid of the broker scripts/broker.sh started for the suite (tests that
/// stop it for a while: SIGSTOP, then SIGCONT).
pub fn broker_pid() -> i32 {
    let port = brokers()
        .rsplit(':')
        .next()
        .expect("KSWARM_TEST_BROKERS is HOST:PORT")
        .to_string();
    let build = std::env::var("KSWARM_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("build"));
    let file = match broker_kind() {
        Broker::Kafka => build.join(format!("kafka-{port}/pid")),
        Broker::Tansu => build.join(format!("broker-{port}.pid")),
    };
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (start the broker with scripts/broker.sh)",
                file.display()
            )
        })
        .trim()
        .parse()
        .expect("a pid")
}

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// The binary under test; KSWARM_TEST_BIN overrides it (say, a copy kept
/// fixed while the tree is rebuilt during a long bug hunt).
pub fn kswarm_bin() -> PathBuf {
    std::env::var_os("KSWARM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kswarm")))
}

pub fn kswarm() -> Command {
    let mut c = Command::new(kswarm_bin());
    c.env_remove("RUST_LOG")
        .env("KSWARM_STATE_DIR", state_dir());
    c
}

/// Where the supervisors started by the tests keep their state files (they
/// stay after a run, one per group), instead of the system's temp dir.
pub fn state_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kswarm-state");
    let _ = std::fs::create_dir_all(&d);
    d
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python of the venv that scripts/broker.sh installs (confluent-kafka, kafka-python).
pub fn python() -> PathBuf {
    let build = std::env::var("KSWARM_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("build"));
    let p = build.join("venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/broker.sh install",
        p.display()
    );
    p
}

/// Run kswarm with args and stdin text; return the output.
pub fn kswarm_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = kswarm()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kswarm");
    let mut sin = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait kswarm");
    writer.join().unwrap();
    out
}
