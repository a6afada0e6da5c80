//! A read-only remote image of known size, read lazily in fixed blocks (HTTP range requests
//! in the browser).
//!
//! The backend never does I/O itself: it tells its host which byte ranges it wants and the
//! host delivers them when they arrive, so the same code serves a browser worker (`fetch`
//! with a `Range` header) and native tests.
//!
//! - [`BlockBackend::submit`] of a read queues it. Each block of the image it touches that is
//!   neither cached, nor being fetched, nor already wanted, goes on the *wanted* list.
//! - The host takes the wanted list with [`RangeBackend::take_fetches`]: adjacent blocks are
//!   merged into one [`Fetch`] of at most [`MAX_FETCH_BYTES`]. From then on those blocks are
//!   *in flight* and are never asked for again while they are.
//! - The host answers each fetch exactly once, with [`RangeBackend::deliver`] (the bytes) or
//!   [`RangeBackend::fail`] (an error text). A delivery of the wrong length, or for a range
//!   that was not asked for, is refused with a [`RangeError`]; a wrong length also fails the
//!   fetch, so the requests that wait on it complete with [`BlockError::Io`] rather than hang.
//! - [`BlockBackend::poll`] returns every read whose blocks are all cached, and every read
//!   that a failed fetch touched (as [`BlockError::Io`]). A failed block is not cached: the
//!   guest's next read of it (a driver retry) wants it again.
//!
//! # Block size
//! [`BLOCK_SIZE`] is 64 KiB: the largest transfer SeaBIOS, boot loaders and Linux's IDE driver
//! commonly ask for in one command is 64-128 KiB, so one request usually needs one or two
//! round trips; a finer grain multiplies the round trips (each costs a few ms in a browser even
//! on loopback) while a coarser one transfers more bytes the guest never reads. A 64 MiB disk
//! has 1024 blocks.
//!
//! # Cache
//! Delivered blocks stay in memory. The cache holds at most `cache_cap` bytes
//! ([`DEFAULT_CACHE_CAP`], 256 MiB, unless given): beyond that the least recently used blocks
//! that no waiting request needs are dropped (and would be fetched again if read again). An
//! image smaller than the cap, such as a 64 MiB disk, is therefore never fetched twice.
//!
//! # Writes
//! The image is read-only: writes fail with [`BlockError::ReadOnly`]. Put an
//! [`crate::Overlay`] over it to let the guest write (the writes stay in memory).
//!
//! # Sharing with the host
//! The machine owns its drives as `Box<dyn BlockBackend>`, so the host keeps a
//! [`SharedRange`]: a cloneable handle on the same backend that implements [`BlockBackend`]
//! too. One clone goes into the drive (usually under an [`crate::Overlay`]), the other stays
//! with the host, which calls `take_fetches`/`deliver`/`fail` on it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{
    check_range, round_up_sector, BlockBackend, BlockError, BlockRequest, Completion, RequestId,
};

/// Size of a cached block, in bytes (see the module documentation).
pub const BLOCK_SIZE: u64 = 64 * 1024;
/// Largest range one [`Fetch`] asks for, in bytes (16 blocks).
pub const MAX_FETCH_BYTES: u64 = 16 * BLOCK_SIZE;
/// Default bound of the block cache, in bytes.
pub const DEFAULT_CACHE_CAP: u64 = 256 << 20;

/// One range the host must fetch: bytes `offset .. offset + len` of the remote image
/// (an HTTP `Range: bytes=offset-(offset+len-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// First byte; a multiple of [`BLOCK_SIZE`].
    pub offset: u64,
    /// Number of bytes; never 0, never beyond the remote image's length.
    pub len: usize,
}

impl Fetch {
    /// The last byte, inclusive (for a `Range` header).
    pub fn last(&self) -> u64 {
        self.offset + self.len as u64 - 1
    }
}

/// Why a delivery or failure report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// No fetch starting at this offset is outstanding (never asked for, or already answered).
    #[error("no fetch at offset {0} is outstanding")]
    UnknownFetch(u64),
    /// The delivered bytes do not have the length the fetch asked for; the fetch has failed.
    #[error("fetch at offset {offset} asked for {expected} bytes but {got} were delivered")]
    WrongLength {
        /// The fetch's offset.
        offset: u64,
        /// Bytes asked for.
        expected: usize,
        /// Bytes delivered.
        got: usize,
    },
}

/// Counters of a [`RangeBackend`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeStats {
    /// Fetches handed to the host.
    pub fetches: u64,
    /// Bytes asked for by those fetches.
    pub bytes_requested: u64,
    /// Bytes delivered (accepted deliveries only).
    pub bytes_delivered: u64,
    /// Fetches that failed (reported by the host or refused deliveries).
    pub failures: u64,
    /// Blocks in the cache now.
    pub cached_blocks: u64,
    /// Blocks dropped from the cache to keep it under its cap.
    pub evictions: u64,
}

#[derive(Debug)]
struct PendingRead {
    id: RequestId,
    offset: u64,
    len: usize,
}

/// A read-only remote image read lazily in blocks; see the module documentation.
#[derive(Debug)]
pub struct RangeBackend {
    name: String,
    /// Length of the remote image.
    remote_len: u64,
    /// `remote_len` rounded up to a sector (the padding reads as zeros).
    size: u64,
    cache_cap: u64,
    /// Block index -> (bytes, last use). The bytes of the last block may be shorter.
    cache: HashMap<u64, (Vec<u8>, u64)>,
    cache_bytes: u64,
    wanted: BTreeSet<u64>,
    /// Outstanding fetches: offset -> length.
    fetching: BTreeMap<u64, usize>,
    /// Blocks of outstanding fetches.
    in_flight: BTreeSet<u64>,
    pending: Vec<PendingRead>,
    done: Vec<Completion>,
    clock: u64,
    stats: RangeStats,
}

impl RangeBackend {
    /// A remote image of `remote_len` bytes, named `name` (its URL) in `query-block`, with the
    /// default cache bound.
    pub fn new(name: impl Into<String>, remote_len: u64) -> RangeBackend {
        RangeBackend::with_cache_cap(name, remote_len, DEFAULT_CACHE_CAP)
    }

    /// As [`RangeBackend::new`] with a cache bound of `cache_cap` bytes (at least one block is
    /// always kept for each waiting request, whatever the bound).
    pub fn with_cache_cap(
        name: impl Into<String>,
        remote_len: u64,
        cache_cap: u64,
    ) -> RangeBackend {
        RangeBackend {
            name: name.into(),
            remote_len,
            size: round_up_sector(remote_len),
            cache_cap,
            cache: HashMap::new(),
            cache_bytes: 0,
            wanted: BTreeSet::new(),
            fetching: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            pending: Vec::new(),
            done: Vec::new(),
            clock: 0,
            stats: RangeStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> RangeStats {
        RangeStats {
            cached_blocks: self.cache.len() as u64,
            ..self.stats
        }
    }

    /// Whether the host has fetches to take.
    pub fn has_fetches(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// Fetches wanted or outstanding (0: the host owes this backend nothing).
    pub fn outstanding(&self) -> usize {
        self.wanted.len() + self.fetching.len()
    }

    /// Bytes of the remote image in block `b` (the last block may be short; 0 beyond the end).
    fn block_len(&self, b: u64) -> u64 {
        let start = b.saturating_mul(BLOCK_SIZE);
        self.remote_len.saturating_sub(start).min(BLOCK_SIZE)
    }

    /// Blocks holding remote bytes of `[offset, offset+len)` (the sector padding past the
    /// remote length needs none).
    fn blocks_of(&self, offset: u64, len: usize) -> std::ops::Range<u64> {
        let end = offset.saturating_add(len as u64).min(self.remote_len);
        if len == 0 || offset >= end {
            return 0..0;
        }
        offset / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE)
    }

    /// Takes the wanted blocks as fetches: runs of adjacent blocks merged, each at most
    /// [`MAX_FETCH_BYTES`]. The blocks are in flight until delivered or failed.
    pub fn take_fetches(&mut self) -> Vec<Fetch> {
        let max_blocks = MAX_FETCH_BYTES / BLOCK_SIZE;
        let mut out: Vec<Fetch> = Vec::new();
        let mut run: Option<(u64, u64)> = None; // (first block, count)
        for b in std::mem::take(&mut self.wanted) {
            self.in_flight.insert(b);
            run = match run {
                Some((first, n)) if first + n == b && n < max_blocks => Some((first, n + 1)),
                Some((first, n)) => {
                    out.push(self.fetch_of(first, n));
                    Some((b, 1))
                }
                None => Some((b, 1)),
            };
        }
        if let Some((first, n)) = run {
            out.push(self.fetch_of(first, n));
        }
        for f in &out {
            self.fetching.insert(f.offset, f.len);
            self.stats.fetches += 1;
            self.stats.bytes_requested += f.len as u64;
        }
        out
    }

    fn fetch_of(&self, first: u64, n: u64) -> Fetch {
        let len: u64 = (first..first + n).map(|b| self.block_len(b)).sum();
        Fetch {
            offset: first * BLOCK_SIZE,
            len: len as usize,
        }
    }

    /// Delivers the bytes of the outstanding fetch at `offset`. Bytes of the wrong length fail
    /// the fetch (its waiting reads complete with an I/O error) and are refused.
    pub fn deliver(&mut self, offset: u64, data: &[u8]) -> Result<(), RangeError> {
        let Some(&expected) = self.fetching.get(&offset) else {
            return Err(RangeError::UnknownFetch(offset));
        };
        if data.len() != expected {
            let err = RangeError::WrongLength {
                offset,
                expected,
                got: data.len(),
            };
            self.fail(offset, &err.to_string())?;
            return Err(err);
        }
        self.fetching.remove(&offset);
        self.stats.bytes_delivered += data.len() as u64;
        let first = offset / BLOCK_SIZE;
        let mut at = 0usize;
        let mut b = first;
        while at < data.len() {
            let n = self.block_len(b) as usize;
            let Some(chunk) = data.get(at..at + n) else {
                break;
            };
            self.in_flight.remove(&b);
            self.clock += 1;
            if let Some((old, _)) = self.cache.insert(b, (chunk.to_vec(), self.clock)) {
                self.cache_bytes -= old.len() as u64;
            }
            self.cache_bytes += n as u64;
            at += n;
            b += 1;
        }
        self.complete_ready();
        self.evict();
        Ok(())
    }

    /// Reports that the outstanding fetch at `offset` failed with `error`: every waiting read
    /// that needs one of its blocks completes with [`BlockError::Io`].
    pub fn fail(&mut self, offset: u64, error: &str) -> Result<(), RangeError> {
        let Some(len) = self.fetching.remove(&offset) else {
            return Err(RangeError::UnknownFetch(offset));
        };
        self.stats.failures += 1;
        let blocks = self.blocks_of(offset, len);
        for b in blocks.clone() {
            self.in_flight.remove(&b);
        }
        let mut i = 0;
        while i < self.pending.len() {
            let r = &self.pending[i];
            let rb = self.blocks_of(r.offset, r.len);
            if rb.start < blocks.end && blocks.start < rb.end {
                let r = self.pending.remove(i);
                self.done.push(Completion {
                    id: r.id,
                    result: Err(BlockError::Io(format!(
                        "{}: fetching bytes {}-{} failed: {error}",
                        self.name,
                        offset,
                        offset + len as u64 - 1
                    ))),
                });
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Completes the waiting reads whose blocks are all cached.
    fn complete_ready(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let (offset, len) = (self.pending[i].offset, self.pending[i].len);
            if self
                .blocks_of(offset, len)
                .all(|b| self.cache.contains_key(&b))
            {
                let r = self.pending.remove(i);
                let data = self.assemble(r.offset, r.len);
                self.done.push(Completion {
                    id: r.id,
                    result: Ok(data),
                });
            } else {
                i += 1;
            }
        }
    }

    /// The bytes of a read whose blocks are all cached (zeros past the remote length).
    fn assemble(&mut self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.clock += 1;
        for b in self.blocks_of(offset, len) {
            let Some((bytes, used)) = self.cache.get_mut(&b) else {
                continue;
            };
            *used = self.clock;
            let start = b * BLOCK_SIZE;
            let lo = start.max(offset);
            let hi = (start + bytes.len() as u64).min(offset + len as u64);
            if lo >= hi {
                continue;
            }
            let src = bytes.get((lo - start) as usize..(hi - start) as usize);
            let dst = out.get_mut((lo - offset) as usize..(hi - offset) as usize);
            if let (Some(src), Some(dst)) = (src, dst) {
                dst.copy_from_slice(src);
            }
        }
        out
    }

    /// Drops least recently used blocks that no waiting read needs until the cache is under
    /// its cap.
    fn evict(&mut self) {
        while self.cache_bytes > self.cache_cap {
            let needed: BTreeSet<u64> = self
                .pending
                .iter()
                .flat_map(|r| self.blocks_of(r.offset, r.len))
                .collect();
            let victim = self
                .cache
                .iter()
                .filter(|(b, _)| !needed.contains(b))
                .min_by_key(|(_, (_, used))| *used)
                .map(|(b, _)| *b);
            let Some(b) = victim else { return };
            if let Some((bytes, _)) = self.cache.remove(&b) {
                self.cache_bytes -= bytes.len() as u64;
                self.stats.evictions += 1;
            }
        }
    }

    fn submit_read(&mut self, id: RequestId, offset: u64, len: usize) {
        if let Err(e) = check_range(offset, len as u64, self.size) {
            self.done.push(Completion { id, result: Err(e) });
            return;
        }
        for b in self.blocks_of(offset, len) {
            if !self.cache.contains_key(&b) && !self.in_flight.contains(&b) {
                self.wanted.insert(b);
            }
        }
        self.pending.push(PendingRead { id, offset, len });
        self.complete_ready();
    }

    fn busy(&self, id: RequestId) -> bool {
        self.pending.iter().any(|r| r.id == id) || self.done.iter().any(|c| c.id == id)
    }
}

impl BlockBackend for RangeBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        true
    }

    fn file_name(&self) -> &str {
        &self.name
    }

    fn submit(&mut self, id: RequestId, req: BlockRequest) {
        if self.busy(id) {
            self.done.push(Completion {
                id,
                result: Err(BlockError::DuplicateId(id)),
            });
            return;
        }
        match req {
            BlockRequest::Read { offset, len } => self.submit_read(id, offset, len),
            BlockRequest::Write { .. } => self.done.push(Completion {
                id,
                result: Err(BlockError::ReadOnly),
            }),
            BlockRequest::Flush => self.done.push(Completion {
                id,
                result: Ok(Vec::new()),
            }),
        }
    }

    fn poll(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.done)
    }

    fn in_flight(&self) -> usize {
        self.pending.len() + self.done.len()
    }

    fn resize(&mut self, _new_size: u64) -> Result<(), BlockError> {
        Err(BlockError::Unsupported("http range"))
    }
}

/// A cloneable handle on one [`RangeBackend`]: one clone is the drive's backend, another
/// stays with the host that fetches. Every clone implements [`BlockBackend`].
#[derive(Debug, Clone)]
pub struct SharedRange {
    inner: Arc<Mutex<RangeBackend>>,
    name: Arc<str>,
    size: u64,
}

impl SharedRange {
    /// Shares `backend`.
    pub fn new(backend: RangeBackend) -> SharedRange {
        let name: Arc<str> = Arc::from(backend.file_name());
        let size = backend.size();
        SharedRange {
            inner: Arc::new(Mutex::new(backend)),
            name,
            size,
        }
    }

    /// The backend. A poisoned lock (a panic elsewhere while it was held) is taken over: the
    /// backend's state is consistent between calls.
    fn lock(&self) -> MutexGuard<'_, RangeBackend> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`RangeBackend::take_fetches`].
    pub fn take_fetches(&self) -> Vec<Fetch> {
        self.lock().take_fetches()
    }

    /// See [`RangeBackend::has_fetches`].
    pub fn has_fetches(&self) -> bool {
        self.lock().has_fetches()
    }

    /// See [`RangeBackend::deliver`].
    pub fn deliver(&self, offset: u64, data: &[u8]) -> Result<(), RangeError> {
        self.lock().deliver(offset, data)
    }

    /// See [`RangeBackend::fail`].
    pub fn fail(&self, offset: u64, error: &str) -> Result<(), RangeError> {
        self.lock().fail(offset, error)
    }

    /// See [`RangeBackend::stats`].
    pub fn stats(&self) -> RangeStats {
        self.lock().stats()
    }

    /// See [`RangeBackend::outstanding`].
    pub fn outstanding(&self) -> usize {
        self.lock().outstanding()
    }

    /// How many handles share the backend (1: only this one is left, for example after the
    /// guest's medium was ejected).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }
}

impl BlockBackend for SharedRange {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        true
    }

    fn file_name(&self) -> &str {
        &self.name
    }

    fn submit(&mut self, id: RequestId, req: BlockRequest) {
        self.lock().submit(id, req)
    }

    fn poll(&mut self) -> Vec<Completion> {
        self.lock().poll()
    }

    fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    fn resize(&mut self, new_size: u64) -> Result<(), BlockError> {
        self.lock().resize(new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockDevice, Overlay};

    /// A remote image whose byte `i` is `i * 7 % 251`.
    fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn read(offset: u64, len: usize) -> BlockRequest {
        BlockRequest::Read { offset, len }
    }

    /// Answers every wanted fetch from `img`; returns the fetches answered.
    fn serve(b: &mut RangeBackend, img: &[u8]) -> Vec<Fetch> {
        let fetches = b.take_fetches();
        for f in &fetches {
            let bytes = &img[f.offset as usize..f.offset as usize + f.len];
            b.deliver(f.offset, bytes).unwrap();
        }
        fetches
    }

    #[test]
    fn reads_wait_for_their_blocks_then_complete() {
        let img = image(4 * BLOCK_SIZE as usize);
        let mut b = RangeBackend::new("http://h/disk.img", img.len() as u64);
        assert!(b.read_only());
        assert_eq!(b.size(), img.len() as u64);
        // A read across the first two blocks.
        b.submit(1, read(BLOCK_SIZE - 512, 1024));
        assert!(
            b.poll().is_empty(),
            "nothing can complete before the bytes arrive"
        );
        assert_eq!(b.in_flight(), 1);
        let f = b.take_fetches();
        assert_eq!(
            f,
            vec![Fetch {
                offset: 0,
                len: 2 * BLOCK_SIZE as usize
            }]
        );
        assert_eq!(f[0].last(), 2 * BLOCK_SIZE - 1);
        assert!(b.take_fetches().is_empty(), "the wanted list was taken");
        assert!(b.poll().is_empty());
        b.deliver(0, &img[..2 * BLOCK_SIZE as usize]).unwrap();
        let c = b.poll();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, 1);
        let start = (BLOCK_SIZE - 512) as usize;
        assert_eq!(c[0].result.as_deref(), Ok(&img[start..start + 1024]));
        assert_eq!(b.in_flight(), 0);
        // Cached now: a read of the same blocks completes at once and fetches nothing.
        b.submit(2, read(100, 200));
        assert!(b.take_fetches().is_empty());
        assert_eq!(b.poll()[0].result.as_deref(), Ok(&img[100..300]));
        let s = b.stats();
        assert_eq!(
            (s.fetches, s.bytes_delivered, s.cached_blocks),
            (1, 2 * BLOCK_SIZE, 2)
        );
    }

    #[test]
    fn a_block_is_never_fetched_twice() {
        let img = image(8 * BLOCK_SIZE as usize);
        let mut b = RangeBackend::new("disk", img.len() as u64);
        let mut fetched = BTreeSet::new();
        // Overlapping reads while earlier fetches are outstanding, then served in a
        // different order than asked.
        b.submit(1, read(0, 4096));
        let f1 = b.take_fetches();
        b.submit(2, read(1000, 2 * BLOCK_SIZE as usize)); // blocks 0 (in flight), 1, 2
        b.submit(3, read(2 * BLOCK_SIZE, 512)); // block 2 (wanted already)
        let f2 = b.take_fetches();
        assert_eq!(
            f2,
            vec![Fetch {
                offset: BLOCK_SIZE,
                len: 2 * BLOCK_SIZE as usize
            }]
        );
        for f in f2.iter().chain(&f1) {
            for blk in f.offset / BLOCK_SIZE..(f.offset + f.len as u64).div_ceil(BLOCK_SIZE) {
                assert!(fetched.insert(blk), "block {blk} fetched twice");
            }
            b.deliver(f.offset, &img[f.offset as usize..f.offset as usize + f.len])
                .unwrap();
        }
        let mut c = b.poll();
        c.sort_by_key(|c| c.id);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].result.as_deref(), Ok(&img[..4096]));
        assert_eq!(
            c[1].result.as_deref(),
            Ok(&img[1000..1000 + 2 * BLOCK_SIZE as usize])
        );
        let s2 = 2 * BLOCK_SIZE as usize;
        assert_eq!(c[2].result.as_deref(), Ok(&img[s2..s2 + 512]));
        // Everything again: nothing new is wanted.
        for (i, off) in (0..3 * BLOCK_SIZE).step_by(4096).enumerate() {
            b.submit(10 + i as u64, read(off, 4096));
        }
        assert!(b.take_fetches().is_empty());
        assert_eq!(b.poll().len(), (3 * BLOCK_SIZE / 4096) as usize);
        assert_eq!(b.stats().fetches, 2);
    }

    #[test]
    fn adjacent_blocks_merge_up_to_the_fetch_limit() {
        let blocks = MAX_FETCH_BYTES / BLOCK_SIZE;
        let img_len = (2 * blocks + 5) * BLOCK_SIZE;
        let mut b = RangeBackend::new("disk", img_len);
        // Every block except one in the middle.
        b.submit(1, read(0, (blocks + 2) as usize * BLOCK_SIZE as usize));
        b.submit(
            2,
            read((blocks + 3) * BLOCK_SIZE, (blocks - 1) as usize * 4096),
        );
        let f = b.take_fetches();
        assert_eq!(
            f,
            vec![
                Fetch {
                    offset: 0,
                    len: MAX_FETCH_BYTES as usize
                },
                Fetch {
                    offset: MAX_FETCH_BYTES,
                    len: 2 * BLOCK_SIZE as usize
                },
                Fetch {
                    offset: (blocks + 3) * BLOCK_SIZE,
                    len: BLOCK_SIZE as usize
                },
            ]
        );
    }

    #[test]
    fn the_last_block_is_short_and_the_sector_padding_reads_zeros() {
        // 1.5 blocks plus 100 bytes: size rounds up to a sector, the last fetch stops at
        // the remote length.
        let len = BLOCK_SIZE as usize + BLOCK_SIZE as usize / 2 + 100;
        let img = image(len);
        let mut b = RangeBackend::new("odd", len as u64);
        assert_eq!(b.size(), round_up_sector(len as u64));
        b.submit(1, read(b.size() - 1024, 1024));
        let f = serve(&mut b, &img);
        assert_eq!(
            f,
            vec![Fetch {
                offset: BLOCK_SIZE,
                len: len - BLOCK_SIZE as usize
            }]
        );
        let c = b.poll();
        let data = c[0].result.as_ref().unwrap();
        let real = len - (b.size() as usize - 1024);
        assert_eq!(&data[..real], &img[len - real..]);
        assert!(data[real..].iter().all(|&x| x == 0));
        // A read of the padding alone needs no fetch at all.
        let mut pad = RangeBackend::new("pad", 1000);
        pad.submit(7, read(1000 & !511, 24));
        pad.submit(8, read(1000, 24));
        assert!(
            pad.take_fetches().len() == 1,
            "the first read needs block 0"
        );
        assert_eq!(
            pad.poll().len(),
            1,
            "the padding-only read completes at once"
        );
    }

    #[test]
    fn wrong_deliveries_are_refused_and_fail_the_waiting_reads() {
        let img = image(2 * BLOCK_SIZE as usize);
        let mut b = RangeBackend::new("http://h/d.img", img.len() as u64);
        b.submit(1, read(0, 512));
        b.submit(2, read(BLOCK_SIZE, 512));
        let f = b.take_fetches();
        assert_eq!(f.len(), 1);
        assert_eq!(
            b.deliver(4096, &img[..10]),
            Err(RangeError::UnknownFetch(4096))
        );
        // Short.
        let e = b.deliver(0, &img[..1000]).unwrap_err();
        assert_eq!(
            e,
            RangeError::WrongLength {
                offset: 0,
                expected: 2 * BLOCK_SIZE as usize,
                got: 1000
            }
        );
        assert!(e.to_string().contains("1000 were delivered"), "{e}");
        let mut c = b.poll();
        c.sort_by_key(|c| c.id);
        assert_eq!(c.len(), 2);
        for x in &c {
            match &x.result {
                Err(BlockError::Io(m)) => {
                    assert!(
                        m.contains("http://h/d.img") && m.contains("0-131071"),
                        "{m}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // The fetch is over: a late delivery is refused; the next read asks again.
        assert_eq!(b.deliver(0, &img), Err(RangeError::UnknownFetch(0)));
        b.submit(3, read(0, 512));
        let f = b.take_fetches();
        assert_eq!(f.len(), 1);
        // Oversized.
        let mut big = img.clone();
        big.push(0);
        assert!(matches!(
            b.deliver(0, &big),
            Err(RangeError::WrongLength { got, .. }) if got == big.len()
        ));
        assert!(matches!(b.poll()[0].result, Err(BlockError::Io(_))));
        assert_eq!(b.stats().failures, 2);
        assert_eq!(b.stats().cached_blocks, 0);
    }

    #[test]
    fn host_failures_fail_only_the_reads_that_need_the_range() {
        let img = image(4 * BLOCK_SIZE as usize);
        let mut b = RangeBackend::new("d", img.len() as u64);
        b.submit(1, read(0, 512));
        let f1 = b.take_fetches();
        b.submit(2, read(3 * BLOCK_SIZE, 512));
        let f2 = b.take_fetches();
        b.fail(f1[0].offset, "HTTP 503").unwrap();
        assert_eq!(
            b.fail(f1[0].offset, "again"),
            Err(RangeError::UnknownFetch(0))
        );
        let c = b.poll();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, 1);
        assert!(matches!(&c[0].result, Err(BlockError::Io(m)) if m.contains("HTTP 503")));
        b.deliver(f2[0].offset, &img[3 * BLOCK_SIZE as usize..])
            .unwrap();
        assert_eq!(b.poll()[0].id, 2);
    }

    #[test]
    fn writes_are_refused_range_and_ids_are_checked() {
        let mut b = RangeBackend::new("d", 4096);
        b.submit(
            1,
            BlockRequest::Write {
                offset: 0,
                data: vec![0; 512],
            },
        );
        b.submit(2, BlockRequest::Flush);
        b.submit(3, read(4000, 512));
        b.submit(4, read(0, 512));
        b.submit(4, read(512, 512));
        let c = b.poll();
        assert_eq!(c[0].result, Err(BlockError::ReadOnly));
        assert_eq!(c[1].result, Ok(vec![]));
        assert!(matches!(c[2].result, Err(BlockError::OutOfRange { .. })));
        assert_eq!(c[3].result, Err(BlockError::DuplicateId(4)));
        assert_eq!(b.resize(8192), Err(BlockError::Unsupported("http range")));
        b.submit(5, read(0, (crate::MAX_REQUEST_BYTES + 1) as usize));
        assert!(matches!(b.poll()[0].result, Err(BlockError::TooLarge(_))));
    }

    #[test]
    fn the_cache_stays_under_its_cap_and_keeps_what_waiting_reads_need() {
        let img = image(8 * BLOCK_SIZE as usize);
        let mut b = RangeBackend::with_cache_cap("d", img.len() as u64, 2 * BLOCK_SIZE);
        for blk in 0..4u64 {
            b.submit(blk, read(blk * BLOCK_SIZE, 512));
            serve(&mut b, &img);
            assert_eq!(b.poll().len(), 1);
        }
        let s = b.stats();
        assert_eq!((s.cached_blocks, s.evictions), (2, 2));
        // Blocks 2 and 3 (most recent) stayed: no fetch for them.
        b.submit(10, read(2 * BLOCK_SIZE, 2 * BLOCK_SIZE as usize));
        assert!(b.take_fetches().is_empty());
        assert_eq!(b.poll().len(), 1);
        // Block 0 was dropped: asked again.
        b.submit(11, read(0, 512));
        assert_eq!(b.take_fetches()[0].offset, 0);
        // A read needing more than the cap still completes: its blocks are not dropped
        // while it waits.
        let mut small = RangeBackend::with_cache_cap("d", img.len() as u64, BLOCK_SIZE);
        small.submit(1, read(0, 5 * BLOCK_SIZE as usize));
        let f = small.take_fetches();
        assert_eq!(f.len(), 1, "five adjacent blocks merge into one fetch");
        small
            .deliver(f[0].offset, &img[..5 * BLOCK_SIZE as usize])
            .unwrap();
        assert_eq!(
            small.poll()[0].result.as_deref(),
            Ok(&img[..5 * BLOCK_SIZE as usize])
        );
        assert!(small.stats().cached_blocks <= 1);
    }

    #[test]
    fn shared_handle_under_an_overlay_in_a_block_device() {
        let img = image(2 * BLOCK_SIZE as usize);
        let shared = SharedRange::new(RangeBackend::new("http://h/hd.img", img.len() as u64));
        let host = shared.clone();
        let mut dev = BlockDevice::new(Box::new(Overlay::new(Box::new(shared))));
        assert_eq!(dev.size(), img.len() as u64);
        assert!(!dev.read_only(), "the overlay takes the guest's writes");
        assert_eq!(dev.file_name(), "http://h/hd.img");
        dev.submit(
            1,
            BlockRequest::Write {
                offset: 512,
                data: vec![0xEE; 512],
            },
            0,
        );
        dev.submit(2, read(0, 1536), 0);
        let c = dev.poll(0);
        assert_eq!(c.len(), 1, "the write completes, the read waits");
        assert_eq!(c[0].result, Ok(vec![]));
        assert!(host.has_fetches());
        assert_eq!((host.handles(), host.outstanding()), (2, 1));
        let f = host.take_fetches();
        assert_eq!(host.outstanding(), 1, "taken, not yet answered");
        host.deliver(f[0].offset, &img[..f[0].len]).unwrap();
        let c = dev.poll(0);
        let data = c[0].result.as_ref().unwrap();
        assert_eq!(&data[..512], &img[..512]);
        assert!(data[512..1024].iter().all(|&x| x == 0xEE));
        assert_eq!(&data[1024..], &img[1024..1536]);
        assert_eq!(
            host.stats().bytes_delivered,
            BLOCK_SIZE,
            "one block was needed"
        );
        assert_eq!(host.outstanding(), 0);
        drop(dev);
        assert_eq!(host.handles(), 1, "the drive's handle is gone");
    }
}
