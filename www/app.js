// The wasm86 page: starts the VM worker and wires the screen, the serial terminal, the QMP
// console and the QMP doors (window.wasm86 for the page and devtools, postMessage for other
// windows; the worker itself connects the WebSocket relay). No emulator logic lives here.
//
// window.wasm86:
//   qmp(x, transfer?)  x: a JSON string, an object, or a short form ("eject device=ide1-cd0");
//                      resolves with the full response object ({"return": ...} or
//                      {"error": ...}, with "id" when given); rejects only when the VM is gone.
//                      Input that cannot be one QMP message (unbalanced JSON, a malformed short
//                      form) resolves with a JSONParsing / GenericError response without
//                      reaching the VM, so the session never waits on half a message.
//   on(name, fn) / off(name, fn)   "event" (whole QMP event objects), "serial" (text written by
//                      the guest to ttyS0), "status" ({state, mips, remote}), "file" ({name, data}),
//                      "started" ({commands}), "quit", "relay" (text).
//   relay(url)         connect the worker to a QMP relay (wasm86-bridge's /qmp WebSocket).
//   restart(config)    power on a new VM (the guest form uses it).
//   addImageUrl(url)   register an image URL for QMP change (read on demand).
//   serial(text)       type text into the guest's ttyS0, as the terminal does.
//   files              Map name -> Uint8Array of files written by screendump/memsave/pmemsave.
//   state              the last known run state.
import { scancodes, CTRL_ALT_DEL } from "./keymap.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const listeners = new Map();
let worker = null;
let pending = []; // FIFO of {resolve, reject}: the page door's replies come in request order
let commandNames = [];
let commandArgs = new Map(); // command name -> [{name, type, optional}]
let gone = true;
let vmState = "loading";

function emit(name, arg) {
  for (const fn of listeners.get(name) || []) {
    try { fn(arg); } catch (e) { console.error(e); }
  }
}

// ---- the page/devtools door -----------------------------------------------------------------

/** True when `s` is exactly one balanced JSON (or QEMU single-quoted) structure. */
function oneMessage(s) {
  let depth = 0, quote = null, esc = false, ended = false;
  for (const c of s) {
    if (ended) { if (!/\s/.test(c)) return false; continue; }
    if (quote) {
      if (esc) esc = false;
      else if (c === "\\") esc = true;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") { if (--depth < 0) return false; if (depth === 0) ended = true; }
    else if (depth === 0 && !/\s/.test(c)) return false;
  }
  return ended && !quote;
}

/** Splits a short form into words; "..." and '...' keep spaces, {...}/[...] stay whole. */
function words(s) {
  const out = [];
  let cur = "", quote = null, depth = 0, had = false;
  for (const c of s) {
    if (quote) { if (c === quote) quote = null; else cur += c; continue; }
    if ((c === '"' || c === "'") && depth === 0) { quote = c; had = true; continue; }
    if (c === "{" || c === "[") depth++;
    if (c === "}" || c === "]") depth--;
    if (/\s/.test(c) && depth === 0) { if (cur || had) out.push(cur); cur = ""; had = false; continue; }
    cur += c;
  }
  if (quote) throw new Error("unterminated quote");
  if (cur || had) out.push(cur);
  return out;
}

/** "eject device=ide1-cd0 force=true" -> {"execute": "eject", "arguments": {...}}. */
export function shortForm(s) {
  const [name, ...rest] = words(s);
  if (!name) throw new Error("empty command");
  const args = {};
  for (const kv of rest) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new Error(`'${kv}': expected name=value`);
    const k = kv.slice(0, i), v = kv.slice(i + 1);
    if (v === "true" || v === "false") args[k] = v === "true";
    else if (/^-?(0x[0-9a-f]+|\d+)$/i.test(v)) args[k] = Number(v);
    else if (/^[[{]/.test(v)) args[k] = JSON.parse(v);
    else args[k] = v;
  }
  return rest.length ? { execute: name, arguments: args } : { execute: name };
}

/** The text to send for x, or {reply} when x cannot be one QMP message. */
function toRequest(x) {
  if (typeof x === "object" && x !== null) return { text: JSON.stringify(x) };
  const s = String(x).trim();
  if (s.startsWith("{") || s.startsWith("[")) {
    if (oneMessage(s)) return { text: s };
    return { reply: { error: { class: "JSONParsing", desc: "Invalid JSON syntax" } } };
  }
  try { return { text: JSON.stringify(shortForm(s)) }; } catch (e) {
    return { reply: { error: { class: "GenericError", desc: `short form: ${e.message}` } } };
  }
}

function qmp(x, transfer) {
  if (gone || !worker) return Promise.reject(new Error("the VM is gone"));
  const r = toRequest(x);
  if (r.reply) return Promise.resolve(r.reply);
  const movable = transfer instanceof MessagePort || (typeof ReadableStream !== "undefined" && transfer instanceof ReadableStream);
  return new Promise((resolve, reject) => {
    pending.push({ resolve, reject });
    worker.postMessage({ type: "qmp", text: r.text, transfer: transfer || null }, movable ? [transfer] : []);
  });
}

window.wasm86 = {
  qmp,
  on(name, fn) { if (!listeners.has(name)) listeners.set(name, new Set()); listeners.get(name).add(fn); },
  off(name, fn) { listeners.get(name)?.delete(fn); },
  relay(url) { if (worker) worker.postMessage({ type: "relay", url }); },
  restart(config) { startVm(config); },
  // Registers an image URL for `change DEVICE URL` from any door (the page door does it by
  // itself for http(s) URLs): the medium is then read on demand with range requests.
  addImageUrl(url) { if (worker && !gone) worker.postMessage({ type: "put-url", url: new URL(url, location.href).href }); },
  serial(text) { if (worker && !gone) worker.postMessage({ type: "serial-in", data: String(text) }); },
  files: new Map(),
  get state() { return vmState; },
  get commands() { return commandNames.slice(); },
};

// ---- the postMessage door ---------------------------------------------------------------------
// {wasm86: "qmp", session, data}: each session starts with a greeting in negotiation mode.
const allowed = new Set([location.origin, ...params.getAll("allow-origin")]);
let postPeers = new Map(); // "origin|session" -> {source, origin, session}
window.addEventListener("message", (ev) => {
  const m = ev.data;
  if (!m || m.wasm86 !== "qmp" || typeof m.session !== "string") return;
  if (!allowed.has(ev.origin) || !worker || gone) return; // not on the allow-list: ignored
  const key = `${ev.origin}|${m.session}`;
  if (!postPeers.has(key)) {
    postPeers.set(key, { source: ev.source, origin: ev.origin, session: m.session });
    worker.postMessage({ type: "post-open", session: key });
  }
  const transfer = m.transfer || ev.ports[0] || null;
  if (typeof m.data === "string" && m.data.length) {
    worker.postMessage({ type: "post-in", session: key, data: m.data, transfer }, transfer instanceof MessagePort ? [transfer] : []);
  }
});

// ---- screen, keyboard, mouse ------------------------------------------------------------------
const term = new window.Terminal({ convertEol: false, fontSize: 13, scrollback: 5000 });
term.open($("terminal"));
term.onData((d) => { if (worker && !gone) worker.postMessage({ type: "serial-in", data: d }); });
const serialDecoder = new TextDecoder();

const canvas = $("screen");
const ctx = canvas.getContext("2d");
let frameSize = [0, 0];

/** Display aspect: the 200/350/400-line modes fill a 4:3 monitor; others have square pixels. */
function displayAspect(w, h) {
  const crt = [[720, 400], [640, 400], [320, 200], [640, 200], [640, 350], [360, 400]];
  return crt.some(([a, b]) => a === w && b === h) ? 4 / 3 : w / h;
}

function fitScreen() {
  const [w, h] = frameSize;
  if (!w || !h) return;
  const avail = $("screen-box").clientWidth || w;
  const aspect = displayAspect(w, h);
  // Integer scale when the pixels are square and it fits: crisp; else fill the width.
  let cssW = avail;
  if (Math.abs(aspect - w / h) < 1e-6 && avail >= w) cssW = Math.floor(avail / w) * w;
  cssW = Math.min(cssW, Math.max(avail, w));
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${Math.round(cssW / aspect)}px`;
}
new ResizeObserver(fitScreen).observe($("screen-box"));

function paint(frame) {
  if (frame.width !== frameSize[0] || frame.height !== frameSize[1]) {
    canvas.width = frame.width; canvas.height = frame.height;
    frameSize = [frame.width, frame.height];
    $("mode").textContent = `${frame.width}×${frame.height}`;
    fitScreen();
  }
  const rows = frame.rows ?? frame.height;
  if (rows > 0) ctx.putImageData(new ImageData(frame.pixels, frame.width, rows), 0, frame.top ?? 0);
}

const down = new Set(); // KeyboardEvent.code of keys held on the guest's keyboard
function sendCodes(codes) { if (worker && !gone) worker.postMessage({ type: "key", codes }); }
function releaseKeys() {
  for (const code of down) { const c = scancodes(code, false); if (c) sendCodes(c); }
  down.clear();
}
function captureHint() {
  const k = document.activeElement === canvas, m = document.pointerLockElement === canvas;
  $("capture").textContent = k ? `keyboard${m ? " and mouse" : ""} captured: Esc twice quickly or click outside to release` : "click the screen to type into the guest";
  $("capture").className = k ? "hint on" : "hint";
}
let lastEsc = 0;
canvas.addEventListener("keydown", (e) => {
  if (e.code === "Escape") {
    const t = performance.now();
    if (t - lastEsc < 400) { canvas.blur(); e.preventDefault(); return; }
    lastEsc = t;
  }
  const codes = scancodes(e.code, true);
  if (codes) { down.add(e.code); sendCodes(codes); e.preventDefault(); }
});
canvas.addEventListener("keyup", (e) => {
  // Only keys whose press the guest saw (not the Esc that released the capture).
  if (!down.delete(e.code)) return;
  const codes = scancodes(e.code, false);
  if (codes) { sendCodes(codes); e.preventDefault(); }
});
canvas.addEventListener("focus", captureHint);
canvas.addEventListener("blur", () => { releaseKeys(); if (document.pointerLockElement === canvas) document.exitPointerLock(); captureHint(); });
canvas.addEventListener("click", () => canvas.focus());
document.addEventListener("pointerlockchange", captureHint);
$("btn-mouse").addEventListener("click", () => { canvas.focus(); canvas.requestPointerLock?.(); });
let buttons = 0;
function sendMouse(dx, dy, dz) { if (worker && !gone) worker.postMessage({ type: "mouse", dx, dy, dz, buttons }); }
const mouseOn = () => document.pointerLockElement === canvas;
canvas.addEventListener("mousemove", (e) => { if (mouseOn()) sendMouse(e.movementX, -e.movementY, 0); });
canvas.addEventListener("mousedown", (e) => { if (mouseOn()) { buttons = e.buttons & 7; sendMouse(0, 0, 0); e.preventDefault(); } });
canvas.addEventListener("mouseup", (e) => { if (mouseOn()) { buttons = e.buttons & 7; sendMouse(0, 0, 0); } });
canvas.addEventListener("wheel", (e) => { if (mouseOn()) { sendMouse(0, 0, Math.sign(e.deltaY)); e.preventDefault(); } }, { passive: false });
canvas.addEventListener("contextmenu", (e) => { if (mouseOn()) e.preventDefault(); });

// ---- logs and the QMP console -----------------------------------------------------------------
function log(el, cls, text) {
  const d = document.createElement("div");
  d.className = cls; d.textContent = text;
  el.appendChild(d); el.scrollTop = el.scrollHeight;
  while (el.childNodes.length > 500) el.removeChild(el.firstChild);
  return d;
}
const qlog = (cls, text) => log($("qmp-log"), cls, text);

function eventTime(ev) {
  const t = ev.timestamp;
  if (!t) return "";
  const d = new Date(t.seconds * 1000 + Math.floor(t.microseconds / 1000));
  return `${d.toISOString().slice(11, 23)}`;
}

const history = (() => { try { return JSON.parse(localStorage.getItem("wasm86.history")) || []; } catch { return []; } })();
let histPos = history.length;
function remember(text) {
  if (history[history.length - 1] !== text) history.push(text);
  while (history.length > 200) history.shift();
  histPos = history.length;
  try { localStorage.setItem("wasm86.history", JSON.stringify(history)); } catch { /* storage off */ }
}

const HELP = `QMP console. Type JSON, or a short form: command name=value ...
  query-status | eject device=ide1-cd0 force=true | screendump filename=shot.ppm
  values: true/false, numbers (0x.. too), {json}/[json], "quoted strings"; anything else is a string
  !info registers    an HMP command (human-monitor-command)
  /relay ws://127.0.0.1:8086/qmp   connect the QMP relay of wasm86-bridge
  Tab completes command names; Up/Down walk the history.`;

async function submit(text) {
  remember(text);
  qlog("req", `-> ${text}`);
  if (text === "/help" || text === "help") { qlog("resp", HELP); return; }
  if (text.startsWith("/relay")) { window.wasm86.relay(text.slice(6).trim()); return; }
  let req = text;
  if (text.startsWith("!")) req = { execute: "human-monitor-command", arguments: { "command-line": text.slice(1).trim() } };
  try {
    const r = await qmp(req);
    if (typeof req === "object" && "return" in r && typeof r.return === "string") qlog("resp", r.return || "(no output)");
    else qlog(r.error ? "error" : "resp", JSON.stringify(r, null, 2));
  } catch (err) { qlog("error", String(err.message || err)); }
}

$("qmp-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("qmp-input").value.trim();
  $("qmp-input").value = "";
  if (text) submit(text);
});
$("qmp-input").addEventListener("keydown", (e) => {
  const input = $("qmp-input");
  if (e.key === "ArrowUp" && histPos > 0) { input.value = history[--histPos]; e.preventDefault(); }
  else if (e.key === "ArrowDown") { histPos = Math.min(history.length, histPos + 1); input.value = history[histPos] || ""; e.preventDefault(); }
  else if (e.key === "Tab") { e.preventDefault(); complete(input); }
});
$("qmp-input").addEventListener("input", () => showSignature());

function commonPrefix(list) {
  let p = list[0] || "";
  for (const h of list) while (!h.startsWith(p)) p = p.slice(0, -1);
  return p;
}

/** Tab: completes the command name, then argument names (name=) not given yet. */
function complete(input) {
  const v = input.value;
  if (/^\s*[{[!/]/.test(v)) return;
  const parts = v.trimStart().split(/\s+/);
  if (parts.length === 1) {
    const hits = commandNames.filter((c) => c.startsWith(parts[0]));
    if (hits.length === 1) input.value = `${hits[0]} `;
    else if (hits.length > 1) { input.value = commonPrefix(hits); qlog("resp", hits.join("  ")); }
    showSignature();
    return;
  }
  const last = parts[parts.length - 1];
  if (last.includes("=")) return;
  const given = new Set(parts.slice(1, -1).map((w) => w.split("=")[0]));
  const hits = (commandArgs.get(parts[0]) || []).map((a) => a.name).filter((n) => n.startsWith(last) && !given.has(n));
  const head = v.slice(0, v.length - last.length);
  if (hits.length === 1) input.value = `${head}${hits[0]}=`;
  else if (hits.length > 1) { input.value = head + commonPrefix(hits); qlog("resp", hits.join("  ")); }
}

/** Under the input: the arguments of the command being typed. */
function showSignature() {
  const name = $("qmp-input").value.trimStart().split(/\s+/)[0];
  const args = commandArgs.get(name);
  $("qmp-hint").textContent = args
    ? `${name} ${args.map((a) => (a.optional ? `[${a.name}:${a.type}]` : `${a.name}:${a.type}`)).join(" ") || "(no arguments)"}`
    : "";
}

// ---- run controls, registers, memory ----------------------------------------------------------
const button = (id, cmd) => $(id).addEventListener("click", () => submit(cmd));
button("btn-pause", "stop");
button("btn-resume", "cont");
button("btn-reset", "system_reset");
button("btn-poweroff", "quit");
$("btn-cad").addEventListener("click", async () => {
  // Through QMP (HMP sendkey, as QEMU 1.1 has it); raw scancodes if the VM lacks it.
  const r = await qmp({ execute: "human-monitor-command", arguments: { "command-line": "sendkey ctrl-alt-delete" } }).catch(() => null);
  if (!r || r.error || (typeof r.return === "string" && r.return.trim())) sendCodes(CTRL_ALT_DEL);
});

async function hmp(line) {
  const r = await qmp({ execute: "human-monitor-command", arguments: { "command-line": line } });
  if (r.error) throw new Error(`${r.error.class}: ${r.error.desc}`);
  return r.return;
}
async function refreshRegisters() {
  try {
    const st = await qmp("query-status");
    const regs = await hmp("info registers");
    const s = st.return ? `${st.return.status}${st.return.singlestep ? " (singlestep)" : ""}` : JSON.stringify(st.error);
    $("registers").textContent = `run state: ${s}\n\n${regs}`;
  } catch (e) { $("registers").textContent = String(e.message || e); }
}
$("btn-regs").addEventListener("click", refreshRegisters);
setInterval(() => { if ($("regs-auto").checked && !gone && vmState === "running") refreshRegisters(); }, 1000);

/** HMP `xp /Nxb` lines ("addr: 0x.. 0x..") -> 16 bytes a row with an ASCII column. */
function hexView(text) {
  let start = null;
  const bytes = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^([0-9a-f]+):((?:\s+0x[0-9a-f]{2})+)\s*$/i.exec(line);
    if (!m) { if (line.trim()) return text; continue; }
    if (start === null) start = BigInt(`0x${m[1]}`);
    for (const b of m[2].trim().split(/\s+/)) bytes.push(parseInt(b, 16));
  }
  const rows = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const addr = (start + BigInt(i)).toString(16).padStart(8, "0");
    const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = row.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    rows.push(`${addr}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return rows.join("\n");
}
async function showMemory() {
  const addr = $("mem-addr").value.trim() || "0";
  const n = Number($("mem-len").value) || 128;
  try { $("memory").textContent = hexView(await hmp(`xp /${n}xb ${addr}`)); } catch (e) { $("memory").textContent = String(e.message || e); }
}
$("btn-mem").addEventListener("click", showMemory);
$("mem-addr").addEventListener("keydown", (e) => { if (e.key === "Enter") showMemory(); });

// ---- files (screendump, memsave, pmemsave) ----------------------------------------------------
/** Paints a binary PPM ("P6 w h 255" then RGB) on the dump canvas; returns its size or null. */
function paintPpm(bytes) {
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, 64));
  const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(head);
  if (!m) return null;
  const w = +m[1], h = +m[2], off = m[0].length;
  if (!w || !h || bytes.length < off + 3 * w * h) return null;
  const c = $("dump"); c.width = w; c.height = h;
  c.style.aspectRatio = `${displayAspect(w, h)}`;
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    img.data[4 * i] = bytes[off + 3 * i]; img.data[4 * i + 1] = bytes[off + 3 * i + 1];
    img.data[4 * i + 2] = bytes[off + 3 * i + 2]; img.data[4 * i + 3] = 255;
  }
  c.getContext("2d").putImageData(img, 0, 0);
  $("dump-name").textContent = "";
  return [w, h];
}

function addFile(name, data) {
  window.wasm86.files.set(name, data);
  let li = [...$("files").children].find((x) => x.dataset.name === name);
  if (!li) { li = document.createElement("li"); li.dataset.name = name; $("files").appendChild(li); }
  li.innerHTML = "";
  const a = document.createElement("a");
  if (li.dataset.url) URL.revokeObjectURL(li.dataset.url);
  li.dataset.url = a.href = URL.createObjectURL(new Blob([data]));
  a.download = name.split("/").pop() || "file";
  a.textContent = `${name} (${data.length} bytes)`;
  li.appendChild(a);
  const isPpm = data[0] === 0x50 && data[1] === 0x36;
  if (isPpm) {
    const show = document.createElement("button");
    show.textContent = "show";
    show.onclick = () => { paintPpm(window.wasm86.files.get(name)); $("dump-name").textContent = name; };
    li.appendChild(show);
  }
  const rm = document.createElement("button");
  rm.textContent = "remove";
  rm.onclick = () => {
    window.wasm86.files.delete(name);
    if (worker && !gone) worker.postMessage({ type: "remove-file", name });
    URL.revokeObjectURL(li.dataset.url); li.remove();
  };
  li.appendChild(rm);
  if (isPpm) { paintPpm(data); $("dump-name").textContent = name; }
  emit("file", { name, data });
}

// ---- the worker -------------------------------------------------------------------------------
function setState(state) {
  vmState = state;
  const b = $("runstate"); b.textContent = state; b.className = `badge ${state}`;
}

function vmGone(text) {
  gone = true;
  const p = pending; pending = [];
  for (const x of p) x.reject(new Error("the VM is gone"));
  setState(text);
}

function onWorkerMessage(ev) {
  const m = ev.data;
  switch (m.type) {
    case "serial": {
      term.write(m.data);
      const text = serialDecoder.decode(m.data, { stream: true });
      if (text) emit("serial", text);
      break;
    }
    case "frame": paint(m.frame); break;
    case "qmp-reply": {
      const p = pending.shift();
      if (!p) break;
      if (m.gone) p.reject(new Error("the VM is gone")); else p.resolve(m.reply);
      break;
    }
    case "event": {
      const e = m.event;
      log($("event-log"), "event", `${eventTime(e)} ${e.event}${e.data ? ` ${JSON.stringify(e.data)}` : ""}`);
      if (e.event === "STOP") { setState("paused"); refreshRegisters(); }
      if (e.event === "RESUME") setState("running");
      emit("event", e);
      break;
    }
    case "post-out": {
      const peer = postPeers.get(m.session);
      try {
        if (peer) peer.source.postMessage({ wasm86: "qmp", session: peer.session, data: m.data }, peer.origin);
      } catch { postPeers.delete(m.session); } // the peer window is gone
      break;
    }
    case "status":
      setState(m.state);
      $("mips").textContent = m.state === "running" ? `${m.mips.toFixed(1)} MIPS` : "";
      if (m.remote) {
        const parts = Object.entries(m.remote).map(([d, s]) => `${d}: ${(s.bytes_delivered / 1048576).toFixed(1)} MiB in ${s.fetches} range requests${s.failures ? `, ${s.failures} failed` : ""}`);
        $("progress").textContent = parts.join("; ");
      }
      emit("status", { state: m.state, mips: m.mips, remote: m.remote });
      break;
    case "progress":
      $("progress").textContent = m.label ? `${m.label}: ${(m.got / 1048576).toFixed(1)}${m.total ? ` / ${(m.total / 1048576).toFixed(1)}` : ""} MiB` : "";
      break;
    case "started":
      commandNames = m.commands;
      commandArgs = new Map((m.table || []).map((c) => [c.name, c.args]));
      $("qmp-completions").innerHTML = "";
      for (const c of commandNames) { const o = document.createElement("option"); o.value = c; $("qmp-completions").appendChild(o); }
      setState(m.state);
      emit("started", { commands: commandNames.slice() });
      break;
    case "file": addFile(m.name, m.data); break;
    case "relay": qlog("resp", `relay: ${m.state}`); emit("relay", m.state); break;
    case "warning": qlog("error", m.message); break;
    case "image": qlog("resp", `image ${m.name} (${m.size} bytes) is ready: change ide1-cd0 "${m.name}"  (or floppy0, ide0-hd0)`); break;
    case "quit":
      vmGone("off");
      $("mips").textContent = "";
      emit("quit");
      break;
    case "fatal":
      qlog("error", `VM error: ${m.message}`);
      vmGone("error");
      emit("quit");
      break;
  }
}

function startVm(config) {
  if (worker) { worker.terminate(); vmGone("loading"); }
  postPeers = new Map();
  term.reset();
  frameSize = [0, 0];
  setState("loading");
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = onWorkerMessage;
  worker.onerror = (e) => { qlog("error", `worker: ${e.message || "failed to load"}`); vmGone("error"); };
  gone = false;
  worker.postMessage({ type: "start", config });
}

// ---- guest choice -----------------------------------------------------------------------------
const LINUX = { kernel: "/images/linux/bzImage", initrd: "/images/linux/initrd.img", cmdline: "console=tty0 console=ttyS0,115200 quiet loglevel=3" };
const GUESTS = {
  linux: LINUX,
  cdrom: { cdrom: "/images/linux/linux.iso", boot: "d" },
  hd: { hda: "/images/linux/linux-hd.img", boot: "c" },
  floppy: { fda: "/images/memtest/memtest.img", boot: "a" },
};
const FLOPPY_SIZES = new Set([368640, 737280, 1228800, 1474560, 1720320, 2949120]);

/** Which drive an image goes in: .iso -> CD-ROM, floppy sizes (or .ima/.flp/.vfd) -> floppy,
 * else hard disk. `size` is 0 when unknown (a URL). */
function imageConfig(name, size, data) {
  if (/\.iso$/i.test(name)) return { cdrom: data, cdrom_name: name, boot: "d" };
  if (FLOPPY_SIZES.has(size) || /\.(ima|flp|vfd)$/i.test(name)) return { fda: data, fda_name: name, boot: "a" };
  return { hda: data, hda_name: name, boot: "c" };
}

function common(config) {
  const c = { ...config };
  if (params.get("mem")) c.memory_mib = Number(params.get("mem"));
  if (params.get("paused")) c.start_paused = true;
  if (params.get("qmp")) c.qmpRelay = params.get("qmp");
  if (params.get("name")) c.name = params.get("name");
  // lazy=1: drive images given by URL are read on demand with range requests.
  if (params.get("lazy") && params.get("lazy") !== "0") c.lazy = true;
  return c;
}

async function bootFile(f) {
  qlog("resp", `booting ${f.name} (${f.size} bytes)`);
  const data = new Uint8Array(await f.arrayBuffer());
  startVm(common(imageConfig(f.name, data.length, data)));
}

$("guest-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const file = $("guest-file").files[0];
  const url = $("guest-url").value.trim();
  if (file) { bootFile(file); return; }
  if (url) {
    const name = new URL(url, location.href).pathname;
    const c = imageConfig(name, 0, url);
    startVm(common(c));
    return;
  }
  startVm(common(GUESTS[$("guest-kind").value] || LINUX));
});
$("change-file").addEventListener("change", async (e) => {
  for (const f of e.target.files) {
    const data = new Uint8Array(await f.arrayBuffer());
    if (worker && !gone) worker.postMessage({ type: "put-image", name: f.name, data }, [data.buffer]);
  }
  e.target.value = "";
});
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  const f = e.dataTransfer.files[0];
  if (f) bootFile(f);
});

const kind = params.get("guest") || "linux";
$("guest-kind").value = kind in GUESTS ? kind : "linux";
let initial = GUESTS[kind] || LINUX;
if (params.get("url")) {
  const u = params.get("url");
  initial = imageConfig(new URL(u, location.href).pathname, 0, u);
  $("guest-url").value = u;
}
captureHint();
startVm(common(initial));
