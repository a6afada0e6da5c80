//! MMX, SSE and SSE2: the XMM register file, the packed-integer and move instructions, and
//! the plumbing that runs the floating-point lanes through [`fp`].

#[allow(dead_code)]
pub(crate) mod fp;
