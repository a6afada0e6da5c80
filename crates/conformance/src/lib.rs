//! CPU conformance tooling for wasm86.
//!
//! - [`singlestep`]: runs the hardware-captured SingleStepTests 80286 real-mode suite
//!   ([`moo`] files, [`metadata`] flag masks, revocation list) against the CPU and
//!   judges differences with the committed [`allow`]-list of real 286-versus-P6 differences.
//! - [`fuzz`]: random instruction streams in real mode, 16/32-bit protected mode and with
//!   paging, checking that the CPU never panics and keeps its `run` contract.
//! - [`report`]: the Markdown report the tools update for the CPU engineer.
//!
//! The host-differential ALU test lives in `tests/alu_host.rs`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod allow;
pub mod diff;
pub mod fuzz;
pub mod harness;
pub mod insn;
pub mod metadata;
pub mod moo;
pub mod report;
pub mod singlestep;
