#!/usr/bin/env bash
# bench.sh - the benchmark command: wasm86 natively against v86 (JIT and interpreter) on the
# default guest, in one run. See scripts/bench.py for the method.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked -p wasm86-cli
exec python3 scripts/bench.py "$@"
