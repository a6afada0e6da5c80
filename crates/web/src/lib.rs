//! wasm86 in a browser tab: the thin adapter between a Web Worker and the VM core.
//!
//! `www/worker.js` creates a [`WasmVm`] from the page's choice of guest and drives it: it calls
//! [`WasmVm::run`] for a slice of host time from a `MessageChannel` ping-pong, moves serial
//! bytes, frames, keys and mouse motion between the page and the machine, and connects every
//! QMP door (the page's `window.wasm86.qmp`, `postMessage` sessions, the WebSocket relay of
//! `wasm86-bridge`) to a session of the one [`wasm86_vmm::Vm`]. No emulator logic lives here:
//!
//! - [`config`] checks the page's description and builds the machine and its drives;
//! - [`runner`] is the realtime run loop, the MIPS meter and the serial input queue;
//! - [`files`] is the size-capped store where `screendump`/`memsave`/`pmemsave` write;
//! - [`host`] implements the VM's [`wasm86_vmm::Host`] for a worker;
//! - `wasm` holds the JavaScript class, conversions only.
//!
//! All but the last are platform-free and tested natively (`cargo test -p wasm86-web`); the
//! JavaScript boundary is tested in headless Chromium (`cargo test -p wasm86-web --target
//! wasm32-unknown-unknown`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod files;
pub mod host;
pub mod runner;
mod wasm;

pub use wasm::WasmVm;
