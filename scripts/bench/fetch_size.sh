#!/usr/bin/env bash
# The broker's CPU per record and the whole read's time for kswarm at three fetch sizes: its defaults
# (fetch.max.bytes 512 KiB, 256 KiB a partition), -X fetch.max.bytes=4194304, and librdkafka's defaults
# (-X fetch.max.bytes=52428800,max.partition.fetch.bytes=1048576), on a fresh plain topic of 1,000,000 records of
# 200 bytes (2 partitions, the bench's records), 3 interleaved rounds; `kswarm run -w 2 --format value` each time.
#   scripts/bench/fetch_size.sh [PORT]   starts Apache Kafka on PORT (default 19108) and stops it after
# Prints per run: launch to the millionth record (s) and the broker process's CPU over the run (clock ticks,
# 100 a second: ticks per 1M records = µs per record x 100). Hold the heavy lock around it on a shared machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
export KSWARM_BUILD_DIR="$BUILD" KSWARM_KAFKA_PROPS=group.initial.rebalance.delay.ms=0
K="$ROOT/target/release/kswarm"
P="${1:-19108}"
B="127.0.0.1:$P"
[[ -x "$K" ]] || { echo "fetch_size.sh: build kswarm first (cargo build --release)" >&2; exit 1; }
TMP="$(mktemp -d)"
"$ROOT/scripts/kafka.sh" start "$P" >&2
trap '"$ROOT/scripts/kafka.sh" stop "$P" >&2 || true; rm -rf "$TMP"' EXIT
BPID=$(cat "$BUILD/kafka-$P/pid")
bcpu() { awk '{print $14 + $15}' "/proc/$BPID/stat"; }
T="fs-$RANDOM"
"$K" plan -b "$B" -t "$T" -p 2 --apply >/dev/null
python3 -c "
import sys
pad = 'x' * 188
for i in range(1000000):
    sys.stdout.write(f'{i:010d} {pad}\n')" | "$K" produce -b "$B" -t "$T" 2>/dev/null
for round in 1 2 3; do
  for x in "" "-X fetch.max.bytes=4194304" "-X fetch.max.bytes=52428800,max.partition.fetch.bytes=1048576"; do
    rm -f "$TMP/out"; mkfifo "$TMP/out"
    c0=$(bcpu)
    # shellcheck disable=SC2086 # $x is one -X flag and its value, or nothing
    "$K" run -w 2 -p keep -b "$B" -t "$T" -g "g-$RANDOM" --from earliest --format value $x >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    s=$(date +%s.%N); head -n 1000000 "$TMP/out" >/dev/null; e=$(date +%s.%N)
    c1=$(bcpu)
    kill -TERM "$pid"; wait "$pid" || true
    echo "round $round ${x:-defaults}: launch to 1M records $(echo "$e - $s" | bc) s, broker CPU $((c1 - c0)) ticks"
  done
done
