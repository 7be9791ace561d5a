"""BENCH_ONLY=cluster of scripts/bench.sh (issue 32 item 5): the stronger-peers table once more on a 3-node
Apache Kafka cluster with replication factor 3, the setting users run, so that the figures do not come only from
one loopback node. Called by harness.py's main() with the harness module; the contenders, the rounds and the
table are scripts/bench/strong.py's (its functions, not copies).

- The cluster: scripts/kafka.sh cluster-start PORT,PORT+1,PORT+2 (harness Broker with nodes=3): three combined
  broker+controller nodes (node ids 1..3, plaintext), group.initial.rebalance.delay.ms=0 and
  min.insync.replicas=2 on top of kafka.sh's cluster settings (internal topics at replication factor 3).
  Every client gets the bootstrap list of all three nodes; the broker CPU column sums the three node processes.
- Per partition count of BENCH_PARTITIONS (default 2,64): a fresh topic made by `kswarm plan -p N
  --replication-factor 3 --apply`, checked in the metadata (librdkafka's view: every partition has 3 replicas,
  all 3 in sync, and the topic's min.insync.replicas is 2) -- a topic that is not at replication factor 3 ends
  the run with exit status 1, it is not measured. Filled with BENCH_RECORDS records of 200 bytes by `kswarm
  produce` in batches of up to 1,000 records: its producer is rskafka's, which sends every produce request with
  acks=-1 (all; vendor/rskafka/src/client/partition.rs), so each batch is acknowledged once the in-sync
  replicas hold it (kswarm produce has no acks flag). Then strong.py's untimed warm-up and BENCH_REPEATS
  interleaved rounds of the contenders (strong.rounds: fresh group per run, medians, CPU of each process tree,
  peak RSS).
- Contenders: BENCH_STRONG_CONTENDERS, default kswarm-value, franz-go, rdkafka-c, librdkafka, java, rskafka
  (Kafka's perf tool, a fourth JVM beside three broker JVMs on this machine, only when named).
- Report: results-kafka-cluster.md (+ .json); `cluster.py render FILE.json` prints it again.
"""

import json
import os
import subprocess
import sys
import time

import strong

NODES = 3
RF = 3
MIN_ISR = 2
DEFAULT = ["kswarm-value", "franz-go", "rdkafka-c", "librdkafka", "java", "rskafka"]
H = None  # the harness module


def replication(topic):
    """The topic as the cluster's metadata has it: {"partitions", "replicas" (per partition), "isr" (per
    partition), "leaders" (node id -> partitions led), "min_isr"}; librdkafka's AdminClient."""
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": H.brokers()})
    t = admin.list_topics(topic, timeout=20).topics.get(topic)
    if t is None or t.error is not None:
        raise H.BenchFailure(f"bench: topic {topic} is not in the cluster's metadata ({t.error if t else 'absent'})")
    parts = [t.partitions[i] for i in sorted(t.partitions)]
    leaders = {}
    for p in parts:
        leaders[p.leader] = leaders.get(p.leader, 0) + 1
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=20)
    return {"partitions": len(parts), "replicas": sorted({len(p.replicas) for p in parts}),
            "isr": sorted({len(p.isrs) for p in parts}), "leaders": dict(sorted(leaders.items())),
            "min_isr": int(cfg["min.insync.replicas"].value)}


def checked_topic(partitions):
    """A fresh topic at replication factor RF made by kswarm plan; exits the run if the metadata says otherwise."""
    topic = H.uniq(f"bench-rf{RF}-p{partitions}")
    subprocess.run([H.KSWARM, "plan", "-b", H.brokers(), "-t", topic, "-p", str(partitions), "--replication-factor",
                    str(RF), "--apply"], check=True, stdout=subprocess.DEVNULL, timeout=H.left(180))
    rep = replication(topic)
    H.log(f"{topic}: {rep}")
    if (rep["partitions"] != partitions or rep["replicas"] != [RF] or rep["isr"] != [RF]
            or rep["min_isr"] != MIN_ISR):
        raise SystemExit(f"bench: BENCH_ONLY=cluster: topic {topic} is not what this table measures: expected "
                         f"{partitions} partitions of {RF} replicas, all in sync, min.insync.replicas={MIN_ISR}; "
                         f"the metadata says {rep}. Nothing measured.")
    return topic, rep


def one_count(partitions, names):
    out = {"partitions": partitions, "error": None, "results": {}}
    t = time.time()
    topic, out["replication"] = checked_topic(partitions)  # not caught: no figures off replication factor 3
    try:
        H.fill_topic(topic, H.N, batch=max(1, min(1000, H.N // partitions)))
        out["fill_seconds"] = time.time() - t
        H.warm_up(topic, H.N, partitions=partitions)
        out["results"] = strong.rounds(names, topic, partitions, f"rf{RF}-p{partitions}")
    except (H.BenchFailure, subprocess.SubprocessError) as e:
        out["error"] = str(getattr(e, "code", e))
        H.log(f"p{partitions}: {out['error']}")
    out["seconds"] = time.time() - t
    return out


def render(d):
    """The markdown of a BENCH_ONLY=cluster report from its JSON."""
    names, lab, rows = list(d["labels"]), d["labels"], d["rows"]
    peers = [n for n in names if n not in strong.CEILINGS and not n.startswith("kswarm")]
    counts = ", ".join(str(r["partitions"]) for r in rows)
    md = strong.header(f"A {d['nodes']}-node cluster, replication factor {d['rf']} (Apache Kafka)", d,
                       f"{d['records']:,} records of 200 bytes per topic, written by `kswarm produce` (rskafka's "
                       f"producer: acks=all on every request) in batches of up to 1,000 records; topics made by "
                       f"`kswarm plan --replication-factor {d['rf']} --apply`, replication checked in the metadata; "
                       f"partitions {counts}; median of {d.get('repeats', 3)} interleaved runs; broker CPU is the "
                       f"sum of the {d['nodes']} node processes.")
    md += strong.table(rows, names, lab, "partitions")
    md.append("")
    for row in rows:
        rep = row.get("replication") or {}
        if rep:
            fill = f", filled in {row['fill_seconds']:.1f} s" if row.get("fill_seconds") else ""
            md.append(f"- {row['partitions']} partitions (metadata): {'/'.join(map(str, rep['replicas']))} replicas "
                      f"per partition, {'/'.join(map(str, rep['isr']))} in sync, min.insync.replicas="
                      f"{rep['min_isr']}, partitions led per node "
                      f"{', '.join(f'{k}: {v}' for k, v in rep['leaders'].items())}{fill}")
    for row in rows:
        if not row["error"]:
            md.append(f"- {row['partitions']} partitions: kswarm "
                      + "; ".join(strong.ratios(row, lab, "kswarm-value", peers)))
    for row in rows:
        if not row["error"]:
            md.append(f"- per run, {row['partitions']} partitions: {strong.per_run(row, names)}")
    md += re_reads(rows, names, d["records"])
    return md


def re_reads(rows, names, n):
    """Runs that counted more records than the topic holds: a member read partitions that the group's rebalance
    then gave to another, which read them again from the last commit. records/s counts every record handed out;
    per record of the topic the rate is records/s x topic records / counted."""
    out = []
    for row in rows:
        for name in names:
            r = row["results"].get(name) or {}
            runs = [(c, x) for c, x in zip(r.get("ns") or [], r.get("rates") or []) if c > n and x]
            if runs:
                out.append(f"- re-read, {row['partitions']} partitions, {name}: " + "; ".join(
                    f"{c:,} records counted at {x:,.0f} records/s ({x * n / c:,.0f} per record of the topic)"
                    for c, x in runs))
    return out


def run(h, t_start):
    global H
    H = strong.H = h
    if H.KIND != "kafka":
        raise SystemExit("bench: BENCH_ONLY=cluster runs on Apache Kafka only (scripts/kafka.sh cluster-start)")
    counts = [int(x) for x in strong.env_list("BENCH_PARTITIONS", "2,64")]
    names = strong.env_list("BENCH_STRONG_CONTENDERS", ",".join(DEFAULT))
    bad = [n for n in names if n not in strong.STRONG]
    if bad:
        raise SystemExit(f"bench: unknown contender {bad}; contenders: {strong.STRONG}")
    if not H.FETCH and "rskafka" in names:
        names.remove("rskafka")
    strong.register()
    lab = strong.labels()
    broker = H.Broker("kafka", H.PORT, ["group.initial.rebalance.delay.ms=0", f"min.insync.replicas={MIN_ISR}"]
                      + H.EXTRA_PROPS, nodes=NODES)
    H.log(f"3-node cluster: {H.N} records, {H.REPEATS} repeats, partitions {counts}, contenders {names}")
    load = strong.loadavg()
    _, date = H.start_section(broker)
    try:
        rows = [one_count(p, names) for p in counts]
    finally:
        broker.stop()
    data = dict(strong.section_info(broker, date, load, strong.loadavg()), nodes=NODES, rf=RF,
                labels={n: lab[n] for n in names}, rows=rows)
    md = render(data) + [f"\n(bench took {time.time() - t_start:.0f} s)"]
    H.write_section("cluster", md, data)


if __name__ == "__main__":
    # cluster.py render FILE.json..: the markdown of reports written before
    for path in sys.argv[2:] if sys.argv[1:2] == ["render"] else []:
        with open(path) as f:
            print("\n".join(render(json.load(f))) + "\n")
