#!/usr/bin/env bash
# build-pkg.sh - build the browser package: the wasm86-web crate for wasm32 (fat LTO, one codegen
# unit), then wasm-bindgen (--target web) into pkg/, then wasm-opt -O3.
# Usage: [WASM86_FEATURES=crate/feature,...] scripts/build-pkg.sh [--dev]
# WASM86_FEATURES names features of workspace crates (e.g. wasm86-cpu/fn-table); each named
# crate is added to the build so that Cargo accepts the feature and unifies it.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile=wasm-release
[ "${1:-}" = --dev ] && profile=dev
dir=$([ $profile = dev ] && echo debug || echo $profile)
feat=()
if [ -n "${WASM86_FEATURES:-}" ]; then
  for f in ${WASM86_FEATURES//,/ }; do feat+=(-p "${f%%/*}"); done
  feat+=(--features "$WASM86_FEATURES")
fi
cargo build -p wasm86-web "${feat[@]}" --target wasm32-unknown-unknown --profile "$profile" --locked
rm -rf pkg
wasm-bindgen --target web --out-dir pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$dir/wasm86_web.wasm"
# wasm-opt from npm's binaryen (tools/wasm-opt, installed by scripts/setup.sh): Debian's binaryen
# 108 corrupts the externref table that wasm-bindgen emits.
wasm_opt=tools/wasm-opt/node_modules/.bin/wasm-opt
if [ $profile = wasm-release ]; then
  [ -x "$wasm_opt" ] || { echo "build-pkg.sh: $wasm_opt is missing: run scripts/setup.sh" >&2; exit 1; }
  "$wasm_opt" -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-reference-types --enable-multivalue --enable-mutable-globals \
    -o pkg/wasm86_web_bg.wasm.opt pkg/wasm86_web_bg.wasm
  mv pkg/wasm86_web_bg.wasm.opt pkg/wasm86_web_bg.wasm
fi
ls -l pkg/
