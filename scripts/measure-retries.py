#!/usr/bin/env python3
"""The proof of `--retry-delays` (docs/handlers-and-verdicts.md quotes it):
10% of RECORDS records answered `retry` twice, then `ok`, with delays 1 s and
3 s, against the same run without retries and with the in-memory retry.

  scripts/measure-retries.py BROKER [RECORDS]
  e.g. KSWARM_BIN=target/release/kswarm scripts/measure-retries.py 127.0.0.1:19092 100000

Runs, each on a fresh topic (2 partitions, RECORDS values v-0.. produced
before the start) and group, `kswarm run -w 2 --format json --verdicts`
with a Python handler that logs every delivery (line-buffered, so a killed
handler loses no line) and answers `retry` for every tenth value on its
first two deliveries:
  none     the handler says `ok` to everything (the rate to compare with)
  topics   --retry-delays 1s,3s
  memory   --max-record-retries 2 (retries wait in the worker's memory)
  chaos    --retry-delays 1s,3s, one worker SIGKILLed at a third of the run
Per run: lost (values never `ok`), values `ok` more than once, the good
records' rate (the nine values in ten never retried: their count over the
time from the first to the last of their deliveries), and for the retried
values the gap between attempts against the delay (min, median, max, and
how many fell outside [delay, delay + 1 s]).
"""
import os, signal, statistics, subprocess, sys, tempfile, time, uuid

KSWARM = os.environ.get("KSWARM_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "kswarm"))

HANDLER = r'''import json, sys, time
log = open(sys.argv[1], "a", buffering=1)
seen = {}
for line in sys.stdin:
    r = json.loads(line)
    v = r["value"]
    n = int(v.rsplit("-", 1)[1])
    h = {x["key"]: x["value"] for x in r["headers"]}
    seen[v] = seen.get(v, 0) + 1
    attempt = max(int(h.get("kswarm.attempts", "0")) + 1, seen[v])
    retry = sys.argv[2] == "retry" and n % 10 == 0 and attempt <= 2
    verdict = "retry" if retry else "ok"
    log.write("%d %s %d %s\n" % (int(time.time() * 1000), v, attempt, verdict))
    sys.stdout.write(verdict + "\n")
    sys.stdout.flush()
'''


def deliveries(log_dir):
    out = {}
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name)) as f:
            for line in f:
                p = line.split()
                if len(p) != 4:
                    continue
                out.setdefault(p[1], []).append((int(p[0]), int(p[2]), p[3]))
    return out


def one(broker, mode, records, work):
    topic = f"retry-proof-{mode}-{uuid.uuid4().hex[:8]}"
    group = topic + "-g"
    lines = "".join(f"v-{i}\n" for i in range(records))
    subprocess.run([KSWARM, "plan", "-b", broker, "-t", topic, "-g", group, "-p", "2", "--apply"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([KSWARM, "produce", "-b", broker, "-t", topic], input=lines, text=True,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handler = os.path.join(work, "h.py")
    with open(handler, "w") as f:
        f.write(HANDLER)
    log_dir = tempfile.mkdtemp(dir=work)
    log = os.path.join(log_dir, "log")
    flags = {"none": [], "topics": ["--retry-delays", "1s,3s"], "memory": ["--max-record-retries", "2"],
             "chaos": ["--retry-delays", "1s,3s"]}[mode]
    answer = "ok" if mode == "none" else "retry"
    cmd = [KSWARM, "run", "-b", broker, "-t", topic, "-g", group, "-w", "2", "-p", "keep", "--format", "json",
           "--verdicts", "--dead-letter-topic", topic + "-dlq", "--commit-interval", "200ms", *flags,
           "--exec", f"{sys.executable} -u {handler} {log} {answer}"]
    env = dict(os.environ, KSWARM_STATE_DIR=tempfile.mkdtemp(dir=work))
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    killed = False
    deadline = time.time() + 600
    while True:
        time.sleep(0.5)
        d = deliveries(log_dir)
        oks = sum(1 for ds in d.values() if any(x[2] == "ok" for x in ds))
        if mode == "chaos" and not killed and oks >= records // 3:
            workers = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
            if workers:
                os.kill(int(workers[0]), signal.SIGKILL)
                killed = True
        if oks >= records or time.time() > deadline or run.poll() is not None:
            break
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=120)[1].decode(errors="replace")
    d = deliveries(log_dir)
    lost = [f"v-{i}" for i in range(records) if not any(x[2] == "ok" for x in d.get(f"v-{i}", []))]
    twice = sum(1 for ds in d.values() if sum(1 for x in ds if x[2] == "ok") > 1)
    good = [x[0] for i in range(records) if i % 10 != 0 for x in d.get(f"v-{i}", [])[:1]]
    rate = len(good) / max((max(good) - min(good)) / 1000, 1e-3) if good else 0
    gaps = {1000: [], 3000: []}
    # After a SIGKILL, redelivered attempts muddle the gaps: chaos counts losses only.
    if mode not in ("none", "chaos"):
        for i in range(0, records, 10):
            ds = sorted(d.get(f"v-{i}", []), key=lambda x: x[1])
            by_attempt = {}
            for t, a, _ in ds:
                by_attempt.setdefault(a, t)
            for a, delay in ((1, 1000), (2, 3000)):
                if a in by_attempt and a + 1 in by_attempt:
                    gaps[delay].append(by_attempt[a + 1] - by_attempt[a])
    return {"mode": mode, "lost": len(lost), "ok_twice": twice, "rate": rate, "gaps": gaps,
            "exit": run.returncode, "killed": killed, "stderr": err if run.returncode else ""}


def gap_text(g, delay):
    if not g:
        return "-"
    outside = sum(1 for x in g if not delay <= x <= delay + 1000)
    return f"{min(g)}/{int(statistics.median(g))}/{max(g)} ms, {outside} of {len(g)} outside"


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    broker = sys.argv[1]
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    work = tempfile.mkdtemp(prefix="kswarm-retry-proof-")
    results = [one(broker, m, records, work) for m in ("none", "topics", "memory", "chaos")]
    base = results[0]["rate"] or 1
    print(f"{records} records, 2 partitions, kswarm run -w 2 --format json --verdicts; "
          f"every tenth value answered `retry` twice, then `ok`")
    print(f"{'run':<8} {'lost':>5} {'ok twice':>9} {'good rec/s':>11} {'vs none':>8}  "
          f"{'attempt 1->2 (delay 1 s) min/median/max':<44} attempt 2->3 (delay 3 s)")
    for r in results:
        print(f"{r['mode']:<8} {r['lost']:>5} {r['ok_twice']:>9} {r['rate']:>11,.0f} {r['rate'] / base:>7.2f}x  "
              f"{gap_text(r['gaps'][1000], 1000):<44} {gap_text(r['gaps'][3000], 3000)}")
        if r["stderr"]:
            print(f"  exit {r['exit']}: {r['stderr'][-500:]}")
    if not results[3]["killed"]:
        print("chaos: no worker was killed (the run ended first)")


if __name__ == "__main__":
    main()
