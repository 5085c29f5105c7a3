#!/usr/bin/env bash
# Makes fluxgate's webhook certificates with `fluxgate certs` (for clusters without
# cert-manager) and puts them where the fluxgate-certs overlays expect them:
#
#   Secret    fluxgate-system/fluxgate-tls      tls.crt, tls.key (the serving pair; never in Git)
#   ConfigMap flux-system/fluxgate-ca-bundle    FLUXGATE_CA_BUNDLE (base64 CA bundle; public),
#             when the cluster has Flux; DIR/ca-bundle.b64 in every case
#
# Flux fills ${FLUXGATE_CA_BUNDLE} in the overlay from the ConfigMap (postBuild.substituteFrom
# in deploy/flux/fluxgate.yaml). Without Flux, the script prints the kubectl command to run.
#
# Rotation without a failed request: the new bundle trusts the new CA *and* the one in use
# (read from the live webhook configuration), so publish the bundle first, let it reach the
# webhook configurations, then switch the Secret:
#   make-certs.sh --out DIR --only bundle     # then: flux reconcile kustomization fluxgate
#   make-certs.sh --out DIR --only secret     # same DIR: reuses the pair made by step one
#
# Usage: make-certs.sh [--out DIR] [--only bundle|secret] [--no-apply] [--days N]
#                      [--namespace fluxgate-system] [--flux-namespace flux-system]
# Environment: FLUXGATE (the fluxgate binary, default: fluxgate), KUBECTL (default: kubectl).
# --no-apply only writes DIR/{ca.crt,ca.key,tls.crt,tls.key,ca-bundle.b64}; nothing in a cluster.
# Keep DIR's keys out of Git: delete DIR once the Secret exists (ca.key is only needed to
# sign again with the same CA, and running this script again makes a new CA anyway).
set -euo pipefail

fluxgate=${FLUXGATE:-fluxgate}
kubectl=${KUBECTL:-kubectl}
out=""
only="all"
apply=true
days=365
namespace=fluxgate-system
flux_namespace=flux-system
service=fluxgate

die() { echo "make-certs.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --only) only=${2:?--only needs bundle or secret}; shift 2 ;;
    --no-apply) apply=false; shift ;;
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --namespace) namespace=${2:?--namespace needs a name}; shift 2 ;;
    --flux-namespace) flux_namespace=${2:?--flux-namespace needs a name}; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$only" in all|bundle|secret) ;; *) die "--only takes bundle or secret, not $only" ;; esac
if [ "$only" = secret ] && [ -z "$out" ]; then
  die "--only secret needs the --out DIR of the --only bundle step"
fi
if [ -z "$out" ]; then
  out=$(mktemp -d)
  echo "Keys go to $out (delete it once the Secret exists)." >&2
fi

# The API server connects to the Service by this name; the second one is for clients that
# use the cluster domain.
if [ ! -s "$out/tls.crt" ] || [ ! -s "$out/tls.key" ] || [ ! -s "$out/ca.crt" ]; then
  [ "$only" = secret ] && die "$out has no certificates: run the --only bundle step first"
  "$fluxgate" certs --out "$out" --days "$days" \
    --dns "$service.$namespace.svc" \
    --dns "$service.$namespace.svc.cluster.local" >/dev/null
fi
for f in ca.crt tls.crt tls.key; do
  [ -s "$out/$f" ] || die "fluxgate certs did not write $out/$f"
done

# The CA in use (the API server's, read from the live webhook configuration) stays trusted
# until the next rotation, so the bundle holds at most two CAs: the new one and the first of
# the bundle in use. Running the bundle step again keeps a bundle that already has the new CA.
bundle=$(base64 <"$out/ca.crt" | tr -d '\n')
if $apply && [ "$only" != secret ]; then
  current=$("$kubectl" get validatingwebhookconfiguration fluxgate \
    -o 'jsonpath={.webhooks[0].clientConfig.caBundle}' 2>/dev/null || true)
  if [ -n "$current" ]; then
    if printf '%s' "$current" | base64 -d | grep -qxF -- "$(sed -n 2p "$out/ca.crt")"; then
      bundle=$current
    else
      in_use=$(printf '%s' "$current" | base64 -d |
        awk '{ print } /-----END CERTIFICATE-----/ { exit }')
      bundle=$( { cat "$out/ca.crt"; printf '%s\n' "$in_use"; } | base64 | tr -d '\n')
    fi
  fi
fi
printf '%s\n' "$bundle" >"$out/ca-bundle.b64"

if ! $apply; then
  echo "Wrote $out/ca-bundle.b64 (nothing applied: --no-apply)."
  exit 0
fi

if [ "$only" != secret ]; then
  if "$kubectl" get namespace "$flux_namespace" >/dev/null 2>&1; then
    "$kubectl" -n "$flux_namespace" create configmap fluxgate-ca-bundle \
      --from-literal=FLUXGATE_CA_BUNDLE="$bundle" --dry-run=client -o yaml | "$kubectl" apply -f -
  else
    echo "No namespace $flux_namespace (no Flux?): the bundle is only in $out/ca-bundle.b64." >&2
  fi
fi
if [ "$only" != bundle ]; then
  "$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  "$kubectl" -n "$namespace" create secret tls fluxgate-tls \
    --cert="$out/tls.crt" --key="$out/tls.key" --dry-run=client -o yaml | "$kubectl" apply -f -
fi

cat <<EOF

Done. With Flux, the fluxgate Kustomization picks the bundle up at its next reconciliation
(flux reconcile kustomization fluxgate -n $flux_namespace). Without Flux:
  kubectl kustomize deploy/overlays/audit-fluxgate-certs \\
    | FLUXGATE_CA_BUNDLE=\$(cat $out/ca-bundle.b64) envsubst '\$FLUXGATE_CA_BUNDLE' \\
    | kubectl apply -f -
EOF
