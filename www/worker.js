// The wasm86 worker: owns the VM (the wasm86-web package) and schedules it with a
// MessageChannel ping-pong (nested setTimeout(0) is clamped to 4 ms). Every QMP door ends in a
// session of the VM: the page door (command mode, no greeting), postMessage sessions and the
// WebSocket relay (greeting and negotiation, like a socket). No emulator logic lives here.
//
// Messages from the page: start {config}, qmp {text, transfer}, post-open {session},
// post-in {session, data, transfer}, post-close {session}, key {codes}, mouse {dx,dy,dz,buttons},
// serial-in {data}, relay {url}, remove-file {name}, put-image {name, data}, put-url {url}.
// Messages to the page: started {commands, table}, status {state, mips}, serial {data}, frame {frame},
// qmp-reply {reply}, event {event}, post-out {session, data}, file {name, data},
// progress {label, got, total}, relay {state}, image {name, size}, warning {message}, quit,
// fatal {message}. status also carries `remote` ({drive: {fetches, bytes_delivered, ...}})
// when drives are read from URLs.
//
// Lazy drives (config.lazy): a cdrom/hda/fda given as a URL is not downloaded. The worker asks
// its size with HEAD, hands the VM {url, size}, and after every run slice fetches the byte
// ranges the VM wants (vm.take_fetches()) with `Range: bytes=a-b`, at most MAX_FETCHES at a
// time; each answer must be a 206 of exactly the bytes asked for, else the fetch fails (network
// errors and 5xx are tried FETCH_TRIES times) and the guest's read gets an I/O error. The VM
// keeps running meanwhile.
import init, { WasmVm } from "/pkg/wasm86_web.js";

const SLICE_MS = 10; // host time per run() call; the worker answers messages in between
const FRAME_MS = 16; // at most one frame per display refresh
const STATUS_MS = 250;
const MAX_FETCHES = 4; // range requests in flight at once
const FETCH_TIMEOUT_MS = 60000;
const FETCH_TRIES = 3;

let vm = null;
let quit = false;
const sessions = new Map(); // vm session id -> { kind: "page"|"post"|"ws", key }
const postSessions = new Map(); // page-side key -> vm session id
let pageSession = null;
let pageBuf = "";
let lastStatus = 0;
let lastState = "";
let lastFrame = 0;
let timer = null;
let pinged = false;

// ---- scheduling -----------------------------------------------------------------------------
const tick = new MessageChannel();
tick.port1.onmessage = () => { pinged = false; step(); };
/** Runs the VM again as soon as the event loop allows (input arrived, or more work). */
function kick() {
  if (quit || !vm || pinged) return;
  clearTimeout(timer); timer = null;
  pinged = true;
  tick.port2.postMessage(0);
}

function post(msg, transfer) { self.postMessage(msg, transfer || []); }

function step() {
  if (!vm || quit) return;
  let st;
  try {
    st = vm.run(SLICE_MS, performance.now());
  } catch (e) {
    fatal(e);
    return;
  }
  flush();
  fetcher.pump();
  if (st.quit) { shutdown(); return; }
  const now = performance.now();
  if (now - lastStatus > STATUS_MS || st.state !== lastState) {
    lastStatus = now; lastState = st.state;
    const remote = fetcher.active ? vm.remote_stats() : undefined;
    post({ type: "status", state: st.state, mips: st.mips, remote });
  }
  if (st.state !== "running") return; // stopped: a message (QMP cont ...) kicks it again
  if (st.idle_ms > 0) {
    // Halted until a timer (or input: every input message kicks).
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; kick(); }, Math.min(st.idle_ms, 50));
  } else {
    kick();
  }
}

function fatal(e) {
  quit = true;
  post({ type: "fatal", message: String((e && e.message) || e) });
}

// ---- outputs ----------------------------------------------------------------------------------
function flush() {
  if (!vm) return;
  const serial = vm.take_serial();
  if (serial.length) post({ type: "serial", data: serial }, [serial.buffer]);
  const now = performance.now();
  if (now - lastFrame >= FRAME_MS) {
    const frame = vm.frame();
    if (frame) { lastFrame = now; post({ type: "frame", frame }, [frame.pixels.buffer]); }
  }
  for (const [id, s] of sessions) {
    const out = vm.session_take(id);
    if (!out.length) continue;
    if (s.kind === "page") deliverPage(out);
    else if (s.kind === "post") post({ type: "post-out", session: s.key, data: new TextDecoder().decode(out) });
    else if (s.kind === "ws") relay.send(out);
  }
  for (const f of vm.take_files()) post({ type: "file", name: f.name, data: f.data }, [f.data.buffer]);
}

const pageDecoder = new TextDecoder();
function deliverPage(bytes) {
  pageBuf += pageDecoder.decode(bytes, { stream: true });
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
  relay.end();
  post({ type: "quit" });
}

// ---- start-up ---------------------------------------------------------------------------------
async function fetchBytes(url, label) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${label}: HTTP ${resp.status} for ${url}`);
  const total = Number(resp.headers.get("content-length")) || 0;
  const reader = resp.body.getReader();
  const chunks = [];
  let got = 0;
  let lastPost = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    const now = performance.now();
    if (now - lastPost > 100) { lastPost = now; post({ type: "progress", label, got, total }); }
  }
  const out = new Uint8Array(got);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  post({ type: "progress", label, got, total: got });
  return out;
}

/** A drive read on demand: its size from HEAD (or from a one-byte range's Content-Range). */
async function remoteImage(url, label, quiet) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 15000);
  let head;
  try { head = await fetch(url, { method: "HEAD", cache: "no-store", signal: ctl.signal }); } finally { clearTimeout(timer); }
  if (!head.ok) throw new Error(`${label}: HTTP ${head.status} for HEAD ${url}`);
  let size = Number(head.headers.get("content-length"));
  if (!(size > 0)) {
    const r = await fetch(url, { headers: { Range: "bytes=0-0" }, cache: "no-store" });
    const m = /\/(\d+)\s*$/.exec(r.headers.get("content-range") || "");
    await r.arrayBuffer().catch(() => null);
    if (r.status !== 206 || !m) throw new Error(`${label}: ${url} answers no range requests (HTTP ${r.status})`);
    size = Number(m[1]);
  }
  fetcher.active = true;
  if (!quiet) post({ type: "progress", label: `${label}: read on demand`, got: 0, total: size });
  return { url, size };
}

// ---- images by URL for QMP change -----------------------------------------------------------
const urlImages = new Set(); // URLs registered with vm.put_remote_image

/** Registers `url` (HEAD for its size) so that `change DEVICE url` reads it on demand. */
async function registerUrl(url) {
  const { size } = await remoteImage(url, url, true);
  vm.put_remote_image(url, size);
  urlImages.add(url);
  post({ type: "image", name: url, size });
}

/** The http(s) URL a page-door command inserts with change (QMP or HMP), or null. */
function changeUrl(text) {
  let obj;
  try { obj = JSON.parse(text); } catch { return null; }
  let target = null;
  if (obj && obj.execute === "change") target = obj.arguments && obj.arguments.target;
  if (obj && obj.execute === "human-monitor-command") {
    const m = /^\s*change\s+\S+\s+(\S+)/.exec((obj.arguments && obj.arguments["command-line"]) || "");
    target = m && m[1];
  }
  return typeof target === "string" && /^https?:\/\//i.test(target) ? target : null;
}

// ---- range requests for the drives read on demand ---------------------------------------------
const fetcher = {
  active: false, // some drive is read on demand
  queue: [],
  running: 0,
  /** Takes what the VM wants and starts fetches, at most MAX_FETCHES at a time. */
  pump() {
    if (!this.active || !vm || quit) return;
    for (const f of vm.take_fetches()) this.queue.push(f);
    while (this.running < MAX_FETCHES && this.queue.length) this.run(this.queue.shift());
  },
  async run(f) {
    this.running++;
    const owner = vm;
    const last = f.offset + f.len - 1;
    let bytes = null;
    let error = null;
    // Network errors, timeouts, bodies cut short and 5xx/429 answers are tried again
    // (FETCH_TRIES in all); a wrong answer (another status, another range) is not.
    for (let attempt = 1; attempt <= FETCH_TRIES && !bytes; attempt++) {
      if (attempt > 1) await new Promise((r) => setTimeout(r, 250 * attempt));
      if (owner !== vm || quit) break;
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
      let final = false;
      try {
        const resp = await fetch(f.url, { headers: { Range: `bytes=${f.offset}-${last}` }, cache: "no-store", signal: ctl.signal });
        if (resp.status !== 206) {
          ctl.abort();
          final = !(resp.status >= 500 || resp.status === 429);
          throw new Error(`HTTP ${resp.status} instead of 206 Partial Content`);
        }
        // Same-origin (or exposed by CORS): the range must be the one asked for.
        const cr = resp.headers.get("content-range");
        const m = cr && /^bytes (\d+)-(\d+)\//.exec(cr.trim());
        if (cr && (!m || Number(m[1]) !== f.offset || Number(m[2]) !== last)) {
          ctl.abort();
          final = true;
          throw new Error(`Content-Range '${cr}' does not match bytes ${f.offset}-${last}`);
        }
        bytes = new Uint8Array(await resp.arrayBuffer());
        error = null;
      } catch (e) {
        error = `${f.url} bytes ${f.offset}-${last}: ${String((e && e.message) || e)}`;
      } finally {
        clearTimeout(timer);
      }
      if (final) break;
    }
    this.running--;
    if (owner !== vm || !vm || quit) return;
    try {
      if (bytes) vm.deliver(f.drive, f.offset, bytes);
      else vm.fail_fetch(f.drive, f.offset, error);
    } catch (e) {
      error = String((e && e.message) || e); // a wrong length: the fetch failed in the VM
    }
    if (error) post({ type: "warning", message: `${f.drive}: ${error}` });
    kick();
    this.pump();
  },
};

async function image(v, label) {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (typeof v === "string" && v) return fetchBytes(v, label);
  return undefined;
}

async function start(cfg) {
  await init();
  const files = {};
  files.bios = await image(cfg.bios || "/images/bios/bios.bin", "bios.bin");
  files.vgabios = await image(cfg.vgabios || "/images/bios/vgabios-stdvga.bin", "vgabios-stdvga.bin");
  if (cfg.kernel) {
    files.linuxboot = await image(cfg.linuxboot || "/images/bios/linuxboot_dma.bin", "linuxboot_dma.bin");
    files.kernel = await image(cfg.kernel, "kernel");
    if (cfg.initrd) files.initrd = await image(cfg.initrd, "initrd");
  }
  for (const k of ["cdrom", "hda", "fda"]) {
    const label = cfg[`${k}_name`] || k;
    const lazy = cfg.lazy && typeof cfg[k] === "string" && cfg[k];
    const v = lazy ? await remoteImage(cfg[k], label) : await image(cfg[k], label);
    if (v) files[k] = v;
  }
  post({ type: "progress", label: "", got: 0, total: 0 });
  vm = new WasmVm({
    memory_mib: cfg.memory_mib || 128,
    cmdline: cfg.cmdline || "",
    boot: cfg.boot || "",
    start_paused: !!cfg.start_paused,
    name: cfg.name || "",
    wall_clock_ms: Date.now(),
  }, files);
  pageSession = vm.session_open(false);
  sessions.set(pageSession, { kind: "page" });
  post({ type: "started", commands: JSON.parse(vm.command_names()), table: JSON.parse(vm.command_table()), state: vm.state() });
  if (cfg.qmpRelay) relay.connect(cfg.qmpRelay);
  kick();
}

// ---- the WebSocket relay (wasm86-bridge's protocol, see crates/bridge/src/lib.rs) -------------
const relay = {
  ws: null,
  url: null,
  session: null, // vm session of the open client
  client: null, // the bridge's client number
  retry: null,
  connect(url) {
    if (!/^wss?:\/\//i.test(url)) { post({ type: "relay", state: `refused: ${url} is not a ws:// or wss:// URL` }); return; }
    this.url = url;
    clearTimeout(this.retry);
    if (this.ws) { const old = this.ws; this.ws = null; old.close(); }
    this.closeSession();
    let ws;
    try { ws = new WebSocket(url); } catch (e) { post({ type: "relay", state: `error: ${e.message}` }); return; }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    let opened = false;
    ws.onopen = () => { opened = true; post({ type: "relay", state: `connected to ${url}` }); };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closeSession();
      post({ type: "relay", state: opened ? "disconnected" : `could not connect to ${url}` });
      // The bridge may restart: try again while the VM lives.
      if (!quit) this.retry = setTimeout(() => { if (!quit && this.url === url && !this.ws) this.connect(url); }, opened ? 1000 : 3000);
    };
    ws.onmessage = (ev) => {
      if (!vm || quit) return;
      if (typeof ev.data === "string") {
        let ctl;
        try { ctl = JSON.parse(ev.data); } catch { return; }
        if (ctl.type === "open") {
          this.closeSession();
          this.session = vm.session_open(true);
          this.client = ctl.client;
          sessions.set(this.session, { kind: "ws" });
          flush();
        } else if (ctl.type === "close" && ctl.client === this.client) {
          this.closeSession();
        }
      } else if (this.session !== null) {
        vm.session_feed(this.session, new Uint8Array(ev.data), null);
        flush();
        kick();
      }
    };
  },
  send(bytes) { if (this.ws && this.ws.readyState === 1) this.ws.send(bytes); },
  closeSession() {
    if (this.session !== null && vm) { vm.session_close(this.session); sessions.delete(this.session); }
    this.session = null; this.client = null;
  },
  end() {
    // After quit: tell the bridge the session is over, then close.
    clearTimeout(this.retry);
    if (this.ws && this.ws.readyState === 1 && this.client !== null) this.ws.send(JSON.stringify({ type: "close", client: this.client }));
    const ws = this.ws;
    this.ws = null;
    this.closeSession();
    if (ws) setTimeout(() => ws.close(), 200);
  },
};

// ---- messages from the page ---------------------------------------------------------------------
// Handled one after the other, in order: a message that arrives while the images load (start)
// or while a change URL's size is asked waits for it.
let inbox = Promise.resolve();
self.onmessage = (ev) => { inbox = inbox.then(() => handle(ev)); };
async function handle(ev) {
  const m = ev.data;
  try {
    switch (m.type) {
      case "start":
        await start(m.config);
        break;
      case "qmp": {
        if (!vm || quit) { post({ type: "qmp-reply", reply: null, gone: true }); break; }
        // change DEVICE http(s)://...: learn the image's size first, so the command (run by the
        // VM, which cannot wait for the network) finds it registered. Later page messages wait.
        const url = changeUrl(m.text);
        if (url && !urlImages.has(url)) {
          try { await registerUrl(url); } catch (e) {
            post({ type: "warning", message: `${url}: ${String((e && e.message) || e)}` }); // change answers OpenFileFailed
          }
          if (!vm || quit) { post({ type: "qmp-reply", reply: null, gone: true }); break; }
        }
        vm.session_feed(pageSession, new TextEncoder().encode(m.text + "\n"), m.transfer || null);
        flush();
        kick();
        break;
      }
      case "put-url":
        if (vm && !quit) await registerUrl(m.url);
        break;
      case "post-open": {
        if (!vm || quit || postSessions.has(m.session)) break;
        const id = vm.session_open(true);
        sessions.set(id, { kind: "post", key: m.session });
        postSessions.set(m.session, id);
        flush();
        break;
      }
      case "post-in": {
        const id = postSessions.get(m.session);
        if (id !== undefined && vm && !quit) {
          vm.session_feed(id, new TextEncoder().encode(m.data), m.transfer || null);
          flush();
          kick();
        }
        break;
      }
      case "post-close": {
        const id = postSessions.get(m.session);
        if (id !== undefined && vm) { vm.session_close(id); sessions.delete(id); postSessions.delete(m.session); }
        break;
      }
      case "key": if (vm && !quit) { vm.key(new Uint8Array(m.codes)); kick(); } break;
      case "mouse": if (vm && !quit) { vm.mouse(m.dx | 0, m.dy | 0, m.dz | 0, m.buttons & 7); kick(); } break;
      case "serial-in": if (vm && !quit) { vm.send_serial(new TextEncoder().encode(m.data)); kick(); } break;
      case "relay": relay.connect(m.url); break;
      case "remove-file": if (vm) vm.remove_file(m.name); break;
      case "put-image": if (vm && !quit) { vm.put_image(m.name, m.data); post({ type: "image", name: m.name, size: m.data.length }); } break;
    }
  } catch (e) {
    if (m.type === "start" || !vm) fatal(e);
    else post({ type: "warning", message: `${m.type}: ${String((e && e.message) || e)}` });
  }
}
