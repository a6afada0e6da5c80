//! The x87 FPU (in progress).
