#!/usr/bin/env bash
# Scale benchmark: fluxgate in cluster mode against a real kube-apiserver holding a large cluster.
# See docs/BENCHMARKS.md ("Scale") for what each figure means.
#
#   KUBEBUILDER_ASSETS=/path/to/envtest scripts/bench-scale.sh \
#       [-b ROLEBINDINGS] [-r CLUSTERROLES] [-w WORKLOADS] [-d SECONDS] [-o OUTDIR] [--skip-build]
#       [--load-only | --kubeconfig FILE]
#
# Defaults: 100,000 RoleBindings, 2,000 ClusterRoles, 10,000 Deployments, 10 s per load run.
# Starts etcd and kube-apiserver from $KUBEBUILDER_ASSETS (the envtest assets the tests use, with
# the flags of tests/support/envtest), loads the cluster (examples/scale_cluster.rs, 64 creates in
# flight), then measures `fluxgate serve` (one tokio worker on core 0, wrk on core 1):
# time to ready, RSS after sync, the OCIRepository and RoleBinding reviews (throughput, p99, API
# requests per review from the API server's own apiserver_request_total), the OCIRepository review
# against an empty view, and the audit scan (peak RSS of `serve` across a scan and of
# `fluxgate audit`, scan time). Nothing is asserted: it prints figures. Opt-in; not part of the
# test suite. Everything it starts is stopped and its folder removed when it exits.
# --load-only starts and loads the cluster, prints its kubeconfig and keeps it until interrupted;
# --kubeconfig FILE measures against that cluster (loaded with the same -b -r -w) without loading.
set -euo pipefail

BINDINGS=100000
CLUSTER_ROLES=2000
WORKLOADS=10000
DURATION=10
SKIP_BUILD=0
LOAD_ONLY=0
EXISTING=""
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
OUT="$TARGET/bench-scale"
while [ $# -gt 0 ]; do
    case "$1" in
        -b) BINDINGS="$2"; shift 2 ;;
        -r) CLUSTER_ROLES="$2"; shift 2 ;;
        -w) WORKLOADS="$2"; shift 2 ;;
        -d) DURATION="$2"; shift 2 ;;
        -o) OUT="$2"; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --load-only) LOAD_ONLY=1; shift ;;
        --kubeconfig) EXISTING="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "wrk is needed (Debian: apt-get install wrk)" >&2; exit 2; }
command -v kubectl >/dev/null || { echo "kubectl is needed" >&2; exit 2; }

SERVER_CORE=0
CLIENT_CORE=1
BIN="${BENCH_BIN_DIR:-$TARGET/release}"  # BENCH_BIN_DIR: e.g. target/debug, to try the script
OCI_BODY="$REPO/tests/fixtures/bench/ocirepository-create-4k.json"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/fluxgate-bench-scale.XXXXXX)"
RESULTS="$OUT/results.txt"
: > "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$RESULTS"; }
now_ms() { date +%s%3N; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- build, inputs ---------------------------------------------------------------------------
if [ "$SKIP_BUILD" = 0 ]; then
    (cd "$REPO" && cargo build --release --bin fluxgate --example scale_cluster)
fi
"$BIN/examples/scale_cluster" reviews "$OUT" "$BINDINGS" "$CLUSTER_ROLES" >/dev/null
RB_BODY="$OUT/rolebinding-review.json"

# --- the cluster: etcd and kube-apiserver, as tests/support/envtest starts them -----------------
PKI="$WORK/pki"
"$BIN/fluxgate" certs --out "$PKI" --dns localhost --ip 127.0.0.1 --days 2 >/dev/null 2>&1
api() { kubectl get --raw "$1"; }
if [ -n "$EXISTING" ]; then
    export KUBECONFIG="$EXISTING"
else
: "${KUBEBUILDER_ASSETS:?set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver}"
ASSETS="$(cd "$KUBEBUILDER_ASSETS" && pwd -P)"
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
TOKEN="$(openssl rand -hex 16)"
echo "$TOKEN,admin,admin,\"system:masters\"" > "$PKI/tokens.csv"
ETCD_PORT=$(free_port); ETCD_PEER=$(free_port); API_PORT=$(free_port)
"$ASSETS/etcd" --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --unsafe-no-fsync \
    --quota-backend-bytes 8589934592 >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
"$ASSETS/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" --secure-port "$API_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --cert-dir "$WORK/apiserver" \
    --tls-cert-file "$PKI/tls.crt" --tls-private-key-file "$PKI/tls.key" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC --token-auth-file "$PKI/tokens.csv" \
    --endpoint-reconciler-type none >"$WORK/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!
PIDS+=("$APISERVER_PID")
export KUBECONFIG="$WORK/kubeconfig"
cat > "$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: scale
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: scale
  context: {cluster: scale, user: admin}
current-context: scale
EOF
for _ in $(seq 1 600); do api /readyz >/dev/null 2>&1 && break; sleep 0.1; done
api /readyz >/dev/null || { tail -20 "$WORK/kube-apiserver.log"; exit 1; }
for crd in "$REPO"/tests/fixtures/corpus/crds/*.toolkit.fluxcd.io_*.yaml; do
    kubectl apply --server-side -f "$crd" >/dev/null
done
kubectl wait --for condition=Established crd --all --timeout 120s >/dev/null
fi

# Sum of apiserver_request_total whose labels contain every given pattern (e.g. 'verb="GET"').
requests() {
    api /metrics | awk -v patterns="$*" '
        BEGIN { n = split(patterns, p, " ") }
        /^apiserver_request_total\{/ {
            for (i = 1; i <= n; i++) if (index($0, p[i]) == 0) next
            sum += $NF
        }
        END { printf "%d\n", sum }'
}

# --- the machine ------------------------------------------------------------------------------
say "fluxgate scale benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg) (wall-clock figures are only as good as the machine was quiet)"
say "kube-apiserver $(api /version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])'), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"

# --- load ---------------------------------------------------------------------------------------
say ""
say "== load: $BINDINGS RoleBindings, $CLUSTER_ROLES ClusterRoles, $WORKLOADS Deployments"
if [ -z "$EXISTING" ]; then
    # A load stopped early (the loader killed) still leaves a cluster to measure: the figures
    # below say what it holds.
    "$BIN/examples/scale_cluster" load "$BINDINGS" "$CLUSTER_ROLES" "$WORKLOADS" | tee -a "$RESULTS" \
        || say "the load stopped early"
else
    say "loaded before, in the cluster of $EXISTING"
fi
# How many objects a list holds: the first item plus the API server's remainingItemCount.
stored() { api "$1?limit=1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["items"]) + (d["metadata"].get("remainingItemCount") or 0))'; }
say "in the cluster: $(stored /apis/rbac.authorization.k8s.io/v1/rolebindings) RoleBindings, $(stored /apis/rbac.authorization.k8s.io/v1/clusterroles) ClusterRoles, $(stored /apis/apps/v1/deployments) Deployments"
if [ "$LOAD_ONLY" = 1 ]; then
    cp "$KUBECONFIG" "$OUT/kubeconfig"
    say "cluster kept until interrupted: --kubeconfig $OUT/kubeconfig"
    while kill -0 "$APISERVER_PID" 2>/dev/null; do sleep 5; done
    exit 0
fi

# --- fluxgate serve -----------------------------------------------------------------------------
FG_PORT=$(free_port)
FG_METRICS=$(free_port)
EMPTY_PORT=$(free_port)
EMPTY_METRICS=$(free_port)

# Starts `fluxgate serve` on the server core; sets FG_PID and READY_MS (start to /readyz 200).
start_serve() { # log port metrics-port extra-arguments...
    local log=$1 port=$2 metrics=$3
    shift 3
    local start
    start=$(now_ms)
    taskset -c "$SERVER_CORE" "$BIN/fluxgate" serve --worker-threads 1 \
        --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" \
        --tls-cert "$PKI/tls.crt" --tls-key "$PKI/tls.key" --log-format json "$@" \
        2>"$OUT/$log" &
    FG_PID=$!
    PIDS+=("$FG_PID")
    for _ in $(seq 1 3000); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics/readyz")" = 200 ] && break
        kill -0 "$FG_PID" 2>/dev/null || { tail -5 "$OUT/$log"; exit 1; }
        sleep 0.05
    done
    READY_MS=$(( $(now_ms) - start ))
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

cat > "$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY"), "rb"):read("*a")
done = function(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.status + summary.errors.timeout
    io.write(string.format("RESULT %.0f %.3f %.3f %.3f %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
        summary.requests, errors))
end
EOF

# The verdict one review gets (allowed, and the message if any).
verdict() { # port body
    curl -s --cacert "$PKI/ca.crt" -H 'Content-Type: application/json' --data-binary "@$2" \
        "https://localhost:$1/validate" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["response"]; print("allowed" if r["allowed"] else "denied: " + r.get("status",{}).get("message",""))'
}

# Runs wrk against one server; prints "rps p50 p99 max requests errors api-requests gets-of-roles".
load_run() { # name port body
    local name=$1 port=$2 body=$3 all0 roles0 all1 roles1 line
    # One warm-up second, not counted.
    BODY="$body" taskset -c "$CLIENT_CORE" wrk -t1 -c32 -d1s -s "$WORK/post.lua" \
        "https://localhost:$port/validate" >/dev/null
    all0=$(requests); roles0=$(requests 'verb="GET"' 'group="rbac.authorization.k8s.io"')
    line=$(BODY="$body" taskset -c "$CLIENT_CORE" wrk -t1 -c32 -d"${DURATION}s" -s "$WORK/post.lua" \
        "https://localhost:$port/validate" | tee "$OUT/wrk-$name.txt" | awk '/^RESULT/ {$1=""; print}')
    all1=$(requests); roles1=$(requests 'verb="GET"' 'group="rbac.authorization.k8s.io"')
    # /metrics is not a resource request: the scrapes are not counted.
    echo "$line $((all1 - all0)) $((roles1 - roles0))"
}

say ""
say "== fluxgate serve (cluster mode, one tokio worker on core $SERVER_CORE; wrk -t1 -c32 on core $CLIENT_CORE, ${DURATION}s)"
start_serve serve.log "$FG_PORT" "$FG_METRICS" --audit-interval 0
SERVE_PID=$FG_PID
say "time from start to ready (view synced): $READY_MS ms"
sleep 2
say "RSS after sync: $(mib "$(rss_kib "$SERVE_PID")") MiB (peak so far $(mib "$(hwm_kib "$SERVE_PID")") MiB)"
say "RoleBinding review verdict: $(verdict "$FG_PORT" "$RB_BODY")"
say "OCIRepository review verdict: $(verdict "$FG_PORT" "$OCI_BODY")"

start_serve serve-empty.log "$EMPTY_PORT" "$EMPTY_METRICS" --audit-interval 0 --no-cluster
EMPTY_PID=$FG_PID
# The empty-view server waits on its core while the full one is measured, and the reverse.
OCI=$(load_run oci "$FG_PORT" "$OCI_BODY")
RB=$(load_run rolebinding "$FG_PORT" "$RB_BODY")
OCI_EMPTY=$(load_run oci-empty "$EMPTY_PORT" "$OCI_BODY")
stop "$EMPTY_PID"
say "RSS after the load runs: $(mib "$(rss_kib "$SERVE_PID")") MiB"
field() { echo "$1" | awk -v i="$2" '{print $i}'; }
say ""
printf '%-40s %14s %14s %14s\n' "figure" "RoleBinding" "OCIRepository" "OCI, no view" | tee -a "$RESULTS"
for spec in "throughput (reviews/s):1" "p50 (ms):2" "p99 (ms):3" "max (ms):4" "reviews:5" "errors:6" "API requests in the run (all):7" "GETs of RBAC objects:8"; do
    label=${spec%:*}; i=${spec##*:}
    printf '%-40s %14s %14s %14s\n' "$label" "$(field "$RB" "$i")" "$(field "$OCI" "$i")" "$(field "$OCI_EMPTY" "$i")" | tee -a "$RESULTS"
done
per_review() { awk -v a="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.5f", a / n; else print "-" }'; }
say "$(printf '%-40s %14s %14s' "API requests per review (all, upper bound)" "$(per_review "$(field "$RB" 7)" "$(field "$RB" 5)")" "$(per_review "$(field "$OCI" 7)" "$(field "$OCI" 5)")")"
say "RoleBinding / OCIRepository throughput: $(awk -v a="$(field "$RB" 1)" -v b="$(field "$OCI" 1)" 'BEGIN { printf "%.2fx", a / b }') (target >= 0.5x)"
say "OCIRepository full view / empty view throughput: $(awk -v a="$(field "$OCI" 1)" -v b="$(field "$OCI_EMPTY" 1)" 'BEGIN { printf "%.2fx", a / b }') (target: within 1.2x)"
stop "$SERVE_PID"

# --- the audit scan inside serve ----------------------------------------------------------------
AUDIT_INTERVAL=15
say ""
say "== audit scan inside fluxgate serve (--audit-interval $AUDIT_INTERVAL; the first scan after sync)"
start_serve serve-audit.log "$FG_PORT" "$FG_METRICS" --audit-interval "$AUDIT_INTERVAL"
SERVE_PID=$FG_PID
sleep 1
before=$(rss_kib "$SERVE_PID")
hwm_before=$(hwm_kib "$SERVE_PID")
peak=$before
for _ in $(seq 1 6000); do
    rss=$(rss_kib "$SERVE_PID")
    [ "$rss" -gt "$peak" ] && peak=$rss
    grep -q '"audit scan done"' "$OUT/serve-audit.log" && break
    sleep 0.1
done
done_line=$(grep -m1 '"audit scan done"' "$OUT/serve-audit.log" || echo "{}")
sleep 2
say "ready in $READY_MS ms; RSS before the scan $(mib "$before") MiB (peak during sync $(mib "$hwm_before") MiB)"
say "scan: $(echo "$done_line" | python3 -c 'import json,sys; d=json.load(sys.stdin); f=d.get("fields",d); print("%s objects, %s findings, %.1f s" % (f.get("objects"), f.get("findings"), float(f.get("seconds", 0))))')"
say "peak RSS across the scan (sampled every 0.1 s): $(mib "$peak") MiB; process peak (VmHWM) $(mib "$(hwm_kib "$SERVE_PID")") MiB; RSS 2 s after: $(mib "$(rss_kib "$SERVE_PID")") MiB"
stop "$SERVE_PID"

# --- fluxgate audit -----------------------------------------------------------------------------
say ""
say "== fluxgate audit (sync, scan, table; peak RSS and wall time by /usr/bin/time)"
/usr/bin/time -f '%M %e' -o "$WORK/audit.time" "$BIN/fluxgate" audit --kubeconfig "$KUBECONFIG" \
    >"$OUT/audit.txt" 2>"$OUT/audit.log" || true
read -r audit_kib audit_s < <(tail -1 "$WORK/audit.time")
say "fluxgate audit: peak RSS $(mib "$audit_kib") MiB, $audit_s s wall (includes the view's sync)"
say ""
say "results in $RESULTS"
