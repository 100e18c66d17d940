#!/usr/bin/env bash
# Setups measured at the same time, side by side, for a host whose speed moves within
# seconds (a shared virtual machine): the server CPU time each spends per request, taken
# over the same seconds, so a slow spell slows them all alike and their ratios hold.
#
#   scripts/bench-side-by-side.sh [SETUP...]          # default: bare memory-fixed-window governor
#   SIDE_SHAPE=over scripts/bench-side-by-side.sh bare static-429 memory-fixed-window
#   scripts/bench-side-by-side.sh bare memory-fixed-window memory-fixed-window@/tmp/base-target/release/bench-server
#
# A setup written SETUP@SERVER is served by that bench-server binary (another build, for
# two builds of one setup side by side); the others by this tree's.
# Every setup's bench-server (built by scripts/bench.sh, or here when missing) runs pinned
# to CPU 0, all of them at once, sharing it; one wrk per server runs on CPU 1. Each round
# reads each server's CPU time (its threads' time on a CPU, from /proc), drives all of them for
# SIDE_SECS seconds at once, and reads it again: CPU µs per request = CPU time / requests
# wrk completed. The figure includes the kernel's work for the request (TCP, syscalls),
# which callgrind (scripts/bench-instructions.sh) leaves out, and the switches between
# servers sharing the core, which scripts/bench.sh does not have: compare setups of one
# run, not with another script's figures. The report gives each round and, per setup, the
# median of its CPU per request and of its ratio to the first setup's in the same round
# (its cost over the first's, 1.00x for equal). Written to bench/results/side-by-side.md.
#
# With SIDE_PROFILE=1, perf samples CPU 0 (its software clock, which a virtual machine
# without hardware counters still has) over the rounds, and the report adds where each
# server's time went: µs per request in the kernel and in user space, and each server's
# costliest functions, from the samples of its own process. Samples land where the time
# was spent, stalls included, which callgrind's instruction counts do not show.
#
# Environment: SIDE_SHAPE (under: many clients under their limits; over: one client far
# over its limit), SIDE_SECS (10), SIDE_ROUNDS (8), SIDE_WARMUP (2 s), SIDE_CONNECTIONS (16
# per server), SIDE_CLIENTS (10000), SIDE_PORT (18200: the first server's; the next ones
# count up), SIDE_PROFILE (0), SIDE_PROFILE_HZ (4000 samples a second), SIDE_PROFILE_TOP
# (8 functions per server), CARGO_TARGET_DIR (target/ of this repository).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SHAPE=${SIDE_SHAPE:-under}
SECS=${SIDE_SECS:-10}
ROUNDS=${SIDE_ROUNDS:-8}
WARMUP=${SIDE_WARMUP:-2}
CONNECTIONS=${SIDE_CONNECTIONS:-16}
CLIENTS=${SIDE_CLIENTS:-10000}
PORT=${SIDE_PORT:-18200}
PROFILE=${SIDE_PROFILE:-0}
PROFILE_HZ=${SIDE_PROFILE_HZ:-4000}
PROFILE_TOP=${SIDE_PROFILE_TOP:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER=$CARGO_TARGET_DIR/release/bench-server
OUT=bench/results/side-by-side.md
if [ $# -gt 0 ]; then SETUPS=("$@"); else SETUPS=(bare memory-fixed-window governor); fi

log() { printf '==> %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

case $SHAPE in
    under) SCRIPT=bench/wrk/many.lua ;;
    over) SCRIPT=bench/wrk/hot.lua ;;
    *) die "unknown shape $SHAPE (under or over)" ;;
esac
[ "$(nproc)" -ge 2 ] || die "needs two CPUs: the servers on one, wrk on the other"
for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || {
        log "installing $tool"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    }
done
if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then
    log "installing perf"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
[ -x "$SERVER" ] || cargo build --release --manifest-path bench/Cargo.toml --bin bench-server
# The backends' servers are scripts/bench.sh's to start; here they must already answer.
for entry in "${SETUPS[@]}"; do
    case ${entry%%@*} in
        redis|redis-cached)
            redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 ||
                die "${entry%%@*} needs Redis on 127.0.0.1:6379 (scripts/bench.sh starts it)" ;;
        memcached)
            (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null ||
                die "memcached needs memcached on 127.0.0.1:11211 (scripts/bench.sh starts it)" ;;
    esac
done

# CPU time of a process, in nanoseconds: the time on a CPU of each of its threads
# (/proc/PID/task/*/schedstat, first field), which the scheduler counts to the nanosecond
# where /proc/PID/stat counts clock ticks (10 ms).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ sum += $1 } END { print sum }'; }

wait_port() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/api/data" && return 0
        sleep 0.1
    done
    return 1
}

PIDS=()
WORK=$(mktemp -d)
PERF_PID=
# perf, when profiling, runs until it is interrupted: it goes with the servers.
trap 'kill "${PIDS[@]}" $PERF_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

for i in "${!SETUPS[@]}"; do
    setup=${SETUPS[$i]%%@*}
    server=$SERVER
    [ "$setup" = "${SETUPS[$i]}" ] || server=${SETUPS[$i]#*@}
    [ -x "$server" ] || die "no bench-server at $server"
    taskset -c 0 "$server" "$setup" "$SHAPE" $((PORT + i)) >"$WORK/server-$i.log" 2>&1 &
    PIDS+=("$!")
done
for i in "${!SETUPS[@]}"; do
    wait_port $((PORT + i)) || die "bench-server ${SETUPS[$i]} did not listen: $(cat "$WORK/server-$i.log")"
done

# drive SECONDS: one wrk per server, all at once; wrk's report of server i in $WORK/wrk-i.
drive() {
    local wrks=()
    for i in "${!SETUPS[@]}"; do
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$1s" --timeout 5s -s "$SCRIPT" \
            "http://127.0.0.1:$((PORT + i))/api/data" -- "$CLIENTS" >"$WORK/wrk-$i" 2>&1 &
        wrks+=("$!")
    done
    wait "${wrks[@]}"
}

log "${SETUPS[*]}, shape $SHAPE: $ROUNDS rounds of ${SECS}s, all at once"
drive "$WARMUP"
if [ "$PROFILE" = 1 ]; then
    perf record -q -e cpu-clock -C 0 -F "$PROFILE_HZ" -o "$WORK/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
fi
declare -A CPU
declare -A REQUESTS
for round in $(seq 1 "$ROUNDS"); do
    before=()
    for pid in "${PIDS[@]}"; do before+=("$(cpu_ns "$pid")"); done
    drive "$SECS"
    line="round $round"
    for i in "${!SETUPS[@]}"; do
        ns=$(($(cpu_ns "${PIDS[$i]}") - before[i]))
        requests=$(sed -n 's/^BENCH_RESULT .*requests=\([0-9]*\).*/\1/p' "$WORK/wrk-$i")
        [ -n "$requests" ] && [ "$requests" -gt 0 ] || die "no requests from wrk for ${SETUPS[$i]}: $(cat "$WORK/wrk-$i")"
        us=$(awk -v t="$ns" -v n="$requests" 'BEGIN{printf "%.3f", t / 1e3 / n}')
        CPU[$round,$i]=$us
        REQUESTS[$i]=$((${REQUESTS[$i]:-0} + requests))
        line+=$(printf '  %s %s µs (%s req)' "${SETUPS[$i]}" "$us" "$requests")
    done
    log "$line"
done

# The profile's section of the report: per server, µs per request in the kernel and in
# user space (the samples of its process times the sampling period, over the requests of
# every round), then its costliest functions in user space.
profile_report() {
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    perf script -i "$WORK/perf.data" -F pid,ip,sym 2>/dev/null >"$WORK/samples" || true
    if [ ! -s "$WORK/samples" ]; then
        echo
        echo "perf recorded no samples (is \`perf record -C 0\` allowed here?): no profile."
        return
    fi
    # One line per sample: the setup's index, k (kernel) or u (user), the function.
    awk -v pids="${PIDS[*]}" '
        BEGIN { n = split(pids, p, " "); for (i = 1; i <= n; i++) index_of[p[i]] = i - 1 }
        ($1 in index_of) {
            sym = $0; sub(/^ *[0-9]+ +[0-9a-f]+ */, "", sym)
            print index_of[$1] "\t" ($2 ~ /^ffffffff/ ? "k" : "u") "\t" substr(sym, 1, 100)
        }' "$WORK/samples" >"$WORK/by-setup"
    echo
    echo "Where each server's CPU time went (perf, cpu-clock on CPU 0 at ${PROFILE_HZ} Hz over the rounds; µs per request):"
    echo
    echo "| setup | kernel | user | both | both over ${SETUPS[0]}'s |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    local base=""
    for i in "${!SETUPS[@]}"; do
        local us kernel user both
        us=$(awk -v hz="$PROFILE_HZ" -v n="${REQUESTS[$i]}" 'BEGIN { printf "%.9f", 1e6 / hz / n }')
        read -r kernel user < <(awk -F'\t' -v i="$i" '$1 == i { n[$2]++ }
            END { print n["k"] + 0, n["u"] + 0 }' "$WORK/by-setup")
        both=$(awk -v k="$kernel" -v u="$user" -v us="$us" 'BEGIN { printf "%.3f", (k + u) * us }')
        [ -n "$base" ] || base=$both
        awk -v s="${SETUPS[$i]}" -v k="$kernel" -v u="$user" -v us="$us" -v both="$both" -v base="$base" \
            'BEGIN { printf "| %s | %.3f | %.3f | %s | %.3fx |\n", s, k * us, u * us, both, (base > 0 ? both / base : 0) }'
    done
    for i in "${!SETUPS[@]}"; do
        echo
        echo "${SETUPS[$i]}, costliest functions in user space (µs per request):"
        echo
        awk -F'\t' -v i="$i" '$1 == i && $2 == "u" { print $3 }' "$WORK/by-setup" |
            sort | uniq -c | sort -rn |
            awk -v hz="$PROFILE_HZ" -v n="${REQUESTS[$i]}" -v top="$PROFILE_TOP" 'NR <= top {
                count = $1; sub(/^ *[0-9]+ /, "")
                printf "- %.3f `%s`\n", count * 1e6 / hz / n, $0 }'
    done
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
    echo "Side by side, $(date -u '+%Y-%m-%d %H:%M') UTC, sources at $(git rev-parse --short HEAD 2>/dev/null || echo unknown):"
    echo "shape $SHAPE, $ROUNDS rounds of ${SECS}s, every server on CPU 0 at once, one wrk -t1 -c$CONNECTIONS each on CPU 1."
    echo "Server CPU µs per request (time on a CPU, all threads); the ratio is a setup's over ${SETUPS[0]}'s in the same round."
    echo
    echo "| setup | median µs/req | median ratio | lowest | highest | ratios, round by round |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    for i in "${!SETUPS[@]}"; do
        ratios=()
        values=()
        for round in $(seq 1 "$ROUNDS"); do
            values+=("${CPU[$round,$i]}")
            ratios+=("$(awk -v a="${CPU[$round,$i]}" -v b="${CPU[$round,0]}" 'BEGIN{printf "%.3f", a / b}')")
        done
        med_us=$(printf '%s\n' "${values[@]}" | median)
        med_ratio=$(printf '%s\n' "${ratios[@]}" | median)
        low=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)
        high=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
        printf '| %s | %s | %sx | %sx | %sx | %s |\n' "${SETUPS[$i]}" "$med_us" "$med_ratio" "$low" "$high" "${ratios[*]}"
    done
    [ "$PROFILE" = 1 ] && profile_report
} >"$OUT"
cat "$OUT"
