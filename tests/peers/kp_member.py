"""A kafka-python peer for the group tests.

  kp_member.py consume BROKERS TOPIC GROUP
      joins GROUP with the range assignor, prints {"assigned": [...]} on every
      assignment and {"revoked": [...]} on revocation, closes when stdin closes.
"""
import json
import sys
import threading

from kafka import KafkaConsumer, ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor


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


if __name__ == "__main__":
    if sys.argv[1] != "consume":
        raise SystemExit(f"unknown mode {sys.argv[1]}")
    consume(sys.argv[2], sys.argv[3], sys.argv[4])
