#!/usr/bin/env bash
# The test command: installs what the tests need (the broker, the Python peers),
# starts a fresh local broker on a free loopback port, runs every test against
# it, and stops the broker again. Extra arguments go to `cargo test`.
#   KSWARM_TEST_BROKER=kafka (default): Apache Kafka 4.x, the reference broker
#   KSWARM_TEST_BROKER=tansu: the light emulator (see docs/testing.md)
# With Kafka, KSWARM_TEST_SECURITY names the broker's TLS/SASL listeners (build/kafka-PORT/security.json).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KSWARM_BUILD_DIR="${KSWARM_BUILD_DIR:-$ROOT/build}"
export KSWARM_BROKER="${KSWARM_TEST_BROKER:-kafka}"
export KSWARM_TEST_BROKER="$KSWARM_BROKER"
# The init-script test verifies the systemd unit with systemd-analyze.
if ! command -v systemd-analyze >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test.sh: installing systemd (for systemd-analyze)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >&2
  else
    echo "test.sh: systemd-analyze is missing; install the systemd package" >&2
  fi
fi
# tests/hosts.rs makes network namespaces (ip, from iproute2) with host names of their own (unshare,
# from util-linux); it needs root.
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test.sh: installing iproute2 and util-linux (for tests/hosts.rs)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 util-linux >&2
  else
    echo "test.sh: ip or unshare is missing; install iproute2 and util-linux" >&2
  fi
fi
# tests/examples.rs runs examples/handlers/shell/handler.sh, which reads JSON with jq.
if ! command -v jq >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test.sh: installing jq (for the shell example handler)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >&2
  else
    echo "test.sh: jq is missing; install the jq package" >&2
  fi
fi
# tests/package.rs checks the Debian package with lintian, and scripts/package.sh builds it with
# dpkg-shlibdeps (dpkg-dev) and objcopy (binutils).
if ! command -v lintian >/dev/null || ! command -v dpkg-shlibdeps >/dev/null || ! command -v objcopy >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test.sh: installing lintian, dpkg-dev and binutils (for tests/package.rs)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian dpkg-dev binutils >&2
  else
    echo "test.sh: lintian, dpkg-shlibdeps or objcopy is missing; install lintian, dpkg-dev and binutils" >&2
  fi
fi
# The package tests/package.rs checks, built from this tree (cargo-deb goes into build/tools), with the
# binary the tests run: building it for the tests first (kafka-protocol's broker half, a dev-dependency,
# changes its features) saves a second compile of kswarm.
cargo test --release --locked --no-run --test package >&2
KSWARM_TEST_DEB="$(KSWARM_PACKAGE_PREBUILT=1 scripts/package.sh)"
export KSWARM_TEST_DEB
scripts/broker.sh install
# The other Apache Kafka versions of the share-group matrix (docs/share-groups.md): tests/share.rs starts a
# node of each for one short run (KSWARM_KAFKA_VERSION=.. scripts/kafka.sh start); their jars go to
# build/kafka-VERSION/libs. Keep this list and the tests' versions the same.
if [[ "$KSWARM_BROKER" == kafka ]]; then
  for v in 4.1.2 4.2.2; do KSWARM_KAFKA_VERSION="$v" scripts/kafka.sh install; done
fi
# The interop peers: kafkajs (npm, into build/node) and a Java KafkaConsumer (javac, into build/java-peer).
scripts/peers.sh install
# Test-speed broker settings: no initial rebalance delay (Kafka's default is 3 s); everything else is
# Kafka's default, the 6 s minimum session timeout included.
export KSWARM_KAFKA_PROPS="${KSWARM_KAFKA_PROPS:-group.initial.rebalance.delay.ms=0}"
PORT="${KSWARM_TEST_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT"' EXIT
export KSWARM_TEST_BROKERS="127.0.0.1:$PORT"
# Apache Kafka also opens TLS and SASL listeners (scripts/kafka.sh); the tests of those read their addresses,
# certificates and credentials from this JSON file. tansu has none: the variable is unset.
if [[ "$KSWARM_BROKER" == kafka ]]; then
  export KSWARM_TEST_SECURITY="$KSWARM_BUILD_DIR/kafka-$PORT/security.json"
  [[ -f "$KSWARM_TEST_SECURITY" ]] || { echo "test.sh: the Kafka broker wrote no $KSWARM_TEST_SECURITY" >&2; exit 1; }
else
  unset KSWARM_TEST_SECURITY
fi
# Broker tests run one file at a time and a few threads each: the machine has 2 cores,
# and the group tests measure timing-sensitive behaviour (session timeouts).
cargo test --release "$@" -- --test-threads="${KSWARM_TEST_THREADS:-2}"
