"""A librdkafka producer (confluent-kafka) of compressed batches, for tests/compressed_topics.rs.

  codec_producer.py BROKERS TOPIC CODEC PREFIX N
      produces PREFIX-0 .. PREFIX-(N-1), each followed by a space and 150 bytes of log-like padding (librdkafka_value in
      tests/compressed_topics.rs), with
      compression.type=CODEC and a linger long enough for batches of hundreds of records; flushes, prints
      "produced N" and exits (non-zero when a record failed).
"""
import sys

from confluent_kafka import Producer


def main():
    brokers, topic, codec, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    failed = []
    p = Producer({"bootstrap.servers": brokers, "compression.type": codec, "linger.ms": 100,
                  "batch.num.messages": 10000})
    pad = "host-7 sshd[4242]: Accepted publickey for user3 " * 4  # tests/compressed_topics.rs: the same
    for i in range(n):
        p.produce(topic, value=f"{prefix}-{i} {pad[:150]}".encode(),
                  on_delivery=lambda err, _msg: err and failed.append(err))
        p.poll(0)
    left = p.flush(60)
    if left or failed:
        print(f"not delivered: {left} left, errors {failed[:3]}", file=sys.stderr)
        sys.exit(1)
    print(f"produced {n}", flush=True)


if __name__ == "__main__":
    main()
