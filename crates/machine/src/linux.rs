//! Direct Linux boot: split a bzImage and prepare the fw_cfg items that the `linuxboot_dma`
//! option ROM loads at boot time (as QEMU does; the ROM runs under SeaBIOS, so BIOS services
//! and SeaBIOS's allocations are in place when the kernel starts).

/// fw_cfg keys of the kernel items.
pub mod keys {
    /// Where the protected-mode kernel goes.
    pub const KERNEL_ADDR: u16 = 0x07;
    /// Size of the protected-mode kernel.
    pub const KERNEL_SIZE: u16 = 0x08;
    /// Command line address.
    pub const CMDLINE_ADDR: u16 = 0x13;
    /// Command line size (with the NUL).
    pub const CMDLINE_SIZE: u16 = 0x14;
    /// Command line bytes.
    pub const CMDLINE_DATA: u16 = 0x15;
    /// Initrd address.
    pub const INITRD_ADDR: u16 = 0x0A;
    /// Initrd size.
    pub const INITRD_SIZE: u16 = 0x0B;
    /// Initrd bytes.
    pub const INITRD_DATA: u16 = 0x12;
    /// Protected-mode kernel bytes.
    pub const KERNEL_DATA: u16 = 0x11;
    /// Setup (real-mode part) address.
    pub const SETUP_ADDR: u16 = 0x16;
    /// Setup size.
    pub const SETUP_SIZE: u16 = 0x17;
    /// Setup bytes, header patched.
    pub const SETUP_DATA: u16 = 0x18;
}

/// The items to put in fw_cfg for a direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBoot {
    /// (key, bytes) pairs.
    pub items: Vec<(u16, Vec<u8>)>,
    /// Boot protocol version of the kernel.
    pub protocol: u16,
}

/// Errors preparing a direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinuxBootError {
    /// Not a bzImage this loader understands.
    #[error("{0}")]
    BadKernel(String),
    /// The initrd does not fit.
    #[error("initrd of {0} bytes does not fit below {1:#x}")]
    InitrdTooBig(usize, u32),
    /// Command line too long.
    #[error("kernel command line is too long ({0} bytes, at most {1})")]
    CmdlineTooLong(usize, usize),
}

const SETUP_ADDR: u32 = 0x1_0000;
const CMDLINE_ADDR: u32 = 0x2_0000;
const KERNEL_ADDR: u32 = 0x10_0000;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Prepares the fw_cfg items for `kernel` (a bzImage), `initrd` and `cmdline`, for a guest
/// with `ram_size` bytes of RAM below 4 GiB.
pub fn prepare(
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    ram_size: u32,
) -> Result<LinuxBoot, LinuxBootError> {
    if kernel.len() < 0x1000 {
        return Err(LinuxBootError::BadKernel(
            "kernel image is too small".into(),
        ));
    }
    if u32_at(kernel, 0x202) != 0x5372_6448 {
        return Err(LinuxBootError::BadKernel(
            "not a Linux bzImage (no HdrS signature); multiboot kernels are not supported yet"
                .into(),
        ));
    }
    let protocol = u16_at(kernel, 0x206);
    if protocol < 0x0202 {
        return Err(LinuxBootError::BadKernel(format!(
            "boot protocol {}.{:02} is too old (2.02 or later needed)",
            protocol >> 8,
            protocol & 0xFF
        )));
    }
    if kernel[0x211] & 1 == 0 {
        return Err(LinuxBootError::BadKernel(
            "zImage (not loaded high) is not supported".into(),
        ));
    }
    let setup_sects = match kernel[0x1F1] {
        0 => 4,
        n => n as usize,
    };
    let setup_size = (setup_sects + 1) * 512;
    if setup_size >= kernel.len() {
        return Err(LinuxBootError::BadKernel(
            "setup size exceeds the image".into(),
        ));
    }
    let max_cmdline = if protocol >= 0x0206 {
        u32_at(kernel, 0x238) as usize
    } else {
        255
    };
    let max_cmdline = max_cmdline.min(0x1_0000 - 1);
    if cmdline.len() > max_cmdline {
        return Err(LinuxBootError::CmdlineTooLong(cmdline.len(), max_cmdline));
    }
    let mut setup = kernel[..setup_size].to_vec();
    let payload = &kernel[setup_size..];

    // initrd_max: header 0x22C from protocol 2.03, else 0x37FFFFFF; never above RAM minus a
    // reserve for ACPI tables SeaBIOS puts at the top.
    let mut initrd_max = if protocol >= 0x0203 {
        u32_at(kernel, 0x22C)
    } else {
        0x37FF_FFFF
    };
    let ram_top = ram_size.saturating_sub(128 * 1024);
    if initrd_max >= ram_top {
        initrd_max = ram_top.saturating_sub(1);
    }

    let mut items = Vec::new();
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);

    put_u32(&mut setup, 0x228, CMDLINE_ADDR);
    setup[0x210] = 0xB0; // type_of_loader: "undefined" loader, as QEMU reports
    setup[0x211] |= 0x80; // CAN_USE_HEAP
    let heap_end = (CMDLINE_ADDR - SETUP_ADDR - 0x200) as u16;
    setup[0x224..0x226].copy_from_slice(&heap_end.to_le_bytes());

    if let Some(rd) = initrd {
        let len = rd.len() as u32;
        if rd.len() > u32::MAX as usize || len > initrd_max {
            return Err(LinuxBootError::InitrdTooBig(rd.len(), initrd_max));
        }
        let addr = (initrd_max - len) & !4095;
        if addr < KERNEL_ADDR + payload.len() as u32 {
            return Err(LinuxBootError::InitrdTooBig(rd.len(), initrd_max));
        }
        put_u32(&mut setup, 0x218, addr);
        put_u32(&mut setup, 0x21C, len);
        items.push((keys::INITRD_ADDR, addr.to_le_bytes().to_vec()));
        items.push((keys::INITRD_SIZE, len.to_le_bytes().to_vec()));
        items.push((keys::INITRD_DATA, rd.to_vec()));
    }
    items.push((keys::KERNEL_ADDR, KERNEL_ADDR.to_le_bytes().to_vec()));
    items.push((
        keys::KERNEL_SIZE,
        (payload.len() as u32).to_le_bytes().to_vec(),
    ));
    items.push((keys::KERNEL_DATA, payload.to_vec()));
    items.push((keys::CMDLINE_ADDR, CMDLINE_ADDR.to_le_bytes().to_vec()));
    items.push((
        keys::CMDLINE_SIZE,
        (cmd.len() as u32).to_le_bytes().to_vec(),
    ));
    items.push((keys::CMDLINE_DATA, cmd));
    items.push((keys::SETUP_ADDR, SETUP_ADDR.to_le_bytes().to_vec()));
    items.push((
        keys::SETUP_SIZE,
        (setup.len() as u32).to_le_bytes().to_vec(),
    ));
    items.push((keys::SETUP_DATA, setup));
    Ok(LinuxBoot { items, protocol })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_kernel(protocol: u16) -> Vec<u8> {
        let mut k = vec![0u8; 0x4000];
        k[0x1F1] = 4;
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        k[0x211] = 1;
        k[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        k[0x238..0x23C].copy_from_slice(&2048u32.to_le_bytes());
        k
    }

    fn item(b: &LinuxBoot, key: u16) -> &[u8] {
        &b.items.iter().find(|(k, _)| *k == key).expect("item").1
    }

    #[test]
    fn splits_and_patches() {
        let k = fake_kernel(0x020F);
        let rd = vec![7u8; 10_000];
        let b = prepare(&k, Some(&rd), "console=ttyS0", 64 << 20).unwrap();
        let setup = item(&b, keys::SETUP_DATA);
        assert_eq!(setup.len(), 5 * 512);
        assert_eq!(item(&b, keys::KERNEL_DATA).len(), 0x4000 - 5 * 512);
        assert_eq!(u32_at(setup, 0x228), CMDLINE_ADDR);
        assert_eq!(setup[0x210], 0xB0);
        assert_eq!(setup[0x211], 0x81);
        let addr = u32_at(setup, 0x218);
        assert_eq!(addr % 4096, 0);
        assert!(addr + 10_000 <= (64 << 20) - 128 * 1024);
        assert_eq!(item(&b, keys::CMDLINE_DATA), b"console=ttyS0\0");
        assert_eq!(item(&b, keys::INITRD_ADDR), addr.to_le_bytes());
    }

    #[test]
    fn rejects_bad_kernels() {
        assert!(prepare(&[0; 10], None, "", 64 << 20).is_err());
        let mut k = fake_kernel(0x020F);
        k[0x202] = b'X';
        assert!(prepare(&k, None, "", 64 << 20).is_err());
        assert!(prepare(&fake_kernel(0x0201), None, "", 64 << 20).is_err());
        let mut k = fake_kernel(0x020F);
        k[0x1F1] = 200;
        assert!(prepare(&k, None, "", 64 << 20).is_err());
        let long = "x".repeat(5000);
        assert!(matches!(
            prepare(&fake_kernel(0x020F), None, &long, 64 << 20),
            Err(LinuxBootError::CmdlineTooLong(..))
        ));
        let big = vec![0u8; 70 << 20];
        assert!(matches!(
            prepare(&fake_kernel(0x020F), Some(&big), "", 64 << 20),
            Err(LinuxBootError::InitrdTooBig(..))
        ));
    }
}
