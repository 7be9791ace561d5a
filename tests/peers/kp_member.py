"""A kafka-python peer for the group tests.

  kp_member.py consume BROKERS TOPIC GROUP
      joins GROUP with the range assignor, prints {"assigned": [...]} on every
      assignment and {"revoked": [...]} on revocation, closes when stdin closes.
  kp_member.py consume-to-file BROKERS TOPIC GROUP ASSIGNOR OUTFILE
      joins GROUP with ASSIGNOR (range | roundrobin), reads from the earliest
      offset with auto commit off, appends one line
      {"partition": P, "offset": O, "value": "..."} per record to OUTFILE
      (flushed), commits synchronously after each poll batch, prints
      {"assigned": [...]} / {"revoked": [...]} like consume, and closes
      (LeaveGroup) when stdin closes, printing {"closed": true}
      (tests/interop.rs).
"""
import json
import sys
import threading

from kafka import KafkaConsumer, ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Listener(ConsumerRebalanceListener):
    def __init__(self, topic):
        self.topic = topic

    def on_partitions_revoked(self, revoked):
        out({"revoked": sorted(p.partition for p in revoked if p.topic == self.topic)})

    def on_partitions_assigned(self, assigned):
        out({"assigned": sorted(p.partition for p in assigned if p.topic == self.topic)})


def consume(brokers, topic, group):
    c = KafkaConsumer(
        bootstrap_servers=brokers.split(","),
        group_id=group,
        partition_assignment_strategy=[RangePartitionAssignor],
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    c.subscribe([topic], listener=Listener(topic))
    while not stop.is_set():
        c.poll(timeout_ms=100)
    c.close()
    out({"closed": True})


ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}


def consume_to_file(brokers, topic, group, assignor, outfile):
    if assignor not in ASSIGNORS:
        raise SystemExit(f"unknown assignor {assignor}; use range or roundrobin")
    c = KafkaConsumer(
        bootstrap_servers=brokers.split(","),
        group_id=group,
        client_id="kafka-python-peer",
        partition_assignment_strategy=[ASSIGNORS[assignor]],
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
        max_poll_interval_ms=30000,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    c.subscribe([topic], listener=Listener(topic))
    with open(outfile, "a") as f:
        while not stop.is_set():
            batch = c.poll(timeout_ms=100)
            offsets = {}
            for tp, records in batch.items():
                for r in records:
                    value = (r.value or b"").decode("utf-8", "replace")
                    f.write(json.dumps({"partition": r.partition, "offset": r.offset, "value": value}) + "\n")
                    f.flush()
                    offsets[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
            if offsets:
                try:
                    c.commit(offsets)
                except KafkaError as e:
                    # A rebalance took the partitions away: their next owner gets these records again.
                    sys.stderr.write(f"kp_member.py: commit failed: {e!r}\n")
    c.close()
    out({"closed": True})


if __name__ == "__main__":
    if sys.argv[1] == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "consume-to-file":
        consume_to_file(*sys.argv[2:7])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")
