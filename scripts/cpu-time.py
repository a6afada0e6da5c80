#!/usr/bin/env python3
"""cpu-time.py - CPU seconds of one native wasm86 on the default guest and the bench workloads.

Boots the default guest (direct kernel boot, 256 MiB, realtime clock) with a wasm86 binary,
then types each workload on the serial shell and prints, for the boot and each workload, the
wall time and the CPU time the emulator process used (utime + stime from /proc). On a shared
machine CPU time moves much less with the load than wall time, so this is the command for
comparing two builds of the CPU (run them alternately, more than once); scripts/bench.py is
the one that compares wasm86 with v86.

Usage: scripts/cpu-time.py [BINARY [WORKLOAD ...]]
  BINARY     default target/release/wasm86
  WORKLOAD   shell commands; default: the 100k-iteration ash loop and md5sum of 64 MiB
"""
import os
import select
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST = os.path.join(ROOT, "guest-images", "linux")
DEFAULT_WORKLOADS = [
    "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i",
    "dd if=/dev/zero bs=1024 count=65536 2>/dev/null | md5sum",
]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "wasm86")
    workloads = sys.argv[2:] or DEFAULT_WORKLOADS
    with open(os.path.join(GUEST, "cmdline.txt")) as f:
        cmdline = f.read().strip()
    p = subprocess.Popen(
        [binary, "-m", "256", "-kernel", os.path.join(GUEST, "bzImage"),
         "-initrd", os.path.join(GUEST, "initrd.img"), "-append", cmdline,
         "-serial", "stdio", "-display", "none"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    buf = b""

    def wait(token, timeout=600):
        nonlocal buf
        while token not in buf:
            ready, _, _ = select.select([p.stdout], [], [], timeout)
            if not ready:
                raise SystemExit(f"cpu-time.py: timed out waiting for {token.decode()}")
            data = os.read(p.stdout.fileno(), 65536)
            if not data:
                raise SystemExit(f"cpu-time.py: wasm86 exited before {token.decode()}")
            buf += data
        buf = buf[buf.index(token) + len(token):]

    def cpu():
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        t0 = time.time()
        wait(b"GUEST-READY")
        print(f"boot {time.time() - t0:.1f} s, cpu {cpu():.1f} s", flush=True)
        for n, w in enumerate(workloads):
            # The markers are joined by the shell, so the echo of the typed line never matches.
            p.stdin.write(f'echo BEG""IN-{n}; {w}; echo EN""D-{n}\n'.encode())
            p.stdin.flush()
            wait(b"BEGIN-%d" % n)
            t, c = time.time(), cpu()
            wait(b"END-%d" % n)
            print(f"workload {n} {time.time() - t:.2f} s, cpu {cpu() - c:.2f} s  ({w})", flush=True)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
