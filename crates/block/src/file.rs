//! The native raw image file backend.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::{
    check_range, round_up_sector, BlockBackend, BlockError, BlockRequest, Completion, RequestId,
};

/// A raw image file on the host, read-only or read-write.
///
/// Requests run synchronously inside `submit` (a file read is short next to the guest's own
/// pacing); their completions are returned by the next `poll`. Writes reach the file; a flush
/// calls `sync_data`. A file whose length is not a multiple of 512 is padded logically with
/// zeros: reads past the end of the file return zeros, writes there extend the file.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    name: String,
    read_only: bool,
    /// Real length of the file.
    file_len: u64,
    done: Vec<Completion>,
}

impl FileBackend {
    /// Opens `path`. Errors are [`BlockError::OpenFileFailed`] with QEMU's message
    /// (`Could not open '<path>'`) and the host's reason.
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<FileBackend, BlockError> {
        let path = path.as_ref();
        let name = path.to_string_lossy().into_owned();
        let fail = |e: std::io::Error| BlockError::OpenFileFailed {
            filename: name.clone(),
            reason: e.to_string(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if meta.is_dir() {
            return Err(BlockError::OpenFileFailed {
                filename: name,
                reason: "is a directory".into(),
            });
        }
        Ok(FileBackend {
            file,
            name,
            read_only,
            file_len: meta.len(),
            done: Vec::new(),
        })
    }

    fn run(&mut self, req: BlockRequest) -> Result<Vec<u8>, BlockError> {
        let io = |e: std::io::Error| BlockError::Io(e.to_string());
        match req {
            BlockRequest::Read { offset, len } => {
                check_range(offset, len as u64, self.size())?;
                let mut buf = vec![0u8; len];
                // Bytes that exist in the file; the rest is zero padding.
                let avail = self.file_len.saturating_sub(offset).min(len as u64) as usize;
                if avail > 0 {
                    self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
                    self.file.read_exact(&mut buf[..avail]).map_err(io)?;
                }
                Ok(buf)
            }
            BlockRequest::Write { offset, data } => {
                if self.read_only {
                    return Err(BlockError::ReadOnly);
                }
                check_range(offset, data.len() as u64, self.size())?;
                self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
                self.file.write_all(&data).map_err(io)?;
                self.file_len = self.file_len.max(offset + data.len() as u64);
                Ok(Vec::new())
            }
            BlockRequest::Flush => {
                if !self.read_only {
                    self.file.sync_data().map_err(io)?;
                }
                Ok(Vec::new())
            }
        }
    }
}

impl BlockBackend for FileBackend {
    fn size(&self) -> u64 {
        round_up_sector(self.file_len)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn file_name(&self) -> &str {
        &self.name
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
        self.file
            .set_len(size)
            .map_err(|e| BlockError::Io(e.to_string()))?;
        self.file_len = size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> std::path::PathBuf {
        let mut p = std::env::temp_dir();
        p.push(format!("wasm86-block-{}-{}", std::process::id(), tag));
        p
    }

    #[test]
    fn missing_file_reports_qemu_message() {
        let p = temp_path("missing");
        let _ = std::fs::remove_file(&p);
        let e = FileBackend::open(&p, true).unwrap_err();
        assert_eq!(e.to_string(), format!("Could not open '{}'", p.display()));
        assert_eq!(e.qmp_class(), "OpenFileFailed");
    }

    #[test]
    fn directory_is_refused() {
        let e = FileBackend::open(std::env::temp_dir(), true).unwrap_err();
        assert!(matches!(e, BlockError::OpenFileFailed { .. }));
    }

    #[test]
    fn writes_reach_the_file_and_padding_reads_zero() {
        let p = temp_path("rw");
        std::fs::write(&p, vec![0x11u8; 700]).unwrap();
        let mut b = FileBackend::open(&p, false).unwrap();
        assert_eq!(b.size(), 1024);
        assert!(!b.read_only());
        b.submit(
            1,
            BlockRequest::Read {
                offset: 696,
                len: 8,
            },
        );
        b.submit(
            2,
            BlockRequest::Write {
                offset: 2,
                data: vec![9, 8, 7],
            },
        );
        b.submit(3, BlockRequest::Flush);
        b.submit(
            4,
            BlockRequest::Read {
                offset: 1020,
                len: 8,
            },
        );
        let c = b.poll();
        assert_eq!(c[0].result, Ok(vec![0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0]));
        assert_eq!(c[1].result, Ok(vec![]));
        assert_eq!(c[2].result, Ok(vec![]));
        assert!(matches!(c[3].result, Err(BlockError::OutOfRange { .. })));
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[..6], &[0x11, 0x11, 9, 8, 7, 0x11]);
        b.resize(4096).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn read_only_file_refuses_writes() {
        let p = temp_path("ro");
        std::fs::write(&p, vec![0u8; 512]).unwrap();
        let mut b = FileBackend::open(&p, true).unwrap();
        b.submit(
            5,
            BlockRequest::Write {
                offset: 0,
                data: vec![1],
            },
        );
        assert_eq!(b.poll()[0].result, Err(BlockError::ReadOnly));
        assert_eq!(std::fs::read(&p).unwrap(), vec![0u8; 512]);
        std::fs::remove_file(&p).unwrap();
    }
}
