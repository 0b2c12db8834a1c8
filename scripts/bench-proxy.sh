#!/usr/bin/env bash
# The application proxy benchmark (issue 14), bounded (about 40 s): the Node back end
# of std-host/tests/interop/backend.mjs behind a release stomp-relay with
# --app-proxy, asked directly over HTTP and through stomp-relay (SEND -> RECEIPT) by
# std-host/tests/interop/bench-app-proxy.mjs in the same run. Prints one key=value line
# per run and, with BENCH_TABLE=1, the markdown rows scripts/bench.sh puts in its table.
# Needs node and `npm ci --prefix std-host/tests/interop`. Loopback only.
#   BENCH_CONCURRENCY ["1 16"]  concurrent round-trip loops per run (each side)
#   BENCH_SECONDS [8]       measured seconds per side
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
INTEROP=std-host/tests/interop
[ -d "$INTEROP/node_modules/express" ] || npm ci --prefix "$INTEROP" --no-audit --no-fund >&2
cargo build --release -q -p stomp-relay >&2
mkdir -p target/bench

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

BACKEND_ADDR=127.0.0.1:0 node "$INTEROP/backend.mjs" >target/bench/backend.log 2>&1 &
pids+=($!)
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' target/bench/backend.log)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "backend.mjs did not start; see target/bench/backend.log" >&2; exit 1; }

http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/stomp-relay" --listen "127.0.0.1:$http" --app-prefix /app/ \
    --app-proxy "/app/**=http://127.0.0.1:$port/app" >target/bench/proxy-relay.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
# One run unloaded (the latency a single client sees), one with concurrent loops (the
# round-trip rate); the back end's /stats figures cover every call so far.
for c in ${BENCH_CONCURRENCY:-1 16}; do
    line=$(BENCH_CONCURRENCY=$c BENCH_WS_URL="ws://127.0.0.1:$http/ws" BACKEND_URL="http://127.0.0.1:$port" \
        timeout 120 node "$INTEROP/bench-app-proxy.mjs")
    echo "$line"
    if [ -n "${BENCH_TABLE:-}" ]; then
        printf '| app proxy, SEND -> RECEIPT via /app/echo, %s concurrent | %s/s | %s / %s ms | %s/s, %s / %s ms | +%s / +%s ms | %s / %s ms |\n' \
            "$c" "$(kv "$line" relay_rps)" "$(kv "$line" relay_p50_ms)" "$(kv "$line" relay_p99_ms)" \
            "$(kv "$line" direct_rps)" "$(kv "$line" direct_p50_ms)" "$(kv "$line" direct_p99_ms)" \
            "$(kv "$line" added_p50_ms)" "$(kv "$line" added_p99_ms)" \
            "$(kv "$line" backend_p50_ms)" "$(kv "$line" backend_p99_ms)"
    fi
done
