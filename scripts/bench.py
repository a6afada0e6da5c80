#!/usr/bin/env python3
"""bench.py - wasm86 against v86 on the same guest, in the same run.

Boots the default guest (Debian i386 686 kernel + busybox initramfs, direct kernel boot) to
GUEST-READY and times the shared workloads of ../shared/bench/v86 (md5 of 64 MiB twice, a
100k-iteration ash loop) in:
  - wasm86 natively (target/release/wasm86, realtime clock),
  - v86 with its JIT and v86 interpreter-only (../shared/bench/v86/run.sh, node),
and, with --browser, in headless Chromium (tests/browser/bench.mjs: wasm86's page, v86 with
its JIT and v86 interpreter-only, in one browser), then prints one table of seconds for every
config, wall-time ratios (v86 / wasm86: above 1 means wasm86 is faster; node peers against
wasm86 native, Chromium peers against wasm86 in Chromium) and wasm86's guest instruction counts
(HMP `info icount`); the browser part also prints MIPS sampled over time.

Method: every emulator gets the same kernel, initrd, command line and 256 MiB; times are host
wall-clock seconds from process start to the GUEST-READY line and from each workload's BEGIN
marker to its END marker, as the v86 harness measures them. Runs are sequential on the same
machine; compare the ratios, not absolute times (the machine is shared).

Usage: scripts/bench.py [--browser] [--quick] [--skip-v86] [--skip-nojit] [--timeout S]
  --browser  also run tests/browser/bench.mjs (needs target/release/wasm86-bridge, pkg/,
             tests/browser/node_modules and /usr/bin/chromium; scripts/bench.sh builds them)
  --quick    boot only (the v86 node runs get a trivial workload: boot-bench.js always runs one)
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST = os.path.join(ROOT, "guest-images", "linux")
SHARED_BENCH = os.path.join(ROOT, "..", "shared", "bench", "v86", "run.sh")
BROWSER_BENCH = os.path.join(ROOT, "tests", "browser", "bench.mjs")
WORKLOADS = [
    "dd if=/dev/zero bs=1024 count=65536 2>/dev/null | md5sum",
    "dd if=/dev/zero bs=1024 count=65536 2>/dev/null | md5sum",
    "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i",
]


def hmp(sock_path, line):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    f = s.makefile("rwb")
    f.readline()
    for req in ({"execute": "qmp_capabilities"},
                {"execute": "human-monitor-command", "arguments": {"command-line": line}}):
        f.write(json.dumps(req).encode())
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" not in r:
                break
    s.close()
    return r.get("return", "")


def icount(sock_path):
    m = re.search(r"icount (\d+)", hmp(sock_path, "info icount"))
    return int(m.group(1)) if m else None


def bench_wasm86(timeout, workloads):
    cmdline = open(os.path.join(GUEST, "cmdline.txt")).read().strip()
    sock = os.path.join(tempfile.mkdtemp(), "qmp.sock")
    t0 = time.time()
    p = subprocess.Popen(
        [os.path.join(ROOT, "target", "release", "wasm86"), "-m", "256",
         "-kernel", os.path.join(GUEST, "bzImage"), "-initrd", os.path.join(GUEST, "initrd.img"),
         "-append", cmdline, "-serial", "stdio", "-display", "none",
         "-L", os.path.join(ROOT, "guest-images", "bios"),
         "-qmp", f"unix:{sock},server,nowait"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    buf = b""

    def wait(pat):
        nonlocal buf
        deadline = time.time() + timeout
        while pat not in buf:
            if time.time() > deadline:
                p.kill()
                raise SystemExit(f"wasm86: {pat!r} not seen in {timeout} s")
            chunk = p.stdout.read1(65536) if hasattr(p.stdout, "read1") else os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit("wasm86 exited")
            buf += chunk
        i = buf.index(pat) + len(pat)
        out, buf = buf[:i], buf[i:]
        return out

    wait(b"GUEST-READY")
    res = {"boot_s": time.time() - t0, "boot_icount": icount(sock), "workloads": []}
    print(f"wasm86 native: boot {res['boot_s']:.2f} s, {res['boot_icount']} instructions", flush=True)
    if workloads:
        wait(b"# ")
    for i, w in enumerate(workloads):
        p.stdin.write(f"echo BEGIN-$((1+{i})); {w}; echo END-$((100+{i}))\n".encode())
        wait(f"BEGIN-{1 + i}".encode())
        ic0, t = icount(sock), time.time()
        wait(f"END-{100 + i}".encode())
        secs = time.time() - t
        ic1 = icount(sock)
        mips = (ic1 - ic0) / secs / 1e6 if ic0 is not None and ic1 is not None else None
        res["workloads"].append({"cmd": w, "s": secs, "mips": mips})
        print(f"wasm86 native: workload[{i}] {secs:.3f} s ({mips:.0f} MIPS)", flush=True)
    p.kill()
    return res


def bench_v86(extra, timeout):
    out = subprocess.run(["bash", SHARED_BENCH, GUEST, "--json", "--timeout", str(timeout)] + extra,
                         capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not line:
        print(out.stderr, file=sys.stderr)
        return None
    j = json.loads(line[-1])
    return {"boot_s": j.get("boot_s") or j.get("boot"), "workloads": [{"s": w.get("secs") or w.get("s")} for w in j.get("workloads", [])]}


def bench_browser(args, timeout):
    """tests/browser/bench.mjs; its lines pass through, its final JSON line is the result."""
    cmd = ["node", BROWSER_BENCH, "--timeout", str(timeout)] + (["--quick"] if "--quick" in args else [])
    if "--skip-v86" in args:
        cmd += ["--only", "wasm86"]
    elif "--skip-nojit" in args:
        cmd += ["--only", "wasm86,v86-jit"]
    p = subprocess.Popen(cmd, cwd=os.path.dirname(BROWSER_BENCH), stdout=subprocess.PIPE, text=True)
    last = None
    for line in p.stdout:
        if line.startswith("{"):
            last = line
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    p.wait()
    if not last:
        print(f"browser benchmark failed (exit {p.returncode})", file=sys.stderr)
        return {}
    return json.loads(last)


def fmt(x):
    return f"{x:9.2f}" if x else f"{'-':>9s}"


def main():
    args = sys.argv[1:]
    timeout = int(args[args.index("--timeout") + 1]) if "--timeout" in args else 1200
    quick = "--quick" in args
    workloads = [] if quick else WORKLOADS
    v86_extra = ["--workload", "true"] if quick else []
    results = {"wasm86": bench_wasm86(timeout, workloads)}
    if "--skip-v86" not in args:
        results["v86-jit"] = bench_v86(v86_extra, timeout)
        if "--skip-nojit" not in args:
            results["v86-nojit"] = bench_v86(["--no-jit"] + v86_extra, timeout)
    rows = [("wasm86 native", results["wasm86"]), ("v86-jit node", results.get("v86-jit")),
            ("v86-nojit node", results.get("v86-nojit"))]
    pairs = [("v86-jit node", "wasm86 native"), ("v86-nojit node", "wasm86 native")]
    if "--browser" in args:
        b = bench_browser(args, timeout)
        results["browser"] = b
        for name in ("wasm86", "v86-jit", "v86-nojit"):
            r = b.get("configs", {}).get(name)
            if r and not r.get("error"):
                rows.append((f"{name} chromium", r))
        pairs += [("v86-jit chromium", "wasm86 chromium"), ("v86-nojit chromium", "wasm86 chromium"),
                  ("wasm86 chromium", "wasm86 native")]
    cols = ["boot"] + [f"wl{i}" for i in range(len(workloads))]

    def secs(r):
        wl = r.get("workloads") or []
        return [r.get("boot_s")] + [wl[i].get("s") if i < len(wl) else None for i in range(len(workloads))]

    table = {name: secs(r) for name, r in rows if r}
    print("\n== seconds (boot: start to GUEST-READY; wl: BEGIN to END marker)")
    print(f"{'config':20s}" + "".join(f"{c:>9s}" for c in cols))
    for name, v in table.items():
        print(f"{name:20s}" + "".join(fmt(x) for x in v))
    print("== wall-time ratios (first time / second time; v86 / wasm86 > 1: wasm86 faster)")
    results["ratios"] = {}
    for a, b in pairs:
        if a in table and b in table:
            r = [x / y if x and y else None for x, y in zip(table[a], table[b])]
            results["ratios"][f"{a} / {b}"] = dict(zip(cols, r))
            print(f"{a + ' / ' + b:38s}" + "".join(fmt(x) for x in r))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
