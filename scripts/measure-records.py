#!/usr/bin/env python3
"""Time kswarm by its records, as a user sees it: when does the handler get
the first record, and how long do a killed worker's partitions stand still?

  scripts/measure-records.py BROKER [RUNS] [-- extra kswarm run flags]
  e.g. scripts/measure-records.py 127.0.0.1:9092 5 -- --group-protocol consumer

Per run, on a fresh topic (2 partitions) and group, `kswarm run -w 2`:
  first     launch of `kswarm run` -> the handler's first record (1,000
            records wait in the topic)
  failover  with 200 records/s flowing, SIGKILL of slot 1's worker -> the
            first record of its partitions that a handler gets after the kill
Needs the Python of build/venv (confluent-kafka, for the feed); prints each
run and the medians.
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KSWARM = os.environ.get("KSWARM_BIN", os.path.join(ROOT, "target", "release", "kswarm"))
PY = os.environ.get("KSWARM_PYTHON", os.path.join(ROOT, "build", "venv", "bin", "python"))
FEED = os.path.join(ROOT, "scripts", "bench", "slow_producer.py")
# Each record: "<time handled> <partition>", flushed, then the ack.
HANDLER = (f"{PY} -c 'import sys, time, json\n"
           "f = open(sys.argv[1], \"a\")\n"
           "for l in sys.stdin:\n"
           "    f.write(\"%.6f %d\\n\" % (time.time(), json.loads(l)[\"partition\"])); f.flush()\n"
           "    sys.stdout.write(\"ok\\n\"); sys.stdout.flush()\n' ")


def handled(path):
    try:
        with open(path) as f:
            return [(float(t), int(p)) for t, p in (l.split() for l in f if l.endswith("\n"))]
    except FileNotFoundError:
        return []


def wait(what, f, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit(f"measure-records: no {what} within {timeout}s")


def workers(broker, topic, group, state):
    out = subprocess.run([KSWARM, "status", "-b", broker, "-t", topic, "-g", group, "--json"],
                         capture_output=True, text=True, env=dict(os.environ, KSWARM_STATE_DIR=state))
    if out.returncode != 0:
        return None
    sup = json.loads(out.stdout).get("supervisor") or {}
    return sup.get("workers")


def one(broker, n, extra, root):
    tag = f"{os.getpid()}-{n}-{time.time_ns() % 10**9}"
    topic, group = f"measrec-t-{tag}", f"measrec-g-{tag}"
    subprocess.run([KSWARM, "plan", "-b", broker, "-t", topic, "-w", "2", "-p", "2", "--apply"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([KSWARM, "produce", "-b", broker, "-t", topic], input="".join(f"w{i}\n" for i in range(1000)),
                   text=True, check=True, stderr=subprocess.DEVNULL)
    state = os.path.join(root, tag)
    out_file = os.path.join(root, f"{tag}.handled")
    env = dict(os.environ, KSWARM_STATE_DIR=state)
    t0 = time.time()
    run = subprocess.Popen([KSWARM, "run", "-b", broker, "-t", topic, "-g", group, "-w", "2", "-p", "keep",
                            "--format", "json", *extra, "--exec", HANDLER + out_file],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    feed = None
    try:
        first = wait("first record", lambda: handled(out_file))
        r = {"first": first[0][0] - t0}
        # Settled: each worker owns one partition.
        ws = wait("a settled group", lambda: (lambda w: w if w and len(w) == 2 and all(
            len(x["partitions"]) == 1 and x.get("generation") is not None for x in w) else None)(
            workers(broker, topic, group, state)))
        feed = subprocess.Popen([PY, FEED, broker, topic, "2", "200"], stderr=subprocess.DEVNULL)
        time.sleep(2)
        victim = next(w for w in ws if w["slot"] == 1)
        parts = set(victim["partitions"])
        t_kill = time.time()
        os.kill(victim["pid"], signal.SIGKILL)
        back = wait("record after the kill",
                    lambda: [t for t, p in handled(out_file) if t > t_kill and p in parts])
        r["failover"] = min(back) - t_kill
        return r
    finally:
        if feed:
            feed.terminate()
            feed.wait()
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        k = args.index("--")
        args, extra = args[:k], args[k + 1:]
    broker = args[0]
    runs = int(args[1]) if len(args) > 1 else 5
    root = tempfile.mkdtemp(prefix="kswarm-measrec-")
    results = []
    try:
        for n in range(runs):
            r = one(broker, n, extra, root)
            results.append(r)
            print(f"run {n}: " + ", ".join(f"{k} {v:.3f}s" for k, v in r.items()), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for k in ("first", "failover"):
        vals = [r[k] for r in results]
        print(f"{k}: median {statistics.median(vals):.3f}s (min {min(vals):.3f}, max {max(vals):.3f}, {len(vals)} runs)")


if __name__ == "__main__":
    main()
