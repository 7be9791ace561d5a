//! Ceiling for scripts/bench.sh: a bare rskafka fetch loop, no consumer group,
//! no handler. One process, one current-thread runtime (like one worker),
//! one task per partition, each fetching from the earliest offset to the high
//! watermark seen at start, 1 MiB / 100 ms per fetch (the worker's defaults).
//! Prints {"first":t} at the first record and {"n":N,"last":t} at the end
//! (t: Unix seconds), the bench's consumer protocol.
//!
//! cargo run --release --example rskafka_fetch -- BROKERS TOPIC PARTITIONS

use std::time::{SystemTime, UNIX_EPOCH};

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::ClientBuilder;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn run(brokers: String, topic: String, partitions: i32) -> anyhow::Result<()> {
    let client = ClientBuilder::new(brokers.split(',').map(str::to_string).collect())
        .build()
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, f64)>();
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
                let _ = tx.send((records.len() as u64, now()));
            }
            anyhow::Ok(())
        }));
    }
    drop(tx);
    let (mut n, mut first, mut last) = (0u64, None, 0.0);
    while let Some((got, t)) = rx.recv().await {
        if got > 0 {
            if first.is_none() {
                first = Some(t);
                println!("{{\"first\":{t}}}");
            }
            n += got;
            last = t;
        }
    }
    for t in tasks {
        t.await??;
    }
    println!("{{\"n\":{n},\"last\":{last}}}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, partitions] = args.as_slice() else {
        anyhow::bail!("usage: rskafka_fetch BROKERS TOPIC PARTITIONS");
    };
    let partitions: i32 = partitions.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(brokers.clone(), topic.clone(), partitions))
}
