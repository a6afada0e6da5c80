//! The wasm86 PC board (in progress): the virtual clock and direct Linux boot.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod linux;
