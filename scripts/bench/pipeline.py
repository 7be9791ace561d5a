"""BENCH_ONLY=pipeline of scripts/bench.sh (issue 29): a one-to-one transform
from topic IN to topic OUT, exactly once and at least once, beside Kafka
Streams with processing.guarantee=exactly_once_v2. Called by harness.py's
main() with the harness module itself (its broker, topics, processes and
/proc helpers). Apache Kafka only (tansu has no transactions to speak of).

Contenders (each reads IN with a fresh group from the earliest offset, 2
partitions, and writes OUT, a fresh topic of 2 partitions per run):
  kswarm-eos   kswarm run -w 2 --format value --output-topic OUT --commit-interval CI --exec 'PYTHON x_map.py'
               (exactly once; only where the installed kswarm has --output-topic, else its rows say so)
  kswarm-alo   kswarm run -w 2 --format value --commit-interval CI --exec 'python alo_handler.py B OUT'
               (the handler produces each result itself and acknowledges it once delivered: at least once)
  streams-1x2  StreamsMap.java, one JVM with num.stream.threads=2, exactly_once_v2, commit.interval.ms=CI
  streams-2x1  the same as two JVMs of one thread each
for each commit interval of BENCH_PIPELINE_INTERVALS (ms, default 100,1000).

Method:
- IN: BENCH_RECORDS records of 200 bytes (fill_topic, as the throughput table).
  Before the measured runs, untimed: a librdkafka transactional producer commits
  one transaction and a librdkafka consumer joins a group (Kafka creates
  __transaction_state and __consumer_offsets then), and kswarm reads IN once.
- records/s: a read_committed reader of OUT (pipeline_reader.py, librdkafka,
  started and at the end of OUT before the contender) notes when it holds every
  sequence number 0..N-1. "launch -> all" = N / (that moment - the contender's
  launch); "first -> last" = N / (that moment - the first result's arrival).
  Duplicates: results read more than once (0 expected in these runs: nothing
  crashes).
- CPU: user+sys of the contender's whole process tree (supervisor, workers,
  handlers; the JVMs) from /proc when the last result has arrived, per record.
  Broker CPU: the broker process over the same time. The reader's CPU is in
  neither.
- Latency: fresh IN and OUT topics; the contender starts, then
  rate_producer.py feeds IN at BENCH_PIPELINE_RATE records/s (default 5000)
  with its produce time in each value; the reader (read_committed) takes
  arrival - produce time for every result whose input was produced
  BENCH_PIPELINE_SETTLE s (default 3) or more after the first result arrived;
  the producer runs on for BENCH_PIPELINE_SECONDS s (default 20) after that.
  p50/p99/max over those results.
BENCH_REPEATS interleaved rounds of the throughput runs (medians); one latency
run per contender and interval.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time

INTERVALS_DEFAULT = "100,1000"
CONTENDERS = ["kswarm-eos", "kswarm-alo", "streams-1x2", "streams-2x1"]
# "x" + each line, a read at a time (scripts/bench/x_map.py); `sed -u s/^/x/`
# does the same but reads its input a byte at a time.
def handler(h):
    return f"{h.PY} {os.path.join(h.HERE, 'x_map.py')}"


def env_int(name, default):
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def intervals():
    raw = os.environ.get("BENCH_PIPELINE_INTERVALS", "").strip() or INTERVALS_DEFAULT
    try:
        out = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise SystemExit(f"bench: BENCH_PIPELINE_INTERVALS={raw}: use commit intervals in ms separated by commas, "
                         f"e.g. 100,1000")
    return out


def contenders():
    raw = os.environ.get("BENCH_PIPELINE_CONTENDERS", "").strip()
    if not raw:
        return list(CONTENDERS)
    names = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [x for x in names if x not in CONTENDERS]
    if bad or not names:
        raise SystemExit(f"bench: BENCH_PIPELINE_CONTENDERS={raw}: use some of {','.join(CONTENDERS)}")
    return names


class Reader:
    """pipeline_reader.py as a process of its own; its JSON lines parsed in a thread."""

    def __init__(self, h, topic, n, mode, settle=0.0):
        argv = [h.PY, os.path.join(h.HERE, "pipeline_reader.py"), h.brokers(), topic, str(n), mode]
        if mode == "latency":
            argv.append(str(settle))
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=h.logfile("pipeline-reader"), start_new_session=True)
        h.PRODUCERS.append(self.p)  # stop_all kills it
        self.state = {"n": 0, "dups": 0}
        self.ready = self.first = self.done = None
        self.final = None
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        for raw in self.p.stdout:
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            with self.lock:
                if "ready" in d:
                    self.ready = d["ready"]
                elif "first" in d:
                    self.first = d["first"]
                elif "done" in d:
                    self.done = d["done"]
                    self.state = {"n": d["n"], "dups": d["dups"]}
                elif "lat" in d:
                    self.final = d
                elif "n" in d:
                    self.state = {"n": d["n"], "dups": d["dups"]}

    def wait(self, cond, cap):
        end = time.time() + cap
        while time.time() < end:
            with self.lock:
                if cond(self):
                    return True
            if self.p.poll() is not None:
                self.th.join(timeout=2)
                with self.lock:
                    return cond(self)
            time.sleep(0.02)
        return False

    def finish(self):
        """Latency mode: close its stdin, and wait for the final line."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.th.join(timeout=5)
        return self.final

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def has_output_topic(h):
    try:
        r = subprocess.run([h.KSWARM, "run", "--help"], capture_output=True, text=True, timeout=30)
        return "--output-topic" in r.stdout
    except (OSError, subprocess.SubprocessError):
        return False


def streams_argv(h, in_topic, out_topic, app, ci, threads):
    cp = os.environ.get("BENCH_STREAMS_CP", "")
    log = os.environ.get("BENCH_STREAMS_LOG", "")
    return (["java"] + h.JAVA_OPTS + [f"-Dlog4j2.configurationFile={log}", "-cp", cp, "StreamsMap",
                                       h.brokers(), in_topic, out_topic, app, str(ci), str(threads)])


def launch(h, name, in_topic, out_topic, ci):
    """Start a contender; returns its harness Launch."""
    l = h.Launch()
    group = h.uniq(f"gp-{name}")
    if name in ("kswarm-eos", "kswarm-alo"):
        if name == "kswarm-eos":
            extra = ["--output-topic", out_topic, "--exec", handler(h)]
        else:
            extra = ["--exec", f"{h.PY} {os.path.join(h.HERE, 'alo_handler.py')} {h.brokers()} {out_topic}"]
        # A log file per run: its rebalances (worker_revoked events) are counted afterwards.
        l.logpath = os.path.join(h.LOGS, f"pipeline-{group}.log")
        os.makedirs(h.LOGS, exist_ok=True)
        with open(l.logpath, "ab") as err:
            l.start([h.KSWARM, "--log-format", "json", "run", "-w", str(h.WORKERS), "-p", "keep", "-b", h.brokers(),
                     "-t", in_topic, "-g", group, "--from", "earliest", "--format", "value",
                     "--commit-interval", f"{ci}ms"] + extra,
                    stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    elif name == "streams-1x2":
        l.start(streams_argv(h, in_topic, out_topic, group, ci, 2), stdout=h.logfile("pipeline-streams"),
                stderr=h.logfile("pipeline-streams"), stdin=subprocess.DEVNULL)
    elif name == "streams-2x1":
        for _ in range(2):
            l.start(streams_argv(h, in_topic, out_topic, group, ci, 1), stdout=h.logfile("pipeline-streams"),
                    stderr=h.logfile("pipeline-streams"), stdin=subprocess.DEVNULL)
    else:
        raise ValueError(name)
    return l


def revokes(l):
    """kswarm: the worker_revoked events of the run (a worker gave partitions up at a rebalance); None for others."""
    path = getattr(l, "logpath", None)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if b'"worker_revoked"' in line)
    except OSError:
        return None


def alive(l):
    return any(p.poll() is None for p in l.procs)


def throughput_run(h, name, in_topic, n, ci):
    out_topic = h.make_topic(h.PARTITIONS)
    res = {"name": name, "interval": ci, "n": 0, "complete": False}
    reader = Reader(h, out_topic, n, "count")
    l = None
    try:
        if not reader.wait(lambda r: r.ready is not None, h.left(60)):
            raise h.BenchFailure(f"bench: the reader of {out_topic} did not get to its end within 60 s")
        b0 = h.BROKER.cpu()
        l = launch(h, name, in_topic, out_topic, ci)
        cap = 60 + n / 2000
        end = time.time() + h.left(cap)
        while time.time() < end:
            with reader.lock:
                if reader.done is not None:
                    break
            if not alive(l) or reader.p.poll() is not None:
                break
            time.sleep(0.05)
        cpu = h.tree_cpu(l.roots())
        res["broker_cpu"] = h.BROKER.cpu() - b0
        res["cpu"] = cpu
        with reader.lock:
            done, first, st = reader.done, reader.first, dict(reader.state)
        res.update(n=st["n"], dups=st["dups"], complete=done is not None, t0=l.t0, first=first, done=done)
        if done is None:
            res["exited"] = not alive(l)
            res["timeout"] = cap
            h.log(f"pipeline {name} ci={ci}ms: only {st['n']} of {n} results within {cap:.0f} s"
                  f"{' (the contender exited)' if res['exited'] else ''}")
    finally:
        if l is not None:
            l.stop(grace=15.0)
            res["revokes"] = revokes(l)
        reader.stop()
    if res["complete"]:
        res["rate_total"] = n / (res["done"] - res["t0"])
        res["rate_flow"] = n / (res["done"] - res["first"]) if res["done"] > res["first"] else None
        res["startup"] = res["first"] - res["t0"]
    else:
        res["rate_total"] = res["rate_flow"] = None
        res["startup"] = res["first"] - res["t0"] if res.get("first") else None
    res["cpu_us"] = res["cpu"] / n * 1e6
    res["broker_us"] = res["broker_cpu"] / n * 1e6
    h.log(f"pipeline {name} ci={ci}ms throughput: " + h.fmt_res({k: v for k, v in res.items()
                                                                  if k not in ("first", "done")}))
    return res


def latency_run(h, name, ci, rate, seconds, settle):
    in_topic = h.make_topic(h.PARTITIONS)
    out_topic = h.make_topic(h.PARTITIONS)
    res = {"name": name, "interval": ci, "rate": rate, "seconds": seconds, "lat": None}
    reader = Reader(h, out_topic, 0, "latency", settle)
    l = prod = None
    try:
        if not reader.wait(lambda r: r.ready is not None, h.left(60)):
            raise h.BenchFailure(f"bench: the reader of {out_topic} did not get to its end within 60 s")
        l = launch(h, name, in_topic, out_topic, ci)
        prod = subprocess.Popen([h.PY, os.path.join(h.HERE, "rate_producer.py"), h.brokers(), in_topic,
                                 str(h.PARTITIONS), str(rate)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=h.logfile("pipeline-producer"), start_new_session=True)
        h.PRODUCERS.append(prod)
        if not reader.wait(lambda r: r.first is not None, h.left(120)):
            res["error"] = "no result within 120 s"
            h.log(f"pipeline {name} ci={ci}ms latency: {res['error']}")
            return res
        stop_at = reader.first + settle + seconds
        while time.time() < stop_at and alive(l):
            time.sleep(0.1)
        prod.terminate()
        out, _ = prod.communicate(timeout=60)
        sent = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"sent": None}
        res["sent"] = sent.get("sent")
        res["worst_behind"] = sent.get("worst_behind")
        if res["sent"] is not None:
            reader.wait(lambda r: r.state["n"] >= res["sent"], h.left(max(30.0, 5 * ci / 1000)))
        final = reader.finish() or {}
        res.update(lat=final.get("lat"), n=final.get("n"), dups=final.get("dups"))
        if res["sent"] is not None and (res["n"] or 0) < res["sent"]:
            res["error"] = f"only {res['n']} of {res['sent']} results read"
    finally:
        if prod is not None and prod.poll() is None:
            prod.kill()
            prod.wait()
        if l is not None:
            l.stop(grace=15.0)
        reader.stop()
    h.log(f"pipeline {name} ci={ci}ms latency: " + h.fmt_res(res))
    return res


def warm_transactions(h):
    """Untimed: one committed transaction (Kafka creates __transaction_state) and one group
    join (__consumer_offsets), with librdkafka."""
    from confluent_kafka import Consumer, Producer
    topic = h.make_topic(1)
    p = Producer({"bootstrap.servers": h.brokers(), "transactional.id": h.uniq("bench-warm")})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic, value=b"warm")
    p.commit_transaction(60)
    c = Consumer({"bootstrap.servers": h.brokers(), "group.id": h.uniq("g-warm"), "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    end = time.time() + 60
    got = False
    while time.time() < end and not got:
        m = c.poll(0.5)
        got = m is not None and not m.error()
    c.close()
    if not got:
        h.log("pipeline warm-up: the committed warm-up record was not read within 60 s")


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def label(name, ci, v):
    if name == "kswarm-eos":
        return f"kswarm run -w 2 --format value --output-topic OUT --commit-interval {ci}ms --exec 'python3 scripts/bench/x_map.py'"
    if name == "kswarm-alo":
        return (f"kswarm run -w 2 --format value --commit-interval {ci}ms --exec 'python alo_handler.py B OUT' "
                f"({v['librdkafka']} producer, idempotence off, acks=all, linger.ms=5, ack after delivery)")
    threads = "one JVM, num.stream.threads=2" if name == "streams-1x2" else "two JVMs, num.stream.threads=1 each"
    return f"Kafka Streams {v['kafka']} exactly_once_v2, commit.interval.ms={ci}, {threads} (Java {v['java']})"


SHORT = {"kswarm-eos": "kswarm --output-topic (exactly once)", "kswarm-alo": "kswarm + producing handler (at least once)",
         "streams-1x2": "Kafka Streams EOS v2, 1 JVM × 2 threads", "streams-2x1": "Kafka Streams EOS v2, 2 JVMs × 1 thread"}


def run(h, t_start):
    """The whole section: broker, IN, warm-up, rounds, latency runs, the report."""
    ivs = intervals()
    names = contenders()
    rate = env_int("BENCH_PIPELINE_RATE", 5000)
    seconds = env_int("BENCH_PIPELINE_SECONDS", 20)
    settle = float(os.environ.get("BENCH_PIPELINE_SETTLE", "").strip() or 3)
    n = h.N
    if h.KIND != "kafka":
        raise SystemExit("bench: BENCH_ONLY=pipeline runs on Apache Kafka only (transactions; tansu reports no "
                         "aborted transactions)")
    if any(x.startswith("streams") for x in names) and not os.environ.get("BENCH_STREAMS_CP"):
        raise SystemExit("bench: BENCH_STREAMS_CP is not set (scripts/bench.sh compiles StreamsMap.java and sets it)")
    eos = has_output_topic(h)
    measured = [x for x in names if x != "kswarm-eos" or eos]
    h.log(f"pipeline section: {n} records, commit intervals {ivs} ms, contenders {names}"
          f"{'' if eos else ' (kswarm-eos: this kswarm has no --output-topic, its rows say so)'}, "
          f"{h.REPEATS} repeats, latency at {rate}/s for {seconds} s")
    broker = h.Broker("kafka", h.PORT, ["group.initial.rebalance.delay.ms=0"] + h.EXTRA_PROPS)
    load, date = h.start_section(broker)
    thr = {(x, ci): [] for x in measured for ci in ivs}
    lat = {}
    try:
        in_topic = h.make_topic(h.PARTITIONS)
        h.fill_topic(in_topic, n)
        t = time.time()
        warm_transactions(h)
        h.throughput("kswarm-value", in_topic, n, quiet=True)
        h.log(f"pipeline warm-up took {time.time() - t:.1f} s")
        for _ in range(h.REPEATS):
            for ci in ivs:
                for x in measured:
                    thr[(x, ci)].append(throughput_run(h, x, in_topic, n, ci))
        for ci in ivs:
            for x in measured:
                lat[(x, ci)] = latency_run(h, x, ci, rate, seconds, settle)
    finally:
        broker.stop()

    v = h.versions()
    v["kafka"] = h.kafka_version()
    jm = v["java"]
    v["java"] = jm[jm.find("(Java ") + 6:-1] if "(Java " in jm else "?"
    md = [f"### Apache Kafka: pipelines, exactly once (issue 29)", "",
          f"{date}; machine: nproc {os.cpu_count()}, {h.cpu_model()}, load before {load}.  ",
          f"Broker: {broker.describe()}.  ",
          f"Command: `{h.COMMAND}`; {n:,} records of {h.VALUE_BYTES} bytes in IN ({h.PARTITIONS} partitions), a "
          f"one-to-one map (the value with \"x\" in front) to OUT ({h.PARTITIONS} partitions, fresh per run); "
          f"{f'median of {h.REPEATS} interleaved runs' if h.REPEATS != 1 else 'one run'} per row; latency at "
          f"{rate:,} records/s for {seconds} s after a {settle:g} s settle.", ""]
    md += ["| commit interval | contender | records/s, launch → all committed | records/s, first → last result "
           "| CPU µs per record | broker CPU µs per record | duplicates (most in a run) | latency p50 ms | p99 ms | max ms |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = {}
    for ci in ivs:
        for x in names:
            who = SHORT[x]
            if x == "kswarm-eos" and not eos:
                md.append(f"| {ci} ms | {who} | not available on this build | – | – | – | – | – | – | – |")
                continue
            rs = thr[(x, ci)]
            r = {"rate_total": med(rs, "rate_total"), "rate_flow": med(rs, "rate_flow"),
                 "cpu_us": med(rs, "cpu_us"), "broker_us": med(rs, "broker_us"),
                 "dups": max((r.get("dups") or 0) for r in rs), "complete": all(r["complete"] for r in rs)}
            lr = lat[(x, ci)]
            L = lr.get("lat") or {}
            rows[(x, ci)] = r
            rate_cell = h.f1(r["rate_total"], 0)
            if not r["complete"]:
                worst = min(rs, key=lambda q: q.get("n", 0))
                rate_cell = (f"{rate_cell} (a run read only {worst.get('n', 0):,} of {n:,} results within "
                             f"{worst.get('timeout', 0):.0f} s)")
            lat_note = f" ({lr['error']})" if lr.get("error") else ""
            md.append(f"| {ci} ms | {who} | {rate_cell} | {h.f1(r['rate_flow'], 0)} | {h.f1(r['cpu_us'], 2)} "
                      f"| {h.f1(r['broker_us'], 2)} | {r['dups']:,} | {h.f1(L.get('p50'), 1)}{lat_note} "
                      f"| {h.f1(L.get('p99'), 1)} | {h.f1(L.get('max'), 1)} |")
    md.append("")
    for ci in ivs:
        streams = [rows[(x, ci)] for x in ("streams-1x2", "streams-2x1") if (x, ci) in rows]
        if not streams:
            continue
        best_rate = max((s["rate_total"] for s in streams if s["rate_total"]), default=None)
        best_cpu = min((s["cpu_us"] for s in streams if s["cpu_us"]), default=None)
        for x in ("kswarm-eos", "kswarm-alo"):
            if (x, ci) not in rows:
                continue
            r = rows[(x, ci)]
            md.append(f"- {ci} ms, {SHORT[x]} ÷ the better Kafka Streams layout: records/s "
                      f"{fmt_x(h.ratio(r['rate_total'], best_rate))}, CPU per record "
                      f"{fmt_x(h.ratio(r['cpu_us'], best_cpu))} (goal of issue 29 for exactly once: ≥ 2× records/s "
                      f"at ≤ 0.5× CPU)")
    for (x, ci), rs in thr.items():
        md.append(f"- {SHORT[x]}, {ci} ms, per run: records/s (launch → all) "
                  + ", ".join(h.f1(r.get("rate_total"), 0) for r in rs)
                  + "; start-up (launch → first result) s " + ", ".join(h.f1(r.get("startup"), 2) for r in rs)
                  + "; CPU µs per record " + ", ".join(h.f1(r.get("cpu_us"), 2) for r in rs)
                  + "; duplicates " + ", ".join(f"{r.get('dups', 0):,}" for r in rs)
                  + ("; kswarm worker_revoked events " + ", ".join(str(r.get("revokes")) for r in rs)
                     if x.startswith("kswarm") else ""))
    for (x, ci), lr in lat.items():
        L = lr.get("lat") or {}
        md.append(f"- latency {SHORT[x]}, {ci} ms: {L.get('n', 0):,} results measured of {lr.get('sent') or 0:,} "
                  f"sent (producer at worst {h.f1(lr.get('worst_behind'), 2)} s behind schedule), mean "
                  f"{h.f1(L.get('mean'), 1)} ms, duplicates {lr.get('dups') or 0}")
    md.append("")
    md.append("Contenders: " + "; ".join(f"**{SHORT[x]}**: `{label(x, '<CI>', v)}`" if x.startswith("kswarm")
                                         else f"**{SHORT[x]}**: {label(x, '<CI>', v)}" for x in names) + ".")
    md.append("")
    md.append("records/s: N ÷ the time from the contender's launch (its start-up included: JVM, group join) until "
              "a read_committed reader (librdkafka) of OUT holds every one of the N results; first → last leaves "
              "the start-up out. CPU: user+sys of the contender's whole process tree per record (kswarm: "
              "supervisor, workers, guards and handlers; the at-least-once row includes its Python handlers and "
              "their librdkafka producers); the reader's CPU is in neither. Latency: results of a fixed-rate "
              "input (rate_producer.py, the produce time in each value) as they become visible to the "
              "read_committed reader (fetch.wait.max.ms=20): arrival − produce time, for inputs produced from "
              f"{settle:g} s after the first result on. Exactly once makes a result visible at the commit of its "
              "transaction, so its latency follows the commit interval; at least once makes it visible when "
              "produced.")
    md += ["", f"(bench took {time.time() - t_start:.0f} s)"]
    text = "\n".join(md) + "\n"
    print()
    print(text)
    os.makedirs(h.OUT, exist_ok=True)
    with open(os.path.join(h.OUT, "results-pipeline.md"), "w") as f:
        f.write(text)
    with open(os.path.join(h.OUT, "results-pipeline.json"), "w") as f:
        json.dump({"date": date, "broker": broker.describe(), "command": h.COMMAND, "records": n,
                   "intervals_ms": ivs, "output_topic_available": eos, "latency_rate": rate,
                   "latency_seconds": seconds, "settle": settle,
                   "throughput": {f"{x}@{ci}": rs for (x, ci), rs in thr.items()},
                   "latency": {f"{x}@{ci}": r for (x, ci), r in lat.items()}}, f, indent=1, default=str)
    h.log(f"wrote {h.OUT}/results-pipeline.md and results-pipeline.json")


def fmt_x(v):
    return "–" if v is None else f"{v:.2f}×"
