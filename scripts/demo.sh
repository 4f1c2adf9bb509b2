#!/usr/bin/env bash
# The demo: a fresh local broker (its data in .demo/kafka, wiped at each run), the topics, a replay of the
# shipped real Binance sample, the worker; measures the worker's throughput, shows /health and the last
# enriched trades, and leaves broker and worker running. `scripts/demo.sh stop` stops both.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=.venv/bin
state=.demo
health_port=${HEALTH_CHECK_PORT:-8081}
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-9092}}

stop_worker() {
  if [ -f "$state/worker.pid" ] && kill -0 "$(cat "$state/worker.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$state/worker.pid")"
    while kill -0 "$(cat "$state/worker.pid")" 2>/dev/null; do sleep 0.1; done
    echo "demo: worker stopped"
  fi
  rm -f "$state/worker.pid"
}

export KAFKA_DATA_DIR=$root/$state/kafka
if [ "${1:-}" = "stop" ]; then stop_worker; scripts/kafka.sh down; exit 0; fi

mkdir -p "$state"
stop_worker
scripts/kafka.sh clean
scripts/kafka.sh up
$bin/stream-processor topics
echo "demo: replaying the shipped sample (data/sample, real Binance spot BTCUSDT and ETHUSDT) into the raw topics"
out=$($bin/stream-processor replay data/sample/*.gz --no-progress)
echo "$out"
trades=$(sed -n 's/.*raw_trades=\([0-9]*\).*/\1/p' <<<"$out")

echo "demo: starting the worker (log in $state/worker.log)"
nohup $bin/stream-processor worker >"$state/worker.log" 2>&1 &
echo $! >"$state/worker.pid"

processed() {
  curl -sf "localhost:$health_port/health" 2>/dev/null \
    | $bin/python -c 'import json,sys; print(json.load(sys.stdin)["checks"]["processor_trades"]["details"]["metrics"]["messages_processed"])' \
    2>/dev/null || echo 0
}
first=""; count=0
for _ in $(seq 1 1200); do
  count=$(processed)
  if [ -z "$first" ] && [ "$count" -gt 0 ]; then first=$(date +%s.%N); first_count=$count; fi
  if [ "$count" -ge "$trades" ]; then break; fi
  if ! kill -0 "$(cat "$state/worker.pid")" 2>/dev/null; then echo "demo: the worker died:"; tail -20 "$state/worker.log"; exit 1; fi
  sleep 0.1
done
done_at=$(date +%s.%N)
if [ "$count" -lt "$trades" ]; then echo "demo: only $count of $trades trades processed in 2 minutes"; exit 1; fi
$bin/python - "$first" "$done_at" "$first_count" "$count" <<'PY'
import sys
first, done, c0, c1 = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
span = max(done - first, 1e-3)
print(f"demo: {c1} trades enriched exactly once; after the first commit, {c1 - c0} more in {span:.2f} s "
      f"= {(c1 - c0) / span:,.0f} trades/s through the worker (sampled every 0.1 s from /health)")
PY
echo
echo "demo: curl localhost:$health_port/health"
curl -s "localhost:$health_port/health"; echo
echo
echo "demo: the last 3 records of enriched_trades (read_committed)"
$bin/stream-processor tail enriched_trades -n 3
echo
echo "demo: the last record of enriched_orderbook and the last 2 of enriched_klines (read_committed)"
$bin/stream-processor tail enriched_orderbook -n 1
$bin/stream-processor tail enriched_klines -n 2
echo
echo "The worker keeps running: curl localhost:$health_port/health, curl localhost:${METRICS_PORT:-8080}/metrics,"
echo "'.venv/bin/stream-processor tail enriched_trades' (or enriched_orderbook, enriched_klines, smc_signals, alerts),"
echo "'make demo' again to replay more, 'make stop' to stop."
