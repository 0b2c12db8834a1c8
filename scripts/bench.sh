#!/usr/bin/env bash
# The whole benchmark comparison in one command (issues 4 and 5), bounded in time
# (about 12 minutes on a 2-core machine):
#   - stomp-relay (simple broker, release build) vs RabbitMQ Web-STOMP: fan-out
#     1 publisher -> 100 subscribers, 256 B bodies, max sustained deliveries/s and
#     p50/p99 latency at 20k deliveries/s; RSS per idle WebSocket session;
#   - relay mode on ActiveMQ: 100 subscribers split over two stomp-relay instances,
#     per-session and shared mode, vs the same clients connected directly to ActiveMQ,
#     with the broker connections each setup holds, and a byte-forwarding nginx in the
#     relays' place (scripts/tcp-proxy.sh), the floor of any per-session relay;
#   - the application proxy: round trips through stomp-relay vs straight to the back
#     end (scripts/bench-proxy.sh).
# Every peer is measured in the same run, so the ratios are read off one run.
# Needs the brokers (scripts/brokers.sh up, called here when they are not listening).
# Not part of scripts/test.sh: it is a measurement, not a test.
#
# Environment knobs (defaults in brackets):
#   BENCH_REPEAT [3]         max-rate runs per target; the median is reported
#   BENCH_DURATION [10]      measured seconds per fan-out run
#   BENCH_RATE [20000]       deliveries/s of the latency runs
#   BENCH_EXTRA_RATES [50000]  further latency rates, stomp-relay only (above what
#                            RabbitMQ sustains here, where it would only measure a backlog)
#   BENCH_IDLE [10000]       idle sessions held against stomp-relay
#   BENCH_PEER_IDLE [2000]   idle sessions against RabbitMQ and ActiveMQ (they use
#                            ~20x the memory per session; per-session cost is linear)
#   BENCH_RELAY_WINDOWS ["64 100"]  publisher windows of the relay comparison: the
#                            publisher stays at most this many messages ahead of the
#                            slowest subscriber; 64 is the pacing of the simple-broker rows,
#                            100 the pacing issue 16 measured ActiveMQ at (it runs faster
#                            with more in flight); direct and relays share each window
#   BENCH_RELAY_WORKERS ["auto 1"]  --worker-threads of the relay instances, each a row:
#                            auto is tokio's one per core; 1 keeps each instance on one
#                            thread (two instances + broker + tool on 2 cores, issue 16)
#   BENCH_TCP_PROXY [1]      0 leaves out the byte-forwarding proxy row (it installs
#                            nginx-light and libnginx-mod-stream when missing)
#   BENCH_RELAY_TRANSPORT [tcp]  how the fan-out clients reach the relay instances
#                            (tcp matches the direct-ActiveMQ clients; ws is the browser path)
#   BENCH_OUT [target/bench/bench-<UTC date>.md]  where the markdown table is written
#   BENCH_NICE [unset]       e.g. -10: run the servers, the tool AND the brokers at this
#                            priority (every thread; the brokers are put back at the end),
#                            for a machine shared with other jobs; peers stay on equal terms
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/tcp-proxy.sh
. scripts/tcp-proxy.sh

REPEAT=${BENCH_REPEAT:-3}
DURATION=${BENCH_DURATION:-10}
RATE=${BENCH_RATE:-20000}
EXTRA_RATES=${BENCH_EXTRA_RATES:-50000}
IDLE=${BENCH_IDLE:-10000}
PEER_IDLE=${BENCH_PEER_IDLE:-2000}
RELAY_TRANSPORT=${BENCH_RELAY_TRANSPORT:-tcp}
RELAY_WINDOWS=${BENCH_RELAY_WINDOWS:-64 100}
RELAY_WORKERS=${BENCH_RELAY_WORKERS:-auto 1}
TCP_PROXY=${BENCH_TCP_PROXY:-1}
STAMP=$(date -u +%Y-%m-%dT%H:%MZ)
OUT=${BENCH_OUT:-target/bench/bench-$(date -u +%Y%m%dT%H%M).md}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release"
RABBIT_WS=ws://127.0.0.1:15674/ws
AMQ_TCP=stomp://127.0.0.1:61613
SUBS=100

log() { printf '==> %s\n' "$*" >&2; }

pids=()
reniced=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${reniced[@]}"; do renice_all 0 "$p"; done
}
# renice_all PRIO PID: every thread of PID (nice is per thread on Linux).
renice_all() {
    local t
    for t in /proc/"$2"/task/*; do renice -n "$1" -p "${t##*/}" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

listening() { ss -ltnH "( sport = :$1 )" | grep -q .; }
# A broker restarted by someone else's test comes back within seconds; wait for it
# rather than recording a failed run.
wait_port() {
    for _ in $(seq 120); do listening "$1" && return 0; sleep 0.5; done
    log "nothing listens on port $1"
}
port_of() { sed -E 's#^[a-z]+://[^:]+:([0-9]+).*#\1#' <<<"$1"; }

log "building stomp-relay and stomp-load (release)"
cargo build --release -q -p stomp-relay -p stomp-load --bins

if ! listening 15674 || ! listening 61613; then
    log "brokers not listening: scripts/brokers.sh up"
    scripts/brokers.sh up
fi
# ActiveMQ's JVM, the one serving STOMP on 61613 (its pid changes when someone restarts
# the broker: looked up per use). Not the first java process: the cluster tests' second
# ActiveMQ pair runs beside it, and measuring that one read 0.01 us per delivery.
amq_pid() {
    ss -ltnpH '( sport = :61613 )' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

if [ -n "${BENCH_NICE:-}" ]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null # the servers and the tool inherit it
    for b in "$(amq_pid)" "$(ss -ltnpH '( sport = :15674 )' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)"; do
        [ -n "$b" ] && { renice_all "$BENCH_NICE" "$b"; reniced+=("$b"); }
    done
fi

# The servers started here inherit this limit; 10k idle sessions need more than 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 || true

# start_server NAME HTTP_PORT TCP_PORT ARGS... ; sets $server_pid
start_server() {
    local name=$1 http=$2 tcp=$3
    shift 3
    "$BIN/stomp-relay" --listen "127.0.0.1:$http" --tcp-listen "127.0.0.1:$tcp" "$@" \
        >"target/bench/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do
        if listening "$http" && listening "$tcp"; then return 0; fi
        sleep 0.1
    done
    log "$name did not start; see target/bench/$name.log"
    exit 1
}
# start_proxy PORT ; one nginx forwarding PORT to ActiveMQ (scripts/tcp-proxy.sh); sets $server_pid
start_proxy() {
    local dir="target/bench/nginx-$1"
    tcp_proxy_conf "$PWD/$dir" "$1" "${AMQ_TCP#stomp://}"
    nginx -p "$PWD/$dir" -c "$PWD/$dir/nginx.conf" >"$dir/out.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do listening "$1" && return 0; sleep 0.1; done
    log "nginx on :$1 did not start; see $dir/"
    exit 1
}
stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

load() { timeout 300 "$BIN/stomp-load" "$@" --format kv; }
kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'; }
num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if num "$1" && num "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; else echo "n/a"; fi; }
pct() { if num "$1" && num "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; else echo "n/a"; fi; }
us() { if num "$1"; then printf '%.2f us' "$1"; else echo "n/a"; fi; }
mib() { if num "$1" && [ "$1" != 0 ]; then awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; else echo "n/a"; fi; }
fmt_k() { awk -v v="$1" 'BEGIN { if (v == "" || v == "n/a") print "n/a"; else printf "%.1f k", v / 1000 }'; }

# max_rate NAME URL ARGS... : REPEAT max-rate runs (a run that could not connect is
# retried twice); prints "median_rate median_cpu_us lost_total conns max_rss_kib", the
# last the largest RSS of the first two --server-pid processes together (the two relay
# instances) at the end of a run
max_rate() {
    local name=$1 url=$2
    shift 2
    local rates=() cpus=() lost=0 conns="" rss=0
    for i in $(seq "$REPEAT"); do
        local line="" try
        for try in 1 2 3; do
            wait_port "$(port_of "$url")"
            if line=$(load fanout --label "$name" --url "$url" --subscribers "$SUBS" \
                --duration "$DURATION" "$@"); then
                break
            fi
            log "$name run $i (try $try) did not finish cleanly: ${line:-no output}"
            [ -z "$line" ] || break # it ran and measured loss: keep that figure
        done
        echo "$line" >>"$OUT.raw"
        rates+=("$(kv "$line" deliveries_per_s)")
        cpus+=("$(kv "$line" server_cpu_us_per_delivery)")
        lost=$((lost + $(kv "$line" lost || echo 0) + 0))
        conns=$(kv "$line" port_connections)
        local r
        r=$(kv "$line" server_rss_kib | awk -F, '{ print $1 + $2 }')
        [ "${r:-0}" -gt "$rss" ] && rss=$r
    done
    local sorted
    sorted=$(printf '%s\n' "${rates[@]}" | grep . | sort -g | tr '\n' ' ')
    echo "$(printf '%s\n' "${rates[@]}" | grep . | median) $(printf '%s\n' "${cpus[@]}" | grep . | median) $lost ${conns:-n/a} $rss $(awk '{ print ($1 == "" ? "n/a" : $1 "-" $NF) }' <<<"$sorted")"
}
# "lowest-highest k" of max_rate's spread field
spread() { awk -F- -v s="$1" 'BEGIN { if (s == "n/a" || s == "") print "n/a"; else { split(s, a, "-"); printf "%.0f-%.0f k", a[1] / 1000, a[2] / 1000 } }'; }

mkdir -p target/bench
: >"$OUT.raw"

# ---- issue 4: simple broker vs RabbitMQ Web-STOMP --------------------------------
start_server simple 18080 18613
simple_pid=$server_pid
SIMPLE_WS=ws://127.0.0.1:18080/ws

log "fan-out max rate: stomp-relay vs RabbitMQ Web-STOMP ($REPEAT x ${DURATION}s each)"
read -r s_rate s_cpu s_lost _ < <(max_rate "stomp-relay simple" "$SIMPLE_WS" \
    --destination /topic/bench --server-pid "$simple_pid")
read -r r_rate r_cpu r_lost _ < <(max_rate "RabbitMQ Web-STOMP" "$RABBIT_WS" \
    --login guest --passcode guest --destination /topic/bench --server-name beam.smp)

log "fan-out latency at $RATE deliveries/s"
s_lat=$(load fanout --label "stomp-relay simple" --url "$SIMPLE_WS" --subscribers "$SUBS" \
    --duration "$DURATION" --rate "$RATE" --destination /topic/bench || true)
wait_port 15674
r_lat=$(load fanout --label "RabbitMQ Web-STOMP" --url "$RABBIT_WS" --login guest --passcode guest \
    --subscribers "$SUBS" --duration "$DURATION" --rate "$RATE" --destination /topic/bench || true)
printf '%s\n%s\n' "$s_lat" "$r_lat" >>"$OUT.raw"
declare -A x_lat
for x in $EXTRA_RATES; do
    log "fan-out latency at $x deliveries/s (stomp-relay)"
    x_lat[$x]=$(load fanout --label "stomp-relay simple" --url "$SIMPLE_WS" --subscribers "$SUBS" \
        --duration "$DURATION" --rate "$x" --destination /topic/bench || true)
    echo "${x_lat[$x]}" >>"$OUT.raw"
done

log "idle sessions: $IDLE on stomp-relay, $PEER_IDLE on RabbitMQ and ActiveMQ"
s_idle=$(load idle --label "stomp-relay simple" --url "$SIMPLE_WS" --sessions "$IDLE" \
    --server-pid "$simple_pid" || true)
wait_port 15674
r_idle=$(load idle --label "RabbitMQ Web-STOMP" --url "$RABBIT_WS" --login guest --passcode guest \
    --sessions "$PEER_IDLE" --server-name beam.smp --settle 3 || true)
wait_port 61613
a_idle=$(load idle --label "ActiveMQ STOMP TCP" --url "$AMQ_TCP" --sessions "$PEER_IDLE" \
    --server-pid "$(amq_pid)" --settle 3 || true)
printf '%s\n%s\n%s\n' "$s_idle" "$r_idle" "$a_idle" >>"$OUT.raw"
stop_server "$simple_pid"

# ---- issue 5: relay mode on ActiveMQ vs direct ------------------------------------
relay_url() { # relay_url HTTP_PORT TCP_PORT
    if [ "$RELAY_TRANSPORT" = ws ]; then echo "ws://127.0.0.1:$1/ws"; else echo "stomp://127.0.0.1:$2"; fi
}
[ "$TCP_PROXY" = 0 ] || tcp_proxy_ready || TCP_PROXY=0
declare -A p_rate p_cpu p_lost p_conns p_rss p_spread
declare -A d_rate d_cpu d_lost d_conns d_spread m_rate m_cpu m_lost m_conns m_rss m_spread
for w in $RELAY_WINDOWS; do
    pacing=(--window "$w" --batch "$((w < 16 ? w : 16))")
    log "fan-out max rate, window $w: clients directly on ActiveMQ"
    read -r d_rate[$w] d_cpu[$w] d_lost[$w] d_conns[$w] _ d_spread[$w] < <(max_rate "ActiveMQ direct w$w" "$AMQ_TCP" \
        --destination /topic/bench --count-port 61613 --server-pid "$(amq_pid)" "${pacing[@]}")
    if [ "$TCP_PROXY" != 0 ]; then
        log "fan-out max rate, window $w: two byte-forwarding nginx proxies in the relays' place"
        start_proxy 18714
        n1=$server_pid
        start_proxy 18715
        n2=$server_pid
        read -r p_rate[$w] p_cpu[$w] p_lost[$w] p_conns[$w] p_rss[$w] p_spread[$w] < <(max_rate "tcp-proxy w$w" \
            stomp://127.0.0.1:18714 --sub-url stomp://127.0.0.1:18714,stomp://127.0.0.1:18715 \
            --destination /topic/bench --count-port 61613 --server-pid "$n1,$n2,$(amq_pid)" "${pacing[@]}")
        stop_server "$n1"
        stop_server "$n2"
    fi
    for mode in per-session shared; do
      for wt in $RELAY_WORKERS; do
        k=$mode/$w/$wt
        log "fan-out max rate, window $w: two stomp-relay instances, relay $mode, worker threads $wt, on ActiveMQ"
        relay_args=(--broker relay --relay "$AMQ_TCP" --dialect activemq --relay-mode "$mode"
            --relay-login admin --relay-passcode admin --system-login admin --system-passcode admin)
        [ "$wt" = auto ] || relay_args+=(--worker-threads "$wt")
        start_server "relay-$mode-1" 18081 18614 "${relay_args[@]}"
        r1=$server_pid
        start_server "relay-$mode-2" 18082 18615 "${relay_args[@]}"
        r2=$server_pid
        sleep 1 # system sessions connect upstream
        read -r m_rate[$k] m_cpu[$k] m_lost[$k] m_conns[$k] m_rss[$k] m_spread[$k] < <(max_rate "relay $mode w$w t$wt" \
            "$(relay_url 18081 18614)" \
            --sub-url "$(relay_url 18081 18614),$(relay_url 18082 18615)" \
            --destination /sub/bench --count-port 61613 --server-pid "$r1,$r2,$(amq_pid)" "${pacing[@]}")
        stop_server "$r1"
        stop_server "$r2"
      done
    done
done

# ---- application proxy (issue 14) ------------------------------------------------
log "application proxy round trips: direct HTTP vs through stomp-relay"
proxy_rows=$(BENCH_TABLE=1 scripts/bench-proxy.sh 2>>"$OUT.raw" | tee -a "$OUT.raw" | grep '^|' || echo "| app proxy | failed; see $OUT.raw | | | | |")

# ---- the table -------------------------------------------------------------------
lat() { # "p50 / p99 ms" from a latency line, with loss when any
    local l=$1
    [ -n "$(kv "$l" p99_ms)" ] || { echo "failed"; return; }
    local s
    s=$(printf '%.2f / %.2f ms' "$(kv "$l" p50_ms)" "$(kv "$l" p99_ms)")
    [ "$(kv "$l" lost)" = 0 ] || s="$s ($(kv "$l" lost) undelivered)"
    echo "$s"
}
per() { [ -n "$(kv "$1" kib_per_session)" ] && printf '%.1f KiB (%s sessions)' "$(kv "$1" kib_per_session)" "$(kv "$1" sessions)" || echo "failed"; }
lostnote() { [ "$1" = 0 ] && echo "" || echo " ($1 undelivered)"; }

{
    echo "Measured $STAMP on $(nproc) cores ($(uname -r)), load average at the end:" \
        "$(cut -d' ' -f1-3 /proc/loadavg); command: \`${BENCH_NICE:+BENCH_NICE=$BENCH_NICE }scripts/bench.sh\`" \
        "(BENCH_REPEAT=$REPEAT, ${DURATION} s per run, medians)."
    echo
    echo "Fan-out 1 publisher -> $SUBS subscribers, 256-byte bodies, WebSocket:"
    echo
    echo "| measure | stomp-relay (simple broker) | RabbitMQ Web-STOMP | ratio | target |"
    echo "|---|---|---|---|---|"
    echo "| max sustained deliveries/s | $(fmt_k "$s_rate")$(lostnote "$s_lost") | $(fmt_k "$r_rate")$(lostnote "$r_lost") | $(ratio "$s_rate" "$r_rate") | >= 10x |"
    echo "| server CPU per delivery | $(us "$s_cpu") | $(us "$r_cpu") | $(ratio "$r_cpu" "$s_cpu") less | - |"
    echo "| latency p50 / p99 at $((RATE / 1000)) k deliveries/s | $(lat "$s_lat") | $(lat "$r_lat") | | p99 < 1 ms |"
    for x in $EXTRA_RATES; do
        echo "| latency p50 / p99 at $((x / 1000)) k deliveries/s | $(lat "${x_lat[$x]}") | not run (above its sustained rate) | | - |"
    done
    echo "| RSS per idle session (CONNECT + SUBSCRIBE) | $(per "$s_idle") | $(per "$r_idle") | $(ratio "$(kv "$r_idle" kib_per_session)" "$(kv "$s_idle" kib_per_session)") less | <= 8 KiB |"
    echo
    echo "ActiveMQ STOMP TCP idle session, same run: $(per "$a_idle")."
    echo
    echo "Relay mode on ActiveMQ 5.17, $SUBS subscribers split over two stomp-relay instances" \
        "(publisher on the first; clients over $RELAY_TRANSPORT), vs the same clients directly on ActiveMQ (TCP):"
    echo
    echo "| setup | publisher window | relay worker threads | max sustained deliveries/s (lowest-highest of the runs) | vs direct | target | broker connections | CPU per delivery (relays + broker) | RSS of both relays (largest at a run's end) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for w in $RELAY_WINDOWS; do
        echo "| clients directly on ActiveMQ | $w | - | $(fmt_k "${d_rate[$w]}") ($(spread "${d_spread[$w]}"))$(lostnote "${d_lost[$w]}") | 1.0x | - | ${d_conns[$w]} | $(us "${d_cpu[$w]}") | - |"
        [ "$TCP_PROXY" = 0 ] ||
            echo "| byte-forwarding proxy (nginx stream) in the relays' place: the floor of a per-session relay | $w | 1 | $(fmt_k "${p_rate[$w]}") ($(spread "${p_spread[$w]}"))$(lostnote "${p_lost[$w]}") | $(ratio "${p_rate[$w]}" "${d_rate[$w]}") | - | ${p_conns[$w]} | $(us "${p_cpu[$w]}") | $(mib "${p_rss[$w]}") |"
        for mode in per-session shared; do
            for wt in $RELAY_WORKERS; do
                k=$mode/$w/$wt
                name="relay $mode" target=">= 10x"
                floor=""
                [ "$mode" = shared ] || { name="relay per-session (Spring-compatible)"; target=">= 0.8x"
                    [ "$TCP_PROXY" = 0 ] || floor=" ($(pct "${m_rate[$k]}" "${p_rate[$w]}") of the proxy)"; }
                echo "| $name | $w | $wt | $(fmt_k "${m_rate[$k]}") ($(spread "${m_spread[$k]}"))$(lostnote "${m_lost[$k]}") | $(ratio "${m_rate[$k]}" "${d_rate[$w]}")$floor | $target | ${m_conns[$k]} | $(us "${m_cpu[$k]}") | $(mib "${m_rss[$k]}") |"
            done
        done
    done
    echo
    echo "Publisher window: the publisher is never more than that many messages ahead of the" \
        "slowest subscriber (stomp-load fanout --window), so no queue grows without bound."
    echo
    echo "Application proxy (scripts/bench-proxy.sh), the same Node back end asked directly and through stomp-relay:"
    echo
    echo "| setup | round trips/s | p50 / p99 | direct HTTP to the back end (same client process) | added to the back end time p50 / p99 | back end's own time p50 / p99 |"
    echo "|---|---|---|---|---|---|"
    echo "$proxy_rows"
} >"$OUT"

cat "$OUT"
log "table: $OUT; every run's raw line: $OUT.raw"
