//! The wasm86 x86 CPU (in progress).

#![deny(missing_docs)]

pub mod fpu;
