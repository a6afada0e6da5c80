#!/usr/bin/env bash
# setup.sh - install what building and testing wasm86 needs, when it is missing.
#
# Usage: scripts/setup.sh [--browser]
#   always: the wasm32 target, wasm-bindgen-cli at the version in Cargo.lock, npm packages of
#           www/ and tools/wasm-opt (binaryen's wasm-opt), and the guest images
#   --browser: also Debian's chromium + chromium-driver, the Python qemu.qmp client and the
#           npm packages of tests/browser
# Safe to run again: every step checks first. Steps needing root use sudo when not root.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

browser=0
for a in "$@"; do
  case $a in
    --browser) browser=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

step() { echo "==> $*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must match the wasm-bindgen crate exactly (Cargo.lock).
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  step "installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

apt_install() {
  step "installing Debian packages: $*"
  as_root apt-get -o DPkg::Lock::Timeout=600 update -q || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "$@"
}


if [ $browser -eq 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  python3 -c 'import qemu.qmp' 2>/dev/null || {
    step "installing the Python QMP client (qemu.qmp)"
    python3 -m pip install --quiet 'qemu.qmp==0.0.6' || python3 -m pip install --quiet qemu.qmp
  }
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
fi
for d in www tools/wasm-opt tests/browser; do
  [ $browser -eq 1 ] || [ "$d" != tests/browser ] || continue
  if [ -f "$d/package.json" ] && { ! [ -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; }; then
    step "npm packages in $d"
    (cd "$d" && npm ci --no-audit --no-fund --silent && touch node_modules)
  fi
done

step "guest images"
if [ "$(id -u)" -eq 0 ]; then
  scripts/build-guests.sh guest-images
else
  sudo -E scripts/build-guests.sh guest-images
fi
