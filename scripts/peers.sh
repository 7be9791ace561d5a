#!/usr/bin/env bash
# Third-party consumer peers for the interop tests (tests/interop.rs).
#   scripts/peers.sh install   kafkajs (npm, pinned) into build/node, and tests/peers/JavaMember.java compiled
#                              into build/java-peer against kafka-clients from build/kafka/libs (scripts/kafka.sh),
#                              tests/peers/JavaShareMember.java (a KafkaShareConsumer, tests/share.rs) into
#                              build/java-share-peer, tests/peers/TxnReader.java (a read_committed /
#                              read_uncommitted reader of a whole topic, issue 29) into build/java-txn-peer;
#                              idempotent, offline after the first run
#   scripts/peers.sh check     exit 0 if both are installed and up to date, else say what is missing
# The Python peers (confluent-kafka, kafka-python) live in build/venv: scripts/broker.sh install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
KAFKAJS_VERSION=2.2.4
NODE_DIR="$BUILD/node"
JAVA_DIR="$BUILD/java-peer"
JAVA_SRC="$ROOT/tests/peers/JavaMember.java"
SHARE_DIR="$BUILD/java-share-peer"
SHARE_SRC="$ROOT/tests/peers/JavaShareMember.java"
TXN_DIR="$BUILD/java-txn-peer"
TXN_SRC="$ROOT/tests/peers/TxnReader.java"
LIBS="$BUILD/kafka/libs"

die() { echo "peers.sh: $*" >&2; exit 1; }

kafkajs_ok() {
  [[ -f "$NODE_DIR/node_modules/kafkajs/package.json" ]] || return 1
  local v
  v="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NODE_DIR/node_modules/kafkajs/package.json" | head -1)"
  [[ "$v" == "$KAFKAJS_VERSION" ]]
}

# The compiled class is current if it is newer than the source and was built against the kafka-clients jar
# that is installed now.
java_ok() {
  local jar
  [[ -f "$JAVA_DIR/JavaMember.class" && -f "$JAVA_DIR/.kafka-clients" ]] || return 1
  [[ "$JAVA_DIR/JavaMember.class" -nt "$JAVA_SRC" ]] || return 1
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" && "$(cat "$JAVA_DIR/.kafka-clients")" == "$(basename "$jar")" ]]
}

share_ok() {
  local jar
  [[ -f "$SHARE_DIR/JavaShareMember.class" && -f "$SHARE_DIR/.kafka-clients" ]] || return 1
  [[ "$SHARE_DIR/JavaShareMember.class" -nt "$SHARE_SRC" ]] || return 1
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" && "$(cat "$SHARE_DIR/.kafka-clients")" == "$(basename "$jar")" ]]
}

# The KafkaShareConsumer peer, in a directory of its own (its own stamp; JavaMember's is untouched).
install_share() {
  local jar
  share_ok && return 0
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" ]] || die "no kafka-clients jar in $LIBS; run scripts/kafka.sh install"
  echo "peers.sh: compiling $SHARE_SRC into $SHARE_DIR (kafka-clients $(basename "$jar"))" >&2
  rm -rf "$SHARE_DIR"
  mkdir -p "$SHARE_DIR"
  javac -nowarn -d "$SHARE_DIR" -cp "$("$ROOT/scripts/kafka.sh" classpath)" "$SHARE_SRC" \
    || die "javac could not compile $SHARE_SRC (see above)"
  basename "$jar" >"$SHARE_DIR/.kafka-clients"
}

txn_ok() {
  local jar
  [[ -f "$TXN_DIR/TxnReader.class" && -f "$TXN_DIR/.kafka-clients" ]] || return 1
  [[ "$TXN_DIR/TxnReader.class" -nt "$TXN_SRC" ]] || return 1
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" && "$(cat "$TXN_DIR/.kafka-clients")" == "$(basename "$jar")" ]]
}

# The read_committed / read_uncommitted reader, in a directory of its own (its own stamp and log4j2 config).
install_txn() {
  local jar
  txn_ok && return 0
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" ]] || die "no kafka-clients jar in $LIBS; run scripts/kafka.sh install"
  echo "peers.sh: compiling $TXN_SRC into $TXN_DIR (kafka-clients $(basename "$jar"))" >&2
  rm -rf "$TXN_DIR"
  mkdir -p "$TXN_DIR"
  javac -nowarn -d "$TXN_DIR" -cp "$("$ROOT/scripts/kafka.sh" classpath)" "$TXN_SRC" \
    || die "javac could not compile $TXN_SRC (see above)"
  printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
    '      PatternLayout:' '        pattern: "[txn-reader] %p %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
    '      AppenderRef:' '        - ref: E' >"$TXN_DIR/log4j2.yaml"
  basename "$jar" >"$TXN_DIR/.kafka-clients"
}

install_kafkajs() {
  kafkajs_ok && return 0
  command -v node >/dev/null || die "the kafkajs peer needs Node.js ('node' on PATH, version 14 or newer); install Node.js (with npm) and run scripts/peers.sh install again"
  command -v npm >/dev/null || die "installing kafkajs needs npm ('npm' on PATH) once; install npm (it comes with Node.js) and run scripts/peers.sh install again"
  echo "peers.sh: installing kafkajs@$KAFKAJS_VERSION into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$NODE_DIR" "kafkajs@$KAFKAJS_VERSION" >&2 \
    || die "npm could not install kafkajs@$KAFKAJS_VERSION (see above; it needs the npm registry once)"
  kafkajs_ok || die "npm ran, but $NODE_DIR/node_modules/kafkajs is not version $KAFKAJS_VERSION"
}

install_java() {
  local jar
  # kafka-clients comes with the broker's jars (a no-op once they are installed).
  "$ROOT/scripts/kafka.sh" install || die "the Java peer needs kafka-clients in $LIBS (scripts/kafka.sh install)"
  java_ok && return 0
  command -v javac >/dev/null || die "the Java peer needs a JDK 17+ ('javac' on PATH); install one (e.g. apt-get install openjdk-17-jdk-headless) and run scripts/peers.sh install again"
  command -v java >/dev/null || die "the Java peer needs 'java' on PATH (JDK 17+)"
  jar="$(ls "$LIBS"/kafka-clients-*.jar 2>/dev/null | head -1)"
  [[ -n "$jar" ]] || die "no kafka-clients jar in $LIBS; run scripts/kafka.sh install"
  echo "peers.sh: compiling $JAVA_SRC into $JAVA_DIR (kafka-clients $(basename "$jar"))" >&2
  rm -rf "$JAVA_DIR"
  mkdir -p "$JAVA_DIR"
  javac -nowarn -d "$JAVA_DIR" -cp "$("$ROOT/scripts/kafka.sh" classpath)" "$JAVA_SRC" \
    || die "javac could not compile $JAVA_SRC (see above)"
  # Logging of the Java client: warnings and errors on stderr (log4j2 is in build/kafka/libs).
  printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
    '      PatternLayout:' '        pattern: "[java-peer] %p %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
    '      AppenderRef:' '        - ref: E' >"$JAVA_DIR/log4j2.yaml"
  basename "$jar" >"$JAVA_DIR/.kafka-clients"
}

case "${1:-}" in
  install)
    install_kafkajs
    install_java
    install_share
    install_txn
    echo "peers.sh: kafkajs $KAFKAJS_VERSION in $NODE_DIR, JavaMember in $JAVA_DIR, JavaShareMember in $SHARE_DIR," \
      "TxnReader in $TXN_DIR" >&2 ;;
  check)
    ok=0
    kafkajs_ok || { echo "peers.sh: kafkajs $KAFKAJS_VERSION is not installed in $NODE_DIR" >&2; ok=1; }
    java_ok || { echo "peers.sh: JavaMember is not compiled (or out of date) in $JAVA_DIR" >&2; ok=1; }
    share_ok || { echo "peers.sh: JavaShareMember is not compiled (or out of date) in $SHARE_DIR" >&2; ok=1; }
    txn_ok || { echo "peers.sh: TxnReader is not compiled (or out of date) in $TXN_DIR" >&2; ok=1; }
    [[ $ok == 0 ]] || echo "peers.sh: run scripts/peers.sh install" >&2
    exit $ok ;;
  *) echo "usage: scripts/peers.sh install|check" >&2; exit 2 ;;
esac
