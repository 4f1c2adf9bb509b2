#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker + controller) on 127.0.0.1.
#
#   scripts/kafka.sh jars     resolve release $KAFKA_VERSION (scripts/kafka/pom.xml) from Maven Central into
#                             $KAFKA_CACHE/$KAFKA_VERSION/libs; a second run reuses the cache
#   scripts/kafka.sh up       jars, format the data folder (first run), start, wait until it answers
#   scripts/kafka.sh down     stop the broker by its PID (SIGTERM, then SIGKILL after $KAFKA_STOP_TIMEOUT s)
#   scripts/kafka.sh kill     kill -9 the broker (for broker-restart tests)
#   scripts/kafka.sh status   print "running pid=N port=P version=V" or "stopped"; exit 0 only when running
#   scripts/kafka.sh restart  down, then up
#   scripts/kafka.sh clean    down, then delete the data folder
#   scripts/kafka.sh version  print the selected release ($KAFKA_VERSION or the default)
#   scripts/kafka.sh libs     jars, then print the folder of its jars (for `java -cp "$(...)/*" kafka.tools...`)
#
# Environment: KAFKA_VERSION (4.1.1; 3.9.2 is tested too, any 3.5+ or 4.x release on Maven Central should do),
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_DATA_DIR (.kafka-data),
# KAFKA_CACHE (.cache/kafka), KAFKA_HEAP_OPTS (-Xms256m -Xmx1g), KAFKA_START_TIMEOUT (60 s).
# Each release has its own jar folder, so versions coexist and never mix. A data folder remembers the release that
# formatted it (kafka-version in it) and is not started by another one: `clean` it, or use another KAFKA_DATA_DIR.
# Logging goes to $KAFKA_DATA_DIR/logs/server.log with a configuration this script writes for the release's line:
# log4j2.properties (-Dlog4j2.configurationFile) for 4.x, log4j.properties (-Dlog4j.configuration, reload4j) for
# 3.x; KAFKA_LOG4J_OPTS, which Kafka's own start scripts read, is not used.
#
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
data=${KAFKA_DATA_DIR:-$root/.kafka-data}
default_version=4.1.1  # also the default of scripts/kafka/pom.xml
version=${KAFKA_VERSION:-$default_version}
cache=${KAFKA_CACHE:-$root/.cache/kafka}
libs=$cache/$version/libs
pidfile=$data/broker.pid
start_timeout=${KAFKA_START_TIMEOUT:-60}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}
secure=${KAFKA_SECURITY:-0}
sasl_ssl_port=${KAFKA_SASL_SSL_PORT:-$((port + 2))}
ssl_port=${KAFKA_SSL_PORT:-$((port + 3))}
sasl_port=${KAFKA_SASL_PORT:-$((port + 4))}
scram_user=${KAFKA_SCRAM_USER:-streams}
scram_password=${KAFKA_SCRAM_PASSWORD:-streams-test-secret}
tls=$data/tls
read -r -a heap_opts <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"  # words, as java wants them

log() { echo "kafka.sh: $*" >&2; }

if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  log "KAFKA_VERSION=$version is not a release number such as $default_version or 3.9.2"; exit 2
fi
major=${version%%.*}
# Kafka 4.0 moved from log4j 1 (reload4j) to log4j2: the slf4j binding (pom profile) and the configuration differ.
if [ "$major" -ge 4 ]; then
  profile=kafka4; log_config=$data/log4j2.properties; log_opts=(-Dlog4j2.configurationFile="file:$log_config")
else
  profile=kafka3; log_config=$data/log4j.properties; log_opts=(-Dlog4j.configuration="file:$log_config")
fi

jars() {
  if [ -f "$libs/.complete" ] && [ -f "$libs/kafka_2.13-$version.jar" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is needed to resolve the Kafka jars"; exit 1; }
  log "resolving Apache Kafka $version from Maven Central into $libs"
  rm -rf "$libs"; mkdir -p "$libs"
  local out=$cache/$version/mvn.log
  mvn -q -B -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$version" -P"$profile" -DincludeScope=runtime -DoutputDirectory="$libs" >"$out" 2>&1 \
    || { cat "$out" >&2; log "could not resolve Apache Kafka $version"; rm -rf "$libs"; exit 1; }
  [ -f "$libs/kafka_2.13-$version.jar" ] || { log "kafka_2.13-$version.jar is missing from $libs"; exit 1; }
  echo "$version" >"$libs/.complete"
}

pid_alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

write_config() {
  mkdir -p "$data/logs" "$data/log-dirs"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if secure_mode; then
    local more="SASL_SSL://127.0.0.1:$sasl_ssl_port,SSL://127.0.0.1:$ssl_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    listeners="$listeners,$more"
    advertised="$advertised,$more"
    protocols="$protocols,SASL_SSL:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$data/log-dirs
num.partitions=1
auto.create.topics.enable=false
# One node: every internal topic has one replica, and transactions need min ISR 1.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
min.insync.replicas=1
# Tests and demos start and stop consumers often; the default 3 s delay only slows the first rebalance.
group.initial.rebalance.delay.ms=0
# Abort markers of fenced or timed-out transactions are written promptly (default 10 s).
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
log.retention.hours=168
log.segment.bytes=104857600
PROPS
  if secure_mode; then write_secure_config; fi
  if [ "$major" -ge 4 ]; then
    cat >"$log_config" <<PROPS
# log4j2 (Kafka 4.x), written by scripts/kafka.sh.
status = error
name = kafka.sh
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $data/logs/server.log
appender.file.filePattern = $data/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
  else
    cat >"$log_config" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$data/logs/server.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
PROPS
  fi
}

secure_mode() { [ "$secure" = 1 ]; }

# The test CA, the broker's PKCS12 keystore and truststore, a client certificate: once per data folder.
make_tls() {
  if [ -f "$tls/.complete" ]; then return 0; fi
  command -v openssl >/dev/null || { log "openssl is needed for KAFKA_SECURITY=1"; exit 1; }
  command -v keytool >/dev/null || { log "keytool (Java) is needed for KAFKA_SECURITY=1"; exit 1; }
  rm -rf "$tls"; mkdir -p "$tls"; chmod 700 "$tls"
  (
    cd "$tls"
    umask 077
    openssl rand -hex 16 >store.pass
    local pass; pass=$(cat store.pass)
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=stream-processor test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >broker.ext
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" >client.ext
    local who
    for who in broker client; do
      openssl req -new -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" \
        -subj "/CN=$([ "$who" = broker ] && echo localhost || echo "$scram_user")/O=stream-processor test"
      openssl x509 -req -sha256 -days 3650 -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -extfile "$who.ext" -out "$who.crt"
    done
    openssl pkcs12 -export -name broker -in broker.crt -inkey broker.key -certfile ca.crt \
      -passout "pass:$pass" -out broker.p12
    keytool -importcert -noprompt -alias ca -file ca.crt -storetype PKCS12 -keystore truststore.p12 \
      -storepass "$pass" >/dev/null
    chmod 644 ca.crt client.crt
    rm -f ./*.csr ./*.ext ca.srl
  ) >"$data/logs/tls.log" 2>&1 || { cat "$data/logs/tls.log" >&2; log "could not make the TLS files"; exit 1; }
  touch "$tls/.complete"
}

write_secure_config() {
  local pass; pass=$(cat "$tls/store.pass")
  local scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  local plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$scram_user=\"$scram_password\";"
  local listener
  cat >>"$data/server.properties" <<PROPS
# KAFKA_SECURITY=1: the SASL_SSL, SSL (mTLS) and SASL_PLAINTEXT listeners (PLAINTEXT stays inter-broker).
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$tls/truststore.p12
ssl.truststore.password=$pass
ssl.client.auth=none
listener.name.ssl.ssl.client.auth=required
PROPS
  for listener in sasl_ssl sasl_plaintext; do
    cat >>"$data/server.properties" <<PROPS
listener.name.$listener.scram-sha-256.sasl.jaas.config=$scram
listener.name.$listener.scram-sha-512.sasl.jaas.config=$scram
listener.name.$listener.plain.sasl.jaas.config=$plain
PROPS
  done
  chmod 600 "$data/server.properties"
}

java_cmd() { java "${heap_opts[@]}" "${log_opts[@]}" -cp "$libs/*" "$@"; }

# Lines by which log4j, log4j2 or slf4j say that the logging configuration is broken (they go to stdout/stderr).
logging_trouble() { grep -hE '^log4j:(WARN|ERROR)|StatusLogger|main ERROR|^SLF4J:' "$@" 2>/dev/null || true; }

up() {
  jars
  if pid_alive; then
    log "already running (pid $(cat "$pidfile"), port $port)"
    return 0
  fi
  if answers; then log "port $port is taken by another process"; exit 1; fi
  if [ -f "$data/kafka-version" ] && [ "$(cat "$data/kafka-version")" != "$version" ]; then
    log "$data was formatted by Apache Kafka $(cat "$data/kafka-version"), not $version;" \
      "run '$0 clean' first or set KAFKA_DATA_DIR"; exit 1
  fi
  if secure_mode && [ -f "$data/log-dirs/meta.properties" ] && [ ! -f "$data/scram-users" ]; then
    log "$data was formatted without KAFKA_SECURITY=1, so it has no SCRAM users; run '$0 clean' first"; exit 1
  fi
  mkdir -p "$data/logs"
  if secure_mode; then make_tls; fi
  write_config
  if [ ! -f "$data/log-dirs/meta.properties" ]; then
    local scram=()
    if secure_mode; then
      scram=(--add-scram "SCRAM-SHA-256=[name=$scram_user,password=$scram_password]"
             --add-scram "SCRAM-SHA-512=[name=$scram_user,password=$scram_password]")
    fi
    local cluster_id
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid 2>"$data/logs/format.log" | tail -n 1) || true
    if ! [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]]; then
      cat "$data/logs/format.log" >&2; log "kafka.tools.StorageTool random-uuid printed no cluster id: $cluster_id"
      exit 1
    fi
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" "${scram[@]}" \
      >>"$data/logs/format.log" 2>&1 || { cat "$data/logs/format.log" >&2; exit 1; }
    echo "$version" >"$data/kafka-version"
    if secure_mode; then echo "$scram_user" >"$data/scram-users"; fi
  fi
  : >"$data/logs/stdout.log"
  nohup java "${heap_opts[@]}" -XX:+UseG1GC -Djava.awt.headless=true "${log_opts[@]}" -cp "$libs/*" \
    kafka.Kafka "$data/server.properties" >"$data/logs/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  local waited=0
  until answers && grep -q "Kafka Server started" "$data/logs/server.log" 2>/dev/null; do
    if ! pid_alive; then
      log "broker exited during start; last lines of its log:"
      tail -n 30 "$data/logs/server.log" "$data/logs/stdout.log" >&2 2>/dev/null || true
      rm -f "$pidfile"; exit 1
    fi
    if [ "$waited" -ge $((start_timeout * 10)) ]; then
      log "broker did not answer on 127.0.0.1:$port within ${start_timeout}s"; down; exit 1
    fi
    sleep 0.1; waited=$((waited + 1))
  done
  local trouble; trouble=$(logging_trouble "$data/logs/format.log" "$data/logs/stdout.log")
  if [ -n "$trouble" ]; then log "the broker's logging is misconfigured:"; echo "$trouble" >&2; fi
  log "running: Apache Kafka $version, pid $(cat "$pidfile"), bootstrap 127.0.0.1:$port, data $data"
  if secure_mode; then
    log "secure listeners: SASL_SSL 127.0.0.1:$sasl_ssl_port, SSL (mTLS) 127.0.0.1:$ssl_port," \
      "SASL_PLAINTEXT 127.0.0.1:$sasl_port; user $scram_user; TLS files in $tls"
  fi
}

down() {
  if ! pid_alive; then rm -f "$pidfile"; log "not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((stop_timeout * 10)) ]; then
      log "broker did not stop within ${stop_timeout}s; killing it"; kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1; waited=$((waited + 1))
  done
  rm -f "$pidfile"
  log "stopped (pid $pid)"
}

kill9() {
  if pid_alive; then
    local pid; pid=$(cat "$pidfile")
    kill -KILL "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    log "killed (pid $pid)"
  fi
  rm -f "$pidfile"
}

status() {
  if pid_alive; then
    echo "running pid=$(cat "$pidfile") port=$port version=$(cat "$data/kafka-version" 2>/dev/null || echo unknown)"
  else
    echo "stopped"; return 1
  fi
}

case "${1:-}" in
  jars) jars ;;
  up) up ;;
  down) down ;;
  kill) kill9 ;;
  status) status ;;
  restart) down; up ;;
  clean) down; rm -rf "$data" ;;
  version) echo "$version" ;;
  libs) jars; echo "$libs" ;;
  *) echo "usage: $0 jars|up|down|kill|status|restart|clean|version|libs" >&2; exit 2 ;;
esac
