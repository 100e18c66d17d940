#!/usr/bin/env bash
# Instructions per request of one end-to-end bench setup, counted by callgrind: the steady
# figure beside scripts/bench.sh's requests per second, which a shared machine makes noisy.
#
#   scripts/bench-instructions.sh SETUP [SHAPE] [CLIENTS]
#   scripts/bench-instructions.sh memory-fixed-window under 10000
#   BENCH_CALLGRIND_OUT=/tmp/fw.out scripts/bench-instructions.sh memory-gcra   # keep the profile
#
# Runs `bench-server SETUP SHAPE` (built by scripts/bench.sh, or here when missing) under
# `valgrind --tool=callgrind` with one worker thread, warms it up with wrk for 2 s with the
# instrumentation off, then counts the server's user-space instructions over 5 s of wrk
# and divides by the requests wrk completed. The kernel's work (TCP, syscalls) is not
# counted. SHAPE is `under` (default) or `over`; CLIENTS (default 10000) is the number of
# distinct clients in the `under` shape. Keep the profile with BENCH_CALLGRIND_OUT and read
# it with `callgrind_annotate --inclusive=yes FILE`. BENCH_CALLGRIND_ARGS adds options to
# valgrind's, for example `--cache-sim=yes --branch-sim=yes` (simulated cache misses and
# mispredicted branches, in the profile's summary) or `--dump-instr=yes` (costs per
# instruction, for `callgrind_annotate` or objdump).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SETUP=${1:?usage: scripts/bench-instructions.sh SETUP [under|over] [CLIENTS]}
SHAPE=${2:-under}
CLIENTS=${3:-10000}
PORT=${BENCH_PORT:-18090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER=$CARGO_TARGET_DIR/release/bench-server

log() { printf '==> %s\n' "$*" >&2; }

for tool in valgrind:valgrind wrk:wrk; do
    command -v "${tool%%:*}" >/dev/null || {
        log "installing ${tool##*:}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool##*:}" >/dev/null
    }
done
[ -x "$SERVER" ] || cargo build --release --manifest-path bench/Cargo.toml --bin bench-server

case $SHAPE in
    under) SCRIPT=bench/wrk/many.lua ;;
    over) SCRIPT=bench/wrk/hot.lua ;;
    *) log "unknown shape $SHAPE (under or over)"; exit 2 ;;
esac

WORK=$(mktemp -d)
PROFILE=$WORK/callgrind.out
# Word splitting of the extra options is wanted: each is one valgrind option.
# shellcheck disable=SC2086
BENCH_SERVER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no ${BENCH_CALLGRIND_ARGS:-} \
    --callgrind-out-file="$PROFILE" "$SERVER" "$SETUP" "$SHAPE" "$PORT" >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

URL=http://127.0.0.1:$PORT/api/data
for _ in $(seq 1 100); do
    curl -s -o /dev/null "$URL" && break
    sleep 0.1
done
wrk -t1 -c8 -d2s -s "$SCRIPT" "$URL" -- "$CLIENTS" >/dev/null
callgrind_control -i on "$PID" >/dev/null
REQUESTS=$(wrk -t1 -c8 -d5s -s "$SCRIPT" "$URL" -- "$CLIENTS" | awk '/requests in/ { print $1 }')
callgrind_control -d "$PID" >/dev/null
sleep 0.5
INSTRUCTIONS=$(awk '/^summary:/ { sum += $2 } END { print sum }' "$PROFILE".1)
if [ -n "${BENCH_CALLGRIND_OUT:-}" ]; then
    cp "$PROFILE".1 "$BENCH_CALLGRIND_OUT"
fi
printf '%s %s: %s requests, %s instructions per request\n' "$SETUP" "$SHAPE" "$REQUESTS" \
    "$((INSTRUCTIONS / REQUESTS))"
