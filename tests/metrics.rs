//! `kswarm run --metrics-addr`: /metrics read by a real HTTP client and
//! parsed by Prometheus's own OpenMetrics parser (Python prometheus_client,
//! tests/peers/scrape.py), /healthz and /readyz through a rolling restart,
//! and the restart counter after a SIGKILL; and a bad address exits 2.
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::{
    appending_handler, committed, create_topic, free_port, numbered, produce, read_seen, run_state,
    wait_for, wait_run_members, Run,
};

const LONG: Duration = Duration::from_secs(90);

/// GET `path`: (status code, body), or None if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Some((code, body))
}

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// /metrics through scrape.py (Prometheus's parser); panics if it cannot parse.
fn scrape(port: u16) -> Vec<Sample> {
    let out = std::process::Command::new(support::python())
        .arg(support::repo_root().join("tests/peers/scrape.py"))
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the exposition did not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{}",
        v["content_type"]
    );
    v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

fn per_partition(samples: &[Sample], name: &str) -> BTreeMap<i32, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels["partition"].parse().unwrap(), s.value))
        .collect()
}

#[test]
fn metrics_count_every_record_and_readyz_follows_the_group() {
    let b = support::brokers();
    let (topic, group) = (support::unique("metrics"), support::unique("g-metrics"));
    let dir = tempfile::tempdir().unwrap();
    let (state, file) = (dir.path().join("state"), dir.path().join("handled.jsonl"));
    std::fs::create_dir_all(&state).unwrap();
    create_topic(&b, &topic, 2);
    let n = 3000;
    produce(&b, &topic, &numbered("m", n));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let handler = appending_handler(&file);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .format("json")
        .flag("--metrics-addr", &addr)
        .exec(&handler)
        .state(&state)
        .spawn();
    // Not ready until both workers are members.
    let first = wait_for(LONG, "the metrics endpoint", || get(port, "/readyz"));
    wait_run_members(&run, &state, &group, &topic, 2, LONG);
    wait_for(LONG, "/readyz 200", || {
        (get(port, "/readyz")?.0 == 200).then_some(())
    });
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/nothing").map(|r| r.0), Some(404));
    eprintln!("first /readyz answer: {first:?}");

    wait_for(LONG, "every record handled", || {
        (read_seen(&file).len() >= n).then_some(())
    });
    let s = wait_for(
        LONG,
        "the metrics to show every record handled and committed",
        || {
            let s = scrape(port);
            let done = sum(&s, "kswarm_records_handled_total") as usize == n
                && per_partition(&s, "kswarm_lag").values().all(|&l| l == 0.0)
                && per_partition(&s, "kswarm_lag").len() == 2;
            done.then_some(s)
        },
    );
    // The broker's committed offsets, read by librdkafka, once the metrics say caught up.
    let ends = committed(&b, &topic, &group, 2);
    let committed_metric = per_partition(&s, "kswarm_committed_offset");
    for (p, end) in &ends {
        assert_eq!(
            committed_metric.get(p).copied(),
            end.map(|e| e as f64),
            "partition {p}"
        );
    }
    assert_eq!(
        per_partition(&s, "kswarm_high_watermark"),
        committed_metric,
        "caught up: the log ends where the commits are"
    );
    assert_eq!(sum(&s, "kswarm_ack_latency_seconds_count") as usize, n);
    let inf: f64 = s
        .iter()
        .filter(|x| x.name == "kswarm_ack_latency_seconds_bucket" && x.labels["le"] == "+Inf")
        .map(|x| x.value)
        .sum();
    assert_eq!(inf as usize, n, "+Inf buckets hold every record");
    assert!(sum(&s, "kswarm_bytes_handled_total") > (n * 20) as f64);
    let rss: Vec<f64> = s
        .iter()
        .filter(|x| x.name == "kswarm_worker_rss_bytes")
        .map(|x| x.value)
        .collect();
    assert_eq!(rss.len(), 2);
    assert!(rss.iter().all(|&r| r > 1e6), "{rss:?}");
    assert_eq!(sum(&s, "kswarm_ready"), 1.0);
    assert_eq!(sum(&s, "kswarm_in_flight_records"), 0.0);

    // A rolling restart: not ready while it runs, ready again after.
    run.signal(Signal::SIGHUP);
    let t0 = Instant::now();
    let mut saw_503 = false;
    while t0.elapsed() < LONG {
        match get(port, "/readyz") {
            Some((503, body)) => {
                saw_503 = true;
                assert!(
                    body.contains("rolling restart") || body.contains("members"),
                    "{body}"
                );
            }
            Some((200, _)) if saw_503 => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(saw_503, "/readyz never said 503 during the rolling restart");
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(200));

    // A SIGKILLed worker counts as a restart for signal.
    let victim = run_state(&state, &group, &topic).unwrap().workers[0].pid as i32;
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_for(LONG, "kswarm_restarts_total{reason=signal} 1", || {
        let s = scrape(port);
        let r: f64 = s
            .iter()
            .filter(|x| x.name == "kswarm_restarts_total" && x.labels["reason"] == "signal")
            .map(|x| x.value)
            .sum();
        (r == 1.0).then_some(())
    });
    assert_eq!(support::stop(&mut run), Some(0), "{}", run.stderr_text());
}

#[test]
fn a_busy_or_malformed_metrics_address_exits_2_naming_the_flag() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().to_string();
    for (addr, want) in [
        (busy.as_str(), "cannot listen there"),
        ("localhost", "is not HOST:PORT"),
        ("127.0.0.1:99999", "is not HOST:PORT"),
    ] {
        let out = Run::new("x", "y")
            .bare()
            .flag("--metrics-addr", addr)
            .state(tempfile::tempdir().unwrap().path())
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {err}");
        let last = support::last_error(&err);
        assert!(
            last.contains("--metrics-addr") && last.contains(want),
            "{addr}: {last}"
        );
    }
}
