#!/usr/bin/env bash
# Every test of the project: formatting, lints, the no_std proof and the test suites.
# .ci/run calls exactly this after installing tools and starting the brokers.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test"
cargo test --workspace
