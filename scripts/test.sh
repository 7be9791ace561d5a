#!/usr/bin/env bash
# The test command: installs what the tests need (tansu broker, Python peers),
# starts a local broker on a free loopback port, runs every test against it,
# and stops the broker again. Extra arguments go to `cargo test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KSWARM_BUILD_DIR="${KSWARM_BUILD_DIR:-$ROOT/build}"
PORT="${KSWARM_TEST_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT"' EXIT
export KSWARM_TEST_BROKERS="127.0.0.1:$PORT"
# Broker tests run one file at a time and a few threads each: the machine has 2 cores,
# and the group tests measure timing-sensitive behaviour (session timeouts).
cargo test --release "$@" -- --test-threads="${KSWARM_TEST_THREADS:-2}"
