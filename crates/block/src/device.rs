//! `BlockDevice`: a backend with range checks, statistics and I/O throttling.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{
    check_range, BlockBackend, BlockError, BlockRequest, Completion, RequestId, RequestKind,
};

/// Statistics of `query-blockstats` (field names as QEMU reports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Bytes read.
    pub rd_bytes: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Read operations.
    pub rd_operations: u64,
    /// Write operations.
    pub wr_operations: u64,
    /// Flush operations.
    pub flush_operations: u64,
    /// Total time of reads, from submission to completion, in ns of the caller's clock.
    pub rd_total_time_ns: u64,
    /// Total time of writes in ns.
    pub wr_total_time_ns: u64,
    /// Total time of flushes in ns.
    pub flush_total_time_ns: u64,
    /// End offset (bytes) of the highest write since the image was opened.
    pub wr_highest_offset: u64,
}

impl BlockStats {
    fn account(&mut self, kind: RequestKind, bytes: u64, end: u64, time_ns: u64) {
        match kind {
            RequestKind::Read => {
                self.rd_bytes = self.rd_bytes.saturating_add(bytes);
                self.rd_operations += 1;
                self.rd_total_time_ns = self.rd_total_time_ns.saturating_add(time_ns);
            }
            RequestKind::Write => {
                self.wr_bytes = self.wr_bytes.saturating_add(bytes);
                self.wr_operations += 1;
                self.wr_total_time_ns = self.wr_total_time_ns.saturating_add(time_ns);
                self.wr_highest_offset = self.wr_highest_offset.max(end);
            }
            RequestKind::Flush => {
                self.flush_operations += 1;
                self.flush_total_time_ns = self.flush_total_time_ns.saturating_add(time_ns);
            }
        }
    }
}

/// I/O limits of `block_set_io_throttle` / `query-block` (0 = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleLimits {
    /// Total bytes per second.
    pub bps: u64,
    /// Read bytes per second.
    pub bps_rd: u64,
    /// Write bytes per second.
    pub bps_wr: u64,
    /// Total operations per second.
    pub iops: u64,
    /// Read operations per second.
    pub iops_rd: u64,
    /// Write operations per second.
    pub iops_wr: u64,
}

/// Invalid throttle limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleError {
    /// A total limit together with a read or write limit (QMP class
    /// `InvalidParameterCombination`, as QEMU 1.1).
    #[error("Invalid parameter combination")]
    InvalidParameterCombination,
}

impl ThrottleLimits {
    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.bps | self.bps_rd | self.bps_wr | self.iops | self.iops_rd | self.iops_wr != 0
    }

    /// QEMU 1.1's rule: a total limit excludes the read and write limits of the same unit.
    pub fn validate(&self) -> Result<(), ThrottleError> {
        if (self.bps != 0 && (self.bps_rd != 0 || self.bps_wr != 0))
            || (self.iops != 0 && (self.iops_rd != 0 || self.iops_wr != 0))
        {
            return Err(ThrottleError::InvalidParameterCombination);
        }
        Ok(())
    }
}

/// Burst allowance of each throttling bucket: 100 ms worth of the limit.
const BURST_NS: u128 = 100_000_000;
const NS: u128 = 1_000_000_000;

/// A leaky bucket; `level` is in units × 10⁹ so that draining at `rate` per second is exact
/// in integer nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    level: u128,
}

impl Bucket {
    fn drain(&mut self, rate: u64, dt_ns: u64) {
        self.level = self.level.saturating_sub(rate as u128 * dt_ns as u128);
    }

    /// Nanoseconds to wait before the bucket accepts more (0 = now).
    fn wait(&self, rate: u64) -> u64 {
        if rate == 0 {
            return 0;
        }
        let burst = rate as u128 * BURST_NS;
        if self.level <= burst {
            0
        } else {
            ((self.level - burst).div_ceil(rate as u128)).min(u64::MAX as u128) as u64
        }
    }

    fn add(&mut self, rate: u64, units: u64) {
        if rate != 0 {
            self.level = self.level.saturating_add(units as u128 * NS);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: RequestKind,
    bytes: u64,
    end: u64,
    start_ns: u64,
}

/// A block device as the board and QMP see it: a backend plus range checks, statistics,
/// names and throttling.
///
/// Throttling is enforced with leaky buckets (one per configured limit, each allowing a burst
/// of 100 ms worth of its rate): a request that would exceed a limit waits in a FIFO queue
/// inside the device until [`BlockDevice::poll`] is called at or after
/// [`BlockDevice::next_deadline`].
pub struct BlockDevice {
    backend: Box<dyn BlockBackend>,
    stats: BlockStats,
    parent: Option<BlockStats>,
    limits: ThrottleLimits,
    buckets: [Bucket; 6],
    last_drain_ns: u64,
    throttled: VecDeque<(RequestId, BlockRequest, u64)>,
    in_flight: BTreeMap<RequestId, InFlight>,
    done: Vec<Completion>,
}

impl std::fmt::Debug for BlockDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDevice")
            .field("file", &self.backend.file_name())
            .field("size", &self.backend.size())
            .field("stats", &self.stats)
            .field("limits", &self.limits)
            .finish()
    }
}

impl BlockDevice {
    /// Wraps a backend.
    pub fn new(backend: Box<dyn BlockBackend>) -> BlockDevice {
        let parent = backend.has_protocol_layer().then(BlockStats::default);
        BlockDevice {
            backend,
            stats: BlockStats::default(),
            parent,
            limits: ThrottleLimits::default(),
            buckets: [Bucket::default(); 6],
            last_drain_ns: 0,
            throttled: VecDeque::new(),
            in_flight: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    /// Image size in bytes.
    pub fn size(&self) -> u64 {
        self.backend.size()
    }

    /// Whether the image is read-only (`ro` of `query-block`).
    pub fn read_only(&self) -> bool {
        self.backend.read_only()
    }

    /// Format driver name (`drv` of `query-block`).
    pub fn format_name(&self) -> &'static str {
        self.backend.format_name()
    }

    /// File name (`file` of `query-block`).
    pub fn file_name(&self) -> &str {
        self.backend.file_name()
    }

    /// Whether the image is encrypted (never, for the formats supported: `block_passwd`
    /// answers `DeviceNotEncrypted`).
    pub fn encrypted(&self) -> bool {
        false
    }

    /// The statistics of the format layer.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// The statistics of the protocol layer (the host file), the `parent` of
    /// `query-blockstats`; `None` when the backend has no such layer (memory, HTTP).
    pub fn parent_stats(&self) -> Option<BlockStats> {
        self.parent
    }

    /// The configured limits.
    pub fn limits(&self) -> ThrottleLimits {
        self.limits
    }

    /// Sets the limits (`block_set_io_throttle`); all zero disables throttling and releases
    /// the queued requests at the next poll.
    pub fn set_limits(&mut self, limits: ThrottleLimits) -> Result<(), ThrottleError> {
        limits.validate()?;
        self.limits = limits;
        self.buckets = [Bucket::default(); 6];
        Ok(())
    }

    /// Resizes the image (`block_resize`).
    pub fn resize(&mut self, new_size: u64) -> Result<(), BlockError> {
        self.backend.resize(new_size)
    }

    /// Number of requests submitted and not yet returned by [`BlockDevice::poll`].
    pub fn pending(&self) -> usize {
        self.throttled.len() + self.in_flight.len() + self.done.len()
    }

    /// Submits a request at time `now_ns` of the caller's clock. Problems (range, read-only,
    /// duplicate id) come back as the request's completion.
    pub fn submit(&mut self, id: RequestId, req: BlockRequest, now_ns: u64) {
        let checked = match &req {
            _ if self.in_flight.contains_key(&id)
                || self.throttled.iter().any(|(i, _, _)| *i == id) =>
            {
                Err(BlockError::DuplicateId(id))
            }
            BlockRequest::Read { offset, len } => check_range(*offset, *len as u64, self.size()),
            BlockRequest::Write { offset, data } => {
                if self.read_only() {
                    Err(BlockError::ReadOnly)
                } else {
                    check_range(*offset, data.len() as u64, self.size())
                }
            }
            BlockRequest::Flush => Ok(()),
        };
        if let Err(e) = checked {
            self.done.push(Completion { id, result: Err(e) });
            return;
        }
        self.throttled.push_back((id, req, now_ns));
        self.dispatch(now_ns);
    }

    fn limit_rates(&self) -> [u64; 6] {
        let l = &self.limits;
        [l.bps, l.bps_rd, l.bps_wr, l.iops, l.iops_rd, l.iops_wr]
    }

    /// Sends queued requests to the backend while the limits allow.
    fn dispatch(&mut self, now_ns: u64) {
        let rates = self.limit_rates();
        let dt = now_ns.saturating_sub(self.last_drain_ns);
        self.last_drain_ns = self.last_drain_ns.max(now_ns);
        for (b, r) in self.buckets.iter_mut().zip(rates) {
            b.drain(r, dt);
        }
        while let Some((_, req, _)) = self.throttled.front() {
            let kind = req.kind();
            let bytes = req.bytes();
            if kind != RequestKind::Flush && self.wait_for(kind, &rates) > 0 {
                break;
            }
            let Some((id, req, submitted)) = self.throttled.pop_front() else {
                break;
            };
            if kind != RequestKind::Flush {
                let (bb, ib) = if kind == RequestKind::Read {
                    (1, 4)
                } else {
                    (2, 5)
                };
                for (i, units) in [(0, bytes), (bb, bytes), (3, 1), (ib, 1)] {
                    self.buckets[i].add(rates[i], units);
                }
            }
            let end = match &req {
                BlockRequest::Read { offset, len } => offset + *len as u64,
                BlockRequest::Write { offset, data } => offset + data.len() as u64,
                BlockRequest::Flush => 0,
            };
            self.in_flight.insert(
                id,
                InFlight {
                    kind,
                    bytes,
                    end,
                    start_ns: submitted,
                },
            );
            self.backend.submit(id, req);
        }
    }

    fn wait_for(&self, kind: RequestKind, rates: &[u64; 6]) -> u64 {
        let (bb, ib) = if kind == RequestKind::Read {
            (1, 4)
        } else {
            (2, 5)
        };
        [0, bb, 3, ib]
            .iter()
            .map(|&i| self.buckets[i].wait(rates[i]))
            .max()
            .unwrap_or(0)
    }

    /// When a throttled request may next be dispatched (`None` if nothing waits); the caller
    /// polls again at that time.
    pub fn next_deadline(&self) -> Option<u64> {
        let (_, req, _) = self.throttled.front()?;
        let rates = self.limit_rates();
        Some(
            self.last_drain_ns
                .saturating_add(self.wait_for(req.kind(), &rates)),
        )
    }

    /// Dispatches throttled requests that may now run and returns the completions that are
    /// ready, accounting them in the statistics at time `now_ns`.
    pub fn poll(&mut self, now_ns: u64) -> Vec<Completion> {
        self.dispatch(now_ns);
        let mut out = std::mem::take(&mut self.done);
        for c in self.backend.poll() {
            let Some(f) = self.in_flight.remove(&c.id) else {
                continue; // not ours: ignore rather than trust the backend
            };
            if c.result.is_ok() {
                let t = now_ns.saturating_sub(f.start_ns);
                self.stats.account(f.kind, f.bytes, f.end, t);
                if let Some(p) = &mut self.parent {
                    p.account(f.kind, f.bytes, f.end, t);
                }
            }
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBackend;

    fn dev(size: usize) -> BlockDevice {
        BlockDevice::new(Box::new(MemBackend::new(vec![0; size], false, "disk.img")))
    }

    /// A backend that completes only when told to (like an HTTP backend).
    struct Later {
        inner: MemBackend,
        held: Vec<Completion>,
        release: bool,
    }

    impl BlockBackend for Later {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn read_only(&self) -> bool {
            true
        }
        fn file_name(&self) -> &str {
            "http://x/y.iso"
        }
        fn submit(&mut self, id: RequestId, req: BlockRequest) {
            self.inner.submit(id, req);
            self.held.extend(self.inner.poll());
        }
        fn poll(&mut self) -> Vec<Completion> {
            if self.release {
                std::mem::take(&mut self.held)
            } else {
                Vec::new()
            }
        }
        fn in_flight(&self) -> usize {
            self.held.len()
        }
    }

    #[test]
    fn statistics_count_bytes_operations_and_time() {
        let mut d = dev(4096);
        d.submit(
            1,
            BlockRequest::Write {
                offset: 1024,
                data: vec![1; 512],
            },
            100,
        );
        d.submit(
            2,
            BlockRequest::Read {
                offset: 0,
                len: 2048,
            },
            100,
        );
        d.submit(3, BlockRequest::Flush, 100);
        let c = d.poll(350);
        assert_eq!(c.len(), 3);
        let s = d.stats();
        assert_eq!(s.wr_bytes, 512);
        assert_eq!(s.wr_operations, 1);
        assert_eq!(s.rd_bytes, 2048);
        assert_eq!(s.rd_operations, 1);
        assert_eq!(s.flush_operations, 1);
        assert_eq!(s.wr_highest_offset, 1536);
        assert_eq!(s.rd_total_time_ns, 250);
        assert_eq!(s.wr_total_time_ns, 250);
        assert_eq!(s.flush_total_time_ns, 250);
        assert_eq!(
            d.parent_stats(),
            None,
            "memory images have no protocol layer"
        );
        assert_eq!(d.file_name(), "disk.img");
        assert_eq!(d.format_name(), "raw");
    }

    #[test]
    fn failed_requests_are_not_counted() {
        let mut d = dev(1024);
        d.submit(
            1,
            BlockRequest::Read {
                offset: 1000,
                len: 512,
            },
            0,
        );
        let c = d.poll(0);
        assert!(matches!(c[0].result, Err(BlockError::OutOfRange { .. })));
        assert_eq!(d.stats(), BlockStats::default());
    }

    #[test]
    fn late_backend_completes_on_a_later_poll() {
        let mut d = BlockDevice::new(Box::new(Later {
            inner: MemBackend::new(vec![5; 2048], true, "x"),
            held: Vec::new(),
            release: false,
        }));
        assert!(d.read_only());
        d.submit(7, BlockRequest::Read { offset: 0, len: 4 }, 10);
        d.submit(7, BlockRequest::Read { offset: 0, len: 4 }, 10);
        let c = d.poll(20);
        assert_eq!(
            c,
            vec![Completion {
                id: 7,
                result: Err(BlockError::DuplicateId(7))
            }]
        );
        assert_eq!(d.pending(), 1);
        d.submit(
            8,
            BlockRequest::Write {
                offset: 0,
                data: vec![1],
            },
            10,
        );
        assert_eq!(d.poll(20)[0].result, Err(BlockError::ReadOnly));
        // Release (downcasting is not available: rebuild a device that releases at once).
        let mut l = Later {
            inner: MemBackend::new(vec![5; 2048], true, "x"),
            held: vec![],
            release: true,
        };
        l.submit(1, BlockRequest::Read { offset: 2, len: 2 });
        assert_eq!(l.poll()[0].result, Ok(vec![5, 5]));
    }

    #[test]
    fn throttle_limits_validate_and_enforce() {
        let mut d = dev(1 << 20);
        assert_eq!(
            d.set_limits(ThrottleLimits {
                bps: 1,
                bps_rd: 1,
                ..Default::default()
            }),
            Err(ThrottleError::InvalidParameterCombination)
        );
        d.set_limits(ThrottleLimits {
            iops_rd: 10,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(d.limits().iops_rd, 10);
        assert!(d.limits().enabled());
        // Burst: 100 ms of 10 iops = 1 operation, then each needs 100 ms.
        for id in 0..4 {
            d.submit(
                id,
                BlockRequest::Read {
                    offset: 0,
                    len: 512,
                },
                0,
            );
        }
        assert_eq!(d.poll(0).len(), 2, "burst lets the first requests through");
        let next = d.next_deadline().expect("requests wait");
        assert!(next > 0 && next <= 100_000_000, "next={next}");
        assert!(d.poll(next - 1).is_empty());
        assert_eq!(d.poll(next).len(), 1);
        // Writes are not limited by a read limit.
        d.submit(
            10,
            BlockRequest::Write {
                offset: 0,
                data: vec![0; 512],
            },
            next,
        );
        let c = d.poll(next);
        assert!(
            c.is_empty(),
            "FIFO order: the write waits behind the throttled read"
        );
        assert_eq!(d.poll(next + 1_000_000_000).len(), 2);
        d.set_limits(ThrottleLimits::default()).unwrap();
        for id in 20..30 {
            d.submit(
                id,
                BlockRequest::Read {
                    offset: 0,
                    len: 512,
                },
                2_000_000_000,
            );
        }
        assert_eq!(d.poll(2_000_000_000).len(), 10);
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn bandwidth_limit_spreads_requests() {
        let mut d = dev(1 << 20);
        d.set_limits(ThrottleLimits {
            bps: 5120,
            ..Default::default()
        })
        .unwrap();
        // 512 bytes of burst per 100 ms; 10 reads of 512 bytes take about 1 s.
        for id in 0..10 {
            d.submit(
                id,
                BlockRequest::Read {
                    offset: 0,
                    len: 512,
                },
                0,
            );
        }
        let mut got = d.poll(0).len();
        let mut t = 0;
        while got < 10 {
            t = d.next_deadline().unwrap();
            got += d.poll(t).len();
        }
        assert!((700_000_000..=1_000_000_000).contains(&t), "t={t}");
    }

    #[test]
    fn resize_and_parent_stats_of_files() {
        let mut d = dev(1024);
        d.resize(4096).unwrap();
        assert_eq!(d.size(), 4096);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut p = std::env::temp_dir();
            p.push(format!("wasm86-blockdev-{}", std::process::id()));
            std::fs::write(&p, vec![0u8; 1024]).unwrap();
            let mut f = BlockDevice::new(Box::new(crate::FileBackend::open(&p, false).unwrap()));
            f.submit(
                1,
                BlockRequest::Write {
                    offset: 512,
                    data: vec![3; 512],
                },
                0,
            );
            f.poll(5);
            let parent = f.parent_stats().expect("files have a protocol layer");
            assert_eq!(parent.wr_highest_offset, 1024);
            assert_eq!(parent.wr_operations, 1);
            std::fs::remove_file(&p).unwrap();
        }
    }
}
