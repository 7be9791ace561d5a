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

Extra librdkafka settings, for every mode, on top of (and overriding) the
ones above, e.g. to join over TLS or SASL:
  --set KEY=VALUE        anywhere in the arguments, repeatable
                         (--set security.protocol=SASL_SSL --set sasl.mechanism=PLAIN ...)
  CK_MEMBER_CONFIG=FILE  (environment) a file of KEY=VALUE lines; blank lines
                         and lines starting with # are skipped. --set wins over it.
Without them the peer behaves exactly as before.
"""
import json
import os
import sys
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# The extra librdkafka settings (--set and CK_MEMBER_CONFIG), filled in by parse_args.
EXTRA = {}


def parse_args(argv):
    """Takes the --set KEY=VALUE options out of argv into EXTRA (after the CK_MEMBER_CONFIG file's); returns the rest."""
    path = os.environ.get("CK_MEMBER_CONFIG")
    if path:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if "=" not in line:
                    raise SystemExit(f"{path}:{n}: not KEY=VALUE: {line}")
                k, v = line.split("=", 1)
                EXTRA[k.strip()] = v.strip()
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--set" or a.startswith("--set="):
            if a == "--set":
                if i + 1 >= len(argv):
                    raise SystemExit("--set needs KEY=VALUE")
                kv = argv[i + 1]
                i += 2
            else:
                kv = a[len("--set="):]
                i += 1
            if "=" not in kv:
                raise SystemExit(f"--set needs KEY=VALUE, got {kv!r}")
            k, v = kv.split("=", 1)
            EXTRA[k] = v
        else:
            rest.append(a)
            i += 1
    return rest


def with_extra(conf):
    return {**conf, **EXTRA}


def consume(brokers, topic, group, assignors):
    c = Consumer(with_extra({
        "bootstrap.servers": brokers,
        "group.id": group,
        "partition.assignment.strategy": assignors,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }))
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
    c = Consumer(with_extra(conf))
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
    c = Consumer(with_extra({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False}))
    parts = c.committed([TopicPartition(topic, p) for p in range(n)], timeout=10)
    res = {}
    for p in parts:
        if p.error is not None:
            raise SystemExit(f"committed: partition {p.partition}: {p.error}")
        res[str(p.partition)] = p.offset if p.offset >= 0 else None
    out({"committed": res})
    c.close()


if __name__ == "__main__":
    args = [sys.argv[0]] + parse_args(sys.argv[1:])
    mode = args[1]
    if mode == "consume":
        consume(args[2], args[3], args[4], args[5])
    elif mode == "consume-to-file":
        consume_to_file(*args[2:7])
    elif mode == "committed":
        committed(args[2], args[3], args[4], int(args[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
