#!/usr/bin/env bash
# Side-by-side capacity comparison of fanout, the in-tree tokio peer (`loadgen peer`) and
# uWebSockets.js (loadgen/peers/uws), measured by loadgen. Each server runs alone, pinned to
# core 0; loadgen is pinned to core 1. Prints one markdown table (a row per figure, a column
# per server, and fanout's ratio to each peer), built from the JSON files it leaves in OUT.
# A capacity figure is marked † when loadgen's CPU % in that trial was at least the server's
# (or at least 90 %): there the client, not the server, may have been the limit.
#
# Usage: loadgen/compare.sh [--quick] [--tls] [--repeat N] [--servers "fanout tokio uws"] [--out DIR]
#   --quick / QUICK=1   short durations and smaller counts: a smoke run of the whole pipeline
#   --repeat N          run the whole set N times, servers interleaved in each round; the table
#                       shows each figure's median and its range (default: 1)
#   --servers LIST      which servers to run (default: "fanout tokio uws"); also `contig` and
#                       `contig-shared`, the reference peer (loadgen/peers/contig.rs) in its
#                       copy and shared modes: what one contiguous write per subscriber per
#                       turn achieves on this machine (opt-in: each server adds ~4 minutes)
#   --out DIR           where the JSON, the logs and table.md go (default: target/compare)
#   --tls / TLS=1       over wss://: a self-signed P-256 certificate for localhost/127.0.0.1 is
#                       made with openssl in OUT/tls, fanout gets --tls-cert/--tls-key, uWS
#                       runs as SSLApp with the same files, loadgen trusts it by --ca-file;
#                       servers without TLS (tokio, contig) are skipped (default: "fanout uws")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QUICK=${QUICK:-0}
TLS=${TLS:-0}
SERVERS=${SERVERS:-}
REPEAT=${REPEAT:-1}
OUT=${OUT:-target/compare}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --tls) TLS=1 ;;
    --servers) SERVERS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$SERVERS" ]; then
  if [ "$TLS" = 1 ]; then SERVERS="fanout uws"; else SERVERS="fanout tokio uws"; fi
fi

if [ "$QUICK" = 1 ]; then
  DUR=2s; STEP=1s; STEPS=5; CONNS=2000; BIG_SUBS=2000; DRAIN=1s
else
  DUR=10s; STEP=3s; STEPS=12; CONNS=19000; BIG_SUBS=10000; DRAIN=2s
fi
FIXED_RATE=50          # fanout 1000 subs x 50 msg/s: the fixed moderate load
CHAT_RATE=1000         # chat 200 rooms x 10 members, all rooms together
SOURCES=127.0.0.1-127.0.0.8

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
echo "== building (release)" >&2
cargo build --release -p fanout -p loadgen >&2
LG="$TARGET_DIR/release/loadgen"
FANOUT="$TARGET_DIR/release/fanout"
CONTIG="$TARGET_DIR/release/contig-peer"
mkdir -p "$OUT"
rm -f "$OUT"/*.json

SCHEME=ws; LG_TLS=(); FANOUT_TLS=()
if [ "$TLS" = 1 ]; then
  # CA:FALSE: openssl's default for -x509 is a CA certificate, which rustls' verifier refuses
  # as a server's own certificate.
  mkdir -p "$OUT/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null
  SCHEME=wss
  LG_TLS=(--ca-file "$OUT/tls/cert.pem")
  FANOUT_TLS=(--tls-cert "$OUT/tls/cert.pem" --tls-key "$OUT/tls/key.pem")
  export UWS_CERT="$OUT/tls/cert.pem" UWS_KEY="$OUT/tls/key.pem"
fi

if command -v taskset >/dev/null; then
  PIN_SERVER=(taskset -c 0); PIN_LG=(taskset -c 1)
else
  echo "compare.sh: taskset not found; running unpinned" >&2
  PIN_SERVER=(); PIN_LG=()
fi

wait_port() { # wait_port PORT PID
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    python3 - "$1" <<'PY' 2>/dev/null && return 0
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
PY
    sleep 0.1
  done
  return 1
}

start_server() { # start_server NAME PORT -> sets PID, or returns 1 (skipped)
  local name=$1 port=$2
  if [ "$TLS" = 1 ] && [ "$name" != fanout ] && [ "$name" != uws ]; then
    echo "== skipping $name: it has no TLS (--tls runs fanout and uws)" >&2; return 1
  fi
  case "$name" in
    fanout) "${PIN_SERVER[@]}" "$FANOUT" --listen "127.0.0.1:$port" "${FANOUT_TLS[@]}" >"$OUT/$name.log" 2>&1 & ;;
    tokio) "${PIN_SERVER[@]}" "$LG" peer --listen "127.0.0.1:$port" >"$OUT/$name.log" 2>&1 & ;;
    contig) "${PIN_SERVER[@]}" "$CONTIG" --mode copy --listen "127.0.0.1:$port" >"$OUT/$name.log" 2>&1 & ;;
    contig-shared)
      "${PIN_SERVER[@]}" "$CONTIG" --mode shared --listen "127.0.0.1:$port" >"$OUT/$name.log" 2>&1 & ;;
    uws)
      if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "== skipping uWebSockets.js: node/npm not found" >&2; return 1
      fi
      if [ ! -d loadgen/peers/uws/node_modules/uwebsockets ]; then
        echo "== installing uWebSockets.js (npm package uwebsockets)" >&2
        if ! (cd loadgen/peers/uws && npm install --no-audit --no-fund >&2); then
          echo "== skipping uWebSockets.js: npm install failed" >&2; return 1
        fi
      fi
      "${PIN_SERVER[@]}" node loadgen/peers/uws/server.js "127.0.0.1:$port" >"$OUT/$name.log" 2>&1 & ;;
    *) echo "== skipping $name: unknown server (fanout tokio uws contig contig-shared)" >&2; return 1 ;;
  esac
  PID=$!
  if ! wait_port "$port" "$PID"; then
    echo "== skipping $name: it did not start listening (log: $OUT/$name.log)" >&2
    kill "$PID" 2>/dev/null || true
    return 1
  fi
}

run_lg() { # run_lg NAME SCENARIO ARGS...
  local name=$1 scenario=$2; shift 2
  echo "== $name: loadgen $scenario $*" >&2
  local rc=0
  "${PIN_LG[@]}" "$LG" "$scenario" --url "$SCHEME://127.0.0.1:$PORT/" "${LG_TLS[@]}" --server-pid "$PID" \
      --json "$OUT/$name-$TAG-$ROUND.json" "$@" >"$OUT/$name-$TAG-$ROUND.txt" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "   (exit $rc; see $OUT/$name-$TAG-$ROUND.txt)" >&2
  fi
  sed -n '2,40p' "$OUT/$name-$TAG-$ROUND.txt" | sed 's/^/   /' >&2
}

# Every scenario gets a fresh server process, so what one leaves behind (a backlog still being
# flushed after a sweep, a grown heap) cannot affect the next.
scenario() { # scenario NAME TAG LOADGEN-ARGS...
  local name=$1; TAG=$2; shift 2
  PORT=$((PORT + 1))
  start_server "$name" "$PORT" || return 0
  run_lg "$name" "$@"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

PORT=9100
for ROUND in $(seq "$REPEAT"); do
[ "$REPEAT" -gt 1 ] && echo "== round $ROUND of $REPEAT" >&2
for name in $SERVERS; do
  scenario "$name" connect connect --conns "$CONNS" --connect-rate 0 --source "$SOURCES" --hold 2s
  scenario "$name" fanout1000 fanout --subs 1000 --rate "$FIXED_RATE" --size 64 --duration "$DUR" --drain "$DRAIN"
  scenario "$name" sweep1000 sweep --subs 1000 --size 64 --start-rate 100 --step-duration "$STEP" --max-steps "$STEPS" --drain "$DRAIN"
  # One message to 10 000 subscribers is 10 000 sends, 50-80 ms of one core here, so no server
  # can hold a 50 ms p99 at that size on this machine: this sweep's SLO is 500 ms.
  scenario "$name" sweepbig sweep --subs "$BIG_SUBS" --size 64 --start-rate 1 --slo 500ms --step-duration "$STEP" --max-steps "$STEPS" --drain "$DRAIN" --source "$SOURCES"
  scenario "$name" sweep16k sweep --subs 100 --size 16KiB --start-rate 100 --step-duration "$STEP" --max-steps "$STEPS" --drain "$DRAIN"
  scenario "$name" chat chat --rooms 200 --members 10 --rate "$CHAT_RATE" --size 64 --duration "$DUR" --drain "$DRAIN"
done
done

{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr); servers pinned to core 0, loadgen to core 1."
  echo "Command: loadgen/compare.sh $([ "$QUICK" = 1 ] && echo --quick) $([ "$TLS" = 1 ] && echo --tls) --repeat $REPEAT (durations: $DUR per run, $STEP per sweep step)"
  [ "$REPEAT" -gt 1 ] && echo "Each cell: the median of $REPEAT rounds (servers interleaved in each round), lowest–highest in brackets; ratios are of medians."
  echo
  python3 loadgen/compare_table.py "$OUT" $SERVERS
} | tee "$OUT/table.md"
