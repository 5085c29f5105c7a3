#!/usr/bin/env bash
# Soak test: a real `fluxgate serve` on loopback under a steady request rate over TLS, while
# the certificate rotates, a good and a broken configuration are reloaded, and SIGTERM ends
# it. Not part of `cargo test`: it runs for minutes. Bounded (SOAK_SECONDS), loopback only,
# stops by itself. The figures go in docs/RELIABILITY.md.
#
#   scripts/soak.sh                       180 s at 200 requests/s, debug build
#   SOAK_SECONDS=600 SOAK_RATE=400 SOAK_PROFILE=release scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SOAK_SECONDS:-180}"
rate="${SOAK_RATE:-200}"
profile="${SOAK_PROFILE:-dev}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$profile" in
  release) out=release ;;
  *) out=debug ;;
esac

cargo build --profile "$profile" --bin fluxgate --example soak
exec "$target_dir/$out/examples/soak" "$target_dir/$out/fluxgate" "$seconds" "$rate"
