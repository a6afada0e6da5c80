//! Set-up shared by the CPU integration tests.

use wasm86_cpu::testbus::TestBus;

/// Writes a GDT at `at`: null, flat code32 (0x08), data32 (0x10), code16 (0x18), data16
/// (0x20), code32 DPL 3 (0x28), data32 DPL 3 (0x30), and a 32-bit TSS at `tss` (0x38).
pub fn load_gdt(bus: &mut TestBus, at: u32, tss: u32) {
    let d: [u64; 8] = [
        0,
        0x00CF_9A00_0000_FFFF,
        0x00CF_9200_0000_FFFF,
        0x0000_9A00_0000_FFFF,
        0x0000_9200_0000_FFFF,
        0x00CF_FA00_0000_FFFF,
        0x00CF_F200_0000_FFFF,
        0x0000_8900_0000_0067 | ((tss as u64) << 16),
    ];
    for (i, v) in d.iter().enumerate() {
        bus.load(at + 8 * i as u32, &v.to_le_bytes());
    }
}
