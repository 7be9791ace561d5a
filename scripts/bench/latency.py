"""BENCH_ONLY=latency of scripts/bench.sh (issue 32 item 3): end-to-end latency, produce to handler, on
Apache Kafka. Called by harness.main() with the harness module (its broker, topics, processes, trackers).

A C producer (scripts/bench/rate_producer.c, librdkafka, acks=all, linger.ms=1) writes a fresh 2-partition
topic at a fixed rate; each value carries the time it was produced (ns). The contenders, a fresh group each,
count every record's latency into the same histogram (scripts/bench/latency_hist.h: buckets of at most 1%):
  kswarm-value  kswarm run -w 2 -p keep --format value; its stdout goes to latency_sink (C), which counts
                the latency as each line arrives: produce -> kswarm's stdout
  kswarm-exec   kswarm run -w 2 -p keep --format value --exec 'latency_sink DIR --ack': the handler counts
                and acknowledges each record: produce -> the handler of each worker
  franz-go      scripts/bench/franz (kgo), 2 processes: latency at the poll that hands out the record
  rdkafka-c     scripts/bench/rdkafka_consumer.c (native librdkafka), 2 processes, the same
  librdkafka    scripts/bench/rdkafka_consumer.py (confluent-kafka, a Python loop), 2 processes, the same
  java          scripts/bench/JavaConsumer.java (KafkaConsumer), 2 processes, the same
Each client runs with its defaults (fetch waits, session timeouts) apart from reading from the earliest offset.
First one untimed run per contender at 10,000/s (the broker warms up). A run: the topic, the contender, wait
until every worker holds its partitions (+ 2 s), then the producer for
BENCH_LATENCY_SECONDS (default 10) at the rate, then wait until every record counted (cap 90 s). The
percentiles are over every record produced; a record not counted by the cap counts as "later than the cap".
Rates: BENCH_LATENCY_RATES (default 1000,10000,100000 records/s), BENCH_REPEATS rounds, contenders interleaved;
the table gives the median over the rounds of each percentile. Then one run per contender at
BENCH_LATENCY_KILL_RATE (default 10000/s) in which one worker is killed with SIGKILL KILL_AFTER s into the
production (kswarm restarts its worker itself; a peer's process is started again at once, as a supervisor
would), the producer runs on for BENCH_LATENCY_SECONDS after the kill: the failover as a latency spike.
Side by side (BENCH_LATENCY_SIDE_BY_SIDE_RATES, default 1000,10000; 0 for none): BENCH_REPEATS rounds at each
rate in which kswarm-exec and one peer run at once, each in its own group on the same topic. A lone run's tail
at these rates is mostly the stalls of the broker and the producer during that run (a record's lag, logged by
both clients at once on 2026-12-07, stalled at the same produce stamps to the millisecond), which differ from
run to run; side by side both meet the same stalls, so the comparison is of the clients alone.
BENCH_LATENCY_CONTENDERS picks some. Report: results-kafka-latency.md (+ .json).
"""

import json
import mmap
import os
import signal
import statistics
import struct
import subprocess
import tempfile
import time

# ---------------------------------------------------------------- histogram ---
# Also imported alone by rdkafka_consumer.py (no harness), so nothing above needs it.


BUCKETS = 12701


def lower_us(b):
    """latency_hist.h's lat_lower_us: the lower bound (µs) of bucket index b."""
    for start, base, width in ((2800, 1000000, 10000), (1900, 100000, 1000), (1000, 10000, 100)):
        if b >= start:
            return base + (b - start) * width
    return b * 10


def bucket_index(us):
    """latency_hist.h's lat_bucket."""
    us = max(0, us)
    if us < 10000:
        return us // 10
    if us < 100000:
        return 1000 + (us - 10000) // 100
    if us < 1000000:
        return 1900 + (us - 100000) // 1000
    if us < 100000000:
        return 2800 + (us - 1000000) // 10000
    return BUCKETS - 1


class Hist:
    """A process's latency histogram (rdkafka_consumer.py's latency mode) in DIR/lat-PID.bin, a shared file
    mapping of u64 counters as latency_hist.h keeps it: every count is in the page cache as it is made."""

    def __init__(self, directory):
        path = os.path.join(directory, f"lat-{os.getpid()}.bin")
        with open(path, "w+b") as f:
            f.truncate(BUCKETS * 8)
            self.map = mmap.mmap(f.fileno(), BUCKETS * 8)
        self.counts = memoryview(self.map).cast("Q")

    def record(self, value, now_ns):
        parts = value.split(b" ", 2) if value else []
        if len(parts) < 2 or not parts[1].isdigit():
            return
        self.counts[bucket_index((now_ns - int(parts[1])) // 1000)] += 1


def read_dir(directory):
    """Every process's counters in the directory, merged: (records, {lower bound µs: count})."""
    n, counts = 0, {}
    for name in os.listdir(directory):
        if not (name.startswith("lat-") and name.endswith(".bin")):
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if len(raw) != BUCKETS * 8:
            continue  # being created right now: the next look sees it
        for b, c in enumerate(struct.unpack(f"<{BUCKETS}Q", raw)):
            if c:
                n += c
                lower = lower_us(b)
                counts[lower] = counts.get(lower, 0) + c
    return n, counts


def percentiles(counts, expected, qs=(0.5, 0.99, 0.999)):
    """The latency (ms, a bucket's lower bound) under which a fraction q of the `expected` records arrived;
    None where that fraction needs records that never arrived (later than the run's cap)."""
    total = max(expected, sum(counts.values()))
    out, cum, items = {}, 0, sorted(counts.items())
    for q in qs:
        need, cum, got = q * total, 0, None
        for lower, c in items:
            cum += c
            if cum >= need:
                got = lower / 1000.0
                break
        out[q] = got
    out["max"] = items[-1][0] / 1000.0 if items else None
    return out


# ---------------------------------------------------------------- the section ---

H = None  # the harness module
CONTENDERS = ["kswarm-value", "kswarm-exec", "franz-go", "rdkafka-c", "librdkafka", "java"]
PAIRED = "kswarm-exec"  # the kswarm contender run side by side with each peer
GRACE = 2.0       # s between every worker holding its partitions and the first record produced
DRAIN_CAP = 90.0  # s after the producer stops for the last record to be counted (a peer's failover: 45 s)
KILL_AFTER = 5.0  # s into the production, the kill


def env_list(name, default):
    raw = os.environ.get(name, "").strip() or default
    return [x.strip() for x in raw.split(",") if x.strip()]


def start(l, name, topic, group, directory, tracker):
    """The contender in latency mode; returns a function giving its worker pids (the kill's targets) and the
    argv of a peer's process (None for kswarm: it restarts its own workers)."""
    sink = os.environ["BENCH_LATENCY_SINK"]
    if name == "kswarm-value":
        r, w = os.pipe()
        H.launch_kswarm(l, topic, group, 2, ["--format", "value"], w, tracker)
        os.close(w)
        l.start([sink, directory], stdin=r, stdout=subprocess.DEVNULL)
        os.close(r)
        return lambda: H.kswarm_worker_pids(l), None
    if name == "kswarm-exec":
        H.launch_kswarm(l, topic, group, 2, ["--format", "value", "--exec", f"{sink} {directory} --ack"],
                        subprocess.DEVNULL, tracker)
        return lambda: H.kswarm_worker_pids(l), None
    if name == "java":
        argv = H.java_argv(topic, group, "latency")
        argv.insert(argv.index("latency") + 1, directory)
    else:
        argv = {"franz-go": [os.environ["BENCH_FRANZ"]], "rdkafka-c": [os.environ["BENCH_RDKAFKA_C"]],
                "librdkafka": [H.PY, os.path.join(H.HERE, "rdkafka_consumer.py")]}[name]
        argv = argv + [H.brokers(), topic, group, "latency", directory]
    r, w = os.pipe()
    for _ in range(2):
        l.start(argv, stdout=w, stderr=H.logfile(name), stdin=subprocess.DEVNULL)
    l.peer_out = w  # kept open for a restarted process
    H.ProtocolReader(os.fdopen(r, "rb"), tracker)
    return lambda: [p.pid for p in l.procs if p.poll() is None and p.args == argv], argv


def one_run(name, rate, seconds, kill=False):
    """One run of `name` alone at `rate`; its merged histogram and what happened."""
    return run_together([name], rate, seconds, kill)[name]


class Entrant:
    """One contender of a run: its processes, group, histogram directory and partition tracker."""

    def __init__(self, name, topic):
        self.name = name
        self.directory = tempfile.mkdtemp(prefix="lat-", dir=H.TMP)
        self.launch = H.Launch()
        self.tracker = H.AssignTracker(2, 2)
        self.workers, self.argv = start(self.launch, name, topic, H.uniq(f"g-lat-{name}"), self.directory,
                                        self.tracker)
        self.res = {"name": name}

    def stop(self):
        self.launch.stop()
        if getattr(self.launch, "peer_out", None) is not None:
            os.close(self.launch.peer_out)


def run_together(names, rate, seconds, kill=False):
    """One run at `rate` of every contender in `names` at once, each in its own group on the same topic: they
    read the same records from the same broker, so a stall of the broker or the producer reaches all of them
    alike. Returns each one's merged histogram and what happened. `kill` kills a worker of the first."""
    topic = H.make_topic(2)
    entrants = []
    try:
        for name in names:
            entrants.append(Entrant(name, topic))
        end = time.time() + H.left(60)
        while any(e.tracker.joined_at is None for e in entrants) and time.time() < end:
            time.sleep(0.05)
        late = [e.name for e in entrants if e.tracker.joined_at is None]
        if late:
            raise H.BenchFailure(f"latency {', '.join(late)}: the group did not settle within 60 s")
        time.sleep(GRACE)
        cpu0 = [H.tree_cpu(e.launch.roots()) for e in entrants]
        b0 = H.BROKER.cpu()
        prod = subprocess.Popen([os.environ["BENCH_RATE_PRODUCER"], H.brokers(), topic, "2", str(rate)],
                                stdout=subprocess.PIPE, stderr=H.logfile("rate-producer"), start_new_session=True)
        H.PRODUCERS.append(prod)
        t_prod = time.time()
        if kill:
            time.sleep(KILL_AFTER)
            entrants[0].res["killed"] = kill_one(entrants[0].launch, entrants[0].workers, entrants[0].argv)
        time.sleep(max(0.0, t_prod + (KILL_AFTER if kill else 0) + seconds - time.time()))
        prod.send_signal(signal.SIGTERM)
        out, _ = prod.communicate(timeout=60)
        sent = json.loads(out.decode().strip().splitlines()[-1])
        for e in entrants:
            e.res.update(rate=rate, kill=kill, sent=sent["sent"], produce_seconds=sent["seconds"],
                         worst_behind=sent["worst_behind"], produce_failed=sent["failed"])
        last_count = wait_counted(entrants, sent["sent"], kill)
        broker_us = (H.BROKER.cpu() - b0) * 1e6 / max(1, sent["sent"])
        for e, c0 in zip(entrants, cpu0):
            e.res["drained_s"] = last_count[e.name] - t_prod - sent["seconds"]
            e.res["cpu_us_per_record"] = (H.tree_cpu(e.launch.roots()) - c0) * 1e6 / max(1, sent["sent"])
            e.res["broker_us_per_record"] = broker_us  # the broker's for all of them together
    finally:
        for e in entrants:
            e.stop()
    for e in entrants:
        finish(e.res, e.directory, together=len(entrants) > 1)
    return {e.name: e.res for e in entrants}


def wait_counted(entrants, sent, kill):
    """Until every entrant counted every record produced (after a kill, until its count stood for 2 s), or the
    cap; per entrant, when its count last grew (now for one that never got them all)."""
    end = time.time() + H.left(DRAIN_CAP)
    seen = {e.name: (0, time.time()) for e in entrants}  # count, when it last changed
    while time.time() < end:
        for e in entrants:
            m, _ = read_dir(e.directory)
            if m != seen[e.name][0]:
                seen[e.name] = (m, time.time())
        # After a kill, re-read records (at least once) come before the rest: wait for the count to stand.
        if all(n >= sent and (not kill or time.time() - at > 2.0) for n, at in seen.values()):
            break
        time.sleep(0.25)
    return {name: at if n >= sent else time.time() for name, (n, at) in seen.items()}


def finish(res, directory, together):
    n, counts = read_dir(directory)
    res["counted"] = n
    res["duplicates"] = max(0, n - res.get("sent", n))
    res["p"] = {str(k): v for k, v in percentiles(counts, res.get("sent", n)).items()}
    H.log(f"latency {res['name']} {res.get('rate')}/s{' kill' if res.get('kill') else ''}"
          f"{' side by side' if together else ''}: sent {res.get('sent')}, counted {n}, "
          f"p50 {res['p']['0.5']} p99 {res['p']['0.99']} p99.9 {res['p']['0.999']} max {res['p']['max']} ms, "
          f"worst behind {res.get('worst_behind', 0):.3f} s")


def kill_one(l, workers, argv):
    """SIGKILL one worker; a peer's process is started again at once (kswarm's supervisor does its own)."""
    pids = workers()
    if not pids:
        return None
    os.kill(pids[0], signal.SIGKILL)
    if argv:
        l.start(argv, stdout=l.peer_out, stderr=H.logfile("restarted"), stdin=subprocess.DEVNULL)
    return {"pid": pids[0], "t": time.time()}


# ---------------------------------------------------------------- the report ---

def f1(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def ms(x):
    if x is None:
        return f"> {DRAIN_CAP:.0f} s"
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def med(runs, key):
    vals = [r["p"][key] for r in runs]
    if any(v is None for v in vals):
        return None if sum(v is None for v in vals) * 2 > len(vals) else statistics.median(
            [v for v in vals if v is not None] + [float("inf")] * sum(v is None for v in vals))
    return statistics.median(vals)


def counted(runs):
    """Records counted against records produced, over the runs (more: re-deliveries after a kill)."""
    got, sent = sum(r["counted"] for r in runs), sum(r.get("sent", 0) for r in runs)
    return f"{got:,} of {sent:,}" + (f" ({got - sent:,} twice)" if got > sent else "")


def render(d):
    lab, rates = d["labels"], d["rates"]
    md = [f"### End-to-end latency, produce to handler (Apache Kafka)", "",
          f"{d['date']}; machine: {d['machine']}; load (`uptime`: 1, 5, 15 min) before {d['load']}, after "
          f"{d['load_after']}.  ", f"Broker: {d['broker']}.  ",
          f"Command: `{d['command']}`; a fresh 2-partition topic and group per run; the producer "
          f"(rate_producer.c: librdkafka, acks=all, linger.ms=1) writes for {d['seconds']} s at each rate; "
          f"median of {d['repeats']} interleaved runs of each percentile, after one untimed run per contender at "
          f"10,000/s (a fresh broker answers its first few hundred thousand records late); latencies in ms "
          f"(buckets of at most 1%).", "",
          "| records/s | contender | p50 ms | p99 ms | p99.9 ms | max ms | CPU µs per record | records |",
          "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for rate in rates:
        for name in d["contenders"]:
            runs = d["runs"].get(f"{name}@{rate}") or []
            if not runs:
                continue
            cpu = statistics.median(r["cpu_us_per_record"] for r in runs if "cpu_us_per_record" in r) \
                if any("cpu_us_per_record" in r for r in runs) else None
            md.append(f"| {rate:,} | {lab[name]} | {ms(med(runs, '0.5'))} | {ms(med(runs, '0.99'))} | "
                      f"{ms(med(runs, '0.999'))} | {ms(max((r['p']['max'] or 0) for r in runs))} | "
                      f"{f1(cpu, 2)} | {counted(runs)} |")
    if d.get("kills"):
        md += ["", f"During a worker SIGKILL, {d['kill_rate']:,} records/s, kill {KILL_AFTER:.0f} s into "
                   f"{d['seconds'] + KILL_AFTER:.0f} s of production, one run each:", "",
               "| contender | p50 ms | p99 ms | p99.9 ms | max ms | records counted | last record counted after "
               "the producer stopped, s |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name in d["contenders"]:
            r = d["kills"].get(name)
            if r:
                md.append(f"| {lab[name]} | {ms(r['p']['0.5'])} | {ms(r['p']['0.99'])} | {ms(r['p']['0.999'])} | "
                          f"{ms(r['p']['max'])} | {counted([r])} | "
                          f"{f1(r.get('drained_s'), 1)} |")
    md += render_pairs(d)
    md.append("")
    md.append("- worst producer lag behind its schedule per rate: " + "; ".join(
        f"{rate:,}/s {max((r.get('worst_behind') or 0) for k, rs in d['runs'].items() if k.endswith(f'@{rate}') for r in rs) * 1000:.1f} ms"
        for rate in rates))
    return md


def render_pairs(d):
    """The side-by-side table: per round, kswarm and one peer read the same records at once."""
    pairs = d.get("pairs") or {}
    if not pairs:
        return []
    k, lab = d["paired"], d["labels"]
    md = ["", f"Side by side: {lab[k]} and one peer at once, each in its own group on the same topic, so both "
              f"read the same records from the same broker at the same time; medians over {d['repeats']} "
              f"rounds, and the median of each round's ratio:", "",
          "| records/s | peer | p50 ms kswarm / peer | p99 ms kswarm / peer | p99.9 ms kswarm / peer | "
          "p99 kswarm ÷ peer | CPU µs per record kswarm / peer |", "|---:|---|---:|---:|---:|---:|---:|"]
    for rate in d["pair_rates"]:
        for name in d["contenders"]:
            rounds = pairs.get(f"{name}@{rate}") or []
            if not rounds:
                continue
            ks, ps = [r[k] for r in rounds], [r[name] for r in rounds]
            ratios = [a["p"]["0.99"] / b["p"]["0.99"] for a, b in zip(ks, ps)
                      if a["p"]["0.99"] is not None and b["p"]["0.99"]]
            cells = [f"{ms(med(ks, q))} / {ms(med(ps, q))}" for q in ("0.5", "0.99", "0.999")]
            cpu = [statistics.median(x["cpu_us_per_record"] for x in side) for side in (ks, ps)]
            md.append(f"| {rate:,} | {lab[name]} | {' | '.join(cells)} | "
                      f"{f1(statistics.median(ratios), 2) if ratios else '–'}x | {f1(cpu[0], 2)} / {f1(cpu[1], 2)} |")
    return md


def labels():
    import strong  # scripts/bench/strong.py: the peers' names with their versions
    strong.H = H
    lab = strong.labels()
    return {"kswarm-value": "kswarm run -w 2 -p keep --format value (stdout to a C reader)",
            "kswarm-exec": "kswarm run -w 2 -p keep --format value --exec (a C handler acking each record)",
            "franz-go": lab["franz-go"], "rdkafka-c": lab["rdkafka-c"], "librdkafka": lab["librdkafka"],
            "java": lab["java"]}


def run(h, t_start):
    global H
    H = h
    if H.KIND != "kafka":
        raise SystemExit("bench: BENCH_ONLY=latency runs on Apache Kafka only")
    names = env_list("BENCH_LATENCY_CONTENDERS", ",".join(CONTENDERS))
    bad = [n for n in names if n not in CONTENDERS]
    if bad:
        raise SystemExit(f"bench: BENCH_LATENCY_CONTENDERS: unknown {bad}; use some of {CONTENDERS}")
    rates = [int(x) for x in env_list("BENCH_LATENCY_RATES", "1000,10000,100000")]
    seconds = float(os.environ.get("BENCH_LATENCY_SECONDS", "10"))
    kill_rate = int(os.environ.get("BENCH_LATENCY_KILL_RATE", "10000"))
    lab = labels()
    broker = H.Broker("kafka", H.PORT, ["group.initial.rebalance.delay.ms=0"] + H.EXTRA_PROPS)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    _, date = H.start_section(broker)
    runs, kills, pairs = {}, {}, {}
    # Side by side: kswarm and each peer at once on the same records (see run_together), where a lone run's
    # tail is mostly the broker's and the producer's stalls of that run.
    pair_rates = [int(x) for x in env_list("BENCH_LATENCY_SIDE_BY_SIDE_RATES", "1000,10000") if x != "0"]
    peers = [n for n in names if not n.startswith("kswarm")] if PAIRED in names else []
    try:
        # Untimed, one run per contender at 10,000/s: a fresh broker serves its first few hundred thousand
        # records late (its JIT still compiles the produce and fetch paths); whichever client ran first then
        # saw seconds of lag (p99 2.7-3.0 s for kswarm and the C program alike, 2026-12-07).
        for name in names:
            one_run(name, 10000, seconds)
        for rate in rates:
            for _ in range(H.REPEATS):
                for name in names:
                    runs.setdefault(f"{name}@{rate}", []).append(one_run(name, rate, seconds))
        for rate in pair_rates:
            for _ in range(H.REPEATS):
                for peer in peers:
                    pairs.setdefault(f"{peer}@{rate}", []).append(run_together([PAIRED, peer], rate, seconds))
        if kill_rate > 0:
            for name in names:
                kills[name] = one_run(name, kill_rate, seconds, kill=True)
    finally:
        broker.stop()
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    data = {"date": date, "load": load, "load_after": load_after, "command": H.COMMAND, "broker": broker.describe(),
            "machine": f"nproc {os.cpu_count()}, {H.cpu_model()}", "repeats": H.REPEATS, "seconds": seconds,
            "rates": rates, "kill_rate": kill_rate, "contenders": names, "labels": {n: lab[n] for n in names},
            "runs": runs, "kills": kills, "pairs": pairs, "pair_rates": pair_rates, "paired": PAIRED}
    md = render(data) + [f"\n(bench took {time.time() - t_start:.0f} s)"]
    H.write_section("latency", md, data)


if __name__ == "__main__":
    # latency.py render FILE.json: the markdown of a report written before
    import sys
    for path in sys.argv[2:] if sys.argv[1:2] == ["render"] else []:
        with open(path) as f:
            print("\n".join(render(json.load(f))) + "\n")
