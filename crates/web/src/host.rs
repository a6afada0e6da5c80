//! The worker's [`Host`]: wall clock from the page's clock, files into the [`FileStore`].

use crate::files::FileStore;
use std::cell::RefCell;
use std::rc::Rc;
use wasm86_vmm::Host;

/// The value `query-cpus` reports as `thread_id` in a browser. A Web Worker has no OS thread
/// id that a page could use; wasm86 reports 1 for the worker that runs the VM (and would
/// number further vCPU workers 2, 3, ...).
pub const WORKER_THREAD_ID: i64 = 1;

/// The host of a VM in a Web Worker.
pub struct WebHost {
    clock_ms: Box<dyn Fn() -> f64>,
    files: Rc<RefCell<FileStore>>,
}

impl WebHost {
    /// A host whose wall clock is `clock_ms` (ms since the Unix epoch, as `Date.now()`) and
    /// whose files go to `files` (shared with the adapter that hands them to the page).
    pub fn new(clock_ms: Box<dyn Fn() -> f64>, files: Rc<RefCell<FileStore>>) -> WebHost {
        WebHost { clock_ms, files }
    }
}

impl Host for WebHost {
    fn wall_clock_us(&self) -> i64 {
        let ms = (self.clock_ms)();
        if ms.is_finite() {
            (ms * 1000.0) as i64
        } else {
            0
        }
    }

    fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), String> {
        self.files
            .borrow_mut()
            .write(name, data)
            .map_err(|e| e.to_string())
    }

    fn thread_id(&self) -> i64 {
        WORKER_THREAD_ID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_clock_files_and_thread_id() {
        let files = Rc::new(RefCell::new(FileStore::new(8)));
        let mut h = WebHost::new(Box::new(|| 1_700_000_000_123.5), files.clone());
        assert_eq!(h.wall_clock_us(), 1_700_000_000_123_500);
        assert_eq!(h.thread_id(), WORKER_THREAD_ID);
        h.write_file("a", b"1234").unwrap();
        let e = h.write_file("b", b"12345").unwrap_err();
        assert!(e.contains("file store is full"), "{e}");
        assert_eq!(files.borrow().get("a"), Some(&b"1234"[..]));
        let nan = WebHost::new(Box::new(|| f64::NAN), files);
        assert_eq!(nan.wall_clock_us(), 0);
    }
}
