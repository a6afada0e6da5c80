//! QMP, the QEMU Machine Protocol, in QEMU 1.1's dialect, for wasm86.
//!
//! Transport-free and machine-free: bytes in, bytes out, and a context type `C` that the
//! embedding crate's command handlers receive.
//!
//! - [`json`]: framing of the input stream by JSON structure (not lines), with QEMU's limits
//!   and resynchronisation, and QMP's output format.
//! - [`session`]: one connection: greeting, negotiation, request checks, replies in request
//!   order (deferred ones included), events.
//! - [`table`]: the one command table (`args_type` strings of qmp-commands.hx), argument
//!   checking in 1.1's order, typed deserialisation, `query-commands`.
//! - [`error`]: every QEMU 1.1 error class with its exact description.
//! - [`event`]: events and their timestamps (given by the caller).
//! - [`hmp`]: the human monitor behind `human-monitor-command`.
//!
//! # Integration
//!
//! Build one [`CommandTable`] (registering every command with its qmp-commands.hx
//! `args_type`), attach an [`HmpTable`] with [`CommandTable::set_hmp`], create a [`Session`]
//! per connection, pass received bytes to [`Session::handle`] with the host's wall-clock
//! [`Timestamp`], send [`Session::take_output`], and send the returned events (and every
//! machine event) to the other sessions with [`Session::push_event`]. A handler that cannot
//! answer at once returns [`Reply::deferred`]`(args.defer())` and the embedding crate later calls
//! [`Session::complete`].
//!
//! # Where wasm86 differs from QEMU 1.1
//!
//! - Member order: 1.1 printed QDicts in hash order; here replies are
//!   `{"return", "id"}` / `{"error", "id"}`, errors `{"class", "desc", "data"}`, and the
//!   greeting's version `{"micro", "minor", "major"}` (what 1.x printed in practice).
//! - Arguments and input-object members are checked in the order the client sent them
//!   (1.1: hash order), mandatory ones in `args_type` order.
//! - Floats are written by serde_json (shortest round-trip form), not `%f`.
//! - A float literal outside `f64` (`1e400`) is a JSON syntax error (1.1 made it `inf`).
//! - `\u` escapes forming an unpaired surrogate are a JSON syntax error.
//! - The HMP expression evaluator also has `<<` and `>>` (loosest binding); dumps stop at
//!   [`hmp::MAX_DUMP_BYTES`]; `x` formats `a` (32-bit hex) and `s` (C string per line) are
//!   wasm86 extensions.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod event;
pub mod hmp;
pub mod json;
pub mod session;
pub mod table;

pub use error::QmpError;
pub use event::{Event, Timestamp};
pub use hmp::{DumpFormat, HmpArgs, HmpContext, HmpState, HmpTable, HmpValue};
pub use json::{Frame, JsonStreamer, Limits, MAX_NESTING, MAX_TOKEN_SIZE};
pub use session::{Incoming, Mode, Request, Session, SessionConfig};
pub use table::{ArgKind, ArgSpec, Args, CommandTable, DeferredToken, Handler, Outcome, Reply};
