#!/usr/bin/env python3
"""Layout rules the architecture depends on, checked on every test run:

1. No file-level import circle inside a crate's src/ (a module that imports a module
   that, through others, imports it back). Edges are `crate::`/`super::` paths in code,
   comments and test modules left out.
2. No Rust source file of the workspace over 1,000 lines.
3. README.md under 15,000 bytes: what the project is, the two commands, quick starts and
   the configuration table; the rest belongs under docs/.

Prints each violation and exits 1, else one line per rule and exits 0.
"""
import os
import re
import subprocess
import sys

MAX_LINES = 1000
MAX_README_BYTES = 15000
CRATES = ["codec/src", "relay-core/src", "std-host/src", "embedded-host/src", "embedded-host/firmware/src", "load/src", "test-client/src"]


def modules(root):
    files = {}
    for d, _, fs in os.walk(root):
        if os.path.relpath(d, root).split(os.sep)[0] == "bin":
            continue
        for f in fs:
            if f.endswith(".rs"):
                rel = os.path.relpath(os.path.join(d, f), root)[:-3]
                name = re.sub(r"(^|/)mod$", "", rel).replace("/", "::")
                files[name if name not in ("lib", "main") else ""] = open(os.path.join(d, f)).read()
    return files


def resolve(cur, path, mods):
    parts = path.split("::")
    if parts[0] == "crate":
        parts = parts[1:]
    else:
        base = cur.split("::") if cur else []
        while parts and parts[0] == "super":
            parts, base = parts[1:], base[:-1]
        parts = base + parts
    for i in range(len(parts), 0, -1):
        m = "::".join(parts[:i])
        if m in mods:
            return m
    return None


def circles(root):
    files = modules(root)
    mods = set(files)
    graph = {m: set() for m in mods}
    for m, src in files.items():
        src = re.sub(r"(?m)//.*$", "", src)
        src = re.sub(r"(?s)#\[cfg\(test\)\]\s*mod tests \{.*", "", src)
        for hit in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", src):
            t = resolve(m, hit.group(1), mods)
            # A module naming its own parent (or the crate root) is not a layer edge.
            if t and t != m and t != "" and not m.startswith(t + "::"):
                graph[m].add(t)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found, graph


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bad = 0
    for root in CRATES:
        found, graph = circles(root)
        for comp in found:
            bad += 1
            print(f"layout: import circle in {root}: " + ", ".join(comp))
            for m in comp:
                print(f"    {m} -> " + ", ".join(sorted(t for t in graph[m] if t in comp)))
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.rs"], capture_output=True, text=True, check=True)
    for path in filter(os.path.exists, tracked.stdout.split()):
        n = sum(1 for _ in open(path))
        if n > MAX_LINES:
            bad += 1
            print(f"layout: {path} has {n} lines (at most {MAX_LINES})")
    readme = os.path.getsize("README.md")
    if readme >= MAX_README_BYTES:
        bad += 1
        print(f"layout: README.md has {readme} bytes (under {MAX_README_BYTES}); move detail to docs/")
    if bad:
        sys.exit(1)
    print(f"layout: no import circle in {', '.join(CRATES)}")
    print(f"layout: no Rust source file over {MAX_LINES} lines")
    print(f"layout: README.md {readme} bytes (under {MAX_README_BYTES})")


main()
