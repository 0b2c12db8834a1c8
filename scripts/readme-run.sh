#!/usr/bin/env bash
# Runs the README's "Run the server" command exactly as written (first indented line
# under that heading), waits for the server to listen, and checks that a real
# WebSocket STOMP client (ws from std-host/tests/interop) reaches CONNECTED on the
# address the README names. Exit 0 only then; the server is stopped either way.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=$(awk '/^## Run the server/{f=1; next} f && /^    [^ ]/{sub(/^    /, ""); print; exit}' README.md)
url=$(grep -o 'ws://127\.0\.0\.1:[0-9]*/ws' README.md | head -n1)
[ -n "$cmd" ] || { echo "readme-run: no command under '## Run the server' in README.md" >&2; exit 1; }
[ -n "$url" ] || { echo "readme-run: README.md names no ws:// address" >&2; exit 1; }
port=${url#ws://127.0.0.1:}; port=${port%%/*}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "readme-run: 127.0.0.1:$port is already in use; the README's command needs it" >&2
    exit 1
fi

log=$(mktemp)
echo "readme-run: $cmd"
# Its own process group, so cargo and the server stop together.
RUST_LOG=info setsid bash -c "$cmd" >"$log" 2>&1 &
pid=$!
stop() { kill -- -"$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT

# A release build from a clean clone takes minutes on 2 cores.
for _ in $(seq 1 900); do
    grep -q "listen=" "$log" && break
    kill -0 "$pid" 2>/dev/null || { echo "readme-run: the command exited:" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 1
done
grep -q "listen=" "$log" || { echo "readme-run: no listening line after 15 min" >&2; tail -n 20 "$log" >&2; exit 1; }

NODE_PATH=std-host/tests/interop/node_modules node -e '
const WebSocket = require("ws");
const ws = new WebSocket(process.argv[1], ["v12.stomp"]);
const timer = setTimeout(() => { console.error("readme-run: no CONNECTED within 10 s"); process.exit(1); }, 10000);
ws.on("open", () => ws.send("CONNECT\naccept-version:1.2\nhost:localhost\n\n\0"));
ws.on("message", (data) => {
  const frame = data.toString();
  if (frame.startsWith("CONNECTED\n")) {
    console.log("readme-run: CONNECTED from " + process.argv[1] + " (" + frame.split("\n")[1] + ")");
    clearTimeout(timer); ws.close(); process.exit(0);
  }
  console.error("readme-run: expected CONNECTED, got " + JSON.stringify(frame)); process.exit(1);
});
ws.on("error", (e) => { console.error("readme-run: " + e.message); process.exit(1); });
' "$url"
