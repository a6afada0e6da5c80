//! The one QMP command table of wasm86: every command, its 1.1 `args_type`, its handler.
//! `query-commands` and dispatch come from this table; a seed command that is not here
//! answers `CommandNotFound`, like a QEMU built without that feature.

use crate::runstate::RunState;
use crate::Ctx;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use wasm86_qmp::error::QmpError;
use wasm86_qmp::event::Event;
use wasm86_qmp::table::{Args, CommandTable, Handler, Reply};

/// Largest `memsave`/`pmemsave` size: the dump is built in memory before it is written.
pub const MAX_DUMP: u64 = 256 << 20;

/// Builds the command table.
pub fn table() -> CommandTable<Ctx> {
    let mut t = CommandTable::new();
    let commands: &[(&str, &str, Handler<Ctx>)] = &[
        ("quit", "", quit),
        ("stop", "", stop),
        ("cont", "", cont),
        ("system_reset", "", system_reset),
        ("cpu", "index:i", cpu),
        ("memsave", "val:l,size:i,filename:s", memsave),
        ("pmemsave", "val:l,size:i,filename:s", pmemsave),
        ("inject-nmi", "", inject_nmi),
        ("screendump", "filename:F", screendump),
        ("query-version", "", query_version),
        ("query-status", "", query_status),
        ("query-name", "", query_name),
        ("query-uuid", "", query_uuid),
        ("query-kvm", "", query_kvm),
        ("query-cpus", "", query_cpus),
        ("query-chardev", "", query_chardev),
        ("query-mice", "", query_mice),
        ("query-pci", "", query_pci),
        ("query-block", "", crate::block::query_block),
        ("query-blockstats", "", crate::block::query_blockstats),
        ("eject", "force:-f,device:B", crate::block::eject),
        ("change", "device:B,target:F,arg:s?", crate::block::change),
        (
            "block_set_io_throttle",
            "device:B,bps:l,bps_rd:l,bps_wr:l,iops:l,iops_rd:l,iops_wr:l",
            crate::block::block_set_io_throttle,
        ),
        (
            "block_resize",
            "device:B,size:o",
            crate::block::block_resize,
        ),
        (
            "block_passwd",
            "device:B,password:s",
            crate::block::block_passwd,
        ),
        ("getfd", "fdname:s", crate::fds::getfd),
        ("closefd", "fdname:s", crate::fds::closefd),
    ];
    for (name, args_type, handler) in commands {
        // The table is static data checked by the tests below: a failure here is a
        // programming error in this list, caught by `table_is_valid`.
        if let Err(e) = t.register(name, args_type, *handler) {
            debug_assert!(false, "bad command table entry {name}: {e}");
        }
    }
    if let Err(e) = t.set_hmp(crate::hmp::table()) {
        debug_assert!(false, "bad HMP table: {e}");
    }
    t
}

fn empty() -> Result<Reply, QmpError> {
    Ok(Reply::empty())
}

fn quit(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    ctx.quit = true;
    Ok(Reply::empty().event_after(Event::new("SHUTDOWN")))
}

/// `stop`: running → paused with a STOP event; in any other state nothing happens.
pub(crate) fn do_stop(ctx: &mut Ctx) -> Option<Event> {
    (ctx.state == RunState::Running).then(|| {
        ctx.state = RunState::Paused;
        Event::new("STOP")
    })
}

/// `cont`: back to running with a RESUME event (none when already running).
pub(crate) fn do_cont(ctx: &mut Ctx) -> Result<Option<Event>, QmpError> {
    match ctx.state {
        RunState::Running => Ok(None),
        RunState::Inmigrate => Err(QmpError::migration_expected()),
        s if s.needs_reset_before_cont() => Err(QmpError::reset_required()),
        _ => {
            ctx.state = RunState::Running;
            Ok(Some(Event::new("RESUME")))
        }
    }
}

/// `system_reset`: the machine resets; a VM stopped by a guest shutdown or an internal
/// error becomes paused (as 1.1's main loop does). The RESET event follows the reply.
pub(crate) fn do_reset(ctx: &mut Ctx) -> Event {
    ctx.machine.reset(false);
    ctx.machine.take_events();
    if matches!(ctx.state, RunState::Shutdown | RunState::InternalError) {
        ctx.state = RunState::Paused;
    }
    Event::new("RESET")
}

fn stop(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(do_stop(ctx)
        .into_iter()
        .fold(Reply::empty(), Reply::event_before))
}

fn cont(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(do_cont(ctx)?
        .into_iter()
        .fold(Reply::empty(), Reply::event_before))
}

fn system_reset(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::empty().event_after(do_reset(ctx)))
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CpuArgs {
    index: i64,
}

fn cpu(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: CpuArgs = args.parse()?;
    match usize::try_from(a.index) {
        Ok(i) if i < ctx.machine.cpus().len() => {
            ctx.current_cpu = i;
            empty()
        }
        _ => Err(QmpError::invalid_parameter_value("index", "a CPU number")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SaveArgs {
    val: i64,
    size: i64,
    filename: String,
}

fn dump_size(size: i64) -> Result<usize, QmpError> {
    match u64::try_from(size) {
        Ok(s) if s <= MAX_DUMP => Ok(s as usize),
        _ => Err(QmpError::invalid_parameter_value(
            "size",
            "a size of at most 256 MiB",
        )),
    }
}

fn write_file(ctx: &mut Ctx, name: &str, data: &[u8]) -> Result<(), QmpError> {
    ctx.host
        .write_file(name, data)
        .map_err(|_| QmpError::open_file_failed(name))
}

fn memsave(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: SaveArgs = args.parse()?;
    let size = dump_size(a.size)?;
    let cpu = ctx.current_cpu;
    let data = read_virtual(ctx, cpu, a.val as u64 as u32, size)
        .ok_or_else(|| QmpError::invalid_parameter_value("val", "a mapped virtual address"))?;
    write_file(ctx, &a.filename, &data)?;
    empty()
}

/// Reads guest-virtual memory through CPU `cpu`'s paging, without side effects. `None` when
/// a page in the range is not mapped.
pub fn read_virtual(ctx: &Ctx, cpu: usize, addr: u32, size: usize) -> Option<Vec<u8>> {
    let c = ctx.machine.cpus().get(cpu)?;
    let mem = &ctx.machine.board().mem;
    let mut out = vec![0u8; size];
    let mut done = 0usize;
    while done < size {
        let lin = addr.wrapping_add(done as u32);
        let phys = c.translate_debug(mem, lin)?;
        let n = (4096 - (lin as usize & 4095)).min(size - done);
        mem.read_phys(phys, &mut out[done..done + n]);
        done += n;
    }
    Some(out)
}

fn pmemsave(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: SaveArgs = args.parse()?;
    let size = dump_size(a.size)?;
    let mut data = vec![0u8; size];
    ctx.machine
        .board()
        .mem
        .read_phys(a.val as u64 as u32, &mut data);
    write_file(ctx, &a.filename, &data)?;
    empty()
}

fn inject_nmi(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    ctx.machine.inject_nmi();
    empty()
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ScreendumpArgs {
    filename: String,
}

fn screendump(ctx: &mut Ctx, args: Args) -> Result<Reply, QmpError> {
    let a: ScreendumpArgs = args.parse()?;
    let now = ctx.machine.now();
    let ppm = ctx.machine.board_mut().vga.screendump_ppm(now);
    write_file(ctx, &a.filename, &ppm)?;
    empty()
}

fn query_version(_: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(wasm86_qmp::session::version_info(
        &crate::package(),
    )))
}

fn query_status(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(json!({
        "status": ctx.state.as_str(),
        "singlestep": false,
        "running": ctx.state.is_running(),
    })))
}

fn query_name(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    let mut m = Map::new();
    if let Some(n) = &ctx.config.name {
        m.insert("name".into(), Value::String(n.clone()));
    }
    Ok(Reply::value(Value::Object(m)))
}

fn query_uuid(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    let uuid = ctx
        .config
        .uuid
        .clone()
        .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
    Ok(Reply::value(json!({ "UUID": uuid })))
}

fn query_kvm(_: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(json!({ "enabled": false, "present": false })))
}

fn query_cpus(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    let tid = ctx.host.thread_id();
    let cpus: Vec<Value> = ctx
        .machine
        .query_cpus()
        .into_iter()
        .map(|c| {
            json!({
                "CPU": c.index,
                "current": c.index == ctx.current_cpu,
                "halted": c.halted,
                "pc": c.pc,
                "thread_id": tid,
            })
        })
        .collect();
    Ok(Reply::value(Value::Array(cpus)))
}

fn query_chardev(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    let list: Vec<Value> = ctx
        .config
        .chardevs
        .iter()
        .map(|(label, filename)| json!({ "label": label, "filename": filename }))
        .collect();
    Ok(Reply::value(Value::Array(list)))
}

fn query_mice(_: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(json!([
        { "name": "QEMU PS/2 Mouse", "index": 0, "current": true, "absolute": false }
    ])))
}

fn query_pci(ctx: &mut Ctx, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(crate::regs::pci_json(
        &ctx.machine.board().pci.query(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_valid() {
        let mut t: CommandTable<Ctx> = CommandTable::new();
        for name in table().names() {
            if name == "qmp_capabilities" || name == "query-commands" {
                continue;
            }
            let c = table();
            let cmd = c.get(name).expect("registered");
            assert!(t.register(name, cmd.args_type(), quit).is_ok(), "{name}");
        }
        assert!(table().get("query-status").is_some());
        assert!(table().get("migrate").is_none(), "migrate is not built yet");
    }
}
