//! A read-only qcow2 reader (versions 2 and 3) with backing files and deflate-compressed
//! clusters.
//!
//! Guest writes to a qcow2 image are refused ([`BlockError::ReadOnly`]); the image is always
//! opened read-only. Encrypted images, external data files, extended L2 entries and zstd
//! compression are refused when the image is opened. Every offset and size read from the
//! image is checked: a corrupt image gives an error, never a panic or an unbounded
//! allocation.

use std::io::Read;

use crate::{
    check_range, round_up_sector, BlockBackend, BlockError, BlockRequest, Completion, RequestId,
};

/// Random-access reads of an image's bytes (a host file, a buffer in memory).
pub trait ReadAt {
    /// Length in bytes.
    fn len(&self) -> u64;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; bytes past the end read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.fill(0);
        let len = self.as_slice().len() as u64;
        if offset < len {
            let n = ((len - offset) as usize).min(buf.len());
            let start = offset as usize;
            buf[..n].copy_from_slice(&self[start..start + n]);
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ReadAt for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        use std::io::{Seek, SeekFrom};
        buf.fill(0);
        let len = ReadAt::len(self);
        if offset >= len {
            return Ok(());
        }
        let n = ((len - offset) as usize).min(buf.len());
        let io = |e: std::io::Error| BlockError::Io(e.to_string());
        self.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.read_exact(&mut buf[..n]).map_err(io)
    }
}

/// A virtual disk that can be read: a raw image or a qcow2 image (used for backing files).
pub trait DiskRead {
    /// Virtual size in bytes.
    fn disk_size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset` of the virtual disk (past the end: zeros).
    fn read_disk(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
}

/// A raw image as a [`DiskRead`].
pub struct RawDisk(pub Box<dyn ReadAt>);

impl DiskRead for RawDisk {
    fn disk_size(&self) -> u64 {
        round_up_sector(self.0.len())
    }

    fn read_disk(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read_at(offset, buf)
    }
}

const MAGIC: u32 = 0x5146_49FB;
/// Largest L1 table accepted (32 MiB).
const MAX_L1_BYTES: u64 = 32 << 20;
/// L2 tables kept in memory.
const L2_CACHE: usize = 16;
/// Deepest chain of backing files.
pub const MAX_BACKING_DEPTH: usize = 8;
const OFFSET_MASK: u64 = 0x00FF_FFFF_FFFF_FE00;

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn be64(b: &[u8], i: usize) -> u64 {
    (be32(b, i) as u64) << 32 | be32(b, i + 4) as u64
}

/// Whether `head` (the first bytes of an image) is a qcow2 header.
pub fn is_qcow2(head: &[u8]) -> bool {
    head.len() >= 4 && be32(head, 0) == MAGIC
}

/// The parsed header fields a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Entries of the L1 table.
    pub l1_size: u32,
    /// Offset of the L1 table.
    pub l1_offset: u64,
    /// Backing file name, if any.
    pub backing_file: Option<String>,
}

impl Qcow2Header {
    /// Parses and checks a header.
    pub fn parse(src: &mut dyn ReadAt) -> Result<Qcow2Header, String> {
        let mut h = [0u8; 112];
        src.read_at(0, &mut h).map_err(|e| e.to_string())?;
        if be32(&h, 0) != MAGIC {
            return Err("not a qcow2 image".into());
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(format!("unsupported qcow2 version {version}"));
        }
        let backing_offset = be64(&h, 8);
        let backing_len = be32(&h, 16);
        let cluster_bits = be32(&h, 20);
        let size = be64(&h, 24);
        let crypt = be32(&h, 32);
        let l1_size = be32(&h, 36);
        let l1_offset = be64(&h, 40);
        if !(9..=21).contains(&cluster_bits) {
            return Err(format!("invalid cluster size 2^{cluster_bits}"));
        }
        if crypt != 0 {
            return Err("encrypted images are not supported".into());
        }
        if size > 1 << 50 {
            return Err("image too large".into());
        }
        if version == 3 {
            let incompatible = be64(&h, 72);
            // Bit 0 (dirty) only concerns refcounts, which a reader ignores.
            if incompatible & !1 != 0 {
                return Err(format!(
                    "unsupported incompatible features {incompatible:#x}"
                ));
            }
        }
        let l2_entries = 1u64 << (cluster_bits - 3);
        let needed = size.div_ceil(l2_entries << cluster_bits);
        if (l1_size as u64) < needed || l1_size as u64 * 8 > MAX_L1_BYTES {
            return Err("invalid L1 table size".into());
        }
        if l1_offset & 7 != 0 {
            return Err("misaligned L1 table".into());
        }
        let backing_file = if backing_offset != 0 {
            if backing_len == 0 || backing_len > 1023 {
                return Err("invalid backing file name".into());
            }
            let mut name = vec![0u8; backing_len as usize];
            src.read_at(backing_offset, &mut name)
                .map_err(|e| e.to_string())?;
            Some(String::from_utf8(name).map_err(|_| "backing file name is not UTF-8")?)
        } else {
            None
        };
        Ok(Qcow2Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_offset,
            backing_file,
        })
    }
}

/// A qcow2 image as a readable virtual disk.
pub struct Qcow2Disk {
    src: Box<dyn ReadAt>,
    header: Qcow2Header,
    l1: Vec<u64>,
    /// (table offset, entries), most recently used last.
    l2_cache: Vec<(u64, Vec<u64>)>,
    backing: Option<Box<dyn DiskRead>>,
}

enum Cluster {
    Zero,
    Backing,
    Data(u64),
    Compressed { offset: u64, len: u64 },
}

impl Qcow2Disk {
    /// Opens an image from `src` with an optional backing disk (already opened by the caller
    /// from [`Qcow2Header::backing_file`]).
    pub fn new(
        mut src: Box<dyn ReadAt>,
        backing: Option<Box<dyn DiskRead>>,
    ) -> Result<Qcow2Disk, String> {
        let header = Qcow2Header::parse(src.as_mut())?;
        let mut raw = vec![0u8; header.l1_size as usize * 8];
        src.read_at(header.l1_offset, &mut raw)
            .map_err(|e| e.to_string())?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Qcow2Disk {
            src,
            header,
            l1,
            l2_cache: Vec::new(),
            backing,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    fn cluster_size(&self) -> u64 {
        1 << self.header.cluster_bits
    }

    fn l2_table(&mut self, offset: u64) -> Result<&[u64], BlockError> {
        if let Some(i) = self.l2_cache.iter().position(|(o, _)| *o == offset) {
            let e = self.l2_cache.remove(i);
            self.l2_cache.push(e);
        } else {
            let mut raw = vec![0u8; self.cluster_size() as usize];
            self.src.read_at(offset, &mut raw)?;
            let t = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
            if self.l2_cache.len() >= L2_CACHE {
                self.l2_cache.remove(0);
            }
            self.l2_cache.push((offset, t));
        }
        Ok(self.l2_cache.last().map_or(&[][..], |(_, t)| t.as_slice()))
    }

    fn lookup(&mut self, vcluster: u64) -> Result<Cluster, BlockError> {
        let bits = self.header.cluster_bits;
        let l2_entries = 1u64 << (bits - 3);
        let l1_index = (vcluster / l2_entries) as usize;
        let l1e = self.l1.get(l1_index).copied().unwrap_or(0);
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Cluster::Backing);
        }
        let corrupt = || BlockError::Io("corrupt qcow2 image".into());
        if l2_offset & (self.cluster_size() - 1) != 0 {
            return Err(corrupt());
        }
        let idx = (vcluster % l2_entries) as usize;
        let e = self
            .l2_table(l2_offset)?
            .get(idx)
            .copied()
            .ok_or_else(corrupt)?;
        if e & (1 << 62) != 0 {
            let x = 62 - (bits - 8);
            let offset = e & ((1u64 << x) - 1);
            let sectors = (e >> x) & ((1u64 << (bits - 8)) - 1);
            let len = (sectors + 1) * 512 - (offset & 511);
            return Ok(Cluster::Compressed { offset, len });
        }
        if self.header.version == 3 && e & 1 != 0 {
            return Ok(Cluster::Zero);
        }
        match e & OFFSET_MASK {
            0 => Ok(Cluster::Backing),
            o if o & (self.cluster_size() - 1) != 0 => Err(corrupt()),
            o => Ok(Cluster::Data(o)),
        }
    }
}

impl DiskRead for Qcow2Disk {
    fn disk_size(&self) -> u64 {
        self.header.size
    }

    fn read_disk(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let in_cluster = pos & (cs - 1);
            let n = ((cs - in_cluster) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if pos >= self.header.size {
                out.fill(0);
            } else {
                match self.lookup(pos / cs)? {
                    Cluster::Zero => out.fill(0),
                    Cluster::Backing => match &mut self.backing {
                        Some(b) => b.read_disk(pos, out)?,
                        None => out.fill(0),
                    },
                    Cluster::Data(o) => self.src.read_at(o + in_cluster, out)?,
                    Cluster::Compressed { offset, len } => {
                        let mut comp = vec![0u8; len.min(2 * cs) as usize];
                        self.src.read_at(offset, &mut comp)?;
                        let mut plain = Vec::with_capacity(cs as usize);
                        let mut dec = flate2::read::DeflateDecoder::new(&comp[..]).take(cs);
                        dec.read_to_end(&mut plain)
                            .map_err(|e| BlockError::Io(format!("compressed cluster: {e}")))?;
                        plain.resize(cs as usize, 0);
                        let s = in_cluster as usize;
                        out.copy_from_slice(&plain[s..s + n]);
                    }
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// A qcow2 image as a (read-only) block backend.
pub struct Qcow2Backend {
    disk: Qcow2Disk,
    name: String,
    done: Vec<Completion>,
}

impl Qcow2Backend {
    /// Wraps an opened qcow2 disk, named `name` in `query-block`.
    pub fn new(disk: Qcow2Disk, name: impl Into<String>) -> Qcow2Backend {
        Qcow2Backend {
            disk,
            name: name.into(),
            done: Vec::new(),
        }
    }

    /// Opens a qcow2 image file and its chain of backing files (relative names are resolved
    /// against the directory of the image that names them). Errors are
    /// [`BlockError::OpenFileFailed`] naming the file that failed.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Qcow2Backend, BlockError> {
        let path = path.as_ref();
        let disk = open_disk_chain(path, 0)?;
        let disk = match disk {
            Opened::Qcow2(d) => d,
            Opened::Raw(_) => {
                return Err(BlockError::OpenFileFailed {
                    filename: path.to_string_lossy().into_owned(),
                    reason: "not a qcow2 image".into(),
                })
            }
        };
        Ok(Qcow2Backend::new(disk, path.to_string_lossy()))
    }

    /// The backing file named by the image, if any.
    pub fn backing_file(&self) -> Option<&str> {
        self.disk.header.backing_file.as_deref()
    }
}

#[cfg(not(target_arch = "wasm32"))]
enum Opened {
    Raw(RawDisk),
    Qcow2(Qcow2Disk),
}

#[cfg(not(target_arch = "wasm32"))]
fn open_disk_chain(path: &std::path::Path, depth: usize) -> Result<Opened, BlockError> {
    let name = path.to_string_lossy().into_owned();
    let fail = |reason: String| BlockError::OpenFileFailed {
        filename: name.clone(),
        reason,
    };
    if depth > MAX_BACKING_DEPTH {
        return Err(fail("backing chain too deep".into()));
    }
    let mut file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut head = [0u8; 4];
    file.read_at(0, &mut head)?;
    if !is_qcow2(&head) {
        return Ok(Opened::Raw(RawDisk(Box::new(file))));
    }
    let header = Qcow2Header::parse(&mut file).map_err(fail)?;
    let backing: Option<Box<dyn DiskRead>> = match &header.backing_file {
        None => None,
        Some(b) => {
            let bp = std::path::Path::new(b);
            let full = if bp.is_absolute() {
                bp.to_path_buf()
            } else {
                path.parent().unwrap_or(std::path::Path::new(".")).join(bp)
            };
            Some(match open_disk_chain(&full, depth + 1)? {
                Opened::Raw(r) => Box::new(r),
                Opened::Qcow2(q) => Box::new(q),
            })
        }
    };
    Qcow2Disk::new(Box::new(file), backing)
        .map(Opened::Qcow2)
        .map_err(fail)
}

impl BlockBackend for Qcow2Backend {
    fn size(&self) -> u64 {
        round_up_sector(self.disk.disk_size())
    }

    fn read_only(&self) -> bool {
        true
    }

    fn format_name(&self) -> &'static str {
        "qcow2"
    }

    fn file_name(&self) -> &str {
        &self.name
    }

    fn submit(&mut self, id: RequestId, req: BlockRequest) {
        let result = match req {
            BlockRequest::Read { offset, len } => check_range(offset, len as u64, self.size())
                .and_then(|()| {
                    let mut buf = vec![0u8; len];
                    self.disk.read_disk(offset, &mut buf).map(|()| buf)
                }),
            BlockRequest::Write { .. } => Err(BlockError::ReadOnly),
            BlockRequest::Flush => Ok(Vec::new()),
        };
        self.done.push(Completion { id, result });
    }

    fn poll(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.done)
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }
}

/// Opens an image file, raw or qcow2 by its contents. A qcow2 image is always read-only.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_image(
    path: impl AsRef<std::path::Path>,
    read_only: bool,
) -> Result<Box<dyn BlockBackend>, BlockError> {
    let path = path.as_ref();
    let mut head = [0u8; 4];
    {
        let mut f = std::fs::File::open(path).map_err(|e| BlockError::OpenFileFailed {
            filename: path.to_string_lossy().into_owned(),
            reason: e.to_string(),
        })?;
        f.read_at(0, &mut head)?;
    }
    if is_qcow2(&head) {
        Ok(Box::new(Qcow2Backend::open(path)?))
    } else {
        Ok(Box::new(crate::FileBackend::open(path, read_only)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a version-2 qcow2 image with 512-byte clusters in memory: header, L1 at 512,
    /// one L2 table at 1024, data clusters after it. `clusters[i]` = Some(data) allocates
    /// virtual cluster i.
    fn build(size: u64, clusters: &[Option<Vec<u8>>], backing: Option<&str>) -> Vec<u8> {
        let cs = 512usize;
        let mut img = vec![0u8; 3 * cs];
        img[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        img[4..8].copy_from_slice(&2u32.to_be_bytes());
        if let Some(b) = backing {
            img[8..16].copy_from_slice(&200u64.to_be_bytes());
            img[16..20].copy_from_slice(&(b.len() as u32).to_be_bytes());
            img[200..200 + b.len()].copy_from_slice(b.as_bytes());
        }
        img[20..24].copy_from_slice(&9u32.to_be_bytes());
        img[24..32].copy_from_slice(&size.to_be_bytes());
        let l1_size = size.div_ceil(64 * 512) as u32;
        img[36..40].copy_from_slice(&l1_size.to_be_bytes());
        img[40..48].copy_from_slice(&512u64.to_be_bytes());
        img[512..520].copy_from_slice(&(1024u64 | 1 << 63).to_be_bytes());
        for (i, c) in clusters.iter().enumerate() {
            if let Some(data) = c {
                let off = img.len() as u64;
                img.extend_from_slice(data);
                img.resize(off as usize + cs, 0);
                img[1024 + 8 * i..1032 + 8 * i].copy_from_slice(&(off | 1 << 63).to_be_bytes());
            }
        }
        img
    }

    fn read(b: &mut dyn BlockBackend, offset: u64, len: usize) -> Result<Vec<u8>, BlockError> {
        b.submit(1, BlockRequest::Read { offset, len });
        b.poll().remove(0).result
    }

    #[test]
    fn reads_allocated_and_unallocated_clusters() {
        let img = build(8192, &[Some(vec![1; 512]), None, Some(vec![3; 512])], None);
        let disk = Qcow2Disk::new(Box::new(img), None).unwrap();
        assert_eq!(disk.header().size, 8192);
        let mut b = Qcow2Backend::new(disk, "t.qcow2");
        assert_eq!(b.size(), 8192);
        assert_eq!(b.format_name(), "qcow2");
        let data = read(&mut b, 256, 1536).unwrap();
        assert_eq!(&data[..256], &[1; 256][..]);
        assert_eq!(&data[256..768], &[0; 512][..]);
        assert_eq!(&data[768..1280], &[3; 512][..]);
        assert_eq!(&data[1280..], &[0; 256][..]);
        b.submit(
            2,
            BlockRequest::Write {
                offset: 0,
                data: vec![1],
            },
        );
        assert_eq!(b.poll()[0].result, Err(BlockError::ReadOnly));
        assert!(matches!(
            read(&mut b, 8000, 512),
            Err(BlockError::OutOfRange { .. })
        ));
    }

    #[test]
    fn unallocated_clusters_come_from_the_backing_disk() {
        let img = build(2048, &[None, Some(vec![7; 512])], Some("base.img"));
        let base = RawDisk(Box::new(vec![9u8; 2048]));
        let disk = Qcow2Disk::new(Box::new(img), Some(Box::new(base))).unwrap();
        assert_eq!(disk.header().backing_file.as_deref(), Some("base.img"));
        let mut b = Qcow2Backend::new(disk, "over.qcow2");
        let data = read(&mut b, 0, 2048).unwrap();
        assert_eq!(&data[..512], &[9; 512][..]);
        assert_eq!(&data[512..1024], &[7; 512][..]);
        assert_eq!(&data[1024..], &[9; 1024][..]);
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = build(2048, &[], None);
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut i = good.clone();
            f(&mut i);
            Qcow2Disk::new(Box::new(i), None).err().expect("refused")
        };
        assert!(bad(&|i| i[0] = 0).contains("not a qcow2"));
        assert!(bad(&|i| i[7] = 9).contains("version"));
        assert!(bad(&|i| i[23] = 40).contains("cluster"));
        assert!(bad(&|i| i[35] = 1).contains("encrypted"));
        assert!(bad(&|i| i[24] = 0x7F).contains("large"));
        assert!(bad(&|i| i[39] = 0).contains("L1"));
        assert!(bad(&|i| i[36] = 0x10).contains("L1"));
        // A corrupt compressed cluster is an I/O error at read time, not a panic.
        let mut i = build(2048, &[Some(vec![0xFF; 512])], None);
        let data_off = be64(&i, 1024) & OFFSET_MASK;
        i[1024..1032].copy_from_slice(&(data_off | 1 << 62).to_be_bytes());
        let mut b = Qcow2Backend::new(Qcow2Disk::new(Box::new(i), None).unwrap(), "x");
        assert!(matches!(read(&mut b, 0, 512), Err(BlockError::Io(_))));
        // A misaligned L2 table (4 KiB clusters) too.
        let mut i = good.clone();
        i[23] = 12;
        i[512..520].copy_from_slice(&(1000u64).to_be_bytes());
        i.resize(8192, 0);
        let mut b = Qcow2Backend::new(Qcow2Disk::new(Box::new(i), None).unwrap(), "x");
        assert!(matches!(read(&mut b, 0, 512), Err(BlockError::Io(_))));
    }

    /// Images made by `qemu-img` (when it is installed): compressed clusters, zero clusters,
    /// version 3, and a backing chain, compared with `qemu-img convert` to raw.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn matches_qemu_img_when_available() {
        use std::process::Command;
        let Ok(out) = Command::new("qemu-img").arg("--version").output() else {
            eprintln!("qemu-img not installed: skipped");
            return;
        };
        assert!(out.status.success());
        let dir = std::env::temp_dir().join(format!("wasm86-qcow2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("src.raw");
        let mut data: Vec<u8> = (0..(3 << 20))
            .map(|i: u32| (i / 4096 % 251) as u8)
            .collect();
        data[(1 << 20)..(2 << 20)].fill(0); // a zero run
        std::fs::write(&raw, &data).unwrap();
        let run = |args: &[&str]| {
            let s = Command::new("qemu-img").args(args).output().unwrap();
            assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
        };
        let base = dir.join("base.qcow2");
        let over = dir.join("over.qcow2");
        run(&[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "compat=0.10",
            raw.to_str().unwrap(),
            base.to_str().unwrap(),
        ]);
        run(&[
            "create",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            "base.qcow2",
            over.to_str().unwrap(),
        ]);
        // Write one cluster in the overlay.
        let io = Command::new("qemu-io")
            .args(["-c", "write -P 0xAB 65536 4096", over.to_str().unwrap()])
            .output();
        let wrote = io.is_ok_and(|o| o.status.success());
        if wrote {
            data[65536..65536 + 4096].fill(0xAB);
        }
        let mut b = open_image(&over, false).unwrap();
        assert_eq!(b.format_name(), "qcow2");
        assert!(b.read_only());
        assert_eq!(b.size(), data.len() as u64);
        b.submit(
            1,
            BlockRequest::Read {
                offset: 0,
                len: data.len(),
            },
        );
        let got = b.poll().remove(0).result.unwrap();
        assert!(got == data, "qcow2 chain reads as the source");
        let e = open_image(dir.join("missing.qcow2"), true).err().unwrap();
        assert_eq!(e.qmp_class(), "OpenFileFailed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
