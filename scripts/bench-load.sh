#!/usr/bin/env bash
# Load benchmark: fluxgate beside a trivial allow-all server on the same stack, same run,
# same certificate, same body. See docs/BENCHMARKS.md for what each figure means.
#
#   scripts/bench-load.sh [-d SECONDS] [-o OUTDIR] [--skip-build]
#
# Both servers run on core 0 with one tokio worker; oha (1.16.0) runs on core 1. Every figure
# is printed beside the trivial server's, with the ratio. Nothing is asserted: the machine is
# shared and the figures are what they are.
set -euo pipefail

DURATION=10
SKIP_BUILD=0
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
OUT="$TARGET/bench-load"
while [ $# -gt 0 ]; do
    case "$1" in
        -d) DURATION="$2"; shift 2 ;;
        -o) OUT="$2"; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ "$DURATION" -ge 3 ] || { echo "-d must be at least 3 seconds (the first is dropped)" >&2; exit 2; }

SERVER_CORE=0
CLIENT_CORE=1
OHA_VERSION=1.16.0
FG_PORT=18443
FG_METRICS=19090
TRIVIAL_PORT=18444
BIN="$TARGET/release"
BODY="$REPO/tests/fixtures/bench/ocirepository-create-4k.json"
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: > "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$RESULTS"; }

# --- build, tools, inputs -------------------------------------------------------------------
if [ "$SKIP_BUILD" = 0 ]; then
    (cd "$REPO" && cargo build --release --bin fluxgate --example trivial_server \
        --example bench_data --example startup_time)
fi
if ! oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    cargo install oha --version "$OHA_VERSION" --locked
fi
"$BIN/fluxgate" certs --out "$OUT/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1
"$BIN/examples/bench_data" "$OUT/data" >/dev/null
CA="$OUT/certs/ca.crt"

# --- helpers ----------------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
ticks_per_second=$(getconf CLK_TCK)

wait_tls() { # port
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null --cacert "$CA" -H 'Content-Type: application/json' \
            --data-binary "@$BODY" "https://localhost:$1/validate"; then
            return 0
        fi
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    exit 1
}

start_trivial() {
    taskset -c "$SERVER_CORE" "$BIN/examples/trivial_server" "127.0.0.1:$TRIVIAL_PORT" \
        "$OUT/certs/tls.crt" "$OUT/certs/tls.key" 1 2>"$OUT/trivial.log" &
    TRIVIAL_PID=$!
    PIDS+=("$TRIVIAL_PID")
    wait_tls "$TRIVIAL_PORT"
}

start_fluxgate() { # log-name extra-serve-arguments...
    local log=$1
    shift
    # Logging as in production (deploy/base/deployment.yaml): JSON at info level, every
    # decision logged; here into a file.
    taskset -c "$SERVER_CORE" "$BIN/fluxgate" serve --worker-threads 1 --no-cluster \
        --listen "127.0.0.1:$FG_PORT" --metrics-listen "127.0.0.1:$FG_METRICS" \
        --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key" \
        --log-format json --audit-interval 0 "$@" 2>"$OUT/$log" &
    FLUXGATE_PID=$!
    PIDS+=("$FLUXGATE_PID")
    wait_tls "$FG_PORT"
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Runs oha against one server and prints "name rps p50 p90 p99 p99.9 max ok errors
# cpu_us_per_request peak_rss_kib" (latencies in ms, steady state: the first second dropped).
load() { # name pid port body oha-args...
    local name=$1 pid=$2 port=$3 body=$4
    shift 4
    local csv="$OUT/$name.csv"
    local cpu0 cpu1 start end peak=0 rss
    : > "$OUT/$name.sorted"
    cpu0=$(cpu_ticks "$pid")
    start=$(date +%s%N)
    taskset -c "$CLIENT_CORE" oha --no-tui --worker-threads 1 -m POST -T application/json \
        -D "$body" --cacert "$CA" --output-format csv -o "$csv" "$@" \
        "https://localhost:$port/validate" &
    local oha_pid=$!
    while kill -0 "$oha_pid" 2>/dev/null; do
        rss=$(rss_kib "$pid")
        [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.2
    done
    wait "$oha_pid" || true
    end=$(date +%s%N)
    cpu1=$(cpu_ticks "$pid")
    # request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status
    awk -F, -v name="$name" -v cpu="$((cpu1 - cpu0))" -v hz="$ticks_per_second" \
        -v wall_ns="$((end - start))" -v peak="$peak" -v sorted="$OUT/$name.sorted" '
        NR == 1 { next }
        { total++ ; if ($7 != 200) bad++ }
        $1 >= 1.0 && $7 == 200 {
            n++; print $5 * 1000 > sorted
            if ($1 > last) last = $1
        }
        END {
            close(sorted)
            # CPU over every answered request (warm-up included: the ticks cover the whole run).
            cpu_us = (total > 0) ? cpu / hz * 1e6 / total : 0
            printf "%s %.0f", name, (last > 1.0) ? n / (last - 1.0) : 0
            cmd = "sort -g " sorted
            i = 0
            while ((cmd | getline v) > 0) { i++; lat[i] = v }
            close(cmd)
            split("0.5 0.9 0.99 0.999", q, " ")
            for (k = 1; k <= 4; k++) {
                idx = int(q[k] * i + 0.5); if (idx < 1) idx = 1; if (idx > i) idx = i
                printf " %.3f", (i > 0) ? lat[idx] : 0
            }
            printf " %.3f %d %d %.1f %d\n", (i > 0) ? lat[i] : 0, total - bad, bad + 0, cpu_us, peak
        }' "$csv"
    rm -f "$OUT/$name.sorted"
}

# Prints one comparison line: label, fluxgate value, trivial value, ratio, target note.
compare() { # label unit fluxgate trivial target
    local ratio
    ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    printf '%-46s %12s %12s %8s   %s\n' "$1 ($2)" "$3" "$4" "$ratio" "$5" | tee -a "$RESULTS"
}

field() { # "line" index (1-based after the name)
    echo "$1" | awk -v i="$2" '{print $(i + 1)}'
}

header() {
    say ""
    say "== $1"
    printf '%-46s %12s %12s %8s   %s\n' "figure" "fluxgate" "trivial" "ratio" "target" | tee -a "$RESULTS"
}

# Runs one scenario on both servers (trivial first) and prints the comparison.
scenario() { # title body oha-args...
    local title=$1 body=$2
    shift 2
    local t f tag
    tag=$(echo "$title" | tr -c 'a-zA-Z0-9' '-')
    t=$(load "trivial-$tag" "$TRIVIAL_PID" "$TRIVIAL_PORT" "$body" "$@")
    f=$(load "fluxgate-$tag" "$FLUXGATE_PID" "$FG_PORT" "$body" "$@")
    echo "raw: $t" >> "$RESULTS"
    echo "raw: $f" >> "$RESULTS"
    header "$title"
    compare "throughput" "req/s" "$(field "$f" 1)" "$(field "$t" 1)" "${TARGET_RPS:-}"
    compare "p50" "ms" "$(field "$f" 2)" "$(field "$t" 2)" ""
    compare "p90" "ms" "$(field "$f" 3)" "$(field "$t" 3)" ""
    compare "p99" "ms" "$(field "$f" 4)" "$(field "$t" 4)" "${TARGET_P99:-}"
    compare "p99.9" "ms" "$(field "$f" 5)" "$(field "$t" 5)" "${TARGET_P999:-}"
    compare "max" "ms" "$(field "$f" 6)" "$(field "$t" 6)" ""
    compare "answered 200" "requests" "$(field "$f" 7)" "$(field "$t" 7)" ""
    compare "errors" "requests" "$(field "$f" 8)" "$(field "$t" 8)" "${TARGET_ERRORS:-}"
    compare "server CPU per request" "us" "$(field "$f" 9)" "$(field "$t" 9)" "${TARGET_CPU:-}"
    compare "peak RSS during the run" "KiB" "$(field "$f" 10)" "$(field "$t" 10)" "${TARGET_RSS:-}"
    TARGET_RPS="" TARGET_P99="" TARGET_P999="" TARGET_ERRORS="" TARGET_CPU="" TARGET_RSS=""
}

# --- the machine ------------------------------------------------------------------------------
say "fluxgate load benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "kernel $(uname -r); $(rustc --version); oha $(oha --version | awk '{print $2}'); body $(wc -c < "$BODY") bytes"
say "servers on core $SERVER_CORE (one tokio worker), oha on core $CLIENT_CORE; ${DURATION}s per run, first second dropped"

start_trivial
start_fluxgate fluxgate.log
sleep 1
say ""
say "== idle"
compare "RSS idle" "KiB" "$(rss_kib "$FLUXGATE_PID")" "$(rss_kib "$TRIVIAL_PID")" "fluxgate <= 20480 KiB"

TARGET_RPS="fluxgate >= 0.70x" TARGET_CPU="fluxgate <= 1.50x" TARGET_RSS="fluxgate <= 40960 KiB"
scenario "closed loop, keep-alive, 16 connections" "$BODY" -c 16 -z "${DURATION}s"

for rate in 1000 5000 10000; do
    case $rate in
        5000) TARGET_P99="fluxgate <= 1 ms" TARGET_P999="fluxgate <= 5 ms" TARGET_ERRORS="none" ;;
        10000) TARGET_P99="fluxgate <= 2 ms" ;;
    esac
    scenario "open loop, $rate req/s" "$BODY" -c 32 -q "$rate" --latency-correction -z "${DURATION}s"
done

TARGET_RPS="fluxgate >= 3000/s"
scenario "new TLS connection per request, 16 connections" "$BODY" -c 16 --disable-keepalive -z "${DURATION}s"

BIG="$OUT/data/update-3mib.json"
TARGET_P99="fluxgate <= 20 ms"
scenario "3 MiB UPDATE ($(wc -c < "$BIG") bytes), one connection" "$BIG" -c 1 -z "${DURATION}s"

# --- the cluster view: empty against 100k RBAC objects and 10k workloads --------------------
RB="$OUT/data/rolebinding-review.json"
scenario "RoleBinding review, empty view, open loop 5k req/s" "$RB" -c 32 -q 5000 --latency-correction -z "${DURATION}s"
stop "$FLUXGATE_PID"
loaded_at=$(date +%s%N)
start_fluxgate fluxgate-cluster-state.log --cluster-state "$OUT/data/cluster"
say ""
say "fluxgate with --cluster-state: $(grep -o '"objects":[0-9]*' "$OUT/fluxgate-cluster-state.log" | head -1) loaded and serving after $(( ($(date +%s%N) - loaded_at) / 1000000 )) ms"
sleep 1
say "== 100k RBAC objects and 10k workloads in the view"
compare "RSS with the view loaded, idle" "KiB" "$(rss_kib "$FLUXGATE_PID")" "$(rss_kib "$TRIVIAL_PID")" "fluxgate <= 153600 KiB"
scenario "RoleBinding review, 100k view, open loop 5k req/s" "$RB" -c 32 -q 5000 --latency-correction -z "${DURATION}s"
scenario "4 KiB review, 100k view, closed loop" "$BODY" -c 16 -z "${DURATION}s"
say "(compare these two with the empty-view runs above: target within 1.2x)"

# --- start-up and check ---------------------------------------------------------------------
stop "$FLUXGATE_PID"
stop "$TRIVIAL_PID"
sleep 0.5
say ""
say "== exec to accepting TLS (median of 20; fluxgate target <= 50 ms)"
taskset -c "$CLIENT_CORE" "$BIN/examples/startup_time" "127.0.0.1:$FG_PORT" "$CA" "$BODY" 20 -- \
    taskset -c "$SERVER_CORE" "$BIN/fluxgate" serve --worker-threads 1 --no-cluster \
    --listen "127.0.0.1:$FG_PORT" --metrics-listen "127.0.0.1:$FG_METRICS" \
    --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key" --log-format json \
    --audit-interval 0 | tail -1 | sed 's/^/fluxgate: /' | tee -a "$RESULTS"
taskset -c "$CLIENT_CORE" "$BIN/examples/startup_time" "127.0.0.1:$TRIVIAL_PORT" "$CA" "$BODY" 20 -- \
    taskset -c "$SERVER_CORE" "$BIN/examples/trivial_server" "127.0.0.1:$TRIVIAL_PORT" \
    "$OUT/certs/tls.crt" "$OUT/certs/tls.key" 1 | tail -1 | sed 's/^/trivial:  /' | tee -a "$RESULTS"

say ""
say "== fluxgate check on one core (target >= 50000 objects/s)"
objects=$(grep -c '^kind:' "$OUT/data/check.yaml")
for run in 1 2 3; do
    start=$(date +%s%N)
    taskset -c "$SERVER_CORE" "$BIN/fluxgate" check -o json "$OUT/data/check.yaml" > "$OUT/check.json" || true
    end=$(date +%s%N)
    awk -v n="$objects" -v ns="$((end - start))" -v run="$run" \
        'BEGIN { printf "run %d: %d objects in %.3f s: %.0f objects/s\n", run, n, ns / 1e9, n / (ns / 1e9) }' \
        | tee -a "$RESULTS"
done
say ""
say "results: $RESULTS"
