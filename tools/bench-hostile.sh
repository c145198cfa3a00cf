#!/usr/bin/env bash
# Measures revokd under hostile load on 127.0.0.1, as recorded in
# BENCHMARKS.md:
#   1. peak RSS while ten 100 MiB bodies arrive at once (1 MiB limit),
#   2. latency of valid requests with and without a bad-signature flood.
# Usage: tools/bench-hostile.sh   (env: FLOOD_RATE, DURATION, VALID_RATE)
# Every run is bounded: at most 10 x 100 MiB per body phase, and DURATION
# seconds (default 20) per latency phase.
set -euo pipefail

cd "$(dirname "$0")/.."
FLOOD_RATE=${FLOOD_RATE:-400}
DURATION=${DURATION:-20}
VALID_RATE=${VALID_RATE:-20}
CLIENT="python3 tools/bench_hostile.py"

cargo build --release --quiet
BINARY=target/release/revokd

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export BENCH_API_KEY=bench-api-key-not-used
export BENCH_APPWRITE_SECRET=bench-appwrite-secret-0123456789abcdef

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts revokd with the default limits (1 MiB body, 10 s request timeout)
# on a free loopback port. Sets PORT and SERVER_PID.
start_server() {
    PORT=$(free_port)
    local dir="$WORK/$1"
    mkdir -p "$dir"
    cat > "$dir/revokd.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"

[store]
url = "sqlite://$dir/revokd.db"

# Never called: no rule matches the events this script sends.
[targets.main]
endpoint = "http://127.0.0.1:9/v1"
project = "bench"
api_key = { env = "BENCH_API_KEY" }

[sources.appwrite]
kind = "appwrite"
signed_url = "http://127.0.0.1:$PORT/hooks/appwrite"
secrets = [{ env = "BENCH_APPWRITE_SECRET" }]

[[rules]]
name = "logout-on-password-change"
source = "appwrite"
event = "users.*.update.password"
user = { id = "/\$id" }
action = "delete_sessions"
target = "main"
TOML
    "$BINARY" --log-format json serve --config "$dir/revokd.toml" > "$dir/revokd.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null; then return 0; fi
        sleep 0.1
    done
    echo "revokd did not become healthy; log:" >&2
    cat "$dir/revokd.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

memory() {
    grep -E '^(VmHWM|VmRSS)' "/proc/$SERVER_PID/status" | tr -s ' \t' ' ' | tr '\n' ' '
    echo
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "revokd: $($BINARY --version)"

for mode in chunked length; do
    start_server "bodies-$mode"
    echo
    echo "== ten 100 MiB bodies at once, $mode, limit 1 MiB =="
    echo "idle:  $(memory)"
    $CLIENT --port "$PORT" bodies --count 10 --size-mib 100 --mode "$mode"
    echo "after: $(memory)"
    stop_server
    echo "rejection lines in the log:"
    grep 'request rejected' "$WORK/bodies-$mode/revokd.log" | sed 's/^/  /' || true
done

start_server latency
echo
echo "== valid requests at $VALID_RATE/s for ${DURATION}s, no flood =="
$CLIENT --port "$PORT" latency --rate "$VALID_RATE" --duration "$DURATION" --tag quiet
echo
echo "== valid requests at $VALID_RATE/s for ${DURATION}s, bad signatures at $FLOOD_RATE/s =="
$CLIENT --port "$PORT" flood --rate "$FLOOD_RATE" --duration "$DURATION" > "$WORK/flood.json" &
FLOOD_PID=$!
$CLIENT --port "$PORT" latency --rate "$VALID_RATE" --duration "$DURATION" --tag flood
wait "$FLOOD_PID"
echo "flood: $(cat "$WORK/flood.json")"
echo "memory: $(memory)"
stop_server
echo "rejection lines in the log:"
grep 'request rejected' "$WORK/latency/revokd.log" | sed 's/^/  /' || true
