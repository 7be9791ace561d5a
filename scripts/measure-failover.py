#!/usr/bin/env python3
"""Time kswarm's supervisor on a live broker from its JSON log events
(`--log-format json`): the figures docs/protocols.md quotes for start-up, failover
and restarts, and what each workaround is worth on this broker.

  scripts/measure-failover.py BROKER [RUNS] [-- extra kswarm run flags]
  e.g. KSWARM_BIN=target/release/kswarm scripts/measure-failover.py 127.0.0.1:19092 5 -- -w 2

Per run, on a fresh topic (2 partitions) and group:
  start      launch of `kswarm run` -> all_joined
  takeover   SIGKILL of slot 1's worker -> its replacement's worker_joined
             (and whether the generation stayed: a take-over, not a rebalance)
  hup        SIGHUP -> rolling_restart_done
  takeback   SIGKILL of the supervisor, a new run for the group -> all_joined,
             joining under the dead run's member ids (state file kept)
  fresh      the same with the state file removed: new members, which wait
             for the dead ones (session timeout, or the rebalance timeout)
The last two run with --session-timeout 20s, so that the dead members are
still in the group. Prints each run and the medians.
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

KSWARM = os.environ.get("KSWARM_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "kswarm"))


class Run:
    def __init__(self, broker, topic, group, state, extra):
        env = dict(os.environ, KSWARM_STATE_DIR=state)
        self.events, self.cv = [], threading.Condition()
        self.t0 = time.time()
        self.p = subprocess.Popen(
            [KSWARM, "--log-format", "json", "run", "-b", broker, "-t", topic, "-g", group, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev["_t"] = time.time()
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()

    def wait(self, name, pred=lambda e: True, start=0, timeout=90):
        end = time.time() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.events)):
                    e = self.events[i]
                    if e.get("event") == name and pred(e):
                        return i, e
                if time.time() > end:
                    raise SystemExit(f"no {name} within {timeout}s; events:\n" + "\n".join(map(str, self.events)))
                self.cv.wait(0.1)

    def current(self, slot):
        with self.cv:
            for e in reversed(self.events):
                if e.get("slot") == slot and e.get("event") in ("worker_joined", "worker_rebalanced"):
                    return e

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def settled(run, n):
    """Wait until slots 0..n-1 are members of one generation."""
    end = time.time() + 60
    while time.time() < end:
        now = [run.current(s) for s in range(n)]
        if all(now) and len({e["generation"] for e in now}) == 1:
            return now
        time.sleep(0.05)
    raise SystemExit("the group did not settle")


def plan(broker, topic):
    subprocess.run([KSWARM, "plan", "-b", broker, "-t", topic, "-w", "2", "-p", "2", "--apply"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one(broker, n, extra, state_root):
    tag = f"{os.getpid()}-{n}-{time.time_ns() % 10**9}"
    topic, group = f"meas-t-{tag}", f"meas-g-{tag}"
    plan(broker, topic)
    state = os.path.join(state_root, tag)
    out = {}
    run = Run(broker, topic, group, state, extra)
    _, e = run.wait("all_joined")
    out["start"] = e["_t"] - run.t0
    old = settled(run, 2)[1]
    i = len(run.events)
    t = time.time()
    os.kill(old["pid"], signal.SIGKILL)
    _, e = run.wait("worker_joined", lambda e: e["slot"] == 1, start=i)
    out["takeover"] = e["_t"] - t
    out["same generation"] = e["generation"] == old["generation"]
    settled(run, 2)
    i = len(run.events)
    t = time.time()
    run.p.send_signal(signal.SIGHUP)
    _, e = run.wait("rolling_restart_done", start=i)
    out["hup"] = e["_t"] - t
    run.stop()
    for mode in ("takeback", "fresh"):
        g = f"{group}-{mode}"
        st = f"{state}-{mode}"
        long = extra + ["--session-timeout", "20s"]
        first = Run(broker, topic, g, st, long)
        first.wait("all_joined")
        settled(first, 2)
        time.sleep(1)  # the state file names both members
        first.stop(signal.SIGKILL)
        if mode == "fresh":
            shutil.rmtree(st)
        second = Run(broker, topic, g, st, long)
        _, e = second.wait("all_joined")
        out[mode] = e["_t"] - second.t0
        second.stop()
    return out


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        k = args.index("--")
        args, extra = args[:k], args[k + 1:]
    broker = args[0]
    runs = int(args[1]) if len(args) > 1 else 3
    root = tempfile.mkdtemp(prefix="kswarm-measure-")
    results = []
    try:
        for n in range(runs):
            r = one(broker, n, extra, root)
            results.append(r)
            print(f"run {n}: " + ", ".join(
                f"{k} {v:.3f}s" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for k in ("start", "takeover", "hup", "takeback", "fresh"):
        vals = [r[k] for r in results]
        print(f"{k}: median {statistics.median(vals):.3f}s (min {min(vals):.3f}, max {max(vals):.3f}, {len(vals)} runs)")
    print("takeover kept the generation in", sum(r["same generation"] for r in results), "of", len(results), "runs")


if __name__ == "__main__":
    main()
