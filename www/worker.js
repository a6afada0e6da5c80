// The wasm86 worker: owns the VM (the wasm86-web package) and schedules it with a
// MessageChannel ping-pong (nested setTimeout(0) is clamped to 4 ms). Every QMP door ends in a
// session of the VM: the page door (command mode, no greeting), postMessage sessions and the
// WebSocket relay (greeting and negotiation, like a socket).
import init, { WasmVm } from "/pkg/wasm86_web.js";

const SLICE_MS = 12;
let vm = null;
let quit = false;
const sessions = new Map(); // session id -> { kind, key }
let pageSession = null;
let ws = null;
let wsSession = null;
let lastStatus = 0;
let haltTimer = null;

const tick = new MessageChannel();
tick.port1.onmessage = () => step();
function schedule() { if (!quit) tick.port2.postMessage(0); }

function post(msg, transfer) { self.postMessage(msg, transfer || []); }

async function fetchBytes(url, label) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${label}: HTTP ${resp.status} for ${url}`);
  const total = Number(resp.headers.get("content-length")) || 0;
  const reader = resp.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    post({ type: "progress", label, got, total });
  }
  const out = new Uint8Array(got);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

async function start(cfg) {
  await init();
  const files = {};
  files.bios = await fetchBytes(cfg.bios || "/images/bios/bios.bin", "bios.bin");
  files.vgabios = await fetchBytes(cfg.vgabios || "/images/bios/vgabios-stdvga.bin", "vgabios");
  if (cfg.kernel) {
    files.linuxboot = await fetchBytes("/images/bios/linuxboot_dma.bin", "linuxboot_dma.bin");
    files.kernel = await fetchBytes(cfg.kernel, "kernel");
    if (cfg.initrd) files.initrd = await fetchBytes(cfg.initrd, "initrd");
  }
  for (const k of ["cdrom", "hda", "fda"]) {
    if (cfg[k] instanceof Uint8Array) files[k] = cfg[k];
    else if (typeof cfg[k] === "string") files[k] = await fetchBytes(cfg[k], k);
  }
  post({ type: "progress", label: "", got: 0, total: 0 });
  vm = new WasmVm({
    memory_mib: cfg.memory_mib || 256,
    cmdline: cfg.cmdline || "",
    boot: cfg.boot || "",
    start_paused: !!cfg.start_paused,
    name: cfg.name || "",
    wall_clock_ms: Date.now(),
  }, files);
  pageSession = vm.session_open(false);
  sessions.set(pageSession, { kind: "page" });
  post({ type: "started", commands: JSON.parse(vm.command_names()) });
  if (cfg.qmpRelay) connectRelay(cfg.qmpRelay);
  schedule();
}

function step() {
  if (!vm || quit) return;
  let st;
  try {
    st = vm.run(SLICE_MS, performance.now());
  } catch (e) {
    post({ type: "fatal", message: String(e) });
    quit = true;
    return;
  }
  flush();
  if (st.quit) { shutdown(); return; }
  const now = performance.now();
  if (now - lastStatus > 500) {
    lastStatus = now;
    post({ type: "status", state: st.state, mips: st.mips });
  }
  if (st.idle_ms > 0) {
    clearTimeout(haltTimer);
    haltTimer = setTimeout(schedule, Math.min(st.idle_ms, 50));
  } else {
    schedule();
  }
}

function flush() {
  const serial = vm.take_serial();
  if (serial.length) post({ type: "serial", data: serial }, [serial.buffer]);
  const frame = vm.frame();
  if (frame) post({ type: "frame", frame }, [frame.pixels.buffer]);
  for (const [id, s] of sessions) {
    const out = vm.session_take(id);
    if (!out.length) continue;
    if (s.kind === "page") deliverPage(out);
    else if (s.kind === "post") post({ type: "post-out", session: s.key, data: new TextDecoder().decode(out) });
    else if (s.kind === "ws" && ws && ws.readyState === 1) ws.send(out);
  }
  for (const f of vm.take_files()) post({ type: "file", name: f.name, data: f.data }, [f.data.buffer]);
}

let pageBuf = "";
function deliverPage(bytes) {
  pageBuf += new TextDecoder().decode(bytes);
  let i;
  while ((i = pageBuf.indexOf("\n")) >= 0) {
    const line = pageBuf.slice(0, i).trim();
    pageBuf = pageBuf.slice(i + 1);
    if (!line) continue;
    let obj;
    try { obj = JSON.parse(line); } catch { continue; }
    if ("event" in obj) post({ type: "event", event: obj });
    else post({ type: "qmp-reply", reply: obj });
  }
}

function shutdown() {
  flush();
  quit = true;
  if (ws) ws.close();
  post({ type: "quit" });
}

function connectRelay(url) {
  if (!/^wss?:\/\//.test(url)) { post({ type: "relay", state: `refused: ${url} is not a ws:// or wss:// URL` }); return; }
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => post({ type: "relay", state: `connected to ${url}` });
  ws.onclose = () => { post({ type: "relay", state: "disconnected" }); if (wsSession !== null) { vm.session_close(wsSession); sessions.delete(wsSession); wsSession = null; } ws = null; };
  ws.onerror = () => post({ type: "relay", state: `error connecting to ${url}` });
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      let ctl; try { ctl = JSON.parse(ev.data); } catch { return; }
      if (ctl.type === "open") {
        if (wsSession !== null) { vm.session_close(wsSession); sessions.delete(wsSession); }
        wsSession = vm.session_open(true);
        sessions.set(wsSession, { kind: "ws" });
        flush();
      } else if (ctl.type === "close" && wsSession !== null) {
        vm.session_close(wsSession); sessions.delete(wsSession); wsSession = null;
      }
    } else if (wsSession !== null) {
      vm.session_feed(wsSession, new Uint8Array(ev.data));
      flush();
    }
  };
}

const postSessions = new Map(); // page-side key -> vm session id
self.onmessage = async (ev) => {
  const m = ev.data;
  try {
    switch (m.type) {
      case "start": await start(m.config); break;
      case "qmp":
        if (!vm || quit) { post({ type: "qmp-reply", reply: null, gone: true }); break; }
        vm.session_feed(pageSession, new TextEncoder().encode(m.text + "\n"), m.transfer || null);
        flush();
        break;
      case "post-open": {
        const id = vm.session_open(true);
        sessions.set(id, { kind: "post", key: m.session });
        postSessions.set(m.session, id);
        flush();
        break;
      }
      case "post-in": {
        const id = postSessions.get(m.session);
        if (id !== undefined) { vm.session_feed(id, new TextEncoder().encode(m.data), m.transfer || null); flush(); }
        break;
      }
      case "key": if (vm) vm.key(new Uint8Array(m.codes)); break;
      case "mouse": if (vm) vm.mouse(m.dx, m.dy, m.dz, m.buttons); break;
      case "serial-in": if (vm) vm.send_serial(new TextEncoder().encode(m.data)); break;
      case "relay": connectRelay(m.url); break;
    }
  } catch (e) {
    post({ type: "fatal", message: String(e && e.message || e) });
  }
};
