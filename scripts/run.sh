#!/usr/bin/env bash
# run.sh - the main job: install what is missing, build everything (native binaries and the
# browser package), and serve the page that boots the default guest in a browser tab.
#
# Usage: scripts/run.sh [--listen 127.0.0.1:8086] [bridge options...]
# Then open the printed URL. Add ?qmp=ws://127.0.0.1:8086/qmp to the URL and start the bridge
# with --qmp unix:/tmp/wasm86.sock to drive the tab's VM with qmp-shell.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS
scripts/setup.sh
echo "==> building native binaries (release)"
cargo build --release --locked -p wasm86-cli -p wasm86-bridge
echo "==> building the browser package (pkg/)"
scripts/build-pkg.sh
listen=127.0.0.1:8086
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --listen) listen=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
echo "==> built in $((SECONDS - start))s"
echo "==> serving the page: open http://$listen/ (Ctrl+C stops)"
echo "    the default guest (Debian i386 Linux, busybox) boots in the tab;"
echo "    native: target/release/wasm86 -m 256 -kernel guest-images/linux/bzImage \\"
echo "      -initrd guest-images/linux/initrd.img -append console=ttyS0 -serial stdio -display none"
exec "${CARGO_TARGET_DIR:-target}"/release/wasm86-bridge --listen "$listen" --www www --pkg pkg --images guest-images "${args[@]}"
