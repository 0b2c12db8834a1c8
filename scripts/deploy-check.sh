#!/usr/bin/env bash
# The deployment files under deploy/, checked for real:
#   - the release binary carries no debug info (the release profile strips it);
#   - every STOMP_RELAY_* variable the Dockerfile and compose file set is one the
#     binary knows (a typo would be silently ignored), and the compose file has the
#     ActiveMQ + two instances layout;
#   - the Debian package (cargo deb) installs with dpkg; its systemd unit passes
#     `systemd-analyze verify`; the installed binary, started with the installed
#     configuration as an unprivileged user, answers STOMP CONNECT, SUBSCRIBE, SEND
#     with MESSAGE and stops cleanly on SIGTERM; the package removes cleanly;
#   - the Dockerfile is built only where a container engine runs (none in CI here).
# Needs root (dpkg), cargo-deb, systemd (for systemd-analyze), python3 with PyYAML.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'deploy-check: %s\n' "$*"; }
die() { printf 'deploy-check: FAILED: %s\n' "$*" >&2; exit 1; }

say "building the Debian package (release profile)"
cargo deb -p stomp-relay --quiet >/dev/null
deb=$(ls -t target/debian/stomp-relay_*.deb | head -1)

say "the release binary is stripped of debug info"
bin=target/release/stomp-relay
readelf -S "$bin" | grep -q '\.debug_info' && die "$bin still has .debug_info (profile.release strip)"
size=$(stat -c %s "$bin")
[ "$size" -lt $((20 * 1024 * 1024)) ] || die "$bin is $size bytes"
say "  $bin: $((size / 1024 / 1024)) MiB"

say "deploy/: variables and layout"
known=$("$bin" --help | grep -o 'STOMP_RELAY_[A-Z_]*' | sort -u)
used=$(grep -ho 'STOMP_RELAY_[A-Z_]*' deploy/Dockerfile deploy/compose.yaml | sort -u)
for v in $used; do
    grep -qx "$v" <<<"$known" || die "$v (deploy/) is not a variable stomp-relay reads"
done
python3 - <<'PY'
import yaml
c = yaml.safe_load(open("deploy/compose.yaml"))
s = c["services"]
assert set(s) == {"activemq", "relay1", "relay2"}, s.keys()
for r in ("relay1", "relay2"):
    env = s[r]["environment"]
    assert env["STOMP_RELAY_BROKER"] == "relay", env
    assert env["STOMP_RELAY_RELAY"] == "stomp://activemq:61613", env
    assert s[r]["build"]["dockerfile"] == "deploy/Dockerfile"
assert s["relay1"]["ports"] != s["relay2"]["ports"]
PY

say "installing $deb"
dpkg -i "$deb" >/dev/null
trap 'dpkg -P stomp-relay >/dev/null 2>&1 || true' EXIT
unit=$(dpkg -L stomp-relay | grep -E '/systemd/system/stomp-relay\.service$') ||
    die "the package installs no systemd unit"
say "systemd-analyze verify $unit"
systemd-analyze verify "$unit"

say "the installed server answers STOMP"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
wsport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
setpriv --reuid=nobody --regid=nogroup --clear-groups \
    /usr/bin/stomp-relay --config /etc/stomp-relay/stomp-relay.toml \
    --listen "127.0.0.1:$wsport" --tcp-listen "127.0.0.1:$port" 2>"$log" &
pid=$!
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("server did not listen")
def frames(s, n):
    buf = b""
    while buf.count(b"\0") < n:
        chunk = s.recv(4096)
        if not chunk: sys.exit(f"closed after {buf!r}")
        buf += chunk
    return [f.lstrip(b"\n") for f in buf.split(b"\0")[:n]]
s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
connected, = frames(s, 1)
assert connected.startswith(b"CONNECTED\n"), connected
s.sendall(b"SUBSCRIBE\nid:1\ndestination:/sub/deb\nreceipt:r1\n\n\0")
receipt, = frames(s, 1)
assert receipt.startswith(b"RECEIPT\nreceipt-id:r1"), receipt
s.sendall(b"SEND\ndestination:/sub/deb\n\nfrom the package\0")
message, = frames(s, 1)
assert message.startswith(b"MESSAGE\n") and message.endswith(b"from the package"), message
print("deploy-check:   CONNECTED, RECEIPT, MESSAGE over TCP")
PY
kill -TERM "$pid"
wait "$pid" || die "the server exited with $? on SIGTERM:$(cat "$log")"
grep -q 'stopped' "$log" || die "no graceful stop in the log: $(cat "$log")"

say "removing the package"
dpkg -P stomp-relay >/dev/null
trap - EXIT
[ ! -e /usr/bin/stomp-relay ] || die "/usr/bin/stomp-relay left behind"

if docker info >/dev/null 2>&1; then
    say "building deploy/Dockerfile"
    docker build -q -f deploy/Dockerfile -t stomp-relay:check . >/dev/null
else
    say "no container engine here: deploy/Dockerfile not built (docs/deploy.md)"
fi
say "ok"
