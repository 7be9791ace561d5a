#!/usr/bin/env bash
# Share groups (KIP-932) against a slow handler: records/s of `kswarm run --group-protocol share` with
# -w 8 and -w 2 on a 2-partition topic, and of the classic protocol with -w 2 for reference.
#   scripts/bench/share.sh            starts Apache Kafka 4.4 on port KSWARM_BENCH_PORT (29610) and stops it after
#   KSWARM_BENCH_BROKERS=HOST:PORT    uses a running broker instead
#   KSWARM_BENCH_RECORDS (20000), KSWARM_BENCH_SLEEP_MS (2): records per run and the handler's time per record
#   KSWARM_BENCH_BATCH (200): records per produced batch (kswarm produce --batch-size)
#   KSWARM_BENCH_SPECS ('share 8,share 2,classic 2'): the runs, PROTOCOL WORKERS each
# Each run's per-worker figures (file, records, first and last time) are kept in /tmp/per-worker-PROTOCOL-W.
# The handler is one long-running python3 per worker that sleeps SLEEP_MS per record, appends the record's
# offset to a file and prints `ok`. Throughput = records / (time of the last record - time of the first),
# from the handlers' own clock (so the join time is not counted). Prints a table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KSWARM="${KSWARM_BIN:-$ROOT/target/release/kswarm}"
N="${KSWARM_BENCH_RECORDS:-20000}"
SLEEP_MS="${KSWARM_BENCH_SLEEP_MS:-2}"
PORT="${KSWARM_BENCH_PORT:-29610}"
# Records per produced batch: a share group hands out whole batches (ShareFetch v1 acquires batch by batch), so
# the batch size is how finely the work is shared; 200 is about what a Java producer with its default
# batch.size (16 KiB) makes of records this small.
BATCH="${KSWARM_BENCH_BATCH:-200}"
[[ -x "$KSWARM" ]] || { echo "share.sh: build kswarm first (cargo build --release) or set KSWARM_BIN" >&2; exit 1; }
OWN=""
if [[ -z "${KSWARM_BENCH_BROKERS:-}" ]]; then
  KSWARM_KAFKA_PROPS='group.initial.rebalance.delay.ms=0' "$ROOT/scripts/kafka.sh" start "$PORT" >&2
  OWN="$PORT"
  B="127.0.0.1:$PORT"
else
  B="$KSWARM_BENCH_BROKERS"
fi
TMP="$(mktemp -d)"
cleanup() { rm -rf "$TMP"; [[ -n "$OWN" ]] && "$ROOT/scripts/kafka.sh" stop "$OWN" >&2 || true; }
trap cleanup EXIT

HANDLER="python3 -u -c 'import sys, time
f = open(sys.argv[1] + \"/t\" + sys.argv[2], \"a\")
for l in sys.stdin:
    time.sleep($SLEEP_MS / 1000.0)
    f.write(\"%.6f\\n\" % time.time()); f.flush()
    sys.stdout.write(\"ok\\n\")
' $TMP/out \$KSWARM_WORKER"

# run PROTOCOL WORKERS -> prints "records seconds rate"
run() {
  local proto=$1 w=$2 topic group out pid deadline count
  topic="bench-share-$proto-$w-$$-$RANDOM"
  group="$topic-g"
  out="$TMP/out"
  rm -rf "$out"; mkdir -p "$out"
  "$KSWARM" plan -b "$B" -t "$topic" -w 2 -p 2 --apply >/dev/null 2>&1
  seq 1 "$N" | "$KSWARM" produce -b "$B" -t "$topic" --batch-size "$BATCH" 2>/dev/null
  KSWARM_STATE_DIR="$TMP" "$KSWARM" run -b "$B" -t "$topic" -g "$group" -w "$w" -p keep \
    --group-protocol "$proto" --exec "$HANDLER" >"$TMP/run-$proto-$w.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + 300))
  while :; do
    count=$(cat "$out"/t* 2>/dev/null | wc -l)
    [[ "$count" -ge "$N" ]] && break
    [[ $SECONDS -lt $deadline ]] || { echo "share.sh: $proto -w $w: only $count of $N records in 300 s" >&2; break; }
    sleep 0.2
  done
  kill -TERM "$pid"; wait "$pid" || true
  for f in "$out"/t*; do echo "$(basename "$f") $(wc -l <"$f") $(head -1 "$f") $(tail -1 "$f")" >>"$TMP/per-worker-$proto-$w"; done; cp "$TMP/per-worker-$proto-$w" /tmp/ 2>/dev/null || true
  cat "$out"/t* | sort -n | awk -v n="$N" 'NR==1{first=$1} {last=$1; c++} END {d=last-first; printf "%d %.2f %.0f\n", c, d, (d>0 ? c/d : 0)}'
}

printf '%-10s %-8s %-9s %-9s %-10s\n' protocol workers records seconds records/s
IFS=, read -r -a SPECS <<<"${KSWARM_BENCH_SPECS:-share 8,share 2,classic 2}"
for spec in "${SPECS[@]}"; do
  read -r proto w <<<"$spec"
  read -r c s r <<<"$(run "$proto" "$w")"
  printf '%-10s %-8s %-9s %-9s %-10s\n' "$proto" "$w" "$c" "$s" "$r"
done
echo "($N records in batches of $BATCH, 2 partitions, handler ${SLEEP_MS} ms per record, $(nproc) cores, $(date -u +%Y-%m-%d), broker $B)"
