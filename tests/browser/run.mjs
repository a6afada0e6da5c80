// End-to-end checks of the wasm86 page in one headless Chromium session.
//
// Started by tests/tests/browser.rs, which runs wasm86-bridge and passes:
//   WASM86_URL        http://127.0.0.1:PORT (the bridge serving www/, pkg/, guest-images/)
//   WASM86_QMP_SOCK   the bridge's unix QMP endpoint
//   WASM86_BOOT_TESTS 1 to also run the checks that need the guest to boot Linux
// Runs the checks in order, prints one line per check and a closing "N passed, M failed"
// line; exits 1 when any check failed.
import { results, assert, check, waitFor, finish, launchChromium } from "./checks.mjs";
import { spawn } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.WASM86_URL;
const sock = process.env.WASM86_QMP_SOCK;
const bootTests = process.env.WASM86_BOOT_TESTS === "1";
if (!base || !sock) {
  console.error("run.mjs: set WASM86_URL and WASM86_QMP_SOCK (tests/tests/browser.rs does)");
  process.exit(2);
}
const { host } = new URL(base);

let page;

/** JSON with object keys sorted, so that key order does not matter. */
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}
function eq(a, b, msg) {
  const [x, y] = [canon(a), canon(b)];
  if (x !== y) throw new Error(`${msg}: got ${x}, want ${y}`);
}
const qmp = (x) => page.evaluate((x) => window.wasm86.qmp(x), x);
const status = async () => (await qmp("query-status")).return?.status;

/** Sends a WebSocket upgrade for /qmp with `origin`; resolves with the response's status line. */
function upgradeStatus(origin) {
  return new Promise((resolve, reject) => {
    const [h, p] = host.split(":");
    const s = net.connect(Number(p), h, () => {
      s.write(`GET /qmp HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`);
    });
    let buf = "";
    s.setTimeout(10000, () => { s.destroy(); reject(new Error("no answer to the upgrade")); });
    s.on("data", (d) => { buf += d.toString("latin1"); const i = buf.indexOf("\r\n"); if (i >= 0) { s.destroy(); resolve(buf.slice(0, i)); } });
    s.on("error", reject);
  });
}

/** Starts the qemu.qmp client; resolves with an object to read its JSON lines. */
function startPythonClient() {
  const child = spawn("python3", [path.join(here, "qmp_client.py"), sock], { stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  let err = "";
  let buf = "";
  child.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) { lines.push(JSON.parse(buf.slice(0, i))); buf = buf.slice(i + 1); }
  });
  child.stderr.on("data", (d) => { err += d; });
  const next = (ms, what) => waitFor(() => lines.shift(), ms, `${what} from qemu.qmp${err ? ` (stderr: ${err.trim()})` : ""}`);
  return { child, next, exited: new Promise((r) => child.on("exit", r)) };
}

const browser = await launchChromium();
const consoleLines = [];
try {
  page = await browser.newPage();
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  const url = `${base}/?qmp=${encodeURIComponent(`ws://${host}/qmp`)}`;
  await page.goto(url);
  await page.evaluate(() => {
    window.__events = [];
    window.__serial = "";
    window.wasm86.on("event", (e) => window.__events.push(e));
    window.wasm86.on("serial", (t) => { window.__serial += t; });
    // Sent while the worker still downloads the images: answered once the VM exists.
    window.__early = window.wasm86.qmp("query-status");
  });

  await check("the page loads the wasm in the worker and the VM runs", async () => {
    const st = await waitFor(() => page.evaluate(() => (window.wasm86.state === "loading" ? null : window.wasm86.state)), 90000, "the VM to start");
    assert(["running", "paused", "prelaunch"].includes(st), `run state ${st}; console: ${consoleLines.slice(-5).join(" | ")}`);
    const cmds = await page.evaluate(() => window.wasm86.commands);
    assert(cmds.includes("query-status") && cmds.includes("screendump"), `commands: ${cmds}`);
    const early = await page.evaluate(() => window.__early.then((r) => r, (e) => ({ rejected: String(e) })));
    eq(early.return?.status, "running", `a command sent during loading: ${JSON.stringify(early)}`);
  });

  await check("window.wasm86.qmp answers query-status", async () => {
    const r = await qmp("query-status");
    eq(r.return?.status, "running", "status");
    eq(r.return?.running, true, "running");
    const byObject = await qmp({ execute: "query-status", id: "abc" });
    eq(byObject.id, "abc", "id echoed");
    const byString = await qmp('{"execute": "query-version"}');
    eq(byString.return?.qemu, { major: 1, minor: 1, micro: 0 }, "query-version");
  });

  await check("the QMP console completes command and argument names and answers short forms", async () => {
    const input = page.locator("#qmp-input");
    await input.fill("screend");
    await input.press("Tab");
    eq(await input.inputValue(), "screendump ", "command name");
    await input.press("f");
    await input.press("Tab");
    eq(await input.inputValue(), "screendump filename=", "argument name");
    assert((await page.textContent("#qmp-hint")).includes("filename:string"), "signature hint");
    await input.fill("query-name");
    await input.press("Enter");
    await waitFor(() => page.evaluate(() => /"return": \{/.test(document.getElementById("qmp-log").textContent)), 5000, "the pretty-printed answer");
    await input.fill("eject device=no-such-drive");
    await input.press("Enter");
    await waitFor(() => page.evaluate(() => [...document.querySelectorAll("#qmp-log .error")].some((d) => d.textContent.includes("DeviceNotFound"))), 5000, "the error, highlighted");
  });

  await check("stop pauses the VM, with STOP in the event log and through wasm86.on", async () => {
    const before = await page.evaluate(() => window.__events.length);
    eq(await qmp("stop"), { return: {} }, "stop");
    eq(await status(), "paused", "status after stop");
    const ev = await waitFor(() => page.evaluate((n) => window.__events.slice(n).find((e) => e.event === "STOP"), before), 5000, "STOP via wasm86.on");
    assert(typeof ev.timestamp?.seconds === "number" && typeof ev.timestamp?.microseconds === "number", `timestamp ${JSON.stringify(ev.timestamp)}`);
    assert(Math.abs(ev.timestamp.seconds - Date.now() / 1000) < 120, "the timestamp is host wall-clock time");
    await waitFor(() => page.evaluate(() => /\d\d:\d\d:\d\d\.\d{3} STOP/.test(document.getElementById("event-log").textContent)), 5000, "STOP in the page's event log");
    await waitFor(() => page.evaluate(() => document.getElementById("runstate").textContent === "paused"), 5000, "the run-state badge");
  });

  await check("cont resumes the VM", async () => {
    eq(await qmp("cont"), { return: {} }, "cont");
    eq(await status(), "running", "status after cont");
    await waitFor(() => page.evaluate(() => window.__events.some((e) => e.event === "RESUME")), 5000, "RESUME");
  });

  await check("screendump gives a PPM of the mode's size, painted on the page", async () => {
    // Give the guest a moment to draw something (SeaBIOS's banner) when it can.
    const drawn = await waitFor(() => page.evaluate(() => {
      const c = document.getElementById("screen");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) if (d[i] | d[i + 1] | d[i + 2]) return true;
      return false;
    }), 20000, "a non-black screen").catch(() => false);
    if (!drawn) console.log("     note: the guest drew nothing on the screen within 20 s");
    eq(await qmp({ execute: "screendump", arguments: { filename: "shot.ppm" } }), { return: {} }, "screendump");
    const info = await waitFor(() => page.evaluate(() => {
      const f = window.wasm86.files.get("shot.ppm");
      if (!f) return null;
      const head = new TextDecoder("latin1").decode(f.subarray(0, 32));
      const m = /^P6\n(\d+) (\d+)\n255\n/.exec(head);
      const dump = document.getElementById("dump");
      const screen = document.getElementById("screen");
      const px = dump.getContext("2d").getImageData(0, 0, dump.width, dump.height).data;
      let lit = 0, mismatch = 0;
      const off = m ? m[0].length : 0;
      for (let i = 0; m && i < dump.width * dump.height; i++) {
        if (px[4 * i] | px[4 * i + 1] | px[4 * i + 2]) lit++;
        if (px[4 * i] !== f[off + 3 * i] || px[4 * i + 1] !== f[off + 3 * i + 1] || px[4 * i + 2] !== f[off + 3 * i + 2]) mismatch++;
      }
      return { m: m && [+m[1], +m[2], m[0].length], size: f.length, dump: [dump.width, dump.height], screen: [screen.width, screen.height], lit, mismatch,
        listed: [...document.querySelectorAll("#files li")].some((li) => li.dataset.name === "shot.ppm") };
    }), 5000, "shot.ppm in the page's files");
    assert(info.m, "PPM header");
    const [w, h, hl] = info.m;
    eq(info.size, hl + w * h * 3, "PPM size");
    eq([w, h], info.screen, "PPM size vs the screen's mode");
    eq(info.dump, [w, h], "dump canvas size");
    eq(info.mismatch, 0, "dump canvas pixels differ from the PPM");
    assert(info.listed, "shot.ppm is listed");
    if (drawn) assert(info.lit > 0, "the dump canvas is blank while the screen is not");
  });

  await check("host paths and exec: are unreachable from the page door", async () => {
    const target = `/tmp/wasm86-browser-${process.pid}.ppm`;
    eq(await qmp({ execute: "screendump", arguments: { filename: target } }), { return: {} }, "screendump to a path-like name");
    await waitFor(() => page.evaluate((t) => window.wasm86.files.has(t), target), 5000, "the file in the page's store");
    assert(!fs.existsSync(target), `${target} was written on the host`);
    const marker = `/tmp/wasm86-exec-${process.pid}`;
    const r = await qmp({ execute: "migrate", arguments: { uri: `exec:touch ${marker}` } });
    assert(r.error, `migrate exec: answered ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 300));
    assert(!fs.existsSync(marker), "exec: ran a host command");
  });

  await check("getfd takes the transferable sent with wasm86.qmp", async () => {
    const r = await page.evaluate(async () => {
      const w = window.wasm86;
      const without = await w.qmp({ execute: "getfd", arguments: { fdname: "port" } });
      const withPort = await w.qmp({ execute: "getfd", arguments: { fdname: "port" } }, new MessageChannel().port1);
      const closed = await w.qmp({ execute: "closefd", arguments: { fdname: "port" } });
      return { without, withPort, closed };
    });
    eq(r.without.error?.class, "FdNotSupplied", "getfd without a transferable");
    eq(r.withPort, { return: {} }, "getfd with a MessagePort");
    eq(r.closed, { return: {} }, "closefd");
  });

  await check("bad QMP input gets the protocol's error and the session stays usable", async () => {
    eq((await qmp("[1, 2]")).error?.class, "QMPBadInputObject", "non-object");
    eq((await qmp('{"execute": 42}')).error?.class, "QMPBadInputObjectMember", "execute not a string");
    eq((await qmp('{"execute": "query-status", "argumentz": {}}')).error?.class, "QMPExtraInputObjectMember", "extra member");
    eq((await qmp("{\"execute\": ")).error?.class, "JSONParsing", "unbalanced JSON");
    eq((await qmp("no-such-command")).error?.class, "CommandNotFound", "unknown command");
    eq((await qmp("eject device")).error?.class, "GenericError", "malformed short form");
    eq(await status(), "running", "the page session still works");
    // The postMessage door, from a same-origin iframe as the peer window: a greeting,
    // negotiation, a bad message, then a working command.
    const out = await page.evaluate(async () => {
      const f = document.createElement("iframe");
      document.body.appendChild(f);
      const w = f.contentWindow;
      const got = [];
      const done = new Promise((resolve) => {
        w.addEventListener("message", (ev) => {
          if (ev.data?.wasm86 !== "qmp" || ev.data.session !== "t1") return;
          for (const l of ev.data.data.split("\r\n")) if (l) got.push(JSON.parse(l));
          if (got.some((m) => m.return?.status)) resolve();
        });
      });
      // Posted from the iframe's realm, so that the page sees the iframe as the source.
      w.eval(`for (const data of ['{"execute": "qmp_capabilities"}', "{]", '{"execute": "query-status"}'])
        parent.postMessage({ wasm86: "qmp", session: "t1", data }, parent.location.origin);`);
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      f.remove();
      return got;
    });
    assert(out[0]?.QMP?.version?.qemu?.minor === 1, `postMessage greeting: ${JSON.stringify(out[0])}`);
    assert(out.some((m) => m.error?.class === "JSONParsing"), `postMessage bad input: ${JSON.stringify(out)}`);
    assert(out.some((m) => m.return?.status === "running"), `postMessage after the error: ${JSON.stringify(out)}`);
  });

  await check("postMessage from an origin off the allow-list is ignored", async () => {
    const got = await page.evaluate(async () => {
      const seen = [];
      const onMsg = (ev) => { if (ev.data && ev.data.evilGot) seen.push(ev.data.evilGot); };
      window.addEventListener("message", onMsg);
      const f = document.createElement("iframe");
      f.sandbox = "allow-scripts"; // an opaque origin: "null", not on the allow-list
      f.srcdoc = `<script>
        addEventListener("message", (e) => parent.postMessage({ evilGot: e.data }, "*"));
        parent.postMessage({ wasm86: "qmp", session: "evil", data: '{"execute": "qmp_capabilities"}' }, "*");
        parent.postMessage({ wasm86: "qmp", session: "evil", data: '{"execute": "stop"}' }, "*");
      <\/script>`;
      document.body.appendChild(f);
      await new Promise((r) => setTimeout(r, 1500));
      f.remove();
      window.removeEventListener("message", onMsg);
      return seen;
    });
    eq(got, [], "replies to a foreign origin");
    eq(await status(), "running", "its stop was not executed");
  });

  await check("a WebSocket upgrade from a foreign Origin is refused", async () => {
    const line = await upgradeStatus("http://evil.example");
    assert(/^HTTP\/1\.1 403/.test(line), `foreign origin: ${line}`);
    // The page's own VM connection is untouched.
    eq(await status(), "running", "status");
  });

  await check("qemu.qmp through the bridge's unix socket drives the VM in the tab", async () => {
    await waitFor(() => page.evaluate(() => /relay: connected/.test(document.getElementById("qmp-log").textContent)), 15000, "the worker's relay connection");
    const py = startPythonClient();
    try {
      const ready = await py.next(40000, "query-status/query-version");
      assert(!ready.error, ready.error);
      eq(ready.status?.status, "running", "query-status over the bridge");
      eq(ready.version?.qemu, { major: 1, minor: 1, micro: 0 }, "query-version over the bridge");
      assert(/^wasm86 /.test(ready.version?.package || ""), `package ${ready.version?.package}`);
      eq(await qmp("stop"), { return: {} }, "stop from the page door");
      const ev = await py.next(30000, "the STOP event");
      assert(!ev.error, ev.error);
      eq(ev.event, "STOP", "event");
      eq(await qmp("cont"), { return: {} }, "cont");
      const code = await Promise.race([py.exited, new Promise((r) => setTimeout(() => r("timeout"), 10000))]);
      eq(code, 0, "qemu.qmp client exit status");
    } finally {
      py.child.kill();
    }
  });

  await check("an image given to the page is inserted with QMP change", async () => {
    await page.setInputFiles("#change-file", { name: "disc.iso", mimeType: "application/octet-stream", buffer: Buffer.alloc(8 * 2048, 0x42) });
    await waitFor(() => page.evaluate(() => /image disc\.iso \(16384 bytes\) is ready/.test(document.getElementById("qmp-log").textContent)), 10000, "the image in the worker");
    eq(await qmp({ execute: "change", arguments: { device: "ide1-cd0", target: "disc.iso" } }), { return: {} }, "change");
    const blocks = (await qmp("query-block")).return || [];
    const cd = blocks.find((b) => b.device === "ide1-cd0");
    eq(cd?.inserted?.file, "disc.iso", "query-block ide1-cd0");
    eq((await qmp({ execute: "change", arguments: { device: "ide1-cd0", target: "/etc/hostname" } })).error?.class, "OpenFileFailed", "a host path");
  });

  // The boot checks use the Linux VM the page started: they run before a picked image
  // replaces it.
  if (bootTests) {
    await check("the guest boots to GUEST-READY on the serial terminal", async () => {
      await waitFor(() => page.evaluate(() => window.__serial.includes("GUEST-READY")), 600000, "GUEST-READY");
      await waitFor(() => page.evaluate(() => document.querySelector("#terminal .xterm-rows")?.textContent.includes("GUEST-READY")), 5000, "GUEST-READY on the xterm screen");
    });
    await check("a command typed in the terminal gets its answer", async () => {
      await page.click("#terminal");
      await page.keyboard.type("echo wasm86-$((6*7))\n", { delay: 20 });
      await waitFor(() => page.evaluate(() => window.__serial.includes("wasm86-42")), 60000, "the shell's answer");
    });
    await check("keyboard input on the canvas reaches the VGA console", async () => {
      // Plain letters only: keyboard.type sends shifted symbols without Shift.
      await page.click("#screen");
      await page.keyboard.type("echo kbd", { delay: 40 });
      await page.keyboard.type("typed", { delay: 40 });
      await page.keyboard.press("Enter");
      const screen = async () => (await qmp({ execute: "human-monitor-command", arguments: { "command-line": "info screen" } })).return || "";
      await waitFor(async () => (await screen()).split(/\r?\n/).some((l) => l.trim() === "kbdtyped"), 60000, "the VGA console's shell answering");
    });
  } else {
    console.log("NOT RUN: boot checks (GUEST-READY, shell answer, canvas keyboard): set WASM86_BOOT_TESTS=1 once the guest boots");
  }
  await check("an image picked on the page boots in a new VM, and the relay reconnects", async () => {
    await page.evaluate(() => { window.__started = 0; window.wasm86.on("started", () => { window.__started++; }); });
    await page.setInputFiles("#guest-file", { name: "blank.img", mimeType: "application/octet-stream", buffer: Buffer.alloc(1474560) });
    await page.click("#guest-form button[type=submit]");
    await waitFor(() => page.evaluate(() => window.__started === 1 && window.wasm86.state === "running"), 30000, "the new VM");
    eq(await status(), "running", "status of the new VM");
    const hmpBlock = await qmp({ execute: "human-monitor-command", arguments: { "command-line": "info status" } });
    assert(/running/.test(hmpBlock.return || ""), `info status: ${JSON.stringify(hmpBlock)}`);
    await waitFor(() => page.evaluate(() => (document.getElementById("qmp-log").textContent.match(/relay: connected/g) || []).length >= 2), 15000, "the new worker's relay connection");
  });

} finally {
  await browser.close();
}
finish(consoleLines);
