#!/usr/bin/env python3
"""End-to-end checks of the Cortex-M firmware running in QEMU against the real ActiveMQ.

scripts/edge-qemu.sh starts QEMU (mps2-an386, LAN9118 on a TAP inside a network
namespace) and the socat bridges, then runs this. Devices reach the edge node through
--devices (a bridge into the namespace); the edge node reaches ActiveMQ through a unix
socket this script serves itself (--upstream-socket), so it can cut the upstream for an
outage and restore it. An ActiveMQ client connected directly plays the upstream side.

Prints one line per check and `N passed, M failed`; exits 1 if any failed.
"""

import argparse
import os
import re
import socket
import sys
import threading
import time


class Frame:
    def __init__(self, command, headers, body):
        self.command = command
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"{self.command} {self.headers} {self.body[:60]!r}"


class Client:
    """A STOMP 1.2 client on a plain TCP socket, no heart-beats."""

    def __init__(self, addr, login=None, timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        headers = {"accept-version": "1.2", "host": "/", "heart-beat": "0,0"}
        if login:
            headers.update({"login": login, "passcode": login})
        self.send_frame("CONNECT", headers)
        reply = self.recv()
        if reply.command != "CONNECTED":
            raise RuntimeError(f"CONNECT answered with {reply!r}")

    def send_frame(self, command, headers, body=b""):
        lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
        self.sock.sendall(("\n".join(lines) + "\n\n").encode() + body + b"\0")

    def recv(self, timeout=None):
        """The next frame (heart-beat newlines skipped); raises socket.timeout."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            head_end = self.buf.find(b"\n\n")
            if head_end >= 0:
                head = self.buf[:head_end].decode()
                command, *lines = head.split("\n")
                headers = {}
                for line in lines:
                    k, _, v = line.rstrip("\r").partition(":")
                    headers.setdefault(k, v)
                start = head_end + 2
                if "content-length" in headers:
                    end = start + int(headers["content-length"])
                    if len(self.buf) > end:
                        body, self.buf = self.buf[start:end], self.buf[end + 1:]
                        return Frame(command, headers, body)
                else:
                    nul = self.buf.find(b"\0", start)
                    if nul >= 0:
                        body, self.buf = self.buf[start:nul], self.buf[nul + 1:]
                        return Frame(command, headers, body)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def send(self, destination, body, receipt=None):
        headers = {"destination": destination, "content-type": "text/plain"}
        if receipt:
            headers["receipt"] = receipt
        self.send_frame("SEND", headers, body)
        if receipt:
            self.expect_receipt(receipt)

    def subscribe(self, sub_id, destination, receipt):
        self.send_frame("SUBSCRIBE", {"id": sub_id, "destination": destination, "ack": "auto",
                                      "receipt": receipt})
        self.expect_receipt(receipt)

    def expect_receipt(self, receipt):
        frame = self.recv()
        if frame.command != "RECEIPT" or frame.headers.get("receipt-id") != receipt:
            raise RuntimeError(f"expected RECEIPT {receipt}, got {frame!r}")

    def bodies(self, count, timeout):
        """Up to `count` MESSAGE bodies arriving within `timeout` seconds in all."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                frame = self.recv(timeout=left)
            except socket.timeout:
                break
            if frame.command == "MESSAGE":
                got.append(frame.body.decode())
            elif frame.command == "ERROR":
                raise RuntimeError(f"ERROR: {frame.headers.get('message')}")
        return got

    def close(self):
        try:
            self.send_frame("DISCONNECT", {})
        except OSError:
            pass
        self.sock.close()


class UpstreamBridge:
    """Serves the unix socket the namespace's socat forwards the edge node's upstream
    connection to, and pipes it to ActiveMQ. `cut()` closes every piped connection and
    refuses new ones (a broker outage as the edge node sees it); `restore()` ends it."""

    def __init__(self, path, broker):
        self.path = path
        host, port = broker.rsplit(":", 1)
        self.broker = (host, int(port))
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()
        self.conns = []
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.listener.accept()
            if not self.open.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.broker, timeout=5)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open.clear()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.open.set()


class Uart:
    """The firmware's log (QEMU's -serial file)."""

    def __init__(self, path):
        self.path = path

    def text(self):
        with open(self.path, "rb") as f:
            return f.read().decode(errors="replace")

    def count(self, needle):
        return self.text().count(needle)

    def wait_for(self, needle, after=0, timeout=30.0):
        """Waits until `needle` has appeared more than `after` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(needle) > after:
                return True
            time.sleep(0.1)
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--uart", required=True)
    ap.add_argument("--devices", required=True, help="host:port reaching the edge node")
    ap.add_argument("--upstream-socket", required=True)
    ap.add_argument("--activemq", default="127.0.0.1:61613")
    ap.add_argument("--login", default="admin")
    ap.add_argument("--stack-reserve", type=int, required=True,
                    help="bytes the linker script reserves for the stack (_stack_reserve)")
    args = ap.parse_args()

    uart = Uart(args.uart)
    bridge = UpstreamBridge(args.upstream_socket, args.activemq)
    run = f"{os.getpid()}-{int(time.time())}"
    up_queue = f"/queue/edge.qemu.up.{run}"
    down_queue = f"/queue/edge.qemu.down.{run}"
    results = []

    def check(name, fn):
        try:
            detail = fn()
            results.append(True)
            print(f"PASS  {name}" + (f": {detail}" if detail else ""), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            results.append(False)
            print(f"FAIL  {name}: {e}", flush=True)

    def boot():
        # Other tests restart the brokers; give ActiveMQ a minute to be back.
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(bridge.broker, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ActiveMQ at {args.activemq} is not accepting connections")
                time.sleep(0.5)
        if not uart.wait_for("edge node up", timeout=30):
            raise RuntimeError("no 'edge node up' on the UART in 30 s:\n" + uart.text())
        if not uart.wait_for("upstream: connected", timeout=45):
            raise RuntimeError("the upstream session never connected:\n" + uart.text())
        return "firmware booted, LAN9118 up, upstream session CONNECTED to ActiveMQ"

    check("boot: firmware up and its upstream session on ActiveMQ", boot)

    state = {}

    def device_publish():
        observer = Client(args.activemq, args.login)
        observer.subscribe("up", up_queue, "sub-up")
        state["observer"] = observer
        device = Client(args.devices, timeout=15)
        state["device"] = device
        sent = [f"up-{i:02}" for i in range(20)]
        for i, body in enumerate(sent):
            device.send(up_queue, body.encode(), receipt=f"r-up-{i}")
        got = observer.bodies(len(sent), timeout=20)
        if got != sent:
            raise RuntimeError(f"ActiveMQ subscriber got {got}, expected {sent}")
        return "20 SENDs from a device through the edge node, received in order by an ActiveMQ client"

    check("device publish reaches an ActiveMQ subscriber", device_publish)

    def upstream_publish():
        device = state["device"]
        device.subscribe("down", down_queue, "sub-down")
        publisher = Client(args.activemq, args.login)
        sent = [f"down-{i:02}" for i in range(10)]
        for i, body in enumerate(sent):
            publisher.send(down_queue, body.encode(), receipt=f"r-down-{i}")
        publisher.close()
        got = device.bodies(len(sent), timeout=20)
        if got != sent:
            raise RuntimeError(f"device got {got}, expected {sent}")
        return "10 messages published on ActiveMQ, received in order by the device"

    check("upstream publish reaches a device", upstream_publish)

    def outage():
        device, observer = state["device"], state["observer"]
        lost_before = uart.count("upstream lost")
        connected_before = uart.count("upstream: connected")
        bridge.cut()
        if not uart.wait_for("upstream lost", after=lost_before, timeout=15):
            raise RuntimeError("the edge node did not notice the outage in 15 s")
        during = [f"outage-{i:02}" for i in range(10)]
        for i, body in enumerate(during):
            # The receipt comes from the edge node: the SEND is in its ring.
            device.send(up_queue, body.encode(), receipt=f"r-out-{i}")
        early = observer.bodies(1, timeout=1)
        if early:
            raise RuntimeError(f"delivered while the upstream was cut: {early}")
        t0 = time.monotonic()
        bridge.restore()
        if not uart.wait_for("upstream: connected", after=connected_before, timeout=45):
            raise RuntimeError("no reconnect within 45 s of the bridge coming back")
        got = observer.bodies(len(during), timeout=20)
        if got != during:
            raise RuntimeError(f"after reconnect ActiveMQ got {got}, expected {during}")
        extra = observer.bodies(1, timeout=1)
        if extra:
            raise RuntimeError(f"duplicates after reconnect: {extra}")
        # The device's session survived the outage: it still publishes and receives.
        device.send(up_queue, b"after", receipt="r-after")
        if observer.bodies(1, timeout=10) != ["after"]:
            raise RuntimeError("the device session did not carry on after the outage")
        return (f"10 SENDs stored during the outage, delivered in order and once "
                f"{time.monotonic() - t0:.1f} s after the bridge came back; device stayed connected")

    check("broker outage: SENDs stored in the ring, delivered in order after reconnect", outage)

    def stack_depth():
        lines = None
        deadline = time.monotonic() + 12
        seen = uart.count("stats:")
        while time.monotonic() < deadline and lines is None:
            if uart.count("stats:") > seen:
                lines = re.findall(r"stack_used=(\d+) stack_reserve=(\d+)", uart.text())
            time.sleep(0.2)
        if not lines:
            raise RuntimeError("no stats line on the UART")
        used, reserve = map(int, lines[-1])
        limit = args.stack_reserve
        if used > limit:
            raise RuntimeError(f"stack high-water mark {used} B exceeds the {limit} B reserve")
        return f"stack high-water mark {used} B of the {limit} B reserve ({reserve} B between .bss and the top of RAM)"

    check("stack high-water mark within the linker's reserve", stack_depth)

    for key in ("device", "observer"):
        if key in state:
            state[key].close()
    if "PANIC" in uart.text():
        print("FAIL  firmware panicked:\n" + uart.text())
        results.append(False)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
