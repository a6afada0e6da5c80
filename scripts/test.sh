#!/usr/bin/env bash
# test.sh - run wasm86's tests.
#
# Usage: scripts/test.sh [quick|full|long]      (default: full)
#   quick  fmt, clippy, unit tests (CPU vector subset, QMP protocol, devices ...), the wasm
#          boundary test in headless Chromium. Under 5 minutes after the build.
#   full   quick + release binaries, pkg/, integration tests (native boots from kernel, CD,
#          disk and floppy with a complete memtest86+ pass; QMP clients; bridge; the browser
#          page, a disk by URL with range requests, boots from CD and floppy in the tab), full
#          CPU vectors, 10^7-instruction fuzz. What CI runs.
#   long   full + the browser's direct-kernel boot checks, long fuzzing, 10^6-case
#          differential runs, the peer benchmark.
# Installs what is missing first (scripts/setup.sh --browser). Prints each stage's duration;
# stops at the first failing stage with a non-zero status.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tier=${1:-full}
case $tier in quick | full | long) ;; *) echo "test.sh: unknown tier '$tier' (quick|full|long)" >&2; exit 2 ;; esac
export WASM86_TIER=$tier CARGO_TERM_COLOR=never
T=${CARGO_TARGET_DIR:-target}
summary=()
total_start=$SECONDS

stage() {
  local name=$1 start=$SECONDS
  shift
  echo
  echo "=== stage: $name"
  if "$@"; then
    summary+=("$(printf '%-34s ok   %4ds' "$name" $((SECONDS - start)))")
  else
    summary+=("$(printf '%-34s FAIL %4ds' "$name" $((SECONDS - start)))")
    report
    echo "test.sh: stage '$name' failed" >&2
    exit 1
  fi
}

report() {
  echo
  echo "=== $tier tier: stage durations"
  printf '%s\n' "${summary[@]}"
  echo "total $((SECONDS - total_start))s"
}

setup() { scripts/setup.sh --browser; }
fmt() { cargo fmt --all -- --check; }
clippy() { cargo clippy --workspace --all-targets --locked -- -D warnings; }
unit() { cargo test --workspace --exclude wasm86-tests --locked; }
wasm_boundary() {
  CHROMEDRIVER=/usr/bin/chromedriver cargo test -p wasm86-web --target wasm32-unknown-unknown --locked
}
release() { cargo build --release --locked -p wasm86-cli -p wasm86-bridge -p wasm86-conformance; }
pkg() { scripts/build-pkg.sh; }
integration() { cargo test -p wasm86-tests --release --locked -- --test-threads=1; }
conformance_full() {
  "$T"/release/wasm86-conformance singlestep ../shared/testdata/singlestep
}
fuzz_full() { "$T"/release/wasm86-conformance fuzz --count 10000000 --seed 1 --time-limit 120; }
long_runs() {
  WASM86_BOOT_TESTS=1 cargo test -p wasm86-tests --release --locked --test browser &&
  WASM86_FPU_CASES=2000000 WASM86_ALU_CASES=2000000 WASM86_QMP_FUZZ=2000000 \
    cargo test --release --workspace --exclude wasm86-tests --locked -- --include-ignored &&
    "$T"/release/wasm86-conformance fuzz --count 200000000 --seed 7 --time-limit 1800 &&
    scripts/bench.sh
}

stage "setup (install what is missing)" setup
stage "cargo fmt --check" fmt
stage "cargo clippy -D warnings" clippy
stage "unit tests (native)" unit
stage "wasm boundary (headless Chromium)" wasm_boundary
if [ "$tier" = quick ]; then
  report
  echo "not in this tier: release integration tests, browser page tests, full CPU vectors,"
  echo "  10^7 fuzz (run: scripts/test.sh full); long fuzzing and benchmarks (scripts/test.sh long)"
  exit 0
fi
stage "release build" release
stage "wasm package (pkg/)" pkg
stage "integration tests" integration
stage "CPU vectors, all (singlestep)" conformance_full
stage "random-instruction fuzz 10^7" fuzz_full
if [ "$tier" = full ]; then
  report
  echo "not in this tier: the browser's direct-kernel boot checks (GUEST-READY in the tab, shell"
  echo "  and canvas keyboard), long fuzzing (2*10^8 instructions), 2*10^6-case differential FPU/ALU"
  echo "  runs, long QMP fuzz and the v86 peer benchmark: scripts/test.sh long"
  exit 0
fi
stage "long runs and benchmark" long_runs
report
