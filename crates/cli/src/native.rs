//! The native host: builds the machine from the options, serves QMP on sockets and stdio,
//! connects the serial port to stdio or a file, and runs the VM thread.
//!
//! One thread owns the VM. I/O threads (QMP listeners and connections, stdin) talk to it over
//! one channel and never touch the machine; the VM thread never blocks on a socket: it writes
//! replies into per-connection channels that writer threads drain.

use crate::fdpass::ReceivedFd;
use crate::options::{Options, QmpEndpoint, SerialTarget};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use wasm86_block::BlockDevice;
use wasm86_machine::{DirectBoot, Machine, MachineConfig};
use wasm86_vmm::{Host, Step, Vm, VmConfig};

/// Instructions per VM step between checks for I/O.
const STEP_BUDGET: u64 = 2_000_000;

/// A message to the VM thread.
enum Msg {
    /// A QMP client connected: its output goes to the sender.
    Open(u64, Sender<Vec<u8>>, bool),
    /// Bytes from a QMP client, with the descriptors passed along with them (SCM_RIGHTS).
    Data(u64, Vec<u8>, Vec<ReceivedFd>),
    /// The client went away.
    Close(u64),
    /// Bytes typed on stdin for the serial port.
    Serial(Vec<u8>),
}

struct NativeHost;

impl Host for NativeHost {
    fn wall_clock_us(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }

    fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), String> {
        std::fs::write(name, data).map_err(|e| e.to_string())
    }

    fn thread_id(&self) -> i64 {
        std::process::id() as i64
    }

    fn open_block(
        &mut self,
        name: &str,
        read_only: bool,
    ) -> Result<Box<dyn wasm86_block::BlockBackend>, wasm86_block::BlockError> {
        wasm86_block::open_image(name, read_only)
    }
}

/// Where firmware files are looked for: `-L`, then `guest-images/bios` under the current
/// directory, then next to the executable's workspace.
fn firmware_dirs(o: &Options) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = &o.firmware_dir {
        v.push(d.clone());
    }
    v.push(PathBuf::from("guest-images/bios"));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            v.push(root.join("guest-images/bios"));
        }
    }
    v
}

fn find_firmware(o: &Options, name: &str) -> Option<PathBuf> {
    firmware_dirs(o)
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("could not load {what} '{}': {e}", path.display()))
}

fn open_drive(path: &Path, read_only: bool) -> Result<BlockDevice, String> {
    let b = wasm86_block::open_image(path, read_only).map_err(|e| e.to_string())?;
    Ok(BlockDevice::new(b))
}

/// Builds the machine the options describe.
pub fn build_machine(o: &Options) -> Result<Machine, String> {
    let bios_path = match &o.bios {
        Some(p) => p.clone(),
        None => find_firmware(o, "bios.bin").ok_or(
            "could not find bios.bin (give -bios FILE or -L DIR; scripts/build-guests.sh builds it)",
        )?,
    };
    let mut cfg = MachineConfig::new(o.memory_mib as u64 * 1024 * 1024, read(&bios_path, "BIOS")?);
    if let Some(p) = find_firmware(o, "vgabios-stdvga.bin") {
        cfg.vga_bios = Some(read(&p, "VGA BIOS")?);
    }
    if let Some(k) = &o.kernel {
        let rom = find_firmware(o, "linuxboot_dma.bin")
            .ok_or("could not find linuxboot_dma.bin for -kernel (give -L DIR)")?;
        cfg.direct_boot = Some(DirectBoot {
            kernel: read(k, "kernel")?,
            initrd: o.initrd.as_ref().map(|p| read(p, "initrd")).transpose()?,
            cmdline: o.append.clone().unwrap_or_default(),
            option_rom: read(&rom, "option ROM")?,
        });
    }
    if let Some(b) = &o.boot {
        cfg.boot_order = b.order.clone();
        cfg.boot_menu = b.menu;
    } else if o.cdrom.is_some() && o.hda.is_none() {
        cfg.boot_order = "dc".into();
    }
    cfg.rtc_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let hda = o.hda.as_ref().map(|p| open_drive(p, false)).transpose()?;
    let hdb = o.hdb.as_ref().map(|p| open_drive(p, false)).transpose()?;
    let cd = o.cdrom.as_ref().map(|p| open_drive(p, true)).transpose()?;
    let fda = o.fda.as_ref().map(|p| open_drive(p, false)).transpose()?;
    cfg.hd_present = [hda.is_some(), hdb.is_some()];
    if let Some(f) = &fda {
        cfg.floppy0_type = if f.size() > 1_474_560 { 5 } else { 4 };
    }
    let mut m = Machine::new(cfg).map_err(|e| e.to_string())?;
    m.attach_drives(hda, hdb, cd, fda)
        .map_err(|e| e.to_string())?;
    Ok(m)
}

fn spawn_stream<S: Read + Write + Send + 'static>(
    mut stream: S,
    clone: impl FnOnce(&S) -> std::io::Result<S>,
    recv: fn(&mut S, &mut [u8]) -> crate::fdpass::RecvResult,
    id: u64,
    negotiate: bool,
    tx: &Sender<Msg>,
) -> std::thread::JoinHandle<()> {
    let (out_tx, out_rx) = channel::<Vec<u8>>();
    let _ = tx.send(Msg::Open(id, out_tx, negotiate));
    let mut writer = match clone(&stream) {
        Ok(w) => w,
        Err(_) => {
            let _ = tx.send(Msg::Close(id));
            return std::thread::spawn(|| {});
        }
    };
    let w = std::thread::spawn(move || {
        for chunk in out_rx {
            if writer
                .write_all(&chunk)
                .and_then(|_| writer.flush())
                .is_err()
            {
                break;
            }
        }
    });
    let mut buf = [0u8; 8192];
    loop {
        match recv(&mut stream, &mut buf) {
            Ok((0, _)) | Err(_) => break,
            Ok((n, fds)) => {
                if tx.send(Msg::Data(id, buf[..n].to_vec(), fds)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Msg::Close(id));
    w
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Starts a listener thread for a QMP endpoint: one client at a time, as QEMU.
fn listen(ep: &QmpEndpoint, tx: Sender<Msg>) -> Result<(), String> {
    match ep {
        QmpEndpoint::Unix(path) => {
            #[cfg(unix)]
            {
                use std::os::unix::net::UnixListener;
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let l = UnixListener::bind(path)
                    .map_err(|e| format!("-qmp unix:{}: could not listen: {e}", path.display()))?;
                std::thread::spawn(move || {
                    for s in l.incoming().flatten() {
                        let recv = crate::fdpass::recv_unix;
                        let h = spawn_stream(s, |s| s.try_clone(), recv, next_id(), true, &tx);
                        let _ = h.join();
                    }
                });
                Ok(())
            }
            #[cfg(not(unix))]
            {
                Err(format!(
                    "-qmp unix:{}: unix sockets need a unix host",
                    path.display()
                ))
            }
        }
        QmpEndpoint::Tcp(host, port) => {
            let l = std::net::TcpListener::bind((host.as_str(), *port))
                .map_err(|e| format!("-qmp tcp:{host}:{port}: could not listen: {e}"))?;
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    let _ = s.set_nodelay(true);
                    let recv = crate::fdpass::read_plain;
                    let h = spawn_stream(s, |s| s.try_clone(), recv, next_id(), true, &tx);
                    let _ = h.join();
                }
            });
            Ok(())
        }
        QmpEndpoint::Stdio => {
            let id = next_id();
            let (out_tx, out_rx) = channel::<Vec<u8>>();
            let _ = tx.send(Msg::Open(id, out_tx, true));
            std::thread::spawn(move || {
                let mut out = std::io::stdout();
                for chunk in out_rx {
                    if out.write_all(&chunk).and_then(|_| out.flush()).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut stdin = std::io::stdin();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx
                                .send(Msg::Data(id, buf[..n].to_vec(), Vec::new()))
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(Msg::Close(id));
            });
            Ok(())
        }
    }
}

/// Runs the VM until it ends; returns the process exit status.
pub fn run(o: &Options) -> Result<i32, String> {
    let machine = build_machine(o)?;
    let mut chardevs = Vec::new();
    let serial_name = match &o.serial {
        SerialTarget::Stdio => "stdio".to_string(),
        SerialTarget::File(p) => format!("file:{}", p.display()),
        SerialTarget::None => "null".to_string(),
    };
    chardevs.push(("serial0".to_string(), serial_name));
    for (i, q) in o.qmp.iter().enumerate() {
        let f = match q {
            QmpEndpoint::Unix(p) => format!("unix:{},server", p.display()),
            QmpEndpoint::Tcp(h, p) => format!("tcp:{h}:{p},server"),
            QmpEndpoint::Stdio => "stdio".into(),
        };
        chardevs.push((format!("compat_monitor{i}"), f));
    }
    let config = VmConfig {
        name: o.name.clone(),
        uuid: o.uuid.clone(),
        start_paused: o.start_paused,
        no_reboot: o.no_reboot,
        no_shutdown: o.no_shutdown,
        deterministic: o.deterministic,
        chardevs,
    };
    let mut vm = Vm::new(machine, config, Box::new(NativeHost));
    let (tx, rx) = channel::<Msg>();
    for ep in &o.qmp {
        listen(ep, tx.clone())?;
    }
    let serial_out: Option<Box<dyn Write>> = match &o.serial {
        SerialTarget::Stdio => {
            let t = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || t.send(Msg::Serial(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            Some(Box::new(std::io::stdout()))
        }
        SerialTarget::File(p) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("-serial file:{}: {e}", p.display()))?,
        )),
        SerialTarget::None => None,
    };
    let debugcon: Option<Box<dyn Write>> = match &o.debugcon {
        SerialTarget::Stdio => Some(Box::new(std::io::stderr())),
        SerialTarget::File(p) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("-debugcon file:{}: {e}", p.display()))?,
        )),
        SerialTarget::None => None,
    };
    drop(tx);
    vm_loop(&mut vm, rx, serial_out, debugcon)
}

fn vm_loop(
    vm: &mut Vm,
    rx: Receiver<Msg>,
    mut serial: Option<Box<dyn Write>>,
    mut debugcon: Option<Box<dyn Write>>,
) -> Result<i32, String> {
    let mut conns: Vec<(u64, usize, Sender<Vec<u8>>)> = Vec::new();
    let mut serial_pending: Vec<u8> = Vec::new();
    let deterministic = vm.ctx().config.deterministic;
    let start = Instant::now();
    let mut paused_ns: u64 = 0;
    let mut paused_since: Option<Instant> = None;
    let mut wait: Option<Duration> = Some(Duration::ZERO);
    loop {
        // Input: block only when there is nothing to run.
        let first = match wait {
            Some(d) if d.is_zero() => rx.try_recv().ok(),
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => None,
            },
            None => rx.recv().ok(),
        };
        let mut msgs: Vec<Msg> = first.into_iter().collect();
        msgs.extend(rx.try_iter());
        for m in msgs {
            match m {
                Msg::Open(cid, out, negotiate) => {
                    let sid = vm.open_session(negotiate);
                    conns.push((cid, sid, out));
                }
                Msg::Data(cid, bytes, fds) => {
                    if let Some((_, sid, _)) = conns.iter().find(|c| c.0 == cid) {
                        vm.feed_with_fds(*sid, &bytes, crate::fdpass::to_passed(fds));
                    }
                }
                Msg::Close(cid) => {
                    if let Some(i) = conns.iter().position(|c| c.0 == cid) {
                        let (_, sid, _) = conns.remove(i);
                        vm.close_session(sid);
                    }
                }
                Msg::Serial(bytes) => serial_pending.extend_from_slice(&bytes),
            }
        }
        if !serial_pending.is_empty() {
            let n = vm.machine_mut().serial_input(0, &serial_pending);
            serial_pending.drain(..n.min(serial_pending.len()));
        }
        // Realtime: virtual time follows host time, minus the time spent stopped.
        let running = vm.state().is_running();
        match (running, paused_since) {
            (false, None) => paused_since = Some(Instant::now()),
            (true, Some(t)) => {
                paused_ns += t.elapsed().as_nanos() as u64;
                paused_since = None;
            }
            _ => {}
        }
        let host_ns = (start.elapsed().as_nanos() as u64).saturating_sub(paused_ns);
        if running && !deterministic && vm.machine_mut().now() < host_ns {
            vm.machine_mut().skip_to(host_ns);
        }
        let step = vm.step(STEP_BUDGET);
        // Outputs.
        let out = vm.machine_mut().take_serial_output(0);
        if !out.is_empty() {
            if let Some(w) = serial.as_mut() {
                let _ = w.write_all(&out);
                let _ = w.flush();
            }
        }
        let dbg = vm.machine_mut().take_debugcon_output();
        if let (false, Some(w)) = (dbg.is_empty(), debugcon.as_mut()) {
            let _ = w.write_all(&dbg);
            let _ = w.flush();
        }
        for (_, sid, tx) in &conns {
            let text = vm.take_output(*sid);
            if !text.is_empty() {
                let _ = tx.send(text.into_bytes());
            }
        }
        wait = match step {
            Step::Ran => Some(Duration::ZERO),
            Step::Quit => {
                // Replies are flushed above; give writer threads a moment to send them.
                drop(conns);
                std::thread::sleep(Duration::from_millis(50));
                return Ok(vm.exit_status());
            }
            Step::Stopped => {
                if serial_pending.is_empty() {
                    None
                } else {
                    Some(Duration::from_millis(5))
                }
            }
            Step::Idle { until } => match until {
                Some(t) if !deterministic => {
                    let host_ns = (start.elapsed().as_nanos() as u64).saturating_sub(paused_ns);
                    Some(Duration::from_nanos(
                        t.saturating_sub(host_ns).min(50_000_000),
                    ))
                }
                _ => Some(Duration::from_millis(10)),
            },
        };
        if !serial_pending.is_empty() && wait.is_none_or(|d| d > Duration::from_millis(5)) {
            wait = Some(Duration::from_millis(5));
        }
    }
}
