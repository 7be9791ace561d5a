"""One librdkafka (confluent-kafka) consumer process for scripts/bench.sh.

Default settings except what the bench needs: read from earliest, and the
partition-EOF events that let it report promptly when it has caught up.
  rdkafka_consumer.py BROKERS TOPIC GROUP count     -> {"first":t} then {"n":N,"last":t} lines
  rdkafka_consumer.py BROKERS TOPIC GROUP failover  -> "pid partition offset" per record
  rdkafka_consumer.py BROKERS TOPIC GROUP latency DIR  (BENCH_ONLY=latency) -> count mode's
      lines, and each record's produce-to-consume latency in latency_hist.h's buckets (latency.py's
      Hist), counted in DIR/lat-PID.bin (a shared file mapping: a SIGKILL loses no count)
Both modes print {"pid":P,"assigned":[..],"t":t} on every assignment change
(empty list: revoked).
Stops on SIGTERM (closes the consumer: commit and leave).
BENCH_RDKAFKA_CONFIG=FILE (optional): a librdkafka properties file (key=value
lines, # or ! comments, as for kcat -F) whose settings go on top of the ones
above, e.g. security.protocol=SASL_SSL, sasl.mechanism, sasl.username,
sasl.password, ssl.ca.location. Unset: the settings above and nothing else.
"""
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError

brokers, topic, group, mode = sys.argv[1:5]
stop = False
lat = None
if mode == "latency":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from latency import Hist  # scripts/bench/latency.py
    lat = Hist(sys.argv[5])


def on_term(_sig, _frm):
    global stop
    stop = True


def properties(path):
    """key=value lines of a properties file; blank lines and # or ! comments skipped."""
    conf = {}
    with open(path) as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise SystemExit(f"rdkafka_consumer.py: {path}:{no}: not key=value")
            conf[key.strip()] = value.strip()
    return conf


signal.signal(signal.SIGTERM, on_term)
conf = {
    "bootstrap.servers": brokers,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
}
if os.environ.get("BENCH_RDKAFKA_CONFIG"):
    conf.update(properties(os.environ["BENCH_RDKAFKA_CONFIG"]))
c = Consumer(conf)
out = sys.stdout
pid = os.getpid()
owned = set()


def assigned(_consumer, parts, gone=False):
    for tp in parts:
        (owned.discard if gone else owned.add)(tp.partition)
    out.write(json.dumps({"pid": pid, "assigned": sorted(owned), "t": time.time()}) + "\n")
    out.flush()


c.subscribe([topic], on_assign=assigned,
            on_revoke=lambda cons, parts: assigned(cons, parts, True),
            on_lost=lambda cons, parts: assigned(cons, parts, True))
n = 0
first = None
last = None
reported = 0.0
reported_n = 0
while not stop:
    if lat:
        # consume() waits its whole timeout for num_messages: at a low rate every record would wait. A
        # latency-minded loop takes the first record as it comes, then whatever else is there already.
        first_msg = c.poll(0.2)
        msgs = [first_msg] + c.consume(num_messages=999, timeout=0) if first_msg is not None else []
    else:
        msgs = c.consume(num_messages=1000, timeout=0.2)
    eof = False
    got = 0
    now = time.time()
    now_ns = time.time_ns()
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                eof = True
            continue
        if mode == "failover":
            out.write(f"{pid} {m.partition()} {m.offset()}\n")
        elif lat:
            lat.record(m.value(), now_ns)
        got += 1
    n += got
    if mode == "failover":
        out.flush()
        continue
    if n and first is None:
        first = now
        out.write(json.dumps({"pid": pid, "first": first}) + "\n")
        out.flush()
    if got:
        last = now
    if n != reported_n and (eof or now - reported > 0.25 or n - reported_n >= 2000):
        out.write(json.dumps({"pid": pid, "n": n, "last": last}) + "\n")
        out.flush()
        reported = now
        reported_n = n
c.close()
