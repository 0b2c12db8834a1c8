"""Interop scenarios driven by the real stomp.py client over plain TCP STOMP.

Usage: python3 stomppy.py <scenario>; configuration from INTEROP_* variables (README.md).
Each scenario asserts something a user of the server would notice, is bounded in time
and message count, prints one `ok` line on success and exits 1 with the reason
otherwise. `peer` is not a scenario of its own: stompjs.mjs `cross-python` runs it.
"""

import os
import socket
import sys
import threading
import time
import traceback
import uuid

import stomp

WS_URL = os.environ.get("INTEROP_WS_URL", "ws://127.0.0.1:15674/ws")
TCP_ADDR = os.environ.get("INTEROP_TCP_ADDR", "127.0.0.1:61623")
LOGIN = os.environ.get("INTEROP_LOGIN") or None
PASSCODE = os.environ.get("INTEROP_PASSCODE") or None
VHOST = os.environ.get("INTEROP_HOST", "/")
TOPIC = os.environ.get("INTEROP_TOPIC", "/topic/")
HARD_DEADLINE_S = 60


def host_port():
    host, _, port = TCP_ADDR.rpartition(":")
    return host, int(port)


def unique_dest(tag):
    return f"{TOPIC}interop-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fail(msg):
    raise AssertionError(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {expected!r}, got {actual!r}")


class Recorder(stomp.ConnectionListener):
    """Records everything the connection sees; waits are condition-based with deadlines."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected = None
        self.messages = []
        self.receipts = []
        self.errors = []
        self.heartbeats = 0
        self.heartbeat_timeouts = 0
        self.disconnected = False

    def _add(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def on_connected(self, frame):
        self._add(lambda: setattr(self, "connected", frame))

    def on_message(self, frame):
        self._add(lambda: self.messages.append(frame))

    def on_receipt(self, frame):
        self._add(lambda: self.receipts.append(frame.headers.get("receipt-id")))

    def on_error(self, frame):
        self._add(lambda: self.errors.append(frame))

    def on_heartbeat(self):
        self._add(lambda: setattr(self, "heartbeats", self.heartbeats + 1))

    def on_heartbeat_timeout(self):
        self._add(lambda: setattr(self, "heartbeat_timeouts", self.heartbeat_timeouts + 1))

    def on_disconnected(self):
        self._add(lambda: setattr(self, "disconnected", True))

    def wait(self, what, pred, timeout=10.0):
        end = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    fail(f"timed out after {timeout} s waiting for {what} "
                         f"(messages={len(self.messages)} receipts={self.receipts} "
                         f"errors={[e.headers.get('message') for e in self.errors]})")
                self.cond.wait(left)


CLASSES = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


def open_conn(version="1.2", heartbeats=(0, 0), auto_decode=True):
    cls = CLASSES[version]
    kwargs = {"auto_decode": auto_decode, "reconnect_attempts_max": 1, "timeout": 10}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
        # Up to 4 silent intervals before stomp.py gives up, so scheduling jitter on a
        # loaded CI machine is not mistaken for a server that stopped beating.
        kwargs["heart_beat_receive_scale"] = 4
        kwargs["vhost"] = VHOST
    conn = cls([host_port()], **kwargs)
    rec = Recorder()
    conn.set_listener("recorder", rec)
    headers = {"host": VHOST} if version == "1.0" else {}
    conn.connect(LOGIN, PASSCODE, wait=False, headers=headers)
    rec.wait(f"CONNECTED (STOMP {version} over TCP {TCP_ADDR})",
             lambda: rec.connected is not None or rec.errors or rec.disconnected)
    if rec.connected is None:
        fail(f"no CONNECTED for STOMP {version}: "
             f"{[(e.headers.get('message'), e.body) for e in rec.errors]}")
    return conn, rec


def close(conn):
    try:
        if conn.is_connected():
            conn.disconnect(receipt=f"bye-{uuid.uuid4().hex[:6]}")
    except Exception:  # noqa: BLE001 - closing is best effort after a failure
        pass


def subscribe_confirmed(conn, rec, dest, sub_id):
    receipt = f"sub-{uuid.uuid4().hex[:8]}"
    conn.subscribe(dest, id=sub_id, ack="auto", headers={"receipt": receipt})
    rec.wait(f"RECEIPT for SUBSCRIBE {dest}", lambda: receipt in rec.receipts)


def scenario_versions():
    seen = []
    for version in ("1.0", "1.1", "1.2"):
        conn, rec = open_conn(version)
        try:
            got = rec.connected.headers.get("version")
            if version == "1.0":
                if got not in (None, "1.0"):
                    fail(f"CONNECTED version for a 1.0 client was {got!r}")
            else:
                check_eq(got, version, f"CONNECTED version for stomp.Connection{version.replace('.', '')}")
            dest = unique_dest(f"py{version.replace('.', '')}")
            subscribe_confirmed(conn, rec, dest, "s1")
            body = f"hello over STOMP {version} from stomp.py"
            receipt = f"send-{version}"
            conn.send(dest, body, headers={"receipt": receipt})
            rec.wait(f"MESSAGE and RECEIPT (STOMP {version})",
                     lambda: rec.messages and receipt in rec.receipts)
            check_eq(rec.messages[0].body, body, f"body over STOMP {version}")
            check_eq(rec.messages[0].headers.get("destination"), dest, "MESSAGE destination")
            if not rec.messages[0].headers.get("message-id"):
                fail("MESSAGE without message-id")
            # A DISCONNECT with a receipt is answered before the server closes.
            bye = f"bye-{version}"
            conn.disconnect(receipt=bye)
            rec.wait(f"RECEIPT for DISCONNECT (STOMP {version})", lambda: bye in rec.receipts)
            if rec.errors:
                fail(f"ERROR frames: {[e.headers.get('message') for e in rec.errors]}")
            seen.append(version)
        finally:
            close(conn)
    return "versions " + ",".join(seen)


def scenario_heartbeats():
    interval_ms = 300
    idle_s = 3.0
    conn, rec = open_conn("1.2", heartbeats=(interval_ms, interval_ms))
    try:
        hb = rec.connected.headers.get("heart-beat")
        if hb is None:
            fail("CONNECTED has no heart-beat header")
        sx, sy = (int(v) for v in hb.split(","))
        if not 0 < sx <= 1000:
            fail(f"server offers no short heart-beat (heart-beat:{hb}); start it with a short server heart-beat")
        if sy <= 0:
            fail(f"server does not ask for client heart-beats (heart-beat:{hb})")
        time.sleep(idle_s)
        if rec.disconnected or not conn.is_connected():
            fail(f"connection dropped while idle with heart-beats (heart-beat:{hb})")
        if rec.heartbeat_timeouts:
            fail(f"stomp.py reported {rec.heartbeat_timeouts} heart-beat timeouts")
        period = max(interval_ms, sx) / 1000
        expected = int(idle_s / period / 2)
        if rec.heartbeats < expected:
            fail(f"received {rec.heartbeats} server heart-beats in {idle_s} s at {period} s, want >= {expected}")
        dest = unique_dest("pyhb")
        subscribe_confirmed(conn, rec, dest, "s1")
        conn.send(dest, "after idle")
        rec.wait("MESSAGE after idle", lambda: rec.messages)
        check_eq(rec.messages[0].body, "after idle", "body after idle")
        return f"heart-beat:{hb}, {rec.heartbeats} server heart-beats in {idle_s} s"
    finally:
        close(conn)


def scenario_bodies():
    conn, rec = open_conn("1.2", auto_decode=False)
    try:
        dest = unique_dest("pybodies")
        subscribe_confirmed(conn, rec, dest, "s1")
        binary = bytes((i * 13 + 1) & 0xFF for i in range(600)).replace(b"\x01", b"\x00")
        if binary.count(0) < 2:
            fail("test body should contain NULs")
        korean = "안녕하세요! 한국어 본문 테스트 🌏 — 끝"
        conn.send(dest, binary, content_type="application/octet-stream")
        conn.send(dest, korean.encode("utf-8"), content_type="text/plain;charset=UTF-8",
                  headers={"x-title": "제목: 한국어"})
        rec.wait("binary and Korean messages", lambda: len(rec.messages) >= 2)
        check_eq(rec.messages[0].body, binary, "binary body with NULs")
        check_eq(rec.messages[1].body.decode("utf-8"), korean, "Korean UTF-8 body")
        check_eq(rec.messages[1].headers.get("x-title"), "제목: 한국어", "Korean header value")
        return f"{len(binary)} binary bytes ({binary.count(0)} NULs), Korean text intact"
    finally:
        close(conn)


def scenario_burst():
    count = 200
    sub, srec = open_conn("1.2")
    pub, _ = open_conn("1.2")
    try:
        dest = unique_dest("pyburst")
        subscribe_confirmed(sub, srec, dest, "s1")
        for i in range(count):
            pub.send(dest, f"seq-{i}")
        srec.wait(f"{count} messages", lambda: len(srec.messages) >= count, timeout=15)
        time.sleep(0.2)
        bodies = [m.body for m in srec.messages]
        check_eq(len(bodies), count, "message count (no duplicates)")
        for i, b in enumerate(bodies):
            check_eq(b, f"seq-{i}", f"message at position {i}")
        return f"{count} in order"
    finally:
        close(sub)
        close(pub)


def read_frames_until_close(sock, timeout):
    """Reads raw bytes until the server closes; returns them. Fails on timeout."""
    sock.settimeout(0.5)
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def unescape(value):
    """STOMP 1.2 header value unescaping (the raw connections negotiate 1.2)."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append({"n": "\n", "r": "\r", "c": ":", "\\": "\\"}.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def raw_connect():
    sock = socket.create_connection(host_port(), timeout=10)
    creds = ""
    if LOGIN is not None:
        creds += f"login:{LOGIN}\n"
    if PASSCODE is not None:
        creds += f"passcode:{PASSCODE}\n"
    sock.sendall(f"CONNECT\naccept-version:1.2\nhost:{VHOST}\n{creds}\n\0".encode())
    sock.settimeout(10)
    data = b""
    while b"\0" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            fail(f"closed before CONNECTED: {data!r}")
        data += chunk
    if not data.lstrip(b"\r\n").startswith(b"CONNECTED\n"):
        fail(f"expected CONNECTED, got {data!r}")
    return sock


def scenario_malformed():
    cases = {
        "unknown command": b"BOGUS\nfoo:bar\n\nbody\0",
        "content-length disagreeing with the NUL":
            f"SEND\ndestination:{unique_dest('pybad')}\ncontent-length:3\n\nabcdefgh\0".encode(),
    }
    out = []
    for name, payload in cases.items():
        sock = raw_connect()
        try:
            sock.sendall(payload)
            data, closed = read_frames_until_close(sock, 10)
            if not closed:
                fail(f"server did not close the TCP connection after {name}; got {data!r}")
            frames = [f for f in data.split(b"\0") if f.strip(b"\r\n")]
            errors = [f.lstrip(b"\r\n") for f in frames if f.lstrip(b"\r\n").startswith(b"ERROR\n")]
            if len(errors) != 1:
                fail(f"expected one ERROR frame after {name}, got {data!r}")
            head = errors[0].split(b"\n\n", 1)[0].decode("utf-8", "replace").split("\n")
            msg = [unescape(h.split(":", 1)[1]) for h in head[1:] if h.startswith("message:")]
            if not msg or not msg[0]:
                fail(f"ERROR after {name} has no message header: {errors[0]!r}")
            out.append(f"{name} -> ERROR({msg[0]})")
        finally:
            sock.close()
    # Still serving afterwards.
    raw_connect().close()
    return "; ".join(out)


def scenario_peer():
    """Counterpart of stompjs.mjs cross-python: send to the JS client, await its reply."""
    send_to = os.environ["INTEROP_PEER_SEND"]
    recv_on = os.environ["INTEROP_PEER_RECV"]
    conn, rec = open_conn("1.2")
    try:
        subscribe_confirmed(conn, rec, recv_on, "peer")
        conn.send(send_to, "파이썬에서 보낸 인사 (hello from stomp.py)", headers={"x-sender": "stomp.py"})
        rec.wait(f"reply from stompjs on {recv_on}", lambda: rec.messages, timeout=15)
        check_eq(rec.messages[0].body, "자바스크립트의 답장 (reply from stompjs)", "body from stompjs")
        check_eq(rec.messages[0].headers.get("x-sender"), "stompjs", "custom header from stompjs")
        return "got the stompjs reply"
    finally:
        close(conn)


SCENARIOS = {
    "versions": scenario_versions,
    "heartbeats": scenario_heartbeats,
    "bodies": scenario_bodies,
    "burst": scenario_burst,
    "malformed": scenario_malformed,
    "peer": scenario_peer,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} <{'|'.join(SCENARIOS)}>", file=sys.stderr)
        sys.exit(2)
    name = sys.argv[1]
    # stomp.py's receiver threads are not daemons; a watchdog bounds the whole run.
    watchdog = threading.Timer(HARD_DEADLINE_S, lambda: (
        print(f"FAIL {name}: hard deadline of {HARD_DEADLINE_S} s exceeded", file=sys.stderr, flush=True),
        os._exit(1)))
    watchdog.daemon = True
    watchdog.start()
    started = time.monotonic()
    try:
        detail = SCENARIOS[name]()
    except Exception:  # noqa: BLE001 - any failure is reported with its traceback
        print(f"FAIL {name}: {traceback.format_exc()}", file=sys.stderr, flush=True)
        os._exit(1)
    print(f"ok {name} ({int((time.monotonic() - started) * 1000)} ms): {detail}", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
