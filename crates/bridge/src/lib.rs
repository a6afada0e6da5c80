//! `wasm86-bridge`: serves the wasm86 web page and relays the QMP of a VM that runs in
//! a browser tab to ordinary QMP sockets, so that `qmp-shell` or `qemu.qmp` can drive it.
//!
//! # What it serves
//!
//! One HTTP/1.1 listener (`--listen`, default `127.0.0.1:8086`):
//!
//! | path | served from |
//! |---|---|
//! | `/` | `WWW/index.html` |
//! | `/pkg/...` | the `--pkg` directory (wasm-bindgen output) |
//! | `/images/...` | the `--images` directory (disk images, fetched by byte range) |
//! | `/qmp` | the WebSocket the VM's worker connects to |
//! | anything else | the `--www` directory |
//!
//! GET and HEAD only; a single `Range: bytes=a-b`, `a-` or `-n` gives 206 with
//! `Content-Range` (416 with `Content-Range: bytes */LEN` when no byte exists; several
//! ranges or a malformed header are ignored and give 200); `If-Range` and
//! `If-None-Match` against the `ETag`/`Last-Modified` the bridge sends. Every response
//! carries `Cross-Origin-Opener-Policy: same-origin` and
//! `Cross-Origin-Embedder-Policy: require-corp`, which the page needs for
//! `SharedArrayBuffer`. Paths with `.`/`..` segments, NUL, backslashes or bad escapes
//! get 400; a file that resolves (through a symbolic link) outside its directory gets
//! 403. A directory without its trailing slash is redirected (301) to it.
//!
//! With `--access-log FILE` every response is also recorded as one line of
//! `METHOD PATH STATUS FIRST-LAST BYTES` (see [`access`]), which tests read to see which bytes
//! of an image were served.
//!
//! # The relay protocol (bridge ⇄ worker)
//!
//! The worker opens `ws://BRIDGE/qmp`. The upgrade is refused with 403 unless `Origin`
//! is the bridge's own origin (see [`server::OriginPolicy`]) or one given with
//! `--allow-origin`. On that WebSocket:
//!
//! - **Binary frames** carry QMP bytes, in both directions. Frame boundaries mean
//!   nothing: a JSON message may be split across frames and a frame may hold several.
//!   From the bridge they are the bytes of the currently open client; from the worker
//!   they are the output of the currently open client's session.
//! - **Text frames** are JSON control messages:
//!   - bridge → worker `{"type":"open","client":N}`: a client connected to a `--qmp`
//!     endpoint. The worker creates a fresh QMP session (negotiation mode) and sends its
//!     greeting; that session's output flows back as binary frames.
//!   - bridge → worker `{"type":"close","client":N}`: client N disconnected. The worker
//!     ends that session and sends nothing more for it.
//!   - worker → bridge `{"type":"close","client":N}` (optional): the worker ended the
//!     session itself (for example after `quit`); the bridge disconnects client N after
//!     the bytes already received, and then also sends its own `close` for N.
//!   - other text messages are ignored.
//!
//! At most one client is open at a time, across all endpoints: `open N` is always
//! followed by `close N` before the next `open`. Client numbers start at 1 and grow.
//!
//! Pings are answered with pongs. Frames from the worker are limited to 1 MiB and text
//! messages to 64 KiB; a larger frame closes the connection with code 1009.
//!
//! # Clients, VMs and waiting
//!
//! - Each `--qmp` endpoint (`unix:PATH` or `tcp:HOST:PORT`) serves one client at a
//!   time, as QEMU does: the next connection is accepted only when the current one
//!   ends, and waits meanwhile in the listen backlog (connected, but not greeted).
//!   Endpoints share the one relay, so a client of one endpoint also waits while a
//!   client of another is open.
//! - A client that connects while no VM is connected is **held open, without a
//!   timeout**, until a VM connects; the bridge prints one line on stderr when that
//!   happens. What the client sends meanwhile is kept (up to 1 MiB) and forwarded
//!   after `open`. A client that disconnects while waiting is forgotten.
//! - **A second VM connection replaces the first**: the old WebSocket is closed with
//!   code 1001 and the client open on it is disconnected (its session is gone). A
//!   reloaded tab thus takes over without waiting for the old socket to time out.
//! - When the VM's WebSocket ends, the open client is disconnected; waiting clients
//!   keep waiting for the next VM.
//! - After `close N` the bridge waits 100 ms before the next `open` and drops VM bytes
//!   that arrive while no client is open, so late output of session N (sent before the
//!   worker saw `close N`) does not reach client N+1. Binary frames carry no client
//!   number, so this is a time bound rather than a guarantee.
//!
//! # Unix sockets and signals
//!
//! A stale socket file at a `unix:` path is removed at start-up; a path that is not a
//! socket, or a socket another server accepts on, is an error. The bridge removes its
//! socket files when it stops through [`server::Bridge`] being dropped. It installs no
//! signal handlers: SIGINT/SIGTERM end it at once, the socket file stays, and the next
//! start removes it as stale.
//!
//! # Bounds
//!
//! Request heads are at most 16 KiB and 100 header lines (431 otherwise); request
//! bodies are never read; a head must arrive within 30 s of its first byte (408);
//! at most 128 connections are served at once (503 beyond);
//! idle keep-alive connections close after 15 s; a peer that takes no bytes for 30–60 s
//! is dropped. No input from a socket can panic the bridge.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod config;
pub mod http;
pub mod relay;
pub mod server;
pub mod sha1;
pub mod ws;

pub use config::{parse_args, Command, Config, ConfigError, QmpEndpoint};
pub use server::{Bridge, BridgeError};
