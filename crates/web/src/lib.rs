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
//! - [`remote`] holds the drives read lazily from URLs (HTTP range requests by the worker);
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
pub mod remote;
pub mod runner;
mod wasm;

pub use wasm::WasmVm;

/// The VM's QMP command table for the page's completion: `[{"name", "args": [{"name",
/// "type", "optional"}]}]` in table order, derived from the one table the VM dispatches with
/// (`wasm86_vmm::registry::table`).
pub fn command_table() -> serde_json::Value {
    let table = wasm86_vmm::registry::table();
    let commands: Vec<serde_json::Value> = table
        .names()
        .filter_map(|n| table.get(n))
        .map(|c| {
            let args: Vec<serde_json::Value> = c
                .args()
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "name": a.name,
                        "type": a.kind.expected(),
                        "optional": a.optional,
                    })
                })
                .collect();
            serde_json::json!({ "name": c.name(), "args": args })
        })
        .collect();
    serde_json::Value::Array(commands)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_table_lists_arguments() {
        let t = super::command_table();
        let cmds = t.as_array().expect("array");
        let find = |n: &str| cmds.iter().find(|c| c["name"] == n).cloned();
        let dump = find("screendump").expect("screendump");
        assert_eq!(dump["args"][0]["name"], "filename");
        assert_eq!(dump["args"][0]["type"], "string");
        assert_eq!(dump["args"][0]["optional"], false);
        let eject = find("eject").expect("eject");
        let force = eject["args"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "force");
        assert_eq!(force.expect("force")["optional"], true);
        assert_eq!(
            find("query-status").expect("query-status")["args"],
            serde_json::json!([])
        );
        assert!(find("no-such").is_none());
    }
}
