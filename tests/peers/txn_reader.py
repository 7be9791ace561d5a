"""A librdkafka (confluent-kafka) reader of a whole topic with a chosen isolation
level, for the exactly-once tests of issue 29 (`kswarm run --output-topic`);
the same interface as tests/peers/TxnReader.java.

  txn_reader.py BROKERS TOPIC ISOLATION N IDLE_MS MODE [EXPECT_FILE|-] [KEY=VALUE..]

ISOLATION: read_committed or read_uncommitted. No group: every partition of
TOPIC is assigned and read from the beginning (nothing is committed). Reading
stops once at least N records were read (N=0: any number) and every partition
has reached its end (librdkafka's partition EOF; under read_committed that is
the last stable offset, so an open transaction's records are not waited for),
or after IDLE_MS without a new record.
MODE:
  values   each record's value (UTF-8, one line each) on stdout
  summary  one JSON line: {"isolation","count","distinct","duplicates",
           "complete","partitions":{P:count},"dup_examples":[..]} and, with
           EXPECT_FILE, "expected","missing","unexpected","missing_examples",
           "unexpected_examples"; "exactly_once" in every case
  check    the summary line; exit status 1 unless every expected value was read
           exactly once (no duplicate, none missing, none unexpected), or
           without EXPECT_FILE (`-`) no duplicate and at least N records
EXPECT_FILE: the expected values, one per line. KEY=VALUE: more librdkafka
settings. Exit status: 0, 1 (check failed or no such topic), 2 (usage).
Runs with build/venv/bin/python (scripts/broker.sh install).
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

EXAMPLES = 10


def usage(why):
    print(f"txn_reader.py: {why}", file=sys.stderr)
    print("usage: txn_reader.py BROKERS TOPIC read_committed|read_uncommitted N IDLE_MS values|summary|check "
          "[EXPECT_FILE|-] [KEY=VALUE..]", file=sys.stderr)
    sys.exit(2)


def main():
    args = sys.argv[1:]
    if len(args) < 6:
        usage("too few arguments")
    brokers, topic, isolation, n, idle_ms, mode = args[:6]
    if isolation not in ("read_committed", "read_uncommitted"):
        usage(f"ISOLATION must be read_committed or read_uncommitted, not {isolation!r}")
    if mode not in ("values", "summary", "check"):
        usage(f"MODE must be values, summary or check, not {mode!r}")
    n, idle = int(n), int(idle_ms) / 1000.0
    rest = args[6:]
    expect_file = "-"
    if rest and "=" not in rest[0]:
        expect_file, rest = rest[0], rest[1:]
    conf = {
        "bootstrap.servers": brokers,
        "group.id": "txn-reader-unused",  # required by librdkafka; nothing joins or commits
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }
    for kv in rest:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            usage(f"{kv!r} is not KEY=VALUE")
        conf[k] = v
    c = Consumer(conf)
    deadline = time.time() + max(idle, 10.0)
    parts = []
    while not parts:
        md = c.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None:
            parts = sorted(t.partitions)
        if not parts:
            if time.time() > deadline:
                print(f"txn_reader.py: topic {topic} has no partitions (does it exist?)", file=sys.stderr)
                sys.exit(1)
            time.sleep(0.2)
    c.assign([TopicPartition(topic, p, -2) for p in parts])  # -2: OFFSET_BEGINNING

    values = mode == "values"
    seen = {}
    dup_examples = []
    per = {p: 0 for p in parts}
    count = 0
    at_eof = set()
    last_record = time.time()
    out = sys.stdout
    complete = False
    while True:
        msgs = c.consume(num_messages=1000, timeout=0.2)
        lines = []
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                print(f"txn_reader.py: {m.error()}", file=sys.stderr)
                continue
            at_eof.discard(m.partition())
            v = (m.value() or b"").decode("utf-8", errors="replace")
            count += 1
            per[m.partition()] = per.get(m.partition(), 0) + 1
            if values:
                lines.append(v)
            else:
                k = seen.get(v, 0) + 1
                seen[v] = k
                if k > 1 and len(dup_examples) < EXAMPLES and v not in dup_examples:
                    dup_examples.append(v)
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        now = time.time()
        if any(not m.error() for m in msgs):
            last_record = now
        if count >= n and len(at_eof) == len(parts):
            complete = True
            break
        if now - last_record >= idle:
            break
    c.close()
    if values:
        if not complete:
            print(f"txn_reader.py: stopped after {idle_ms} ms without a record, having read {count} of {n} records",
                  file=sys.stderr)
        return
    s = {"isolation": isolation, "count": count, "distinct": len(seen), "duplicates": count - len(seen),
         "complete": complete, "partitions": {str(p): k for p, k in sorted(per.items())},
         "dup_examples": dup_examples}
    ok = count == len(seen)
    if expect_file != "-":
        with open(expect_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        expected = set(lines)
        missing = [e for e in lines if e not in seen]
        unexpected = [v for v in seen if v not in expected]
        s.update(expected=len(expected), missing=len(missing), unexpected=len(unexpected),
                 missing_examples=missing[:EXAMPLES], unexpected_examples=unexpected[:EXAMPLES])
        ok = ok and not missing and not unexpected
    else:
        ok = ok and count >= n
    s["exactly_once"] = ok
    print(json.dumps(s), flush=True)
    if mode == "check" and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
