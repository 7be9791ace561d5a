#!/usr/bin/env bash
# The main job end to end on a local broker this script starts itself:
# build kswarm, start the broker (Apache Kafka; KSWARM_BROKER=tansu for tansu),
# size the topic, produce sample syslog lines,
# run one worker per core with a handler until every line is acknowledged,
# show who consumed what, then stop everything it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KSWARM_BUILD_DIR="${KSWARM_BUILD_DIR:-$ROOT/build}"
PORT="${KSWARM_DEMO_PORT:-19092}"
LINES="${KSWARM_DEMO_LINES:-20000}"
cargo build --release --quiet
KSWARM="$ROOT/target/release/kswarm"
scripts/broker.sh start "$PORT"
OUT="$(mktemp -d)"
cleanup() { [[ -n "${RUN_PID:-}" ]] && kill "$RUN_PID" 2>/dev/null; scripts/broker.sh stop "$PORT"; rm -rf "$OUT"; }
trap cleanup EXIT
export KSWARM_BROKERS="127.0.0.1:$PORT" KSWARM_TOPIC="demo-syslog-$$" KSWARM_GROUP="demo-siem-$$"

echo "== plan: size the topic to the usable cores"
"$KSWARM" plan --apply
echo "== produce $LINES syslog lines"
python3 - "$LINES" <<'PY' | "$KSWARM" produce
import sys, random
hosts = ["web1", "web2", "db1", "auth"]; progs = ["sshd", "nginx", "kernel", "sudo"]
for i in range(int(sys.argv[1])):
    h = random.choice(hosts); p = random.choice(progs)
    print(f"<34>Nov 25 12:00:{i % 60:02d} {h} {p}[{1000 + i % 500}]: event {i} user=u{i % 97} status=ok")
PY
echo "== run: one worker per core; the handler appends each record to a file and acknowledges it"
"$KSWARM" run --format value --exec "while IFS= read -r line; do printf '%s\n' \"\$line\" >> '$OUT'/seen.\$KSWARM_WORKER; echo ok; done" &
RUN_PID=$!
for _ in $(seq 1 600); do
  n=$( (cat "$OUT"/seen.* 2>/dev/null || true) | wc -l)
  [[ "$n" -ge "$LINES" ]] && break
  sleep 0.2
done
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=
for f in "$OUT"/seen.*; do echo "worker ${f##*.}: $(wc -l <"$f") records"; done
total=$(cat "$OUT"/seen.* | sort -u | wc -l)
echo "== $total of $LINES distinct records handled"
echo "== status after a graceful stop (committed offsets, lag)"
"$KSWARM" status || true
[[ "$total" -eq "$LINES" ]]
