"""A transactional producer (confluent-kafka) for the read_committed tests.

  txn_producer.py BROKERS TOPIC PREFIX N
      begins a transaction, produces PREFIX-0 .. PREFIX-(N-1) to partition 0,
      flushes (the records are on the broker, the transaction open), prints
      "open", then waits for one line on stdin: "commit" or "abort"; does it,
      prints "done" and exits.
  txn_producer.py BROKERS TOPIC PREFIX N GROUP IN_TOPIC OFFSET
      the same, and the transaction also commits OFFSET as GROUP's next
      offset of partition 0 of IN_TOPIC (send_offsets_to_transaction, as a
      consume-transform-produce app does): until the transaction ends, the
      group's offset of that partition is unstable (KIP-447).
"""
import sys
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def main():
    brokers, topic, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    p = Producer({
        "bootstrap.servers": brokers,
        "transactional.id": f"kswarm-test-{uuid.uuid4()}",
        "enable.idempotence": True,
    })
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, value=f"{prefix}-{i}".encode(), partition=0)
    p.flush(30)
    if len(sys.argv) == 8:
        group, in_topic, offset = sys.argv[5], sys.argv[6], int(sys.argv[7])
        # A consumer that never joins: generation -1, a "simple" commit.
        meta = Consumer({"bootstrap.servers": brokers, "group.id": group}).consumer_group_metadata()
        p.send_offsets_to_transaction([TopicPartition(in_topic, 0, offset)], meta, 30)
    print("open", flush=True)
    what = sys.stdin.readline().strip()
    if what == "commit":
        p.commit_transaction(30)
    elif what == "abort":
        p.abort_transaction(30)
    else:
        raise SystemExit(f"expected commit or abort, got {what!r}")
    print("done", flush=True)


if __name__ == "__main__":
    main()
