#!/usr/bin/env bash
# kswarm beside its peers (librdkafka, Node cluster + kafkajs, a bare rskafka
# fetch loop) on one local tansu broker; prints one markdown table.
#   scripts/bench.sh [PORT]          (default port 19105)
# Env: BENCH_RECORDS (default 1000000; e.g. 100000 for a quick run),
#      BENCH_TRIALS (failover groups, default 5), BENCH_RATE (default 200/s),
#      BENCH_REPEATS (throughput runs per contender, medians; default 3),
#      BENCH_KSWARM_MODE=run|workers (default: run if the build has the supervisor),
#      KSWARM_BUILD_DIR (venv with tansu + confluent-kafka; default ./build).
# See scripts/bench/harness.py for the method.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
PORT="${1:-${BENCH_PORT:-19105}}"
NODE_DIR="$ROOT/build/node"
cd "$ROOT"

echo "bench.sh: building kswarm and the rskafka_fetch example (release)" >&2
cargo build --release --quiet
cargo build --release --quiet --example rskafka_fetch

if [[ ! -d "$NODE_DIR/node_modules/kafkajs" ]]; then
  echo "bench.sh: installing kafkajs@2 into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" kafkajs@2 >&2
fi

mode="${BENCH_KSWARM_MODE:-}"
if [[ -z "$mode" ]]; then
  if [[ -d src/supervisor ]]; then mode=run; else mode=workers; fi
fi

scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT" || true' EXIT

BENCH_BROKERS="127.0.0.1:$PORT" \
BENCH_BROKER_PID="$(cat "$BUILD/broker-$PORT.pid")" \
BENCH_KSWARM="$ROOT/target/release/kswarm" \
BENCH_FETCH="$ROOT/target/release/examples/rskafka_fetch" \
BENCH_NODE_DIR="$NODE_DIR" \
BENCH_KSWARM_MODE="$mode" \
  timeout 900 "$BUILD/venv/bin/python" scripts/bench/harness.py
