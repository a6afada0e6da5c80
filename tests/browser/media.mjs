// Boots from each removable medium in the page, in headless Chromium:
//  - CD-ROM: `?guest=cdrom` puts guest-images/linux/linux.iso on ide1-cd0 with boot order `d`;
//    SeaBIOS boots it by El Torito -> isolinux -> Linux, which prints GUEST-READY on ttyS0; the
//    shell answers `echo $((6*7))` with 42 and finds /dev/sr0 a block device holding the disc.
//  - Floppy: `?guest=floppy&mem=16` puts guest-images/memtest/memtest.img on floppy0 with boot
//    order `a` and 16 MiB of RAM; memtest86+ runs, and its screen, read with QMP
//    `human-monitor-command` `info screen`, shows it reaching test #2 or later with 0 errors
//    (and moving from one test to the next while it is watched).
//
// Started by tests/tests/browser_media.rs, which runs wasm86-bridge and passes:
//   WASM86_URL   http://127.0.0.1:PORT (the bridge serving www/, pkg/, guest-images/)
// Prints one line per check with its elapsed time, the figures, and "N passed, M failed";
// exits 1 when a check failed.
import { results, assert, check, waitFor, unexpected, finish, launchChromium } from "./checks.mjs";

const base = process.env.WASM86_URL;
if (!base) {
  console.error("media.mjs: set WASM86_URL (tests/tests/browser_media.rs does)");
  process.exit(2);
}
const BOOT_TIMEOUT_MS = 600000; // Linux from the CD: ~90-150 s in the tab, with a wide margin
const MEMTEST_TIMEOUT_MS = 600000; // memtest86+ to test #2: well under that natively



/**
 * What memtest86+ shows in its status area, from the text of `info screen`, or null when the
 * screen does not show it (yet): {percent, passes, errors, test}. The screen has, among others,
 * `│ Pass  37% ...`, `│ Test #6  [Moving inversions, 32 bit pattern]`, `Pass:  0` and
 * `Errors: 0` (the same reading as tests/tests/media_boot.rs).
 */
function parseMemtest(screen) {
  const lines = screen.split("\n");
  // The number after `name` on the first line that has it.
  const field = (name) => {
    for (const l of lines) {
      const i = l.indexOf(name);
      if (i < 0) continue;
      const m = /^\s*(\d+)/.exec(l.slice(i + name.length));
      return m ? Number(m[1]) : null;
    }
    return null;
  };
  let test = null;
  for (const l of lines) {
    const i = l.indexOf("│ Test #");
    if (i >= 0) { test = l.slice(i + 2).trim(); break; }
  }
  const percent = field("│ Pass ");
  const passes = field("Pass:");
  const errors = field("Errors:");
  if (test === null || percent === null || passes === null || errors === null) return null;
  const n = /^Test #(\d+)/.exec(test);
  return { percent, passes, errors, test, number: n ? Number(n[1]) : null };
}

const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
const browser = await launchChromium();
const consoleLines = [];

/** Opens the page at `query`, records its serial output, and waits for the VM to run. */
async function openVm(query) {
  const page = await browser.newPage();
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/${query}`);
  await page.evaluate(() => {
    window.__serial = "";
    window.wasm86.on("serial", (t) => { window.__serial += t; });
  });
  const started = Date.now();
  const st = await waitFor(() => page.evaluate(() => (window.wasm86.state === "loading" ? null : window.wasm86.state)), 90000, "the VM to start");
  assert(st === "running", `run state ${st}; console: ${consoleLines.slice(-5).join(" | ")}`);
  console.log(`     ${query}: VM running ${((Date.now() - started) / 1000).toFixed(1)} s after the page loaded`);
  return page;
}
const qmpOf = (page) => (x) => page.evaluate((x) => window.wasm86.qmp(x), x);
const hmpOf = (page) => async (line) => {
  const r = await qmpOf(page)({ execute: "human-monitor-command", arguments: { "command-line": line } });
  assert(typeof r.return === "string", `${line}: ${JSON.stringify(r)}`);
  return r.return;
};
/** The block devices with a medium: {device: file}. */
async function media(page) {
  const r = await qmpOf(page)("query-block");
  assert(Array.isArray(r.return), `query-block: ${JSON.stringify(r)}`);
  const out = {};
  for (const d of r.return) if (d.inserted) out[d.device] = d.inserted.file;
  return out;
}

try {
  // ---- CD-ROM ---------------------------------------------------------------------------------
  let cd = null;
  const cdStart = Date.now();
  const cdSecs = () => ((Date.now() - cdStart) / 1000).toFixed(1);
  await check("CD-ROM: the page starts a VM with linux.iso on ide1-cd0 and no other medium", async () => {
    cd = await openVm("?guest=cdrom");
    // The page downloads the image first and names the medium after the drive ("cdrom").
    const m = await media(cd);
    assert(JSON.stringify(Object.keys(m)) === '["ide1-cd0"]', `media: ${JSON.stringify(m)}`);
  });

  await check("CD-ROM: SeaBIOS -> El Torito -> isolinux -> Linux prints GUEST-READY on serial", async () => {
    assert(cd, "no VM");
    await waitFor(() => cd.evaluate(() => window.__serial.includes("GUEST-READY")), BOOT_TIMEOUT_MS, "GUEST-READY");
    console.log(`     GUEST-READY ${cdSecs()} s after the CD page was opened`);
  });

  await check("CD-ROM: the shell answers echo $((6*7)) with 42", async () => {
    assert(cd, "no VM");
    const from = await cd.evaluate(() => window.__serial.length);
    await cd.evaluate(() => window.wasm86.serial("echo $((6*7))\n"));
    // The echo of the command line has `$((6*7))`; only the shell's answer is a line of 42.
    await waitFor(() => cd.evaluate((from) => /(^|\n)42\r?\n/.test(window.__serial.slice(from)), from), 60000, "the shell's answer 42");
    console.log(`     shell answered ${cdSecs()} s after the CD page was opened`);
  });

  await check("CD-ROM: /dev/sr0 exists in the guest and holds the disc that booted", async () => {
    assert(cd, "no VM");
    const from = await cd.evaluate(() => window.__serial.length);
    await cd.evaluate(() => window.wasm86.serial(
      "if [ -b /dev/sr0 ]; then echo SR0-IS-$((1+1))-BLOCK; else echo SR0-IS-MISSING; fi; " +
      "mkdir -p /mnt && mount -t iso9660 -o ro /dev/sr0 /mnt 2>/dev/null || mount -t iso9660 -o ro /dev/sr0 /mnt; " +
      "ls /mnt/isolinux; echo LS-DONE-$((3+4))\n"));
    const out = await waitFor(async () => {
      const s = await cd.evaluate((from) => window.__serial.slice(from), from);
      return /LS-DONE-7/.test(s) ? s : null;
    }, 120000, "the guest's look at /dev/sr0");
    assert(out.includes("SR0-IS-2-BLOCK"), `/dev/sr0 is not a block device in the guest: ${JSON.stringify(out.slice(-400))}`);
    assert(/isolinux\.(bin|cfg)/.test(out), `the disc on /dev/sr0 has no isolinux/: ${JSON.stringify(out.slice(-400))}`);
    console.log(`     /dev/sr0 checked ${cdSecs()} s after the CD page was opened`);
  });
  if (cd) await cd.close();
  console.log(`     CD-ROM total: ${cdSecs()} s`);

  // ---- floppy ---------------------------------------------------------------------------------
  let fd = null;
  const fdStart = Date.now();
  const fdSecs = () => ((Date.now() - fdStart) / 1000).toFixed(1);
  await check("floppy: the page starts a VM with memtest.img on floppy0 and no other medium", async () => {
    fd = await openVm("?guest=floppy&mem=16");
    const m = await media(fd);
    assert(JSON.stringify(Object.keys(m)) === '["floppy0"]', `media: ${JSON.stringify(m)}`);
  });

  await check("floppy: memtest86+ reaches test #2 or later with 0 errors (info screen over QMP)", async () => {
    assert(fd, "no VM");
    const hmp = hmpOf(fd);
    const seen = [];
    let last = null;
    let screen = "";
    const end = Date.now() + MEMTEST_TIMEOUT_MS;
    for (;;) {
      screen = await hmp("info screen");
      const m = parseMemtest(screen);
      if (m) {
        assert(m.errors === 0, `memtest86+ reports ${m.errors} errors:\n${screen}`);
        if (last) {
          assert(m.passes > last.passes || (m.passes === last.passes && m.percent >= last.percent),
            `progress went back: ${JSON.stringify(last)} then ${JSON.stringify(m)}`);
        }
        if (seen[seen.length - 1] !== m.test) {
          seen.push(m.test);
          console.log(`     ${fdSecs()} s: pass ${m.percent}%, ${m.test}`);
        }
        last = m;
        // At test #2 or later, and seen moving on from one test to the next (so it runs).
        if (((m.number !== null && m.number >= 2) || m.passes >= 1) && seen.length >= 2) break;
      }
      assert(Date.now() < end, `memtest86+ did not reach test #2 within ${MEMTEST_TIMEOUT_MS} ms; the screen shows:\n${screen}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert(/Memtest86\+/.test(screen), `not memtest86+'s screen:\n${screen}`);
    assert(/Memory\s*:\s*16MB/.test(screen), `memtest86+ did not find 16 MB:\n${screen}`);
    assert(/Status: Testing/.test(screen), `memtest86+ is not testing:\n${screen}`);
    console.log(`     memtest86+ at ${last.test} (pass ${last.percent}%, ${last.errors} errors) ${fdSecs()} s after the floppy page was opened`);
  });
  if (fd) await fd.close();
} catch (e) {
  unexpected(e);
} finally {
  await browser.close();
}
finish(consoleLines, secs());
