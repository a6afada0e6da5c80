#!/usr/bin/env bash
# build-pkg.sh - build the browser package: the wasm86-web crate for wasm32, then wasm-bindgen
# (--target web) into pkg/, then wasm-opt -O3 when binaryen is installed.
# Usage: scripts/build-pkg.sh [--dev]
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile=wasm-release
[ "${1:-}" = --dev ] && profile=dev
dir=$([ $profile = dev ] && echo debug || echo $profile)
cargo build -p wasm86-web --target wasm32-unknown-unknown --profile "$profile" --locked
rm -rf pkg
wasm-bindgen --target web --out-dir pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$dir/wasm86_web.wasm"
if command -v wasm-opt >/dev/null && [ $profile = wasm-release ]; then
  wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals -o pkg/wasm86_web_bg.wasm.opt pkg/wasm86_web_bg.wasm
  mv pkg/wasm86_web_bg.wasm.opt pkg/wasm86_web_bg.wasm
else
  echo "build-pkg.sh: wasm-opt not found (Debian package binaryen); pkg/ is not post-optimised" >&2
fi
ls -l pkg/
