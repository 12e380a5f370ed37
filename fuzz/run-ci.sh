#!/usr/bin/env bash
# The fuzz stage of CI (docs/fuzzing.md): builds every target of fuzz/ once, then runs each for
# a short time from a corpus seeded with the reference vectors (../shared/vectors, through
# fuzz/corpus.py), the committed seeds (fuzz/seeds/<target>) and the kept crash inputs
# (fuzz/regressions/<target>, which run first). Fails when a target does not build, crashes,
# hangs, runs out of memory or runs no input.
#
#   fuzz/run-ci.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 6 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`; .ci/run installs it) and python3.
# cargo-fuzz needs a nightly compiler: the stable one acts as one under RUSTC_BOOTSTRAP=1.
# Targets are built optimized, with debug assertions and overflow checks (cargo fuzz's default)
# but without AddressSanitizer: pktmesh's `unsafe` is in daemon I/O modules no target reaches
# and in crypto-auth's CPU dispatch, whose only memory accesses are 32-byte loads and stores of
# fixed-size arrays, and the sanitizer makes the build take 28 % more CPU time. Runs by hand with
# `cargo fuzz run` keep it (docs/fuzzing.md).
set -euo pipefail
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz"
# The targets are run from fuzz/target below: a CARGO_TARGET_DIR meant for the workspace must
# not send the build elsewhere (the binaries run would then be stale or missing).
unset CARGO_TARGET_DIR
secs="${1:-6}"
[ $# -gt 0 ] && shift
vectors="${PKTMESH_VECTORS:-$fuzz/../../shared/vectors}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
if [ ! -d "$vectors/cjdns-captures" ]; then
  echo "the reference vectors are missing at $vectors" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

echo "building the fuzz targets"
if ! cargo fuzz build --sanitizer none >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log"
  echo "the fuzz targets do not build" >&2
  exit 1
fi
built=$(date +%s)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
python3 corpus.py "$vectors" "$work/vectors" >/dev/null
bin="$fuzz/target/x86_64-unknown-linux-gnu/release"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  dirs=("$work/corpus/$t")
  for d in "$work/vectors/$t" "seeds/$t" "regressions/$t"; do
    if [ -d "$d" ]; then dirs+=("$d"); fi
  done
  log="$work/$t.log"
  if "$bin/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/$t/" "${dirs[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    seeds=$(awk '/^INFO: *[0-9]+ files found in/ { n += $2 } END { print n + 0 }' "$log")
    if [ -z "$runs" ] || [ "$runs" -eq 0 ]; then
      echo "$t: ran no input"
      failed+=("$t")
    else
      echo "$t: $runs runs in ${secs} s, ${cov:-cov: ?} edges, ${seeds:-0} seed files"
    fi
  else
    echo "$t: FAILED"
    grep -m 1 -A 2 'panicked at' "$log" || true
    grep -v '^#[0-9]' "$log" | grep -v '^ *[0-9]*: \|^ *at ' | tail -n 20
    for a in "$work/artifacts/$t"/*; do
      if [ -f "$a" ]; then
        echo "input $(basename "$a") (base64): $(base64 -w0 "$a")"
      fi
    done
    failed+=("$t")
  fi
done

end=$(date +%s)
echo "fuzz stage: build $((built - start)) s, ${#targets[@]} targets $((end - built)) s, total $((end - start)) s"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (reproduce: cargo fuzz run <target> <input>; keep the input in fuzz/regressions/<target>/)" >&2
  exit 1
fi
