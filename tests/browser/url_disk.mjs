// A disk image by URL, read on demand: the page boots guest-images/linux/linux-hd.img (SeaBIOS ->
// the disk's boot loader -> Linux) from the bridge with `?guest=hd&lazy=1` in headless Chromium
// until GUEST-READY appears on the serial port, then reads the bridge's access record and checks
// that under 40% of the image's bytes were sent and that no byte (so no block) was sent twice.
// Then QMP `change ide1-cd0 URL` inserts second.iso, read on demand too, and the guest reads it.
//
// Started by tests/tests/browser_url.rs, which runs wasm86-bridge and passes:
//   WASM86_URL         http://127.0.0.1:PORT (the bridge serving www/, pkg/, guest-images/)
//   WASM86_ACCESS_LOG  the bridge's --access-log file
//   WASM86_IMAGE       the image file on disk (for its size)
// Prints one line per check, the figures, and "N passed, M failed"; exits 1 when a check failed.
import { results, assert, check, waitFor, unexpected, finish, launchChromium } from "./checks.mjs";
import fs from "node:fs";
import crypto from "node:crypto";

const base = process.env.WASM86_URL;
const logPath = process.env.WASM86_ACCESS_LOG;
const imagePath = process.env.WASM86_IMAGE;
if (!base || !logPath || !imagePath) {
  console.error("url_disk.mjs: set WASM86_URL, WASM86_ACCESS_LOG and WASM86_IMAGE (tests/tests/browser_url.rs does)");
  process.exit(2);
}
const IMAGE_PATH = "/images/linux/linux-hd.img";
const BLOCK = 64 * 1024; // the block size of crates/block/src/range.rs
const BOOT_TIMEOUT_MS = 600000;
const imageSize = fs.statSync(imagePath).size;



/** The access record's entries for the image: {method, status, first, last, bytes}. */
function imageEntries() { return imageEntriesOf(IMAGE_PATH); }
function imageEntriesOf(wanted) {
  const out = [];
  for (const line of fs.readFileSync(logPath, "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length !== 5) continue;
    const [method, path, status, range, bytes] = f;
    if (path !== wanted) continue;
    const [first, last] = range === "-" ? [null, null] : range.split("-").map(Number);
    out.push({ method, status: Number(status), first, last, bytes: bytes === "aborted" ? null : Number(bytes) });
  }
  return out;
}

const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
const browser = await launchChromium();
let page;
const consoleLines = [];
try {
  page = await browser.newPage();
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/?guest=hd&lazy=1`);
  await page.evaluate(() => {
    window.__serial = "";
    window.__remote = null;
    window.__warnings = [];
    window.wasm86.on("serial", (t) => { window.__serial += t; });
    window.wasm86.on("status", (s) => { if (s.remote) window.__remote = s.remote; });
  });

  await check("the VM starts with the disk read on demand (no download first)", async () => {
    const st = await waitFor(() => page.evaluate(() => (window.wasm86.state === "loading" ? null : window.wasm86.state)), 90000, "the VM to start");
    assert(st === "running", `run state ${st}; console: ${consoleLines.slice(-5).join(" | ")}`);
    const r = await page.evaluate(() => window.wasm86.qmp("query-block"));
    const hd = (r.return || []).find((d) => d.device === "ide0-hd0");
    assert(hd && hd.inserted && hd.inserted.file === IMAGE_PATH, `query-block: ${JSON.stringify(r)}`);
    const entries = imageEntries();
    const full = entries.filter((e) => e.method === "GET" && e.status === 200);
    assert(full.length === 0, `the image was downloaded whole: ${JSON.stringify(full)}`);
    console.log(`     VM running after ${secs()} s`);
  });

  await check("SeaBIOS boots Linux from the disk by URL to GUEST-READY on serial", async () => {
    await waitFor(() => page.evaluate(() => window.__serial.includes("GUEST-READY")), BOOT_TIMEOUT_MS, "GUEST-READY");
    console.log(`     GUEST-READY after ${secs()} s`);
  });

  await check("under 40% of the image was sent, no block twice, only 206 answers", async () => {
    // The last status message may lag: let the counters settle.
    await new Promise((r) => setTimeout(r, 600));
    const entries = imageEntries();
    const gets = entries.filter((e) => e.method === "GET");
    const heads = entries.filter((e) => e.method === "HEAD");
    assert(gets.length > 0, "no range request for the image reached the bridge");
    const bad = gets.filter((e) => e.status !== 206 || e.first === null || e.bytes === null || e.bytes !== e.last - e.first + 1);
    assert(bad.length === 0, `answers other than complete 206s: ${JSON.stringify(bad.slice(0, 5))}`);
    const sent = gets.reduce((n, e) => n + e.bytes, 0);
    const pct = (100 * sent) / imageSize;
    // No byte twice: the ranges, sorted, never overlap; then no 64 KiB block in two ranges.
    const sorted = gets.slice().sort((a, b) => a.first - b.first);
    for (let i = 1; i < sorted.length; i++) {
      const [p, c] = [sorted[i - 1], sorted[i]];
      assert(c.first > p.last, `bytes ${c.first}-${Math.min(p.last, c.last)} were sent twice (ranges ${p.first}-${p.last} and ${c.first}-${c.last})`);
    }
    const blocks = new Map();
    for (const e of gets) {
      for (let b = Math.floor(e.first / BLOCK); b <= Math.floor(e.last / BLOCK); b++) {
        assert(!blocks.has(b), `block ${b} was fetched twice (${blocks.get(b)} and ${e.first}-${e.last})`);
        blocks.set(b, `${e.first}-${e.last}`);
      }
    }
    const remote = await page.evaluate(() => window.__remote);
    const hd = remote && remote.hda;
    console.log(`     image ${imageSize} bytes; sent ${sent} bytes = ${pct.toFixed(2)}% in ${gets.length} range requests ` +
      `(+${heads.length} HEAD), ${blocks.size} of ${Math.ceil(imageSize / BLOCK)} blocks of 64 KiB`);
    if (hd) console.log(`     page counters: ${hd.fetches} fetches, ${hd.bytes_delivered} bytes delivered, ${hd.failures} failures, ${hd.cached_blocks} blocks cached`);
    assert(pct < 40, `${pct.toFixed(2)}% of the image was sent (limit 40%)`);
    assert(hd, "the page reported no counters for hda");
    assert(hd.failures === 0, `${hd.failures} fetches failed`);
    assert(hd.bytes_delivered <= sent, `the page got ${hd.bytes_delivered} bytes but the bridge sent ${sent}`);
  });

  await check("QMP change ide1-cd0 URL inserts a CD read on demand, and the guest reads it", async () => {
    const cdPath = "/images/linux/second.iso";
    const cdUrl = `${base}${cdPath}`;
    const qmp = (x) => page.evaluate((x) => window.wasm86.qmp(x), x);
    const r = await qmp({ execute: "change", arguments: { device: "ide1-cd0", target: cdUrl } });
    assert(JSON.stringify(r) === '{"return":{}}', `change: ${JSON.stringify(r)}`);
    const blk = await qmp("query-block");
    const cd = (blk.return || []).find((d) => d.device === "ide1-cd0");
    assert(cd && cd.inserted && cd.inserted.file === cdUrl && cd.inserted.ro === true, `query-block: ${JSON.stringify(cd)}`);
    // The guest reads the first 64 KiB of the disc; its checksum must be the file's.
    const want = crypto.createHash("md5").update(fs.readFileSync(imagePath.replace(/linux-hd\.img$/, "second.iso")).subarray(0, 65536)).digest("hex");
    await page.click("#terminal");
    await page.keyboard.type("for i in 1 2 3 4 5; do dd if=/dev/sr0 bs=2048 count=32 2>/dev/null | md5sum && break; sleep 1; done; echo CD-$((40+2))\n", { delay: 5 });
    await waitFor(() => page.evaluate(() => /CD-42/.test(window.__serial)), 120000, "the guest's dd of /dev/sr0");
    const serial = await page.evaluate(() => window.__serial);
    assert(serial.includes(`${want}  -`), `md5 ${want} not in the guest's output: ${JSON.stringify(serial.slice(-400))}`);
    const cdGets = imageEntriesOf(cdPath).filter((e) => e.method === "GET");
    assert(cdGets.length > 0 && cdGets.every((e) => e.status === 206), `the disc was not read with range requests: ${JSON.stringify(cdGets)}`);
    const cdSent = cdGets.reduce((n, e) => n + (e.bytes || 0), 0);
    console.log(`     second.iso: ${cdSent} of ${fs.statSync(imagePath.replace(/linux-hd\.img$/, "second.iso")).size} bytes in ${cdGets.length} range requests`);
  });

  await check("a disk URL that does not exist stops the start with a clear error", async () => {
    const p2 = await browser.newPage();
    try {
      await p2.goto(`${base}/?url=${encodeURIComponent("/images/linux/no-such.img")}&lazy=1`);
      const st = await waitFor(() => p2.evaluate(() => (["loading", "running"].includes(window.wasm86.state) ? null : window.wasm86.state)), 30000, "the start to fail");
      assert(st === "error", `run state ${st}`);
      const log = await p2.evaluate(() => document.querySelector("#qmp-log").textContent);
      assert(/HTTP 404 for HEAD \/images\/linux\/no-such\.img/.test(log), `page log: ${log.slice(-300)}`);
    } finally {
      await p2.close();
    }
  });
} catch (e) {
  unexpected(e);
} finally {
  await browser.close();
}
finish(consoleLines, secs());
