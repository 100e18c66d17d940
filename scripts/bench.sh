#!/usr/bin/env bash
# End-to-end benchmark: the same axum handler, bare and behind every limiter setup, loaded
# with wrk over loopback, in ONE run; then the plots of docs/BENCHMARKS.md.
#
#   scripts/bench.sh                 # about 7.5 minutes (plus the first build of bench/:
#                                    # about 3 minutes on 2 cores when target/ is warm)
#   scripts/bench.sh --with-core     # first the core criterion bench (~4 more minutes), so
#                                    # docs/plots/decision_time.svg can be drawn
#   BENCH_SECS=3 BENCH_ONLY=memory-gcra,governor scripts/bench.sh   # a quick look
#
# Two traffic shapes, each setup served by its own `bench-server` process:
#   under  many clients (BENCH_CLIENTS distinct X-Forwarded-For, cycled in order), a quota of
#          1000/s per client that none of them reaches: every answer must be 200
#   over   one hot client (a fixed X-Forwarded-For), a quota of 10/min: nearly every answer
#          is 429. This shape also measures `static-429`, no limiter but the same 429 response
#          (status, headers, body) as a constant: the floor of any denial
# Each measurement: a fresh server, a warm-up of BENCH_WARMUP seconds (discarded), then
# BENCH_SECS seconds of `wrk -t1 -cBENCH_CONNECTIONS`. Every setup is measured once per
# pass, BENCH_PASSES passes in turn, and each figure is the best of its passes (the machine
# is shared: a pass disturbed by other work is dropped, and the CSV keeps every pass).
# Ratios divide by the best bare figure of the same shape; bare is measured again at the
# end, and the difference from its first figure is printed as the drift of the run.
# With BENCH_PIN=1 (the default, on a machine with 2 CPUs or more) the server runs on CPU 0
# and wrk on CPU 1 (taskset), which gave steadier figures; with BENCH_PIN_BACKEND=1 (the
# default when pinning) Redis and memcached are moved to CPU 1 for the run, beside wrk, and
# put back after. The server's CPU time per request (and Redis's or memcached's) is read
# from /proc around each measured run.
#
# Writes bench/results/latest.csv (one line per setup and shape) and latest.md (the table
# and the conditions of the run), then draws docs/plots/*.svg with bench/'s `plot`.
#
# Paired rounds (BENCH_PAIRED=1): the bare handler is measured again right before every
# other setup, and each measurement of a setup is also divided by the mean of the bare
# figures just before and just after it. On a host whose speed moves between
# measurements, those ratios of neighbours are steadier than best-of-passes; their
# median and range per setup go to bench/results/paired.md. For a few setups, with more
# passes:
#   BENCH_PAIRED=1 BENCH_PASSES=6 BENCH_SECS=3 BENCH_ONLY=memory-fixed-window,governor scripts/bench.sh
#
# Environment: BENCH_SECS (5), BENCH_WARMUP (2), BENCH_PASSES (2), BENCH_CLIENTS (10000),
# BENCH_CONNECTIONS (32), BENCH_PORT (18080), BENCH_PIN (1), BENCH_PIN_BACKEND (BENCH_PIN),
# BENCH_ONLY (bare and these setups, comma-separated; also the diagnostics static-429 and
# direct-fixed-window),
# BENCH_SHAPES ("under over"), BENCH_MAX_OTHERS (0.15: the share of a CPU other processes
# may take during a measurement), BENCH_RETRIES (3), BENCH_RETRY_WAIT (15 s),
# CARGO_TARGET_DIR (target/ of this repository).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '==> %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

WITH_CORE=0
for arg in "$@"; do
    case $arg in
        --with-core) WITH_CORE=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $arg (try --help)" ;;
    esac
done

BENCH_SECS=${BENCH_SECS:-5}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_CLIENTS=${BENCH_CLIENTS:-10000}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_PORT=${BENCH_PORT:-18080}
BENCH_PIN=${BENCH_PIN:-1}
BENCH_PIN_BACKEND=${BENCH_PIN_BACKEND:-$BENCH_PIN}
BENCH_SHAPES=${BENCH_SHAPES:-under over}
BENCH_PASSES=${BENCH_PASSES:-2}
BENCH_MAX_OTHERS=${BENCH_MAX_OTHERS:-0.15}
BENCH_RETRIES=${BENCH_RETRIES:-3}
BENCH_RETRY_WAIT=${BENCH_RETRY_WAIT:-15}
BENCH_PAIRED=${BENCH_PAIRED:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

ALL_SETUPS="bare memory-fixed-window memory-sliding-window-log memory-sliding-window-counter
memory-token-bucket memory-token-bucket-with-debt memory-leaky-bucket memory-leaky-bucket-with-queue
memory-gcra governor redis redis-cached memcached"
if [ -n "${BENCH_ONLY:-}" ]; then
    SETUPS="bare $(tr ',' ' ' <<<"$BENCH_ONLY" | tr ' ' '\n' | grep -vx bare | tr '\n' ' ')"
else
    SETUPS=$(tr '\n' ' ' <<<"$ALL_SETUPS")
fi

apt_install() {
    if [ -z "${BENCH_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null
        BENCH_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Waits up to 10 s for a TCP port on 127.0.0.1 to accept connections.
wait_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

needs() { grep -qw "$1" <<<"$SETUPS"; }

# ---- tools and services ---------------------------------------------------------------
command -v wrk >/dev/null || { log "installing wrk (Debian package)"; apt_install wrk; }
command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
if needs redis || needs redis-cached; then
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server redis-tools; }
        log "starting redis on 127.0.0.1:6379"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
        wait_port 6379 || die "redis did not start"
    fi
fi
if needs memcached; then
    if ! wait_port 11211 2>/dev/null; then
        command -v memcached >/dev/null || { log "installing memcached"; apt_install memcached; }
        log "starting memcached on 127.0.0.1:11211"
        memcached -d -u root -l 127.0.0.1 -p 11211 -m 256
        wait_port 11211 || die "memcached did not start"
    fi
fi

PIN_SERVER=()
PIN_WRK=()
if [ "$BENCH_PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_WRK=(taskset -c 1)
fi

# ---- builds -------------------------------------------------------------------------------
START=$(date +%s)
if [ "$WITH_CORE" = 1 ]; then
    log "core criterion bench (about 4 minutes)"
    cargo bench -p traffik-core --bench decisions -- --noplot
fi
log "building bench/ in release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --manifest-path bench/Cargo.toml --bins
SERVER=$CARGO_TARGET_DIR/release/bench-server
PLOT=$CARGO_TARGET_DIR/release/plot

# ---- one measurement ----------------------------------------------------------------------
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
TICK_US=$((1000000 / CLK_TCK))

REDIS_PID=$(redis-cli -h 127.0.0.1 -p 6379 info server 2>/dev/null | tr -d '\r' | awk -F: '/^process_id/{print $2}' || true)
MEMCACHED_PID=$(ss -ltnpH 'sport = :11211' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
[ -n "$MEMCACHED_PID" ] || MEMCACHED_PID=$(pgrep -o -x memcached || true)

# With pinning, Redis and memcached run on CPU 1 beside wrk for the whole run, as a
# backend on a host of its own takes none of the app's CPU. Left to the scheduler, they
# mostly ran on CPU 0, woken there by the server that writes to them, and took the server's
# core. Their previous CPU lists are put back on exit.
BACKEND_AFFINITY=()
restore_backends() {
    local entry
    for entry in "${BACKEND_AFFINITY[@]}"; do
        taskset -a -p -c "${entry#*:}" "${entry%%:*}" >/dev/null 2>&1 || true
    done
}
if [ "$BENCH_PIN_BACKEND" = 1 ] && [ ${#PIN_WRK[@]} -gt 0 ]; then
    for pid in $REDIS_PID $MEMCACHED_PID; do
        cpus=$(taskset -p -c "$pid" 2>/dev/null | awk -F': ' '{print $2}') || continue
        [ -n "$cpus" ] || continue
        BACKEND_AFFINITY+=("$pid:$cpus")
        taskset -a -p -c 1 "$pid" >/dev/null
    done
fi
trap 'stop_server; restore_backends' EXIT

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
RAW=$(mktemp)
SERVER_LOG=${TMPDIR:-/tmp}/traffik-bench-server.log
: >"$SERVER_LOG"

# CPU time (in clock ticks) all CPUs have spent busy so far: user, nice, system, irq,
# softirq (a process's own CPU time includes the interrupts it was charged), and steal (time
# the hypervisor gave to another guest).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# Seconds of "XmY.YYYs" (bash's `times`).
secs_of() { awk -v t="$1" 'BEGIN{split(t, a, "m"); sub("s", "", a[2]); print a[1] * 60 + a[2]}'; }

# measure_once SETUP SHAPE: one server, a warm-up, one measured wrk run. Sets M_LINE (the
# CSV fields of the run) and M_OTHERS (CPUs used by processes other than this benchmark's
# during the measured run).
measure_once() {
    local setup=$1 shape=$2 port=$BENCH_PORT script xff
    if [ "$shape" = under ]; then script=bench/wrk/many.lua; else script=bench/wrk/hot.lua; fi
    "${PIN_SERVER[@]}" "$SERVER" "$setup" "$shape" "$port" >>"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_port "$port" || die "bench-server $setup did not listen (see $SERVER_LOG)"
    # A client outside the pool: under its limit in every shape.
    xff=192.0.2.1
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: $xff" "http://127.0.0.1:$port/api/data" || true)
    local expected=200
    [ "$setup" = static-429 ] && expected=429
    [ "$status" = "$expected" ] || die "bench-server $setup answered $status to a first request (see $SERVER_LOG)"
    local url="http://127.0.0.1:$port/api/data"
    "${PIN_WRK[@]}" wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" -s "$script" "$url" -- "$BENCH_CLIENTS" >/dev/null
    local pid_backend=
    case $setup in
        redis|redis-cached) pid_backend=$REDIS_PID ;;
        memcached) pid_backend=$MEMCACHED_PID ;;
    esac
    local s0 b0 s1 b1 t0 t1 out line wrk_cpu
    s0=$(cpu_ticks "$SERVER_PID")
    b0=0; [ -n "$pid_backend" ] && b0=$(cpu_ticks "$pid_backend")
    t0=$(busy_ticks)
    # `times` prints the CPU time of the subshell's children (wrk) on its last line.
    out=$("${PIN_WRK[@]}" wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_SECS}s" --timeout 5s -s "$script" "$url" -- "$BENCH_CLIENTS"; times)
    t1=$(busy_ticks)
    s1=$(cpu_ticks "$SERVER_PID")
    b1=0; [ -n "$pid_backend" ] && b1=$(cpu_ticks "$pid_backend")
    stop_server
    line=$(grep '^BENCH_RESULT' <<<"$out") || die "no result from wrk for $setup $shape: $out"
    wrk_cpu=$(tail -1 <<<"$out")
    wrk_cpu=$(awk -v u="$(secs_of "${wrk_cpu% *}")" -v s="$(secs_of "${wrk_cpu#* }")" 'BEGIN{print u + s}')
    # requests=N rps=X non2xx=N socket_errors=N p50_us=N p99_us=N mean_us=X
    local kv
    kv=$(sed 's/^BENCH_RESULT //' <<<"$line")
    local requests rps non2xx errors p50 p99
    requests=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="requests"{print $2}')
    rps=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="rps"{print $2}')
    non2xx=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="non2xx"{print $2}')
    errors=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="socket_errors"{print $2}')
    p50=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="p50_us"{print $2}')
    p99=$(tr ' ' '\n' <<<"$kv" | awk -F= '$1=="p99_us"{print $2}')
    local server_cpu backend_cpu=
    server_cpu=$(awk -v d=$((s1 - s0)) -v t="$TICK_US" -v n="$requests" 'BEGIN{printf "%.2f", n ? d*t/n : 0}')
    [ -n "$pid_backend" ] && backend_cpu=$(awk -v d=$((b1 - b0)) -v t="$TICK_US" -v n="$requests" 'BEGIN{printf "%.2f", n ? d*t/n : 0}')
    # Busy CPU time of the whole machine, less the server's, the backend's and wrk's, per
    # second of the run: how much of a CPU other work took (kernel threads included).
    M_OTHERS=$(awk -v all=$((t1 - t0)) -v ours=$((s1 - s0 + b1 - b0)) -v w="$wrk_cpu" -v hz="$CLK_TCK" -v d="$BENCH_SECS" \
        'BEGIN{o = ((all - ours) / hz - w) / d; printf "%.2f", o < 0 ? 0 : o}')  # ±0.03 of noise
    M_LINE="$rps,$p50,$p99,$requests,$non2xx,$errors,$server_cpu,$backend_cpu"
    M_SUMMARY=$(printf '%10.0f req/s  p99 %6s us  non-2xx %-8s CPU %5s us/req  others %s CPU' "$rps" "$p99" "$non2xx" "$server_cpu" "$M_OTHERS")
}

# measure SETUP SHAPE LABEL PASS: measure_once, repeated (after a pause) while other
# processes took more than BENCH_MAX_OTHERS of a CPU during the run, at most BENCH_RETRIES
# more times; appends the least disturbed attempt to $RAW.
measure() {
    local setup=$1 shape=$2 label=$3 pass=$4 attempt best_line= best_others=
    for attempt in $(seq 0 "$BENCH_RETRIES"); do
        measure_once "$setup" "$shape"
        printf '    pass %s  %-30s %-5s %s\n' "$pass" "$label" "$shape" "$M_SUMMARY" >&2
        if [ -z "$best_others" ] || awk -v a="$M_OTHERS" -v b="$best_others" 'BEGIN{exit !(a < b)}'; then
            best_line=$M_LINE
            best_others=$M_OTHERS
        fi
        if awk -v a="$M_OTHERS" -v m="$BENCH_MAX_OTHERS" 'BEGIN{exit !(a <= m)}'; then
            break
        fi
        if [ "$attempt" -lt "$BENCH_RETRIES" ]; then
            log "other processes took $M_OTHERS of a CPU during that run; again in ${BENCH_RETRY_WAIT}s"
            sleep "$BENCH_RETRY_WAIT"
        fi
    done
    echo "$label,$shape,$best_line,$pass,$best_others" >>"$RAW"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RUN_START=$(date +%s)
for pass in $(seq 1 "$BENCH_PASSES"); do
    for shape in $BENCH_SHAPES; do
        shape_setups=$SETUPS
        # The reference for denials: Traffik's 429, constant, with no limiter (over only).
        if [ "$shape" = over ] && [ -z "${BENCH_ONLY:-}" ]; then shape_setups="$SETUPS static-429"; fi
        log "pass $pass/$BENCH_PASSES, shape $shape: $(wc -w <<<"$shape_setups") setups, ${BENCH_WARMUP}s warm-up + ${BENCH_SECS}s each (load average $(cut -d' ' -f1 /proc/loadavg))"
        for setup in $shape_setups; do
            if [ "$BENCH_PAIRED" = 1 ] && [ "$setup" != bare ]; then
                measure bare "$shape" bare-pair "$pass"
            fi
            measure "$setup" "$shape" "$setup" "$pass"
        done
    done
done
# The bare handler once more at the end: its first and last figures tell the drift.
for shape in $BENCH_SHAPES; do
    measure bare "$shape" bare-end "$BENCH_PASSES"
done
RUN_SECS=$(( $(date +%s) - RUN_START ))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- results -----------------------------------------------------------------------------
CSV=$RESULTS_DIR/latest.csv
MD=$RESULTS_DIR/latest.md
# Each (setup, shape): the best of its passes (highest requests per second: the pass least
# disturbed by other work on the machine), with that pass's latencies; the lowest server CPU
# per request of its passes. Ratio: over the best bare figure of the same shape (bare-end
# included).
awk -F, '
    # The bare measurements of paired rounds are for paired.md only.
    $1 == "bare-pair" { next }
    {
        key = $1 SUBSEP $2
        if ($1 == "bare-end") { key = "bare" SUBSEP $2 }
        if (!(key in best) || $3 + 0 > rps[key] + 0) { best[key] = $0; rps[key] = $3 }
        if (!(key in cpu) || ($9 + 0 > 0 && $9 + 0 < cpu[key] + 0)) cpu[key] = $9
        if (!(key in bcpu) || ($10 != "" && $10 + 0 < bcpu[key] + 0)) bcpu[key] = $10
        all[key] = (key in all) ? all[key] "/" sprintf("%.0f", $3) : sprintf("%.0f", $3)
        if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    }
    END {
        print "setup,shape,rps,ratio_to_bare,p50_us,p99_us,requests,non2xx,socket_errors,server_cpu_us_per_req,backend_cpu_us_per_req,cpu_ratio_to_bare,rps_of_each_pass,other_processes_cpu"
        for (i = 1; i <= n; i++) {
            k = order[i]
            split(best[k], f, ",")
            split(k, ks, SUBSEP)
            base = rps["bare" SUBSEP ks[2]]
            bc = cpu["bare" SUBSEP ks[2]]
            # Server CPU per request of bare over this setup: the throughput ratio if the
            # server (one pinned core) is the bottleneck.
            cr = (cpu[k] > 0 && bc > 0) ? bc / cpu[k] : 0
            printf "%s,%s,%.0f,%.3f,%s,%s,%s,%s,%s,%s,%s,%.3f,%s,%s\n", ks[1], ks[2], f[3], base ? f[3] / base : 0, f[4], f[5], f[6], f[7], f[8], cpu[k], bcpu[k], cr, all[k], f[12]
        }
    }' "$RAW" >"$CSV"

drift() { # shape -> "first, last (x%)", and a warning past 10%
    awk -F, -v s="$1" '$2==s && $1=="bare" && !a {a=$3} $2==s && $1=="bare-end"{b=$3}
        END{ if (a && b) { d = (b-a)/a*100; printf "%.0f and %.0f req/s (%+.1f%%)", a, b, d
             if (d > 10 || d < -10) printf " -- MORE THAN 10%%: the load of the machine changed during the run; look at the passes in latest.csv, and run again if a setup has no undisturbed pass" } }' "$RAW"
}

{
    echo "End-to-end run of $(date -u '+%Y-%m-%d %H:%M UTC'), sources at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet -- . ':!bench/results' ':!docs/plots' 2>/dev/null || echo ' (with uncommitted changes)')."
    echo "wrk -t1 -c$BENCH_CONNECTIONS, ${BENCH_WARMUP}s warm-up + ${BENCH_SECS}s per measurement, $BENCH_PASSES passes, $BENCH_CLIENTS clients in the 'under' shape;"
    echo "pinning: ${PIN_SERVER[*]:-none} (server), ${PIN_WRK[*]:-none} (wrk), backends $([ ${#BACKEND_AFFINITY[@]} -gt 0 ] && echo 'on CPU 1' || echo 'not pinned'); measuring took ${RUN_SECS}s;"
    echo "load average before $LOAD_BEFORE, after $LOAD_AFTER."
    echo "Each figure is the best of $BENCH_PASSES passes (every setup is measured once per pass, in turn); a run during which"
    echo "other processes took more than $BENCH_MAX_OTHERS of a CPU was repeated (at most $BENCH_RETRIES times; '(disturbed)' marks a setup that never got a quiet run)."
    for shape in $BENCH_SHAPES; do
        echo "bare, first and last of shape '$shape': $(drift "$shape")."
    done
    # Setups whose passes differ by more than 10%: one pass was disturbed, the best is kept.
    awk -F, 'NR > 1 { m = split($13, p, "/"); lo = p[1]; hi = p[1]
            for (j = 2; j <= m; j++) { if (p[j] + 0 < lo + 0) lo = p[j]; if (p[j] + 0 > hi + 0) hi = p[j] }
            if (hi > 0 && (hi - lo) / hi > 0.10) printf "%s %s (%s req/s), ", $1, $2, $13 }' "$CSV" |
        sed 's/, $//; s/^./Passes more than 10% apart (the best one is kept): &/; s/$/./' | grep -v '^\.$' || true
    echo
    echo "| setup | under: req/s | ratio | p99 | over: req/s | ratio | p99 | 429 share (over) | server CPU µs/req (under, over) | CPU ratio (under, over) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F, -v max_others="$BENCH_MAX_OTHERS" '
        NR == 1 { next }
        {
            key = $1; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            rps[key, $2] = $3; ratio[key, $2] = $4; p99[key, $2] = $6
            share[key, $2] = $7 ? $8 / $7 : 0; non2xx[key, $2] = $8; cpu[key, $2] = $10
            cr[key, $2] = $12
            if ($14 + 0 > max_others + 0) disturbed[key] = 1
        }
        function x(v) { return v == "" ? "" : sprintf("%.2fx", v) }
        function ms(us) { return us == "" ? "" : sprintf("%.1f ms", us / 1000) }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]
                flag = (non2xx[k, "under"] > 0) ? " (" non2xx[k, "under"] " non-2xx!)" : ""
                printf "| %s%s | %s%s | %s | %s | %s | %s | %s | %s | %s, %s | %s, %s |\n", k, (k in disturbed) ? " (disturbed)" : "",
                    rps[k, "under"], flag, (k, "under") in ratio ? sprintf("%.2fx", ratio[k, "under"]) : "",
                    ms(p99[k, "under"]), rps[k, "over"],
                    (k, "over") in ratio ? sprintf("%.2fx", ratio[k, "over"]) : "", ms(p99[k, "over"]),
                    (k, "over") in share ? sprintf("%.4f", share[k, "over"]) : "", cpu[k, "under"], cpu[k, "over"],
                    x(cr[k, "under"]), x(cr[k, "over"])
            }
        }' "$CSV"
} >"$MD"
PAIRED=$RESULTS_DIR/paired.md
if [ "$BENCH_PAIRED" = 1 ]; then
    # Each measurement of a setup over the mean of the bare figures around it (the one
    # just before, in its pair, and the next one of the same shape; the one before alone
    # at the end of a shape), in the order of $RAW, which is the order of measurement.
    {
        echo "Paired rounds of $(date -u '+%Y-%m-%d %H:%M UTC'), sources at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet -- . ':!bench/results' ':!docs/plots' 2>/dev/null || echo ' (with uncommitted changes)'): $BENCH_PASSES passes, ${BENCH_SECS}s per measurement."
        echo "Each ratio: a setup's requests per second over the mean of the bare handler's just before and just after it."
        echo
        echo "| setup | shape | median ratio | lowest | highest | ratios, in the order measured |"
        echo "| --- | --- | ---: | ---: | ---: | --- |"
        awk -F, '
            function resolve(shape, after,    i, j) {
                for (i = 1; i <= pending[shape]; i++) {
                    j = waiting[shape, i]
                    ratio[j] = rps[j] / ((before[j] + after) / 2)
                }
                pending[shape] = 0
            }
            {
                if ($1 == "bare" || $1 == "bare-pair" || $1 == "bare-end") {
                    resolve($2, $3)
                    last[$2] = $3
                    next
                }
                if (!($2 in last)) next
                m++
                rps[m] = $3; before[m] = last[$2]
                ratio[m] = $3 / last[$2]
                waiting[$2, ++pending[$2]] = m
                k = $1 SUBSEP $2
                if (!(k in count)) order[++n] = k
                members[k, ++count[k]] = m
            }
            END {
                for (i = 1; i <= n; i++) {
                    k = order[i]
                    c = count[k]
                    list = ""
                    for (a = 1; a <= c; a++) {
                        v[a] = ratio[members[k, a]]
                        list = list (a > 1 ? " " : "") sprintf("%.3f", v[a])
                    }
                    for (a = 2; a <= c; a++) {
                        x = v[a]
                        for (b = a - 1; b >= 1 && v[b] > x; b--) v[b + 1] = v[b]
                        v[b + 1] = x
                    }
                    median = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
                    split(k, ks, SUBSEP)
                    printf "| %s | %s | %.3fx | %.3fx | %.3fx | %s |\n", ks[1], ks[2], median, v[1], v[c], list
                }
            }' "$RAW"
    } >"$PAIRED"
fi
rm -f "$RAW"

echo
cat "$MD"
[ "$BENCH_PAIRED" = 1 ] && { echo; cat "$PAIRED"; }
echo

log "plots"
"$PLOT" --results "$CSV" --criterion "$CARGO_TARGET_DIR/criterion" --out docs/plots
log "done in $(( $(date +%s) - START ))s: $CSV, $MD$([ "$BENCH_PAIRED" = 1 ] && echo ", $PAIRED"), docs/plots/"
