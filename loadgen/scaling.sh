#!/usr/bin/env bash
# The figures of fanout's optional costs, each beside its baseline in one run (release builds,
# a fresh server per row):
#   threads  fixed load (1 000 subs × 50 msg/s × 64 B) CPU µs per delivery and the sweep
#            maximum (1 000 subs × 64 B) with --threads 1 and --threads 2, server and loadgen
#            (--threads 2) unpinned: on a 2-core machine the two loops share the cores with the
#            client, so read the sweep as what the machine does, and CPU/delivery as the cost
#   auth     handshakes/s and server CPU µs per handshake with no token, an HS256 token and an
#            ES256 token (server pinned to core 0, loadgen to core 1)
#
# Usage: loadgen/scaling.sh [threads] [auth]   (default: both)
#   OUT=DIR (default target/scaling); CONNS=N connections per auth row (default 10 000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-target/scaling}
PARTS=${*:-threads auth}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release -p fanout -p loadgen >&2
FANOUT="$TARGET_DIR/release/fanout"
LG="$TARGET_DIR/release/loadgen"
mkdir -p "$OUT"
PORT=9300

start() { # start PIN... -- FANOUT-ARGS...: sets PID and URL
  local pin=()
  while [ "$1" != "--" ]; do pin+=("$1"); shift; done
  shift
  PORT=$((PORT + 1))
  "${pin[@]}" "$FANOUT" --listen "127.0.0.1:$PORT" "$@" >"$OUT/fanout-$PORT.log" 2>&1 &
  PID=$!
  URL="ws://127.0.0.1:$PORT/"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fanout did not start (log: $OUT/fanout-$PORT.log)" >&2
  exit 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

field() { # field FILE KEY...
  python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    doc = doc.get(k) if isinstance(doc, dict) else None
if isinstance(doc, dict):  # failures by cause
    doc = sum(v for v in doc.values() if isinstance(v, int))
print("–" if doc is None else (f"{doc:,.2f}" if isinstance(doc, float) else f"{doc:,}"))
PY
}

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ " $PARTS " == *" threads "* ]]; then
  echo
  echo "| fanout | fixed load: server CPU µs / delivery | fixed load: p99 µs | sweep 1 000 subs × 64 B: max deliveries/s | server CPU % at max | loadgen CPU % at max |"
  echo "|---|---|---|---|---|---|"
  for t in 1 2; do
    start -- --threads "$t"
    "$LG" fanout --url "$URL" --subs 1000 --rate 50 --size 64 --duration 10s --threads 2 \
      --server-pid "$PID" --json "$OUT/fixed-$t.json" --quiet >/dev/null 2>&1 || true
    stop
    start -- --threads "$t"
    "$LG" sweep --url "$URL" --subs 1000 --size 64 --start-rate 100 --step-duration 3s \
      --max-steps 12 --threads 2 --server-pid "$PID" --json "$OUT/sweep-$t.json" --quiet \
      >/dev/null 2>&1 || true
    stop
    echo "| --threads $t | $(field "$OUT/fixed-$t.json" server_cpu_us_per_delivery) | $(field "$OUT/fixed-$t.json" latency_us p99) | $(field "$OUT/sweep-$t.json" max_deliveries_per_sec) | $(field "$OUT/sweep-$t.json" server_cpu_percent) | $(field "$OUT/sweep-$t.json" loadgen_cpu_percent) |"
  done
fi

if [[ " $PARTS " == *" auth "* ]]; then
  # Keys and tokens for the run: HS256 with a random secret, ES256 with a fresh P-256 key.
  KEYS="$OUT/keys"
  mkdir -p "$KEYS"
  SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '=+/')
  openssl ecparam -name prime256v1 -genkey -noout -out "$KEYS/es256.key" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$KEYS/es256.key" -out "$KEYS/es256.pk8"
  openssl ec -in "$KEYS/es256.key" -pubout -out "$KEYS/es256.pub" 2>/dev/null
  tokens=$(python3 - "$SECRET" "$KEYS/es256.pk8" <<'PY'
import base64, hashlib, hmac, json, subprocess, sys, time
secret, key = sys.argv[1], sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
claims = b64(json.dumps({"exp": int(time.time()) + 3600, "channels": ["*"]}).encode())
def token(alg, sign):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{head}.{claims}.{b64(sign(f'{head}.{claims}'.encode()))}"
hs = token("HS256", lambda m: hmac.new(secret.encode(), m, hashlib.sha256).digest())
def es(m):
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=m, capture_output=True, check=True).stdout
    # DER ECDSA signature -> the 64-byte r||s JWS wants.
    i = 4 if der[1] < 0x80 else 5
    rlen = der[i - 1]; r = der[i:i + rlen]; s_ = der[i + rlen + 2:]
    return r.lstrip(b"\0").rjust(32, b"\0") + s_.lstrip(b"\0").rjust(32, b"\0")
print(hs, token("ES256", es))
PY
)
  read -r HS ES <<<"$tokens"
  echo
  echo "| upgrade | handshakes/s | server CPU µs / handshake | failed |"
  echo "|---|---|---|---|"
  for kind in none hs256 es256; do
    case $kind in
      none) start taskset -c 0 -- ; token=() ;;
      hs256) start taskset -c 0 -- --auth-hmac-secret "$SECRET"; token=(--token "$HS") ;;
      es256) start taskset -c 0 -- --auth-public-key "$KEYS/es256.pub"; token=(--token "$ES") ;;
    esac
    taskset -c 1 "$LG" connect --url "$URL" --conns "${CONNS:-10000}" --connect-rate 0 \
      --source 127.0.0.1-127.0.0.4 --hold 1s "${token[@]}" --server-pid "$PID" \
      --json "$OUT/auth-$kind.json" --quiet >/dev/null 2>&1 || true
    stop
    echo "| $kind | $(field "$OUT/auth-$kind.json" handshakes_per_sec) | $(field "$OUT/auth-$kind.json" server_cpu_us_per_handshake) | $(field "$OUT/auth-$kind.json" failures) |"
  done
fi
