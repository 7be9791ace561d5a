#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft) on loopback, from the jars of scripts/kafka/pom.xml.
#   scripts/kafka.sh install                   copy the broker's jars into build/kafka/libs (needs Java 17+ and Maven once;
#                                              offline afterwards); another version into build/kafka-VERSION/libs
#   scripts/kafka.sh version                   print the version this run uses (KSWARM_KAFKA_VERSION)
#   scripts/kafka.sh start PORT                a fresh combined broker+controller node on 127.0.0.1:PORT, plaintext, and
#                                              TLS/SASL listeners on other free ports (below)
#   scripts/kafka.sh restart PORT              start the node of PORT again on its existing log dirs (after a kill)
#   scripts/kafka.sh stop PORT                 stop the node this script started on PORT
#   scripts/kafka.sh status PORT               exit 0 if it runs and answers
#   scripts/kafka.sh cluster-start P1,P2,P3    a fresh cluster of combined nodes, one per port (node ids 1..N)
#   scripts/kafka.sh cluster-stop P1,P2,P3
#   scripts/kafka.sh tool CLASS ARGS..         run a Kafka tool class (org.apache.kafka.tools.*) with the jars
#   scripts/kafka.sh classpath                 print the classpath (for javac/java peers)
# KSWARM_KAFKA_VERSION picks the Apache Kafka release (default 4.4.0, whose jars are in build/kafka/libs; any other
# version's in build/kafka-VERSION/libs), e.g. KSWARM_KAFKA_VERSION=4.1.2 scripts/kafka.sh start 29700. Every command
# uses that version's jars: start, restart and cluster-start the broker, tool and classpath its tools. Seen to run
# here: 4.1.2 (share groups in preview: start and cluster-start format a 4.1 node with --feature share.version=1
# unless KSWARM_KAFKA_FORMAT_ARGS names share.version itself), 4.2.2, 4.3.1, 4.4.0 (share groups on by default), and
# 3.9.1 (KRaft; no share groups; the POM's kafka3 profile adds the YAML reader log4j2 needs for log4j2.yaml).
# Broker settings: every node gets replication factors of 1 for its internal topics when it runs alone, and
# the lines of KSWARM_KAFKA_PROPS (key=value, separated by spaces or newlines) on top; e.g.
# KSWARM_KAFKA_PROPS='group.initial.rebalance.delay.ms=0' (the test suite sets it). Logs: build/kafka-PORT/server.log.
# KSWARM_KAFKA_FORMAT_ARGS adds arguments to the storage tool's format (`start` only), e.g.
# '--feature share.version=0': Kafka 4.4 formats with share groups on (share.version=2) by default; this turns them off.
# Secured listeners (`start` only; cluster-start is plaintext only), each on its own free loopback port, advertised
# as 127.0.0.1:port, with throwaway certificates made at start in build/kafka-PORT/tls/ (EC P-256, openssl CLI):
#   SSL             TLS, server cert for localhost / 127.0.0.1 signed by tls/ca.pem, no client auth
#   MTLS            TLS with a required client certificate signed by tls/ca.pem (tls/client.pem, CN=kswarm-client)
#   SSL_WRONG       TLS with a server cert signed by tls/ca.pem but only for DNS:wrong-name.example
#   SASL_SSL        SASL over TLS (the SSL listener's certificate) and
#   SASL_PLAINTEXT  SASL without TLS, both with PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (user alice, password alice-secret)
#                   and OAUTHBEARER through Kafka's unsecured JWT validator (any unsigned token; its "sub" is the
#                   principal)
# No authorizer: every authenticated principal may do anything. build/kafka-PORT/security.json names the listeners'
# addresses, the certificate and key files and the credentials (scripts/test.sh exports it as KSWARM_TEST_SECURITY).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KSWARM_BUILD_DIR:-$ROOT/build}"
DEFAULT_KAFKA_VERSION=4.4.0
KAFKA_VERSION="${KSWARM_KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
[[ "$KAFKA_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || { echo "kafka.sh: KSWARM_KAFKA_VERSION=$KAFKA_VERSION is not a release number like 4.1.2" >&2; exit 2; }
# The default version keeps build/kafka (other scripts and the tests read its jars there).
if [[ "$KAFKA_VERSION" == "$DEFAULT_KAFKA_VERSION" ]]; then
  KAFKA_HOME="$BUILD/kafka"
else
  KAFKA_HOME="$BUILD/kafka-$KAFKA_VERSION"
fi
LIBS="$KAFKA_HOME/libs"
STAMP="$LIBS/.installed-$KAFKA_VERSION"

die() { echo "kafka.sh: $*" >&2; exit 1; }

java_ok() {
  command -v java >/dev/null || return 1
  local v
  v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$v" && "$v" -ge 17 ]]
}

install() {
  [[ -f "$STAMP" ]] && return 0
  java_ok || die "Apache Kafka $KAFKA_VERSION needs Java 17 or newer ('java' on PATH); install a JDK 17+, or use the tansu broker instead: KSWARM_BROKER=tansu scripts/test.sh"
  command -v mvn >/dev/null || die "installing Apache Kafka needs Maven ('mvn' on PATH) once, to fetch the jars from Maven Central; install Maven, or use the tansu broker instead: KSWARM_BROKER=tansu scripts/test.sh"
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS" >&2
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
    -Dkafka.major="${KAFKA_VERSION%%.*}" -DoutputDirectory="$LIBS" >&2 \
    || die "mvn could not fetch the jars of Kafka $KAFKA_VERSION (see above; is it a release on Maven Central?); with no Maven Central, use KSWARM_BROKER=tansu"
  touch "$STAMP"
}

classpath() { echo "$LIBS/*"; }

# A free loopback TCP port.
# The address of the PLAINTEXT listener (KSWARM_KAFKA_HOST, default loopback): tests/hosts.rs puts it on a
# test bridge that its network namespaces reach. The controller and the secured listeners stay on loopback.
HOST="${KSWARM_KAFKA_HOST:-127.0.0.1}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# secure_prep N PASSWORD: one python start for two things `start` needs. Line 1: N distinct free loopback TCP
# ports. Line 2: a random salt and PASSWORD's SCRAM-SHA-256 and SCRAM-SHA-512 salted passwords (PBKDF2, 4096
# iterations), base64, for the storage tool's --add-scram: given them, it skips its own key derivation and
# SecureRandom set-up (measured: ~0.3 s of CPU less in the format step).
secure_prep() {
  python3 -c 'import base64, hashlib, os, socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
salt, pw, b64 = os.urandom(16), sys.argv[2].encode(), lambda b: base64.b64encode(b).decode()
print(b64(salt), *(b64(hashlib.pbkdf2_hmac(h, pw, salt, 4096)) for h in ("sha256", "sha512")))' "$1" "$2"
}

# The secured listeners' names, in the order of their ports in SECURE_PORTS.
SECURE_LISTENERS=(SSL MTLS SSL_WRONG SASL_SSL SASL_PLAINTEXT)
SASL_USER=alice
SASL_PASSWORD=alice-secret
CLIENT_KEY_PASSWORD=client-key-secret
OAUTH_SUB=admin

# make_tls DIR: a test CA, an unrelated CA, server certs (right and wrong name) and a client cert, all EC P-256,
# written fresh into DIR. Throwaway test credentials, so every file is readable by all (tests may run a client as
# another user).
make_tls() {
  local t=$1
  rm -rf "$t"
  mkdir -p "$t"
  cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[wrong]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong-name.example
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
  local c="$t/openssl.cnf" ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes) name ext cn serial=1
  {
    # The two CAs, self-signed; other-ca signs nothing (a server it does not know is untrusted).
    openssl req -x509 -config "$c" -extensions ca "${ec[@]}" -keyout "$t/ca.key" -out "$t/ca.pem" \
      -subj "/CN=kswarm test CA" -days 3650
    openssl req -x509 -config "$c" -extensions ca "${ec[@]}" -keyout "$t/other-ca.key" -out "$t/other-ca.pem" \
      -subj "/CN=kswarm other CA" -days 3650
    # Leaf certificates signed by the test CA (keys: unencrypted PKCS#8 PEM).
    for spec in server:server:localhost server-wrong:wrong:wrong-name.example client:client:kswarm-client; do
      IFS=: read -r name ext cn <<<"$spec"
      serial=$((serial + 1))
      openssl req -new -config "$c" "${ec[@]}" -keyout "$t/$name.key" -subj "/CN=$cn" |
        openssl x509 -req -CA "$t/ca.pem" -CAkey "$t/ca.key" -set_serial "$serial" -days 3650 \
          -extfile "$c" -extensions "$ext" -out "$t/$name.pem"
    done
    # The client key again, encrypted: PKCS#8 PBES2 with AES-256-CBC.
    openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$t/client.key" -out "$t/client-encrypted.key" \
      -passout "pass:$CLIENT_KEY_PASSWORD"
  } >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "making the test certificates in $t failed (openssl)"; }
  # Kafka's PEM keystores (KIP-651): the key, then the certificate.
  cat "$t/server.key" "$t/server.pem" >"$t/server-keystore.pem"
  cat "$t/server-wrong.key" "$t/server-wrong.pem" >"$t/server-wrong-keystore.pem"
  chmod -R a+rX "$t"
}

# secure_config DIR P_SSL P_MTLS P_SSL_WRONG P_SASL_SSL P_SASL_PLAINTEXT: the secured listeners' settings, on top of
# a node's plaintext ones (listeners, advertised.listeners and the protocol map are completed by write_config).
secure_config() {
  local dir=$1 t="$1/tls" l m
  echo "ssl.keystore.type=PEM"
  echo "ssl.keystore.location=$t/server-keystore.pem"
  echo "ssl.truststore.type=PEM"
  echo "ssl.truststore.location=$t/ca.pem"
  echo "ssl.client.auth=none"
  echo "listener.name.mtls.ssl.client.auth=required"
  echo "listener.name.ssl_wrong.ssl.keystore.type=PEM"
  echo "listener.name.ssl_wrong.ssl.keystore.location=$t/server-wrong-keystore.pem"
  echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"
  for l in sasl_ssl sasl_plaintext; do
    echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER=\"$SASL_PASSWORD\";"
    for m in scram-sha-256 scram-sha-512; do
      echo "listener.name.$l.$m.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    done
    # OAUTHBEARER: Kafka's unsecured validator takes any unsigned JWT ("alg":"none") and makes its "sub" the
    # principal. It is Kafka's default server handler for OAUTHBEARER; named here so a change of default cannot
    # silently turn this into a JWKS validator. The login module's token is the broker's own (unused: the
    # inter-broker listener is PLAINTEXT) but it must be configured.
    echo "listener.name.$l.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler"
    echo "listener.name.$l.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"$OAUTH_SUB\";"
  done
}

json_str() { local v=${1//\\/\\\\}; v=${v//\"/\\\"}; printf '"%s"' "$v"; }

# write_security_json DIR PORT P_SSL P_MTLS P_SSL_WRONG P_SASL_SSL P_SASL_PLAINTEXT
write_security_json() {
  local dir=$1 t="$1/tls"
  {
    echo "{"
    echo "  \"plaintext\": $(json_str "$HOST:$2"),"
    echo "  \"ssl\": $(json_str "127.0.0.1:$3"),"
    echo "  \"mtls\": $(json_str "127.0.0.1:$4"),"
    echo "  \"ssl_wrong_name\": $(json_str "127.0.0.1:$5"),"
    echo "  \"sasl_ssl\": $(json_str "127.0.0.1:$6"),"
    echo "  \"sasl_plaintext\": $(json_str "127.0.0.1:$7"),"
    echo "  \"ca\": $(json_str "$t/ca.pem"),"
    echo "  \"other_ca\": $(json_str "$t/other-ca.pem"),"
    echo "  \"client_cert\": $(json_str "$t/client.pem"),"
    echo "  \"client_key\": $(json_str "$t/client.key"),"
    echo "  \"client_key_encrypted\": $(json_str "$t/client-encrypted.key"),"
    echo "  \"client_key_password\": $(json_str "$CLIENT_KEY_PASSWORD"),"
    echo "  \"sasl_mechanisms\": [\"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\", \"OAUTHBEARER\"],"
    echo "  \"user\": $(json_str "$SASL_USER"),"
    echo "  \"password\": $(json_str "$SASL_PASSWORD"),"
    echo "  \"oauthbearer_sub\": $(json_str "$OAUTH_SUB")"
    echo "}"
  } >"$dir/security.json"
}

answers() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

node_dir() { echo "$BUILD/kafka-$1"; }

running() {
  local pf
  pf="$(node_dir "$1")/pid"
  [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

# write_config PORT NODE_ID CONTROLLER_PORT VOTERS NODES [SECURE_PORTS..]
# With SECURE_PORTS (one per SECURE_LISTENERS entry), the node also opens the secured listeners (certificates from
# make_tls in its tls/ dir).
write_config() {
  local port=$1 id=$2 cport=$3 voters=$4 nodes=$5 dir
  shift 5
  local secure_ports=("$@")
  dir="$(node_dir "$port")"
  mkdir -p "$dir"
  rm -f "$dir/security.json"
  local rf=1
  [[ "$nodes" -ge 3 ]] && rf=3
  local listeners="PLAINTEXT://$HOST:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://$HOST:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local i name
  for i in "${!secure_ports[@]}"; do
    name="${SECURE_LISTENERS[$i]}"
    listeners+=",$name://127.0.0.1:${secure_ports[$i]}"
    advertised+=",$name://127.0.0.1:${secure_ports[$i]}"
    case "$name" in SASL_*) protocols+=",$name:$name" ;; *) protocols+=",$name:SSL" ;; esac
  done
  {
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    echo "listeners=$listeners"
    echo "advertised.listeners=$advertised"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "listener.security.protocol.map=$protocols"
    echo "controller.quorum.voters=$voters"
    echo "log.dirs=$dir/data"
    echo "offsets.topic.replication.factor=$rf"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$(( rf > 1 ? 2 : 1 ))"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$(( rf > 1 ? 2 : 1 ))"
    echo "num.partitions=1"
    [[ ${#secure_ports[@]} -gt 0 ]] && secure_config "$dir"
    for kv in ${KSWARM_KAFKA_PROPS:-}; do echo "$kv"; done
  } >"$dir/server.properties"
  cat >"$dir/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    RollingFile:
      name: F
      fileName: $dir/server.log
      filePattern: $dir/server.log.%i
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      Policies:
        SizeBasedTriggeringPolicy:
          size: 50MB
      DefaultRolloverStrategy:
        max: 2
  Loggers:
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
    Root:
      level: INFO
      AppenderRef:
        - ref: F
EOF
}

# format PORT CLUSTER_ID [ARGS..]: ARGS go to the storage tool's format (e.g. --add-scram).
format() {
  local port=$1 cluster=$2 dir
  shift 2
  dir="$(node_dir "$port")"
  rm -rf "$dir/data"
  java -cp "$(classpath)" -Dlog4j2.configurationFile="$dir/log4j2.yaml" \
    kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" "$@" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "formatting the storage of the node on port $port failed"; }
}

launch() {
  local port=$1 heap=$2 dir
  dir="$(node_dir "$port")"
  # setsid: the node is in its own session, so a Ctrl-C in the caller's terminal reaches only the caller,
  # which stops the node itself. The node keeps none of the caller's other open files: a lock the caller
  # holds (flock) must end with the caller, not with the broker.
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    KAFKA_HEAP="$heap" exec setsid java -Xms128m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.yaml" \
      -cp "$(classpath)" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null
  ) &
  echo $! >"$dir/pid"
}

wait_up() {
  local port=$1 dir
  dir="$(node_dir "$port")"
  for _ in $(seq 1 600); do
    if answers "$port" && grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
      local sec=""
      [[ -f "$dir/security.json" ]] && sec=", TLS/SASL listeners in $dir/security.json"
      echo "kafka.sh: Apache Kafka $KAFKA_VERSION up on $HOST:$port (pid $(cat "$dir/pid"), log $dir/server.log$sec)" >&2
      return 0
    fi
    if ! running "$port"; then
      tail -30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      die "the Kafka node on port $port exited at start; see $dir/server.log"
    fi
    sleep 0.1
  done
  die "the Kafka node on port $port did not answer within 60 s; see $dir/server.log"
}

stop_node() {
  local port=$1 dir pid
  dir="$(node_dir "$port")"
  if running "$port"; then
    pid="$(cat "$dir/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "kafka.sh: stopped the Kafka node on port $port (pid $pid)" >&2
  fi
  rm -f "$dir/pid"
}

check_port_free() {
  if running "$1"; then die "a node this script started already runs on port $1 (pid $(cat "$(node_dir "$1")/pid")); stop it first"; fi
  if answers "$1"; then die "port $1 is taken by another program; pick another PORT"; fi
}

# The format arguments a version needs for share groups: 4.1 has them in preview, off unless formatted (or upgraded)
# with share.version=1; 4.2 and later turn them on by default. KSWARM_KAFKA_FORMAT_ARGS naming share.version wins.
share_format_args() {
  [[ "${KSWARM_KAFKA_FORMAT_ARGS:-}" == *share.version* ]] && return 0
  [[ "$KAFKA_VERSION" == 4.1.* ]] && echo "--feature share.version=1"
  return 0
}

# A new cluster id, as `kafka-storage random-uuid` makes it (Kafka's Uuid.randomUuid: 16 random bytes, URL-safe
# base64 without padding, not starting with '-', not one of the reserved ids 0 and 1), without the ~1.5 s of a JVM.
cluster_id() {
  python3 -c 'import base64, os
while True:
    b = os.urandom(16)
    s = base64.urlsafe_b64encode(b).decode().rstrip("=")
    if b not in (bytes(16), bytes(15) + b"\x01") and not s.startswith("-"):
        break
print(s)'
}

cmd="${1:-}"
case "$cmd" in
  install) install ;;
  version) echo "$KAFKA_VERSION" ;;
  classpath) install; classpath ;;
  tool)
    install
    shift
    cls="$1"; shift
    printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: E' '      target: SYSTEM_ERR' \
      '      PatternLayout:' '        pattern: "%p %m%n"' '  Loggers:' '    Root:' '      level: WARN' \
      '      AppenderRef:' '        - ref: E' >"$KAFKA_HOME/tools-log4j2.yaml"
    exec java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.yaml" -cp "$(classpath)" "$cls" "$@" ;;
  start)
    port="${2:?usage: scripts/kafka.sh start PORT}"
    install
    check_port_free "$port"
    prep="$(secure_prep $((1 + ${#SECURE_LISTENERS[@]})) "$SASL_PASSWORD")" || die "python3 failed (free ports, SCRAM)"
    read -r -a sports <<<"${prep%%$'\n'*}"
    read -r salt s256 s512 <<<"${prep#*$'\n'}"
    cport="${sports[0]}"
    sports=("${sports[@]:1}")
    make_tls "$(node_dir "$port")/tls"
    write_config "$port" 1 "$cport" "1@127.0.0.1:$cport" 1 "${sports[@]}"
    # The SASL user for SCRAM: the same as --add-scram 'SCRAM-SHA-256=[name=alice,password=alice-secret]'.
    format "$port" "$(cluster_id)" \
      --add-scram "SCRAM-SHA-256=[name=$SASL_USER,iterations=4096,salt=\"$salt\",saltedpassword=\"$s256\"]" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,iterations=4096,salt=\"$salt\",saltedpassword=\"$s512\"]" \
      $(share_format_args) ${KSWARM_KAFKA_FORMAT_ARGS:-}
    write_security_json "$(node_dir "$port")" "$port" "${sports[@]}"
    launch "$port" "${KSWARM_KAFKA_HEAP:-768m}"
    wait_up "$port" ;;
  restart)
    port="${2:?usage: scripts/kafka.sh restart PORT}"
    install
    [[ -f "$(node_dir "$port")/server.properties" ]] || die "no node was started on port $port before; use start"
    check_port_free "$port"
    launch "$port" "${KSWARM_KAFKA_HEAP:-768m}"
    wait_up "$port" ;;
  stop) stop_node "${2:?usage: scripts/kafka.sh stop PORT}" ;;
  status)
    port="${2:?usage: scripts/kafka.sh status PORT}"
    if running "$port" && answers "$port"; then echo "kafka.sh: running on 127.0.0.1:$port (pid $(cat "$(node_dir "$port")/pid"))"; exit 0; fi
    echo "kafka.sh: not running on port $port"; exit 1 ;;
  cluster-start)
    IFS=, read -r -a ports <<<"${2:?usage: scripts/kafka.sh cluster-start P1,P2,P3}"
    install
    voters=""; cports=()
    for i in "${!ports[@]}"; do
      check_port_free "${ports[$i]}"
      cports[$i]="$(free_port)"
      voters+="${voters:+,}$((i + 1))@127.0.0.1:${cports[$i]}"
    done
    id="$(cluster_id)"
    for i in "${!ports[@]}"; do
      write_config "${ports[$i]}" $((i + 1)) "${cports[$i]}" "$voters" "${#ports[@]}"
      format "${ports[$i]}" "$id" $(share_format_args)
    done
    for p in "${ports[@]}"; do launch "$p" "${KSWARM_KAFKA_HEAP:-384m}"; done
    for p in "${ports[@]}"; do wait_up "$p"; done ;;
  cluster-stop)
    IFS=, read -r -a ports <<<"${2:?usage: scripts/kafka.sh cluster-stop P1,P2,P3}"
    for p in "${ports[@]}"; do stop_node "$p"; done ;;
  *) echo "usage: scripts/kafka.sh install|version|start|restart|stop|status PORT|cluster-start|cluster-stop P1,P2,..|tool CLASS ARGS|classpath" >&2; exit 2 ;;
esac
