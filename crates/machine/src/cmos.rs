//! The CMOS NVRAM contents the board sets at power-on, as SeaBIOS and Linux read them.

/// What the CMOS describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosConfig {
    /// RAM size in bytes (below 4 GiB).
    pub ram_size: u64,
    /// Boot order letters (`a` floppy, `c` disk, `d` CD-ROM), first first.
    pub boot_order: String,
    /// Floppy drive 0 type nibble (0 none, 4 = 1.44 MB, 5 = 2.88 MB).
    pub floppy0_type: u8,
    /// Number of CPUs.
    pub cpus: u8,
    /// Whether an IDE disk is present on ide0 master / slave.
    pub hd_present: [bool; 2],
}

/// Register values: (index, value) pairs.
pub fn cmos_values(c: &CmosConfig) -> Vec<(u8, u8)> {
    let mut v = Vec::new();
    // Base memory 640 KiB.
    v.push((0x15, 0x80));
    v.push((0x16, 0x02));
    // Extended memory in KiB above 1 MiB, capped at 0xFFFF (0x17/0x18 and 0x30/0x31).
    let ext_kib = (c.ram_size.saturating_sub(1 << 20) / 1024).min(0xFFFF) as u16;
    for (lo, hi) in [(0x17, 0x18), (0x30, 0x31)] {
        v.push((lo, ext_kib as u8));
        v.push((hi, (ext_kib >> 8) as u8));
    }
    // Memory above 16 MiB in 64 KiB units (0x34/0x35).
    let above16 = (c.ram_size.min(0xE000_0000).saturating_sub(16 << 20) / 65536).min(0xFFFF) as u16;
    v.push((0x34, above16 as u8));
    v.push((0x35, (above16 >> 8) as u8));
    // Nothing above 4 GiB.
    v.extend([(0x5B, 0), (0x5C, 0), (0x5D, 0)]);
    // Floppy types: drive A in the high nibble.
    v.push((0x10, c.floppy0_type << 4));
    // Equipment byte: FPU present, VGA (00 = EGA/VGA), floppy count.
    let mut equip = 0x02 | 0x04; // math coprocessor, mouse port
    if c.floppy0_type != 0 {
        equip |= 0x01;
    }
    v.push((0x14, equip));
    // Hard disk types: 0x0F means "see 0x19/0x1A" (extended types 47 = user defined).
    let mut hd = 0;
    if c.hd_present[0] {
        hd |= 0xF0;
        v.push((0x19, 47));
    }
    if c.hd_present[1] {
        hd |= 0x0F;
        v.push((0x1A, 47));
    }
    v.push((0x12, hd));
    // Boot order: nibbles of 0x3D (first, second) and 0x38's high nibble (third);
    // 1 floppy, 2 hard disk, 3 CD-ROM. 0x38 bit 0 = skip the floppy boot-signature check.
    let code = |ch: char| match ch {
        'a' => 1u8,
        'c' => 2,
        'd' => 3,
        _ => 0,
    };
    let mut order = c.boot_order.chars().map(code).filter(|&x| x != 0);
    let first = order.next().unwrap_or(2);
    let second = order.next().unwrap_or(0);
    let third = order.next().unwrap_or(0);
    v.push((0x3D, first | (second << 4)));
    v.push((0x38, third << 4));
    // CPUs - 1, century (BCD 20).
    v.push((0x5F, c.cpus.saturating_sub(1)));
    v.push((0x32, 0x20));
    // Shutdown status: normal POST.
    v.push((0x0F, 0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(v: &[(u8, u8)], i: u8) -> u8 {
        v.iter()
            .rev()
            .find(|(k, _)| *k == i)
            .map(|x| x.1)
            .expect("present")
    }

    #[test]
    fn memory_sizes() {
        let v = cmos_values(&CmosConfig {
            ram_size: 256 << 20,
            boot_order: "dc".into(),
            floppy0_type: 4,
            cpus: 1,
            hd_present: [true, false],
        });
        assert_eq!(u16::from_le_bytes([get(&v, 0x30), get(&v, 0x31)]), 0xFFFF);
        assert_eq!(
            u16::from_le_bytes([get(&v, 0x34), get(&v, 0x35)]) as u32,
            (240u32 << 20) / 65536
        );
        assert_eq!(get(&v, 0x3D), 0x23);
        assert_eq!(get(&v, 0x10), 0x40);
        assert_eq!(get(&v, 0x5F), 0);
        let small = cmos_values(&CmosConfig {
            ram_size: 16 << 20,
            boot_order: "a".into(),
            floppy0_type: 4,
            cpus: 1,
            hd_present: [false, false],
        });
        assert_eq!(
            u16::from_le_bytes([get(&small, 0x30), get(&small, 0x31)]),
            15 * 1024
        );
        assert_eq!(get(&small, 0x34), 0);
        assert_eq!(get(&small, 0x3D), 0x01);
    }
}
