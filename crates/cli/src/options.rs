//! QEMU-style command-line options of `wasm86`.
//!
//! Parsing follows QEMU's conventions: options start with one or two dashes, take their
//! argument as the next word, and an unknown or malformed option is a one-line error.
//! Options that name a subsystem wasm86 does not have yet are refused with "not supported
//! yet" rather than ignored.

use std::path::PathBuf;

/// Where a serial port's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// The process's stdin/stdout.
    Stdio,
    /// Output appended to a file.
    File(PathBuf),
    /// No serial backend (the port exists, its output is dropped).
    None,
}

/// A QMP endpoint given with `-qmp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEndpoint {
    /// `unix:PATH,server,nowait`
    Unix(PathBuf),
    /// `tcp:HOST:PORT,server,nowait`
    Tcp(String, u16),
    /// `stdio`
    Stdio,
}

/// Boot device order for SeaBIOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOrder {
    /// Drive letters in order: `a` floppy, `c` disk, `d` CD-ROM.
    pub order: String,
    /// Whether the boot menu is enabled (`menu=on`).
    pub menu: bool,
}

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Direct-boot kernel.
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for the direct-boot kernel.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub append: Option<String>,
    /// First IDE disk (`ide0-hd0`).
    pub hda: Option<PathBuf>,
    /// Second IDE disk (`ide0-hd1`).
    pub hdb: Option<PathBuf>,
    /// CD-ROM image (`ide1-cd0`).
    pub cdrom: Option<PathBuf>,
    /// Floppy image (`floppy0`).
    pub fda: Option<PathBuf>,
    /// Boot order.
    pub boot: Option<BootOrder>,
    /// BIOS image (default: bios.bin in the firmware directory).
    pub bios: Option<PathBuf>,
    /// Firmware directory (`-L`), searched for bios.bin, vgabios-stdvga.bin and option ROMs.
    pub firmware_dir: Option<PathBuf>,
    /// Serial port 0 backend.
    pub serial: SerialTarget,
    /// Debug console (port 0x402) backend.
    pub debugcon: SerialTarget,
    /// QMP endpoints.
    pub qmp: Vec<QmpEndpoint>,
    /// Start paused (`-S`).
    pub start_paused: bool,
    /// VM name.
    pub name: Option<String>,
    /// VM UUID.
    pub uuid: Option<String>,
    /// Exit instead of rebooting.
    pub no_reboot: bool,
    /// Stop instead of exiting on guest shutdown.
    pub no_shutdown: bool,
    /// Incoming migration URI.
    pub incoming: Option<String>,
    /// Deterministic clock (fixed instruction rate, HLT skips time): `-clock deterministic`.
    pub deterministic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory_mib: 128,
            kernel: None,
            initrd: None,
            append: None,
            hda: None,
            hdb: None,
            cdrom: None,
            fda: None,
            boot: None,
            bios: None,
            firmware_dir: None,
            serial: SerialTarget::Stdio,
            debugcon: SerialTarget::None,
            qmp: Vec::new(),
            start_paused: false,
            name: None,
            uuid: None,
            no_reboot: false,
            no_shutdown: false,
            incoming: None,
            deterministic: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a VM.
    Run(Box<Options>),
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// A command-line error: printed as `wasm86: <message>`, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Unknown option.
    #[error("{0}: invalid option")]
    Invalid(String),
    /// Option without its argument.
    #[error("{0}: requires an argument")]
    MissingArgument(String),
    /// Malformed argument.
    #[error("{0}: {1}")]
    BadArgument(String, String),
    /// Option for a subsystem not built yet.
    #[error("{0}: not supported yet ({1})")]
    NotSupported(String, String),
    /// A bare word where an option was expected (QEMU would take it as -hda; we ask).
    #[error("{0}: unexpected argument (use -hda FILE for a disk image)")]
    Stray(String),
}

/// The `--help` text.
pub const HELP: &str = "\
usage: wasm86 [options]

wasm86 is an x86 PC emulator (i440FX + PIIX3, SeaBIOS) controlled through QMP.

Machine:
  -m SIZE                 guest RAM in MiB (suffixes M, G accepted; default 128)
  -bios FILE              system BIOS image (default: bios.bin from the firmware dir)
  -L DIR                  firmware directory (default: guest-images/bios)
  -name NAME              VM name (query-name)
  -uuid UUID              VM UUID (query-uuid)
  -S                      start paused (run state prelaunch; continue with QMP 'cont')
  -no-reboot              exit instead of rebooting
  -no-shutdown            stop the VM instead of exiting when the guest powers off
  -clock deterministic|realtime
                          virtual clock mode (default realtime; deterministic runs at a
                          fixed instruction rate and gives identical runs)
Boot:
  -kernel FILE            Linux bzImage for direct boot
  -initrd FILE            initial ramdisk for -kernel
  -append CMDLINE         kernel command line for -kernel
  -boot [order=]DRIVES[,menu=on|off]
                          boot order: a floppy, c disk, d CD-ROM (default: cad)
Drives:
  -hda FILE, -hdb FILE    IDE disks (ide0-hd0, ide0-hd1)
  -cdrom FILE             CD-ROM image (ide1-cd0)
  -fda FILE               floppy image (floppy0)
Host interfaces:
  -serial stdio|file:PATH|none
                          serial port 0 backend (default stdio)
  -debugcon stdio|file:PATH|none
                          debug console port 0x402 (SeaBIOS's log; default none)
  -qmp unix:PATH,server,nowait | tcp:HOST:PORT,server,nowait | stdio
                          a QMP endpoint (repeatable)
  -display none           no display window (the only display wasm86 has natively)
  -nographic              same as -display none
  -incoming URI           wait for an incoming migration
  -device DRIVER[,...]    add a device
  -h, --help              this help
  -version, --version     print the version
";

fn parse_size_mib(opt: &str, v: &str) -> Result<u32, OptionError> {
    let bad = || OptionError::BadArgument(opt.into(), format!("invalid RAM size '{v}'"));
    let (num, mult) = match v.as_bytes().last() {
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1u64),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 1024),
        _ => (v, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mib = n.checked_mul(mult).ok_or_else(bad)?;
    if !(1..=3584).contains(&mib) {
        return Err(OptionError::BadArgument(
            opt.into(),
            format!("RAM size {mib} MiB is out of range (1 to 3584)"),
        ));
    }
    Ok(mib as u32)
}

fn parse_qmp(opt: &str, v: &str) -> Result<QmpEndpoint, OptionError> {
    if v == "stdio" {
        return Ok(QmpEndpoint::Stdio);
    }
    let mut parts = v.split(',');
    let addr = parts.next().unwrap_or_default();
    let mut server = false;
    for p in parts {
        match p {
            "server" | "server=on" => server = true,
            "nowait" | "wait=off" => {}
            "wait" | "wait=on" => {
                return Err(OptionError::NotSupported(
                    opt.into(),
                    "waiting for a QMP client before starting; use nowait".into(),
                ))
            }
            other => {
                return Err(OptionError::BadArgument(
                    opt.into(),
                    format!("unknown flag '{other}'"),
                ))
            }
        }
    }
    let endpoint = if let Some(path) = addr.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(OptionError::BadArgument(
                opt.into(),
                "empty unix socket path".into(),
            ));
        }
        QmpEndpoint::Unix(PathBuf::from(path))
    } else if let Some(hp) = addr.strip_prefix("tcp:") {
        let (host, port) = hp.rsplit_once(':').ok_or_else(|| {
            OptionError::BadArgument(opt.into(), format!("'{hp}' is not HOST:PORT"))
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| OptionError::BadArgument(opt.into(), format!("bad port '{port}'")))?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        QmpEndpoint::Tcp(host.to_string(), port)
    } else {
        return Err(OptionError::BadArgument(
            opt.into(),
            format!(
                "'{v}': expected unix:PATH,server,nowait, tcp:HOST:PORT,server,nowait or stdio"
            ),
        ));
    };
    if !server {
        return Err(OptionError::NotSupported(
            opt.into(),
            "client-mode QMP sockets; add ,server,nowait".into(),
        ));
    }
    Ok(endpoint)
}

fn parse_boot(opt: &str, v: &str) -> Result<BootOrder, OptionError> {
    let mut b = BootOrder {
        order: String::new(),
        menu: false,
    };
    for part in v.split(',') {
        let (k, val) = part.split_once('=').unwrap_or(("order", part));
        match k {
            "order" | "once" => {
                if val.is_empty() || !val.chars().all(|c| matches!(c, 'a' | 'c' | 'd')) {
                    return Err(OptionError::BadArgument(
                        opt.into(),
                        format!("invalid boot order '{val}' (drives a, c, d)"),
                    ));
                }
                b.order = val.to_string();
            }
            "menu" => {
                b.menu = match val {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(OptionError::BadArgument(
                            opt.into(),
                            format!("menu={val}: expected on or off"),
                        ))
                    }
                }
            }
            _ => {
                return Err(OptionError::BadArgument(
                    opt.into(),
                    format!("unknown key '{k}'"),
                ))
            }
        }
    }
    if b.order.is_empty() {
        b.order = "cad".into();
    }
    Ok(b)
}

fn parse_uuid(opt: &str, v: &str) -> Result<String, OptionError> {
    let ok = v.len() == 36
        && v.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if ok {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(OptionError::BadArgument(
            opt.into(),
            format!("invalid UUID '{v}'"),
        ))
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, OptionError> {
    let mut o = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') || arg == "-" {
            return Err(OptionError::Stray(arg));
        }
        let name = arg.trim_start_matches('-');
        let opt = format!("-{name}");
        let mut value = || {
            it.next()
                .ok_or_else(|| OptionError::MissingArgument(opt.clone()))
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            "m" => o.memory_mib = parse_size_mib(&opt, &value()?)?,
            "kernel" => o.kernel = Some(value()?.into()),
            "initrd" => o.initrd = Some(value()?.into()),
            "append" => o.append = Some(value()?),
            "hda" => o.hda = Some(value()?.into()),
            "hdb" => o.hdb = Some(value()?.into()),
            "cdrom" => o.cdrom = Some(value()?.into()),
            "fda" => o.fda = Some(value()?.into()),
            "boot" => o.boot = Some(parse_boot(&opt, &value()?)?),
            "bios" => o.bios = Some(value()?.into()),
            "L" => o.firmware_dir = Some(value()?.into()),
            "serial" | "debugcon" => {
                let v = value()?;
                let target = match v.as_str() {
                    "stdio" => SerialTarget::Stdio,
                    "none" | "null" => SerialTarget::None,
                    _ => match v.strip_prefix("file:") {
                        Some(p) if !p.is_empty() => SerialTarget::File(p.into()),
                        _ => {
                            return Err(OptionError::BadArgument(
                                opt,
                                format!("'{v}': expected stdio, file:PATH or none"),
                            ))
                        }
                    },
                };
                if name == "serial" {
                    o.serial = target;
                } else {
                    o.debugcon = target;
                }
            }
            "qmp" => o.qmp.push(parse_qmp(&opt, &value()?)?),
            "S" => o.start_paused = true,
            "name" => {
                let v = value()?;
                // QEMU accepts "name,process=..."; the name is the part before the comma.
                o.name = Some(v.split(',').next().unwrap_or_default().to_string());
            }
            "uuid" => o.uuid = Some(parse_uuid(&opt, &value()?)?),
            "display" => {
                let v = value()?;
                if v != "none" {
                    return Err(OptionError::NotSupported(
                        opt,
                        format!("display '{v}'; natively only 'none' (use the browser page)"),
                    ));
                }
            }
            "nographic" => {}
            "no-reboot" => o.no_reboot = true,
            "no-shutdown" => o.no_shutdown = true,
            "clock" => {
                let v = value()?;
                o.deterministic = match v.as_str() {
                    "deterministic" => true,
                    "realtime" => false,
                    _ => {
                        return Err(OptionError::BadArgument(
                            opt,
                            format!("'{v}': expected deterministic or realtime"),
                        ))
                    }
                }
            }
            "incoming" => {
                let v = value()?;
                return Err(OptionError::NotSupported(
                    opt,
                    format!("incoming migration ({v})"),
                ));
            }
            "device" => {
                let v = value()?;
                let driver = v.split(',').next().unwrap_or_default().to_string();
                return Err(OptionError::NotSupported(opt, format!("device '{driver}'")));
            }
            "smp" | "net" | "netdev" | "vnc" | "spice" | "enable-kvm" | "usb" | "soundhw"
            | "drive" | "monitor" | "chardev" | "loadvm" | "snapshot" => {
                return Err(OptionError::NotSupported(opt, "this subsystem".into()))
            }
            _ => return Err(OptionError::Invalid(opt)),
        }
    }
    if o.initrd.is_some() && o.kernel.is_none() {
        return Err(OptionError::BadArgument(
            "-initrd".into(),
            "needs -kernel".into(),
        ));
    }
    if o.append.is_some() && o.kernel.is_none() {
        return Err(OptionError::BadArgument(
            "-append".into(),
            "needs -kernel".into(),
        ));
    }
    let stdio_users = o.qmp.iter().filter(|q| **q == QmpEndpoint::Stdio).count()
        + usize::from(o.serial == SerialTarget::Stdio && o.qmp.contains(&QmpEndpoint::Stdio));
    if stdio_users > 1 {
        return Err(OptionError::BadArgument(
            "-qmp".into(),
            "stdio is used twice (add -serial none or -serial file:PATH)".into(),
        ));
    }
    Ok(Command::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, OptionError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> Options {
        match p(args).unwrap() {
            Command::Run(o) => *o,
            c => panic!("expected run, got {c:?}"),
        }
    }

    #[test]
    fn full_command_line() {
        let o = run(&[
            "-m",
            "256",
            "-kernel",
            "bz",
            "-initrd",
            "rd",
            "-append",
            "console=ttyS0",
            "-serial",
            "file:/tmp/s",
            "-qmp",
            "unix:/tmp/q,server,nowait",
            "-qmp",
            "tcp:127.0.0.1:4444,server,nowait",
            "-S",
            "-name",
            "vm1,process=x",
            "-uuid",
            "12345678-1234-1234-1234-1234567890AB",
            "-display",
            "none",
            "-no-reboot",
            "-no-shutdown",
            "-boot",
            "order=d,menu=on",
            "--cdrom",
            "x.iso",
        ]);
        assert_eq!(o.memory_mib, 256);
        assert_eq!(o.kernel, Some("bz".into()));
        assert_eq!(o.serial, SerialTarget::File("/tmp/s".into()));
        assert_eq!(
            o.qmp,
            vec![
                QmpEndpoint::Unix("/tmp/q".into()),
                QmpEndpoint::Tcp("127.0.0.1".into(), 4444)
            ]
        );
        assert!(o.start_paused && o.no_reboot && o.no_shutdown);
        assert_eq!(o.name.as_deref(), Some("vm1"));
        assert_eq!(
            o.uuid.as_deref(),
            Some("12345678-1234-1234-1234-1234567890ab")
        );
        assert_eq!(
            o.boot,
            Some(BootOrder {
                order: "d".into(),
                menu: true
            })
        );
        assert_eq!(o.cdrom, Some("x.iso".into()));
    }

    #[test]
    fn sizes() {
        assert_eq!(run(&["-m", "1G"]).memory_mib, 1024);
        assert_eq!(run(&["-m", "64M"]).memory_mib, 64);
        assert!(matches!(p(&["-m", "0"]), Err(OptionError::BadArgument(..))));
        assert!(matches!(
            p(&["-m", "lots"]),
            Err(OptionError::BadArgument(..))
        ));
        assert!(p(&["-m", "99999999999999999999G"]).is_err());
    }

    #[test]
    fn errors_are_one_line() {
        let cases: &[&[&str]] = &[
            &["-frobnicate"],
            &["-m"],
            &["-serial", "tcp:1"],
            &["-qmp", "unix:/x"],
            &["-qmp", "tcp:nohostport,server"],
            &["-device", "e1000,netdev=n"],
            &["-incoming", "tcp:0:4444"],
            &["-display", "gtk"],
            &["-uuid", "nope"],
            &["-initrd", "x"],
            &["disk.img"],
            &["-boot", "z"],
        ];
        for c in cases {
            let e = p(c).expect_err("must fail").to_string();
            assert!(!e.contains('\n') && !e.is_empty(), "{c:?}: {e}");
        }
        assert_eq!(
            p(&["-frobnicate"]).unwrap_err().to_string(),
            "-frobnicate: invalid option"
        );
        assert_eq!(
            p(&["-m"]).unwrap_err().to_string(),
            "-m: requires an argument"
        );
        assert!(p(&["-device", "e1000"])
            .unwrap_err()
            .to_string()
            .contains("not supported yet"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
        assert_eq!(p(&["-version"]).unwrap(), Command::Version);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
    }

    #[test]
    fn qmp_stdio_conflicts_with_serial_stdio() {
        assert!(p(&["-qmp", "stdio"]).is_err());
        assert_eq!(
            run(&["-serial", "none", "-qmp", "stdio"]).qmp,
            vec![QmpEndpoint::Stdio]
        );
    }
}
