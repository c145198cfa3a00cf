#!/usr/bin/env bash
# Reruns the throughput, latency and delivery benchmarks of BENCHMARKS.md
# and prints their Markdown tables. Everything runs on 127.0.0.1.
#
# Usage: tools/bench.sh            (env: DURATION seconds per run, default 10;
#                                   KEEP=1 keeps the work directory)
#
# 1. Closed-loop ingest: 1 KiB bodies at 1, 16, 64 and 256 connections and
#    16 KiB bodies at 64, each against the baseline, then revokd with
#    standard-webhooks and with appwrite requests, one after the other.
# 2. revokd with sqlite_synchronous = "normal" (less durable), once, and
#    with rules that match no event (ingest without delivery), once.
# 3. Open-loop ack latency at half of revokd's closed-loop rate.
# 4. Delivery: 5,000 events/s open loop, whose backlog must stay flat, and
#    a backlog of events drained into the Appwrite simulator.
# 5. 2xx-to-call latency at 1,000 events/s.
# 6. The Appwrite simulator alone, to show it is not the bottleneck.
#
# Every run is bounded by DURATION and by a request count. revokd stops
# after each run, and the baseline and simulator stop by themselves after
# 15 minutes at the latest.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}

cargo build --release --quiet --features bench-tools --bin revokd --bin revokd-load
REVOKD=target/release/revokd
LOAD=target/release/revokd-load

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_healthy() {
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$1/healthz" > /dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not become healthy" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

# baseline LABEL SIZE CONNECTIONS
baseline() {
    local port
    port=$(free_port)
    "$LOAD" baseline --listen "127.0.0.1:$port" > "$WORK/$1.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$port"
    echo "== $1"
    "$LOAD" load --target "127.0.0.1:$port" --kind standard-webhooks --body-bytes "$2" \
        --connections "$3" --duration "$DURATION" --label "$1" --json "$WORK/$1.json"
    stop_server
}

# revokd LABEL KIND SIZE CONNECTIONS [more revokd-load options]
revokd() {
    local label=$1 kind=$2 size=$3 connections=$4
    shift 4
    echo "== $label"
    "$LOAD" revokd --binary "$REVOKD" --workdir "$WORK/$label" --kind "$kind" \
        --body-bytes "$size" --connections "$connections" --duration "$DURATION" \
        --label "$label" --json "$WORK/$label.json" "$@"
    rm -f "$WORK/$label"/revokd.db*
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "revokd: $($REVOKD --version), $(rustc --version)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo

for scenario in 1024:1 1024:16 1024:64 1024:256 16384:64; do
    size=${scenario%%:*}
    connections=${scenario##*:}
    baseline "baseline-$size-$connections" "$size" "$connections"
    revokd "sw-$size-$connections" standard-webhooks "$size" "$connections"
    revokd "aw-$size-$connections" appwrite "$size" "$connections"
done

revokd "sw-1024-64-normal" standard-webhooks 1024 64 --synchronous normal
revokd "sw-1024-64-ignored" standard-webhooks 1024 64 --ignore-events

HALF_RATE=$(python3 -c "import json; print(max(1, round(json.load(open('$WORK/sw-1024-64.json'))['load']['ok_per_s'] / 2)))")
revokd "open-half-rate" standard-webhooks 1024 64 --rate "$HALF_RATE" --drain-timeout 30

revokd "delivery-5000" standard-webhooks 1024 64 --rate 5000 --drain-timeout 30

revokd "delivery-drain" standard-webhooks 1024 64 --requests 10000 --drain-timeout 60

revokd "e2e-1000" standard-webhooks 1024 16 --rate 1000 --drain-timeout 30

SIMULATOR_PORT=$(free_port)
"$REVOKD" simulate-appwrite --listen "127.0.0.1:$SIMULATOR_PORT" --project bench \
    --key bench-api-key-0123456789abcdef > "$WORK/simulator.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$SIMULATOR_PORT/v1"; then break; fi
    sleep 0.1
done
echo "== simulator-alone"
"$LOAD" load --target "127.0.0.1:$SIMULATOR_PORT" --kind simulator --connections 8 \
    --duration "$DURATION" --label simulator-alone --json "$WORK/simulator-alone.json"
stop_server

echo
python3 tools/bench_report.py "$WORK"
