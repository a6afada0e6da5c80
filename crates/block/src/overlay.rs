//! A copy-on-write overlay in memory (QEMU's `-snapshot`): guest writes stay in memory, the
//! image underneath is only read. It makes read-only backends (qcow2, HTTP range images)
//! writable for the guest.

use std::collections::{BTreeMap, HashMap};

use crate::{check_range, BlockBackend, BlockError, BlockRequest, Completion, RequestId};

const SECTOR: u64 = 512;

/// Writes kept in memory over a backend that is only read.
///
/// Writes must be aligned to 512 bytes (IDE and floppy writes always are); others fail with
/// [`BlockError::Io`]. Memory grows with the data the guest writes, up to the image size.
pub struct Overlay {
    inner: Box<dyn BlockBackend>,
    sectors: BTreeMap<u64, Box<[u8; 512]>>,
    /// Reads sent to the inner backend: id -> (offset, len).
    reads: HashMap<RequestId, (u64, usize)>,
    done: Vec<Completion>,
}

impl Overlay {
    /// Puts an overlay over `inner`.
    pub fn new(inner: Box<dyn BlockBackend>) -> Overlay {
        Overlay {
            inner,
            sectors: BTreeMap::new(),
            reads: HashMap::new(),
            done: Vec::new(),
        }
    }

    /// Bytes held by the overlay.
    pub fn overlay_bytes(&self) -> u64 {
        self.sectors.len() as u64 * SECTOR
    }

    fn patch(&self, offset: u64, data: &mut [u8]) {
        let first = offset / SECTOR;
        let last = (offset + data.len() as u64).div_ceil(SECTOR);
        for (&s, bytes) in self.sectors.range(first..last) {
            let start = s * SECTOR;
            // Intersection of [start, start+512) and [offset, offset+len).
            let lo = start.max(offset);
            let hi = (start + SECTOR).min(offset + data.len() as u64);
            if lo < hi {
                let src = &bytes[(lo - start) as usize..(hi - start) as usize];
                data[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(src);
            }
        }
    }
}

impl BlockBackend for Overlay {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn format_name(&self) -> &'static str {
        self.inner.format_name()
    }

    fn file_name(&self) -> &str {
        self.inner.file_name()
    }

    fn has_protocol_layer(&self) -> bool {
        self.inner.has_protocol_layer()
    }

    fn submit(&mut self, id: RequestId, req: BlockRequest) {
        match req {
            BlockRequest::Read { offset, len } => {
                if let Err(e) = check_range(offset, len as u64, self.size()) {
                    return self.done.push(Completion { id, result: Err(e) });
                }
                self.reads.insert(id, (offset, len));
                self.inner.submit(id, BlockRequest::Read { offset, len });
            }
            BlockRequest::Write { offset, data } => {
                let result = check_range(offset, data.len() as u64, self.size()).and_then(|()| {
                    if !offset.is_multiple_of(SECTOR) || !(data.len() as u64).is_multiple_of(SECTOR)
                    {
                        return Err(BlockError::Io("unaligned write to an overlay".into()));
                    }
                    for (i, chunk) in data.chunks_exact(SECTOR as usize).enumerate() {
                        let mut s = Box::new([0u8; 512]);
                        s.copy_from_slice(chunk);
                        self.sectors.insert(offset / SECTOR + i as u64, s);
                    }
                    Ok(Vec::new())
                });
                self.done.push(Completion { id, result });
            }
            BlockRequest::Flush => self.done.push(Completion {
                id,
                result: Ok(Vec::new()),
            }),
        }
    }

    fn poll(&mut self) -> Vec<Completion> {
        let mut out = std::mem::take(&mut self.done);
        for mut c in self.inner.poll() {
            let Some((offset, len)) = self.reads.remove(&c.id) else {
                continue;
            };
            if let Ok(data) = &mut c.result {
                if data.len() == len {
                    self.patch(offset, data);
                }
            }
            out.push(c);
        }
        out
    }

    fn in_flight(&self) -> usize {
        self.done.len() + self.reads.len()
    }

    fn resize(&mut self, _new_size: u64) -> Result<(), BlockError> {
        Err(BlockError::Unsupported("overlay"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBackend;

    #[test]
    fn writes_stay_in_the_overlay() {
        let base = MemBackend::new(vec![1; 4096], true, "base.img");
        let mut o = Overlay::new(Box::new(base));
        assert!(!o.read_only());
        assert_eq!(o.file_name(), "base.img");
        o.submit(
            1,
            BlockRequest::Write {
                offset: 512,
                data: vec![9; 1024],
            },
        );
        o.submit(
            2,
            BlockRequest::Read {
                offset: 256,
                len: 2048,
            },
        );
        o.submit(
            3,
            BlockRequest::Write {
                offset: 3,
                data: vec![0; 512],
            },
        );
        o.submit(4, BlockRequest::Flush);
        let mut c = o.poll();
        c.sort_by_key(|c| c.id);
        assert_eq!(c[0].result, Ok(vec![]));
        let r = c[1].result.as_ref().unwrap();
        assert_eq!(&r[..256], &[1; 256][..]);
        assert_eq!(&r[256..1280], &[9; 1024][..]);
        assert_eq!(&r[1280..], &[1; 768][..]);
        assert!(matches!(c[2].result, Err(BlockError::Io(_))));
        assert_eq!(c[3].result, Ok(vec![]));
        assert_eq!(o.overlay_bytes(), 1024);
        o.submit(
            5,
            BlockRequest::Read {
                offset: 4000,
                len: 200,
            },
        );
        assert!(matches!(
            o.poll()[0].result,
            Err(BlockError::OutOfRange { .. })
        ));
    }
}
