#!/usr/bin/env bash
# kswarm beside its peers (librdkafka, the Java KafkaConsumer, Node cluster + kafkajs, a bare rskafka
# fetch loop) on a local broker it starts and stops itself; one markdown table per broker, and a plot
# of the failover measurement. On Kafka also kswarm and librdkafka over SASL_SSL (SCRAM-SHA-512, TLS)
# beside plaintext, on the broker's secured listener (build/kafka-PORT/security.json).
#   scripts/bench.sh [--broker kafka|tansu|both] [PORT]
# The broker: --broker, else KSWARM_BROKER, else kafka (Apache Kafka, the reference). Default port 19105;
# on Kafka, PORT+1 is a second broker with Kafka's default settings for the start-up measurement.
# Env: BENCH_RECORDS (default 1000000; e.g. 100000 for a quick run),
#      BENCH_TRIALS (failover groups, default 5), BENCH_RATE (default 200/s),
#      BENCH_REPEATS (throughput runs per contender, medians; default 3),
#      BENCH_STARTUP_RUNS (start-up runs per contender on Kafka's default settings; default 5, 0 skips),
#      BENCH_KAFKA_PROPS (more Kafka broker settings, key=value ..), BENCH_JAVA_OPTS (JVM options for the
#      Java peer), BENCH_MAX_SECONDS (guard per broker, default 2400),
#      KSWARM_BUILD_DIR (venv with tansu + confluent-kafka, the Kafka jars; default ./build),
#      BENCH_ONLY=security: only the SASL_SSL section (Kafka only; throughput topic, untimed warm-up, then
#      kswarm, the native librdkafka C program and confluent-kafka on plaintext and SASL_SSL, BENCH_REPEATS rounds), e.g.
#      `BENCH_ONLY=security BENCH_RECORDS=200000 scripts/bench.sh --broker kafka` (about a minute here, as
#      with the default 1M records; 200k-record runs last under 0.5 s each, so their figures are rough).
#      BENCH_ONLY=partitions: only the partition-count section (issue 19; Kafka or tansu): per count a fresh
#      topic of BENCH_RECORDS records, untimed warm-up, then kswarm (-w 2 --format value), native librdkafka (C),
#      franz-go and confluent-kafka (2 processes each; BENCH_PART_CONTENDERS picks some; BENCH_KSWARM_X=k=v,..
#      adds a kswarm row with those -X settings), BENCH_REPEATS interleaved rounds, with the time from launch to
#      the first, 10,000th, 100,000th and last record beside the rate; counts from BENCH_PARTITIONS (default 2,64,256,1024),
#      e.g. `BENCH_ONLY=partitions scripts/bench.sh --broker kafka`, or for a quick check
#      `BENCH_ONLY=partitions BENCH_PARTITIONS=2,64 BENCH_RECORDS=50000 BENCH_REPEATS=1 scripts/bench.sh`.
#      BENCH_ONLY=pipeline: only the pipeline section (issue 29; Kafka only): BENCH_RECORDS records into IN (2
#      partitions), then per commit interval a one-to-one map IN -> OUT by kswarm --output-topic (exactly once;
#      rows say "not available on this build" where kswarm has no such flag), kswarm with a handler that produces
#      itself (scripts/bench/alo_handler.py, at least once) and Kafka Streams exactly_once_v2
#      (scripts/bench/StreamsMap.java, kafka-streams from scripts/bench/streams/pom.xml into build/bench/streams;
#      one JVM of 2 threads and 2 JVMs of 1): records/s until a read_committed reader has every result, CPU per
#      record, and end-to-end latency p50/p99 at a fixed rate. BENCH_PIPELINE_INTERVALS (ms, default 100,1000),
#      BENCH_PIPELINE_CONTENDERS (default kswarm-eos,kswarm-alo,streams-1x2,streams-2x1), BENCH_PIPELINE_RATE
#      (default 5000/s), BENCH_PIPELINE_SECONDS (default 20), BENCH_PIPELINE_SETTLE (default 3 s); e.g.
#      `BENCH_ONLY=pipeline BENCH_REPEATS=1 scripts/bench.sh` (the full run leaves this section out; 1M records and 3
#      rounds took about 7 minutes here). Method: scripts/bench/pipeline.py.
#      BENCH_ONLY=strong: only the stronger-peers section (issue 32; Kafka only): per compression of
#      BENCH_COMPRESSIONS (default none,lz4,zstd) and partition count of BENCH_PARTITIONS (default 2,64) a fresh
#      topic of BENCH_RECORDS records written by `kswarm produce --compression C`, then kswarm -w 2, franz-go
#      (scripts/bench/franz; once counting, once writing each value to stdout as kswarm does), native librdkafka
#      (scripts/bench/rdkafka_consumer.c, Debian's librdkafka-dev), confluent-kafka, the Java KafkaConsumer
#      (2 processes each) and three ceilings, Kafka's ConsumerPerformance and the rskafka loop counting or
#      writing each value (1 process each), BENCH_REPEATS interleaved rounds (BENCH_STRONG_CONTENDERS picks
#      some), e.g. `BENCH_ONLY=strong BENCH_COMPRESSIONS=lz4 scripts/bench.sh`; one report per compression,
#      build/bench/results-kafka-strong-COMPRESSION.md (+ .json).
#      BENCH_ONLY=latency: only end-to-end latency (issue 32 item 3; Kafka only): a C producer
#      (scripts/bench/rate_producer.c) at each rate of BENCH_LATENCY_RATES (default 1000,10000,100000 records/s) for
#      BENCH_LATENCY_SECONDS (default 10) into a fresh 2-partition topic per run, each record stamped; kswarm (its
#      stdout, and an --exec handler: scripts/bench/latency_sink.c), franz-go, native librdkafka, confluent-kafka
#      and the Java KafkaConsumer count produce-to-handler latency: p50/p99/p99.9 over BENCH_REPEATS interleaved
#      rounds (medians), then one run each with a worker killed (SIGKILL) at BENCH_LATENCY_KILL_RATE (default
#      10000/s; 0 skips). BENCH_LATENCY_CONTENDERS picks some; build/bench/results-kafka-latency.md (+ .json).
#      Method: scripts/bench/latency.py.
#      BENCH_ONLY=share: only share groups with no handler work (issue 30 B.7; Kafka only): kswarm
#      --group-protocol share against 2 Java KafkaShareConsumer processes (scripts/bench/JavaShareConsumer.java)
#      and kswarm's classic group, build/bench/results-kafka-share.md (+ .json). Method: scripts/bench/strong.py.
#      BENCH_ONLY=cluster: only the 3-node cluster section (issue 32 item 5; Kafka only): scripts/kafka.sh
#      cluster-start PORT,PORT+1,PORT+2 (min.insync.replicas=2), per partition count of BENCH_PARTITIONS (default
#      2,64) a topic made by `kswarm plan --replication-factor 3 --apply` (replication factor 3 checked in the
#      metadata, or the run stops), filled by `kswarm produce` (acks=all), then BENCH_STRONG_CONTENDERS (default
#      kswarm-value,franz-go,rdkafka-c,librdkafka,java,rskafka) in BENCH_REPEATS interleaved rounds, as
#      BENCH_ONLY=strong; build/bench/results-kafka-cluster.md (+ .json). Method: scripts/bench/cluster.py. E.g.
#      `BENCH_ONLY=cluster scripts/bench.sh 42110`, or for a quick check
#      `BENCH_ONLY=cluster BENCH_RECORDS=100000 BENCH_REPEATS=1 scripts/bench.sh 42110`.
# BENCH_PREPARE_ONLY=1 installs and compiles what the chosen form uses and stops before any broker starts.
# Output: build/bench/results-BROKER.md (+ .json), build/bench/failover-BROKER.svg, and a copy of the
# plot in scripts/bench/; with BENCH_ONLY=security build/bench/results-kafka-security.md (+ .json)
# instead, with BENCH_ONLY=partitions build/bench/results-BROKER-partitions.md (+ .json) instead, with
# BENCH_ONLY=pipeline build/bench/results-pipeline.md (+ .json) instead, with BENCH_ONLY=cluster
# build/bench/results-kafka-cluster.md (+ .json) instead.
# The SASL_SSL client settings (with the broker's throwaway password) go to
# build/bench/security-kafka.properties, mode 0600. See scripts/bench/harness.py for the method.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
NODE_DIR="$BUILD/node"
JAVA_DIR="$BUILD/bench/java"
JAVA_SRC="$ROOT/scripts/bench/JavaConsumer.java"
ARGS=("$@")

broker="${KSWARM_BROKER:-kafka}"
PORT="${BENCH_PORT:-19105}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --broker) broker="${2:?--broker needs kafka, tansu or both}"; shift 2 ;;
    --broker=*) broker="${1#--broker=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0"; exit 0 ;;
    [0-9]*) PORT="$1"; shift ;;
    *) echo "bench.sh: unknown argument '$1'; usage: scripts/bench.sh [--broker kafka|tansu|both] [PORT]" >&2; exit 2 ;;
  esac
done
case "$broker" in
  kafka|tansu) kinds=("$broker") ;;
  both) kinds=(kafka tansu) ;;
  *) echo "bench.sh: --broker $broker: use kafka (Apache Kafka, the default), tansu or both" >&2; exit 2 ;;
esac
only="${BENCH_ONLY:-}"
case "$only" in
  ""|security|partitions|pipeline|strong|share|latency|cluster) ;;
  *) echo "bench.sh: BENCH_ONLY=$only: use security (only the SASL_SSL section, Kafka only), partitions" \
          "(only the partition-count section, Kafka or tansu; counts from BENCH_PARTITIONS, default 2,64,256,1024)," \
          "pipeline (only the pipeline section of issue 29, Kafka only), strong (stronger peers on plain and" \
          "compressed topics, Kafka only), share (share groups, Kafka only), latency (end-to-end latency, Kafka" \
          "only) or cluster (the strong contenders on a 3-node cluster, replication factor 3, Kafka only), or" \
          "leave it unset" >&2
     exit 2 ;;
esac
if [[ ( "$only" == strong || "$only" == share || "$only" == latency || "$only" == cluster ) && "$broker" != kafka ]]; then
  echo "bench.sh: BENCH_ONLY=$only runs on Kafka only (kafka-tools' perf tool, share groups, the latency peers," \
       "a KRaft cluster)" >&2
  exit 2
fi
if [[ ( "$only" == partitions || "$only" == strong || "$only" == cluster ) && -n "${BENCH_PARTITIONS:-}" && ! "$BENCH_PARTITIONS" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  echo "bench.sh: BENCH_PARTITIONS=$BENCH_PARTITIONS: use partition counts separated by commas, e.g. 2,64,256,1024" >&2
  exit 2
fi
if [[ "$only" == pipeline && "$broker" != kafka ]]; then
  echo "bench.sh: BENCH_ONLY=pipeline runs on Kafka only (transactions, and Kafka Streams exactly_once_v2)" >&2
  exit 2
fi
if [[ "$only" == security && "$broker" == tansu ]]; then
  echo "bench.sh: BENCH_ONLY=security runs on Kafka only (the SASL_SSL listener of scripts/kafka.sh)" >&2
  exit 2
fi
cd "$ROOT"

echo "bench.sh: building kswarm and the rskafka_fetch example (release)" >&2
cargo build --release --quiet
cargo build --release --quiet --example rskafka_fetch

# Python venv (confluent-kafka, tansu), the Kafka jars (broker and kafka-clients for the Java peer),
# kafkajs (pinned) into build/node.
KSWARM_BROKER=tansu scripts/broker.sh install
scripts/kafka.sh install
[[ -n "$only" ]] || scripts/peers.sh install

# The bench's Java consumer, compiled with javac against the installed kafka-clients (not needed by
# BENCH_ONLY=security or partitions).
CP="$(scripts/kafka.sh classpath)"
jar="$(ls "$BUILD"/kafka/libs/kafka-clients-*.jar | head -1)"
if [[ -z "$only" || "$only" == strong || "$only" == latency || "$only" == cluster ]] && [[ ! -f "$JAVA_DIR/JavaConsumer.class" || "$JAVA_SRC" -nt "$JAVA_DIR/JavaConsumer.class" \
      || "$(cat "$JAVA_DIR/.kafka-clients" 2>/dev/null)" != "$(basename "$jar")" ]]; then
  echo "bench.sh: compiling $JAVA_SRC into $JAVA_DIR" >&2
  rm -rf "$JAVA_DIR"
  mkdir -p "$JAVA_DIR"
  javac -nowarn -d "$JAVA_DIR" -cp "$CP" "$JAVA_SRC"
  basename "$jar" >"$JAVA_DIR/.kafka-clients"
fi
# The pipeline section's Kafka Streams peer: kafka-streams and its dependencies (scripts/bench/streams/pom.xml,
# the Kafka version of scripts/kafka/pom.xml) into a directory of their own, StreamsMap.java compiled against
# them; both idempotent, offline once installed.
STREAMS_DIR="$BUILD/bench/streams"
STREAMS_SRC="$ROOT/scripts/bench/StreamsMap.java"
STREAMS_POM="$ROOT/scripts/bench/streams/pom.xml"
if [[ "$only" == pipeline ]]; then
  if [[ ! -f "$STREAMS_DIR/libs/.installed" || "$STREAMS_POM" -nt "$STREAMS_DIR/libs/.installed" ]]; then
    command -v mvn >/dev/null || { echo "bench.sh: the Kafka Streams peer needs Maven ('mvn' on PATH) once" >&2; exit 1; }
    echo "bench.sh: fetching kafka-streams (scripts/bench/streams/pom.xml) into $STREAMS_DIR/libs" >&2
    rm -rf "$STREAMS_DIR"
    mkdir -p "$STREAMS_DIR/libs"
    mvn -q -B -f "$STREAMS_POM" dependency:copy-dependencies -DoutputDirectory="$STREAMS_DIR/libs" >&2 \
      || { echo "bench.sh: mvn could not fetch kafka-streams (see above; it needs Maven Central once)" >&2; exit 1; }
    touch "$STREAMS_DIR/libs/.installed"
  fi
  if [[ ! -f "$STREAMS_DIR/StreamsMap.class" || "$STREAMS_SRC" -nt "$STREAMS_DIR/StreamsMap.class" ]]; then
    echo "bench.sh: compiling $STREAMS_SRC into $STREAMS_DIR" >&2
    javac -nowarn -d "$STREAMS_DIR" -cp "$STREAMS_DIR/libs/*" "$STREAMS_SRC"
  fi
  printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
    '      PatternLayout:' '        pattern: "[streams] %d %p %c{1} %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
    '      AppenderRef:' '        - ref: E' >"$STREAMS_DIR/log4j2.yaml"
fi
# BENCH_ONLY=strong, cluster and share: the franz-go program (scripts/bench/franz, `go build`, its module cache under
# build/bench/go), the C program against Debian's librdkafka-dev (installed with apt-get when missing, as
# scripts/test.sh installs its Debian packages) and JavaShareConsumer.java; each rebuilt when its source changes.
# BENCH_OUT (default BUILD/bench): the reports and logs (the peers' binaries stay under BUILD/bench).
OUT_DIR="${BENCH_OUT:-$BUILD/bench}"
FRANZ_DIR="$BUILD/bench/franz"
RDKC_DIR="$BUILD/bench/rdkafka-c"
LAT_DIR="$BUILD/bench/latency"
EXTRA_DIR="$BUILD/bench/java-extra"
deb_install() {  # PACKAGE WHAT-FOR
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bench.sh: installing $1 ($2)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >&2
  else
    echo "bench.sh: $2 needs the Debian package $1; install it (apt-get install $1) and run again" >&2
    exit 1
  fi
}
if [[ "$only" == strong || "$only" == security || "$only" == latency || "$only" == cluster || "$only" == partitions ]]; then
  command -v go >/dev/null || { echo "bench.sh: the franz-go peer needs Go ('go' on PATH, 1.22 or newer)" >&2; exit 1; }
  if [[ ! -x "$FRANZ_DIR/franz_consumer" || -n "$(find "$ROOT/scripts/bench/franz" -newer "$FRANZ_DIR/franz_consumer")" ]]; then
    echo "bench.sh: building scripts/bench/franz into $FRANZ_DIR (franz-go from the Go module proxy once)" >&2
    mkdir -p "$FRANZ_DIR"
    (cd "$ROOT/scripts/bench/franz" && GOMODCACHE="$BUILD/bench/go/mod" GOCACHE="$BUILD/bench/go/cache" GOFLAGS=-mod=mod \
      go build -o "$FRANZ_DIR/franz_consumer" .) || { echo "bench.sh: go build of scripts/bench/franz failed (see above)" >&2; exit 1; }
  fi
fi
# The native librdkafka peer (C): those forms, and the full run's SASL_SSL section.
if [[ -z "$only" || "$only" == strong || "$only" == security || "$only" == latency || "$only" == cluster \
      || "$only" == partitions ]]; then
  [[ -f /usr/include/librdkafka/rdkafka.h ]] || deb_install librdkafka-dev "the native librdkafka peer"
  if [[ ! -x "$RDKC_DIR/rdkafka_consumer" || "$ROOT/scripts/bench/rdkafka_consumer.c" -nt "$RDKC_DIR/rdkafka_consumer" \
        || "$ROOT/scripts/bench/latency_hist.h" -nt "$RDKC_DIR/rdkafka_consumer" ]]; then
    echo "bench.sh: compiling scripts/bench/rdkafka_consumer.c into $RDKC_DIR" >&2
    mkdir -p "$RDKC_DIR"
    cc -O2 -Wall -o "$RDKC_DIR/rdkafka_consumer" "$ROOT/scripts/bench/rdkafka_consumer.c" -lrdkafka
  fi
fi
# BENCH_ONLY=latency: the fixed-rate producer and the handler that counts latencies (C, librdkafka-dev).
if [[ "$only" == latency ]]; then
  mkdir -p "$LAT_DIR"
  for prog in rate_producer latency_sink; do
    if [[ ! -x "$LAT_DIR/$prog" || "$ROOT/scripts/bench/$prog.c" -nt "$LAT_DIR/$prog" \
          || "$ROOT/scripts/bench/latency_hist.h" -nt "$LAT_DIR/$prog" ]]; then
      echo "bench.sh: compiling scripts/bench/$prog.c into $LAT_DIR" >&2
      cc -O2 -Wall -o "$LAT_DIR/$prog" "$ROOT/scripts/bench/$prog.c" -lrdkafka
    fi
  done
fi
if [[ "$only" == share ]] && [[ ! -f "$EXTRA_DIR/JavaShareConsumer.class" \
      || "$ROOT/scripts/bench/JavaShareConsumer.java" -nt "$EXTRA_DIR/JavaShareConsumer.class" ]]; then
  echo "bench.sh: compiling scripts/bench/JavaShareConsumer.java into $EXTRA_DIR" >&2
  mkdir -p "$EXTRA_DIR"
  javac -nowarn -d "$EXTRA_DIR" -cp "$CP" "$ROOT/scripts/bench/JavaShareConsumer.java"
fi
mkdir -p "$JAVA_DIR"
printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
  '      PatternLayout:' '        pattern: "[java] %d %p %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
  '      AppenderRef:' '        - ref: E' >"$JAVA_DIR/log4j2.yaml"

# What the harness is handed must exist for the form chosen, on a fresh clone too (BENCH_ONLY once
# failed there: build/bench/java, where log4j2.yaml goes, was made only when the Java peer was compiled).
# Every form: kswarm, the rskafka loop, the venv (librdkafka, tansu) and the Java log settings (the
# harness names kafka-clients' version in every report); the full run adds the peers, pipeline Streams.
needed=("$ROOT/target/release/kswarm" "$ROOT/target/release/examples/rskafka_fetch" "$BUILD/venv/bin/python"
        "$jar" "$JAVA_DIR/log4j2.yaml")
case "$only" in
  "") needed+=("$JAVA_DIR/JavaConsumer.class" "$NODE_DIR/node_modules/kafkajs/package.json" "$RDKC_DIR/rdkafka_consumer") ;;
  pipeline) needed+=("$STREAMS_DIR/StreamsMap.class" "$STREAMS_DIR/log4j2.yaml") ;;
  strong|cluster) needed+=("$JAVA_DIR/JavaConsumer.class" "$FRANZ_DIR/franz_consumer" "$RDKC_DIR/rdkafka_consumer") ;;
  partitions) needed+=("$FRANZ_DIR/franz_consumer" "$RDKC_DIR/rdkafka_consumer") ;;
  share) needed+=("$EXTRA_DIR/JavaShareConsumer.class") ;;
  latency) needed+=("$JAVA_DIR/JavaConsumer.class" "$FRANZ_DIR/franz_consumer" "$RDKC_DIR/rdkafka_consumer" "$LAT_DIR/rate_producer" "$LAT_DIR/latency_sink") ;;
esac
for f in "${needed[@]}"; do
  [[ -e "$f" ]] || { echo "bench.sh: $f is missing after preparing BENCH_ONLY=${only:-(unset)}; see the messages above" >&2; exit 1; }
done
# BENCH_PREPARE_ONLY=1: install and compile what the form uses, then stop (no broker, nothing measured).
if [[ -n "${BENCH_PREPARE_ONLY:-}" ]]; then
  echo "bench.sh: prepared for BENCH_ONLY=${only:-(unset)} under $BUILD: ${needed[*]}" >&2
  exit 0
fi

# The harness starts and stops its brokers; this stops whatever a killed run left, and drops the Kafka
# nodes' data (over half a GB after a full run; their server.log stays). BENCH_ONLY=cluster: the three
# nodes on PORT, PORT+1 and PORT+2.
cleanup() {
  if [[ "$only" == cluster ]]; then
    scripts/kafka.sh cluster-stop "$PORT,$((PORT + 1)),$((PORT + 2))" >/dev/null 2>&1 || true
    rm -rf "$BUILD/kafka-$PORT/data" "$BUILD/kafka-$((PORT + 1))/data" "$BUILD/kafka-$((PORT + 2))/data"
    return
  fi
  for k in "${kinds[@]}"; do
    KSWARM_BROKER="$k" scripts/broker.sh stop "$PORT" >/dev/null 2>&1 || true
    if [[ "$k" == kafka ]]; then
      KSWARM_BROKER=kafka scripts/broker.sh stop "$((PORT + 1))" >/dev/null 2>&1 || true
      rm -rf "$BUILD/kafka-$PORT/data" "$BUILD/kafka-$((PORT + 1))/data"
    fi
  done
}
trap cleanup EXIT
# A TERM or INT (Ctrl-C, or `timeout` around this script) goes on to the harness, which stops its
# contenders and its broker; bash alone would wait for it to finish first.
child=""
on_signal() {
  if [[ -n "$child" ]]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 143
}
trap on_signal TERM INT

command_line=""
for v in BENCH_ONLY BENCH_LATENCY_RATES BENCH_LATENCY_SECONDS BENCH_LATENCY_KILL_RATE BENCH_LATENCY_CONTENDERS BENCH_PARTITIONS BENCH_PART_CONTENDERS BENCH_KSWARM_X BENCH_COMPRESSIONS BENCH_STRONG_CONTENDERS BENCH_SHARE_CONTENDERS BENCH_PIPELINE_INTERVALS BENCH_PIPELINE_CONTENDERS BENCH_PIPELINE_RATE \
         BENCH_PIPELINE_SECONDS BENCH_PIPELINE_SETTLE BENCH_RECORDS BENCH_REPEATS BENCH_TRIALS BENCH_RATE BENCH_STARTUP_RUNS BENCH_KAFKA_PROPS BENCH_JAVA_OPTS; do
  if [[ -n "${!v:-}" ]]; then
    if [[ "${!v}" == *" "* ]]; then command_line+="$v='${!v}' "; else command_line+="$v=${!v} "; fi
  fi
done
command_line+="scripts/bench.sh ${ARGS[*]:-}"
max="${BENCH_MAX_SECONDS:-2400}"
for k in "${kinds[@]}"; do
  BENCH_BROKER="$k" \
  BENCH_PORT="$PORT" \
  BENCH_MAX_SECONDS="$max" \
  BENCH_COMMAND="${command_line% }" \
  BENCH_KSWARM="$ROOT/target/release/kswarm" \
  BENCH_FETCH="$ROOT/target/release/examples/rskafka_fetch" \
  BENCH_NODE_DIR="$NODE_DIR" \
  BENCH_JAVA_CP="$JAVA_DIR:$CP" \
  BENCH_JAVA_LOG="$JAVA_DIR/log4j2.yaml" \
  BENCH_STREAMS_CP="$STREAMS_DIR:$STREAMS_DIR/libs/*" \
  BENCH_STREAMS_LOG="$STREAMS_DIR/log4j2.yaml" \
  BENCH_FRANZ="$FRANZ_DIR/franz_consumer" \
  BENCH_RDKAFKA_C="$RDKC_DIR/rdkafka_consumer" \
  BENCH_RATE_PRODUCER="$LAT_DIR/rate_producer" \
  BENCH_LATENCY_SINK="$LAT_DIR/latency_sink" \
  BENCH_EXTRA_CP="$EXTRA_DIR:$CP" \
  BENCH_OUT="$OUT_DIR" \
    timeout "$((max + 120))" "$BUILD/venv/bin/python" scripts/bench/harness.py &
  child=$!
  wait "$child"
  child=""
done
