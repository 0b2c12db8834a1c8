#!/usr/bin/env bash
# Every test of the project: formatting, lints, the no_std proof and the test suites.
# .ci/run calls exactly this after installing tools and starting the brokers.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "layout: no import circle inside a crate, no Rust file over 1,000 lines"
python3 scripts/layout-check.py
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo clippy (edge host binary, behind its std-host feature)"
cargo clippy -p stomp-relay-edge --all-targets --features std-host -- -D warnings
step "cargo test"
cargo test --workspace

step "edge firmware: Cortex-M4 image in QEMU (mps2-an386) relaying to ActiveMQ, its size, the STM32F4 board build"
scripts/edge-qemu.sh test

step "the README's run command, exactly as written, serves STOMP (reaches CONNECTED)"
scripts/readme-run.sh

step "deploy/: stripped release binary, Debian package installed with dpkg and reached over STOMP, systemd unit verified"
scripts/deploy-check.sh

step "no_std proof: nostd-check links the no_std crates into a panic=abort host binary and runs it"
cargo fmt --manifest-path nostd-check/Cargo.toml -- --check
cargo clippy --manifest-path nostd-check/Cargo.toml -- -D warnings
cargo run --manifest-path nostd-check/Cargo.toml
cargo build --manifest-path nostd-check/Cargo.toml --features defmt

step "fuzz: codec decode and roundtrip, relay-core session, 20 s each (cargo-fuzz on stable, no sanitizer)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
for target in decode roundtrip session; do
    (cd fuzz && cargo fuzz run -s none "$target" -- -max_total_time=20)
done
