"""The results' reader of the pipeline benchmark (scripts/bench.sh,
BENCH_ONLY=pipeline): reads the output topic from the beginning with
isolation.level=read_committed (so a result counts once its transaction is
committed; at-least-once results count once they are on the broker), every
partition assigned, no group. Each result's value is "x" + the input value, and
the input value starts with its sequence number (10 digits).

  pipeline_reader.py BROKERS TOPIC N count
      stops once it has every sequence number 0..N-1. stdout: {"ready":t} once
      every partition is at its end; {"first":t} at the first result;
      {"n":DISTINCT,"dups":D,"t":T} about every 0.25 s (T: the arrival of the
      last new result); {"done":T,"n":N,"dups":D} at the end.
  pipeline_reader.py BROKERS TOPIC 0 latency SETTLE_S
      input values "SEQ PRODUCE_TIME_NS ..." (scripts/bench/rate_producer.py):
      latency = arrival - produce time, for the results whose input was produced
      SETTLE_S or more after the first result arrived (the start-up backlog is
      left out). Until its stdin closes; then {"lat":{"n","p50","p99","max",
      "mean"} (ms),"n":DISTINCT,"dups":D}. Progress lines as in count mode.
fetch.wait.max.ms=20 in latency mode, so the reader's own wait adds little.
"""
import json
import os
import select
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

brokers, topic, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
settle = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
latency = mode == "latency"
conf = {
    "bootstrap.servers": brokers,
    "group.id": "pipeline-reader-unused",
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
}
if latency:
    conf["fetch.wait.max.ms"] = 20
c = Consumer(conf)
parts = []
deadline = time.time() + 30
while not parts:
    t = c.list_topics(topic, timeout=10).topics.get(topic)
    if t is not None and t.error is None:
        parts = sorted(t.partitions)
    if not parts:
        if time.time() > deadline:
            raise SystemExit(f"pipeline_reader.py: no topic {topic}")
        time.sleep(0.2)
c.assign([TopicPartition(topic, p, -2) for p in parts])


def say(d):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()


seen = bytearray(n) if n else None
seen_set = set()
distinct = dups = 0
first = last_new = None
ready = False
eofs = set()
lats = []  # (produce time s, latency s)
reported = 0.0
stdin_open = latency
while True:
    if latency:
        m = c.poll(0.05)
        msgs = ([m] if m is not None else []) + c.consume(num_messages=1000, timeout=0)
    else:
        msgs = c.consume(num_messages=10000, timeout=0.1)
    now = time.time()
    for m in msgs:
        e = m.error()
        if e:
            if e.code() == KafkaError._PARTITION_EOF:
                eofs.add(m.partition())
            continue
        v = m.value() or b""
        try:
            seq = int(v[1:11])
        except ValueError:
            continue
        if seen is not None and seq < n:
            if seen[seq]:
                dups += 1
                continue
            seen[seq] = 1
        else:
            if seq in seen_set:
                dups += 1
                continue
            seen_set.add(seq)
        distinct += 1
        last_new = now
        if first is None:
            first = now
            say({"first": now})
        if latency:
            try:
                ts = int(v[12:].split(b" ", 1)[0]) / 1e9
            except ValueError:
                continue
            lats.append((ts, now - ts))
    if not ready and len(eofs) == len(parts):
        ready = True
        say({"ready": now})
    if now - reported >= 0.25:
        reported = now
        say({"n": distinct, "dups": dups, "t": last_new})
    if not latency and distinct >= n:
        say({"done": last_new, "n": distinct, "dups": dups})
        break
    if stdin_open:
        r, _, _ = select.select([0], [], [], 0)
        if r and not os.read(0, 4096):
            break
c.close()
if latency:
    sel = sorted(lat for ts, lat in lats if first is not None and ts >= first + settle)
    out = {"n": distinct, "dups": dups}
    if sel:
        def pct(q):
            return sel[min(len(sel) - 1, int(q * len(sel)))] * 1000

        out["lat"] = {"n": len(sel), "p50": pct(0.50), "p99": pct(0.99), "max": sel[-1] * 1000,
                      "mean": sum(sel) / len(sel) * 1000}
    else:
        out["lat"] = None
    say(out)
