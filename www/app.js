// The wasm86 page: starts the VM worker and wires the screen, the serial terminal, the QMP
// console and the QMP doors (window.wasm86 for the page and devtools, postMessage for other
// windows). No emulator logic lives here.
import { scancodes, CTRL_ALT_DEL } from "./keymap.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const worker = new Worker("worker.js", { type: "module" });
const listeners = { event: new Set() };
const pending = []; // FIFO of {resolve, reject} for the page door's replies
let commandNames = [];
let gone = false;

// ---- the page/devtools door -----------------------------------------------------------------
function toRequest(x) {
  if (typeof x === "object" && x !== null) return JSON.stringify(x);
  const s = String(x).trim();
  if (s.startsWith("{")) return s;
  return JSON.stringify(shortForm(s));
}

// "eject device=ide1-cd0 force=true" -> {"execute": "eject", "arguments": {...}}
function shortForm(s) {
  const [name, ...rest] = s.split(/\s+/);
  const args = {};
  for (const kv of rest) {
    const i = kv.indexOf("=");
    if (i < 0) throw new Error(`'${kv}': expected name=value`);
    const k = kv.slice(0, i), v = kv.slice(i + 1);
    if (v === "true" || v === "false") args[k] = v === "true";
    else if (/^-?(0x[0-9a-f]+|\d+)$/i.test(v)) args[k] = Number(v);
    else args[k] = v;
  }
  return rest.length ? { execute: name, arguments: args } : { execute: name };
}

function qmp(x, transfer) {
  if (gone) return Promise.reject(new Error("the VM is gone"));
  let text;
  try { text = toRequest(x); } catch (e) { return Promise.reject(e); }
  return new Promise((resolve, reject) => {
    pending.push({ resolve, reject });
    worker.postMessage({ type: "qmp", text, transfer: transfer || null }, transfer ? [transfer] : []);
  });
}

window.wasm86 = {
  qmp,
  on(name, fn) { (listeners[name] ||= new Set()).add(fn); },
  off(name, fn) { listeners[name]?.delete(fn); },
  relay(url) { worker.postMessage({ type: "relay", url }); },
  files: new Map(),
};

// ---- the postMessage door ---------------------------------------------------------------------
const allowed = new Set([location.origin, ...params.getAll("allow-origin")]);
const postPeers = new Map(); // session key -> {source, origin}
window.addEventListener("message", (ev) => {
  const m = ev.data;
  if (!m || m.wasm86 !== "qmp" || typeof m.session !== "string") return;
  if (!allowed.has(ev.origin)) return; // not on the allow-list: ignored
  const key = `${ev.origin}|${m.session}`;
  if (!postPeers.has(key)) {
    postPeers.set(key, { source: ev.source, origin: ev.origin, session: m.session });
    worker.postMessage({ type: "post-open", session: key });
  }
  if (typeof m.data === "string" && m.data.length) worker.postMessage({ type: "post-in", session: key, data: m.data });
});

// ---- UI ---------------------------------------------------------------------------------------
const term = new window.Terminal({ convertEol: false, fontSize: 13, scrollback: 5000 });
term.open($("terminal"));
term.onData((d) => worker.postMessage({ type: "serial-in", data: d }));

const canvas = $("screen");
const ctx = canvas.getContext("2d");
function paint(frame) {
  if (canvas.width !== frame.width || canvas.height !== frame.height) {
    canvas.width = frame.width; canvas.height = frame.height;
    canvas.style.aspectRatio = `${frame.width} / ${frame.height}`;
    $("mode").textContent = `${frame.width}×${frame.height}`;
  }
  ctx.putImageData(new ImageData(frame.pixels, frame.width, frame.height), 0, 0);
}

let lastEsc = 0;
canvas.addEventListener("keydown", (e) => {
  if (e.code === "Escape") { const t = performance.now(); if (t - lastEsc < 400) { canvas.blur(); return; } lastEsc = t; }
  const codes = scancodes(e.code, true);
  if (codes) { worker.postMessage({ type: "key", codes }); e.preventDefault(); }
});
canvas.addEventListener("keyup", (e) => {
  const codes = scancodes(e.code, false);
  if (codes) { worker.postMessage({ type: "key", codes }); e.preventDefault(); }
});
canvas.addEventListener("click", () => canvas.focus());
canvas.addEventListener("mousemove", (e) => {
  if (document.activeElement !== canvas) return;
  worker.postMessage({ type: "mouse", dx: e.movementX, dy: -e.movementY, dz: 0, buttons: e.buttons & 7 });
});

function log(el, cls, text) {
  const d = document.createElement("div");
  d.className = cls; d.textContent = text;
  el.appendChild(d); el.scrollTop = el.scrollHeight;
  while (el.childNodes.length > 500) el.removeChild(el.firstChild);
}

const history = [];
let histPos = 0;
$("qmp-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("qmp-input").value.trim();
  if (!text) return;
  history.push(text); histPos = history.length;
  $("qmp-input").value = "";
  log($("qmp-log"), "req", `-> ${text}`);
  try {
    const r = await qmp(text);
    log($("qmp-log"), r.error ? "error" : "resp", JSON.stringify(r, null, 2));
  } catch (err) { log($("qmp-log"), "error", String(err.message || err)); }
});
$("qmp-input").addEventListener("keydown", (e) => {
  if (e.key === "ArrowUp" && histPos > 0) { $("qmp-input").value = history[--histPos]; e.preventDefault(); }
  if (e.key === "ArrowDown") { histPos = Math.min(history.length, histPos + 1); $("qmp-input").value = history[histPos] || ""; e.preventDefault(); }
});

const button = (id, cmd) => $(id).addEventListener("click", () => qmp(cmd).then((r) => log($("qmp-log"), r.error ? "error" : "resp", `${cmd}: ${JSON.stringify(r)}`)));
button("btn-pause", "stop");
button("btn-resume", "cont");
button("btn-reset", "system_reset");
button("btn-poweroff", "quit");
$("btn-cad").addEventListener("click", () => worker.postMessage({ type: "key", codes: CTRL_ALT_DEL }));
$("btn-regs").addEventListener("click", async () => {
  const r = await qmp({ execute: "human-monitor-command", arguments: { "command-line": "info registers" } });
  $("registers").textContent = r.return ?? JSON.stringify(r.error);
});
$("btn-mem").addEventListener("click", async () => {
  const r = await qmp({ execute: "human-monitor-command", arguments: { "command-line": `xp /128xb ${$("mem-addr").value}` } });
  $("memory").textContent = r.return ?? JSON.stringify(r.error);
});

function paintPpm(bytes) {
  // Binary PPM: "P6\n<w> <h>\n255\n" then RGB.
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(head);
  if (!m) return;
  const w = +m[1], h = +m[2], off = m[0].length;
  const c = $("dump"); c.width = w; c.height = h;
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    img.data[4 * i] = bytes[off + 3 * i]; img.data[4 * i + 1] = bytes[off + 3 * i + 1];
    img.data[4 * i + 2] = bytes[off + 3 * i + 2]; img.data[4 * i + 3] = 255;
  }
  c.getContext("2d").putImageData(img, 0, 0);
}

function addFile(name, data) {
  window.wasm86.files.set(name, data);
  const url = URL.createObjectURL(new Blob([data]));
  let li = [...$("files").children].find((x) => x.dataset.name === name);
  if (!li) { li = document.createElement("li"); li.dataset.name = name; $("files").appendChild(li); }
  li.innerHTML = "";
  const a = document.createElement("a");
  a.href = url; a.download = name.split("/").pop(); a.textContent = `${name} (${data.length} bytes)`;
  li.appendChild(a);
  if (data[0] === 0x50 && data[1] === 0x36) paintPpm(data);
}

worker.onmessage = (ev) => {
  const m = ev.data;
  switch (m.type) {
    case "serial": term.write(m.data); break;
    case "frame": paint(m.frame); break;
    case "qmp-reply": {
      const p = pending.shift();
      if (!p) break;
      if (m.gone) p.reject(new Error("the VM is gone")); else p.resolve(m.reply);
      break;
    }
    case "event":
      log($("event-log"), "event", `${new Date(m.event.timestamp.seconds * 1000 + m.event.timestamp.microseconds / 1000).toISOString()} ${m.event.event} ${m.event.data ? JSON.stringify(m.event.data) : ""}`);
      for (const fn of listeners.event) { try { fn(m.event); } catch (e) { console.error(e); } }
      break;
    case "post-out": {
      const peer = postPeers.get(m.session);
      if (peer) peer.source.postMessage({ wasm86: "qmp", session: peer.session, data: m.data }, peer.origin);
      break;
    }
    case "status": {
      const b = $("runstate"); b.textContent = m.state; b.className = `badge ${m.state}`;
      $("mips").textContent = `${m.mips.toFixed(1)} MIPS`;
      break;
    }
    case "progress": $("progress").textContent = m.label ? `${m.label}: ${(m.got / 1048576).toFixed(1)}${m.total ? ` / ${(m.total / 1048576).toFixed(1)}` : ""} MiB` : ""; break;
    case "started":
      commandNames = m.commands;
      $("qmp-completions").innerHTML = commandNames.map((c) => `<option value="${c}">`).join("");
      break;
    case "file": addFile(m.name, m.data); break;
    case "relay": log($("qmp-log"), "resp", `relay: ${m.state}`); break;
    case "quit":
      gone = true;
      $("runstate").textContent = "off"; $("runstate").className = "badge off";
      while (pending.length) pending.shift().reject(new Error("the VM is gone"));
      break;
    case "fatal":
      gone = true;
      log($("qmp-log"), "error", `VM error: ${m.message}`);
      $("runstate").textContent = "error"; $("runstate").className = "badge shutdown";
      break;
  }
};

// ---- guest choice -----------------------------------------------------------------------------
const GUESTS = {
  linux: { kernel: "/images/linux/bzImage", initrd: "/images/linux/initrd.img", cmdline: "console=tty0 console=ttyS0,115200 quiet loglevel=3" },
  cdrom: { cdrom: "/images/linux/linux.iso", boot: "d" },
  hd: { hda: "/images/linux/linux-hd.img", boot: "c" },
  floppy: { fda: "/images/memtest/memtest.img", boot: "a", memory_mib: 16 },
};

function boot(config) {
  worker.postMessage({ type: "start", config });
}

$("guest-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("guest-file").files[0];
  const url = $("guest-url").value.trim();
  const q = new URLSearchParams(location.search);
  if (file || url) {
    // A new image means a new VM: reload with the choice in the URL for URLs; files are
    // passed to a fresh page state through sessionStorage-free re-start.
    if (url) { q.set("url", url); location.search = q.toString(); return; }
  }
  q.set("guest", $("guest-kind").value);
  location.search = q.toString();
});
for (const ev of ["dragover", "drop"]) {
  document.addEventListener(ev, async (e) => {
    e.preventDefault();
    if (ev !== "drop" || gone) return;
    const f = e.dataTransfer.files[0];
    if (!f) return;
    const data = new Uint8Array(await f.arrayBuffer());
    log($("qmp-log"), "resp", `dropped ${f.name}: use it with: change ide1-cd0 ${f.name}`);
    window.wasm86.files.set(f.name, data);
  });
}

const kind = params.get("guest") || "linux";
$("guest-kind").value = kind in GUESTS ? kind : "linux";
const config = { ...(GUESTS[kind] || GUESTS.linux) };
if (params.get("url")) {
  const u = params.get("url");
  if (/\.iso$/i.test(u)) { Object.assign(config, { cdrom: u, boot: "d", kernel: undefined, initrd: undefined }); }
  else { Object.assign(config, { hda: u, boot: "c", kernel: undefined, initrd: undefined }); }
}
if (params.get("mem")) config.memory_mib = Number(params.get("mem"));
if (params.get("paused")) config.start_paused = true;
if (params.get("qmp")) config.qmpRelay = params.get("qmp");
boot(config);
