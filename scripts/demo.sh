#!/usr/bin/env bash
# The main job end to end on a local broker this script starts itself:
# build kswarm, start the broker (Apache Kafka; KSWARM_BROKER=tansu for tansu),
# size the topic, produce sample syslog lines,
# run one worker per core with a handler until every line is acknowledged,
# show who consumed what, then stop everything it started. The last line says
# PASS (every line handled) or FAIL (what is missing; exit status 1).
# It leaves nothing behind: its files and kswarm's state file live in one
# temp dir it removes.
#   KSWARM_DEMO_PORT (19092), KSWARM_DEMO_LINES (20000), KSWARM_DEMO_WAIT (seconds
#   to wait for every line, 120); KSWARM_DEMO_BROKERS=HOST:PORT uses a running
#   broker instead of starting one, KSWARM_BIN a built kswarm instead of building.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KSWARM_BUILD_DIR="${KSWARM_BUILD_DIR:-$ROOT/build}"
PORT="${KSWARM_DEMO_PORT:-19092}"
LINES="${KSWARM_DEMO_LINES:-20000}"
WAIT="${KSWARM_DEMO_WAIT:-120}"
OUT="$(mktemp -d)"
VERDICT="FAIL: the demo stopped before its check"
finish() {
  local rc=$?
  if [[ -n "${RUN_PID:-}" ]]; then kill "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; fi
  if [[ -n "${OWN_BROKER:-}" ]]; then scripts/broker.sh stop "$PORT" || true; fi
  rm -rf "$OUT"
  echo "$VERDICT"
  exit "$rc"
}
trap finish EXIT
trap 'VERDICT="FAIL: line $LINENO failed: $BASH_COMMAND"' ERR

if [[ -n "${KSWARM_BIN:-}" ]]; then
  KSWARM="$KSWARM_BIN"
else
  cargo build --release --quiet
  KSWARM="$ROOT/target/release/kswarm"
fi
if [[ -n "${KSWARM_DEMO_BROKERS:-}" ]]; then
  export KSWARM_BROKERS="$KSWARM_DEMO_BROKERS"
else
  OWN_BROKER=1
  scripts/broker.sh start "$PORT"
  export KSWARM_BROKERS="127.0.0.1:$PORT"
fi
export KSWARM_TOPIC="demo-syslog-$$" KSWARM_GROUP="demo-siem-$$"
# kswarm's state file (one per group) goes into the demo's own temp dir.
export KSWARM_STATE_DIR="$OUT/state"

echo "== plan: size the topic to the usable cores"
"$KSWARM" plan --apply
echo "== produce $LINES syslog lines"
python3 - "$LINES" <<'PY' | tee "$OUT/sent" | "$KSWARM" produce
import sys, random
hosts = ["web1", "web2", "db1", "auth"]; progs = ["sshd", "nginx", "kernel", "sudo"]
for i in range(int(sys.argv[1])):
    h = random.choice(hosts); p = random.choice(progs)
    print(f"<34>Nov 25 12:00:{i % 60:02d} {h} {p}[{1000 + i % 500}]: event {i} user=u{i % 97} status=ok")
PY
echo "== run: one worker per core; the handler appends each record to a file and acknowledges it"
"$KSWARM" run --format value --exec "while IFS= read -r line; do printf '%s\n' \"\$line\" >> '$OUT'/seen.\$KSWARM_WORKER; echo ok; done" &
RUN_PID=$!
for _ in $(seq 1 $((WAIT * 5))); do
  n=$( (cat "$OUT"/seen.* 2>/dev/null || true) | wc -l)
  [[ "$n" -ge "$LINES" ]] && break
  sleep 0.2
done
kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" || true; RUN_PID=
shopt -s nullglob
for f in "$OUT"/seen.*; do echo "worker ${f##*.}: $(wc -l <"$f") records"; done
# /dev/null: sort has a file to read even when no worker wrote one.
sort -u "$OUT"/seen.* /dev/null >"$OUT/handled"
sort -u "$OUT/sent" >"$OUT/sent.sorted"
comm -23 "$OUT/sent.sorted" "$OUT/handled" >"$OUT/missing"
handled=$(wc -l <"$OUT/handled"); missing=$(wc -l <"$OUT/missing")
echo "== $handled of $LINES distinct records handled"
echo "== status after a graceful stop (committed offsets, lag)"
"$KSWARM" status || true
if [[ "$missing" -eq 0 && "$handled" -eq "$LINES" ]]; then
  VERDICT="PASS: all $LINES records handled"
else
  VERDICT="FAIL: $missing of $LINES records not handled within ${WAIT}s, e.g. '$(head -1 "$OUT/missing")'"
  exit 1
fi
