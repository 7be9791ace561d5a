"""A confluent-kafka (librdkafka) peer for the group tests.

  ck_member.py consume BROKERS TOPIC GROUP ASSIGNORS
      joins GROUP, prints {"assigned": [...]} (sorted partitions of TOPIC) on
      every assignment change, and closes (LeaveGroup) when stdin closes.
  ck_member.py consume-to-file BROKERS TOPIC GROUP ASSIGNOR OUTFILE
      joins GROUP with ASSIGNOR (range | roundrobin), reads from the earliest
      offset with auto commit off, appends one line
      {"partition": P, "offset": O, "value": "..."} per record to OUTFILE
      (flushed), commits synchronously after each poll batch, prints
      {"assigned": [...]} / {"revoked": [...]} like consume, and closes
      (LeaveGroup) when stdin closes, printing {"closed": true}
      (tests/interop.rs).
  ck_member.py committed BROKERS TOPIC GROUP N
      prints {"committed": {partition: offset or null}} for partitions 0..N-1.
"""
import json
import sys
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def consume(brokers, topic, group, assignors):
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "partition.assignment.strategy": assignors,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    })
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    def on_assign(consumer, parts):
        out({"assigned": sorted(p.partition for p in parts if p.topic == topic)})

    def on_revoke(consumer, parts):
        out({"revoked": sorted(p.partition for p in parts if p.topic == topic)})

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        c.poll(0.1)
    c.close()
    out({"closed": True})


def consume_to_file(brokers, topic, group, assignor, outfile):
    conf = {
        "bootstrap.servers": brokers,
        "group.id": group,
        "client.id": "librdkafka-peer",
        "max.poll.interval.ms": 30000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }
    if assignor.startswith("consumer:"):
        # KIP-848: the broker assigns (uniform or range) and sets the session.
        conf.update({"group.protocol": "consumer", "group.remote.assignor": assignor.split(":", 1)[1]})
    elif assignor in ("range", "roundrobin"):
        conf.update({
            "group.protocol": "classic",
            "partition.assignment.strategy": assignor,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
        })
    else:
        raise SystemExit(f"unknown assignor {assignor}; use range, roundrobin, consumer:uniform or consumer:range")
    c = Consumer(conf)
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    # The callbacks name what changed: everything under the classic (eager)
    # protocol, only the partitions added or taken away under the consumer
    # protocol. "assigned" always prints the whole set owned now.
    owned = set()

    def on_assign(consumer, parts):
        owned.update(p.partition for p in parts if p.topic == topic)
        out({"assigned": sorted(owned)})

    def on_revoke(consumer, parts):
        gone = sorted(p.partition for p in parts if p.topic == topic)
        owned.difference_update(gone)
        out({"revoked": gone})

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    with open(outfile, "a") as f:
        while not stop.is_set():
            msgs = c.consume(num_messages=500, timeout=0.1)
            offsets = {}
            for m in msgs:
                if m.error() is not None:
                    sys.stderr.write(f"ck_member.py: {m.error()}\n")
                    continue
                value = (m.value() or b"").decode("utf-8", "replace")
                f.write(json.dumps({"partition": m.partition(), "offset": m.offset(), "value": value}) + "\n")
                f.flush()
                offsets[m.partition()] = m.offset() + 1
            if offsets:
                try:
                    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                             asynchronous=False)
                except KafkaException as e:
                    # A rebalance took the partitions away: their next owner gets these records again.
                    sys.stderr.write(f"ck_member.py: commit failed: {e}\n")
    c.close()
    out({"closed": True})


def committed(brokers, topic, group, n):
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    parts = c.committed([TopicPartition(topic, p) for p in range(n)], timeout=10)
    res = {}
    for p in parts:
        if p.error is not None:
            raise SystemExit(f"committed: partition {p.partition}: {p.error}")
        res[str(p.partition)] = p.offset if p.offset >= 0 else None
    out({"committed": res})
    c.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif mode == "consume-to-file":
        consume_to_file(*sys.argv[2:7])
    elif mode == "committed":
        committed(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
