//! Handler throughput, in process (no broker): records/s through
//! `--exec 'cat'`, `--exec-batch 'cat >/dev/null'` (size 500) and a
//! line-by-line shell-free handler, driven the way the worker drives them.
//!
//! Results go to stderr; the stdout handler writes to stdout, so send that
//! to /dev/null (or a pipe) to measure it:
//!
//! cargo run --release --example handler_bench -- [RECORDS] [VALUE_BYTES] > /dev/null

use std::time::{Duration, Instant};

use kswarm::config::{Format, HandlerSpec};
use kswarm::handler::{Handler, HandlerEnv, HandlerEvent};
use kswarm::record::Record;

async fn run(name: &str, spec: HandlerSpec, format: Format, n: i64, value: &[u8]) {
    let env = HandlerEnv {
        slot: 0,
        group: "bench".into(),
        topic: "bench".into(),
        retry_topics: Vec::new(),
        // The kswarm binary of the same build (cargo builds it first).
        guard_exe: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/release/kswarm"),
    };
    let value = bytes::Bytes::copy_from_slice(value);
    let mut h = Handler::start(&spec, format, 10_000, env)
        .await
        .expect("start");
    let t = Instant::now();
    let mut acked = 0i64;
    for i in 0..n {
        let r = Record {
            partition: (i % 4) as i32,
            offset: i / 4,
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            delivery_count: None,
            lane: kswarm::record::Lane::Main,
        };
        h.send(r).await.expect("send");
    }
    h.close_input().await;
    while let Some(ev) = h.next_event().await {
        match ev {
            HandlerEvent::Ack(a) => acked = acked.max(a.offset),
            other => panic!("{name}: {other:?}"),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(acked, (n - 1) / 4);
    eprintln!(
        "{name:<40} {n:>9} records in {secs:>6.3}s = {:>10.0} records/s",
        n as f64 / secs
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("RECORDS"));
    let size: usize = args.next().map_or(100, |a| a.parse().expect("VALUE_BYTES"));
    let value = vec![b'x'; size];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        eprintln!("{n} records of {size} bytes, max in flight 10000");
        for format in [Format::Value, Format::Json] {
            let f = format!("{format:?}").to_lowercase();
            let spec = HandlerSpec::Stdout;
            run(&format!("stdout --format {f}"), spec, format, n, &value).await;
            run(
                &format!("--exec 'cat' --format {f}"),
                HandlerSpec::Exec("cat".into()),
                format,
                n,
                &value,
            )
            .await;
            let batch = HandlerSpec::Batch {
                command: "cat >/dev/null".into(),
                size: 500,
                wait: Duration::from_millis(200),
                retries: 0,
            };
            run(
                &format!("--exec-batch 'cat >/dev/null' 500 --format {f}"),
                batch,
                format,
                n / 10,
                &value,
            )
            .await;
        }
    });
}
