#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft) on loopback, from the jars of scripts/kafka/pom.xml.
#   scripts/kafka.sh install                   copy the broker's jars into build/kafka/libs (needs Java 17+ and Maven once;
#                                              offline afterwards)
#   scripts/kafka.sh start PORT                a fresh combined broker+controller node on 127.0.0.1:PORT
#   scripts/kafka.sh restart PORT              start the node of PORT again on its existing log dirs (after a kill)
#   scripts/kafka.sh stop PORT                 stop the node this script started on PORT
#   scripts/kafka.sh status PORT               exit 0 if it runs and answers
#   scripts/kafka.sh cluster-start P1,P2,P3    a fresh cluster of combined nodes, one per port (node ids 1..N)
#   scripts/kafka.sh cluster-stop P1,P2,P3
#   scripts/kafka.sh tool CLASS ARGS..         run a Kafka tool class (org.apache.kafka.tools.*) with the jars
#   scripts/kafka.sh classpath                 print the classpath (for javac/java peers)
# Broker settings: every node gets replication factors of 1 for its internal topics when it runs alone, and
# the lines of KSWARM_KAFKA_PROPS (key=value, separated by spaces or newlines) on top; e.g.
# KSWARM_KAFKA_PROPS='group.initial.rebalance.delay.ms=0' (the test suite sets it). Logs: build/kafka-PORT/server.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
KAFKA_VERSION=4.4.0
LIBS="$BUILD/kafka/libs"
STAMP="$LIBS/.installed-$KAFKA_VERSION"

die() { echo "kafka.sh: $*" >&2; exit 1; }

java_ok() {
  command -v java >/dev/null || return 1
  local v
  v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$v" && "$v" -ge 17 ]]
}

install() {
  [[ -f "$STAMP" ]] && return 0
  java_ok || die "Apache Kafka $KAFKA_VERSION needs Java 17 or newer ('java' on PATH); install a JDK 17+, or use the tansu broker instead: KSWARM_BROKER=tansu scripts/test.sh"
  command -v mvn >/dev/null || die "installing Apache Kafka needs Maven ('mvn' on PATH) once, to fetch the jars from Maven Central; install Maven, or use the tansu broker instead: KSWARM_BROKER=tansu scripts/test.sh"
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS" >&2
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" >&2 \
    || die "mvn could not fetch the Kafka jars (see above); with no Maven Central, use KSWARM_BROKER=tansu"
  touch "$STAMP"
}

classpath() { echo "$LIBS/*"; }

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

node_dir() { echo "$BUILD/kafka-$1"; }

running() {
  local pf
  pf="$(node_dir "$1")/pid"
  [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

# write_config PORT NODE_ID CONTROLLER_PORT VOTERS NODES
write_config() {
  local port=$1 id=$2 cport=$3 voters=$4 nodes=$5 dir
  dir="$(node_dir "$port")"
  mkdir -p "$dir"
  local rf=1
  [[ "$nodes" -ge 3 ]] && rf=3
  {
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "controller.quorum.voters=$voters"
    echo "log.dirs=$dir/data"
    echo "offsets.topic.replication.factor=$rf"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$(( rf > 1 ? 2 : 1 ))"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$(( rf > 1 ? 2 : 1 ))"
    echo "num.partitions=1"
    for kv in ${KSWARM_KAFKA_PROPS:-}; do echo "$kv"; done
  } >"$dir/server.properties"
  cat >"$dir/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    RollingFile:
      name: F
      fileName: $dir/server.log
      filePattern: $dir/server.log.%i
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      Policies:
        SizeBasedTriggeringPolicy:
          size: 50MB
      DefaultRolloverStrategy:
        max: 2
  Loggers:
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
    Root:
      level: INFO
      AppenderRef:
        - ref: F
EOF
}

format() {
  local port=$1 cluster=$2 dir
  dir="$(node_dir "$port")"
  rm -rf "$dir/data"
  java -cp "$(classpath)" -Dlog4j2.configurationFile="$dir/log4j2.yaml" \
    kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "formatting the storage of the node on port $port failed"; }
}

launch() {
  local port=$1 heap=$2 dir
  dir="$(node_dir "$port")"
  # setsid: the node is in its own session, so a Ctrl-C in the caller's terminal reaches only the caller,
  # which stops the node itself.
  KAFKA_HEAP="$heap" setsid java -Xms128m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.yaml" \
    -cp "$(classpath)" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

wait_up() {
  local port=$1 dir
  dir="$(node_dir "$port")"
  for _ in $(seq 1 600); do
    if answers "$port" && grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
      echo "kafka.sh: Apache Kafka $KAFKA_VERSION up on 127.0.0.1:$port (pid $(cat "$dir/pid"), log $dir/server.log)" >&2
      return 0
    fi
    if ! running "$port"; then
      tail -30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      die "the Kafka node on port $port exited at start; see $dir/server.log"
    fi
    sleep 0.1
  done
  die "the Kafka node on port $port did not answer within 60 s; see $dir/server.log"
}

stop_node() {
  local port=$1 dir pid
  dir="$(node_dir "$port")"
  if running "$port"; then
    pid="$(cat "$dir/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "kafka.sh: stopped the Kafka node on port $port (pid $pid)" >&2
  fi
  rm -f "$dir/pid"
}

check_port_free() {
  if running "$1"; then die "a node this script started already runs on port $1 (pid $(cat "$(node_dir "$1")/pid")); stop it first"; fi
  if answers "$1"; then die "port $1 is taken by another program; pick another PORT"; fi
}

cluster_id() { java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1; }

cmd="${1:-}"
case "$cmd" in
  install) install ;;
  classpath) install; classpath ;;
  tool)
    install
    shift
    cls="$1"; shift
    printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
      '      PatternLayout:' '        pattern: "%p %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
      '      AppenderRef:' '        - ref: E' >"$BUILD/kafka/tools-log4j2.yaml"
    exec java -Xmx256m -Dlog4j2.configurationFile="$BUILD/kafka/tools-log4j2.yaml" -cp "$(classpath)" "$cls" "$@" ;;
  start)
    port="${2:?usage: scripts/kafka.sh start PORT}"
    install
    check_port_free "$port"
    cport="$(free_port)"
    write_config "$port" 1 "$cport" "1@127.0.0.1:$cport" 1
    format "$port" "$(cluster_id)"
    launch "$port" "${KSWARM_KAFKA_HEAP:-768m}"
    wait_up "$port" ;;
  restart)
    port="${2:?usage: scripts/kafka.sh restart PORT}"
    install
    [[ -f "$(node_dir "$port")/server.properties" ]] || die "no node was started on port $port before; use start"
    check_port_free "$port"
    launch "$port" "${KSWARM_KAFKA_HEAP:-768m}"
    wait_up "$port" ;;
  stop) stop_node "${2:?usage: scripts/kafka.sh stop PORT}" ;;
  status)
    port="${2:?usage: scripts/kafka.sh status PORT}"
    if running "$port" && answers "$port"; then echo "kafka.sh: running on 127.0.0.1:$port (pid $(cat "$(node_dir "$port")/pid"))"; exit 0; fi
    echo "kafka.sh: not running on port $port"; exit 1 ;;
  cluster-start)
    IFS=, read -r -a ports <<<"${2:?usage: scripts/kafka.sh cluster-start P1,P2,P3}"
    install
    voters=""; cports=()
    for i in "${!ports[@]}"; do
      check_port_free "${ports[$i]}"
      cports[$i]="$(free_port)"
      voters+="${voters:+,}$((i + 1))@127.0.0.1:${cports[$i]}"
    done
    id="$(cluster_id)"
    for i in "${!ports[@]}"; do
      write_config "${ports[$i]}" $((i + 1)) "${cports[$i]}" "$voters" "${#ports[@]}"
      format "${ports[$i]}" "$id"
    done
    for p in "${ports[@]}"; do launch "$p" "${KSWARM_KAFKA_HEAP:-384m}"; done
    for p in "${ports[@]}"; do wait_up "$p"; done ;;
  cluster-stop)
    IFS=, read -r -a ports <<<"${2:?usage: scripts/kafka.sh cluster-stop P1,P2,P3}"
    for p in "${ports[@]}"; do stop_node "$p"; done ;;
  *) echo "usage: scripts/kafka.sh install|start|restart|stop|status PORT|cluster-start|cluster-stop P1,P2,..|tool CLASS ARGS|classpath" >&2; exit 2 ;;
esac
