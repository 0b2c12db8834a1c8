#!/usr/bin/env bash
# The edge node as Cortex-M4 firmware (embedded-host/firmware) in QEMU's mps2-an386,
# relaying to the real ActiveMQ on this host.
#
#   scripts/edge-qemu.sh build   cross-build the firmware ELF (Debian's rustc, -Zbuild-std=core)
#   scripts/edge-qemu.sh size    flash and RAM of the ELF against the targets (fails above)
#   scripts/edge-qemu.sh board   build-only check of the STM32F4 board image
#   scripts/edge-qemu.sh lint    rustfmt and clippy on the firmware (both boards)
#   scripts/edge-qemu.sh test    build, size, start QEMU on a TAP in a namespace, run the
#                                checks in embedded-host/firmware/tests/qemu_activemq.py
#   scripts/edge-qemu.sh run     start QEMU in the foreground with the UART on stdout,
#                                bridged to ActiveMQ like scripts/edge-netns.sh
#   scripts/edge-qemu.sh down    stop QEMU, remove the namespace, TAP and bridges
#
# The network is scripts/edge-netns.sh's, in a namespace of its own ($QEMU_NS,
# "stomp-edge-qemu", TAP "tap-qemu"): QEMU's LAN9118 sits on the TAP, the firmware
# (smoltcp in the guest) is 192.168.69.2, the kernel side 192.168.69.1:61613 leads to
# ActiveMQ, and devices on the host use 127.0.0.1:$QEMU_DEVICE_PORT (61634). No address
# outside the namespace or loopback, never QEMU's user-mode network. For `test` the
# host end of the upstream bridge is the test's own, so it can cut it.
#
# Needs root, /dev/net/tun, iproute2, socat, qemu-system-arm, binutils-arm-none-eabi and
# Debian's rustc-web + rust-web-src + cargo-web (.ci/run installs them). Without one of
# them `test` prints SKIPPED with the reason, except under CI=true, where it fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FW="$ROOT/embedded-host/firmware"
NS=${QEMU_NS:-stomp-edge-qemu}
TAP=${QEMU_TAP:-tap-qemu}
DEVICE_PORT=${QEMU_DEVICE_PORT:-61634}
RUN_DIR=${QEMU_RUN_DIR:-/run/stomp-edge-qemu}
ACTIVEMQ=${QEMU_ACTIVEMQ:-127.0.0.1:61613}
TARGET=thumbv7em-none-eabihf
ELF="$FW/target/$TARGET/release/mps2-an386"
# Targets for 4 sessions with 1 KiB buffers: an STM32F4-class part.
FLASH_LIMIT=$((128 * 1024))
RAM_LIMIT=$((64 * 1024))

die() { echo "edge-qemu: $*" >&2; exit 1; }
log() { echo "edge-qemu: $*"; }

# Debian's toolchain, not the rustup shim that PATH finds first: rustup has no
# thumbv7em target here and cannot download one.
# /usr/bin first so `cargo clippy` finds Debian's cargo-clippy too.
cross_cargo() {
    (cd "$FW" && PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_DIR="$FW/target" cargo "$@")
}

missing() {
    [ "$(id -u)" = 0 ] || { echo "not root (network namespaces and TAP devices need it)"; return; }
    [ -c /dev/net/tun ] || { echo "/dev/net/tun is missing"; return; }
    local cmd
    for cmd in ip socat qemu-system-arm arm-none-eabi-ld arm-none-eabi-size /usr/bin/rustc /usr/bin/cargo /usr/bin/cargo-clippy python3; do
        command -v "$cmd" >/dev/null || { echo "$cmd is not installed"; return; }
    done
    [ -d /usr/lib/rustlib/src/rust/library/core ] || { echo "rust-web-src (core's source for -Zbuild-std) is not installed"; return; }
}

build() {
    cross_cargo build --release --locked --features mps2
    log "built $ELF"
}

# The stack reserve memory/mps2-an386.x asserts, in bytes.
stack_reserve() {
    local hex
    hex=$(arm-none-eabi-nm "$ELF" | awk '$3 == "_stack_reserve" { print $1 }')
    [ -n "$hex" ] || die "no _stack_reserve symbol in $ELF"
    echo $((16#$hex))
}

# Flash = what is programmed (vectors, code, constants, .data's initial image);
# RAM = .data + .bss + the stack reserve the linker script asserts.
size() {
    [ -f "$ELF" ] || build
    local sections reserve
    sections=$(arm-none-eabi-size -A "$ELF")
    reserve=$(stack_reserve)
    awk -v reserve="$reserve" -v flash_limit="$FLASH_LIMIT" -v ram_limit="$RAM_LIMIT" '
        $1 ~ /^\.(vector_table|text|rodata)$/ { flash += $2 }
        $1 == ".data" { flash += $2; data = $2 }
        $1 == ".bss" || $1 == ".uninit" { bss += $2 }
        END {
            ram = data + bss + reserve
            printf "firmware size (mps2-an386, 4 sessions, 1 KiB buffers):\n"
            printf "  flash  %6d B  %5.1f KiB of %d KiB  (vectors+text+rodata %d, data image %d)\n", flash, flash / 1024, flash_limit / 1024, flash - data, data
            printf "  RAM    %6d B  %5.1f KiB of %d KiB  (data %d, bss %d, stack reserve %d)\n", ram, ram / 1024, ram_limit / 1024, data, bss, reserve
            bad = 0
            if (flash > flash_limit) { printf "  flash over the %d KiB target\n", flash_limit / 1024; bad = 1 }
            if (ram > ram_limit) { printf "  RAM over the %d KiB target\n", ram_limit / 1024; bad = 1 }
            exit bad
        }' <<<"$sections"
}

board() {
    cross_cargo build --release --locked --features stm32f4 --bin stm32f4
    arm-none-eabi-size "$FW/target/$TARGET/release/stm32f4"
}

# rustfmt and clippy (Debian's, for the cross target) on both builds.
lint() {
    cargo fmt --manifest-path "$FW/Cargo.toml" -- --check
    cross_cargo clippy --release --locked --features mps2 -- -D warnings
    cross_cargo clippy --release --locked --features stm32f4 --bin stm32f4 -- -D warnings
}

# edge-netns.sh with this script's namespace; UPSTREAM: ActiveMQ's address, or
# `external` when the test serves the bridge's host end.
netns() {
    local upstream=$1; shift
    EDGE_NS="$NS" EDGE_TAP="$TAP" EDGE_RUN_DIR="$RUN_DIR" EDGE_DEVICE_PORT="$DEVICE_PORT" \
        EDGE_UPSTREAM="$upstream" "$ROOT/scripts/edge-netns.sh" "$@"
}

down() {
    netns external down
}

qemu_args() {
    echo -machine mps2-an386 -display none -monitor none -kernel "$ELF" \
        -nic "tap,ifname=$TAP,script=no,downscript=no,model=lan9118,mac=52:54:00:72:00:02"
}

# In the background, its pid beside the bridges' so edge-netns.sh's `down` stops it too.
start_qemu() {
    : >"$RUN_DIR/uart.log"
    # shellcheck disable=SC2046 # qemu_args prints one word per argument
    setsid ip netns exec "$NS" qemu-system-arm $(qemu_args) -serial "file:$RUN_DIR/uart.log" \
        >"$RUN_DIR/qemu.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/qemu.pid"
}

run() {
    [ -f "$ELF" ] || build
    netns "$ACTIVEMQ" up
    # shellcheck disable=SC2046
    exec ip netns exec "$NS" qemu-system-arm $(qemu_args) -serial stdio
}

PASSED=0
FAILED=0

# check NAME CMD...: runs CMD, prints PASS/FAIL NAME, counts it.
check() {
    local name=$1; shift
    if "$@"; then
        echo "PASS  $name"; PASSED=$((PASSED + 1))
    else
        echo "FAIL  $name"; FAILED=$((FAILED + 1))
    fi
}

qemu_checks() {
    netns external up
    start_qemu
    local out rc=0
    out=$(python3 "$FW/tests/qemu_activemq.py" --uart "$RUN_DIR/uart.log" \
        --devices "127.0.0.1:$DEVICE_PORT" --upstream-socket "$RUN_DIR/upstream.sock" \
        --activemq "$ACTIVEMQ" --stack-reserve "$(stack_reserve)") || rc=$?
    echo "$out" | sed '$d'
    local summary
    summary=$(echo "$out" | tail -n 1)
    if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        PASSED=$((PASSED + BASH_REMATCH[1]))
        FAILED=$((FAILED + BASH_REMATCH[2]))
    else
        echo "FAIL  QEMU checks did not finish: $summary"; FAILED=$((FAILED + 1))
    fi
    if ! kill -0 "$(cat "$RUN_DIR/qemu.pid")" 2>/dev/null; then
        echo "FAIL  QEMU exited early:"; cat "$RUN_DIR/qemu.log"; FAILED=$((FAILED + 1))
    elif [ "$rc" != 0 ]; then
        echo "--- firmware UART log ---"; cat "$RUN_DIR/uart.log"
    fi
}

# Everything CI checks of the firmware: lints, the QEMU image's size against the
# targets, the STM32F4 board build, and the image running in QEMU against ActiveMQ.
test_all() {
    local why
    why=$(missing)
    if [ -n "$why" ]; then
        [ "${CI:-}" = true ] && die "cannot run under CI: $why"
        echo "SKIPPED: edge firmware in QEMU: $why"
        return 0
    fi
    check "rustfmt and clippy on the firmware (mps2 and stm32f4 builds)" lint
    build
    check "size within flash <= 128 KiB and RAM <= 64 KiB" size
    check "STM32F4 board image (NUCLEO-F429ZI) builds and links" board
    trap down EXIT
    qemu_checks
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

case "${1:-}" in
    build) build ;;
    size) size ;;
    board) board ;;
    lint) lint ;;
    test) test_all ;;
    run) run ;;
    down) down ;;
    *) echo "usage: $0 build|size|board|lint|test|run|down" >&2; exit 2 ;;
esac
