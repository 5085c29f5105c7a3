#!/usr/bin/env bash
# Runs fluxgate's fuzz targets (fuzz/fuzz_targets) with libFuzzer, each for a set time.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh policies check_reader
#
# Stable toolchain only: libfuzzer-sys links libFuzzer, and rustc's stable -C passes /
# -C llvm-args flags add the coverage instrumentation cargo-fuzz would add (cargo-fuzz
# itself needs nightly for -Z sanitizer; Rust code needs no AddressSanitizer to show a
# panic). RUSTFLAGS apply only to the --target build, so build scripts and proc macros
# stay uninstrumented, as with cargo-fuzz.
#
# New inputs go to fuzz/corpus/<target> (kept between runs, not committed), crashes to
# fuzz/artifacts/<target>/. Reproduce one with:
#   "$FUZZ_TARGET_DIR/<triple>/release/<target>" fuzz/artifacts/<target>/crash-...
# and make it a regression test in tests/ before fixing it. Exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(admission_decode json_index policies check_reader config fast_yaml command_line semver go_regexp)
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}"

export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" \
  --target-dir "$target_dir" --bins
bin_dir="$target_dir/$triple/release"

corpus_dir=tests/fixtures/corpus
seed() {
  local target="$1" dir="fuzz/corpus/$1"
  mkdir -p "$dir" "fuzz/artifacts/$target"
  [ -n "$(ls -A "$dir")" ] && return 0
  case "$target" in
    admission_decode | json_index)
      cp tests/fixtures/admission/*.json "$dir"/ ;;
    policies)
      # <kind selector byte><object JSON>, from the API server's own requests.
      local i=0
      for f in tests/fixtures/admission/*.json; do
        i=$((i + 1))
        { printf "\\x$(printf %02x $((i % 256)))"; jq -c '.request.object // .request.oldObject' "$f"; } \
          > "$dir/seed-$i"
      done ;;
    check_reader)
      for d in "$corpus_dir/flux/docs-extracted" "$corpus_dir/gitlab-agent/rendered" \
               "$corpus_dir/rbac/gitlab-docs" "$corpus_dir/gitlab-agent/agent-config-examples" deploy/base; do
        [ -d "$d" ] && find "$d" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) \
          -size -64k -exec cp {} "$dir"/ \;
      done
      cp tests/fixtures/admission/*.json "$dir"/ ;;
    fast_yaml)
      # One document a file, as the reader hands them to the fast path.
      for d in "$corpus_dir" deploy/base; do
        [ -d "$d" ] && find "$d" -type f \( -name '*.yaml' -o -name '*.yml' \) -size -64k \
          | while read -r f; do
              awk -v out="$dir/$(basename "$f")" '/^---/ { n++ } { print > (out "." n) }' "$f"
            done
      done ;;
    config)
      cp src/default-config.yaml "$dir"/default.yaml
      cp deploy/base/config.yaml "$dir"/deploy.yaml ;;
    command_line)
      # <command (0x01-separated)> NUL <args> NUL <NAME=value>...: shell entrypoints.
      printf 'sh\001-c\000exec agentk --kas-address=wss://kas\000' > "$dir/sh-c"
      printf '/bin/sh\001-ec\000F=--kas; exec agentk ${F}-address="$URL"\000URL=wss://kas' > "$dir/vars"
      printf '\000$(FLAG)=x\001--token-file=/t\000FLAG=--kas-address\000CM@' > "$dir/expansion"
      printf 'bash\001-c\000for f in a b; do eval "agentk $f"; done; echo $(date) `id`\000' > "$dir/loop" ;;
    semver)
      # Masterminds' table: every 15th of its constraints, one a file.
      zcat tests/fixtures/semver/masterminds-v3.4.0.jsonl.gz | tail -n +2 | awk 'NR % 15 == 1' \
        | jq -r .c | split -l 1 -a 4 - "$dir/seed-" ;;
    go_regexp)
      # <pattern> NUL <text> NUL <text>: every identity pattern the tests write as a raw
      # string, asked about a GitLab subject and an address.
      grep -ohE 'r"[^"]+"' tests/gitlab_identities.rs tests/signed_oci_sources.rs \
        | sed 's/^r"//; s/"$//' | sort -u | awk -v dir="$dir" '{
            f = sprintf("%s/seed-%04d", dir, NR)
            printf "%s%chttps://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main%crelease-bot@acme.com", $0, 0, 0 > f
            close(f)
          }' ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  seed "$target"
  echo "== $target: ${seconds}s"
  dict=()
  [ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
  if ! "$bin_dir/$target" "fuzz/corpus/$target" "${dict[@]}" \
      -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" 2>&1 \
      | grep -E '^(#[0-9]+[[:space:]]+(DONE|INITED)|stat::|==[0-9]+==|.*(panicked|ERROR|SUMMARY|Test unit written))' ; then
    :
  fi
  if ls "fuzz/artifacts/$target"/* >/dev/null 2>&1; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crash in ${targets[*]}"
