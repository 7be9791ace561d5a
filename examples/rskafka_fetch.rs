//! Ceiling for scripts/bench.sh: a bare rskafka fetch loop, no consumer group,
//! no handler. One process, one current-thread runtime (like one worker),
//! one task per partition, each fetching from the earliest offset to the high
//! watermark seen at start, 1 MiB / 100 ms per fetch (the worker's defaults).
//!
//! Without `--print` it only counts: it prints {"first":t} at the first
//! record and {"n":N,"last":t} at the end (t: Unix seconds), the bench's
//! consumer protocol. With `--print` it does kswarm `--format value`'s job
//! instead: each record's value and a newline to stdout (and nothing else),
//! one write per fetched answer, for the harness to count as it counts
//! kswarm's lines.
//!
//! cargo run --release --example rskafka_fetch -- BROKERS TOPIC PARTITIONS [--print]

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::ClientBuilder;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a partition's task hands the main task per answer.
struct Answer {
    records: u64,
    at: f64,
    /// `--print`: the values, one line each.
    lines: Vec<u8>,
}

async fn run(brokers: String, topic: String, partitions: i32, print: bool) -> anyhow::Result<()> {
    let client = ClientBuilder::new(brokers.split(',').map(str::to_string).collect())
        .build()
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Answer>();
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic.clone(), p, UnknownTopicHandling::Error)
            .await?;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut offset = pc.get_offset(OffsetAt::Earliest).await?;
            let end = pc.get_offset(OffsetAt::Latest).await?;
            while offset < end {
                let (records, _hw) = pc.fetch_records(offset, 1..1024 * 1024, 100).await?;
                if let Some(r) = records.last() {
                    offset = r.offset + 1;
                }
                let mut lines = Vec::new();
                if print {
                    for r in &records {
                        lines.extend_from_slice(r.record.value.as_deref().unwrap_or_default());
                        lines.push(b'\n');
                    }
                }
                let _ = tx.send(Answer {
                    records: records.len() as u64,
                    at: now(),
                    lines,
                });
            }
            anyhow::Ok(())
        }));
    }
    drop(tx);
    let mut stdout = std::io::stdout().lock();
    let (mut n, mut first, mut last) = (0u64, None, 0.0);
    while let Some(a) = rx.recv().await {
        if a.records > 0 {
            if print {
                stdout.write_all(&a.lines)?;
            } else if first.is_none() {
                writeln!(stdout, "{{\"first\":{}}}", a.at)?;
            }
            first.get_or_insert(a.at);
            n += a.records;
            last = a.at;
        }
    }
    for t in tasks {
        t.await??;
    }
    if !print {
        writeln!(stdout, "{{\"n\":{n},\"last\":{last}}}")?;
    }
    stdout.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (brokers, topic, partitions, print) = match args.as_slice() {
        [b, t, p] => (b, t, p, false),
        [b, t, p, flag] if flag == "--print" => (b, t, p, true),
        _ => anyhow::bail!("usage: rskafka_fetch BROKERS TOPIC PARTITIONS [--print]"),
    };
    let partitions: i32 = partitions.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(brokers.clone(), topic.clone(), partitions, print))
}
