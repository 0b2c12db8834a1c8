# shellcheck shell=bash
# The byte-forwarding proxy of the benchmarks (sourced by bench.sh and bench-profile.sh):
# one single-process nginx stream proxy (Debian nginx-light + libnginx-mod-stream) per
# relay instance's place, forwarding each client connection byte for byte to its own
# ActiveMQ connection. No parsing, no queue: the cheapest per-session relay there can be,
# so what it loses against clients directly on the broker is the cost of the extra hop
# itself (the broker's and the kernel's), the floor of any per-session relay.

NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so

# tcp_proxy_ready: installs nginx's stream module when missing; false (with the
# package names logged) when it cannot
tcp_proxy_ready() {
    [ -e "$NGINX_STREAM" ] && return 0
    # Kept from starting the package's own service (port 80 on every interface).
    printf '==> %s\n' "installing nginx-light and libnginx-mod-stream for the tcp-proxy row" >&2
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    local pkgs=(nginx-light libnginx-mod-stream)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 ||
        { apt-get update -q >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; } ||
        true
    rm -f /usr/sbin/policy-rc.d
    [ -e "$NGINX_STREAM" ] ||
        { printf '==> %s\n' "nginx's stream module is missing: apt-get install nginx-light libnginx-mod-stream" >&2; return 1; }
}

# tcp_proxy_conf DIR PORT UPSTREAM: writes DIR/nginx.conf, one worker forwarding
# 127.0.0.1:PORT to UPSTREAM (host:port), in the foreground, its files under DIR
tcp_proxy_conf() {
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<CONF
load_module $NGINX_STREAM;
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
stream {
    server {
        listen 127.0.0.1:$2;
        proxy_pass $3;
        tcp_nodelay on;
    }
}
CONF
}
