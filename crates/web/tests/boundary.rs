//! The JavaScript boundary of `WasmVm`, in headless Chromium:
//! `cargo test -p wasm86-web --target wasm32-unknown-unknown`.
//!
//! Every value crosses as the worker passes it: the config and files are JavaScript objects,
//! bytes are Uint8Arrays, results are read back with `Reflect`.

#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm86_web::WasmVm;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A 64 KiB BIOS: the reset vector jumps to code at F000:0000 that masks both PICs, writes
/// "OK\n" to COM1 (port 0x3F8) and halts with interrupts off.
fn ok_bios() -> Vec<u8> {
    let mut rom = vec![0xFFu8; 0x1_0000];
    let code: &[u8] = &[
        0xB0, 0xFF, 0xE6, 0x21, 0xE6, 0xA1, // mov al, 0xff; out 0x21, al; out 0xa1, al
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xB0, b'O', 0xEE, // mov al, 'O'; out dx, al
        0xB0, b'K', 0xEE, // mov al, 'K'; out dx, al
        0xB0, b'\n', 0xEE, // mov al, '\n'; out dx, al
        0xFA, // cli
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ];
    rom[..code.len()].copy_from_slice(code);
    rom[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]); // jmp far f000:0000
    rom
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).expect("Reflect.get")
}

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).expect("Reflect.set");
    }
    o.into()
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn ok_vm(paused: bool) -> WasmVm {
    let config = obj(&[
        ("memory_mib", JsValue::from(16)),
        ("deterministic", JsValue::TRUE),
        ("start_paused", JsValue::from_bool(paused)),
        ("name", JsValue::from_str("boundary")),
        ("wall_clock_ms", JsValue::from(1.7e12)),
    ]);
    WasmVm::new(config, obj(&[("bios", bytes(&ok_bios()))])).expect("WasmVm::new")
}

fn error_text(r: Result<WasmVm, JsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let v: JsValue = e.into();
            get(&v, "message").as_string().expect("Error.message")
        }
    }
}

/// Runs until the serial output holds `want` (or gives up after many slices).
fn serial_until(vm: &mut WasmVm, want: &str) -> String {
    let mut out = Vec::new();
    for _ in 0..200 {
        let r = vm.run(20.0, 0.0);
        out.extend(vm.take_serial());
        if String::from_utf8_lossy(&out).contains(want) || get(&r, "quit").is_truthy() {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn take(vm: &mut WasmVm, id: u32) -> String {
    String::from_utf8(vm.session_take(id)).expect("session output is UTF-8")
}

#[wasm_bindgen_test]
fn hand_made_bios_writes_ok_to_com1_and_halts() {
    let mut vm = ok_vm(false);
    assert_eq!(serial_until(&mut vm, "OK\n"), "OK\n");
    let r = vm.run(20.0, 0.0);
    assert_eq!(get(&r, "state").as_string().as_deref(), Some("running"));
    assert_eq!(get(&r, "quit"), JsValue::FALSE);
    // Deterministic: HLT skips to the next timer, so the VM never asks to wait.
    assert_eq!(get(&r, "wait_input"), JsValue::FALSE);
    assert_eq!(get(&r, "idle_ms").as_f64(), Some(0.0));
    assert!(get(&r, "mips").as_f64().is_some());
    assert!(vm.take_serial().is_empty(), "nothing more is written");
}

#[wasm_bindgen_test]
fn qmp_session_round_trip() {
    let mut vm = ok_vm(false);
    let id = vm.session_open(true);
    let greeting = take(&mut vm, id);
    assert!(
        greeting.starts_with("{\"QMP\": {\"version\": {\"qemu\": "),
        "{greeting}"
    );
    assert!(greeting.contains("\"package\": \"wasm86 "), "{greeting}");
    assert!(greeting.ends_with("\r\n"), "{greeting:?}");
    // Negotiation mode: commands other than qmp_capabilities are refused.
    vm.session_feed(id, br#"{"execute": "query-status"}"#, JsValue::NULL);
    assert!(take(&mut vm, id).contains("CommandNotFound"));
    vm.session_feed(id, b"{\"execute\": \"qmp_capabilities\"}", JsValue::NULL);
    assert_eq!(take(&mut vm, id), "{\"return\": {}}\r\n");
    // A message split across two feeds is one command.
    vm.session_feed(id, b"{\"execute\": \"query-", JsValue::NULL);
    assert_eq!(take(&mut vm, id), "");
    vm.session_feed(id, b"status\", \"id\": 7}", JsValue::NULL);
    let st = take(&mut vm, id);
    let v: serde_json::Value = serde_json::from_str(st.trim()).expect(&st);
    assert_eq!(v["return"]["status"], "running", "{st}");
    assert_eq!(v["return"]["running"], true, "{st}");
    assert_eq!(v["id"], 7, "{st}");
    // Bad input gets the protocol's error and the session stays usable.
    vm.session_feed(id, b"[1, 2]", JsValue::NULL);
    let bad = take(&mut vm, id);
    assert!(bad.contains("\"class\": \"QMPBadInputObject\""), "{bad}");
    vm.session_feed(id, b"{\"execute\": }", JsValue::NULL);
    let bad = take(&mut vm, id);
    assert!(bad.contains("\"class\": \"JSONParsing\""), "{bad}");
    vm.session_feed(id, b"{\"execute\": \"query-name\"}", JsValue::NULL);
    assert_eq!(
        take(&mut vm, id),
        "{\"return\": {\"name\": \"boundary\"}}\r\n"
    );
    let names: Vec<String> = serde_json::from_str(&vm.command_names()).expect("JSON array");
    assert!(names.iter().any(|n| n == "query-status"), "{names:?}");
    vm.session_close(id);
    vm.session_feed(id, b"{\"execute\": \"query-name\"}", JsValue::NULL);
    assert_eq!(take(&mut vm, id), "", "a closed session says nothing");
}

#[wasm_bindgen_test]
fn page_door_stop_cont_and_events() {
    let mut vm = ok_vm(false);
    let page = vm.session_open(false);
    let other = vm.session_open(true);
    assert_eq!(take(&mut vm, page), "", "the page door has no greeting");
    vm.session_feed(other, b"{\"execute\": \"qmp_capabilities\"}", JsValue::NULL);
    take(&mut vm, other);
    vm.session_feed(page, b"{\"execute\": \"stop\"}", JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.contains("\"event\": \"STOP\""), "{out}");
    assert!(out.contains("{\"return\": {}}"), "{out}");
    assert!(take(&mut vm, other).contains("\"event\": \"STOP\""));
    let r = vm.run(5.0, 0.0);
    assert_eq!(get(&r, "state").as_string().as_deref(), Some("paused"));
    assert_eq!(vm.state(), "paused");
    vm.session_feed(page, b"{\"execute\": \"cont\"}", JsValue::NULL);
    assert!(take(&mut vm, page).contains("\"event\": \"RESUME\""));
    let r = vm.run(5.0, 0.0);
    assert_eq!(get(&r, "state").as_string().as_deref(), Some("running"));
    vm.session_feed(page, b"{\"execute\": \"quit\"}", JsValue::NULL);
    assert!(take(&mut vm, page).contains("{\"return\": {}}"));
    let r = vm.run(5.0, 0.0);
    assert_eq!(get(&r, "quit"), JsValue::TRUE);
}

#[wasm_bindgen_test]
fn screendump_lands_in_the_file_store() {
    let mut vm = ok_vm(false);
    vm.run(5.0, 0.0);
    let page = vm.session_open(false);
    vm.session_feed(
        page,
        b"{\"execute\": \"screendump\", \"arguments\": {\"filename\": \"s.ppm\"}}",
        JsValue::NULL,
    );
    assert_eq!(take(&mut vm, page), "{\"return\": {}}\r\n");
    let files: Array = vm.take_files();
    assert_eq!(files.length(), 1);
    let f = files.get(0);
    assert_eq!(get(&f, "name").as_string().as_deref(), Some("s.ppm"));
    let data = Uint8Array::new(&get(&f, "data")).to_vec();
    let head = String::from_utf8_lossy(&data[..data.len().min(20)]).into_owned();
    let mut it = head.split_ascii_whitespace();
    assert_eq!(it.next(), Some("P6"), "{head:?}");
    let w: usize = it.next().and_then(|s| s.parse().ok()).expect("width");
    let h: usize = it.next().and_then(|s| s.parse().ok()).expect("height");
    let header_len = format!("P6\n{w} {h}\n255\n").len();
    assert_eq!(data.len(), header_len + w * h * 3);
    assert_eq!(vm.take_files().length(), 0, "reported once");
    assert!(vm.remove_file("s.ppm"));
    assert!(!vm.remove_file("s.ppm"));
}

#[wasm_bindgen_test]
fn frame_serial_input_keys_and_mouse() {
    let mut vm = ok_vm(false);
    vm.run(5.0, 0.0);
    let f = vm.frame();
    assert!(f.is_object(), "the first frame is always sent");
    let w = get(&f, "width").as_f64().unwrap() as usize;
    let rows = get(&f, "rows").as_f64().unwrap() as usize;
    assert_eq!(get(&f, "top").as_f64(), Some(0.0));
    assert_eq!(rows, get(&f, "height").as_f64().unwrap() as usize);
    let px = get(&f, "pixels");
    assert!(px.is_instance_of::<js_sys::Uint8ClampedArray>());
    assert_eq!(
        js_sys::Uint8ClampedArray::from(px).length() as usize,
        w * rows * 4
    );
    assert!(vm.frame().is_undefined(), "nothing changed since");
    vm.send_serial(b"abc").unwrap();
    vm.send_serial(&vec![b'x'; 2 << 20])
        .expect_err("over the 1 MiB cap");
    vm.key(&[0x1e, 0x9e]);
    vm.mouse(3, -2, 0, 1);
    let r = vm.run(5.0, 0.0);
    assert_eq!(get(&r, "state").as_string().as_deref(), Some("running"));
}

#[wasm_bindgen_test]
fn bad_config_and_images_are_errors_not_panics() {
    let bios = || obj(&[("bios", bytes(&ok_bios()))]);
    let e = error_text(WasmVm::new(
        obj(&[("memory_mib", JsValue::from(99999))]),
        bios(),
    ));
    assert!(e.contains("memory_mib 99999 is out of range"), "{e}");
    let e = error_text(WasmVm::new(obj(&[("memroy", JsValue::from(1))]), bios()));
    assert!(e.contains("unknown field `memroy`"), "{e}");
    let e = error_text(WasmVm::new(JsValue::UNDEFINED, obj(&[])));
    assert!(e.contains("files.bios is required"), "{e}");
    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[("bios", JsValue::from(3))]),
    ));
    assert!(e.contains("files.bios must be a Uint8Array"), "{e}");
    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[("bois", bytes(b"x"))]),
    ));
    assert!(e.contains("unknown image 'bois'"), "{e}");
    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[("bios", bytes(&[0; 100]))]),
    ));
    assert!(e.contains("BIOS image size 100"), "{e}");
    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[
            ("bios", bytes(&ok_bios())),
            ("kernel", bytes(&[0; 8192])),
            ("linuxboot", bytes(&[0; 512])),
        ]),
    ));
    assert!(e.contains("bzImage"), "{e}");
    let e = error_text(WasmVm::new(JsValue::from_str("nope"), bios()));
    assert!(e.contains("invalid VM config"), "{e}");
}

#[wasm_bindgen_test]
fn change_opens_images_the_page_supplied_and_nothing_else() {
    let mut vm = ok_vm(false);
    vm.put_image("disc.iso", vec![0x42; 8 * 2048]).unwrap();
    assert!(vm.put_image("", vec![]).is_err());
    assert_eq!(vm.image_names(), r#"["disc.iso"]"#);
    let page = vm.session_open(false);
    let change = |target: &str| {
        format!(
            r#"{{"execute": "change", "arguments": {{"device": "ide1-cd0", "target": "{target}"}}}}"#
        )
    };
    vm.session_feed(page, change("/etc/passwd").as_bytes(), JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.contains("\"class\": \"OpenFileFailed\""), "{out}");
    vm.session_feed(page, change("disc.iso").as_bytes(), JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.ends_with("{\"return\": {}}\r\n"), "{out}");
    vm.session_feed(page, b"{\"execute\": \"query-block\"}", JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.contains("\"file\": \"disc.iso\""), "{out}");
}

#[wasm_bindgen_test]
fn a_transferable_sent_with_getfd_is_the_passed_fd() {
    let mut vm = ok_vm(false);
    let page = vm.session_open(false);
    let getfd = br#"{"execute": "getfd", "arguments": {"fdname": "port"}}"#;
    vm.session_feed(page, getfd, JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.contains("\"class\": \"FdNotSupplied\""), "{out}");
    let channel = message_port();
    vm.session_feed(page, getfd, channel);
    assert_eq!(take(&mut vm, page), "{\"return\": {}}\r\n");
    vm.session_feed(
        page,
        br#"{"execute": "closefd", "arguments": {"fdname": "port"}}"#,
        JsValue::NULL,
    );
    assert_eq!(take(&mut vm, page), "{\"return\": {}}\r\n");
    vm.session_feed(
        page,
        br#"{"execute": "closefd", "arguments": {"fdname": "port"}}"#,
        JsValue::NULL,
    );
    assert!(take(&mut vm, page).contains("\"class\": \"FdNotFound\""));
}

/// A MessagePort, made through JavaScript (`new MessageChannel().port1`) without web-sys.
fn message_port() -> JsValue {
    let make = js_sys::Function::new_no_args("return new MessageChannel().port1;");
    make.call0(&JsValue::NULL).expect("MessageChannel")
}

include!("support/read_sector_bios.rs");

#[wasm_bindgen_test]
fn a_disk_given_as_url_and_size_is_read_through_fetches() {
    let config = obj(&[
        ("memory_mib", JsValue::from(16)),
        ("deterministic", JsValue::TRUE),
    ]);
    let hda = obj(&[
        ("url", JsValue::from_str("/images/disk.img")),
        ("size", JsValue::from(1_048_576)),
    ]);
    let files = obj(&[("bios", bytes(&read_sector_bios())), ("hda", hda)]);
    let mut vm = WasmVm::new(config, files).expect("WasmVm::new");
    vm.run(20.0, 0.0);
    let fetches = vm.take_fetches();
    assert_eq!(fetches.length(), 1);
    let f = fetches.get(0);
    assert_eq!(get(&f, "drive").as_string().as_deref(), Some("hda"));
    assert_eq!(
        get(&f, "url").as_string().as_deref(),
        Some("/images/disk.img")
    );
    assert_eq!(get(&f, "offset").as_f64(), Some(0.0));
    assert_eq!(get(&f, "len").as_f64(), Some(65536.0));
    // The guest waits on the controller; nothing is asked twice.
    vm.run(20.0, 0.0);
    assert!(vm.take_serial().is_empty());
    assert_eq!(vm.take_fetches().length(), 0);
    // A short delivery is refused with a clear error (and fails the guest's read).
    let short: JsValue = vm.deliver("hda", 0.0, &[0; 100]).unwrap_err().into();
    let msg = get(&short, "message").as_string().unwrap_or_default();
    assert!(
        msg.contains("asked for 65536 bytes but 100 were delivered"),
        "{msg}"
    );
    // The guest's read failed; its data port reads nothing useful. A fresh VM gets the bytes.
    let config = obj(&[
        ("memory_mib", JsValue::from(16)),
        ("deterministic", JsValue::TRUE),
    ]);
    let hda = obj(&[
        ("url", JsValue::from_str("/images/disk.img")),
        ("size", JsValue::from(1_048_576)),
    ]);
    let mut vm = WasmVm::new(
        config,
        obj(&[("bios", bytes(&read_sector_bios())), ("hda", hda)]),
    )
    .expect("WasmVm::new");
    vm.run(20.0, 0.0);
    let f = vm.take_fetches().get(0);
    let mut block = vec![0u8; 65536];
    block[..2].copy_from_slice(b"OK");
    vm.deliver("hda", get(&f, "offset").as_f64().unwrap_or(-1.0), &block)
        .expect("deliver");
    assert_eq!(serial_until(&mut vm, "OK\n"), "OK\n");
    let stats = get(&vm.remote_stats(), "hda");
    assert_eq!(get(&stats, "fetches").as_f64(), Some(1.0));
    assert_eq!(get(&stats, "bytes_delivered").as_f64(), Some(65536.0));
    assert!(
        vm.fail_fetch("hda", 0.0, "late").is_err(),
        "no fetch is outstanding"
    );

    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[
            ("bios", bytes(&ok_bios())),
            (
                "hda",
                obj(&[
                    ("url", JsValue::from_str("/d")),
                    ("size", JsValue::from(1.5)),
                ]),
            ),
        ]),
    ));
    assert!(
        e.contains("files.hda.size 1.5 must be a whole number"),
        "{e}"
    );
    let e = error_text(WasmVm::new(
        JsValue::UNDEFINED,
        obj(&[
            ("bios", bytes(&ok_bios())),
            (
                "kernel",
                obj(&[
                    ("url", JsValue::from_str("/k")),
                    ("size", JsValue::from(4096)),
                ]),
            ),
        ]),
    ));
    assert!(e.contains("files.kernel cannot be read from a URL"), "{e}");
}

#[wasm_bindgen_test]
fn change_to_a_registered_url_inserts_a_medium_read_on_demand() {
    let mut vm = ok_vm(false);
    let page = vm.session_open(false);
    let change = br#"{"execute": "change", "arguments": {"device": "ide1-cd0", "target": "http://h/cd.iso"}}"#;
    vm.session_feed(page, change, JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(
        out.contains("\"class\": \"OpenFileFailed\""),
        "unregistered: {out}"
    );
    assert!(vm.put_remote_image("http://h/cd.iso", 1.5).is_err());
    assert!(vm.put_remote_image("", 2048.0).is_err());
    vm.put_remote_image("http://h/cd.iso", 16384.0)
        .expect("put_remote_image");
    assert_eq!(vm.image_names(), r#"["http://h/cd.iso"]"#);
    vm.session_feed(page, change, JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.ends_with("{\"return\": {}}\r\n"), "{out}");
    vm.session_feed(page, br#"{"execute": "query-block"}"#, JsValue::NULL);
    let out = take(&mut vm, page);
    assert!(out.contains("\"file\": \"http://h/cd.iso\""), "{out}");
    // Nothing is fetched until the guest reads.
    vm.run(20.0, 0.0);
    assert_eq!(vm.take_fetches().length(), 0);
    let stats = get(&vm.remote_stats(), "change-1");
    assert_eq!(get(&stats, "fetches").as_f64(), Some(0.0));
}
