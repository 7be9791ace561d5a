"""The at-least-once baseline of the pipeline benchmark (scripts/bench.sh,
BENCH_ONLY=pipeline; issue 29): a kswarm --exec handler that produces each
result to the output topic itself and acknowledges the input only once the
result is on the broker; no transactions.

  kswarm run ... --format value --exec 'PYTHON alo_handler.py BROKERS OUT [KEY=VALUE..]'

Input: one record value per line on stdin. For each line it produces "x" +
the line (the transform of `sed -u s/^/x/` and of scripts/bench/StreamsMap.java)
to OUT with a plain librdkafka producer (enable.idempotence=false, acks=all,
linger.ms=5, no key: librdkafka's default partitioner), then acknowledges with
one line "ok" per input line, in order. It works in batches: whatever input is
there (up to 10,000 lines) is produced, the producer is flushed (every result
delivered), and only then are the batch's lines acknowledged. A result that
cannot be delivered ends the handler with exit status 1 and its batch
unacknowledged (kswarm restarts it and redelivers: at least once).
KEY=VALUE: more producer settings.
"""
import os
import select
import sys

from confluent_kafka import Producer

MAX_BATCH = 10000


def main():
    if len(sys.argv) < 3:
        print("usage: alo_handler.py BROKERS OUT [KEY=VALUE..]", file=sys.stderr)
        sys.exit(2)
    brokers, out_topic = sys.argv[1], sys.argv[2]
    conf = {
        "bootstrap.servers": brokers,
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
    }
    for kv in sys.argv[3:]:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            print(f"alo_handler.py: {kv!r} is not KEY=VALUE", file=sys.stderr)
            sys.exit(2)
        conf[k] = v
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    p = Producer(conf)
    fd = sys.stdin.fileno()
    pending = b""
    eof = False
    while not eof:
        # Block for the first input, then take whatever else is already there.
        chunks = []
        got = 0
        while True:
            r, _, _ = select.select([fd], [], [], None if not chunks else 0)
            if not r:
                break
            b = os.read(fd, 1 << 20)
            if not b:
                eof = True
                break
            chunks.append(b)
            got += b.count(b"\n")
            if got >= MAX_BATCH:
                break
        data = pending + b"".join(chunks)
        lines = data.split(b"\n")
        pending = lines.pop()  # an unfinished last line waits for its newline
        if not lines:
            continue
        for line in lines:
            while True:
                try:
                    p.produce(out_topic, value=b"x" + line, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.05)  # the local queue is full: let deliveries drain it
        p.flush()
        if failed:
            print(f"alo_handler.py: {len(failed)} results not delivered, e.g. {failed[0]}", file=sys.stderr)
            sys.exit(1)
        ack = b"ok\n" * len(lines)
        while ack:
            ack = ack[os.write(1, ack):]
    p.flush()


if __name__ == "__main__":
    main()
