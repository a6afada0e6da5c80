// Browser benchmark: wasm86's page and v86, side by side in one headless Chromium.
//
// Boots the default guest (guest-images/linux: bzImage + initrd.img, the command line of
// cmdline.txt, 256 MiB, direct kernel boot) to GUEST-READY on the serial port, then types the
// shared workloads (../shared/bench/v86: md5sum of 64 MiB from /dev/zero twice, a 100k-iteration
// ash loop) and times each from the guest's BEGIN-n line to its END-n line, in:
//   wasm86     the page served by target/release/wasm86-bridge (started here), VM in a worker;
//   v86-jit    v86 (npm package) in a small page served here, with its x86-to-wasm JIT;
//   v86-nojit  the same with disable_jit (v86's interpreter only).
// Guest instruction counts are sampled every --sample seconds during boot and each workload
// (wasm86: HMP `info icount` through window.wasm86.qmp; v86: get_instruction_counter), so the
// MIPS series shows tier-up in V8, not only steady state.
//
// Times are taken in the page (performance.now()) when the serial text arrives there: boot from
// the VM's start (wasm86: the page's "started" event; v86: "emulator-started", both after the
// images are loaded) to GUEST-READY.
//
// Usage: node tests/browser/bench.mjs [--quick] [--only wasm86,v86-jit,v86-nojit]
//          [--sample S] [--timeout S] [--mem MB] [--verbose]
//   --quick      boot only (no workloads)
//   --timeout S  per phase (boot, each workload); default 900
// Needs target/release/wasm86-bridge, pkg/ (scripts/build-pkg.sh), tests/browser/node_modules,
// /usr/bin/chromium and v86 in $V86_NODE_DIR/node_modules (default: ../shared/bench/v86/node,
// then ~/.cache/wasm86-bench/v86, where ../shared/bench/v86/run.sh installs it).
// Prints one line per phase, the MIPS series, a table with ratios (v86 / wasm86: above 1 means
// wasm86 is faster) and a final JSON line.
import { launchChromium } from "./checks.mjs";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, "..", "..");
const GUEST = path.join(ROOT, "guest-images", "linux");

// ---- arguments ---------------------------------------------------------------------------------
const argv = process.argv.slice(2);
function opt(name, dflt) {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = argv[i + 1];
  if (v === undefined) { console.error(`${name} needs a value`); process.exit(2); }
  argv.splice(i, 2);
  return v;
}
function flag(name) {
  const i = argv.indexOf(name);
  if (i < 0) return false;
  argv.splice(i, 1);
  return true;
}
const QUICK = flag("--quick");
const VERBOSE = flag("--verbose");
const ONLY = opt("--only", "wasm86,v86-jit,v86-nojit").split(",").filter(Boolean);
const SAMPLE_S = Number(opt("--sample", "2"));
const TIMEOUT_S = Number(opt("--timeout", "900"));
const MEM_MB = Number(opt("--mem", "256"));
const BRIDGE = path.resolve(opt("--bridge", path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, "target"), "release", "wasm86-bridge")));
if (argv.length) { console.error(`unknown arguments: ${argv.join(" ")}`); process.exit(2); }
for (const c of ONLY) {
  if (!["wasm86", "v86-jit", "v86-nojit"].includes(c)) { console.error(`--only: unknown config ${c}`); process.exit(2); }
}
if (!(SAMPLE_S > 0) || !(TIMEOUT_S > 0) || !(MEM_MB > 0)) { console.error("--sample, --timeout and --mem must be positive"); process.exit(2); }

const CMDLINE = fs.readFileSync(path.join(GUEST, "cmdline.txt"), "utf8").trim();
const WORKLOADS = QUICK ? [] : [
  "dd if=/dev/zero bs=1024 count=65536 2>/dev/null | md5sum",
  "dd if=/dev/zero bs=1024 count=65536 2>/dev/null | md5sum",
  "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i",
];

function v86Dir() {
  const cands = [
    process.env.V86_NODE_DIR,
    path.join(ROOT, "..", "shared", "bench", "v86", "node"),
    path.join(os.homedir(), ".cache", "wasm86-bench", "v86"),
  ].filter(Boolean);
  for (const c of cands) {
    const d = path.join(c, "node_modules", "v86");
    if (fs.existsSync(path.join(d, "build", "libv86.js"))) return d;
  }
  return null;
}

// ---- a small server for the v86 page -----------------------------------------------------------
const V86_PAGE = `<!doctype html><meta charset="utf-8"><title>v86 bench</title>
<script src="/v86/libv86.js"></script>
<script>
window.startV86 = (o) => {
  const e = new V86({
    wasm_path: "/v86/v86.wasm",
    bios: { url: "/images/bios/bios.bin" },
    vga_bios: { url: "/images/bios/vgabios-stdvga.bin" },
    bzimage: { url: "/images/linux/bzImage" },
    initrd: { url: "/images/linux/initrd.img" },
    cmdline: o.cmdline,
    memory_size: o.mem_mb * 1024 * 1024,
    vga_memory_size: 8 * 1024 * 1024,
    autostart: true,
    disable_jit: o.no_jit,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
    log_level: 0,
  });
  window.__v86 = e;
  // The counter is a wrapping u32: poll it often and accumulate.
  let last = 0, total = 0;
  const poll = () => { const c = e.get_instruction_counter() >>> 0; total += (c - last) >>> 0; last = c; return total; };
  setInterval(poll, 50);
  window.__bench.icount = async () => poll();
  e.add_listener("emulator-started", () => { poll(); window.__bench.mark("__started"); });
  e.add_listener("serial0-output-byte", (b) => window.__bench.feed(String.fromCharCode(b)));
  window.__bench.send = (s) => e.serial0_send(s);
};
</script>`;

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
function serveV86(dir) {
  const roots = { "/v86/": path.join(dir, "build"), "/images/": path.join(ROOT, "guest-images") };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://x");
    if (u.pathname === "/" || u.pathname === "/v86.html") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(V86_PAGE);
      return;
    }
    for (const [prefix, root] of Object.entries(roots)) {
      if (!u.pathname.startsWith(prefix)) continue;
      const rel = decodeURIComponent(u.pathname.slice(prefix.length));
      const file = path.resolve(root, rel);
      if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) break;
      const data = fs.readFileSync(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream", "content-length": data.length });
      res.end(data);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ---- wasm86-bridge ------------------------------------------------------------------------------
function startBridge() {
  return new Promise((resolve, reject) => {
    const child = spawn(BRIDGE, ["--listen", "127.0.0.1:0", "--www", "www", "--pkg", "pkg", "--images", "guest-images"],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    let buf = "";
    const timer = setTimeout(() => reject(new Error("wasm86-bridge did not start in 20 s")), 20000);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`wasm86-bridge exited (${code})`)); });
    child.stdout.on("data", (d) => {
      if (buf === null) return;
      buf += d;
      const m = /listening on (\S+)/.exec(buf);
      if (m) { buf = null; clearTimeout(timer); resolve({ child, url: m[1] }); }
    });
  });
}

// ---- the in-page harness (both pages) ----------------------------------------------------------
// window.__bench: serial text, first-seen times of watched strings (performance.now()), and
// icount samples {t, ic, tag}. The page-specific part sets icount() and send().
function harness(sampleMs) {
  const b = {
    serial: "",
    marks: {},
    watches: [],
    samples: [],
    icount: null,
    send: null,
    sampling: false,
    mark(name) { if (!(name in b.marks)) b.marks[name] = performance.now(); },
    watch(p) { b.watches.push({ p, from: b.serial.length }); },
    feed(text) {
      const now = performance.now();
      b.serial += text;
      if (b.serial.length > (8 << 20)) { // never in practice; keeps a runaway guest bounded
        const cut = b.serial.length - (1 << 20);
        b.serial = b.serial.slice(cut);
        for (const w of b.watches) w.from = Math.max(0, w.from - cut);
      }
      if (!b.watches.length) return;
      const keep = [];
      for (const w of b.watches) {
        const from = Math.max(w.from, b.serial.length - text.length - w.p.length);
        if (b.serial.indexOf(w.p, from) >= 0) {
          b.marks[w.p] = now;
          b.sample(w.p);
        } else {
          keep.push(w);
        }
      }
      b.watches = keep;
    },
    async sample(tag) {
      if (!b.icount) return;
      const t0 = performance.now();
      let ic = null;
      try { ic = await b.icount(); } catch { /* the VM is gone */ }
      const t1 = performance.now();
      if (typeof ic === "number") b.samples.push({ t: (t0 + t1) / 2, ic, tag: tag || null });
    },
  };
  window.__bench = b;
  setInterval(async () => {
    if (b.sampling || !("__started" in b.marks)) return;
    b.sampling = true;
    try { await b.sample(null); } finally { b.sampling = false; }
  }, sampleMs);
}

// ---- running one configuration -------------------------------------------------------------------
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitMark(page, p, what, timeoutS) {
  const end = Date.now() + timeoutS * 1000;
  for (;;) {
    const [t, gone] = await page.evaluate((p) => [window.__bench.marks[p], window.__bench.marks.__gone], p);
    if (t !== undefined) return t;
    if (gone !== undefined) throw new Error(`the VM stopped (quit or fatal error) while waiting for ${what}`);
    if (Date.now() > end) {
      const tail = await page.evaluate(() => window.__bench.serial.slice(-1500));
      throw new Error(`timed out after ${timeoutS} s waiting for ${what}; serial tail:\n${tail}`);
    }
    await sleep(200);
  }
}

/** MIPS between consecutive samples; each interval labelled with the phase of its midpoint. */
function series(samples, phases, t0) {
  const s = samples.slice().sort((a, b) => a.t - b.t);
  const out = [];
  for (let i = 1; i < s.length; i++) {
    const dt = s[i].t - s[i - 1].t;
    if (dt < 200) continue; // too short to mean anything (a mark next to a periodic sample)
    const mid = (s[i].t + s[i - 1].t) / 2;
    const ph = phases.find((p) => mid >= p.from && mid < p.to);
    out.push({ phase: ph ? ph.name : "idle", t_s: +((s[i].t - t0) / 1000).toFixed(1), mips: +((s[i].ic - s[i - 1].ic) / dt / 1000).toFixed(1) });
  }
  return out;
}

/** The sample taken for mark `tag` (or the nearest one in time). */
function icAt(samples, tag, t) {
  const tagged = samples.find((x) => x.tag === tag);
  if (tagged) return tagged.ic;
  let best = null;
  for (const x of samples) if (!best || Math.abs(x.t - t) < Math.abs(best.t - t)) best = x;
  return best ? best.ic : null;
}

async function runConfig(browser, name, urls) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.addInitScript(harness, SAMPLE_S * 1000);
  const res = { config: name, boot_s: null, workloads: [], loadavg_start: +os.loadavg()[0].toFixed(2) };
  try {
    const tNav = Date.now();
    if (name === "wasm86") {
      // paused=1: the page's own first VM waits; the benchmark VM replaces it with an explicit
      // configuration (cmdline.txt, the memory size).
      await page.goto(`${urls.wasm86}/?paused=1&mem=${MEM_MB}`);
      await page.waitForFunction(() => window.wasm86 && window.wasm86.state !== "loading", null, { timeout: 120000 });
      await page.evaluate(({ cmdline, mem }) => {
        const b = window.__bench;
        b.icount = async () => {
          const r = await window.wasm86.qmp({ execute: "human-monitor-command", arguments: { "command-line": "info icount" } });
          const m = /icount (\d+)/.exec(r.return || "");
          return m ? Number(m[1]) : null;
        };
        b.send = (s) => window.wasm86.serial(s);
        window.wasm86.on("serial", (t) => b.feed(t));
        window.wasm86.on("started", () => { b.mark("__started"); b.sample("__started"); });
        window.wasm86.on("quit", () => b.mark("__gone"));
        b.watch("GUEST-READY");
        window.wasm86.restart({
          kernel: "/images/linux/bzImage", initrd: "/images/linux/initrd.img", cmdline, memory_mib: mem,
        });
      }, { cmdline: CMDLINE, mem: MEM_MB });
    } else {
      await page.goto(`${urls.v86}/v86.html`);
      await page.evaluate((o) => { window.__bench.watch("GUEST-READY"); window.startV86(o); },
        { cmdline: CMDLINE, mem_mb: MEM_MB, no_jit: name === "v86-nojit" });
    }
    const label = `${name} chromium`;
    const t0 = await waitMark(page, "__started", "the VM to start", 300);
    res.load_s = +((Date.now() - tNav) / 1000).toFixed(1);
    const tReady = await waitMark(page, "GUEST-READY", "GUEST-READY", TIMEOUT_S);
    res.boot_s = +((tReady - t0) / 1000).toFixed(3);
    const phases = [{ name: "boot", from: t0, to: tReady }];
    await sleep(300); // the tagged sample at GUEST-READY
    let samples = await page.evaluate(() => window.__bench.samples);
    const icReady = icAt(samples, "GUEST-READY", tReady), ic0 = icAt(samples, "__started", t0);
    res.boot_icount = icReady;
    const bootMips = icReady !== null && ic0 !== null ? (icReady - ic0) / (tReady - t0) / 1000 : null;
    console.log(`${label}: boot ${res.boot_s.toFixed(2)} s` + (icReady !== null ? ` (${icReady} instructions, ${bootMips.toFixed(0)} MIPS)` : ""));
    if (WORKLOADS.length) {
      await page.evaluate(() => { window.__bench.watch("SYNC-42"); window.__bench.send("echo SYNC-$((6*7))\n"); });
      await waitMark(page, "SYNC-42", "the shell (SYNC-42)", 120);
    }
    for (let i = 0; i < WORKLOADS.length; i++) {
      const begin = `BEGIN-${1 + i}`, end = `END-${100 + i}`;
      await page.evaluate(({ begin, end, line }) => {
        window.__bench.watch(begin);
        window.__bench.watch(end);
        window.__bench.send(line);
      }, { begin, end, line: `echo BEGIN-$((1+${i})); ${WORKLOADS[i]}; echo END-$((100+${i}))\n` });
      const tb = await waitMark(page, begin, begin, 120);
      const te = await waitMark(page, end, end, TIMEOUT_S);
      await sleep(300);
      samples = await page.evaluate(() => window.__bench.samples);
      const output = await page.evaluate(({ begin, end }) => {
        const s = window.__bench.serial;
        const a = s.lastIndexOf(begin), z = s.lastIndexOf(end);
        return a >= 0 && z > a ? s.slice(a + begin.length, z).trim() : "";
      }, { begin, end });
      const secs = (te - tb) / 1000;
      const ia = icAt(samples, begin, tb), iz = icAt(samples, end, te);
      const wl = { cmd: WORKLOADS[i], s: +secs.toFixed(3), output };
      if (ia !== null && iz !== null) { wl.guest_instructions = iz - ia; wl.mips = +((iz - ia) / secs / 1e6).toFixed(1); }
      res.workloads.push(wl);
      phases.push({ name: `wl${i}`, from: tb, to: te });
      console.log(`${label}: workload[${i}] ${secs.toFixed(3)} s` + (wl.mips !== undefined ? ` (${wl.mips} MIPS)` : "") + `  (${WORKLOADS[i]} => ${output})`);
    }
    samples = await page.evaluate(() => window.__bench.samples);
    // {phase: [[seconds since the VM started, MIPS over the interval ending then], ...]}
    const all = series(samples, phases, t0);
    res.mips_series = {};
    for (const ph of phases) {
      res.mips_series[ph.name] = all.filter((x) => x.phase === ph.name).map((x) => [x.t_s, x.mips]);
      const xs = res.mips_series[ph.name].map(([, m]) => Math.round(m));
      console.log(`  ${name} MIPS every ${SAMPLE_S} s, ${ph.name}: ${xs.join(" ")}`);
    }
  } catch (e) {
    res.error = String(e.message || e);
    console.log(`${name} chromium: FAILED: ${res.error}`);
    if (VERBOSE || consoleLines.length) console.log(`  console (last lines):\n    ${consoleLines.slice(-10).join("\n    ")}`);
  } finally {
    res.loadavg_end = +os.loadavg()[0].toFixed(2);
    console.log(`  ${name}: host load average (1 min) ${res.loadavg_start} at the start, ${res.loadavg_end} at the end (${os.cpus().length} CPUs)`);
    if (VERBOSE) console.log(await page.evaluate(() => window.__bench?.serial || "").catch(() => ""));
    await context.close();
  }
  return res;
}

// ---- main ------------------------------------------------------------------------------------------
function fmt(x, w = 9) { return (x === null || x === undefined ? "-" : x.toFixed(2)).padStart(w); }

const v86 = v86Dir();
const needV86 = ONLY.some((c) => c.startsWith("v86"));
if (needV86 && !v86) {
  console.error("v86 is not installed: run ../shared/bench/v86/run.sh once (it installs it), or set V86_NODE_DIR");
  process.exit(2);
}
if (ONLY.includes("wasm86")) {
  for (const [p, how] of [[BRIDGE, "cargo build --release -p wasm86-bridge"], [path.join(ROOT, "pkg", "wasm86_web_bg.wasm"), "scripts/build-pkg.sh"]]) {
    if (!fs.existsSync(p)) { console.error(`${p} is missing: ${how}`); process.exit(2); }
  }
}

const bridge = ONLY.includes("wasm86") ? await startBridge() : null;
const server = needV86 ? await serveV86(v86) : null;
const urls = { wasm86: bridge?.url, v86: server ? `http://127.0.0.1:${server.address().port}` : null };
const browser = await launchChromium();
const out = {
  chromium: browser.version(), v86: v86 ? JSON.parse(fs.readFileSync(path.join(v86, "package.json"), "utf8")).version : null,
  mem_mb: MEM_MB, cmdline: CMDLINE, sample_s: SAMPLE_S, quick: QUICK, host_cpus: os.cpus().length,
  loadavg_start: os.loadavg().map((x) => +x.toFixed(2)), date: new Date().toISOString(), configs: {},
};
let failed = false;
try {
  for (const name of ONLY) {
    const r = await runConfig(browser, name, urls);
    out.configs[name] = r;
    if (r.error) failed = true;
  }
} finally {
  await browser.close();
  bridge?.child.removeAllListeners("exit");
  bridge?.child.kill();
  server?.close();
}
out.loadavg_end = os.loadavg().map((x) => +x.toFixed(2));

const cols = ["boot", ...WORKLOADS.map((_, i) => `wl${i}`)];
const secsOf = (r) => (r ? [r.boot_s, ...WORKLOADS.map((_, i) => r.workloads[i]?.s ?? null)] : []);
console.log(`\n== Chromium ${out.chromium}, v86 ${out.v86 ?? "-"}: seconds (boot: VM start to GUEST-READY; wl: BEGIN to END)`);
console.log(`${"config".padEnd(18)}${cols.map((c) => c.padStart(9)).join("")}`);
for (const [name, r] of Object.entries(out.configs)) console.log(`${`${name} chromium`.padEnd(18)}${secsOf(r).map((x) => fmt(x)).join("")}`);
const w = out.configs.wasm86;
out.ratios = {};
if (w && !w.error && ONLY.some((c) => c !== "wasm86")) {
  console.log("== ratios v86 / wasm86 (above 1: wasm86 faster)");
  for (const peer of ["v86-jit", "v86-nojit"]) {
    const r = out.configs[peer];
    if (!r) continue;
    const ws = secsOf(w), ps = secsOf(r);
    out.ratios[peer] = Object.fromEntries(cols.map((c, i) => [c, ws[i] && ps[i] ? +(ps[i] / ws[i]).toFixed(3) : null]));
    console.log(`${peer.padEnd(18)}${cols.map((c) => fmt(out.ratios[peer][c])).join("")}`);
  }
}
console.log(JSON.stringify(out));
process.exit(failed ? 1 : 0);
