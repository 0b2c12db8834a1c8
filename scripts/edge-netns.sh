#!/usr/bin/env bash
# Network namespace + TAP for running the stomp-relay-edge host binary on Linux.
#
#   scripts/edge-netns.sh up      create namespace, TAP and the two socat bridges
#   scripts/edge-netns.sh run     build and start the edge node inside the namespace
#                                 (foreground; extra arguments go to the binary)
#   scripts/edge-netns.sh smoke   CONNECT through the edge node from the host side
#   scripts/edge-netns.sh status  show what is set up
#   scripts/edge-netns.sh down    stop the bridges, delete namespace and TAP
#
# Layout (defaults; override with the environment variables below):
#
#   namespace $EDGE_NS ("stomp-edge")
#     TAP $EDGE_TAP ("tap-edge"), kernel side 192.168.69.1/24
#     edge node (smoltcp in the binary) 192.168.69.2, devices port 61613
#     192.168.69.1:61613  --socat-->  unix socket  --socat-->  $EDGE_UPSTREAM on the host
#   host
#     127.0.0.1:$EDGE_DEVICE_PORT  --socat-->  unix socket  -->  192.168.69.2:61613 (devices)
#
# The bridges go through unix sockets because those ignore network namespaces, so the
# broker can keep listening on 127.0.0.1 only. EDGE_UPSTREAM=external leaves the host end
# of $RUN_DIR/upstream.sock to someone else (scripts/edge-qemu.sh's test serves it, so it
# can cut the upstream). Needs root, iproute2, socat, /dev/net/tun.
set -euo pipefail

NS=${EDGE_NS:-stomp-edge}
TAP=${EDGE_TAP:-tap-edge}
UPSTREAM=${EDGE_UPSTREAM:-127.0.0.1:61613}
DEVICE_PORT=${EDGE_DEVICE_PORT:-61633}
RUN_DIR=${EDGE_RUN_DIR:-/run/stomp-edge}
GATEWAY_IP=192.168.69.1
EDGE_IP=192.168.69.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "edge-netns: $*" >&2; exit 1; }
log() { echo "edge-netns: $*"; }

need() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces and TAP devices)"
    [ -c /dev/net/tun ] || die "/dev/net/tun is missing (load the tun module)"
    command -v ip >/dev/null || die "iproute2 (ip) is not installed"
    command -v socat >/dev/null || die "socat is not installed (apt-get install socat)"
}

# Starts "$@" in the background, detached, its pid in $RUN_DIR/$name.pid.
spawn() {
    local name=$1; shift
    setsid "$@" >"$RUN_DIR/$name.log" 2>&1 < /dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}

stop() {
    local f pid
    for f in "$RUN_DIR"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        rm -f "$f"
    done
}

up() {
    need
    mkdir -p "$RUN_DIR"
    if ! ip netns list | grep -qw "$NS"; then
        ip netns add "$NS"
    fi
    ip netns exec "$NS" ip link set lo up
    if ! ip netns exec "$NS" ip link show "$TAP" >/dev/null 2>&1; then
        ip netns exec "$NS" ip tuntap add dev "$TAP" mode tap
        ip netns exec "$NS" ip addr add "$GATEWAY_IP/24" dev "$TAP"
    fi
    ip netns exec "$NS" ip link set "$TAP" up
    stop
    if [ "$UPSTREAM" != external ]; then
        spawn upstream-host socat "UNIX-LISTEN:$RUN_DIR/upstream.sock,fork,unlink-early" "TCP:$UPSTREAM"
    fi
    spawn upstream-ns ip netns exec "$NS" socat \
        "TCP-LISTEN:61613,bind=$GATEWAY_IP,reuseaddr,fork" "UNIX-CONNECT:$RUN_DIR/upstream.sock"
    spawn devices-ns ip netns exec "$NS" socat \
        "UNIX-LISTEN:$RUN_DIR/devices.sock,fork,unlink-early" "TCP:$EDGE_IP:61613"
    spawn devices-host socat \
        "TCP-LISTEN:$DEVICE_PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$RUN_DIR/devices.sock"
    sleep 0.3
    log "up: namespace $NS, $TAP $GATEWAY_IP/24, edge node address $EDGE_IP"
    log "upstream $GATEWAY_IP:61613 -> $UPSTREAM; devices: 127.0.0.1:$DEVICE_PORT -> $EDGE_IP:61613"
}

run() {
    up
    local bin=${EDGE_BIN:-}
    if [ -z "$bin" ]; then
        (cd "$ROOT" && cargo build --release -p stomp-relay-edge --features std-host)
        bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/stomp-relay-edge"
    fi
    log "starting $bin in $NS"
    exec ip netns exec "$NS" "$bin" --tap "$TAP" --address "$EDGE_IP/24" \
        --upstream "$GATEWAY_IP:61613" "$@"
}

smoke() {
    exec 3<>"/dev/tcp/127.0.0.1/$DEVICE_PORT" || die "nothing on 127.0.0.1:$DEVICE_PORT (run 'up' and 'run' first)"
    printf 'CONNECT\naccept-version:1.2\nhost:edge\n\n\0' >&3
    local line
    IFS= read -r -t 5 line <&3 || die "no answer from the edge node"
    exec 3>&-
    [ "$line" = "CONNECTED" ] || die "expected CONNECTED, got: $line"
    log "smoke: edge node answered CONNECTED"
}

status() {
    ip netns list | grep -w "$NS" || { echo "namespace $NS: absent"; return 0; }
    ip netns exec "$NS" ip -brief addr show "$TAP" || true
    local f
    for f in "$RUN_DIR"/*.pid; do
        [ -e "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running"; else echo "$(basename "$f" .pid): dead"; fi
    done
}

down() {
    stop
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        ip netns exec "$NS" ip link del "$TAP" 2>/dev/null || true
        ip netns del "$NS"
    fi
    rm -rf "$RUN_DIR"
    log "down"
}

case "${1:-}" in
    up) up ;;
    run) shift; run "$@" ;;
    smoke) smoke ;;
    status) status ;;
    down) down ;;
    *) echo "usage: $0 up|run [edge args]|smoke|status|down" >&2; exit 2 ;;
esac
