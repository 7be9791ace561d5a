"""The failover feed for scripts/bench.sh: RATE records/s, round-robin over
the partitions, until SIGTERM; a process of its own, so that the harness's
threads cannot slow it down. On exit it prints on stderr how many records it
sent and how far behind its schedule it fell at worst.
  slow_producer.py BROKERS TOPIC PARTITIONS RATE
"""
import signal
import sys
import time

from confluent_kafka import Producer

brokers, topic, partitions, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
stop = False


def on_term(_sig, _frm):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
p = Producer({"bootstrap.servers": brokers, "linger.ms": 0})
i = 0
worst = 0.0
t0 = time.time()
while not stop:
    now = time.time()
    worst = max(worst, now - (t0 + i / rate))
    p.produce(topic, value=f"{now:.6f} {i}".encode(), partition=i % partitions)
    p.poll(0)
    i += 1
    delay = t0 + i / rate - time.time()
    if delay > 0:
        time.sleep(delay)
p.flush(15)
print(f"slow producer {topic}: {i} records in {time.time() - t0:.0f} s, at worst {worst:.2f} s behind schedule",
      file=sys.stderr)
