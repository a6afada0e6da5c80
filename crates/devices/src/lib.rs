//! Device models of the wasm86 PC.
//!
//! Every device is a plain struct: port or MMIO reads and writes at an offset, interrupts out
//! as a level the board polls (`irq_level()`), time given in as [`VirtTime`] (never read from
//! the host), and a serde `State` saved and restored through [`Snapshot`]. No I/O, threads or
//! clocks inside a device. The board (`wasm86-machine`) wires them together.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod dma;
pub mod fdc;
pub mod fw_cfg;
pub mod i8042;
pub mod ide;
pub mod misc;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;
pub mod vga;

/// Virtual time in nanoseconds since machine power-on (the machine's one clock).
pub type VirtTime = u64;

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Error restoring a saved device state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {device} state: {reason}")]
pub struct StateError {
    /// Device name.
    pub device: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl StateError {
    /// Builds an error for `device`.
    pub fn new(device: &'static str, reason: impl Into<String>) -> StateError {
        StateError {
            device,
            reason: reason.into(),
        }
    }
}

/// A device whose state can be saved and restored (migration, snapshots).
///
/// `restore` validates everything (indices, lengths, enum values) and leaves the device
/// unchanged on error.
pub trait Snapshot {
    /// The saved state: plain data, serde-serialisable.
    type State: serde::Serialize + serde::de::DeserializeOwned + Clone + PartialEq + std::fmt::Debug;
    /// Saves the current state.
    fn save(&self) -> Self::State;
    /// Restores a saved state, validating it.
    fn restore(&mut self, state: &Self::State) -> Result<(), StateError>;
}

/// Generates the save/mutate/restore round-trip tests every device runs.
///
/// `snapshot_tests!(name, || make_device(), |dev| mutate(dev));` creates a test module `name`
/// that saves a device, mutates it, restores the save, saves again and compares; and checks
/// that the state survives a postcard encoding round trip.
#[macro_export]
macro_rules! snapshot_tests {
    ($name:ident, $make:expr, $mutate:expr) => {
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::Snapshot;

            #[test]
            fn save_mutate_restore_round_trip() {
                let make = $make;
                let mutate = $mutate;
                let mut dev = make();
                mutate(&mut dev);
                let saved = dev.save();
                mutate(&mut dev);
                dev.restore(&saved).expect("restore of a fresh save");
                assert_eq!(dev.save(), saved);
                let mut other = make();
                other.restore(&saved).expect("restore into a new device");
                assert_eq!(other.save(), saved);
            }

            #[test]
            fn state_survives_encoding() {
                let make = $make;
                let mutate = $mutate;
                let mut dev = make();
                mutate(&mut dev);
                let saved = dev.save();
                let bytes = postcard::to_allocvec(&saved).expect("encode");
                let back = postcard::from_bytes(&bytes).expect("decode");
                assert_eq!(saved, back);
            }
        }
    };
}
