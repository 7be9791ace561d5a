"""A confluent-kafka (librdkafka) peer for the group tests.

  ck_member.py consume BROKERS TOPIC GROUP ASSIGNORS
      joins GROUP, prints {"assigned": [...]} (sorted partitions of TOPIC) on
      every assignment change, and closes (LeaveGroup) when stdin closes.
  ck_member.py committed BROKERS TOPIC GROUP N
      prints {"committed": {partition: offset or null}} for partitions 0..N-1.
"""
import json
import sys
import threading

from confluent_kafka import Consumer, TopicPartition


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
    elif mode == "committed":
        committed(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
