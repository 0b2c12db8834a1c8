#!/usr/bin/env bash
# Where the CPU of a relay fan-out goes (issue 16), bounded (about 1 minute): the same
# run as scripts/bench.sh's relay rows (1 publisher, 100 subscribers split over two
# stomp-relay instances on ActiveMQ, 256 B bodies, publisher window BENCH_WINDOW) for
# clients directly on ActiveMQ, relay per-session and relay shared, and for each setup
# the CPU every process spent per delivery (broker, both relays, the load tool; user and
# kernel time from /proc), the cores the whole run kept busy, and the system calls per
# delivery of the broker and of the first relay (perf stat tracepoints, mid-run).
# The tcp-proxy setup puts two single-process nginx stream proxies (Debian nginx with
# libnginx-mod-stream) where the relays go: each client connection is forwarded byte
# for byte to its own broker connection, the cheapest per-session relay there can be,
# so its row is the floor of the extra hop (the broker's and the kernel's share).
# BENCH_PERF_RECORD=1 also samples the first relay's call stacks (perf record) and
# prints its hottest symbols. Needs the brokers and perf (Debian linux-perf).
#
#   BENCH_WINDOW [100]   publisher window (messages ahead of the slowest subscriber)
#   BENCH_DURATION [8]   measured seconds per setup
#   BENCH_WORKER_THREADS [unset]  --worker-threads of both relays (unset: one per core)
#   BENCH_RELAY_ARGS [unset]  more flags for both relays, e.g. "--heartbeat 0,0"
#   BENCH_RELAY_NICE [0]  niceness of both relays: above 0 the broker wins the cores,
#                         to see how much of its CPU per delivery is lost to preemption
#   BENCH_SETUPS ["direct tcp-proxy per-session shared"]  the rows (direct first: the
#                         ratios are against it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/tcp-proxy.sh
. scripts/tcp-proxy.sh

WINDOW=${BENCH_WINDOW:-100}
SETUPS=${BENCH_SETUPS:-direct tcp-proxy per-session shared}
DURATION=${BENCH_DURATION:-8}
SUBS=100
BIN=${CARGO_TARGET_DIR:-target}/profiling
AMQ_TCP=stomp://127.0.0.1:61613
EVENTS=syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait
TMP=$(mktemp -d)

log() { printf '==> %s\n' "$*" >&2; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

case " $SETUPS " in *" tcp-proxy "*) tcp_proxy_ready || exit 1 ;; esac
command -v perf >/dev/null || { log "perf is missing: apt-get install linux-perf"; exit 1; }
perf stat -e syscalls:sys_enter_write -- true >/dev/null 2>&1 ||
    { log "perf cannot read syscall tracepoints here (run as root)"; exit 1; }
scripts/brokers.sh up activemq >&2
log "building stomp-relay and stomp-load (profile 'profiling': release with symbols)"
cargo build -q --profile profiling -p stomp-relay -p stomp-load

amq_pid() { cat /var/run/activemq/main.pid; }
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # user, system (clock ticks)
HZ=$(getconf CLK_TCK)

# await_listener PID PORT WHAT LOG... : PID (a relay or proxy) joins relays once PORT
# accepts; exits with WHAT and its logs when it does not within 10 s
await_listener() {
    local pid=$1 port=$2 what=$3
    shift 3
    pids+=("$pid")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { relays+=("$pid"); return; }
        sleep 0.1
    done
    log "$what did not start: $(cat "$@" 2>/dev/null)"
    exit 1
}

start_relay() { # start_relay HTTP TCP MODE ; appends the pid to relays
    nice -n "${BENCH_RELAY_NICE:-0}" "$BIN/stomp-relay" --listen "127.0.0.1:$1" --tcp-listen "127.0.0.1:$2" --broker relay \
        --relay "$AMQ_TCP" --dialect activemq --relay-mode "$3" --relay-login admin \
        --relay-passcode admin --system-login admin --system-passcode admin \
        ${BENCH_WORKER_THREADS:+--worker-threads "$BENCH_WORKER_THREADS"} ${BENCH_RELAY_ARGS:-} \
        >"$TMP/relay-$1.log" 2>&1 &
    await_listener $! "$2" "relay on :$1" "$TMP/relay-$1.log"
}

start_proxy() { # start_proxy PORT ; one nginx process forwarding PORT to ActiveMQ
    local dir="$TMP/nginx-$1"
    tcp_proxy_conf "$dir" "$1" "${AMQ_TCP#stomp://}"
    nice -n "${BENCH_RELAY_NICE:-0}" nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
    await_listener $! "$1" "nginx on :$1" "$dir/out.log" "$dir/error.log"
}

# syscalls PID FILE: counts of $EVENTS for PID over the middle of the run
syscalls() {
    (sleep $((DURATION / 4)) && perf stat -x, -e "$EVENTS" -p "$1" -o "$2" -- sleep $((DURATION / 2))) \
        >/dev/null 2>&1 &
}
count() { awk -F, -v e="syscalls:sys_enter_$2" '$3 == e { print $1 }' "$1"; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "n/a"), a / b }'; }

rows=()
direct_rate=""
for setup in $SETUPS; do
    log "$setup: $SUBS subscribers, window $WINDOW, ${DURATION}s"
    amq=$(amq_pid)
    relays=()
    if [ "$setup" = direct ]; then
        url=$AMQ_TCP sub=$AMQ_TCP dest=/topic/bench
    elif [ "$setup" = tcp-proxy ]; then
        start_proxy 18714
        start_proxy 18715
        url=stomp://127.0.0.1:18714 sub=stomp://127.0.0.1:18714,stomp://127.0.0.1:18715
        dest=/topic/bench
    else
        start_relay 18081 18614 "$setup"
        start_relay 18082 18615 "$setup"
        sleep 1 # system sessions connect upstream
        url=stomp://127.0.0.1:18614 sub=stomp://127.0.0.1:18614,stomp://127.0.0.1:18615
        dest=/sub/bench
    fi
    if ((${#relays[@]})); then syscalls "${relays[0]}" "$TMP/relay.stat"; fi
    syscalls "$amq" "$TMP/amq.stat"
    procs=("$amq" "${relays[@]}")
    declare -A u0 s0
    for p in "${procs[@]}"; do read -r u0[$p] s0[$p] < <(ticks "$p"); done
    line=$(timeout 120 "$BIN/stomp-load" fanout --label "$setup" --url "$url" --sub-url "$sub" \
        --subscribers "$SUBS" --duration "$DURATION" --destination "$dest" \
        --window "$WINDOW" --batch 16 --login admin --passcode admin \
        --server-pid "$(IFS=,; echo "${procs[*]}")" --format kv)
    declare -A du ds
    for p in "${procs[@]}"; do
        read -r u s < <(ticks "$p")
        du[$p]=$((u - u0[$p]))
        ds[$p]=$((s - s0[$p]))
    done
    if [ "$setup" != direct ] && [ "${BENCH_PERF_RECORD:-0}" = 1 ]; then
        log "$setup: sampling the first relay's stacks for 4 s"
        (timeout 30 "$BIN/stomp-load" fanout --label rec --url "$url" --sub-url "$sub" \
            --subscribers "$SUBS" --duration 6 --destination "$dest" --window "$WINDOW" \
            --batch 16 --format kv >/dev/null) &
        rec=$!
        sleep 1
        perf record -F 999 -g -p "${relays[0]}" -o "$TMP/perf.data" -- sleep 4 >/dev/null 2>&1
        wait "$rec" || true
        { perf report -i "$TMP/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | cut -c1-150 | head -25 >&2; } || true
    fi
    wait_for_stats=0
    while [ ! -s "$TMP/amq.stat" ] && ((wait_for_stats++ < 50)); do sleep 0.2; done
    for p in "${relays[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done

    kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    rate=$(kv deliveries_per_s)
    delivered=$(kv delivered)
    lost=$(kv lost)
    tool_s=$(kv tool_cpu_s)
    [ "$setup" = direct ] && direct_rate=$rate
    us() { awk -v t="$1" -v hz="$HZ" -v n="$delivered" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'; }
    broker_us=$(us $((du[$amq] + ds[$amq])))
    relay_t=0 relay_sys=0
    for p in "${relays[@]}"; do
        relay_t=$((relay_t + du[$p] + ds[$p]))
        relay_sys=$((relay_sys + ds[$p]))
    done
    relay_us=$( ((${#relays[@]})) && us "$relay_t" || echo -)
    relay_kernel=$( ((relay_t > 0)) && awk -v a="$relay_sys" -v b="$relay_t" 'BEGIN { printf "%.0f%%", 100 * a / b }' || echo -)
    tool_us=$(awk -v t="$tool_s" -v n="$delivered" 'BEGIN { printf "%.2f", t * 1e6 / n }')
    cores=$(awk -v b="$(((du[$amq] + ds[$amq] + relay_t)))" -v hz="$HZ" -v t="$tool_s" -v d="$DURATION" \
        'BEGIN { printf "%.2f", (b / hz + t) / d }')
    # Deliveries in the perf window: the run's rate times the window.
    window_n=$(awk -v r="$rate" -v d="$DURATION" 'BEGIN { print r * int(d / 2) }')
    amq_calls="$(per "$(count "$TMP/amq.stat" write)" "$window_n") write, $(per "$(count "$TMP/amq.stat" futex)" "$window_n") futex"
    relay_calls=-
    if [ -s "$TMP/relay.stat" ]; then
        # The first relay serves half the subscribers.
        half=$(awk -v n="$window_n" 'BEGIN { print n / 2 }')
        relay_calls="$(per "$(count "$TMP/relay.stat" sendto)" "$half") send, $(per "$(count "$TMP/relay.stat" recvfrom)" "$half") recv, $(per "$(count "$TMP/relay.stat" epoll_wait)" "$half") epoll_wait"
    fi
    ratio=$(awk -v a="$rate" -v b="$direct_rate" 'BEGIN { printf "%.2fx", a / b }')
    rows+=("| $setup | $(awk -v r="$rate" 'BEGIN { printf "%.1f k", r / 1000 }') | $ratio | $lost | $broker_us | $relay_us ($relay_kernel kernel) | $tool_us | $cores of $(nproc) | $amq_calls | $relay_calls |")
    rm -f "$TMP/amq.stat" "$TMP/relay.stat"
    unset u0 s0 du ds
done

echo "Relay fan-out profile, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), window $WINDOW, ${DURATION}s per setup, $SUBS subscribers (clients over tcp), relay worker threads ${BENCH_WORKER_THREADS:-one per core}:"
echo
echo "| setup | deliveries/s | vs direct | lost | broker CPU us/delivery | relays CPU us/delivery | load tool CPU us/delivery | cores busy | broker syscalls/delivery | first relay syscalls/delivery |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
