#!/usr/bin/env bash
# Where kswarm's CPU goes on compressed topics: `perf record -g` over `kswarm run -w 2 --format value` reading a
# fresh topic of 1,000,000 records of 200 bytes (2 partitions, the bench's records) per compression, after one
# untimed read; prints each one's launch-to-last time, the topic's size on disk and perf's top symbols.
#   scripts/bench/profile.sh [PORT]      starts Apache Kafka on PORT (default 19107) and stops it after
# Env: PROFILE_COMPRESSIONS (default "lz4 zstd"; none too), KSWARM_BUILD_DIR (the Kafka install, build/ by default).
# perf comes from Debian's linux-perf, installed with apt-get when missing (as root). Output: build/bench/perf-C.data
# and build/bench/perf-C.txt. Hold the heavy lock around it on a shared machine (it starts a broker).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
export KSWARM_BUILD_DIR="$BUILD" KSWARM_KAFKA_PROPS=group.initial.rebalance.delay.ms=0
K="$ROOT/target/release/kswarm"
P="${1:-19107}"
B="127.0.0.1:$P"
OUT="$BUILD/bench"
[[ -x "$K" ]] || { echo "profile.sh: build kswarm first (cargo build --release)" >&2; exit 1; }
if ! command -v perf >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "profile.sh: installing linux-perf (perf)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >&2
  else
    echo "profile.sh: needs perf (Debian: apt-get install linux-perf)" >&2; exit 1
  fi
fi
mkdir -p "$OUT"
TMP="$(mktemp -d)"
"$ROOT/scripts/kafka.sh" start "$P" >&2
trap '"$ROOT/scripts/kafka.sh" stop "$P" >&2 || true; rm -rf "$TMP"' EXIT
# read GROUP [perf DATA]: launch to the millionth line of kswarm's stdout, s; then SIGTERM to kswarm.
read_all() {
  local fifo="$TMP/out" pid s e
  rm -f "$fifo"; mkfifo "$fifo"
  if [[ $# -gt 2 ]]; then
    perf record -F 1999 -g -o "$3" -- "$K" run -w 2 -p keep -b "$B" -t "$1" -g "$2" --from earliest --format value \
      >"$fifo" 2>"$TMP/err" &
  else
    "$K" run -w 2 -p keep -b "$B" -t "$1" -g "$2" --from earliest --format value >"$fifo" 2>"$TMP/err" &
  fi
  pid=$!
  s=$(date +%s.%N); head -n 1000000 "$fifo" >/dev/null; e=$(date +%s.%N)
  if [[ $# -gt 2 ]]; then kill -TERM $(pgrep -P "$pid") 2>/dev/null || true; else kill -TERM "$pid"; fi
  wait "$pid" || true
  echo "$e - $s" | bc
}
for c in ${PROFILE_COMPRESSIONS:-lz4 zstd}; do
  T="prof-$c-$RANDOM"
  "$K" plan -b "$B" -t "$T" -p 2 --apply >/dev/null
  python3 -c "
import sys
pad = 'x' * 188
for i in range(1000000):
    sys.stdout.write(f'{i:010d} {pad}\n')" | "$K" produce -b "$B" -t "$T" --compression "$c" 2>/dev/null
  echo "$c: topic on disk $(du -sck "$BUILD/kafka-$P/data/$T"-* | tail -1 | cut -f1) KiB" >&2
  echo "$c: untimed read $(read_all "$T" "g-warm-$RANDOM") s" >&2
  echo "$c: read under perf $(read_all "$T" "g-perf-$RANDOM" "$OUT/perf-$c.data") s" >&2
  { perf report -i "$OUT/perf-$c.data" --no-children --sort dso --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -8
    perf report -i "$OUT/perf-$c.data" --no-children --sort sym --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -40
  } >"$OUT/perf-$c.txt" || true  # head closes the pipe early (pipefail)
  echo "$c: $OUT/perf-$c.txt" >&2
done
