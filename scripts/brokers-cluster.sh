# Sourced by scripts/brokers.sh: the clustered brokers of `brokers.sh cluster ...`, beside
# (never instead of) the single brokers the other tests use. Loopback only.
#
#   RabbitMQ  3 nodes in one cluster, each with STOMP:
#             stomp-c1@HOST 127.0.0.1:61631, stomp-c2@HOST :61632, stomp-c3@HOST :61633
#             (AMQP 5681-5683, Erlang distribution 25681-25683, data /var/lib/rabbitmq/cluster/)
#   ActiveMQ  2 brokers joined by a duplex network connector (a network of brokers):
#             pair-a STOMP 127.0.0.1:61641 (OpenWire :61646), pair-b STOMP :61642 (:61647)
#
# A message sent to any node reaches subscribers on every node; a client that loses its
# node connects to another and carries on. `cluster kill NODE` (SIGKILL, for failover
# tests) takes one node down hard; `cluster up` brings it back into its cluster.

RMQ_CLUSTER_NODES=(c1 c2 c3)
RMQ_CLUSTER_BASE=/var/lib/rabbitmq/cluster
AMQ_PAIR=(pair-a pair-b)

rmqc_index() { echo "${1#c}"; }
rmqc_host() { hostname -s; }
rmqc_name() { echo "stomp-$1@$(rmqc_host)"; }
rmqc_stomp_port() { echo $((61630 + $(rmqc_index "$1"))); }
rmqc_dir() { echo "$RMQ_CLUSTER_BASE/$1"; }

# The environment rabbitmq-server and rabbitmqctl read for node $1.
rmqc_env() {
    local n=$1 i d
    i=$(rmqc_index "$n")
    d=$(rmqc_dir "$n")
    echo "HOME=/var/lib/rabbitmq RABBITMQ_NODENAME=$(rmqc_name "$n")" \
        "RABBITMQ_NODE_PORT=$((5680 + i)) RABBITMQ_DIST_PORT=$((25680 + i))" \
        "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins" \
        "RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log RABBITMQ_PID_FILE=$d/pid"
}

rmqc_configure() {
    local n=$1 d peers="" m k=1
    d=$(rmqc_dir "$n")
    mkdir -p "$d/mnesia" "$d/log"
    for m in "${RMQ_CLUSTER_NODES[@]}"; do
        peers+="cluster_formation.classic_config.nodes.$k = $(rmqc_name "$m")"$'\n'
        k=$((k + 1))
    done
    # classic_config: a node started after another finds it and joins; a node killed and
    # started again rejoins from its own data directory.
    write_if_changed "$d/rabbitmq.conf" <<CONF || true
# Written by stomp-relay scripts/brokers.sh cluster; edits are overwritten on 'up'.
listeners.tcp.default = 127.0.0.1:$((5680 + $(rmqc_index "$n")))
stomp.listeners.tcp.1 = 127.0.0.1:$(rmqc_stomp_port "$n")
loopback_users = none
cluster_formation.peer_discovery_backend = classic_config
$peers
CONF
    echo '[rabbitmq_stomp].' | write_if_changed "$d/enabled_plugins" || true
    chown -R rabbitmq: "$RMQ_CLUSTER_BASE"
}

rmqc_pid() {
    local pid
    for pid in $(rmq_beams); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null |
            grep -qx "RABBITMQ_NODENAME=$(rmqc_name "$1")" && { echo "$pid"; return 0; }
    done
    return 1
}

# A node that has been a member before keeps its cluster in its data directory.
rmqc_member_before() { [ -d "$(rmqc_dir "$1")/mnesia/$(rmqc_name "$1")" ]; }

rmqc_launch() {
    local n=$1
    rmqc_configure "$n"
    rmqc_pid "$n" >/dev/null && return 0
    log "rabbitmq cluster: starting $(rmqc_name "$n")"
    wait_port_closed "$(rmqc_stomp_port "$n")"
    # shellcheck disable=SC2046 # rmqc_env is a list of NAME=value words
    (ulimit -n $OPEN_FILES && cd /var/lib/rabbitmq && env $(rmqc_env "$n") \
        setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
        /usr/sbin/rabbitmq-server -detached) >/dev/null 2>&1
}

rmqc_wait() {
    wait_for "rabbitmq node $(rmqc_name "$1") STOMP on 127.0.0.1:$(rmqc_stomp_port "$1")" \
        stomp_probe tcp "$(rmqc_stomp_port "$1")"
}

# Returning members start together: a node that did not stop last (all of them, after a
# SIGKILL of every node) waits at boot for a peer's tables and opens no listener until one
# is up, so starting them one after another would wait forever on the first. New nodes
# then start one at a time, each joining the nodes already running.
rmqc_start_all() {
    local n fresh=()
    for n in "${RMQ_CLUSTER_NODES[@]}"; do
        if rmqc_member_before "$n"; then rmqc_launch "$n"; else fresh+=("$n"); fi
    done
    for n in "${RMQ_CLUSTER_NODES[@]}"; do
        if rmqc_member_before "$n"; then rmqc_wait "$n"; fi
    done
    for n in "${fresh[@]}"; do rmqc_launch "$n" && rmqc_wait "$n"; done
}

# rmqc_ctl NODE ARGS...: rabbitmqctl against one cluster node.
rmqc_ctl() {
    local n=$1
    shift
    # shellcheck disable=SC2046
    env $(rmqc_env "$n") timeout "$WAIT_SECS" rabbitmqctl -n "$(rmqc_name "$n")" "$@"
}

# Node names the cluster reports as running, seen from node $1, one per line.
rmqc_running_nodes() {
    rmqc_ctl "$1" cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["running_nodes"]))'
}

rmqc_joined() {
    local n=$1 running
    running=$(rmqc_running_nodes "$n") || return 1
    local m
    for m in "${RMQ_CLUSTER_NODES[@]}"; do
        grep -qx "$(rmqc_name "$m")" <<<"$running" || return 1
    done
}

rmqc_stop() {
    local n=$1 pid deadline
    pid=$(rmqc_pid "$n") || return 0
    log "rabbitmq cluster: stopping $(rmqc_name "$n")"
    rmqc_ctl "$n" shutdown >/dev/null 2>&1 || true
    deadline=$((SECONDS + WAIT_SECS))
    while [ -d "/proc/$pid" ]; do
        ((SECONDS < deadline)) || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.3
    done
    wait_port_closed "$(rmqc_stomp_port "$n")"
}

amqp_stomp_port() { [ "$1" = pair-a ] && echo 61641 || echo 61642; }
amqp_openwire_port() { [ "$1" = pair-a ] && echo 61646 || echo 61647; }
amqp_peer() { [ "$1" = pair-a ] && echo pair-b || echo pair-a; }
amqp_conf_dir() { echo "/etc/activemq/instances-available/$1"; }
amqp_pidfile() { echo "/var/run/activemq/$1.pid"; }

amqp_configure() {
    local b=$1 d network=""
    d=$(amqp_conf_dir "$b")
    mkdir -p "$d" "/var/lib/activemq/$b/data"
    # One duplex bridge between the two, opened by pair-a: messages cross toward the
    # other broker's subscribers in both directions; pair-a retries while pair-b is down.
    if [ "$b" = pair-a ]; then
        network="<networkConnectors>
            <networkConnector name=\"pair\" duplex=\"true\"
                uri=\"static:(tcp://127.0.0.1:$(amqp_openwire_port pair-b))?initialReconnectDelay=200&amp;maxReconnectDelay=1000&amp;useExponentialBackOff=false\"/>
        </networkConnectors>"
    fi
    write_if_changed "$d/activemq.xml" <<XML || true
<!-- Written by stomp-relay scripts/brokers.sh cluster; edits are overwritten on 'up'. -->
<beans
  xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
    <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="$b"
            persistent="false" dataDirectory="/var/lib/activemq/$b/data">
        $network
        <transportConnectors>
            <transportConnector name="openwire" uri="tcp://127.0.0.1:$(amqp_openwire_port "$b")"/>
            <transportConnector name="stomp" uri="stomp://127.0.0.1:$(amqp_stomp_port "$b")?maximumConnections=20000"/>
        </transportConnectors>
    </broker>
</beans>
XML
    cp -f "$AMQ_CONF_DIR/log4j2.properties" "$d/log4j2.properties"
    chown -R activemq: "/var/lib/activemq/$b"
}

amqp_pid() {
    local pid f
    f=$(amqp_pidfile "$1")
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q activemq "/proc/$pid/cmdline" 2>/dev/null &&
        echo "$pid"
}

amqp_start() {
    local b=$1
    amqp_configure "$b"
    if ! amqp_pid "$b" >/dev/null; then
        log "activemq pair: starting $b"
        wait_port_closed "$(amqp_stomp_port "$b")"
        rm -f "$(amqp_pidfile "$b")" # names a dead broker: see amq_start
        mkdir -p /var/run/activemq
        chown activemq: /var/run/activemq
        # What /etc/init.d/activemq does for an enabled instance, for one that is not
        # enabled (so the init script's start and stop leave the pair alone).
        (ulimit -n $OPEN_FILES &&
            INSTANCE=$b ACTIVEMQ_USER=activemq ACTIVEMQ_PIDFILE=$(amqp_pidfile "$b") \
                ACTIVEMQ_HOME=/usr/share/activemq ACTIVEMQ_CONFIG_DIR=$(amqp_conf_dir "$b") \
                ACTIVEMQ_DATA=/var/lib/activemq/$b/data \
                start-stop-daemon --start --quiet --pidfile "$(amqp_pidfile "$b")" \
                --chuid activemq --background --name java --startas /usr/bin/activemq \
                -- start xbean:activemq.xml) >/dev/null
    fi
    wait_for "activemq $b STOMP on 127.0.0.1:$(amqp_stomp_port "$b")" \
        stomp_probe tcp "$(amqp_stomp_port "$b")"
}

amqp_stop() {
    local b=$1 pid deadline
    pid=$(amqp_pid "$b") || return 0
    log "activemq pair: stopping $b"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + WAIT_SECS))
    while [ -d "/proc/$pid" ]; do
        ((SECONDS < deadline)) || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.3
    done
    rm -f "$(amqp_pidfile "$b")"
    wait_port_closed "$(amqp_stomp_port "$b")"
}

# stomp_crosses SUB_PORT PUB_PORT: a message sent on one broker reaches a subscriber on
# the other within 2 s (the pair is joined and forwards toward demand).
stomp_crosses() {
    python3 - "$1" "$2" <<'PY'
import socket, sys, time

def connect(port):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=3)
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
    return s

def wait_for(s, needle, secs):
    buf, end = b"", time.monotonic() + secs
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            sys.exit(f"no {needle!r} within {secs}s")
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk

topic = b"/topic/stomp-relay.cluster-probe"
sub = connect(sys.argv[1])
wait_for(sub, b"CONNECTED", 3)
sub.sendall(b"SUBSCRIBE\nid:0\ndestination:" + topic + b"\nreceipt:s\n\n\x00")
wait_for(sub, b"receipt-id:s", 3)
pub = connect(sys.argv[2])
wait_for(pub, b"CONNECTED", 3)
token = str(time.time_ns()).encode()
pub.sendall(b"SEND\ndestination:" + topic + b"\n\n" + token + b"\x00")
wait_for(sub, token, 2)
PY
}

amqp_bridged() { stomp_crosses "$(amqp_stomp_port pair-b)" "$(amqp_stomp_port pair-a)"; }

cluster_up() {
    need_root
    install_packages activemq rabbitmq-server
    local b
    rmqc_start_all
    wait_for "rabbitmq cluster of ${#RMQ_CLUSTER_NODES[@]} running nodes" rmqc_joined c1
    wait_for "rabbitmq cluster routing c1 -> c3" stomp_crosses "$(rmqc_stomp_port c3)" "$(rmqc_stomp_port c1)"
    for b in "${AMQ_PAIR[@]}"; do amqp_start "$b"; done
    wait_for "activemq network bridge pair-a <-> pair-b" amqp_bridged
    cluster_status
}

cluster_down() {
    local n b
    for b in "${AMQ_PAIR[@]}"; do amqp_stop "$b"; done
    # Last to stop first: the nodes stopped before it remember it as the last one up, so a
    # later start of every node finds the cluster without waiting on a stopped peer.
    for n in c3 c2 c1; do rmqc_stop "$n"; done
}

# cluster_kill NODE: SIGKILL, no shutdown (c1|c2|c3|pair-a|pair-b).
cluster_kill() {
    local pid
    case "${1:-}" in
    c[123]) pid=$(rmqc_pid "$1") || die "rabbitmq node $1 is not running" ;;
    pair-a | pair-b) pid=$(amqp_pid "$1") || die "activemq $1 is not running" ;;
    *) die "cluster kill: unknown node '${1:-}' (c1|c2|c3|pair-a|pair-b)" ;;
    esac
    log "cluster: SIGKILL $1 (pid $pid)"
    kill -KILL "$pid"
    while [ -d "/proc/$pid" ]; do sleep 0.1; done
}

cluster_status() {
    local n b rc=0 running=""
    running=$(rmqc_running_nodes c1 2>/dev/null || rmqc_running_nodes c2 2>/dev/null ||
        rmqc_running_nodes c3 2>/dev/null || true)
    for n in "${RMQ_CLUSTER_NODES[@]}"; do
        if stomp_probe tcp "$(rmqc_stomp_port "$n")" 2>/dev/null &&
            grep -qx "$(rmqc_name "$n")" <<<"$running"; then
            echo "rabbitmq $(rmqc_name "$n"): up   stomp://127.0.0.1:$(rmqc_stomp_port "$n") (in the cluster)"
        else
            echo "rabbitmq $(rmqc_name "$n"): down"
            rc=1
        fi
    done
    for b in "${AMQ_PAIR[@]}"; do
        if stomp_probe tcp "$(amqp_stomp_port "$b")" 2>/dev/null; then
            echo "activemq $b: up   stomp://127.0.0.1:$(amqp_stomp_port "$b") (network connector to $(amqp_peer "$b"))"
        else
            echo "activemq $b: down"
            rc=1
        fi
    done
    return $rc
}

cluster_main() {
    case "${1:-}" in
    up) cluster_up ;;
    down | stop) cluster_down ;;
    status) cluster_status ;;
    kill) cluster_kill "${2:-}" ;;
    *) usage ;;
    esac
}
