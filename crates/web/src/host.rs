//! The worker's [`Host`]: wall clock from the page's clock, files into the [`FileStore`].

use crate::files::FileStore;
use crate::remote::RemoteDrives;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use wasm86_block::{BlockBackend, BlockError, MemBackend, Overlay};
use wasm86_vmm::Host;

/// Images the page supplied by name (picked or dropped files) for `change`.
pub type Images = Rc<RefCell<BTreeMap<String, Vec<u8>>>>;

/// Images the page registered by URL for `change` (URL -> size), read on demand.
pub type UrlImages = Rc<RefCell<BTreeMap<String, u64>>>;

/// The value `query-cpus` reports as `thread_id` in a browser. A Web Worker has no OS thread
/// id that a page could use; wasm86 reports 1 for the worker that runs the VM (and would
/// number further vCPU workers 2, 3, ...).
pub const WORKER_THREAD_ID: i64 = 1;

/// The host of a VM in a Web Worker.
pub struct WebHost {
    clock_ms: Box<dyn Fn() -> f64>,
    files: Rc<RefCell<FileStore>>,
    images: Images,
    urls: UrlImages,
    remote: Rc<RefCell<RemoteDrives>>,
}

impl WebHost {
    /// A host whose wall clock is `clock_ms` (ms since the Unix epoch, as `Date.now()`), whose
    /// files go to `files` (shared with the adapter that hands them to the page), and whose
    /// `change` opens the page's `images` (else a file of the store) by name.
    pub fn new(
        clock_ms: Box<dyn Fn() -> f64>,
        files: Rc<RefCell<FileStore>>,
        images: Images,
    ) -> WebHost {
        WebHost {
            clock_ms,
            files,
            images,
            urls: UrlImages::default(),
            remote: Rc::default(),
        }
    }

    /// Lets `change` open the images registered in `urls`: each becomes a medium of `remote`
    /// read on demand (the worker answers its fetches).
    pub fn with_urls(mut self, urls: UrlImages, remote: Rc<RefCell<RemoteDrives>>) -> WebHost {
        self.urls = urls;
        self.remote = remote;
        self
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

    /// `change DEVICE NAME`: NAME is an image the page supplied, a URL the page registered
    /// (read on demand), or a file of the store (a `memsave` output, say). Guest writes to a
    /// disk or floppy stay in the VM. Host paths and unregistered URLs are not reachable.
    fn open_block(
        &mut self,
        name: &str,
        read_only: bool,
    ) -> Result<Box<dyn BlockBackend>, BlockError> {
        let by_url = self.urls.borrow().get(name).copied();
        if let (false, Some(size)) = (self.images.borrow().contains_key(name), by_url) {
            let shared = self
                .remote
                .borrow_mut()
                .add_medium(name, size)
                .map_err(|e| BlockError::OpenFileFailed {
                    filename: name.to_string(),
                    reason: e.to_string(),
                })?;
            return Ok(if read_only {
                Box::new(shared)
            } else {
                Box::new(Overlay::new(Box::new(shared)))
            });
        }
        let data = self
            .images
            .borrow()
            .get(name)
            .cloned()
            .or_else(|| self.files.borrow().get(name).map(<[u8]>::to_vec));
        match data {
            Some(d) => Ok(Box::new(MemBackend::new(d, read_only, name.to_string()))),
            None => Err(BlockError::OpenFileFailed {
                filename: name.to_string(),
                reason: "no image of that name was given to the page".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_clock_files_and_thread_id() {
        let files = Rc::new(RefCell::new(FileStore::new(8)));
        let images = Images::default();
        let mut h = WebHost::new(Box::new(|| 1_700_000_000_123.5), files.clone(), images);
        assert_eq!(h.wall_clock_us(), 1_700_000_000_123_500);
        assert_eq!(h.thread_id(), WORKER_THREAD_ID);
        h.write_file("a", b"1234").unwrap();
        let e = h.write_file("b", b"12345").unwrap_err();
        assert!(e.contains("file store is full"), "{e}");
        assert_eq!(files.borrow().get("a"), Some(&b"1234"[..]));
        let nan = WebHost::new(Box::new(|| f64::NAN), files, Images::default());
        assert_eq!(nan.wall_clock_us(), 0);
    }

    #[test]
    fn open_block_finds_page_images_then_store_files() {
        let files = Rc::new(RefCell::new(FileStore::new(1 << 20)));
        let images = Images::default();
        images.borrow_mut().insert("disc.iso".into(), vec![7; 4096]);
        files.borrow_mut().write("dump.bin", &[1; 512]).unwrap();
        let mut h = WebHost::new(Box::new(|| 0.0), files, images);
        let b = h.open_block("disc.iso", true).unwrap();
        assert_eq!(b.size(), 4096);
        assert!(b.read_only());
        assert_eq!(h.open_block("dump.bin", false).unwrap().size(), 512);
        for missing in ["/etc/passwd", "http://example.com/x.iso", "nope"] {
            let e = h.open_block(missing, true).err().expect("refused");
            assert_eq!(e.to_string(), format!("Could not open '{missing}'"));
        }
        // A URL the page registered opens as a medium read on demand.
        let urls = UrlImages::default();
        let remote = Rc::new(RefCell::new(RemoteDrives::new()));
        urls.borrow_mut().insert("http://h/cd.iso".into(), 8 * 2048);
        let mut h = h.with_urls(urls, remote.clone());
        let cd = h.open_block("http://h/cd.iso", true).unwrap();
        assert_eq!((cd.size(), cd.read_only()), (8 * 2048, true));
        assert_eq!(cd.file_name(), "http://h/cd.iso");
        let hd = h.open_block("http://h/cd.iso", false).unwrap();
        assert!(!hd.read_only(), "an overlay takes the guest's writes");
        assert_eq!(remote.borrow().stats().len(), 2);
        let e = h.open_block("http://example.com/x.iso", true).err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("Could not open 'http://example.com/x.iso'"),
            "an unregistered URL is still refused"
        );
    }
}
