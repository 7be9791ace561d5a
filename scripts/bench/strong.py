"""BENCH_ONLY=strong and BENCH_ONLY=share of scripts/bench.sh (issue 32 items 2 and 4, issue 30 B.7).
Called by harness.py's main() with the harness module itself (its broker, topics, processes, /proc
helpers and throughput()). Apache Kafka only.

BENCH_ONLY=strong: kswarm beside stronger peers and two ceilings, on plain and compressed topics.
  kswarm-value  kswarm run -w 2 -p keep --format value (its stdout to a pipe the harness counts)
  franz-go      scripts/bench/franz (kgo consumer group), 2 processes, one group; it counts records in-process
  franz-go-print the same, writing each value to stdout (`print`), a pipe the harness counts: kswarm-value's job
  rdkafka-c     scripts/bench/rdkafka_consumer.c (C against Debian's librdkafka-dev), 2 processes, one group
  librdkafka    scripts/bench/rdkafka_consumer.py (confluent-kafka: a Python loop over librdkafka), 2 processes
  java          scripts/bench/JavaConsumer.java (KafkaConsumer), 2 processes
  perf-test     Kafka's consumer performance tool (org.apache.kafka.tools.ConsumerPerformance from
                kafka-tools, what kafka-consumer-perf-test.sh runs), 1 process, --num-records N: a ceiling;
                its records/s is its own fetch.nMsg.sec (records / (end - partitions assigned))
  rskafka       the bare rskafka fetch loop (examples/rskafka_fetch.rs), 1 process, no group: a ceiling
  rskafka-print the same loop writing each value to a counted pipe (--print): the ceiling for kswarm-value's job
  (every peer but the -print ones counts records in-process and writes none)
  BENCH_STRONG_CONTENDERS picks a subset (comma-separated, in that order by default).
  Per compression of BENCH_COMPRESSIONS (default none,lz4,zstd) and partition count of BENCH_PARTITIONS
  (default 2,64): a fresh topic filled with BENCH_RECORDS records of 200 bytes by `kswarm produce
  --compression C --batch-size B` (B = min(1000, records / partitions): batches round-robin over the
  partitions), read once untimed (harness warm_up), then BENCH_REPEATS interleaved rounds of the contenders,
  each run a fresh group reading every record (harness throughput(): records/s from first record to last,
  CPU of the whole process tree, peak RSS, broker CPU); medians. One report per compression:
  results-kafka-strong-COMPRESSION.md (+ .json).

BENCH_ONLY=share: share groups (KIP-932) with no handler work, on a 2-partition topic of BENCH_RECORDS
records (batches of 1000):
  kswarm-share  kswarm run -w 2 -p keep --group-protocol share --format value (stdout to a counted pipe)
  java-share    scripts/bench/JavaShareConsumer.java (KafkaShareConsumer, implicit acknowledgement), 2 processes
  kswarm-value  the classic group, for reference
  BENCH_REPEATS interleaved rounds, medians; results-kafka-share.md (+ .json).
"""

import os
import re
import statistics
import subprocess
import threading
import time

STRONG = ["kswarm-value", "franz-go", "franz-go-print", "rdkafka-c", "librdkafka", "java", "perf-test", "rskafka",
          "rskafka-print"]
CEILINGS = ["perf-test", "rskafka", "rskafka-print"]
SHARE = ["kswarm-share", "java-share", "kswarm-value"]
H = None  # the harness module


def env_list(name, default):
    raw = os.environ.get(name, "").strip() or default
    return [x.strip() for x in raw.split(",") if x.strip()]


# ---------------------------------------------------------------- contenders ---

def procs(l, name, argv, workers, tracker, env=None):
    """`workers` processes of argv printing the bench's JSON lines into one pipe."""
    r, w = os.pipe()
    for _ in range(workers):
        l.start(argv, stdout=w, stderr=H.logfile(name), stdin=subprocess.DEVNULL, env=env)
    os.close(w)
    return H.ProtocolReader(os.fdopen(r, "rb"), tracker), lambda: l.roots()


def start_franz(l, topic, group, workers, _partitions, tracker):
    reader, pids = procs(l, "franz-go", [os.environ["BENCH_FRANZ"], H.brokers(), topic, group], workers, tracker)
    return reader, pids, tracker


def start_franz_print(l, topic, group, workers, _partitions, _tracker):
    r, w = os.pipe()
    for _ in range(workers):
        l.start([os.environ["BENCH_FRANZ"], H.brokers(), topic, group, "print"], stdout=w,
                stderr=H.logfile("franz-go-print"), stdin=subprocess.DEVNULL)
    os.close(w)
    return H.LineCounter(r), lambda: l.roots(), None


def start_rdkafka_c(l, topic, group, workers, _partitions, tracker, sec=None):
    """sec (BENCH_ONLY=security): the SASL_SSL listener, with the C program's properties file."""
    env = dict(os.environ, BENCH_RDKAFKA_CONFIG=sec["c_file"]) if sec else None
    reader, pids = procs(l, "rdkafka-c", [os.environ["BENCH_RDKAFKA_C"], sec["addr"] if sec else H.brokers(), topic,
                                          group], workers, tracker, env=env)
    return reader, pids, tracker


def start_java_share(l, topic, group, workers, _partitions, _tracker):
    argv = (["java"] + H.JAVA_OPTS + [f"-Dlog4j2.configurationFile={H.JAVA_LOG}", "-cp",
                                      os.environ["BENCH_EXTRA_CP"], "JavaShareConsumer", H.brokers(), topic, group])
    reader, pids = procs(l, "java-share", argv, workers, None)
    return reader, pids, None


def start_kswarm_share(l, topic, group, workers, _partitions, _tracker):
    r, w = os.pipe()
    l.start([H.KSWARM, "--log-format", "json", "run", "-w", str(workers), "-p", "keep", "-b", H.brokers(),
             "-t", topic, "-g", group, "--from", "earliest", "--group-protocol", "share", "--format", "value"],
            stdout=w, stderr=H.logfile("kswarm-share"), stdin=subprocess.DEVNULL)
    os.close(w)
    return H.LineCounter(r), lambda: H.kswarm_worker_pids(l), None


class PerfReader:
    """ConsumerPerformance's one result line (after its header): start.time, end.time, MB, MB.sec, nMsg,
    nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec. Its records/s is the tool's own
    fetch.nMsg.sec: state() gives last = the line's arrival and first = last - nMsg / fetch.nMsg.sec."""

    def __init__(self, stream):
        self.n, self.first, self.last, self.line = 0, None, None, None
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            fields = [f.strip() for f in raw.decode(errors="replace").split(",")]
            if len(fields) != 10 or not re.match(r"\d{4}-\d\d-\d\d", fields[0]):
                continue
            now = time.time()
            n, rate = int(fields[4]), float(fields[9])
            self.line = raw.decode(errors="replace").strip()
            self.first, self.last, self.n = (now - n / rate if rate > 0 else None), now, n

    def state(self):
        return self.n, self.first, self.last


def start_perf_test(l, topic, group, _workers, _partitions, _tracker):
    p = l.start(["java"] + H.JAVA_OPTS + [f"-Dlog4j2.configurationFile={H.JAVA_LOG}", "-cp", H.JAVA_CP,
                                          "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
                                          H.brokers(), "--topic", topic, "--group", group, "--num-records",
                                          str(H.N), "--timeout", "30000"],
                stdout=subprocess.PIPE, stderr=H.logfile("perf-test"), stdin=subprocess.DEVNULL)
    return PerfReader(p.stdout), lambda: l.roots(), None


def register():
    H.EXTRA_CONTENDERS.update({"franz-go": start_franz, "franz-go-print": start_franz_print, "rdkafka-c": start_rdkafka_c, "perf-test": start_perf_test,
                               "java-share": start_java_share, "kswarm-share": start_kswarm_share})


def labels():
    v = H.versions()
    out = H.labels_for(v)
    franz, gov = "?", "?"
    try:
        with open(os.path.join(H.HERE, "franz", "go.mod")) as f:
            m = re.search(r"github.com/twmb/franz-go (v\S+)", f.read())
            franz = m.group(1) if m else "?"
        gov = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.split()[2]
    except (OSError, IndexError):
        pass
    deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "librdkafka1"], capture_output=True,
                         text=True).stdout.strip() or "?"
    out.update({
        "franz-go": f"franz-go {franz} (kgo, {gov}), 2 processes",
        "franz-go-print": f"franz-go {franz}, 2 processes, each value to stdout (kswarm-value's job)",
        "rdkafka-c": f"librdkafka {deb} (C program, Debian librdkafka-dev), 2 processes",
        "librdkafka": f"confluent-kafka (Python loop over librdkafka): {v['librdkafka']}, 2 processes",
        "perf-test": f"Kafka's consumer perf tool (ConsumerPerformance, kafka-tools {H.kafka_version()}), "
                     f"1 process (ceiling)",
        "kswarm-share": "kswarm run -w 2 -p keep --group-protocol share --format value",
        "java-share": f"Java KafkaShareConsumer, {v['java']}, implicit acknowledgement, 2 processes",
        "kswarm-value-classic": "kswarm run -w 2 -p keep --format value (classic group, reference)",
    })
    return out


# ------------------------------------------------------------------- runs ---

def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def rounds(names, topic, partitions, tag):
    """REPEATS interleaved rounds of `names` on the topic; medians (peak RSS: median too)."""
    runs = {name: [] for name in names}
    for _ in range(H.REPEATS):
        for name in names:
            runs[name].append(H.throughput(name, topic, H.N, partitions=partitions, label=f"{name}-{tag}"))
    res = {}
    for name, rs in runs.items():
        c = H.combine(rs)
        rss = [x["rss"] for x in rs if x.get("rss") is not None]
        c["rss"] = statistics.median(rss) if rss else None
        c["cpus"] = [x["cpu_per_m"] for x in rs]
        c["ns"] = [x.get("n", 0) for x in rs]  # records each run counted: more than the topic's after a re-read
        res[name] = c
    return res


def one_topic(compression, partitions, names):
    out = {"compression": compression, "partitions": partitions, "error": None, "results": {}}
    t = time.time()
    try:
        topic = H.uniq(f"bench-{compression}-p{partitions}")
        subprocess.run([H.KSWARM, "plan", "-b", H.brokers(), "-t", topic, "-p", str(partitions), "--apply"],
                       check=True, stdout=subprocess.DEVNULL, timeout=H.left(180))
        H.fill_topic(topic, H.N, batch=max(1, min(1000, H.N // partitions)),
                     compression=None if compression == "none" else compression)
        H.warm_up(topic, H.N, partitions=partitions)
        out["results"] = rounds(names, topic, partitions, f"{compression}-p{partitions}")
    except (H.BenchFailure, subprocess.SubprocessError) as e:
        out["error"] = str(getattr(e, "code", e))
        H.log(f"{compression} p{partitions}: {out['error']}")
    out["seconds"] = time.time() - t
    return out


def whole(r):
    """Median over the runs of launch -> last record (start-up + records / rate), s: the whole read, the group's
    join and a runtime's start included. records/s counts from the first record to the last, which flatters a
    client that fetches much of the topic before it hands out its first record (franz-go on 64 partitions)."""
    rates = r.get("rates") or []
    ns = r.get("ns") or [r["n"]] * len(rates)  # each run's own count (reports before "ns": the smallest)
    vals = [s + n / x for s, n, x in zip(r.get("startups") or [], ns, rates) if s is not None and x]
    return statistics.median(vals) if vals else None


def f1(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def cell(r, key, nd):
    if key == "rate" and not r.get("complete", True):
        return f"{f1(r.get(key), nd)} (incomplete: {r['n']:,} records)"
    return f1(r.get(key), nd)


def table(rows, names, lab, first_col):
    md = [f"| {first_col} | contender | records/s | launch → last record s | CPU µs per record | "
          f"peak RSS per process MiB | broker CPU µs per record |", "|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["error"]:
            md.append(f"| {row[first_col]} | (failed: {row['error']}) | | | | | |")
            continue
        for name in names:
            r = row["results"].get(name)
            if r is None:
                continue
            md.append(f"| {row[first_col]:,} | {lab[name]} | {cell(r, 'rate', 0)} | {f1(whole(r), 2)} | "
                      f"{cell(r, 'cpu_per_m', 2)} | {cell(r, 'rss', 1)} | {cell(r, 'broker_per_m', 2)} |")
    return md


def ratios(row, lab, kswarm, peers):
    res = row["results"]
    k = res.get(kswarm)
    if not k:
        return []
    lines = []
    have = [(res[p]["rate"], p) for p in peers if p in res and res[p].get("rate")]
    cpu = [(res[p]["cpu_per_m"], p) for p in peers if p in res and res[p].get("cpu_per_m")]
    if have and k.get("rate"):
        r, p = max(have)
        lines.append(f"throughput {k['rate'] / r:.2f}x the best peer ({p}, {r:,.0f} records/s)")
    if cpu and k.get("cpu_per_m"):
        c, p = min(cpu)
        lines.append(f"CPU per record {k['cpu_per_m'] / c:.2f}x the leanest peer ({p}, {c:.2f} µs)")
    wh = [(whole(res[p]), p) for p in peers if p in res and whole(res[p])]
    if wh and whole(k):
        w, p = min(wh)
        lines.append(f"launch → last record {whole(k):.2f} s against {w:.2f} s ({p})")
    for ceil in CEILINGS:
        if ceil in res and res[ceil].get("rate") and k.get("rate"):
            lines.append(f"{k['rate'] / res[ceil]['rate']:.2f}x the {ceil} ceiling's records/s")
    return lines


def per_run(row, names):
    res = row["results"]
    parts = []
    for name in names:
        if name in res:
            rates = ", ".join(f1(x, 0) for x in res[name]["rates"])
            cpus = ", ".join(f1(x, 2) for x in res[name]["cpus"])
            parts.append(f"{name}: {rates} records/s; {cpus} µs")
    return "; ".join(parts)


def header(title, d, extra):
    return [f"### {title}", "",
            f"{d['date']}; machine: {d.get('machine', '?')}; load (`uptime`: 1, 5, 15 min) before {d['load']}, "
            f"after {d['load_after']}.  ",
            f"Broker: {d.get('broker', '?')}.  ",
            f"Command: `{d['command']}`; {extra}", ""]


def render_strong(d):
    """The markdown of one BENCH_ONLY=strong report from its JSON (also: strong.py render FILE.json)."""
    names, lab, rows = list(d["labels"]), d["labels"], d["rows"]
    peers = [n for n in names if n not in CEILINGS and not n.startswith("kswarm")]
    counts = [r["partitions"] for r in rows]
    comp = d["compression"]
    md = header(f"Stronger peers, {comp} topic (Apache Kafka)", d,
                f"{d['records']:,} records of 200 bytes per topic, written by `kswarm produce --compression {comp}` "
                f"in batches of up to 1,000 records; partitions {', '.join(str(c) for c in counts)}; median of "
                f"{d.get('repeats', 3)} interleaved runs.")
    md += table(rows, names, lab, "partitions")
    md.append("")
    for row in rows:
        if not row["error"]:
            md.append(f"- {row['partitions']} partitions: kswarm " + "; ".join(ratios(row, lab, "kswarm-value",
                                                                                       peers)))
    for row in rows:
        if not row["error"]:
            md.append(f"- per run, {row['partitions']} partitions: {per_run(row, names)}")
    return md


def render_share(d):
    names, lab, row = list(d["labels"]), d["labels"], d["row"]
    md = header("Share groups, no handler work (Apache Kafka)", d,
                f"{d['records']:,} records of 200 bytes, 2 partitions, written by `kswarm produce` in batches of "
                f"1,000 records; median of {d.get('repeats', 3)} interleaved runs, a fresh group each.")
    md += table([row], names, lab, "partitions")
    md.append("")
    md.append("- kswarm (share) " + "; ".join(ratios(row, lab, "kswarm-share", ["java-share"])))
    md.append(f"- per run: {per_run(row, names)}")
    return md


def section_info(broker, date, load, load_after):
    return {"date": date, "load": load, "load_after": load_after, "command": H.COMMAND, "records": H.N,
            "repeats": H.REPEATS, "broker": broker.describe(),
            "machine": f"nproc {os.cpu_count()}, {H.cpu_model()}"}


def run_strong(lab, t_start):
    comps = env_list("BENCH_COMPRESSIONS", "none,lz4,zstd")
    counts = [int(x) for x in env_list("BENCH_PARTITIONS", "2,64")]
    names = [n for n in env_list("BENCH_STRONG_CONTENDERS", ",".join(STRONG))]
    bad = [n for n in names if n not in STRONG] + [c for c in comps if c not in ("none", "gzip", "lz4", "snappy",
                                                                                  "zstd")]
    if bad:
        raise SystemExit(f"bench: unknown contender or compression {bad}; contenders: {STRONG}, compressions: "
                         f"none, gzip, lz4, snappy, zstd")
    if not H.FETCH:
        names = [n for n in names if n not in ("rskafka", "rskafka-print")]
    broker = H.Broker("kafka", H.PORT, ["group.initial.rebalance.delay.ms=0"] + H.EXTRA_PROPS)
    for comp in comps:
        load = loadavg()  # all three figures (start_section gives the 1-minute one)
        _, date = H.start_section(broker)
        try:
            rows = [one_topic(comp, p, names) for p in counts]
        finally:
            broker.stop()
        load_after = loadavg()
        data = dict(section_info(broker, date, load, load_after), compression=comp,
                    labels={n: lab[n] for n in names}, rows=rows)
        md = render_strong(data) + [f"\n(bench took {time.time() - t_start:.0f} s)"]
        H.write_section(f"strong-{comp}", md, data)


def run_share(lab, t_start):
    names = env_list("BENCH_SHARE_CONTENDERS", ",".join(SHARE))
    broker = H.Broker("kafka", H.PORT, ["group.initial.rebalance.delay.ms=0"] + H.EXTRA_PROPS)
    load = loadavg()
    _, date = H.start_section(broker)
    try:
        topic = H.make_topic(2)
        H.fill_topic(topic, H.N)
        H.warm_up(topic, H.N)
        row = {"partitions": 2, "error": None, "results": rounds(names, topic, 2, "share")}
    finally:
        broker.stop()
    load_after = loadavg()
    lab = dict(lab, **{"kswarm-value": lab["kswarm-value-classic"]})
    data = dict(section_info(broker, date, load, load_after), labels={n: lab[n] for n in names}, row=row)
    md = render_share(data) + [f"\n(bench took {time.time() - t_start:.0f} s)"]
    H.write_section("share", md, data)


def run(h, t_start):
    global H
    H = h
    if H.KIND != "kafka":
        raise SystemExit(f"bench: BENCH_ONLY={H.ONLY} runs on Apache Kafka only")
    register()
    lab = labels()
    if H.ONLY == "share":
        run_share(lab, t_start)
    else:
        run_strong(lab, t_start)


if __name__ == "__main__":
    # strong.py render FILE.json..: the markdown of reports written before (BENCH_ONLY=strong or share)
    import json
    import sys
    for path in sys.argv[2:] if sys.argv[1:2] == ["render"] else []:
        with open(path) as f:
            d = json.load(f)
        print("\n".join(render_share(d) if "row" in d else render_strong(d)) + "\n")
