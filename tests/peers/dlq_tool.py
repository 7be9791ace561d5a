"""confluent-kafka (librdkafka) tools for the dead-letter tests (tests/verdicts.rs).

  dlq_tool.py read BROKERS TOPIC
      prints one JSON line {"partition", "offset", "key", "value", "headers": {name: value}}
      per record of TOPIC, from the start to the end of every partition, then exits.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition


def read(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "dlq-tool-unused",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    left = {p for p in parts if ends[p] > 0}
    while left:
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"no record within 10 s; still waiting for partitions {sorted(left)}")
        if m.error():
            continue
        headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
        print(json.dumps({"partition": m.partition(), "offset": m.offset(),
                          "key": m.key().decode() if m.key() is not None else None,
                          "value": m.value().decode() if m.value() is not None else None,
                          "headers": headers}), flush=True)
        if m.offset() + 1 >= ends[m.partition()]:
            left.discard(m.partition())
    c.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"read": read}[cmd](*args)
