#!/usr/bin/env bash
# A local fanout cluster for capacity figures: a redis-server on a free port of 127.0.0.1 and
# K fanout nodes on it (release builds), then loadgen across them, each beside the same run on
# one node alone:
#   hop      1 000 subscribers per node, the publisher on node A, 10 000 msg/s × 64 B for 10 s:
#            p99 on node A's own subscribers against the others' (what the hop through Redis adds)
#   sweep    the same subscribers, the highest rate with zero loss and p99 ≤ 50 ms across nodes
#   ingest   pipelined POST /publish on node A (one subscriber there, none elsewhere): what one node pushes
#            into Redis per second (fanout_backplane_published_total over the run)
#
# Usage: loadgen/cluster.sh [NODES]   (default 2)   OUT=DIR (default target/cluster)
#   RATE=N for the hop run (default 10000), SUBS=N subscribers per node (default 1000);
#   ONLY_HOP=1 skips the sweeps and the ingest
# Needs redis-server (apt-get install redis-server). Every process listens on 127.0.0.1 only and
# is stopped at exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NODES=${1:-2}
OUT=${OUT:-target/cluster}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
command -v redis-server >/dev/null || { echo "cluster.sh: needs redis-server" >&2; exit 1; }
cargo build --release -p fanout -p loadgen >&2
FANOUT="$TARGET_DIR/release/fanout"
LG="$TARGET_DIR/release/loadgen"
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"

URLS=(); NODE_PIDS=()
start_nodes() { # start_nodes N [FANOUT-ARGS...]: N nodes on the Redis, URLS and NODE_PIDS set
  local n=$1; shift
  URLS=(); NODE_PIDS=()
  for i in $(seq "$n"); do
    local port
    port=$(free_port)
    "$FANOUT" --listen "127.0.0.1:$port" --node-id "node$i" "$@" >"$OUT/node$i-$port.log" 2>&1 &
    PIDS+=($!); NODE_PIDS+=($!)
    wait_port "$port"
    URLS+=("ws://127.0.0.1:$port/")
  done
}
stop_nodes() { for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

field() { # field FILE KEY...
  python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    doc = doc.get(k) if isinstance(doc, dict) else None
print("–" if doc is None else (f"{doc:,.1f}" if isinstance(doc, float) else f"{doc:,}"))
PY
}
metric() { curl -s "http://${1#ws://}metrics" | awk -v m="$2" '$1 == m {print $2}'; }

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average: $(cut -d' ' -f1-3 /proc/loadavg); redis $(redis-server --version | awk '{print $3}')"
echo
echo "CPU: node A's (the publisher's node, --server-pid) and loadgen's, in % of one core; a loadgen"
echo "near 200 % (two threads) measures loadgen."
echo
echo "| run | subscribers | rate msg/s | delivered | lost | p50 µs | p99 µs | node A CPU % | loadgen CPU % |"
echo "|---|---|---|---|---|---|---|---|---|"
for setup in single cluster; do
  if [ "$setup" = single ]; then start_nodes 1; else start_nodes "$NODES" --redis "redis://127.0.0.1:$REDIS_PORT"; fi
  urls=(); for u in "${URLS[@]}"; do urls+=(--url "$u"); done
  subs=$((${SUBS:-1000} * ${#URLS[@]}))
  "$LG" fanout "${urls[@]}" --pub-url "${URLS[0]}" --subs "$subs" --rate "${RATE:-10000}" --size 64 \
    --duration 10s --drain 2s --threads 2 --server-pid "${NODE_PIDS[0]}" --json "$OUT/hop-$setup.json" \
    --quiet >/dev/null 2>&1 || true
  echo "| $setup (${#URLS[@]} node) | $subs | ${RATE:-10000} | $(field "$OUT/hop-$setup.json" delivered) | $(field "$OUT/hop-$setup.json" lost) | $(field "$OUT/hop-$setup.json" latency_us p50) | $(field "$OUT/hop-$setup.json" latency_us p99) | $(field "$OUT/hop-$setup.json" usage server_cpu_percent) | $(field "$OUT/hop-$setup.json" usage loadgen_cpu_percent) |"
  [ "${ONLY_HOP:-0}" = 1 ] && { stop_nodes; continue; }
  "$LG" sweep "${urls[@]}" --pub-url "${URLS[0]}" --subs "$subs" --size 64 --start-rate 1000 \
    --step-duration 3s --max-steps 10 --threads 2 --server-pid "${NODE_PIDS[0]}" \
    --json "$OUT/sweep-$setup.json" --quiet >/dev/null 2>&1 || true
  echo "| $setup sweep: max msg/s with no loss, p99 ≤ 50 ms | $subs | $(field "$OUT/sweep-$setup.json" max_rate) | $(field "$OUT/sweep-$setup.json" max_deliveries_per_sec) deliveries/s | | | | $(field "$OUT/sweep-$setup.json" server_cpu_percent) | $(field "$OUT/sweep-$setup.json" loadgen_cpu_percent) |"
  stop_nodes
done

[ "${ONLY_HOP:-0}" = 1 ] && exit 0
# Ingest: one node, its one subscriber (loadgen publish checks delivery), pipelined HTTP publishes.
start_nodes 1 --redis "redis://127.0.0.1:$REDIS_PORT"
before=$(metric "${URLS[0]}" fanout_backplane_published_total)
start=$(date +%s.%N)
"$LG" publish --url "${URLS[0]}" --count 200000 --size 64 --drain 1s --json "$OUT/ingest.json" >/dev/null 2>&1 || true
for _ in $(seq 50); do
  after=$(metric "${URLS[0]}" fanout_backplane_published_total)
  [ "$((after - before))" -ge 200000 ] && break
  sleep 0.1
done
end=$(date +%s.%N)
echo
echo "Ingest: $((after - before)) messages of 64 B published into Redis by one node in $(python3 -c "print(f'{$end - $start:.2f}')") s ($(python3 -c "print(f'{($after - $before) / ($end - $start):,.0f}')")/s, HTTP publishes accepted: $(field "$OUT/ingest.json" accepted_per_sec)/s)"
stop_nodes
