//! Drive images read lazily from a URL: the worker's side of [`wasm86_block::RangeBackend`].
//!
//! The page gives a drive as `{url, size}` instead of its bytes (the worker learnt the size
//! with a `HEAD`). The drive gets a [`RangeBackend`] under an [`wasm86_block::Overlay`] (guest
//! writes stay in memory), and [`RemoteDrives`] keeps the host's handle: after each run slice
//! the worker takes the wanted ranges ([`RemoteDrives::take_fetches`]), fetches them with
//! `Range: bytes=a-b`, and hands back the bytes ([`RemoteDrives::deliver`]) or the error
//! ([`RemoteDrives::fail`]). The VM keeps running meanwhile; the IDE request completes when
//! its blocks are there.

use wasm86_block::{Fetch, RangeBackend, RangeError, RangeStats, SharedRange};

/// Largest remote image accepted, in bytes (2^48; sizes also cross JavaScript as numbers).
pub const MAX_REMOTE_SIZE: u64 = 1 << 48;

/// The drives an image may be read lazily for, as named in the page's `files`.
pub const REMOTE_DRIVES: [&str; 3] = ["cdrom", "hda", "fda"];

/// Why a remote drive or an answer to a fetch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// The drive name is not one of [`REMOTE_DRIVES`].
    #[error("files.{0} cannot be read from a URL (only {list})", list = REMOTE_DRIVES.join(", "))]
    NotADrive(String),
    /// The URL is empty or too long.
    #[error("files.{0}.url must be a non-empty string of at most 4096 bytes")]
    BadUrl(String),
    /// The size is not a whole number of bytes in range.
    #[error("files.{drive}.size {size} must be a whole number of bytes from 1 to 2^48")]
    BadSize {
        /// The drive.
        drive: String,
        /// The size given.
        size: f64,
    },
    /// The same drive was given twice.
    #[error("files.{0} is given twice")]
    Twice(String),
    /// No remote drive of that name.
    #[error("no drive '{0}' is read from a URL")]
    NoSuchDrive(String),
    /// An offset that is not a whole number of bytes.
    #[error("fetch offset {0} is not a whole number of bytes")]
    BadOffset(f64),
    /// The backend refused the answer.
    #[error("{drive}: {source}")]
    Range {
        /// The drive.
        drive: String,
        /// Why.
        source: RangeError,
    },
}

/// One range the worker must fetch for a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFetch {
    /// The drive (`hda`, `cdrom`, `fda`).
    pub drive: String,
    /// The image's URL.
    pub url: String,
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: usize,
}

/// Prefix of the keys of media inserted by QMP `change` (`change-1`, `change-2` ...).
pub const CHANGE_PREFIX: &str = "change-";

/// The drives read from URLs, with the host's handle on each.
#[derive(Debug, Default, Clone)]
pub struct RemoteDrives {
    /// (key, url, handle): the key is the drive of the page's `files` or a `change-N` medium.
    drives: Vec<(String, String, SharedRange)>,
    changes: u64,
}

fn whole(x: f64) -> Option<u64> {
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= MAX_REMOTE_SIZE as f64)
        .then_some(x as u64)
}

impl RemoteDrives {
    /// No drives.
    pub fn new() -> RemoteDrives {
        RemoteDrives::default()
    }

    /// Adds drive `drive` (one of [`REMOTE_DRIVES`]) read from `url`, of `size` bytes; returns
    /// the backend to attach.
    pub fn add(&mut self, drive: &str, url: &str, size: f64) -> Result<SharedRange, RemoteError> {
        if !REMOTE_DRIVES.contains(&drive) && !drive.starts_with(CHANGE_PREFIX) {
            return Err(RemoteError::NotADrive(drive.to_string()));
        }
        if url.is_empty() || url.len() > 4096 {
            return Err(RemoteError::BadUrl(drive.to_string()));
        }
        let Some(len) = whole(size).filter(|&n| n > 0) else {
            return Err(RemoteError::BadSize {
                drive: drive.to_string(),
                size,
            });
        };
        if self.get(drive).is_some() {
            return Err(RemoteError::Twice(drive.to_string()));
        }
        let shared = SharedRange::new(RangeBackend::new(url, len));
        self.drives
            .push((drive.to_string(), url.to_string(), shared.clone()));
        Ok(shared)
    }

    /// A medium read from `url` for QMP `change`: keyed `change-N`. Media that the guest no
    /// longer holds (ejected or replaced) and that owe nothing are forgotten at the next call.
    pub fn add_medium(&mut self, url: &str, size: u64) -> Result<SharedRange, RemoteError> {
        self.prune();
        self.changes += 1;
        let key = format!("{CHANGE_PREFIX}{}", self.changes);
        self.add(&key, url, size as f64)
    }

    /// Forgets the `change` media nobody else holds any more.
    fn prune(&mut self) {
        self.drives.retain(|(key, _, shared)| {
            !key.starts_with(CHANGE_PREFIX) || shared.handles() > 1 || shared.outstanding() > 0
        });
    }

    /// The handle of a drive.
    pub fn get(&self, drive: &str) -> Option<&SharedRange> {
        self.drives
            .iter()
            .find(|(d, _, _)| d == drive)
            .map(|(_, _, s)| s)
    }

    /// Whether no drive is remote.
    pub fn is_empty(&self) -> bool {
        self.drives.is_empty()
    }

    /// The ranges wanted by all drives since the last call.
    pub fn take_fetches(&self) -> Vec<RemoteFetch> {
        let mut out = Vec::new();
        for (drive, url, shared) in &self.drives {
            for Fetch { offset, len } in shared.take_fetches() {
                out.push(RemoteFetch {
                    drive: drive.clone(),
                    url: url.clone(),
                    offset,
                    len,
                });
            }
        }
        out
    }

    fn find(&self, drive: &str, offset: f64) -> Result<(&SharedRange, u64), RemoteError> {
        let shared = self
            .get(drive)
            .ok_or_else(|| RemoteError::NoSuchDrive(drive.to_string()))?;
        let offset = whole(offset).ok_or(RemoteError::BadOffset(offset))?;
        Ok((shared, offset))
    }

    /// The bytes of the fetch at `offset` of `drive`.
    pub fn deliver(&self, drive: &str, offset: f64, data: &[u8]) -> Result<(), RemoteError> {
        let (shared, offset) = self.find(drive, offset)?;
        shared
            .deliver(offset, data)
            .map_err(|source| RemoteError::Range {
                drive: drive.to_string(),
                source,
            })
    }

    /// The fetch at `offset` of `drive` failed with `error`.
    pub fn fail(&self, drive: &str, offset: f64, error: &str) -> Result<(), RemoteError> {
        let (shared, offset) = self.find(drive, offset)?;
        shared
            .fail(offset, error)
            .map_err(|source| RemoteError::Range {
                drive: drive.to_string(),
                source,
            })
    }

    /// Each drive's counters.
    pub fn stats(&self) -> Vec<(String, RangeStats)> {
        self.drives
            .iter()
            .map(|(d, _, s)| (d.clone(), s.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm86_block::{BlockBackend, BlockRequest};

    #[test]
    fn change_media_get_their_own_keys_and_are_forgotten_once_ejected() {
        let mut r = RemoteDrives::new();
        let a = r.add_medium("http://h/a.iso", 4096).unwrap();
        let mut b = r.add_medium("http://h/a.iso", 4096).unwrap();
        assert_eq!(r.stats().len(), 2);
        assert_eq!(r.stats()[1].0, "change-2");
        drop(a); // ejected, nothing owed: forgotten at the next insertion
        b.submit(
            1,
            BlockRequest::Read {
                offset: 0,
                len: 2048,
            },
        );
        drop(b); // ejected while a fetch is wanted: kept until it is answered
        let c = r.add_medium("http://h/c.iso", 2048).unwrap();
        let keys: Vec<String> = r.stats().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["change-2", "change-3"]);
        let f = r.take_fetches();
        assert_eq!(f[0].drive, "change-2");
        r.deliver("change-2", 0.0, &[0; 4096]).unwrap();
        let _keep = c;
        r.add_medium("http://h/d.iso", 2048).unwrap();
        let keys: Vec<String> = r.stats().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["change-3", "change-4"]);
    }

    #[test]
    fn drives_are_checked() {
        let mut r = RemoteDrives::new();
        assert!(r.is_empty());
        let e = r.add("bios", "/b", 512.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "files.bios cannot be read from a URL (only cdrom, hda, fda)"
        );
        assert_eq!(
            r.add("hda", "", 512.0).err(),
            Some(RemoteError::BadUrl("hda".into()))
        );
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY, 1e20] {
            assert!(
                matches!(r.add("hda", "/d", bad), Err(RemoteError::BadSize { .. })),
                "{bad}"
            );
        }
        let hd = r.add("hda", "/images/d.img", 1_048_576.0).unwrap();
        assert_eq!(hd.size(), 1 << 20);
        assert_eq!(hd.file_name(), "/images/d.img");
        assert_eq!(
            r.add("hda", "/other", 512.0).err(),
            Some(RemoteError::Twice("hda".into()))
        );
        r.add("cdrom", "/c.iso", 4096.0).unwrap();
        assert!(!r.is_empty());
    }

    #[test]
    fn fetches_carry_drive_and_url_and_answers_reach_the_backend() {
        let mut r = RemoteDrives::new();
        let mut hd = r.add("hda", "/hd.img", 1_048_576.0).unwrap();
        let mut cd = r.add("cdrom", "/cd.iso", 8192.0).unwrap();
        hd.submit(
            1,
            BlockRequest::Read {
                offset: 0,
                len: 512,
            },
        );
        cd.submit(
            2,
            BlockRequest::Read {
                offset: 2048,
                len: 2048,
            },
        );
        let f = r.take_fetches();
        assert_eq!(
            f,
            vec![
                RemoteFetch {
                    drive: "hda".into(),
                    url: "/hd.img".into(),
                    offset: 0,
                    len: 65536
                },
                RemoteFetch {
                    drive: "cdrom".into(),
                    url: "/cd.iso".into(),
                    offset: 0,
                    len: 8192
                },
            ]
        );
        assert!(r.take_fetches().is_empty());
        r.deliver("hda", 0.0, &[5; 65536]).unwrap();
        assert_eq!(hd.poll()[0].result, Ok(vec![5; 512]));
        r.fail("cdrom", 0.0, "HTTP 404").unwrap();
        assert!(cd.poll()[0].result.is_err());
        assert_eq!(
            r.deliver("fda", 0.0, &[]),
            Err(RemoteError::NoSuchDrive("fda".into()))
        );
        assert_eq!(r.deliver("hda", 0.5, &[]), Err(RemoteError::BadOffset(0.5)));
        let e = r.deliver("hda", 0.0, &[1]).unwrap_err();
        assert_eq!(e.to_string(), "hda: no fetch at offset 0 is outstanding");
        let stats = r.stats();
        assert_eq!(stats[0].0, "hda");
        assert_eq!(stats[0].1.bytes_delivered, 65536);
        assert_eq!(stats[1].1.failures, 1);
    }

    include!("../tests/support/read_sector_bios.rs");

    #[test]
    fn a_guest_reads_a_remote_disk_and_runs_while_the_fetch_is_outstanding() {
        use crate::config::{build, Images, WebConfig};
        use crate::files::FileStore;
        use crate::host::WebHost;
        use std::cell::RefCell;
        use std::rc::Rc;
        use wasm86_vmm::Vm;

        let mut remote = RemoteDrives::new();
        remote.add("hda", "/images/disk.img", 4_194_304.0).unwrap();
        let images = Images {
            bios: Some(read_sector_bios()),
            remote: remote.clone(),
            ..Images::default()
        };
        let cfg = WebConfig {
            memory_mib: Some(16),
            deterministic: Some(true),
            ..WebConfig::default()
        };
        let (machine, vc) = build(&cfg, images, 0.0).unwrap();
        let files = Rc::new(RefCell::new(FileStore::default()));
        let host = WebHost::new(Box::new(|| 0.0), files, Default::default());
        let mut vm = Vm::new(machine, vc, Box::new(host));
        let page = vm.open_session(false);
        vm.feed(page, br#"{"execute": "query-block"}"#);
        let out = vm.take_output(page);
        assert!(out.contains(r#""file": "/images/disk.img""#), "{out}");

        for _ in 0..5 {
            vm.step(100_000);
        }
        let fetches = remote.take_fetches();
        assert_eq!(
            fetches,
            vec![RemoteFetch {
                drive: "hda".into(),
                url: "/images/disk.img".into(),
                offset: 0,
                len: 65536
            }]
        );
        // The guest polls the busy controller: it keeps running, no bytes yet.
        let (t0, i0) = (vm.machine_mut().now(), vm.machine_mut().icount());
        for _ in 0..5 {
            vm.step(100_000);
        }
        assert!(
            vm.machine_mut().icount() >= i0 + 400_000,
            "the CPU kept running"
        );
        assert!(vm.machine_mut().now() > t0, "virtual time kept going");
        assert!(vm.machine_mut().take_serial_output(0).is_empty());
        assert!(remote.take_fetches().is_empty(), "nothing is asked twice");

        let mut block = vec![0u8; 65536];
        block[..2].copy_from_slice(b"OK");
        remote.deliver("hda", 0.0, &block).unwrap();
        for _ in 0..5 {
            vm.step(100_000);
        }
        assert_eq!(vm.machine_mut().take_serial_output(0), b"OK\n");
        assert_eq!(remote.stats()[0].1.fetches, 1);
    }
}
