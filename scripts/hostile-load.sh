#!/usr/bin/env bash
# Hostile load on loopback: starts `fluxgate serve` (no cluster, the shipped defaults plus
# the flags given after --) and runs scripts/hostile_load.py, which runs each attack beside a
# steady trickle of normal reviews and prints, per attack: the normal reviews' p50/p99 and
# failures, /healthz answers, peak RSS, connections held, and what the attack got back.
#
#   scripts/hostile-load.sh [--binary PATH] [--only a,b] [--duration S] [--rate R] [-- SERVE FLAGS]
#
# Bounded: every attack stops after its duration (15 s; h2-idle 45 s, to outlast the 30 s
# idle timeout) and its own count limits; nothing leaves loopback. Needs Python 3 and, for
# nothing else, curl. Without --binary it builds the release binary (fat LTO: minutes).
# The figures are the machine's: run it on a quiet one. docs/RELIABILITY.md has a run.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
BIN=""
PY_ARGS=()
SERVE_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BIN="$2"; shift 2 ;;
        --only|--duration|--rate|--duration-override) PY_ARGS+=("$1" "$2"); shift 2 ;;
        --) shift; SERVE_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    (cd "$REPO" && cargo build --release --bin fluxgate)
    BIN="$TARGET/release/fluxgate"
fi

OUT="$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-hostile.XXXXXX")"
PORT=18643
METRICS=19190
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$OUT/certs"
}
trap cleanup EXIT

"$BIN" certs --out "$OUT/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1
"$BIN" serve --no-cluster --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS" \
    --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key" --log-format json \
    "${SERVE_ARGS[@]}" 2>"$OUT/server.log" &
SERVER=$!
for _ in $(seq 1 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$METRICS/healthz"; then break; fi
    sleep 0.05
done
echo "fluxgate $("$BIN" --version | awk '{print $2}') (pid $SERVER) on 127.0.0.1:$PORT; log in $OUT/server.log"
echo "flags: ${SERVE_ARGS[*]:-(defaults)}; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$REPO/scripts/hostile_load.py" --port "$PORT" --metrics-port "$METRICS" \
    --ca "$OUT/certs/ca.crt" --pid "$SERVER" --log "$OUT/server.log" \
    --normal-body "$REPO/tests/fixtures/bench/ocirepository-create-4k.json" "${PY_ARGS[@]}"
echo "server peak RSS over the whole run (VmHWM): $(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$SERVER/status")"
