#!/usr/bin/env python3
"""Prints docs/codec.md's benchmark table from criterion's saved estimates (medians,
the estimate least moved by other processes preempting the benchmark).

Usage: codec/benches/table.py [criterion dir]   (default: $CARGO_TARGET_DIR/criterion or target/criterion)
Run after `cargo bench -p stomp-relay-codec -- --warm-up-time 1 --measurement-time 3`.
"""
import json
import os
import sys

OURS = "stomp-relay-codec"
FRAMES = {"stream_1000": 1000}  # frames per iteration; every other input is one frame


def load(root):
    groups = {}
    for group in sorted(os.listdir(root)):
        op, _, frame = group.partition("_")
        if op not in ("decode", "encode"):
            continue
        for impl in sorted(os.listdir(os.path.join(root, group))):
            new = os.path.join(root, group, impl, "new")
            if not os.path.isfile(os.path.join(new, "estimates.json")):
                continue
            est = json.load(open(os.path.join(new, "estimates.json")))
            bench = json.load(open(os.path.join(new, "benchmark.json")))
            ns = est["median"]["point_estimate"]
            nbytes = (bench.get("throughput") or {}).get("Bytes", 0)
            groups.setdefault((op, frame), {})[impl] = (ns, nbytes)
    return groups


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
    groups = load(root)
    print("| operation / input | implementation | time per iteration | frames/s | MB/s | stomp-relay-codec speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for (op, frame), impls in groups.items():
        ours = impls.get(OURS)
        order = [OURS] + sorted(k for k in impls if k != OURS)
        for impl in order:
            if impl not in impls:
                continue
            ns, nbytes = impls[impl]
            frames = FRAMES.get(frame, 1)
            fps = frames / (ns * 1e-9)
            mbs = nbytes / (ns * 1e-9) / 1e6
            if impl == OURS or ours is None:
                ratio = "1.00x" if impl == OURS else "-"
            else:
                ratio = f"{ns / ours[0]:.2f}x"
            t = f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
            print(f"| {op} {frame} | {impl} | {t} | {fps:,.0f} | {mbs:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
