//! The page's VM description (`config` and `files` of `new WasmVm(config, files)`), checked
//! and turned into a powered-on [`Machine`] with its drives, and a [`VmConfig`].
//!
//! Everything here is platform-free so that it is tested natively; `wasm.rs` only converts
//! JavaScript values into [`WebConfig`] and [`Images`].

use crate::remote::RemoteDrives;
use serde::Deserialize;
use wasm86_block::{BlockBackend, BlockDevice, MemBackend, Overlay};
use wasm86_machine::{DirectBoot, Machine, MachineConfig};
use wasm86_vmm::VmConfig;

/// Largest guest RAM a tab may ask for, in MiB. A wasm32 instance addresses 4 GiB at most, and
/// the emulator, the images and the frame buffers live there too.
pub const MAX_MEMORY_MIB: u32 = 2048;

/// Default guest RAM in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 128;

/// The `config` object the worker passes. Every field is optional; unknown fields are refused
/// so that a typo does not go unnoticed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Guest RAM in MiB (`-m`), 1 to [`MAX_MEMORY_MIB`]; default [`DEFAULT_MEMORY_MIB`].
    pub memory_mib: Option<u32>,
    /// Kernel command line for a direct boot (`-append`).
    pub cmdline: Option<String>,
    /// Boot order letters (`-boot`): `a` floppy, `c` disk, `d` CD-ROM. Default `cad`.
    pub boot: Option<String>,
    /// Start in prelaunch, as `-S`.
    pub start_paused: Option<bool>,
    /// `-name`.
    pub name: Option<String>,
    /// `-uuid`.
    pub uuid: Option<String>,
    /// Host wall-clock time in ms since the Unix epoch, for the RTC's initial value.
    pub wall_clock_ms: Option<f64>,
    /// Deterministic clock instead of realtime (tests: HLT jumps to the next deadline).
    pub deterministic: Option<bool>,
    /// `-no-reboot`.
    pub no_reboot: Option<bool>,
    /// `-no-shutdown`.
    pub no_shutdown: Option<bool>,
}

/// The images (`files`): each an optional byte array, and the drives read lazily from URLs.
#[derive(Debug, Clone, Default)]
pub struct Images {
    /// SeaBIOS `bios.bin` (required).
    pub bios: Option<Vec<u8>>,
    /// `vgabios-stdvga.bin`.
    pub vgabios: Option<Vec<u8>>,
    /// `linuxboot_dma.bin` (required with `kernel`).
    pub linuxboot: Option<Vec<u8>>,
    /// A bzImage for a direct boot.
    pub kernel: Option<Vec<u8>>,
    /// Its initrd.
    pub initrd: Option<Vec<u8>>,
    /// CD-ROM image in `ide1-cd0` (read-only).
    pub cdrom: Option<Vec<u8>>,
    /// Hard disk image in `ide0-hd0` (writable, in memory).
    pub hda: Option<Vec<u8>>,
    /// Floppy image in `floppy0` (writable, in memory).
    pub fda: Option<Vec<u8>>,
    /// Drives (`cdrom`, `hda`, `fda`) read lazily from a URL instead of given as bytes. Guest
    /// writes to a remote disk or floppy stay in memory (an overlay).
    pub remote: RemoteDrives,
}

impl Images {
    /// The names `files` may carry, in the order of the fields.
    pub const NAMES: [&'static str; 8] = [
        "bios",
        "vgabios",
        "linuxboot",
        "kernel",
        "initrd",
        "cdrom",
        "hda",
        "fda",
    ];

    /// The slot of a named image.
    pub fn slot(&mut self, name: &str) -> Option<&mut Option<Vec<u8>>> {
        Some(match name {
            "bios" => &mut self.bios,
            "vgabios" => &mut self.vgabios,
            "linuxboot" => &mut self.linuxboot,
            "kernel" => &mut self.kernel,
            "initrd" => &mut self.initrd,
            "cdrom" => &mut self.cdrom,
            "hda" => &mut self.hda,
            "fda" => &mut self.fda,
            _ => return None,
        })
    }
}

/// Why a VM could not be built from the page's description.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config object does not parse.
    #[error("invalid VM config: {0}")]
    Parse(String),
    /// An entry of `files` is unknown or not a byte array.
    #[error("invalid VM files: {0}")]
    Files(String),
    /// `memory_mib` out of range.
    #[error("memory_mib {0} is out of range: 1 to {MAX_MEMORY_MIB} MiB")]
    Memory(u32),
    /// Bad boot order.
    #[error("boot order '{0}' is invalid: use the drive letters a, c and d, each at most once")]
    BootOrder(String),
    /// A required image is missing.
    #[error("files.{0} is required{1}")]
    Missing(&'static str, &'static str),
    /// An image of a size the drive cannot take.
    #[error("files.{0}: {1}")]
    BadImage(&'static str, String),
    /// The machine refused the configuration (RAM, BIOS, kernel...).
    #[error("cannot build the machine: {0}")]
    Machine(#[from] wasm86_machine::MachineError),
}

/// Parses the JSON text of a `config` object.
pub fn parse_config(json: &str) -> Result<WebConfig, ConfigError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ConfigError::Parse(e.to_string()))?;
    if !value.is_object() {
        return Err(ConfigError::Parse("expected an object".into()));
    }
    serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// CMOS floppy drive type for an image size, or `None` when no standard format has it.
pub fn floppy_type(size: usize) -> Option<u8> {
    Some(match size {
        368_640 => 1,   // 360 KiB 5.25"
        1_228_800 => 2, // 1.2 MiB 5.25"
        737_280 => 3,   // 720 KiB 3.5"
        1_474_560 => 4, // 1.44 MiB 3.5"
        1_720_320 => 4, // 1.68 MiB DMF in a 1.44 MiB drive
        2_949_120 => 5, // 2.88 MiB 3.5"
        _ => return None,
    })
}

/// The `'static` name of a drive of [`crate::remote::REMOTE_DRIVES`].
fn static_drive(name: &str) -> &'static str {
    match name {
        "cdrom" => "cdrom",
        "hda" => "hda",
        _ => "fda",
    }
}

fn check_boot_order(order: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BootOrder(order.to_string());
    if order.is_empty() || order.len() > 3 {
        return Err(bad());
    }
    for (i, c) in order.char_indices() {
        if !matches!(c, 'a' | 'c' | 'd') || order[..i].contains(c) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Builds the machine and the VM settings from the page's description. `now_ms` is the host
/// wall clock used when the config gives none.
pub fn build(
    cfg: &WebConfig,
    images: Images,
    now_ms: f64,
) -> Result<(Machine, VmConfig), ConfigError> {
    let mib = cfg.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB);
    if !(1..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(ConfigError::Memory(mib));
    }
    let boot_order = cfg
        .boot
        .clone()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "cad".into());
    check_boot_order(&boot_order)?;
    let Images {
        bios,
        vgabios,
        linuxboot,
        kernel,
        initrd,
        cdrom,
        hda,
        fda,
        remote,
    } = images;
    let bios = bios.ok_or(ConfigError::Missing("bios", " (SeaBIOS bios.bin)"))?;
    for name in crate::remote::REMOTE_DRIVES {
        let given = match name {
            "cdrom" => cdrom.is_some(),
            "hda" => hda.is_some(),
            _ => fda.is_some(),
        };
        if given && remote.get(name).is_some() {
            return Err(ConfigError::BadImage(
                static_drive(name),
                "given both as bytes and as a URL".into(),
            ));
        }
    }
    // Sizes: of the bytes, or of the remote image (rounded up to a sector).
    let size_of = |bytes: &Option<Vec<u8>>, name: &str| {
        bytes
            .as_ref()
            .map(|d| d.len() as u64)
            .or_else(|| remote.get(name).map(|r| r.size()))
    };
    let floppy0_type = match size_of(&fda, "fda") {
        Some(n) => usize::try_from(n)
            .ok()
            .and_then(floppy_type)
            .ok_or_else(|| {
                ConfigError::BadImage(
                    "fda",
                    format!("{n} bytes is not a floppy format (360K, 720K, 1.2M, 1.44M, 2.88M)"),
                )
            })?,
        None => 0,
    };
    let hda_size = size_of(&hda, "hda");
    if let Some(n) = hda_size {
        if n < 512 || n % 512 != 0 {
            return Err(ConfigError::BadImage(
                "hda",
                format!("{n} bytes is not a whole number of 512-byte sectors"),
            ));
        }
    }
    if let Some(n) = size_of(&cdrom, "cdrom") {
        if n < 2048 || n % 2048 != 0 {
            return Err(ConfigError::BadImage(
                "cdrom",
                format!("{n} bytes is not a whole number of 2048-byte sectors"),
            ));
        }
    }
    let direct_boot = match kernel {
        Some(kernel) => Some(DirectBoot {
            kernel,
            initrd,
            cmdline: cfg.cmdline.clone().unwrap_or_default(),
            option_rom: linuxboot.ok_or(ConfigError::Missing(
                "linuxboot",
                " with a kernel (the linuxboot_dma.bin option ROM)",
            ))?,
        }),
        None if initrd.is_some() => {
            return Err(ConfigError::Missing("kernel", " when an initrd is given"))
        }
        None => None,
    };
    let wall_ms = cfg
        .wall_clock_ms
        .filter(|t| t.is_finite() && *t >= 0.0)
        .unwrap_or(now_ms);
    let mut mc = MachineConfig::new(u64::from(mib) << 20, bios);
    mc.vga_bios = vgabios;
    mc.direct_boot = direct_boot;
    mc.boot_order = boot_order;
    mc.rtc_base = (wall_ms.max(0.0) / 1000.0) as u64;
    mc.floppy0_type = floppy0_type;
    mc.hd_present = [hda_size.is_some(), false];
    let mut machine = Machine::new(mc)?;
    // Bytes in memory, or the remote image (under an overlay when the guest may write).
    let drive = |data: Option<Vec<u8>>, ro: bool, name: &str| -> Option<BlockDevice> {
        let backend: Box<dyn BlockBackend> = match (data, remote.get(name)) {
            (Some(d), _) => Box::new(MemBackend::new(d, ro, name.to_string())),
            (None, Some(r)) if ro => Box::new(r.clone()),
            (None, Some(r)) => Box::new(Overlay::new(Box::new(r.clone()))),
            (None, None) => return None,
        };
        Some(BlockDevice::new(backend))
    };
    machine.attach_drives(
        drive(hda, false, "hda"),
        None,
        drive(cdrom, true, "cdrom"),
        drive(fda, false, "fda"),
    )?;
    let vm = VmConfig {
        name: cfg.name.clone().filter(|n| !n.is_empty()),
        uuid: cfg.uuid.clone().filter(|u| !u.is_empty()),
        start_paused: cfg.start_paused.unwrap_or(false),
        no_reboot: cfg.no_reboot.unwrap_or(false),
        no_shutdown: cfg.no_shutdown.unwrap_or(false),
        deterministic: cfg.deterministic.unwrap_or(false),
        chardevs: vec![("serial0".into(), "vc".into())],
    };
    Ok((machine, vm))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB BIOS that halts at the reset vector.
    pub(crate) fn hlt_bios() -> Vec<u8> {
        let mut b = vec![0xF4; 0x1_0000];
        b[0xFFF0] = 0xF4;
        b
    }

    #[test]
    fn config_parses_and_refuses_unknown_fields() {
        let c = parse_config(r#"{"memory_mib": 64, "boot": "dc", "start_paused": true}"#).unwrap();
        assert_eq!(c.memory_mib, Some(64));
        assert_eq!(c.boot.as_deref(), Some("dc"));
        assert_eq!(c.start_paused, Some(true));
        assert_eq!(parse_config("{}").unwrap(), WebConfig::default());
        let e = parse_config(r#"{"memory": 64}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `memory`"), "{e}");
        assert!(parse_config(r#"{"memory_mib": -1}"#).is_err());
        assert!(parse_config("[1]").is_err());
    }

    #[test]
    fn boot_order_is_checked() {
        for ok in ["c", "cad", "dca", "a"] {
            check_boot_order(ok).unwrap();
        }
        for bad in ["", "x", "cc", "cadd", "n"] {
            assert!(check_boot_order(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn floppy_types() {
        assert_eq!(floppy_type(1_474_560), Some(4));
        assert_eq!(floppy_type(2_949_120), Some(5));
        assert_eq!(floppy_type(737_280), Some(3));
        assert_eq!(floppy_type(1000), None);
    }

    fn err(cfg: &WebConfig, images: Images) -> String {
        match build(cfg, images, 0.0) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_descriptions_are_clear_errors() {
        let with_bios = || Images {
            bios: Some(hlt_bios()),
            ..Images::default()
        };
        let d = WebConfig::default();
        assert!(err(&d, Images::default()).contains("files.bios is required"));
        let big = WebConfig {
            memory_mib: Some(4096),
            ..d.clone()
        };
        assert!(err(&big, with_bios()).contains("memory_mib 4096 is out of range"));
        let zero = WebConfig {
            memory_mib: Some(0),
            ..d.clone()
        };
        assert!(err(&zero, with_bios()).contains("out of range"));
        let boot = WebConfig {
            boot: Some("z".into()),
            ..d.clone()
        };
        assert!(err(&boot, with_bios()).contains("boot order 'z'"));
        let k = Images {
            kernel: Some(vec![0; 8192]),
            ..with_bios()
        };
        assert!(err(&d, k).contains("files.linuxboot is required"));
        let i = Images {
            initrd: Some(vec![0; 10]),
            ..with_bios()
        };
        assert!(err(&d, i).contains("files.kernel is required"));
        let f = Images {
            fda: Some(vec![0; 1000]),
            ..with_bios()
        };
        assert!(err(&d, f).contains("not a floppy format"));
        let h = Images {
            hda: Some(vec![0; 1000]),
            ..with_bios()
        };
        assert!(err(&d, h).contains("512-byte sectors"));
        let c = Images {
            cdrom: Some(vec![0; 1000]),
            ..with_bios()
        };
        assert!(err(&d, c).contains("2048-byte sectors"));
        let bad_bios = Images {
            bios: Some(vec![0; 1000]),
            ..Images::default()
        };
        assert!(err(&d, bad_bios).contains("BIOS image size 1000"));
        let bad_kernel = Images {
            kernel: Some(vec![0; 8192]),
            linuxboot: Some(vec![0; 512]),
            ..with_bios()
        };
        assert!(err(&d, bad_kernel).contains("bzImage"));
    }

    #[test]
    fn drives_are_attached() {
        let cfg = WebConfig {
            memory_mib: Some(16),
            name: Some("t".into()),
            wall_clock_ms: Some(1.7e12),
            ..WebConfig::default()
        };
        let images = Images {
            bios: Some(hlt_bios()),
            hda: Some(vec![0; 1 << 20]),
            cdrom: Some(vec![0; 4 * 2048]),
            fda: Some(vec![0; 1_474_560]),
            ..Images::default()
        };
        let (mut m, vm) = build(&cfg, images, 0.0).unwrap();
        assert_eq!(vm.name.as_deref(), Some("t"));
        assert!(!vm.start_paused && !vm.deterministic);
        let b = m.board_mut();
        assert_eq!(b.drives[0].as_ref().map(BlockDevice::size), Some(1 << 20));
        assert_eq!(b.drives[2].as_ref().map(BlockDevice::read_only), Some(true));
        assert_eq!(
            b.floppies[0].as_ref().map(BlockDevice::size),
            Some(1_474_560)
        );
        assert!(b.drives[1].is_none());
    }

    #[test]
    fn remote_drives_are_attached_and_checked() {
        use crate::remote::RemoteDrives;
        let with = |remote: RemoteDrives| Images {
            bios: Some(hlt_bios()),
            remote,
            ..Images::default()
        };
        let mut r = RemoteDrives::new();
        r.add("hda", "/images/hd.img", 1_048_576.0).unwrap();
        r.add("cdrom", "/images/cd.iso", 8192.0).unwrap();
        r.add("fda", "/images/fd.img", 1_474_560.0).unwrap();
        let cfg = WebConfig {
            memory_mib: Some(16),
            ..WebConfig::default()
        };
        let (mut m, _) = build(&cfg, with(r), 0.0).unwrap();
        let b = m.board_mut();
        let hd = b.drives[0].as_ref().expect("hda");
        assert_eq!((hd.size(), hd.read_only()), (1 << 20, false));
        assert_eq!(hd.file_name(), "/images/hd.img");
        let cd = b.drives[2].as_ref().expect("cdrom");
        assert_eq!((cd.size(), cd.read_only()), (8192, true));
        assert_eq!(
            b.floppies[0].as_ref().map(BlockDevice::size),
            Some(1_474_560)
        );

        let one = |drive: &str, size: f64| {
            let mut r = RemoteDrives::new();
            r.add(drive, "/x", size).unwrap();
            r
        };
        let d = WebConfig::default();
        assert!(err(&d, with(one("cdrom", 1000.0))).contains("2048-byte sectors"));
        assert!(err(&d, with(one("fda", 1000.0))).contains("not a floppy format"));
        let both = Images {
            hda: Some(vec![0; 512]),
            ..with(one("hda", 512.0))
        };
        assert!(err(&d, both).contains("files.hda: given both as bytes and as a URL"));
    }
}
