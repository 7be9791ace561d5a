#!/usr/bin/env python3
"""A kswarm --exec handler in Python, standard library only.

Run it (one handler per worker; records in, one verdict per record out):

    kswarm run -b kafka:9092 -t events -g loader --format json --verdicts \
        --dead-letter-topic events-dead \
        --exec 'python3 examples/handlers/python/handler.py'

Each record arrives on stdin as one JSON line (--format json):
{"topic","partition","offset","timestamp","key","value","headers":[{"key","value"}]}.
The value is taken to be a JSON object (an application event). For each
record, in order, one line goes to stdout:
  ok              handled
  retry           deliver it again later (a write that failed; or the demo
                  header `simulate: transient`, answered once with retry)
  reject REASON   poison, never again: kswarm copies it to --dead-letter-topic
                  (a value that is missing, not UTF-8, not JSON, not an object)
Handled records are appended, one JSON line each, to $HANDLED_FILE (stderr if
unset). Logs go to stderr: a stray stdout line would be taken as a verdict.

Batching: it reads what the pipe holds, handles every whole line of it, then
writes all their verdicts in one write (one per line, in order, never before
the record was read). SIGTERM: it stops reading, answers what it has read,
and exits 0; kswarm delivers anything not answered again. On a graceful stop
kswarm closes its stdin instead (EOF), after the last answer it waits for.
"""
import json
import os
import select
import signal
import sys

OUT = os.environ.get("HANDLED_FILE")
# (partition, offset) of the records already answered with `retry` (the demo).
retried = set()


def log(msg):
    print(f"handler.py: {msg}", file=sys.stderr, flush=True)


def one_line(text):
    """A reject reason is the rest of one line."""
    return " ".join(str(text).split())


def verdict(line, out):
    """The verdict for one record line; the handled record goes to `out`."""
    try:
        rec = json.loads(line)
    except ValueError:
        return "reject not a kswarm JSON record (run kswarm with --format json)"
    value = rec.get("value")
    if value is None:
        return "reject no value"
    if rec.get("value_encoding") == "base64":
        return "reject value is not UTF-8 text"
    try:
        event = json.loads(value)
    except ValueError as e:
        return f"reject value is not JSON: {one_line(e)}"
    if not isinstance(event, dict):
        return "reject value is not a JSON object"
    headers = {h["key"]: h["value"] for h in rec.get("headers") or []}
    where = (rec["partition"], rec["offset"])
    if headers.get("simulate") == "transient" and where not in retried:
        retried.add(where)
        return "retry"
    handled = {"partition": rec["partition"], "offset": rec["offset"], "key": rec.get("key"),
               "source": headers.get("source"), "event": event.get("event"), "by": "python"}
    try:
        out.write(json.dumps(handled) + "\n")
    except OSError as e:
        log(f"cannot write partition {where[0]} offset {where[1]}: {e}")
        return "retry"
    return "ok"


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main():
    out = open(OUT, "a") if OUT else sys.stderr
    # SIGTERM wakes the select below through this pipe.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: None)
    pending = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            log("SIGTERM: every record read has its verdict; exiting")
            break
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break  # EOF: kswarm is stopping this worker
        pending += chunk
        *lines, pending = pending.split(b"\n")
        verdicts = [verdict(line, out) for line in lines]
        # The effects first, then the verdicts: `ok` means it is done.
        out.flush()
        write_all(1, "".join(v + "\n" for v in verdicts).encode())
    out.flush()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.exit(1)  # kswarm went away: nothing left to answer to
