//! The in-memory backend (tests, the browser's downloaded or picked images).

use crate::{
    check_range, round_up_sector, BlockBackend, BlockError, BlockRequest, Completion, RequestId,
};

/// An image held in memory. Completions are ready at the next [`BlockBackend::poll`].
///
/// A buffer whose length is not a multiple of 512 is padded with zeros to the next multiple.
#[derive(Debug, Clone)]
pub struct MemBackend {
    data: Vec<u8>,
    read_only: bool,
    name: String,
    done: Vec<Completion>,
}

impl MemBackend {
    /// Makes a backend over `data`, named `name` in `query-block`.
    pub fn new(mut data: Vec<u8>, read_only: bool, name: impl Into<String>) -> MemBackend {
        let size = round_up_sector(data.len() as u64);
        data.resize(size as usize, 0);
        MemBackend {
            data,
            read_only,
            name: name.into(),
            done: Vec::new(),
        }
    }

    /// The image bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    fn run(&mut self, req: BlockRequest) -> Result<Vec<u8>, BlockError> {
        let size = self.data.len() as u64;
        match req {
            BlockRequest::Read { offset, len } => {
                check_range(offset, len as u64, size)?;
                let start = offset as usize;
                Ok(self.data[start..start + len].to_vec())
            }
            BlockRequest::Write { offset, data } => {
                if self.read_only {
                    return Err(BlockError::ReadOnly);
                }
                check_range(offset, data.len() as u64, size)?;
                let start = offset as usize;
                self.data[start..start + data.len()].copy_from_slice(&data);
                Ok(Vec::new())
            }
            BlockRequest::Flush => Ok(Vec::new()),
        }
    }
}

impl BlockBackend for MemBackend {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn file_name(&self) -> &str {
        &self.name
    }

    fn has_protocol_layer(&self) -> bool {
        false
    }

    fn submit(&mut self, id: RequestId, req: BlockRequest) {
        let result = self.run(req);
        self.done.push(Completion { id, result });
    }

    fn poll(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.done)
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn resize(&mut self, new_size: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let size = round_up_sector(new_size);
        if size > usize::MAX as u64 || size > (4u64 << 30) {
            return Err(BlockError::TooLarge(size));
        }
        self.data.resize(size as usize, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_flush_round_trip() {
        let mut b = MemBackend::new(vec![7; 1024], false, "mem");
        b.submit(
            1,
            BlockRequest::Write {
                offset: 510,
                data: vec![1, 2, 3, 4],
            },
        );
        b.submit(
            2,
            BlockRequest::Read {
                offset: 508,
                len: 8,
            },
        );
        b.submit(3, BlockRequest::Flush);
        assert_eq!(b.in_flight(), 3);
        let c = b.poll();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0],
            Completion {
                id: 1,
                result: Ok(vec![])
            }
        );
        assert_eq!(c[1].result, Ok(vec![7, 7, 1, 2, 3, 4, 7, 7]));
        assert_eq!(c[2].result, Ok(vec![]));
        assert!(b.poll().is_empty());
    }

    #[test]
    fn short_image_is_padded_with_zeros() {
        let mut b = MemBackend::new(vec![0xAB; 600], true, "odd");
        assert_eq!(b.size(), 1024);
        b.submit(
            9,
            BlockRequest::Read {
                offset: 596,
                len: 8,
            },
        );
        assert_eq!(
            b.poll()[0].result,
            Ok(vec![0xAB, 0xAB, 0xAB, 0xAB, 0, 0, 0, 0])
        );
    }

    #[test]
    fn errors() {
        let mut b = MemBackend::new(vec![0; 512], true, "ro");
        b.submit(
            1,
            BlockRequest::Write {
                offset: 0,
                data: vec![1],
            },
        );
        b.submit(
            2,
            BlockRequest::Read {
                offset: 511,
                len: 2,
            },
        );
        let c = b.poll();
        assert_eq!(c[0].result, Err(BlockError::ReadOnly));
        assert!(matches!(
            c[1].result,
            Err(BlockError::OutOfRange {
                offset: 511,
                len: 2,
                size: 512
            })
        ));
        assert_eq!(b.resize(4096), Err(BlockError::ReadOnly));
        let mut w = MemBackend::new(vec![0; 512], false, "rw");
        w.resize(1000).unwrap();
        assert_eq!(w.size(), 1024);
    }
}
