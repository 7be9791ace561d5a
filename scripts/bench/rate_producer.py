"""The fixed-rate input of the pipeline benchmark's latency runs (scripts/bench.sh,
BENCH_ONLY=pipeline): RATE records/s, round-robin over the partitions, until
SIGTERM. Each value is "SEQ PRODUCE_TIME_NS " padded with "p" to 199 bytes
(SEQ: 10 digits from 0; PRODUCE_TIME_NS: time.time_ns() when produce() was
called), so that the reader of the results can compute the end-to-end latency.
librdkafka producer, linger.ms=1, otherwise defaults. On exit (after a flush)
it prints {"sent":N,"seconds":S,"worst_behind":S} on stdout.
  rate_producer.py BROKERS TOPIC PARTITIONS RATE
"""
import json
import signal
import sys
import time

from confluent_kafka import Producer

brokers, topic, partitions, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
VALUE_BYTES = 199  # + the newline a line-based handler adds = 200, as the throughput topic
stop = False


def on_term(_sig, _frm):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
p = Producer({"bootstrap.servers": brokers, "linger.ms": 1})
i = 0
worst = 0.0
t0 = time.time()
while not stop:
    now = time.time()
    worst = max(worst, now - (t0 + i / rate))
    head = f"{i:010d} {time.time_ns()} "
    v = (head + "p" * (VALUE_BYTES - len(head))).encode()
    while True:
        try:
            p.produce(topic, value=v, partition=i % partitions)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
    i += 1
    delay = t0 + i / rate - time.time()
    if delay > 0.001:
        time.sleep(delay)
p.flush(30)
print(json.dumps({"sent": i, "seconds": time.time() - t0, "worst_behind": worst}), flush=True)
