//! QMP, the QEMU Machine Protocol, in QEMU 1.1's dialect, for wasm86.
//!
//! Transport-free and machine-free: bytes in, bytes out, and a context type `C` that the
//! integrator's command handlers receive.
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
