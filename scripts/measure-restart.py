#!/usr/bin/env python3
"""Measure kswarm's supervisor on a live broker:
  * start:   from exec of `kswarm run` to "all N workers joined" in its log
  * replace: from SIGKILL of one worker to its replacement's "joined" line
  * hup:     from SIGHUP to "rolling restart done" (every worker replaced)
Prints each run and the medians.

  scripts/measure-restart.py BROKER [RUNS] [-- extra kswarm run flags]
  e.g. scripts/measure-restart.py 127.0.0.1:19103 5 -- -w 2
"""
import os, re, signal, statistics, subprocess, sys, threading, time, datetime

KSWARM = os.environ.get("KSWARM_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "debug", "kswarm"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ts(line):
    # tracing's default format starts with an RFC 3339 UTC timestamp
    stamp = line.split()[0].rstrip("Z")
    d = datetime.datetime.fromisoformat(stamp[:26]).replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


def one(broker, n, extra):
    tag = f"{os.getpid()}-{n}-{time.time_ns() % 10**9}"
    lines, cv = [], threading.Condition()
    t0 = time.time()
    p = subprocess.Popen([KSWARM, "run", "-b", broker, "-t", f"meas-t-{tag}", "-g", f"meas-g-{tag}", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def read():
        for l in p.stderr:
            with cv:
                lines.append(ANSI.sub("", l.rstrip("\n")))
                cv.notify_all()

    threading.Thread(target=read, daemon=True).start()

    def wait(pred, start=0, timeout=60):
        end = time.time() + timeout
        with cv:
            while True:
                for i in range(start, len(lines)):
                    if pred(lines[i]):
                        return i, lines[i]
                if time.time() > end:
                    raise SystemExit("timeout; log:\n" + "\n".join(lines))
                cv.wait(0.1)

    try:
        _, l = wait(lambda l: "workers joined" in l)
        start_s = ts(l) - t0
        i, l = wait(lambda l: re.search(r"slot 0 pid \d+ joined generation", l))
        old = int(re.search(r"slot 0 pid (\d+)", l).group(1))
        time.sleep(1.0)
        k0 = time.time()
        os.kill(old, signal.SIGKILL)
        i, l = wait(lambda l: re.search(r"slot 0 pid (\d+) joined", l) and f"pid {old} " not in l, start=i + 1)
        replace_s = ts(l) - k0
        time.sleep(1.0)
        h0 = time.time()
        p.send_signal(signal.SIGHUP)
        _, l = wait(lambda l: "rolling restart done" in l, start=i + 1)
        hup_s = ts(l) - h0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    return start_s, replace_s, hup_s


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    broker = args[0]
    runs = int(args[1]) if len(args) > 1 else 5
    starts, replaces, hups = [], [], []
    for n in range(runs):
        s, r, h = one(broker, n, extra)
        starts.append(s)
        replaces.append(r)
        hups.append(h)
        print(f"run {n}: start->all joined {s*1000:.0f} ms, SIGKILL->replacement joined {r*1000:.0f} ms, "
              f"SIGHUP->rolling restart done {h*1000:.0f} ms", flush=True)
    print(f"median start->all joined {statistics.median(starts)*1000:.0f} ms; "
          f"median SIGKILL->replacement joined {statistics.median(replaces)*1000:.0f} ms; "
          f"median SIGHUP->rolling restart done {statistics.median(hups)*1000:.0f} ms ({runs} runs)")


if __name__ == "__main__":
    main()
