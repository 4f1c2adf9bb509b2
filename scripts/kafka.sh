#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker + controller) on 127.0.0.1.
#
#   scripts/kafka.sh jars     resolve the pinned release (scripts/kafka/pom.xml) from Maven Central into
#                             $KAFKA_CACHE/libs; a second run reuses the cache
#   scripts/kafka.sh up       jars, format the data folder (first run), start, wait until it answers
#   scripts/kafka.sh down     stop the broker by its PID (SIGTERM, then SIGKILL after $KAFKA_STOP_TIMEOUT s)
#   scripts/kafka.sh kill     kill -9 the broker (for broker-restart tests)
#   scripts/kafka.sh status   print "running pid=N port=P" or "stopped"; exit 0 only when running
#   scripts/kafka.sh restart  down, then up
#   scripts/kafka.sh clean    down, then delete the data folder
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_DATA_DIR (.kafka-data),
# KAFKA_CACHE (.cache/kafka), KAFKA_HEAP_OPTS (-Xms256m -Xmx1g), KAFKA_START_TIMEOUT (60 s).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
data=${KAFKA_DATA_DIR:-$root/.kafka-data}
cache=${KAFKA_CACHE:-$root/.cache/kafka}
libs=$cache/libs
pidfile=$data/broker.pid
start_timeout=${KAFKA_START_TIMEOUT:-60}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}

log() { echo "kafka.sh: $*" >&2; }

jars() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is needed to resolve the Kafka jars"; exit 1; }
  log "resolving Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/scripts/kafka/pom.xml") from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
}

pid_alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

write_config() {
  mkdir -p "$data/logs" "$data/log-dirs"
  cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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
  cat >"$data/log4j.properties" <<PROPS
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
}

java_cmd() { java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -Dlog4j.configuration="file:$data/log4j.properties" -cp "$libs/*" "$@"; }

up() {
  jars
  if pid_alive; then
    log "already running (pid $(cat "$pidfile"), port $port)"
    return 0
  fi
  if answers; then log "port $port is taken by another process"; exit 1; fi
  write_config
  if [ ! -f "$data/log-dirs/meta.properties" ]; then
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >"$data/logs/format.log" 2>&1 \
      || { cat "$data/logs/format.log" >&2; exit 1; }
  fi
  : >"$data/logs/stdout.log"
  nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$data/log4j.properties" -cp "$libs/*" \
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
  log "running: pid $(cat "$pidfile"), bootstrap 127.0.0.1:$port, data $data"
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
  if pid_alive; then echo "running pid=$(cat "$pidfile") port=$port"; else echo "stopped"; return 1; fi
}

case "${1:-}" in
  jars) jars ;;
  up) up ;;
  down) down ;;
  kill) kill9 ;;
  status) status ;;
  restart) down; up ;;
  clean) down; rm -rf "$data" ;;
  *) echo "usage: $0 jars|up|down|kill|status|restart|clean" >&2; exit 2 ;;
esac
