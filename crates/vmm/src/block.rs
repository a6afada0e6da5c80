//! The block commands of QMP: `query-block`, `query-blockstats`, `eject`, `change`,
//! `block_set_io_throttle`, `block_resize`, `block_passwd`, and the `DEVICE_TRAY_MOVED`
//! events, over the `pc` machine's drives (QEMU's names: `ide0-hd0`, `ide0-hd1`, `ide1-cd0`,
//! `floppy0`, `sd0`).

use crate::Ctx;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use wasm86_block::{BlockDevice, BlockStats, ThrottleError, ThrottleLimits};
use wasm86_devices::ide::{DriveKind, EjectError};
use wasm86_qmp::error::QmpError;
use wasm86_qmp::event::Event;
use wasm86_qmp::table::{Args, Reply};

/// Where a named drive lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// IDE drive number (channel * 2 + unit).
    Ide(usize),
    /// Floppy drive number.
    Floppy(usize),
    /// The SD card drive QEMU's `pc` creates without a controller.
    Sd,
}

/// Per-VM block settings that outlive a medium (throttle limits by device name).
#[derive(Debug, Default)]
pub struct BlockSettings {
    /// `block_set_io_throttle` limits, applied to every medium inserted later too.
    pub limits: HashMap<String, ThrottleLimits>,
}

const IDE_NAMES: [&str; 4] = ["ide0-hd0", "ide0-hd1", "ide1-cd0", "ide1-hd1"];

/// QEMU's name of an IDE drive.
pub fn ide_name(drive: usize) -> &'static str {
    IDE_NAMES.get(drive).copied().unwrap_or("ide?")
}

/// The drives `query-block` lists, in QEMU's order.
pub fn drives(ctx: &Ctx) -> Vec<(&'static str, Slot)> {
    let ide = &ctx.machine.board().ide;
    let mut v = Vec::new();
    for (i, name) in IDE_NAMES.iter().enumerate() {
        if ide.drive_kind(i) != DriveKind::None {
            v.push((*name, Slot::Ide(i)));
        }
    }
    v.push(("floppy0", Slot::Floppy(0)));
    v.push(("sd0", Slot::Sd));
    v
}

fn find(ctx: &Ctx, device: &str) -> Result<Slot, QmpError> {
    drives(ctx)
        .into_iter()
        .find(|(n, _)| *n == device)
        .map(|(_, s)| s)
        .ok_or_else(|| QmpError::device_not_found(device))
}

fn backend(ctx: &Ctx, slot: Slot) -> Option<&BlockDevice> {
    let b = ctx.machine.board();
    match slot {
        Slot::Ide(i) => b.drives.get(i)?.as_ref(),
        Slot::Floppy(i) => b.floppies.get(i)?.as_ref(),
        Slot::Sd => None,
    }
}

fn backend_mut(ctx: &mut Ctx, slot: Slot) -> Option<&mut Option<BlockDevice>> {
    let b = ctx.machine.board_mut();
    match slot {
        Slot::Ide(i) => b.drives.get_mut(i),
        Slot::Floppy(i) => b.floppies.get_mut(i),
        Slot::Sd => None,
    }
}

fn removable(ctx: &Ctx, slot: Slot) -> bool {
    match slot {
        Slot::Ide(i) => ctx.machine.board().ide.drive_kind(i) == DriveKind::Cdrom,
        Slot::Floppy(_) | Slot::Sd => true,
    }
}

fn locked(ctx: &Ctx, slot: Slot) -> bool {
    match slot {
        Slot::Ide(i) => ctx.machine.board().ide.locked(i),
        _ => false,
    }
}

fn tray_open(ctx: &Ctx, slot: Slot) -> bool {
    match slot {
        Slot::Ide(i) => ctx.machine.board().ide.tray_open(i),
        _ => false,
    }
}

fn stats_json(s: &BlockStats) -> Value {
    json!({
        "rd_bytes": s.rd_bytes,
        "wr_bytes": s.wr_bytes,
        "rd_operations": s.rd_operations,
        "wr_operations": s.wr_operations,
        "flush_operations": s.flush_operations,
        "wr_total_time_ns": s.wr_total_time_ns,
        "rd_total_time_ns": s.rd_total_time_ns,
        "flush_total_time_ns": s.flush_total_time_ns,
        "wr_highest_offset": s.wr_highest_offset,
    })
}

/// `query-block`.
pub fn query_block(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(block_info(ctx)))
}

/// The `query-block` list.
pub fn block_info(ctx: &Ctx) -> Value {
    let mut list = Vec::new();
    for (name, slot) in drives(ctx) {
        let mut o = Map::new();
        if matches!(slot, Slot::Ide(_)) {
            o.insert("io-status".into(), json!("ok"));
        }
        o.insert("device".into(), json!(name));
        o.insert("locked".into(), json!(locked(ctx, slot)));
        let rem = removable(ctx, slot);
        o.insert("removable".into(), json!(rem));
        if rem {
            o.insert("tray-open".into(), json!(tray_open(ctx, slot)));
        }
        if let Some(dev) = backend(ctx, slot) {
            let l = dev.limits();
            o.insert(
                "inserted".into(),
                json!({
                    "ro": dev.read_only(),
                    "drv": dev.format_name(),
                    "encrypted": dev.encrypted(),
                    "file": dev.file_name(),
                    "bps": l.bps, "bps_rd": l.bps_rd, "bps_wr": l.bps_wr,
                    "iops": l.iops, "iops_rd": l.iops_rd, "iops_wr": l.iops_wr,
                }),
            );
        }
        o.insert("type".into(), json!("unknown"));
        list.push(Value::Object(o));
    }
    Value::Array(list)
}

/// `query-blockstats`.
pub fn query_blockstats(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(blockstats(ctx)))
}

/// The `query-blockstats` list.
pub fn blockstats(ctx: &Ctx) -> Value {
    let mut list = Vec::new();
    for (name, slot) in drives(ctx) {
        let mut o = Map::new();
        o.insert("device".into(), json!(name));
        match backend(ctx, slot) {
            Some(dev) => {
                o.insert("stats".into(), stats_json(&dev.stats()));
                if let Some(p) = dev.parent_stats() {
                    o.insert("parent".into(), json!({ "stats": stats_json(&p) }));
                }
            }
            None => {
                o.insert("stats".into(), stats_json(&BlockStats::default()));
            }
        }
        list.push(Value::Object(o));
    }
    Value::Array(list)
}

fn tray_event(device: &str, open: bool) -> Event {
    Event::with_data(
        "DEVICE_TRAY_MOVED",
        json!({ "device": device, "tray-open": open }),
    )
}

/// Ejects the medium of `slot`; returns the events to send before the reply.
fn eject_slot(ctx: &mut Ctx, name: &str, slot: Slot, force: bool) -> Result<Vec<Event>, QmpError> {
    if !removable(ctx, slot) {
        return Err(QmpError::device_not_removable(name));
    }
    let mut events = Vec::new();
    match slot {
        Slot::Ide(i) => {
            let ide = &mut ctx.machine.board_mut().ide;
            match ide.eject(i, force) {
                Ok(()) => {}
                Err(EjectError::Locked) => return Err(QmpError::device_locked(name)),
                Err(EjectError::NotRemovable) => return Err(QmpError::device_not_removable(name)),
            }
            for t in ide.take_tray_events() {
                events.push(tray_event(ide_name(t.drive), t.open));
            }
            ctx.machine.board_mut().drives[i] = None;
        }
        Slot::Floppy(i) => {
            let b = ctx.machine.board_mut();
            if b.floppies[i].take().is_some() {
                let _ = b.fdc.eject(i);
            }
        }
        Slot::Sd => {}
    }
    Ok(events)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct EjectArgs {
    device: String,
    force: Option<bool>,
}

/// `eject`.
pub fn eject(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: EjectArgs = args.parse()?;
    let slot = find(ctx, &a.device)?;
    let events = eject_slot(ctx, &a.device, slot, a.force.unwrap_or(false))?;
    let mut r = Reply::empty();
    for e in events {
        r = r.event_before(e);
    }
    Ok(r)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ChangeArgs {
    device: String,
    target: String,
    arg: Option<String>,
}

/// `change DEVICE TARGET [FORMAT]` for a removable medium (`vnc` has no server here).
pub fn change(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: ChangeArgs = args.parse()?;
    if a.device == "vnc" {
        return Err(QmpError::device_not_found("vnc"));
    }
    let slot = find(ctx, &a.device)?;
    if let Some(fmt) = &a.arg {
        if fmt != "raw" && fmt != "qcow2" {
            return Err(QmpError::invalid_block_format(fmt));
        }
    }
    let read_only =
        matches!(slot, Slot::Ide(i) if ctx.machine.board().ide.drive_kind(i) == DriveKind::Cdrom);
    let mut events = eject_slot(ctx, &a.device, slot, false)?;
    let backend = ctx
        .host
        .open_block(&a.target, read_only)
        .map_err(|_| QmpError::open_file_failed(&a.target))?;
    let mut dev = BlockDevice::new(backend);
    if let Some(l) = ctx.block.limits.get(&a.device) {
        let _ = dev.set_limits(*l);
    }
    let size = dev.size();
    let ro = dev.read_only();
    match slot {
        Slot::Ide(i) => {
            let b = ctx.machine.board_mut();
            b.ide
                .insert_medium(i, size, ro)
                .map_err(|_| QmpError::device_not_removable(&a.device))?;
            b.drives[i] = Some(dev);
            for t in b.ide.take_tray_events() {
                events.push(tray_event(ide_name(t.drive), t.open));
            }
        }
        Slot::Floppy(i) => {
            let b = ctx.machine.board_mut();
            b.fdc
                .insert_medium(i, size, ro)
                .map_err(|_| QmpError::open_file_failed(&a.target))?;
            b.floppies[i] = Some(dev);
        }
        Slot::Sd => return Err(QmpError::device_not_removable(&a.device)),
    }
    let mut r = Reply::empty();
    for e in events {
        r = r.event_before(e);
    }
    Ok(r)
}

/// Argument names are QEMU 1.1's, with underscores.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleArgs {
    device: String,
    bps: i64,
    bps_rd: i64,
    bps_wr: i64,
    iops: i64,
    iops_rd: i64,
    iops_wr: i64,
}

/// `block_set_io_throttle`.
pub fn block_set_io_throttle(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: ThrottleArgs = args.parse()?;
    let slot = find(ctx, &a.device)?;
    let u = |v: i64| u64::try_from(v).map_err(|_| QmpError::invalid_parameter_combination());
    let limits = ThrottleLimits {
        bps: u(a.bps)?,
        bps_rd: u(a.bps_rd)?,
        bps_wr: u(a.bps_wr)?,
        iops: u(a.iops)?,
        iops_rd: u(a.iops_rd)?,
        iops_wr: u(a.iops_wr)?,
    };
    limits
        .validate()
        .map_err(|_: ThrottleError| QmpError::invalid_parameter_combination())?;
    if let Some(Some(dev)) = backend_mut(ctx, slot) {
        dev.set_limits(limits)
            .map_err(|_| QmpError::invalid_parameter_combination())?;
    }
    ctx.block.limits.insert(a.device, limits);
    Ok(Reply::empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ResizeArgs {
    device: String,
    size: i64,
}

/// `block_resize`.
pub fn block_resize(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: ResizeArgs = args.parse()?;
    let slot = find(ctx, &a.device)?;
    let size = u64::try_from(a.size)
        .map_err(|_| QmpError::invalid_parameter_value("size", "a >0 size"))?;
    if size == 0 {
        return Err(QmpError::invalid_parameter_value("size", "a >0 size"));
    }
    let Some(Some(dev)) = backend_mut(ctx, slot) else {
        return Err(QmpError::device_has_no_medium(&a.device));
    };
    dev.resize(size).map_err(|e| match e {
        wasm86_block::BlockError::ReadOnly => QmpError::device_is_read_only(&a.device),
        wasm86_block::BlockError::Unsupported(_) => QmpError::unsupported(),
        _ => QmpError::undefined_error(),
    })?;
    let (new_size, ro) = (dev.size(), dev.read_only());
    if let Slot::Ide(i) = slot {
        let ide = &mut ctx.machine.board_mut().ide;
        if ide.drive_kind(i) == DriveKind::Disk {
            let _ = ide.insert_medium(i, new_size, ro);
        }
    }
    Ok(Reply::empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PasswdArgs {
    device: String,
    #[allow(dead_code)]
    password: String,
}

/// `block_passwd`: no image format here is encrypted.
pub fn block_passwd(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: PasswdArgs = args.parse()?;
    let slot = find(ctx, &a.device)?;
    match backend(ctx, slot) {
        Some(dev) if dev.encrypted() => Err(QmpError::invalid_password()),
        _ => Err(QmpError::device_not_encrypted(&a.device)),
    }
}

/// Guest-initiated tray movements (ATAPI START STOP UNIT) as events.
pub fn guest_tray_events(ctx: &mut Ctx) -> Vec<Event> {
    let b = ctx.machine.board_mut();
    let events: Vec<Event> = b
        .ide
        .take_tray_events()
        .into_iter()
        .map(|t| tray_event(ide_name(t.drive), t.open))
        .collect();
    // A guest eject leaves the tray open with no medium: drop the image.
    for i in 0..4 {
        if b.ide.drive_kind(i) == DriveKind::Cdrom && !b.ide.has_medium(i) {
            b.drives[i] = None;
        }
    }
    events
}
