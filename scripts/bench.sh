#!/usr/bin/env bash
# bench.sh - the benchmark command: wasm86 natively against v86 (JIT and interpreter) on the
# default guest, in one run; with --browser also wasm86's page, v86 JIT and v86 no-JIT in
# headless Chromium (tests/browser/bench.mjs). See scripts/bench.py for the method.
# Usage: scripts/bench.sh [--browser] [--quick] [--skip-v86] [--skip-nojit] [--timeout S]
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ " $* " == *" --browser "* ]]; then
  cargo build --release --locked -p wasm86-cli -p wasm86-bridge
  scripts/build-pkg.sh >/dev/null
else
  cargo build --release --locked -p wasm86-cli
fi
exec python3 scripts/bench.py "$@"
