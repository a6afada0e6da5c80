//! A toy machine context and command table shared by the conformance tests.
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::{json, Value};
use wasm86_qmp::hmp::{memory_dump, HmpArgs, HmpContext, HmpState, HmpTable};
use wasm86_qmp::{
    Args, CommandTable, DeferredToken, Event, QmpError, Reply, Session, SessionConfig, Timestamp,
};

pub const NOW: Timestamp = Timestamp {
    seconds: 1_353_000_000,
    microseconds: 42,
};

#[derive(Default)]
pub struct Toy {
    pub running: bool,
    pub balloon: i64,
    pub deferred: Vec<DeferredToken>,
    pub hmp: HmpState,
    pub cpu: i64,
    pub mem: Vec<u8>,
    pub calls: Vec<String>,
}

impl HmpContext for Toy {
    fn hmp_state(&mut self) -> &mut HmpState {
        &mut self.hmp
    }
    fn register(&mut self, name: &str) -> Option<u64> {
        match name {
            "eax" => Some(0x1234),
            "esp" => Some(0x7c00),
            _ => None,
        }
    }
    fn select_cpu(&mut self, index: i64) -> bool {
        if index == 0 {
            self.cpu = index;
            true
        } else {
            false
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Balloon {
    value: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Eject {
    device: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Memsave {
    val: u64,
    size: u32,
    filename: String,
    cpu_index: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Cpu {
    index: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Downtime {
    value: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Migrate {
    uri: String,
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    blk: bool,
    #[serde(default)]
    inc: bool,
}

fn query_status(t: &mut Toy, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::value(
        json!({"running": t.running, "singlestep": false,
        "status": if t.running { "running" } else { "paused" }}),
    ))
}

fn stop(t: &mut Toy, _: Args) -> Result<Reply, QmpError> {
    let was = t.running;
    t.running = false;
    let r = Reply::empty();
    Ok(if was {
        r.event_before(Event::new("STOP"))
    } else {
        r
    })
}

fn cont(t: &mut Toy, _: Args) -> Result<Reply, QmpError> {
    let was = t.running;
    t.running = true;
    let r = Reply::empty();
    Ok(if was {
        r
    } else {
        r.event_before(Event::new("RESUME"))
    })
}

fn system_reset(_: &mut Toy, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::empty().event_after(Event::new("RESET")))
}

fn balloon(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let b: Balloon = a.parse()?;
    t.balloon = b.value;
    Ok(Reply::empty())
}

fn eject(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let e: Eject = a.parse()?;
    if e.device != "ide1-cd0" {
        return Err(QmpError::device_not_found(&e.device));
    }
    t.calls.push(format!("eject {} {}", e.device, e.force));
    Ok(Reply::empty().event_before(Event::with_data(
        "DEVICE_TRAY_MOVED",
        json!({"device": e.device, "tray-open": true}),
    )))
}

fn memsave(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let m: Memsave = a.parse()?;
    t.calls.push(format!(
        "memsave {} {} {} {:?}",
        m.val, m.size, m.filename, m.cpu_index
    ));
    Ok(Reply::empty())
}

fn cpu(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let c: Cpu = a.parse()?;
    t.cpu = i64::from(c.index);
    Ok(Reply::empty())
}

fn downtime(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let d: Downtime = a.parse()?;
    t.calls.push(format!("downtime {}", d.value));
    Ok(Reply::empty())
}

fn device_add(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let m = a.into_map();
    let driver = m
        .get("driver")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if driver.is_empty() {
        return Err(QmpError::missing_parameter("driver"));
    }
    t.calls.push(format!("device_add {}", Value::Object(m)));
    Ok(Reply::empty())
}

fn migrate(t: &mut Toy, a: Args) -> Result<Reply, QmpError> {
    let m: Migrate = a.parse()?;
    t.calls.push(format!(
        "migrate {} {} {} {}",
        m.uri, m.detach, m.blk, m.inc
    ));
    let tok = a.defer();
    t.deferred.push(tok);
    Ok(Reply::deferred(tok))
}

fn quit(_: &mut Toy, _: Args) -> Result<Reply, QmpError> {
    Ok(Reply::empty().event_after(Event::new("SHUTDOWN")))
}

fn hmp_x(t: &mut Toy, a: HmpArgs) -> Result<String, String> {
    let f = a.format().ok_or("no format")?;
    let addr = a.int("addr").ok_or("no addr")? as u64;
    let mem = &t.mem;
    Ok(memory_dump(f, addr, false, &mut |addr, buf| {
        let start = addr as usize;
        match mem.get(start..start + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }))
}

fn hmp_xp(t: &mut Toy, a: HmpArgs) -> Result<String, String> {
    let f = a.format().ok_or("no format")?;
    let addr = a.int("addr").ok_or("no addr")? as u64;
    let mem = &t.mem;
    Ok(memory_dump(f, addr, true, &mut |addr, buf| {
        let start = addr as usize;
        match mem.get(start..start + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }))
}

fn hmp_info_status(t: &mut Toy, _: HmpArgs) -> Result<String, String> {
    Ok(format!(
        "VM status: {}\n",
        if t.running { "running" } else { "paused" }
    ))
}

fn hmp_eject(t: &mut Toy, a: HmpArgs) -> Result<String, String> {
    t.calls.push(format!(
        "hmp eject {} {}",
        a.str("device").unwrap_or(""),
        a.flag("force")
    ));
    Ok(String::new())
}

fn hmp_echo(_: &mut Toy, a: HmpArgs) -> Result<String, String> {
    Ok(format!("{}\n", a.str("text").unwrap_or("")))
}

fn hmp_cpu(_: &mut Toy, a: HmpArgs) -> Result<String, String> {
    match a.int("index") {
        Some(0) => Ok(String::new()),
        _ => Err("invalid CPU index\n".into()),
    }
}

pub fn table() -> CommandTable<Toy> {
    let mut t = CommandTable::new();
    t.register("quit", "", quit).unwrap();
    t.register("eject", "force:-f,device:B", eject).unwrap();
    t.register("stop", "", stop).unwrap();
    t.register("cont", "", cont).unwrap();
    t.register("system_reset", "", system_reset).unwrap();
    t.register("device_add", "device:O", device_add).unwrap();
    t.register("cpu", "index:i", cpu).unwrap();
    t.register("memsave", "val:l,size:i,filename:s,cpu-index:i?", memsave)
        .unwrap();
    t.register("migrate", "detach:-d,blk:-b,inc:-i,uri:s", migrate)
        .unwrap();
    t.register("migrate_set_downtime", "value:T", downtime)
        .unwrap();
    t.register("balloon", "value:M", balloon).unwrap();
    t.register("query-status", "", query_status).unwrap();
    let mut h = HmpTable::new();
    h.register(
        "x",
        "fmt:/,addr:l",
        "/fmt addr",
        "virtual memory dump starting at 'addr'",
        hmp_x,
    )
    .unwrap();
    h.register(
        "xp",
        "fmt:/,addr:l",
        "/fmt addr",
        "physical memory dump starting at 'addr'",
        hmp_xp,
    )
    .unwrap();
    h.register(
        "eject",
        "force:-f,device:B",
        "[-f] device",
        "eject a removable medium (use -f to force it)",
        hmp_eject,
    )
    .unwrap();
    h.register("echo", "text:s", "text", "print a string", hmp_echo)
        .unwrap();
    h.register("cpu", "index:i", "index", "set the default CPU", hmp_cpu)
        .unwrap();
    h.register_info(
        "status",
        "",
        "",
        "show the current VM status (running|paused)",
        hmp_info_status,
    )
    .unwrap();
    t.set_hmp(h).unwrap();
    t
}

/// A session that has negotiated, with its greeting and negotiation reply consumed.
pub fn ready() -> (Session, CommandTable<Toy>, Toy) {
    let table = table();
    let mut toy = Toy {
        running: true,
        mem: (0..=255u8).cycle().take(4096).collect(),
        ..Toy::default()
    };
    let mut s = Session::new(SessionConfig::socket());
    s.handle(&table, &mut toy, br#"{"execute":"qmp_capabilities"}"#, NOW);
    let out = s.take_output();
    assert!(out.ends_with("{\"return\": {}}\r\n"), "{out}");
    (s, table, toy)
}

/// Sends `input`, returns the parsed output lines (every line must end in CRLF).
pub fn send(s: &mut Session, t: &CommandTable<Toy>, toy: &mut Toy, input: &[u8]) -> Vec<Value> {
    s.handle(t, toy, input, NOW);
    lines(&s.take_output())
}

pub fn lines(out: &str) -> Vec<Value> {
    if out.is_empty() {
        return Vec::new();
    }
    assert!(out.ends_with("\r\n"), "{out:?}");
    out.split_terminator("\r\n")
        .map(|l| {
            assert!(!l.contains('\n'), "{l:?}");
            let mut de = serde_json::Deserializer::from_str(l);
            de.disable_recursion_limit();
            serde::Deserialize::deserialize(&mut de).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect()
}

pub fn err(class: &str, desc: &str) -> Value {
    json!({"class": class, "desc": desc})
}

/// The class and desc of an error reply (data left out), plus its id if any.
pub fn error_of(v: &Value) -> (Value, Option<Value>) {
    let e = v
        .get("error")
        .unwrap_or_else(|| panic!("not an error: {v}"));
    (
        json!({"class": e["class"], "desc": e["desc"]}),
        v.get("id").cloned(),
    )
}
