#!/usr/bin/env bash
# Real STOMP brokers for the relay-mode tests and benchmarks, on loopback only:
#   ActiveMQ 5.17   STOMP 127.0.0.1:61613, STOMP over TLS 127.0.0.1:61614 (self-signed CA)
#   RabbitMQ 3.10   STOMP 127.0.0.1:61623, Web-STOMP ws://127.0.0.1:15674/ws
#
# usage: scripts/brokers.sh up|down|start|stop|restart|status [activemq|rabbitmq|all]
#        scripts/brokers.sh cluster up|down|status|kill NODE
#   up       install (apt, only if missing), configure, start; waits until each broker
#            answers a real STOMP CONNECT with CONNECTED. Fast when already running.
#   down     stop (alias of stop)
#   start    start an installed broker (configuring it first), wait for CONNECTED
#   stop     stop and wait until the process is gone and the port is closed
#   restart  stop then start
#   status   one line per broker: up/down and its endpoints; exit 1 if any is down
#   cluster  a 3-node RabbitMQ cluster and an ActiveMQ network-of-brokers pair, beside the
#            single brokers (ports and layout in scripts/brokers-cluster.sh); `kill NODE`
#            SIGKILLs one of c1 c2 c3 pair-a pair-b, `up` brings it back
#
# Every wait is bounded (BROKER_WAIT_SECS, default 90). Idempotent: running `up` twice
# leaves one broker of each kind. The TLS CA the tests trust is printed by `status`
# (ACTIVEMQ_TLS_CA below).
set -euo pipefail

WAIT_SECS="${BROKER_WAIT_SECS:-90}"

AMQ_INSTANCE=main
AMQ_CONF_DIR=/etc/activemq/instances-available/$AMQ_INSTANCE
AMQ_PIDFILE=/var/run/activemq/$AMQ_INSTANCE.pid
AMQ_STOMP_PORT=61613
AMQ_STOMPS_PORT=61614
AMQ_TLS_DIR=$AMQ_CONF_DIR/tls
# The PEM the relay tests pass to rustls as the only trusted root for stomps://127.0.0.1:61614.
ACTIVEMQ_TLS_CA=$AMQ_TLS_DIR/ca.pem
# Test-only keystore protecting a throwaway key for a loopback listener; not a secret.
AMQ_TLS_PASS=stomp-relay-test

RMQ_STOMP_PORT=61623
RMQ_WS_PORT=15674
# Without this, `rabbitmq-server -detached` (via su) starts with 1024 open files and the
# 10 000-session benchmarks run out of descriptors.
OPEN_FILES=65536
hard_nofile=$(ulimit -Hn)
if [ "$hard_nofile" != unlimited ] && ((hard_nofile < OPEN_FILES)); then
    OPEN_FILES=$hard_nofile # a container may cap the hard limit; take all it allows
fi

log() { printf '[brokers] %s\n' "$*" >&2; }
die() { printf '[brokers] error: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (installs packages and starts services)"; }

# ---------------------------------------------------------------------------------------
# STOMP probes (python3 stdlib only): a real CONNECT must be answered with CONNECTED.

# stomp_probe KIND PORT -> exit 0 when the broker answers CONNECTED within a few seconds.
#   KIND: tcp | tls | ws
stomp_probe() {
    python3 - "$1" "$2" "$ACTIVEMQ_TLS_CA" <<'PY'
import base64, os, socket, ssl, struct, sys

kind, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connect = (b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\n"
           b"heart-beat:0,0\n\n\x00")
if port in (61613, 61614):
    connect = connect.replace(b"login:guest\npasscode:guest", b"login:admin\npasscode:admin")

def recv_until(sock, pred, limit=65536):
    buf = b""
    while not pred(buf) and len(buf) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf

try:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    sock.settimeout(5)
    if kind == "tls":
        ctx = ssl.create_default_context(cafile=ca)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    if kind == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n")
                     .encode())
        head = recv_until(sock, lambda b: b"\r\n\r\n" in b)
        if not head.startswith(b"HTTP/1.1 101"):
            sys.exit(f"no websocket upgrade: {head[:80]!r}")
        rest = head.split(b"\r\n\r\n", 1)[1]
        mask = os.urandom(4)
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(connect))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
        buf = rest + recv_until(sock, lambda b: len(b) >= 2 and len(b) >= 2 + (b[1] & 0x7F))
        reply = buf[2:]
    else:
        sock.sendall(connect)
        reply = recv_until(sock, lambda b: b"\x00" in b)
    if not reply.startswith(b"CONNECTED"):
        sys.exit(f"unexpected reply: {reply[:120]!r}")
    sock.close()
except Exception as exc:  # any failure means "not ready yet"
    sys.exit(f"{type(exc).__name__}: {exc}")
PY
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESC CMD... : retry CMD every 0.5 s until it succeeds or WAIT_SECS pass.
wait_for() {
    local desc=$1; shift
    local deadline=$((SECONDS + WAIT_SECS)) err=""
    until err=$("$@" 2>&1); do
        if ((SECONDS >= deadline)); then
            die "$desc not ready after ${WAIT_SECS}s: $err"
        fi
        sleep 0.5
    done
}

wait_port_closed() {
    local deadline=$((SECONDS + WAIT_SECS))
    while port_open "$1"; do
        ((SECONDS < deadline)) || die "port $1 still open after ${WAIT_SECS}s"
        sleep 0.3
    done
}

# ---------------------------------------------------------------------------------------
# Installation: apt only when a package is missing; `apt-get update` only if needed.

install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    need_root
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian images ship without package lists; try first, refresh only on failure.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# write_if_changed FILE: replace FILE with stdin when different; exit 0 if it changed.
write_if_changed() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    install -m 0644 "$tmp" "$1"
    rm -f "$tmp"
    return 0
}

# ---------------------------------------------------------------------------------------
# ActiveMQ

amq_tls_material() {
    [ -s "$AMQ_TLS_DIR/broker.p12" ] && [ -s "$ACTIVEMQ_TLS_CA" ] && return 0
    log "activemq: generating a test CA and a broker key for stomp+ssl (localhost, 127.0.0.1)"
    rm -rf "$AMQ_TLS_DIR"
    mkdir -p "$AMQ_TLS_DIR"
    local kt=(keytool -storetype PKCS12 -storepass "$AMQ_TLS_PASS")
    # A CA plus a leaf (rather than one self-signed leaf) because webpki/rustls refuse a
    # CA certificate used as the server's own certificate.
    "${kt[@]}" -genkeypair -alias ca -keyalg EC -groupname secp256r1 -validity 3650 \
        -dname "CN=stomp-relay test CA" -ext bc:c -keystore "$AMQ_TLS_DIR/ca.p12" 2>/dev/null
    "${kt[@]}" -exportcert -rfc -alias ca -keystore "$AMQ_TLS_DIR/ca.p12" \
        >"$ACTIVEMQ_TLS_CA" 2>/dev/null
    "${kt[@]}" -genkeypair -alias broker -keyalg EC -groupname secp256r1 -validity 3650 \
        -dname "CN=localhost" -keystore "$AMQ_TLS_DIR/broker.p12" 2>/dev/null
    "${kt[@]}" -certreq -alias broker -keystore "$AMQ_TLS_DIR/broker.p12" 2>/dev/null |
        "${kt[@]}" -gencert -alias ca -keystore "$AMQ_TLS_DIR/ca.p12" -rfc -validity 3650 \
            -ext SAN=dns:localhost,ip:127.0.0.1 -ext EKU=serverAuth \
            >"$AMQ_TLS_DIR/broker.pem" 2>/dev/null
    "${kt[@]}" -importcert -noprompt -alias ca -file "$ACTIVEMQ_TLS_CA" \
        -keystore "$AMQ_TLS_DIR/broker.p12" >/dev/null 2>&1
    "${kt[@]}" -importcert -noprompt -alias broker -file "$AMQ_TLS_DIR/broker.pem" \
        -keystore "$AMQ_TLS_DIR/broker.p12" >/dev/null 2>&1
    rm -f "$AMQ_TLS_DIR/ca.p12" # the CA key is not needed again; regenerate both if lost
    chown -R activemq: "$AMQ_TLS_DIR"
    chmod 0755 "$AMQ_TLS_DIR"
    chmod 0644 "$ACTIVEMQ_TLS_CA"
}

# Exit 0 when the configuration changed (a running broker must restart to pick it up).
amq_configure() {
    amq_tls_material
    local changed=1
    # stomp:// keeps ActiveMQ's thread-per-connection transport (what the seed measured);
    # maximumConnections is explicit so many relay sessions plus direct benchmark clients
    # fit; the open-files limit is raised at start. Element order is alphabetical, as the
    # 5.x schema expects.
    write_if_changed "$AMQ_CONF_DIR/activemq.xml" <<XML && changed=0
<!-- Written by stomp-relay scripts/brokers.sh; edits are overwritten on 'up'. -->
<beans
  xmlns="http://www.springframework.org/schema/beans"
  xmlns:amq="http://activemq.apache.org/schema/core"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">

    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>

    <broker xmlns="http://activemq.apache.org/schema/core"
            useJmx="false"
            brokerName="localhost"
            dataDirectory="\${activemq.base}/data">

        <persistenceAdapter>
            <kahaDB directory="\${activemq.base}/data/kahadb"/>
        </persistenceAdapter>

        <sslContext>
            <sslContext keyStore="file:$AMQ_TLS_DIR/broker.p12" keyStoreType="PKCS12"
                        keyStorePassword="$AMQ_TLS_PASS"/>
        </sslContext>

        <transportConnectors>
            <transportConnector name="openwire" uri="tcp://127.0.0.1:61616?maximumConnections=1000"/>
            <transportConnector name="stomp" uri="stomp://127.0.0.1:$AMQ_STOMP_PORT?maximumConnections=20000&amp;wireFormat.maxFrameSize=104857600"/>
            <transportConnector name="stomp+ssl" uri="stomp+ssl://127.0.0.1:$AMQ_STOMPS_PORT?maximumConnections=20000&amp;wireFormat.maxFrameSize=104857600"/>
        </transportConnectors>

    </broker>

</beans>
XML
    # The init script sleeps STARTTIME seconds after starting; we wait on STOMP instead.
    write_if_changed "$AMQ_CONF_DIR/options" <<'OPT' && changed=0
# Written by stomp-relay scripts/brokers.sh: readiness is checked by a STOMP CONNECT.
STARTTIME=0
OPT
    ln -sfn "$AMQ_CONF_DIR" /etc/activemq/instances-enabled/$AMQ_INSTANCE
    # /usr/bin/activemq puts kahadb and its log under /var/lib/activemq/data, which the
    # package leaves owned by root: the broker would start but never open its connectors.
    chown -R activemq: /var/lib/activemq/data
    return $changed
}

amq_pid() {
    local pid
    [ -f "$AMQ_PIDFILE" ] || return 1
    pid=$(cat "$AMQ_PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q activemq "/proc/$pid/cmdline" 2>/dev/null &&
        echo "$pid"
}

amq_ready() { stomp_probe tcp $AMQ_STOMP_PORT && stomp_probe tls $AMQ_STOMPS_PORT; }

amq_start() {
    need_root
    local changed=1
    amq_configure && changed=0
    if amq_pid >/dev/null; then
        if ((changed == 0)); then
            log "activemq: configuration changed, restarting"
            amq_stop
        elif amq_ready 2>/dev/null; then
            return 0
        fi
    fi
    if ! amq_pid >/dev/null; then
        log "activemq: starting"
        wait_port_closed $AMQ_STOMP_PORT
        # A pid file naming a dead broker (or its zombie, still called java) makes
        # start-stop-daemon think it runs and start nothing.
        rm -f "$AMQ_PIDFILE"
        (ulimit -n $OPEN_FILES && /etc/init.d/activemq start) >/dev/null
    fi
    wait_for "activemq STOMP on 127.0.0.1:$AMQ_STOMP_PORT" stomp_probe tcp $AMQ_STOMP_PORT
    wait_for "activemq STOMP+TLS on 127.0.0.1:$AMQ_STOMPS_PORT" stomp_probe tls $AMQ_STOMPS_PORT
    log "activemq: up (stomp://127.0.0.1:$AMQ_STOMP_PORT, stomp+ssl://127.0.0.1:$AMQ_STOMPS_PORT)"
}

amq_stop() {
    local pid deadline
    if pid=$(amq_pid); then
        log "activemq: stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + WAIT_SECS))
        while [ -d "/proc/$pid" ]; do
            if ((SECONDS >= deadline)); then
                log "activemq: did not exit on SIGTERM, killing"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.3
        done
    fi
    rm -f "$AMQ_PIDFILE"
    wait_port_closed $AMQ_STOMP_PORT
}

amq_status() {
    if amq_ready 2>/dev/null; then
        echo "activemq: up   stomp://127.0.0.1:$AMQ_STOMP_PORT stomp+ssl://127.0.0.1:$AMQ_STOMPS_PORT (CA $ACTIVEMQ_TLS_CA)"
    else
        echo "activemq: down"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------
# RabbitMQ

rmq_configure() {
    local changed=1
    mkdir -p /etc/rabbitmq
    write_if_changed /etc/rabbitmq/rabbitmq.conf <<CONF && changed=0
# Written by stomp-relay scripts/brokers.sh; edits are overwritten on 'up'.
listeners.tcp.default = 127.0.0.1:5672
stomp.listeners.tcp.1 = 127.0.0.1:$RMQ_STOMP_PORT
web_stomp.tcp.port = $RMQ_WS_PORT
web_stomp.tcp.ip = 127.0.0.1
loopback_users = none
CONF
    # Erlang distribution (epmd 4369, node port 25672) on loopback too: read by both the
    # server and rabbitmqctl.
    write_if_changed /etc/rabbitmq/rabbitmq-env.conf <<'ENV' && changed=0
# Written by stomp-relay scripts/brokers.sh; edits are overwritten on 'up'.
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1
ENV
    write_if_changed /etc/rabbitmq/enabled_plugins <<'PLUG' && changed=0
[rabbitmq_stomp,rabbitmq_web_stomp].
PLUG
    chown rabbitmq: /etc/rabbitmq/enabled_plugins 2>/dev/null || true
    return $changed
}

# Every RabbitMQ node's beam process (the single broker and the cluster nodes).
rmq_beams() { pgrep -u rabbitmq -f 'beam.*-s rabbit' || true; }
# The single broker is the node started without a RABBITMQ_NODENAME of the cluster's.
rmq_pid() {
    local pid
    for pid in $(rmq_beams); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^RABBITMQ_NODENAME=stomp-c' ||
            { echo "$pid"; return 0; }
    done
    return 1
}
rmq_running() { rmq_pid >/dev/null 2>&1; }

rmq_ready() { stomp_probe tcp $RMQ_STOMP_PORT && stomp_probe ws $RMQ_WS_PORT; }

rmq_start() {
    need_root
    local changed=1
    rmq_configure && changed=0
    if rmq_running; then
        if ((changed == 0)); then
            log "rabbitmq: configuration changed, restarting"
            rmq_stop
        elif rmq_ready 2>/dev/null; then
            return 0
        fi
    fi
    if ! rmq_running; then
        log "rabbitmq: starting"
        wait_port_closed $RMQ_STOMP_PORT
        # An epmd left from an earlier start may listen on all interfaces; the next one
        # started by rabbitmq-server reads ERL_EPMD_ADDRESS.
        # Not while cluster nodes run: they are registered with it.
        local epmd
        if [ -z "$(rmq_beams)" ]; then
            for epmd in $(pgrep -u rabbitmq -x epmd); do kill "$epmd" 2>/dev/null || true; done
        fi
        # setpriv instead of `rabbitmq-server -detached` as root: that path goes through su
        # and a PAM session, which resets the open-files limit to 1024.
        (ulimit -n $OPEN_FILES && cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq \
            setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
            /usr/sbin/rabbitmq-server -detached) >/dev/null 2>&1
    fi
    wait_for "rabbitmq STOMP on 127.0.0.1:$RMQ_STOMP_PORT" stomp_probe tcp $RMQ_STOMP_PORT
    wait_for "rabbitmq Web-STOMP on ws://127.0.0.1:$RMQ_WS_PORT/ws" stomp_probe ws $RMQ_WS_PORT
    log "rabbitmq: up (stomp://127.0.0.1:$RMQ_STOMP_PORT, ws://127.0.0.1:$RMQ_WS_PORT/ws)"
}

rmq_stop() {
    local deadline pid
    if pid=$(rmq_pid); then
        log "rabbitmq: stopping"
        # `shutdown` returns once the node's OS process has exited.
        timeout "$WAIT_SECS" rabbitmqctl shutdown >/dev/null 2>&1 || true
        deadline=$((SECONDS + WAIT_SECS))
        while rmq_running; do
            if ((SECONDS >= deadline)); then
                log "rabbitmq: still running, killing"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.3
        done
    fi
    wait_port_closed $RMQ_STOMP_PORT
}

rmq_status() {
    if rmq_ready 2>/dev/null; then
        echo "rabbitmq: up   stomp://127.0.0.1:$RMQ_STOMP_PORT ws://127.0.0.1:$RMQ_WS_PORT/ws (guest/guest)"
    else
        echo "rabbitmq: down"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------

# shellcheck source=scripts/brokers-cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/brokers-cluster.sh"

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local action=${1:-} target=${2:-all} brokers=()
    if [ "$action" = cluster ]; then
        shift
        cluster_main "$@"
        return
    fi
    case "$target" in
    activemq) brokers=(amq) ;;
    rabbitmq) brokers=(rmq) ;;
    all) brokers=(amq rmq) ;;
    *) usage ;;
    esac
    local b rc=0
    case "$action" in
    up)
        local pkgs=()
        for b in "${brokers[@]}"; do
            case $b in amq) pkgs+=(activemq) ;; rmq) pkgs+=(rabbitmq-server) ;; esac
        done
        # A freshly installed rabbitmq-server may have been started by its maintainer script
        # with the default config; rmq_start sees the config change and restarts it.
        install_packages "${pkgs[@]}"
        for b in "${brokers[@]}"; do "${b}_start"; done
        ;;
    start) for b in "${brokers[@]}"; do "${b}_start"; done ;;
    down | stop) for b in "${brokers[@]}"; do "${b}_stop"; done ;;
    restart) for b in "${brokers[@]}"; do "${b}_stop" && "${b}_start"; done ;;
    status) for b in "${brokers[@]}"; do "${b}_status" || rc=1; done ;;
    *) usage ;;
    esac
    return $rc
}

main "$@"
