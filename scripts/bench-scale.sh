#!/usr/bin/env bash
# Scale on one instance (issue 15): as many WebSocket sessions as this machine lets one
# process hold (target 100 000), from several 127.x source addresses. A benchmark, not a
# test: bounded (sessions, 20 s idle, 5 broadcasts, 5 s per tier), loopback only.
#
#   scripts/bench-scale.sh            # writes target/bench/scale-<UTC time>.md
#
# Rows (stomp-load scale, then stomp-load idle for the relay):
# - stomp-relay, simple broker: RSS per session, connect rate, CPU while idle with
#   heart-beats every 10 s, one broadcast to every session (time to the last delivery),
#   sustained deliveries/s and server CPU per delivery at 100, 1 000, 10 000 and all
#   subscribers;
# - RabbitMQ Web-STOMP with the same run, side by side;
# - 3 stomp-relay instances in shared relay mode on ActiveMQ holding the sessions: the
#   broker connections per instance (constant: 2).
#
# Environment: SCALE_SESSIONS [100000, lowered to what the open-files limit allows],
# SCALE_SOURCES [127.0.0.1-127.0.0.8], SCALE_PEER_SESSIONS [same as SCALE_SESSIONS].
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bench-scale] %s\n' "$*" >&2; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/release
OUT=target/bench/scale-$(date -u +%Y%m%dT%H%M).md
mkdir -p target/bench

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
want=${SCALE_SESSIONS:-100000}
# Each side (server, tool) holds one descriptor per session plus a few hundred of its own.
fit=$((limit - 500))
sessions=$want
if ((sessions > fit)); then
    log "open-files limit is $limit per process (hard limit; raising it needs CAP_SYS_RESOURCE): $fit sessions instead of $want"
    sessions=$fit
fi
peer_sessions=${SCALE_PEER_SESSIONS:-$sessions}
sources=${SCALE_SOURCES:-127.0.0.1-127.0.0.8}

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
listening() { ss -ltnH "( sport = :$1 )" | grep -q .; }

log "building stomp-relay and stomp-load (release)"
cargo build --release -q -p stomp-relay -p stomp-load --bins
listening 15674 && listening 61613 || scripts/brokers.sh up

# start NAME HTTP_PORT ARGS... ; sets $server_pid
start() {
    local name=$1 http=$2
    shift 2
    "$BIN/stomp-relay" --listen "127.0.0.1:$http" --max-connections "$((sessions + 100))" "$@" \
        >"target/bench/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do listening "$http" && return 0; sleep 0.1; done
    log "$name did not start; see target/bench/$name.log"
    exit 1
}

scale() { # scale LABEL URL PID SESSIONS ARGS...
    local label=$1 url=$2 pid=$3 n=$4
    shift 4
    timeout 900 "$BIN/stomp-load" scale --label "$label" --url "$url" --server-pid "$pid" \
        --sessions "$n" --sources "$sources" --tiers "100,1000,10000,$n" "$@"
}

rows=()
log "stomp-relay, simple broker: $sessions sessions"
start scale-simple 18201
mapfile -t simple < <(scale "stomp-relay (simple broker)" ws://127.0.0.1:18201/ws "$server_pid" "$sessions")
rows+=("${simple[@]}")
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true

rmq=$(ss -ltnpH '( sport = :15674 )' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)
rmq_limit=$(awk '/Max open files/ { print $4 }' "/proc/$rmq/limits")
rn=$((peer_sessions < rmq_limit - 500 ? peer_sessions : rmq_limit - 500))
log "RabbitMQ Web-STOMP: $rn sessions (its open-files limit is $rmq_limit)"
mapfile -t peer < <(scale "RabbitMQ Web-STOMP" ws://127.0.0.1:15674/ws "$rmq" "$rn" \
    --login guest --passcode guest --idle 10 --broadcasts 3 --concurrency 50 --connect-timeout 60 || true)
((${#peer[@]})) || peer=("| RabbitMQ Web-STOMP | $rn sessions | run failed: see the log above | | | |")
rows+=("${peer[@]}")

log "3 stomp-relay instances, shared relay mode on ActiveMQ: $sessions sessions over the three"
relay=(--broker relay --relay stomp://127.0.0.1:61613 --dialect activemq --relay-mode shared
    --relay-login admin --relay-passcode admin --system-login admin --system-passcode admin)
inst=()
for i in 1 2 3; do start "scale-shared-$i" "1821$i" "${relay[@]}"; inst+=("$server_pid"); done
sleep 1
conns() { # established connections of PID to ActiveMQ's STOMP port
    ss -tnpH state established '( dport = :61613 )' | grep -c "pid=$1," || true
}
before=$(for p in "${inst[@]}"; do conns "$p"; done | paste -sd/)
timeout 600 "$BIN/stomp-load" idle --url ws://127.0.0.1:18211/ws,ws://127.0.0.1:18212/ws,ws://127.0.0.1:18213/ws \
    --server-pid "${inst[0]}" --sessions "$sessions" --destination /topic/scale --hold 10 \
    --format kv >target/bench/scale-shared-idle.kv &
idle_pid=$!
open_sessions() { # sessions the three instances hold now
    for port in 18211 18212 18213; do
        curl -s "http://127.0.0.1:$port/metrics" | awk '/^stomp_sessions_current / { print $2 }'
    done | awk '{ s += $1 } END { print s + 0 }'
}
for _ in $(seq 600); do
    (($(open_sessions) >= sessions)) && break
    sleep 0.5
done
held=$(open_sessions)
during=$(for p in "${inst[@]}"; do conns "$p"; done | paste -sd/)
wait "$idle_pid" || true
rows+=("| 3 stomp-relay instances, shared relay on ActiveMQ | $held sessions held (one destination) | broker connections per instance: $before with no sessions, $during with $held | $(sed -E 's/.*open_seconds=([0-9.]+).*/opened in \1 s/' target/bench/scale-shared-idle.kv) | | |")

{
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -r)), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD); command: \`scripts/bench-scale.sh\` (open-files limit $limit per process)."
    echo
    echo "| server | run | memory | connect rate / figure | idle / ratio | broadcast / lost |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$OUT"
log "table: $OUT"
