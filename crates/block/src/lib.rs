//! Disk images and block backends of wasm86.
//!
//! Storage is asynchronous: a caller submits a [`BlockRequest`] with a [`RequestId`] to a
//! [`BlockBackend`], and later [`BlockBackend::poll`] returns [`Completion`]s. The native raw
//! file backend ([`FileBackend`]) and the in-memory backend ([`MemBackend`]) complete at once
//! (the completion is ready at the next `poll`); browser backends (HTTP range requests, file
//! pickers, OPFS) may complete whenever their promise resolves, and only need to implement the
//! same trait.
//!
//! [`BlockDevice`] wraps a backend for the board and QMP: it checks ranges, keeps the
//! statistics of `query-blockstats`, the names and flags of `query-block`, and the I/O limits
//! of `block_set_io_throttle` (which it also enforces, see [`ThrottleLimits`]).
//!
//! # Sizes that are not a multiple of 512
//! An image whose length is not a multiple of 512 bytes is padded logically with zeros: its
//! size (as reported by [`BlockBackend::size`]) is rounded up to the next multiple of 512, and
//! reading the padding returns zeros. Writing the padding of a file image extends the file.
//!
//! # qcow2
//! [`Qcow2Backend`] reads qcow2 images (versions 2 and 3, backing chains, deflate-compressed
//! clusters); it is read-only: guest writes fail with [`BlockError::ReadOnly`]. An
//! [`Overlay`] over any backend keeps guest writes in memory (QEMU's `-snapshot`), which makes
//! qcow2 and remote images writable for the guest.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod device;
#[cfg(not(target_arch = "wasm32"))]
mod file;
mod mem;
mod overlay;
mod qcow2;
pub mod range;

pub use device::{BlockDevice, BlockStats, ThrottleError, ThrottleLimits};
#[cfg(not(target_arch = "wasm32"))]
pub use file::FileBackend;
pub use mem::MemBackend;
pub use overlay::Overlay;
#[cfg(not(target_arch = "wasm32"))]
pub use qcow2::open_image;
pub use qcow2::{
    is_qcow2, DiskRead, Qcow2Backend, Qcow2Disk, Qcow2Header, RawDisk, ReadAt, MAX_BACKING_DEPTH,
};
pub use range::{Fetch, RangeBackend, RangeError, RangeStats, SharedRange};

/// Sector size used for rounding and `wr_highest_offset`.
pub const SECTOR_SIZE: u64 = 512;

/// Identifies one submitted request; chosen by the caller, echoed in its [`Completion`].
pub type RequestId = u64;

/// One I/O request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRequest {
    /// Read `len` bytes at byte `offset`.
    Read {
        /// Byte offset in the image.
        offset: u64,
        /// Number of bytes.
        len: usize,
    },
    /// Write `data` at byte `offset`.
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Make earlier writes durable.
    Flush,
}

impl BlockRequest {
    /// The kind of the request, for statistics.
    pub fn kind(&self) -> RequestKind {
        match self {
            BlockRequest::Read { .. } => RequestKind::Read,
            BlockRequest::Write { .. } => RequestKind::Write,
            BlockRequest::Flush => RequestKind::Flush,
        }
    }

    /// Number of bytes moved by the request (0 for a flush).
    pub fn bytes(&self) -> u64 {
        match self {
            BlockRequest::Read { len, .. } => *len as u64,
            BlockRequest::Write { data, .. } => data.len() as u64,
            BlockRequest::Flush => 0,
        }
    }
}

/// Kind of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A read.
    Read,
    /// A write.
    Write,
    /// A flush.
    Flush,
}

/// The completion of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The id given at submission.
    pub id: RequestId,
    /// The bytes read (a read), an empty vector (a write or flush), or the error.
    pub result: Result<Vec<u8>, BlockError>,
}

/// Errors of block backends and devices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened (QMP class `OpenFileFailed`, QEMU's exact text).
    #[error("Could not open '{filename}'")]
    OpenFileFailed {
        /// The file name as given.
        filename: String,
        /// Why (the host's error), for logs.
        reason: String,
    },
    /// A request reaches outside the image.
    #[error("request at offset {offset} of {len} bytes is outside the image of {size} bytes")]
    OutOfRange {
        /// Request offset.
        offset: u64,
        /// Request length.
        len: u64,
        /// Image size.
        size: u64,
    },
    /// A write or resize on a read-only image.
    #[error("the image is read-only")]
    ReadOnly,
    /// The host failed an I/O operation.
    #[error("I/O error: {0}")]
    Io(String),
    /// The backend does not support the operation (for example resizing a remote image).
    #[error("operation not supported by the '{0}' backend")]
    Unsupported(&'static str),
    /// A request id is already in flight.
    #[error("request id {0} is already in flight")]
    DuplicateId(RequestId),
    /// The request is too large to be handled in one piece.
    #[error("request of {0} bytes is too large")]
    TooLarge(u64),
}

impl BlockError {
    /// The QMP error class QEMU 1.1 uses for this error where one exists.
    pub fn qmp_class(&self) -> &'static str {
        match self {
            BlockError::OpenFileFailed { .. } => "OpenFileFailed",
            BlockError::ReadOnly => "DeviceIsReadOnly",
            BlockError::Unsupported(_) => "Unsupported",
            BlockError::Io(_) => "IOError",
            _ => "GenericError",
        }
    }
}

/// The largest single request a backend accepts (64 MiB); larger requests fail with
/// [`BlockError::TooLarge`] so that a guest cannot make the host allocate without bound.
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;

/// An asynchronous block backend.
///
/// `submit` never blocks for long and never fails: every problem is reported in the request's
/// [`Completion`]. `poll` returns the completions that are ready, in any order; a backend that
/// completes later (HTTP, file picker) returns them on a later `poll`.
pub trait BlockBackend {
    /// Image size in bytes (rounded up to a multiple of 512, see the crate documentation).
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// The format driver name reported by `query-block` (`raw`, `qcow2` ...).
    fn format_name(&self) -> &'static str {
        "raw"
    }
    /// The file name reported by `query-block`.
    fn file_name(&self) -> &str;
    /// Whether the backend sits on a protocol layer (a host file) whose statistics are the
    /// `parent` statistics of `query-blockstats`.
    fn has_protocol_layer(&self) -> bool {
        true
    }
    /// Submits a request.
    fn submit(&mut self, id: RequestId, req: BlockRequest);
    /// Returns the completions that are ready.
    fn poll(&mut self) -> Vec<Completion>;
    /// Number of submitted requests that have not been returned by `poll` yet.
    fn in_flight(&self) -> usize;
    /// Changes the image size (`block_resize`).
    fn resize(&mut self, _new_size: u64) -> Result<(), BlockError> {
        Err(BlockError::Unsupported("this"))
    }
}

/// Rounds `len` up to a multiple of [`SECTOR_SIZE`].
pub(crate) fn round_up_sector(len: u64) -> u64 {
    len.div_ceil(SECTOR_SIZE).saturating_mul(SECTOR_SIZE)
}

/// Checks that `[offset, offset+len)` lies inside `size` and is not too large.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), BlockError> {
    if len > MAX_REQUEST_BYTES {
        return Err(BlockError::TooLarge(len));
    }
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { offset, len, size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks() {
        assert!(check_range(0, 512, 512).is_ok());
        assert!(check_range(512, 0, 512).is_ok());
        assert_eq!(
            check_range(1, 512, 512),
            Err(BlockError::OutOfRange {
                offset: 1,
                len: 512,
                size: 512
            })
        );
        assert!(matches!(
            check_range(u64::MAX, 2, u64::MAX),
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(
            check_range(0, MAX_REQUEST_BYTES + 1, u64::MAX),
            Err(BlockError::TooLarge(MAX_REQUEST_BYTES + 1))
        );
    }

    #[test]
    fn open_error_text_matches_qemu() {
        let e = BlockError::OpenFileFailed {
            filename: "/x.img".into(),
            reason: "gone".into(),
        };
        assert_eq!(e.to_string(), "Could not open '/x.img'");
        assert_eq!(e.qmp_class(), "OpenFileFailed");
    }

    #[test]
    fn rounding() {
        assert_eq!(round_up_sector(0), 0);
        assert_eq!(round_up_sector(1), 512);
        assert_eq!(round_up_sector(512), 512);
        assert_eq!(round_up_sector(513), 1024);
    }
}
