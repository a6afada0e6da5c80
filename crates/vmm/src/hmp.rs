//! The human monitor's commands (behind QMP `human-monitor-command`), in QEMU's text layout.

use crate::runstate::RunState;
use crate::Ctx;
use wasm86_qmp::event::Event;
use wasm86_qmp::hmp::{memory_dump, HmpArgs, HmpContext, HmpHandler, HmpState, HmpTable};

impl HmpContext for Ctx {
    fn hmp_state(&mut self) -> &mut HmpState {
        &mut self.hmp_state
    }

    fn register(&mut self, name: &str) -> Option<u64> {
        let c = self.machine.cpus().get(self.current_cpu)?;
        crate::regs::register_value(&c.registers(), name)
    }

    fn select_cpu(&mut self, index: i64) -> bool {
        match usize::try_from(index) {
            Ok(i) if i < self.machine.cpus().len() => {
                self.current_cpu = i;
                true
            }
            _ => false,
        }
    }
}

/// Builds the HMP table.
pub fn table() -> HmpTable<Ctx> {
    let mut t = HmpTable::new();
    let commands: &[(&str, &str, &str, &str, HmpHandler<Ctx>)] = &[
        ("stop|s", "", "", "stop emulation", stop),
        ("cont|c", "", "", "resume emulation", cont),
        ("system_reset", "", "", "reset the system", system_reset),
        ("quit|q", "", "", "quit the emulator", quit),
        ("cpu", "index:i", "index", "set the default CPU", cpu),
        (
            "x",
            "fmt:/,addr:l",
            "/fmt addr",
            "virtual memory dump starting at 'addr'",
            x,
        ),
        (
            "xp",
            "fmt:/,addr:l",
            "/fmt addr",
            "physical memory dump starting at 'addr'",
            xp,
        ),
        (
            "sendkey",
            "keys:s,hold-time:i?",
            "keys [hold_ms]",
            "send keys to the VM (e.g. 'sendkey ctrl-alt-f1', default hold time=100 ms)",
            sendkey,
        ),
        (
            "screendump",
            "filename:F",
            "filename",
            "save screen into PPM image 'filename'",
            screendump,
        ),
        ("nmi", "", "", "inject an NMI on all guest's CPUs", nmi),
    ];
    for (name, args, params, help, h) in commands {
        if let Err(e) = t.register(name, args, params, help, *h) {
            debug_assert!(false, "bad HMP entry {name}: {e}");
        }
    }
    let info: &[(&str, &str, HmpHandler<Ctx>)] = &[
        ("version", "show the version of QEMU", info_version),
        (
            "status",
            "show the current VM status (running|paused)",
            info_status,
        ),
        ("name", "show the current VM name", info_name),
        ("uuid", "show the current VM UUID", info_uuid),
        ("kvm", "show KVM information", info_kvm),
        ("cpus", "show infos for each CPU", info_cpus),
        ("registers", "show the cpu registers", info_registers),
        ("pci", "show PCI info", info_pci),
        ("chardev", "show the character devices", info_chardev),
        (
            "mice",
            "show which guest mouse is receiving events",
            info_mice,
        ),
        ("network", "show the network state", info_network),
        ("block", "show the block devices", info_block),
        (
            "blockstats",
            "show block device statistics",
            info_blockstats,
        ),
        (
            "screen",
            "show the text on the VGA screen in text modes (wasm86)",
            info_screen,
        ),
        (
            "icount",
            "show guest instructions retired and virtual time (wasm86)",
            info_icount,
        ),
    ];
    for (name, help, h) in info {
        if let Err(e) = t.register_info(name, "", "", help, *h) {
            debug_assert!(false, "bad HMP info entry {name}: {e}");
        }
    }
    t
}

fn stop(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let ev = crate::registry::do_stop(ctx);
    ctx.pending_events.extend(ev);
    Ok(String::new())
}

fn cont(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let ev = crate::registry::do_cont(ctx).map_err(|e| e.desc().to_string())?;
    ctx.pending_events.extend(ev);
    Ok(String::new())
}

fn system_reset(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let ev = crate::registry::do_reset(ctx);
    ctx.pending_events.push(ev);
    Ok(String::new())
}

fn quit(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    ctx.quit = true;
    ctx.pending_events.push(Event::new("SHUTDOWN"));
    Ok(String::new())
}

fn cpu(ctx: &mut Ctx, a: HmpArgs) -> Result<String, String> {
    let i = a.int("index").unwrap_or(-1);
    if ctx.select_cpu(i) {
        Ok(String::new())
    } else {
        Err("invalid CPU index".into())
    }
}

fn x(ctx: &mut Ctx, a: HmpArgs) -> Result<String, String> {
    let f = a.format().ok_or("missing format")?;
    let addr = a.int("addr").unwrap_or(0) as u64;
    let cpu = ctx.current_cpu;
    let ctx_ref: &Ctx = ctx;
    let mut read = |addr: u64, buf: &mut [u8]| -> bool {
        match crate::registry::read_virtual(ctx_ref, cpu, addr as u32, buf.len()) {
            Some(d) => {
                buf.copy_from_slice(&d);
                true
            }
            None => false,
        }
    };
    Ok(memory_dump(f, addr & 0xFFFF_FFFF, false, &mut read))
}

fn xp(ctx: &mut Ctx, a: HmpArgs) -> Result<String, String> {
    let f = a.format().ok_or("missing format")?;
    let addr = a.int("addr").unwrap_or(0) as u64;
    let mem = &ctx.machine.board().mem;
    let mut read = |addr: u64, buf: &mut [u8]| -> bool {
        if addr > u32::MAX as u64 {
            buf.fill(0xFF);
        } else {
            mem.read_phys(addr as u32, buf);
        }
        true
    };
    Ok(memory_dump(f, addr, true, &mut read))
}

fn sendkey(ctx: &mut Ctx, a: HmpArgs) -> Result<String, String> {
    let keys = a.str("keys").unwrap_or_default();
    let codes = crate::keys::parse_combo(keys)?;
    let mut bytes = Vec::new();
    for c in &codes {
        crate::keys::push_set1(&mut bytes, *c, true);
    }
    for c in codes.iter().rev() {
        crate::keys::push_set1(&mut bytes, *c, false);
    }
    ctx.machine.key_event(&bytes);
    Ok(String::new())
}

fn screendump(ctx: &mut Ctx, a: HmpArgs) -> Result<String, String> {
    let name = a.str("filename").unwrap_or_default().to_string();
    let now = ctx.machine.now();
    let ppm = ctx.machine.board_mut().vga.screendump_ppm(now);
    ctx.host
        .write_file(&name, &ppm)
        .map_err(|_| format!("Could not open '{name}'"))?;
    Ok(String::new())
}

fn nmi(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    ctx.machine.inject_nmi();
    Ok(String::new())
}

fn info_version(_: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(format!("1.1.0 ({})\n", crate::package()))
}

fn info_status(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let s = ctx.state;
    let mut out = format!(
        "VM status: {}",
        if s.is_running() { "running" } else { "paused" }
    );
    if !s.is_running() && s != RunState::Paused {
        out.push_str(&format!(" ({})", s.as_str()));
    }
    out.push('\n');
    Ok(out)
}

fn info_name(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(ctx
        .config
        .name
        .as_ref()
        .map(|n| format!("{n}\n"))
        .unwrap_or_default())
}

fn info_uuid(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let u = ctx
        .config
        .uuid
        .clone()
        .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
    Ok(format!("{u}\n"))
}

fn info_kvm(_: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok("kvm support: not compiled\n".into())
}

fn info_cpus(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let tid = ctx.host.thread_id();
    let mut out = String::new();
    for c in ctx.machine.query_cpus() {
        out.push_str(&format!(
            "{} CPU #{}: pc=0x{:016x}{} thread_id={}\n",
            if c.index == ctx.current_cpu { '*' } else { ' ' },
            c.index,
            c.pc,
            if c.halted { " (halted)" } else { "" },
            tid
        ));
    }
    Ok(out)
}

fn info_registers(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let c = ctx.machine.cpus().get(ctx.current_cpu).ok_or("no CPU")?;
    let a20 = ctx.machine.board().mem.a20();
    Ok(crate::regs::format_registers(
        &c.registers(),
        a20,
        c.is_halted(),
    ))
}

fn info_pci(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(crate::regs::format_pci(&ctx.machine.board().pci.query()))
}

fn info_chardev(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(ctx
        .config
        .chardevs
        .iter()
        .map(|(l, f)| format!("{l}: filename={f}\n"))
        .collect())
}

fn info_mice(_: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok("* Mouse #0: QEMU PS/2 Mouse\n".into())
}

fn info_screen(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    match ctx.machine.board().vga.text_lines() {
        Some(lines) => Ok(lines.iter().map(|l| format!("{l}\n")).collect()),
        None => Err("the screen is in a graphics mode".into()),
    }
}

fn info_icount(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(format!(
        "icount {} vtime_ns {}\n",
        ctx.machine.icount(),
        ctx.machine.now()
    ))
}

fn info_network(_: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    Ok(String::new())
}

fn info_block(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let v = crate::block::block_info(ctx);
    let mut out = String::new();
    for d in v.as_array().into_iter().flatten() {
        let b = |k: &str| d[k].as_bool().unwrap_or(false) as u8;
        out.push_str(&format!(
            "{}: removable={}",
            d["device"].as_str().unwrap_or(""),
            b("removable")
        ));
        if d["removable"] == true {
            out.push_str(&format!(
                " locked={} tray-open={}",
                b("locked"),
                b("tray-open")
            ));
        }
        if let Some(s) = d["io-status"].as_str() {
            out.push_str(&format!(" io-status={s}"));
        }
        match d.get("inserted") {
            Some(i) => {
                out.push_str(&format!(
                    " file={} ro={} drv={} encrypted={}",
                    i["file"].as_str().unwrap_or(""),
                    i["ro"].as_bool().unwrap_or(false) as u8,
                    i["drv"].as_str().unwrap_or(""),
                    i["encrypted"].as_bool().unwrap_or(false) as u8
                ));
                let lim: Vec<u64> = ["bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"]
                    .iter()
                    .map(|k| i[*k].as_u64().unwrap_or(0))
                    .collect();
                if lim.iter().any(|&x| x != 0) {
                    out.push_str(&format!(
                        " bps={} bps_rd={} bps_wr={} iops={} iops_rd={} iops_wr={}",
                        lim[0], lim[1], lim[2], lim[3], lim[4], lim[5]
                    ));
                }
            }
            None => out.push_str(" [not inserted]"),
        }
        out.push('\n');
    }
    Ok(out)
}

fn info_blockstats(ctx: &mut Ctx, _: HmpArgs) -> Result<String, String> {
    let v = crate::block::blockstats(ctx);
    let mut out = String::new();
    for d in v.as_array().into_iter().flatten() {
        let s = &d["stats"];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{}: rd_bytes={} wr_bytes={} rd_operations={} wr_operations={} flush_operations={} wr_total_time_ns={} rd_total_time_ns={} flush_total_time_ns={}\n",
            d["device"].as_str().unwrap_or(""),
            n("rd_bytes"), n("wr_bytes"), n("rd_operations"), n("wr_operations"),
            n("flush_operations"), n("wr_total_time_ns"), n("rd_total_time_ns"),
            n("flush_total_time_ns")
        ));
    }
    Ok(out)
}
