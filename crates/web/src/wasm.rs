//! The JavaScript class [`WasmVm`] that `www/worker.js` drives.
//!
//! Only conversions live here: JavaScript values in, [`crate::config`] /
//! [`crate::runner`] / [`wasm86_vmm::Vm`] calls, JavaScript values out. Bad input becomes a
//! thrown `Error` with a clear message, never a panic.

use crate::config::{self, Images};
use crate::files::FileStore;
use crate::host::{self, WebHost};
use crate::remote::RemoteDrives;
use crate::runner::Runner;
use js_sys::{Array, Object, Reflect, Uint8Array, Uint8ClampedArray};
use std::cell::RefCell;
use std::rc::Rc;
use wasm86_vmm::Vm;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(msg: &str);
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Reflect.set on a plain fresh object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            console_error(&format!("wasm86 panicked: {info}"))
        }));
    });
}

fn read_images(files: &JsValue) -> Result<Images, JsError> {
    let mut images = Images::default();
    if files.is_undefined() || files.is_null() {
        return Ok(images);
    }
    if !files.is_object() {
        return Err(JsError::new(
            "invalid VM files: expected an object of Uint8Arrays",
        ));
    }
    let obj: &Object = files.unchecked_ref();
    for key in Object::keys(obj).iter() {
        let name = key.as_string().unwrap_or_default();
        let value = Reflect::get(obj, &key).unwrap_or(JsValue::UNDEFINED);
        if images.slot(&name).is_none() {
            return Err(JsError::new(&format!(
                "invalid VM files: unknown image '{name}' (expected one of {})",
                Images::NAMES.join(", ")
            )));
        }
        if value.is_undefined() || value.is_null() {
            continue;
        }
        let url = Reflect::get(&value, &JsValue::from_str("url")).unwrap_or(JsValue::UNDEFINED);
        if value.is_object()
            && !value.is_instance_of::<Uint8Array>()
            && !value.is_instance_of::<js_sys::ArrayBuffer>()
            && !url.is_undefined()
        {
            // {url, size}: read lazily with range requests by the worker.
            let size = Reflect::get(&value, &JsValue::from_str("size"))
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN);
            let url = url.as_string().unwrap_or_default();
            images
                .remote
                .add(&name, &url, size)
                .map_err(|e| JsError::new(&format!("invalid VM files: {e}")))?;
            continue;
        }
        let Some(slot) = images.slot(&name) else {
            continue; // checked above
        };
        *slot = Some(if let Some(a) = value.dyn_ref::<Uint8Array>() {
            a.to_vec()
        } else if let Some(b) = value.dyn_ref::<js_sys::ArrayBuffer>() {
            Uint8Array::new(b).to_vec()
        } else {
            return Err(JsError::new(&format!(
                "invalid VM files: files.{name} must be a Uint8Array, an ArrayBuffer or {{url, size}}"
            )));
        });
    }
    Ok(images)
}

/// A VM in a Web Worker: one [`Vm`] with its realtime run loop and file store.
#[wasm_bindgen]
pub struct WasmVm {
    vm: Vm,
    runner: Runner,
    files: Rc<RefCell<FileStore>>,
    images: host::Images,
    remote: Rc<RefCell<RemoteDrives>>,
    urls: host::UrlImages,
    force_frame: bool,
}

#[wasm_bindgen]
impl WasmVm {
    /// Builds and powers on a VM.
    ///
    /// `config`: `{memory_mib, cmdline, boot, start_paused, name, uuid, wall_clock_ms,
    /// deterministic, no_reboot, no_shutdown}`, all optional. `files`: `{bios, vgabios,
    /// linuxboot, kernel, initrd, cdrom, hda, fda}` as Uint8Arrays; `bios` is required,
    /// `linuxboot` with `kernel`. `cdrom`, `hda` and `fda` may instead be `{url, size}`: the
    /// drive is then read lazily, and the worker answers [`WasmVm::take_fetches`]. Throws an
    /// `Error` naming what is wrong.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, files: JsValue) -> Result<WasmVm, JsError> {
        install_panic_hook();
        let cfg = if config.is_undefined() || config.is_null() {
            config::WebConfig::default()
        } else {
            let json = js_sys::JSON::stringify(&config)
                .map_err(|_| JsError::new("invalid VM config: not serialisable to JSON"))?;
            config::parse_config(&String::from(json)).map_err(|e| JsError::new(&e.to_string()))?
        };
        let images = read_images(&files)?;
        let remote = images.remote.clone();
        let (machine, vm_config) = config::build(&cfg, images, js_sys::Date::now())
            .map_err(|e| JsError::new(&e.to_string()))?;
        let files = Rc::new(RefCell::new(FileStore::default()));
        let images = host::Images::default();
        let remote = Rc::new(RefCell::new(remote));
        let urls = host::UrlImages::default();
        let host = WebHost::new(Box::new(js_sys::Date::now), files.clone(), images.clone())
            .with_urls(urls.clone(), remote.clone());
        Ok(WasmVm {
            vm: Vm::new(machine, vm_config, Box::new(host)),
            runner: Runner::new(),
            files,
            images,
            remote,
            urls,
            force_frame: true,
        })
    }

    /// Runs the VM for about `budget_ms` of host time; `now_ms` is the worker's
    /// `performance.now()`. Returns `{state, mips, idle_ms, wait_input, quit}`: call again
    /// after `idle_ms` (0: at once), or when input arrives if `wait_input`; stop if `quit`.
    pub fn run(&mut self, budget_ms: f64, now_ms: f64) -> JsValue {
        let base = performance_now();
        let mut clock = || now_ms + (performance_now() - base);
        let budget = if budget_ms.is_finite() {
            budget_ms.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let r = self.runner.run(&mut self.vm, budget, &mut clock);
        let o = Object::new();
        set(&o, "state", r.state);
        set(&o, "mips", r.mips);
        set(&o, "idle_ms", r.idle_ms);
        set(&o, "wait_input", r.wait_input);
        set(&o, "quit", r.quit);
        o.into()
    }

    /// The run state's QMP name.
    pub fn state(&self) -> String {
        self.vm.state().as_str().to_string()
    }

    /// Bytes the guest wrote to COM1 since the last call.
    pub fn take_serial(&mut self) -> Vec<u8> {
        self.vm.machine_mut().take_serial_output(0)
    }

    /// Queues bytes for COM1; what the UART cannot take now is kept for later. Throws when
    /// more than 1 MiB would wait.
    pub fn send_serial(&mut self, data: &[u8]) -> Result<(), JsError> {
        self.runner
            .serial_in
            .push(data)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let m = self.vm.machine_mut();
        self.runner.serial_in.drain_into(|b| m.serial_input(0, b));
        Ok(())
    }

    /// The rows of the screen that changed since the last call, as `{width, height, top,
    /// rows, pixels}` (`pixels`: RGBA bytes of rows `top..top+rows`, for `ImageData`), or
    /// `undefined` when nothing changed.
    pub fn frame(&mut self) -> JsValue {
        let force = std::mem::take(&mut self.force_frame);
        let m = self.vm.machine_mut();
        let now = m.now();
        let vga = &mut m.board_mut().vga;
        let dirty = vga.render(now).map(|f| f.dirty_rows);
        let frame = vga.frame();
        let (width, height) = (frame.width, frame.height);
        let rows = match dirty {
            _ if force => 0..height,
            Some(r) => r.start.min(height)..r.end.min(height),
            None => return JsValue::UNDEFINED,
        };
        let (start, end) = (rows.start, rows.end.max(rows.start));
        let Some(px) = frame.pixels.get(start * width..end * width) else {
            return JsValue::UNDEFINED;
        };
        if px.is_empty() {
            return JsValue::UNDEFINED;
        }
        let mut bytes = Vec::with_capacity(px.len() * 4);
        for p in px {
            bytes.extend_from_slice(&p.to_le_bytes());
        }
        let o = Object::new();
        set(&o, "width", width as u32);
        set(&o, "height", height as u32);
        set(&o, "top", start as u32);
        set(&o, "rows", (end - start) as u32);
        set(&o, "pixels", Uint8ClampedArray::from(bytes.as_slice()));
        o.into()
    }

    /// Keyboard input: PC/XT set-1 scancode bytes (make and break codes, `0xE0` prefixes).
    pub fn key(&mut self, codes: &[u8]) {
        self.vm.machine_mut().key_event(codes);
    }

    /// Mouse input: relative motion (`dy` positive = up), wheel, buttons (bit 0 left, 1 right,
    /// 2 middle).
    pub fn mouse(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.vm.machine_mut().mouse_event(dx, dy, dz, buttons & 7);
    }

    /// Opens a QMP session: `negotiate` = socket-like (greeting, then `qmp_capabilities`);
    /// otherwise the page door (command mode at once, no greeting).
    pub fn session_open(&mut self, negotiate: bool) -> u32 {
        u32::try_from(self.vm.open_session(negotiate)).unwrap_or(u32::MAX)
    }

    /// Feeds client bytes to a session and runs every complete command. `transfer` is the
    /// transferable (MessagePort, stream, File) sent along with the bytes, or `null`: the
    /// browser's passed fd, which a `getfd NAME` among these commands stores under NAME
    /// (otherwise it is released once the bytes are processed).
    pub fn session_feed(&mut self, id: u32, data: &[u8], transfer: JsValue) {
        let fds = if transfer.is_undefined() || transfer.is_null() {
            Vec::new()
        } else {
            vec![wasm86_vmm::fds::PassedFd::new(transfer)]
        };
        self.vm.feed_with_fds(id as usize, data, fds);
        // A command may have rendered the screen (screendump) and consumed its changes.
        self.force_frame = true;
    }

    /// Output waiting for a session (UTF-8 JSON lines ending in CRLF).
    pub fn session_take(&mut self, id: u32) -> Vec<u8> {
        self.vm.take_output(id as usize).into_bytes()
    }

    /// Closes a session.
    pub fn session_close(&mut self, id: u32) {
        self.vm.close_session(id as usize);
    }

    /// Files written (by `screendump`, `memsave`, `pmemsave`) since the last call, as an array
    /// of `{name, data: Uint8Array}`.
    pub fn take_files(&mut self) -> Array {
        let out = Array::new();
        for (name, data) in self.files.borrow_mut().take_changed() {
            let o = Object::new();
            set(&o, "name", name);
            set(&o, "data", Uint8Array::from(data.as_slice()));
            out.push(&o);
        }
        out
    }

    /// Removes a file from the store (freeing its share of the cap); returns whether it
    /// existed.
    pub fn remove_file(&mut self, name: &str) -> bool {
        self.files.borrow_mut().remove(name)
    }

    /// Makes an image (a file the user picked or dropped) available by `name` to QMP
    /// `change DEVICE NAME`. Replaces an image of the same name.
    pub fn put_image(&mut self, name: &str, data: Vec<u8>) -> Result<(), JsError> {
        if name.is_empty() || name.len() > crate::files::MAX_NAME_LEN {
            return Err(JsError::new("image name: 1 to 255 bytes"));
        }
        self.images.borrow_mut().insert(name.to_string(), data);
        Ok(())
    }

    /// Makes the image at `url`, of `size` bytes (the worker asked with HEAD), available to
    /// QMP `change DEVICE URL`: the medium is then read on demand, its ranges coming through
    /// [`WasmVm::take_fetches`] under keys `change-N`.
    pub fn put_remote_image(&mut self, url: &str, size: f64) -> Result<(), JsError> {
        if url.is_empty() || url.len() > 4096 {
            return Err(JsError::new("image URL: 1 to 4096 bytes"));
        }
        let ok = size.is_finite()
            && size >= 1.0
            && size.fract() == 0.0
            && size <= crate::remote::MAX_REMOTE_SIZE as f64;
        if !ok {
            return Err(JsError::new(&format!(
                "image size {size}: a whole number of bytes from 1 to 2^48"
            )));
        }
        self.urls.borrow_mut().insert(url.to_string(), size as u64);
        Ok(())
    }

    /// Names of the images given with [`WasmVm::put_image`] and [`WasmVm::put_remote_image`],
    /// as a JSON array.
    pub fn image_names(&self) -> String {
        let mut names: Vec<String> = self.images.borrow().keys().cloned().collect();
        names.extend(self.urls.borrow().keys().cloned());
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
    }

    /// The byte ranges the drives read from URLs want since the last call, as an array of
    /// `{drive, url, offset, len}`: fetch each (`Range: bytes=offset-(offset+len-1)`) and
    /// answer it once with [`WasmVm::deliver`] or [`WasmVm::fail_fetch`].
    pub fn take_fetches(&mut self) -> Array {
        let out = Array::new();
        for f in self.remote.borrow().take_fetches() {
            let o = Object::new();
            set(&o, "drive", f.drive);
            set(&o, "url", f.url);
            set(&o, "offset", f.offset as f64);
            set(&o, "len", f.len as u32);
            out.push(&o);
        }
        out
    }

    /// The bytes of the fetch at `offset` of `drive`. Throws (and fails the fetch, so the
    /// guest's read gets an I/O error) when the length is not the one asked for.
    pub fn deliver(&mut self, drive: &str, offset: f64, data: &[u8]) -> Result<(), JsError> {
        self.remote
            .borrow()
            .deliver(drive, offset, data)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The fetch at `offset` of `drive` failed: the guest's reads that need it get an I/O
    /// error.
    pub fn fail_fetch(&mut self, drive: &str, offset: f64, error: &str) -> Result<(), JsError> {
        self.remote
            .borrow()
            .fail(drive, offset, error)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Counters of the drives read from URLs: `{DRIVE: {fetches, bytes_requested,
    /// bytes_delivered, failures, cached_blocks, evictions}}`.
    pub fn remote_stats(&self) -> JsValue {
        let out = Object::new();
        for (drive, st) in self.remote.borrow().stats() {
            let o = Object::new();
            set(&o, "fetches", st.fetches as f64);
            set(&o, "bytes_requested", st.bytes_requested as f64);
            set(&o, "bytes_delivered", st.bytes_delivered as f64);
            set(&o, "failures", st.failures as f64);
            set(&o, "cached_blocks", st.cached_blocks as f64);
            set(&o, "evictions", st.evictions as f64);
            set(&out, &drive, o);
        }
        out.into()
    }

    /// The command table with argument names, types and optionality, as JSON (for the
    /// console's completion): see [`crate::command_table`].
    pub fn command_table(&self) -> String {
        crate::command_table().to_string()
    }

    /// The names of the registered QMP commands as a JSON array.
    pub fn command_names(&self) -> String {
        serde_json::to_string(&self.vm.command_names()).unwrap_or_else(|_| "[]".into())
    }
}
