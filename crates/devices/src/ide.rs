//! PIIX3 IDE: two ATA channels with ATA disks and ATAPI CD-ROMs, and the bus-master DMA block.
//!
//! Ports: channel 0 at 0x1F0–0x1F7 and 0x3F6 (IRQ14), channel 1 at 0x170–0x177 and 0x376
//! (IRQ15). The bus-master block is 16 bytes (8 per channel) that the board maps at the PCI
//! BAR4 base, passing offsets 0..16.
//!
//! # Storage through requests
//! The device never touches an image: it queues [`IdeRequest`]s that the board drains with
//! [`Ide::take_requests`], forwards to its block backends and answers with [`Ide::complete`].
//! While a request is out the drive is BSY. A native board may complete at once; the browser
//! completes later. Reads are issued in chunks of at most [`MAX_CHUNK`] bytes, so a guest
//! command never makes the device hold more than that.
//!
//! Drives are numbered 0..4: `channel * 2 + unit` (`ide0-hd0` = 0, `ide1-cd0` = 2).
//!
//! # Snapshots
//! The state holds every drive's registers, its data buffer and its outstanding request (with
//! the data of a write). After [`Snapshot::restore`] every outstanding request is queued again
//! with the same id, so the board only has to drain [`Ide::take_requests`] once more; a late
//! completion of the pre-restore request with that id is harmless (a second one is ignored).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use wasm86_memory::Memory;

use crate::{Snapshot, StateError};

/// Largest data chunk a request moves (128 KiB).
pub const MAX_CHUNK: usize = 128 * 1024;
const SECTOR: usize = 512;
const CD_SECTOR: usize = 2048;
const CHUNK_SECTORS: u64 = (MAX_CHUNK / SECTOR) as u64;
const CD_CHUNK_SECTORS: u64 = (MAX_CHUNK / CD_SECTOR) as u64;
/// Largest number of PRD entries walked for one command (a 64 KiB table).
pub const MAX_PRD_ENTRIES: u32 = 8192;
/// Sectors per block of READ/WRITE MULTIPLE that IDENTIFY reports.
const MAX_MULT_SECTORS: u16 = 16;
/// Tray movements kept until the board drains them (the oldest are dropped beyond).
const MAX_TRAY_EVENTS: usize = 64;

// Status register bits.
const BSY: u8 = 0x80;
const DRDY: u8 = 0x40;
const DSC: u8 = 0x10;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;
// Error register bits.
const ABRT: u8 = 0x04;
const IDNF: u8 = 0x10;
// Device control bits.
const NIEN: u8 = 0x02;
const SRST: u8 = 0x04;
const HOB: u8 = 0x80;
// ATAPI interrupt reason (sector count register).
const IR_COD: u8 = 0x01;
const IR_IO: u8 = 0x02;
// Bus master command/status bits.
const BM_CMD_START: u8 = 0x01;
const BM_CMD_TO_MEMORY: u8 = 0x08;
const BM_ST_ACTIVE: u8 = 0x01;
const BM_ST_ERROR: u8 = 0x02;
const BM_ST_INTR: u8 = 0x04;
// SCSI sense keys and additional sense codes.
const SENSE_NONE: u8 = 0;
const SENSE_NOT_READY: u8 = 2;
const SENSE_MEDIUM_ERROR: u8 = 3;
const SENSE_ILLEGAL_REQUEST: u8 = 5;
const SENSE_UNIT_ATTENTION: u8 = 6;
const ASC_INVALID_OPCODE: u8 = 0x20;
const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
const ASC_INVALID_FIELD: u8 = 0x24;
const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
const ASC_SAVING_NOT_SUPPORTED: u8 = 0x39;
const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3A;
const ASC_UNRECOVERED_READ: u8 = 0x11;
const ASC_REMOVAL_PREVENTED: u8 = 0x53;
// GET EVENT STATUS NOTIFICATION media event codes.
const EV_NONE: u8 = 0;
const EV_EJECT_REQUEST: u8 = 1;
const EV_NEW_MEDIA: u8 = 2;
const EV_MEDIA_REMOVAL: u8 = 3;

/// What is attached at a drive position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriveKind {
    /// Nothing.
    None,
    /// An ATA hard disk.
    Disk,
    /// An ATAPI CD/DVD-ROM.
    Cdrom,
}

/// What a request asks of the drive's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdeRequestKind {
    /// Read `len` bytes at byte `offset`.
    Read {
        /// Byte offset in the image.
        offset: u64,
        /// Length in bytes.
        len: usize,
    },
    /// Write `data` at byte `offset`.
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Flush the image.
    Flush,
}

/// A request for the board to forward to the drive's block backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdeRequest {
    /// Identifies the request in [`Ide::complete`].
    pub id: u64,
    /// Drive number (`channel * 2 + unit`).
    pub drive: usize,
    /// What to do.
    pub kind: IdeRequestKind,
}

/// Why a storage request failed (as the board reports it to a device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum IoError {
    /// The host failed the operation.
    #[error("I/O error")]
    Io,
    /// The request was outside the image.
    #[error("out of range")]
    OutOfRange,
    /// The image is read-only.
    #[error("read-only")]
    ReadOnly,
    /// There is no medium.
    #[error("no medium")]
    NoMedium,
}

/// Errors of the media API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EjectError {
    /// The guest locked the medium (PREVENT ALLOW MEDIUM REMOVAL) and the eject was not forced.
    #[error("device is locked")]
    Locked,
    /// The drive is not removable (a disk) or absent.
    #[error("device is not removable")]
    NotRemovable,
}

/// A tray opened or closed: the board turns it into QMP `DEVICE_TRAY_MOVED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrayMoved {
    /// Drive number.
    pub drive: usize,
    /// Whether the tray is now open.
    pub open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Medium {
    size: u64,
    read_only: bool,
}

/// The operation a drive is carrying out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Idle,
    /// PIO data-in of a reply (IDENTIFY).
    Reply,
    DiskRead {
        lba: u64,
        left: u64,
        dma: bool,
        block: u16,
    },
    DiskWrite {
        lba: u64,
        left: u64,
        dma: bool,
        block: u16,
    },
    Flush,
    /// Receiving a 12-byte ATAPI command packet.
    Packet,
    /// ATAPI data-in of a reply in `buf`.
    CdReply {
        dma: bool,
    },
    CdRead {
        lba: u64,
        left: u64,
        dma: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Dir {
    None,
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Drive {
    kind: DriveKind,
    medium: Option<Medium>,
    feature: u8,
    nsector: u8,
    sector: u8,
    lcyl: u8,
    hcyl: u8,
    hob_feature: u8,
    hob_nsector: u8,
    hob_sector: u8,
    hob_lcyl: u8,
    hob_hcyl: u8,
    select: u8,
    status: u8,
    error: u8,
    cyls: u16,
    heads: u8,
    secs: u8,
    mult_sectors: u16,
    /// Selected transfer mode (SET FEATURES subcommand 3 value).
    xfer_mode: u8,
    /// The command in progress uses 48-bit addressing.
    lba48: bool,
    standby: bool,
    op: Op,
    buf: Vec<u8>,
    pos: usize,
    blk_end: usize,
    dir: Dir,
    /// ATAPI PIO byte-count limit of the command.
    byte_limit: u16,
    pending: Option<IdeRequest>,
    // ATAPI.
    sense_key: u8,
    asc: u8,
    ascq: u8,
    tray_open: bool,
    locked: bool,
    unit_attention: bool,
    media_event: u8,
}

impl Drive {
    fn new() -> Drive {
        Drive {
            kind: DriveKind::None,
            medium: None,
            feature: 0,
            nsector: 1,
            sector: 1,
            lcyl: 0,
            hcyl: 0,
            hob_feature: 0,
            hob_nsector: 0,
            hob_sector: 0,
            hob_lcyl: 0,
            hob_hcyl: 0,
            select: 0xA0,
            status: 0,
            error: 1,
            cyls: 0,
            heads: 0,
            secs: 0,
            mult_sectors: 0,
            xfer_mode: 0,
            lba48: false,
            standby: false,
            op: Op::Idle,
            buf: Vec::new(),
            pos: 0,
            blk_end: 0,
            dir: Dir::None,
            byte_limit: 0,
            pending: None,
            sense_key: 0,
            asc: 0,
            ascq: 0,
            tray_open: false,
            locked: false,
            unit_attention: false,
            media_event: EV_NONE,
        }
    }

    fn sectors(&self) -> u64 {
        self.medium.map_or(0, |m| m.size / SECTOR as u64)
    }

    fn cd_sectors(&self) -> u64 {
        self.medium.map_or(0, |m| m.size / CD_SECTOR as u64)
    }

    /// A CD whose tray is closed with a medium inside.
    fn cd_has_media(&self) -> bool {
        self.medium.is_some() && !self.tray_open
    }

    fn set_geometry(&mut self) {
        let total = self.sectors();
        let cyls = (total / (16 * 63)).clamp(1, 16383);
        self.cyls = cyls as u16;
        self.heads = 16;
        self.secs = 63;
    }

    /// Power-on / reset values and signature.
    fn reset_regs(&mut self) {
        self.op = Op::Idle;
        self.dir = Dir::None;
        self.buf.clear();
        self.pos = 0;
        self.blk_end = 0;
        self.pending = None;
        self.feature = 0;
        self.hob_feature = 0;
        self.hob_nsector = 0;
        self.hob_sector = 0;
        self.hob_lcyl = 0;
        self.hob_hcyl = 0;
        self.select = 0xA0;
        self.mult_sectors = 0;
        self.standby = false;
        self.set_signature();
        self.error = 1;
        self.status = match self.kind {
            DriveKind::Disk => DRDY | DSC,
            _ => 0,
        };
    }

    fn set_signature(&mut self) {
        self.nsector = 1;
        self.sector = 1;
        (self.lcyl, self.hcyl) = match self.kind {
            DriveKind::Cdrom => (0x14, 0xEB),
            _ => (0, 0),
        };
    }

    fn lba48_address(&self) -> u64 {
        (self.hob_hcyl as u64) << 40
            | (self.hob_lcyl as u64) << 32
            | (self.hob_sector as u64) << 24
            | (self.hcyl as u64) << 16
            | (self.lcyl as u64) << 8
            | self.sector as u64
    }

    /// The starting sector of a 28-bit command (LBA or CHS).
    fn lba28_address(&self) -> Option<u64> {
        if self.select & 0x40 != 0 {
            Some(
                (self.select as u64 & 0x0F) << 24
                    | (self.hcyl as u64) << 16
                    | (self.lcyl as u64) << 8
                    | self.sector as u64,
            )
        } else {
            let cyl = (self.hcyl as u64) << 8 | self.lcyl as u64;
            let head = (self.select & 0x0F) as u64;
            if self.sector == 0 || self.heads == 0 || self.secs == 0 {
                return None;
            }
            Some((cyl * self.heads as u64 + head) * self.secs as u64 + self.sector as u64 - 1)
        }
    }

    /// Records the address of the last sector moved in the task file.
    fn set_sector(&mut self, lba: u64, lba48: bool) {
        if lba48 {
            self.sector = lba as u8;
            self.lcyl = (lba >> 8) as u8;
            self.hcyl = (lba >> 16) as u8;
            self.hob_sector = (lba >> 24) as u8;
            self.hob_lcyl = (lba >> 32) as u8;
            self.hob_hcyl = (lba >> 40) as u8;
        } else if self.select & 0x40 != 0 {
            self.sector = lba as u8;
            self.lcyl = (lba >> 8) as u8;
            self.hcyl = (lba >> 16) as u8;
            self.select = (self.select & 0xF0) | ((lba >> 24) as u8 & 0x0F);
        } else if self.heads != 0 && self.secs != 0 {
            let per_cyl = self.heads as u64 * self.secs as u64;
            let cyl = lba / per_cyl;
            let rem = lba % per_cyl;
            self.lcyl = cyl as u8;
            self.hcyl = (cyl >> 8) as u8;
            self.select = (self.select & 0xF0) | (rem / self.secs as u64) as u8 & 0x0F;
            self.sector = (rem % self.secs as u64 + 1) as u8;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BusMaster {
    cmd: u8,
    status: u8,
    prd_addr: u32,
    /// Address of the next PRD entry to fetch.
    prd_next: u32,
    /// Current region being moved.
    cur_addr: u32,
    cur_left: u32,
    /// The last entry (EOT) has been fetched.
    eot: bool,
    entries: u32,
}

impl BusMaster {
    /// Starts walking the PRD table anew.
    fn rewind(&mut self) {
        self.prd_next = self.prd_addr;
        self.cur_addr = 0;
        self.cur_left = 0;
        self.eot = false;
        self.entries = 0;
    }

    /// The next region of guest memory (address, length), or `None` when the table is done.
    fn next_region(&mut self, mem: &Memory) -> Option<(u32, u32)> {
        while self.cur_left == 0 {
            if self.eot || self.entries >= MAX_PRD_ENTRIES {
                return None;
            }
            let base = mem.read_u32(self.prd_next);
            let ctl = mem.read_u32(self.prd_next.wrapping_add(4));
            self.prd_next = self.prd_next.wrapping_add(8);
            self.entries += 1;
            let len = ctl & 0xFFFF;
            self.cur_addr = base & !1;
            self.cur_left = if len == 0 { 0x10000 } else { len & !1 };
            self.eot = ctl & 0x8000_0000 != 0;
        }
        Some((self.cur_addr, self.cur_left))
    }

    fn advance(&mut self, n: u32) {
        self.cur_addr = self.cur_addr.wrapping_add(n);
        self.cur_left -= n.min(self.cur_left);
    }

    /// Writes `data` to guest memory through the table; returns the bytes written.
    fn write_memory(&mut self, mem: &mut Memory, data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let Some((addr, left)) = self.next_region(mem) else {
                break;
            };
            let n = (left as usize).min(data.len() - done);
            mem.write_phys(addr, &data[done..done + n]);
            self.advance(n as u32);
            done += n;
        }
        done
    }

    /// Reads `len` bytes of guest memory through the table (fewer if the table ends).
    fn read_memory(&mut self, mem: &Memory, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let Some((addr, left)) = self.next_region(mem) else {
                break;
            };
            let n = (left as usize).min(len - done);
            mem.read_phys(addr, &mut out[done..done + n]);
            self.advance(n as u32);
            done += n;
        }
        out.truncate(done);
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Channel {
    drives: [Drive; 2],
    unit: usize,
    devctl: u8,
    irq: bool,
    bm: BusMaster,
}

/// Saved state of the IDE controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdeState {
    channels: [Channel; 2],
    next_id: u64,
    tray_events: Vec<TrayMoved>,
}

/// The PIIX3 IDE controller (see the module documentation).
#[derive(Debug, Clone)]
pub struct Ide {
    st: IdeState,
    requests: VecDeque<IdeRequest>,
}

/// What an ATAPI command did.
enum CdResult {
    /// Done, no data.
    Ok,
    /// Data to return (already truncated to the allocation length).
    Data(Vec<u8>),
    /// A read was started.
    Started,
    /// Check condition.
    Error(u8, u8, u8),
}

fn ata_string(dst: &mut [u16], s: &str) {
    let bytes = s.as_bytes();
    for (i, w) in dst.iter_mut().enumerate() {
        let a = *bytes.get(2 * i).unwrap_or(&b' ') as u16;
        let b = *bytes.get(2 * i + 1).unwrap_or(&b' ') as u16;
        *w = (a << 8) | b;
    }
}

fn be16(b: &[u8], i: usize) -> u32 {
    (b[i] as u32) << 8 | b[i + 1] as u32
}

fn be32(b: &[u8], i: usize) -> u32 {
    be16(b, i) << 16 | be16(b, i + 2)
}

fn lba_to_msf(lba: u64) -> [u8; 4] {
    let l = lba + 150;
    [0, (l / 75 / 60) as u8, (l / 75 % 60) as u8, (l % 75) as u8]
}

impl Default for Ide {
    fn default() -> Self {
        Ide::new()
    }
}

impl Ide {
    /// A controller with no drives attached.
    pub fn new() -> Ide {
        let ch = || Channel {
            drives: [Drive::new(), Drive::new()],
            unit: 0,
            devctl: 0,
            irq: false,
            bm: BusMaster::default(),
        };
        Ide {
            st: IdeState {
                channels: [ch(), ch()],
                next_id: 1,
                tray_events: Vec::new(),
            },
            requests: VecDeque::new(),
        }
    }

    fn drive_mut(&mut self, drive: usize) -> Option<&mut Drive> {
        self.st
            .channels
            .get_mut(drive / 2)?
            .drives
            .get_mut(drive % 2)
    }

    fn drive_ref(&self, drive: usize) -> Option<&Drive> {
        self.st.channels.get(drive / 2)?.drives.get(drive % 2)
    }

    /// Attaches a hard disk of `size` bytes (a multiple of 512; the rest is ignored).
    pub fn attach_disk(&mut self, drive: usize, size: u64, read_only: bool) {
        if let Some(d) = self.drive_mut(drive) {
            *d = Drive::new();
            d.kind = DriveKind::Disk;
            d.medium = Some(Medium {
                size: size / SECTOR as u64 * SECTOR as u64,
                read_only,
            });
            d.set_geometry();
            d.reset_regs();
        }
    }

    /// Attaches an empty CD-ROM drive with its tray closed.
    pub fn attach_cdrom(&mut self, drive: usize) {
        if let Some(d) = self.drive_mut(drive) {
            *d = Drive::new();
            d.kind = DriveKind::Cdrom;
            d.reset_regs();
        }
    }

    /// What is attached at `drive`.
    pub fn drive_kind(&self, drive: usize) -> DriveKind {
        self.drive_ref(drive).map_or(DriveKind::None, |d| d.kind)
    }

    /// Inserts a medium of `size_bytes` into a CD-ROM drive (closing its tray) or changes a
    /// disk's image. The guest sees UNIT ATTENTION / MEDIUM MAY HAVE CHANGED and a media event.
    pub fn insert_medium(
        &mut self,
        drive: usize,
        size_bytes: u64,
        read_only: bool,
    ) -> Result<(), EjectError> {
        let Some(d) = self.drive_mut(drive) else {
            return Err(EjectError::NotRemovable);
        };
        match d.kind {
            DriveKind::None => Err(EjectError::NotRemovable),
            DriveKind::Disk => {
                d.medium = Some(Medium {
                    size: size_bytes / 512 * 512,
                    read_only,
                });
                d.set_geometry();
                Ok(())
            }
            DriveKind::Cdrom => {
                let size = size_bytes / CD_SECTOR as u64 * CD_SECTOR as u64;
                d.medium = Some(Medium {
                    size,
                    read_only: true,
                });
                d.unit_attention = true;
                d.media_event = EV_NEW_MEDIA;
                let was_open = d.tray_open;
                d.tray_open = false;
                if was_open {
                    self.push_tray(TrayMoved { drive, open: false });
                }
                Ok(())
            }
        }
    }

    /// Ejects a CD-ROM's medium and opens its tray. A guest lock is honoured unless `force`.
    /// When refused, the guest gets an eject-request media event (as QEMU).
    pub fn eject(&mut self, drive: usize, force: bool) -> Result<(), EjectError> {
        let Some(d) = self.drive_mut(drive) else {
            return Err(EjectError::NotRemovable);
        };
        if d.kind != DriveKind::Cdrom {
            return Err(EjectError::NotRemovable);
        }
        if d.locked && !force {
            d.media_event = EV_EJECT_REQUEST;
            return Err(EjectError::Locked);
        }
        d.locked = false;
        if d.medium.take().is_some() {
            d.media_event = EV_MEDIA_REMOVAL;
        }
        if !d.tray_open {
            d.tray_open = true;
            self.push_tray(TrayMoved { drive, open: true });
        }
        Ok(())
    }

    /// Whether the drive's tray is open.
    pub fn tray_open(&self, drive: usize) -> bool {
        self.drive_ref(drive).is_some_and(|d| d.tray_open)
    }

    /// Whether the guest locked the drive's medium.
    pub fn locked(&self, drive: usize) -> bool {
        self.drive_ref(drive).is_some_and(|d| d.locked)
    }

    /// Whether a medium is inserted (tray state aside).
    pub fn has_medium(&self, drive: usize) -> bool {
        self.drive_ref(drive).is_some_and(|d| d.medium.is_some())
    }

    /// Drains the tray movements since the last call.
    pub fn take_tray_events(&mut self) -> Vec<TrayMoved> {
        std::mem::take(&mut self.st.tray_events)
    }

    /// Drains the storage requests to forward to the block backends.
    pub fn take_requests(&mut self) -> Vec<IdeRequest> {
        self.requests.drain(..).collect()
    }

    /// Whether the channel's interrupt line is asserted.
    pub fn irq_level(&self, channel: usize) -> bool {
        self.st
            .channels
            .get(channel)
            .is_some_and(|c| c.irq && c.devctl & NIEN == 0)
    }

    /// Hardware reset of both channels (attached drives and media stay).
    pub fn reset(&mut self) {
        for ch in &mut self.st.channels {
            for d in &mut ch.drives {
                d.reset_regs();
                d.locked = false;
            }
            ch.unit = 0;
            ch.devctl = 0;
            ch.irq = false;
            ch.bm = BusMaster::default();
        }
        self.requests.clear();
    }

    // ------------------------------------------------------------------ ports

    fn decode(port: u16) -> Option<(usize, u16)> {
        match port {
            0x1F0..=0x1F7 => Some((0, port - 0x1F0)),
            0x170..=0x177 => Some((1, port - 0x170)),
            0x3F6 => Some((0, 8)),
            0x376 => Some((1, 8)),
            _ => None,
        }
    }

    /// Reads an IDE port (`size` 1, 2 or 4 bytes; only the data port moves more than a byte).
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        let Some((c, reg)) = Ide::decode(port) else {
            return u32::MAX;
        };
        if reg == 0 {
            let n = (size as usize).clamp(1, 4);
            let mut b = [0xFFu8; 4];
            let got = self.data_in(c, &mut b[..n]);
            if got == 0 && self.channel_empty(c) {
                return u32::MAX;
            }
            return u32::from_le_bytes(b);
        }
        self.read_reg(c, reg) as u32
    }

    fn channel_empty(&self, c: usize) -> bool {
        self.st.channels[c]
            .drives
            .iter()
            .all(|d| d.kind == DriveKind::None)
    }

    fn read_reg(&mut self, c: usize, reg: u16) -> u8 {
        if self.channel_empty(c) {
            // Nothing drives the bus: the status floats with D7 pulled low, the rest high.
            return if reg == 7 || reg == 8 { 0x7F } else { 0xFF };
        }
        let ch = &mut self.st.channels[c];
        let hob = ch.devctl & HOB != 0;
        let d = &ch.drives[ch.unit];
        let absent = d.kind == DriveKind::None;
        if absent && reg != 6 {
            // An empty slot on a present channel reads as zero (as QEMU), so that the
            // 0x55/0xAA register test of the BIOS and Linux finds nothing there.
            if reg == 7 {
                ch.irq = false;
            }
            return 0;
        }
        match reg {
            1 => {
                if hob {
                    d.hob_feature
                } else {
                    d.error
                }
            }
            2 => {
                if hob {
                    d.hob_nsector
                } else {
                    d.nsector
                }
            }
            3 => {
                if hob {
                    d.hob_sector
                } else {
                    d.sector
                }
            }
            4 => {
                if hob {
                    d.hob_lcyl
                } else {
                    d.lcyl
                }
            }
            5 => {
                if hob {
                    d.hob_hcyl
                } else {
                    d.hcyl
                }
            }
            6 => d.select,
            7 => {
                ch.irq = false;
                d.status
            }
            _ => d.status,
        }
    }

    /// Writes an IDE port.
    pub fn write(&mut self, port: u16, size: u8, val: u32) {
        let Some((c, reg)) = Ide::decode(port) else {
            return;
        };
        match reg {
            0 => {
                let n = (size as usize).clamp(1, 4);
                self.data_out(c, &val.to_le_bytes()[..n]);
            }
            1..=5 => {
                let v = val as u8;
                let ch = &mut self.st.channels[c];
                ch.devctl &= !HOB;
                for d in &mut ch.drives {
                    match reg {
                        1 => (d.hob_feature, d.feature) = (d.feature, v),
                        2 => (d.hob_nsector, d.nsector) = (d.nsector, v),
                        3 => (d.hob_sector, d.sector) = (d.sector, v),
                        4 => (d.hob_lcyl, d.lcyl) = (d.lcyl, v),
                        _ => (d.hob_hcyl, d.hcyl) = (d.hcyl, v),
                    }
                }
            }
            6 => {
                let ch = &mut self.st.channels[c];
                ch.devctl &= !HOB;
                for d in &mut ch.drives {
                    d.select = val as u8 | 0xA0;
                }
                ch.unit = (val as usize >> 4) & 1;
            }
            7 => self.command(c, val as u8),
            _ => self.write_devctl(c, val as u8),
        }
    }

    fn write_devctl(&mut self, c: usize, v: u8) {
        let ch = &mut self.st.channels[c];
        let old = ch.devctl;
        ch.devctl = v;
        if v & SRST != 0 && old & SRST == 0 {
            for d in &mut ch.drives {
                if d.kind != DriveKind::None {
                    d.op = Op::Idle;
                    d.dir = Dir::None;
                    d.pending = None;
                    d.status = BSY | DSC;
                    d.error = 1;
                }
            }
            let (ra, rb) = (c * 2, c * 2 + 1);
            self.requests.retain(|r| r.drive != ra && r.drive != rb);
        } else if v & SRST == 0 && old & SRST != 0 {
            let ch = &mut self.st.channels[c];
            for d in &mut ch.drives {
                if d.kind != DriveKind::None {
                    let (mult, mode) = (d.mult_sectors, d.xfer_mode);
                    d.reset_regs();
                    d.mult_sectors = mult;
                    d.xfer_mode = mode;
                }
            }
            ch.unit = 0;
            ch.irq = false;
        }
    }

    /// Moves up to `buf.len()` bytes of PIO data from the selected drive of `channel` (REP
    /// INSW/INSD in one call). Moves on across DRQ blocks while data is ready; returns fewer
    /// bytes than asked when the command ends or a storage request is outstanding (the rest
    /// of the guest's transfer then reads as the port's idle value).
    pub fn pio_read_bulk(&mut self, channel: usize, buf: &mut [u8]) -> usize {
        if channel > 1 {
            return 0;
        }
        let mut done = 0;
        while done < buf.len() {
            let n = self.data_in(channel, &mut buf[done..]);
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// Moves PIO data to the selected drive of `channel` (REP OUTSW/OUTSD in one call).
    /// Returns the bytes accepted.
    pub fn pio_write_bulk(&mut self, channel: usize, data: &[u8]) -> usize {
        if channel > 1 {
            return 0;
        }
        let mut done = 0;
        while done < data.len() {
            let n = self.data_out(channel, &data[done..]);
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// Device-to-host data within the current DRQ block.
    fn data_in(&mut self, c: usize, out: &mut [u8]) -> usize {
        let ch = &mut self.st.channels[c];
        let d = &mut ch.drives[ch.unit];
        if d.dir != Dir::In || d.status & DRQ == 0 || op_is_dma(d.op) {
            return 0;
        }
        let end = d.blk_end.min(d.buf.len());
        let n = out.len().min(end.saturating_sub(d.pos));
        if let Some(src) = d.buf.get(d.pos..d.pos + n) {
            out[..n].copy_from_slice(src);
        }
        d.pos += n;
        if d.pos >= end {
            let u = ch.unit;
            self.block_in_done(c, u);
        }
        n
    }

    /// Host-to-device data within the current DRQ block.
    fn data_out(&mut self, c: usize, data: &[u8]) -> usize {
        let ch = &mut self.st.channels[c];
        let d = &mut ch.drives[ch.unit];
        if d.dir != Dir::Out || d.status & DRQ == 0 || op_is_dma(d.op) {
            return 0;
        }
        let end = d.blk_end.min(d.buf.len());
        let n = data.len().min(end.saturating_sub(d.pos));
        if let Some(dst) = d.buf.get_mut(d.pos..d.pos + n) {
            dst.copy_from_slice(&data[..n]);
        }
        d.pos += n;
        if d.pos >= end {
            let u = ch.unit;
            self.block_out_done(c, u);
        }
        n
    }

    // ------------------------------------------------------------- helpers

    fn raise_irq(&mut self, c: usize) {
        let ch = &mut self.st.channels[c];
        if ch.devctl & NIEN == 0 {
            ch.bm.status |= BM_ST_INTR;
        }
        ch.irq = true;
    }

    fn issue(&mut self, c: usize, u: usize, kind: IdeRequestKind) {
        let id = self.st.next_id;
        self.st.next_id = self.st.next_id.wrapping_add(1).max(1);
        let req = IdeRequest {
            id,
            drive: c * 2 + u,
            kind,
        };
        let d = &mut self.st.channels[c].drives[u];
        d.status = BSY | DSC;
        d.pending = Some(req.clone());
        self.requests.push_back(req);
    }

    fn ata_abort(&mut self, c: usize, u: usize, err: u8) {
        let d = &mut self.st.channels[c].drives[u];
        d.op = Op::Idle;
        d.dir = Dir::None;
        d.status = DRDY | ERR;
        d.error = err;
        self.raise_irq(c);
    }

    fn ata_done(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        d.op = Op::Idle;
        d.dir = Dir::None;
        d.status = DRDY | DSC;
        d.error = 0;
        self.raise_irq(c);
    }

    /// Presents `buf[pos..]` as a PIO data-in block of at most `block` bytes.
    fn pio_in_block(&mut self, c: usize, u: usize, block: usize, irq: bool) {
        let d = &mut self.st.channels[c].drives[u];
        d.blk_end = (d.pos + block).min(d.buf.len());
        d.dir = Dir::In;
        d.status = DRDY | DSC | DRQ;
        if irq {
            self.raise_irq(c);
        }
    }

    // ------------------------------------------------------------ commands

    fn command(&mut self, c: usize, cmd: u8) {
        let ch = &mut self.st.channels[c];
        let u = ch.unit;
        ch.irq = false;
        ch.devctl &= !HOB;
        let d = &mut ch.drives[u];
        if d.kind == DriveKind::None {
            return;
        }
        if d.status & BSY != 0 && cmd != 0x08 {
            return;
        }
        if d.kind == DriveKind::Cdrom {
            self.cd_command(c, u, cmd);
        } else {
            self.disk_command(c, u, cmd);
        }
    }

    fn disk_command(&mut self, c: usize, u: usize, cmd: u8) {
        let d = &mut self.st.channels[c].drives[u];
        d.error = 0;
        match cmd {
            0xEC => {
                let id = self.identify_disk(c, u);
                let d = &mut self.st.channels[c].drives[u];
                d.buf = id;
                d.pos = 0;
                d.op = Op::Reply;
                self.pio_in_block(c, u, SECTOR, true);
            }
            0x20 | 0x21 | 0x24 | 0xC4 | 0x29 => {
                let ext = matches!(cmd, 0x24 | 0x29);
                let multiple = matches!(cmd, 0xC4 | 0x29);
                self.start_rw(c, u, ext, multiple, false, false);
            }
            0x30 | 0x31 | 0x34 | 0xC5 | 0x39 => {
                let ext = matches!(cmd, 0x34 | 0x39);
                let multiple = matches!(cmd, 0xC5 | 0x39);
                self.start_rw(c, u, ext, multiple, true, false);
            }
            0xC8 | 0xC9 | 0x25 => self.start_rw(c, u, cmd == 0x25, false, false, true),
            0xCA | 0xCB | 0x35 => self.start_rw(c, u, cmd == 0x35, false, true, true),
            0x40..=0x42 => {
                // READ VERIFY: check the range only.
                let ext = cmd == 0x42;
                match self.rw_range(c, u, ext) {
                    Some(_) => self.ata_done(c, u),
                    None => self.ata_abort(c, u, IDNF),
                }
            }
            0xC6 => {
                let n = d.nsector as u16;
                if n == 0 || (n <= MAX_MULT_SECTORS && n.is_power_of_two()) {
                    d.mult_sectors = n;
                    self.ata_done(c, u);
                } else {
                    self.ata_abort(c, u, ABRT);
                }
            }
            0xE7 | 0xEA => {
                d.op = Op::Flush;
                self.issue(c, u, IdeRequestKind::Flush);
            }
            0xEF => self.set_features(c, u),
            0x91 => {
                // INITIALIZE DEVICE PARAMETERS: the translation stays 16/63 (as QEMU).
                self.ata_done(c, u);
            }
            0x10..=0x1F | 0x70 => self.ata_done(c, u),
            0xE0 | 0xE2 | 0x94 | 0x96 => {
                d.standby = true;
                self.ata_done(c, u);
            }
            0xE1 | 0xE3 | 0x95 | 0x97 => {
                d.standby = false;
                self.ata_done(c, u);
            }
            0xE5 | 0x98 => {
                let v = if d.standby { 0x00 } else { 0xFF };
                self.ata_done(c, u);
                self.st.channels[c].drives[u].nsector = v;
            }
            0x90 => self.diagnostic(c),
            _ => self.ata_abort(c, u, ABRT),
        }
    }

    fn diagnostic(&mut self, c: usize) {
        for d in &mut self.st.channels[c].drives {
            if d.kind != DriveKind::None {
                d.set_signature();
                d.error = 1;
                d.status = if d.kind == DriveKind::Disk {
                    DRDY | DSC
                } else {
                    0
                };
                d.op = Op::Idle;
                d.dir = Dir::None;
            }
        }
        self.raise_irq(c);
    }

    fn set_features(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        match d.feature {
            0x03 => {
                let mode = d.nsector;
                let ok = matches!(mode >> 3, 0 | 1) || matches!(mode, 0x20..=0x22 | 0x40..=0x45);
                if ok {
                    d.xfer_mode = mode;
                    self.ata_done(c, u);
                } else {
                    self.ata_abort(c, u, ABRT);
                }
            }
            // Write cache, read look-ahead, reverting to defaults, APM: accepted.
            0x02 | 0x82 | 0xAA | 0x55 | 0x66 | 0xCC | 0x05 | 0x85 => self.ata_done(c, u),
            _ => self.ata_abort(c, u, ABRT),
        }
    }

    /// Start sector and count of a read/write command, checked against the disk.
    fn rw_range(&self, c: usize, u: usize, ext: bool) -> Option<(u64, u64)> {
        let d = &self.st.channels[c].drives[u];
        let (lba, count) = if ext {
            let n = (d.hob_nsector as u64) << 8 | d.nsector as u64;
            (d.lba48_address(), if n == 0 { 65536 } else { n })
        } else {
            let n = d.nsector as u64;
            (d.lba28_address()?, if n == 0 { 256 } else { n })
        };
        (lba.checked_add(count)? <= d.sectors()).then_some((lba, count))
    }

    fn start_rw(&mut self, c: usize, u: usize, ext: bool, multiple: bool, write: bool, dma: bool) {
        let d = &self.st.channels[c].drives[u];
        if multiple && d.mult_sectors == 0 {
            return self.ata_abort(c, u, ABRT);
        }
        if write && d.medium.is_some_and(|m| m.read_only) {
            return self.ata_abort(c, u, ABRT);
        }
        let block = if multiple { d.mult_sectors } else { 1 };
        let Some((lba, left)) = self.rw_range(c, u, ext) else {
            return self.ata_abort(c, u, IDNF);
        };
        let d = &mut self.st.channels[c].drives[u];
        d.lba48 = ext;
        if write {
            d.op = Op::DiskWrite {
                lba,
                left,
                dma,
                block,
            };
            if dma {
                d.status = DRDY | DSC | DRQ;
                d.dir = Dir::None;
            } else {
                self.start_write_chunk(c, u, false);
            }
        } else {
            d.op = Op::DiskRead {
                lba,
                left,
                dma,
                block,
            };
            d.status = DRDY | DSC | DRQ;
            self.issue_disk_read(c, u);
        }
    }

    fn issue_disk_read(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        if let Op::DiskRead { lba, left, .. } = d.op {
            let n = left.min(CHUNK_SECTORS);
            let kind = IdeRequestKind::Read {
                offset: lba * SECTOR as u64,
                len: n as usize * SECTOR,
            };
            self.issue(c, u, kind);
        }
    }

    /// Prepares the buffer for the next chunk of a PIO write and asks for its first block.
    fn start_write_chunk(&mut self, c: usize, u: usize, irq: bool) {
        let d = &mut self.st.channels[c].drives[u];
        if let Op::DiskWrite { left, block, .. } = d.op {
            let n = left.min(CHUNK_SECTORS) as usize;
            d.buf = vec![0; n * SECTOR];
            d.pos = 0;
            d.blk_end = (block as usize * SECTOR).min(d.buf.len());
            d.dir = Dir::Out;
            d.status = DRDY | DSC | DRQ;
            if irq {
                self.raise_irq(c);
            }
        }
    }

    fn block_in_done(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        match d.op {
            Op::Reply => {
                d.op = Op::Idle;
                d.dir = Dir::None;
                d.status = DRDY | DSC;
            }
            Op::DiskRead { left, block, .. } => {
                if d.pos < d.buf.len() {
                    self.pio_in_block(c, u, block as usize * SECTOR, true);
                } else if left > 0 {
                    self.issue_disk_read(c, u);
                } else {
                    d.op = Op::Idle;
                    d.dir = Dir::None;
                    d.status = DRDY | DSC;
                }
            }
            Op::CdRead { left, .. } => {
                if d.pos < d.buf.len() {
                    self.atapi_pio_block(c, u);
                } else if left > 0 {
                    self.issue_cd_read(c, u);
                } else {
                    self.atapi_ok(c, u);
                }
            }
            Op::CdReply { .. } => {
                if d.pos < d.buf.len() {
                    self.atapi_pio_block(c, u);
                } else {
                    self.atapi_ok(c, u);
                }
            }
            _ => {
                d.dir = Dir::None;
                d.status &= !DRQ;
            }
        }
    }

    fn block_out_done(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        match d.op {
            Op::Packet => {
                let mut cdb = [0u8; 12];
                let n = d.buf.len().min(12);
                cdb[..n].copy_from_slice(&d.buf[..n]);
                d.dir = Dir::None;
                d.status = BSY | DSC;
                self.atapi_exec(c, u, &cdb);
            }
            Op::DiskWrite { lba, block, .. } => {
                if d.pos < d.buf.len() {
                    d.blk_end = (d.pos + block as usize * SECTOR).min(d.buf.len());
                    d.status = DRDY | DSC | DRQ;
                    self.raise_irq(c);
                } else {
                    d.dir = Dir::None;
                    let data = std::mem::take(&mut d.buf);
                    d.pos = 0;
                    d.blk_end = 0;
                    self.issue(
                        c,
                        u,
                        IdeRequestKind::Write {
                            offset: lba * SECTOR as u64,
                            data,
                        },
                    );
                }
            }
            _ => {
                d.dir = Dir::None;
                d.status &= !DRQ;
            }
        }
    }

    // ------------------------------------------------------- completions

    /// Answers a request taken with [`Ide::take_requests`]: the bytes read (a read) or an empty
    /// vector (a write or flush), or the error. DMA moves data through `mem` here. Unknown ids
    /// (a request cancelled by a reset) are ignored.
    pub fn complete(&mut self, id: u64, result: Result<Vec<u8>, IoError>, mem: &mut Memory) {
        let mut at = None;
        for (c, ch) in self.st.channels.iter().enumerate() {
            for (u, d) in ch.drives.iter().enumerate() {
                if d.pending.as_ref().is_some_and(|p| p.id == id) {
                    at = Some((c, u));
                }
            }
        }
        let Some((c, u)) = at else { return };
        self.requests.retain(|r| r.id != id);
        let d = &mut self.st.channels[c].drives[u];
        let Some(req) = d.pending.take() else { return };
        let expected = match &req.kind {
            IdeRequestKind::Read { len, .. } => *len,
            _ => 0,
        };
        let data = match result {
            Ok(v) if v.len() == expected || expected == 0 => v,
            Ok(_) | Err(_) => return self.request_failed(c, u),
        };
        let lba48 = d.lba48;
        match d.op {
            Op::DiskRead {
                lba,
                left,
                dma,
                block,
            } => {
                let n = (data.len() / SECTOR) as u64;
                d.op = Op::DiskRead {
                    lba: lba + n,
                    left: left - n.min(left),
                    dma,
                    block,
                };
                d.set_sector(lba + n.saturating_sub(1), lba48);
                d.buf = data;
                d.pos = 0;
                if dma {
                    d.status = DRDY | DSC | DRQ;
                    d.dir = Dir::In;
                    self.dma_pump(c, u, mem);
                } else {
                    self.pio_in_block(c, u, block as usize * SECTOR, true);
                }
            }
            Op::DiskWrite {
                lba,
                left,
                dma,
                block,
            } => {
                let IdeRequestKind::Write { data: written, .. } = &req.kind else {
                    return self.request_failed(c, u);
                };
                let n = (written.len() / SECTOR) as u64;
                let left = left - n.min(left);
                d.op = Op::DiskWrite {
                    lba: lba + n,
                    left,
                    dma,
                    block,
                };
                d.set_sector(lba + n.saturating_sub(1), lba48);
                if left == 0 {
                    if dma {
                        self.dma_finish(c);
                    }
                    self.ata_done(c, u);
                } else if dma {
                    d.status = DRDY | DSC | DRQ;
                    self.dma_pump(c, u, mem);
                } else {
                    self.start_write_chunk(c, u, true);
                }
            }
            Op::Flush => self.ata_done(c, u),
            Op::CdRead { lba, left, dma } => {
                let n = (data.len() / CD_SECTOR) as u64;
                d.op = Op::CdRead {
                    lba: lba + n,
                    left: left - n.min(left),
                    dma,
                };
                d.buf = data;
                d.pos = 0;
                if dma {
                    d.status = DRDY | DSC | DRQ;
                    d.dir = Dir::In;
                    self.dma_pump(c, u, mem);
                } else {
                    self.atapi_pio_block(c, u);
                }
            }
            _ => {}
        }
    }

    fn request_failed(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        let dma = matches!(
            d.op,
            Op::DiskRead { dma: true, .. }
                | Op::DiskWrite { dma: true, .. }
                | Op::CdRead { dma: true, .. }
        );
        let cd = d.kind == DriveKind::Cdrom;
        if dma {
            let bm = &mut self.st.channels[c].bm;
            bm.status = (bm.status | BM_ST_ERROR) & !BM_ST_ACTIVE;
        }
        if cd {
            self.atapi_error(c, u, SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ, 0);
        } else {
            self.ata_abort(c, u, ABRT);
        }
    }

    // --------------------------------------------------------- bus master

    /// Reads the bus-master block at `offset` (0..16).
    pub fn bm_read(&self, offset: u16, size: u8) -> u32 {
        let Some(ch) = self.st.channels.get(offset as usize / 8) else {
            return u32::MAX;
        };
        let bm = &ch.bm;
        let regs = [
            bm.cmd,
            0,
            bm.status,
            0,
            bm.prd_addr as u8,
            (bm.prd_addr >> 8) as u8,
            (bm.prd_addr >> 16) as u8,
            (bm.prd_addr >> 24) as u8,
        ];
        let mut v = 0u32;
        for i in 0..(size as usize).clamp(1, 4) {
            let r = (offset as usize % 8) + i;
            v |= (*regs.get(r).unwrap_or(&0xFF) as u32) << (8 * i);
        }
        v
    }

    /// Writes the bus-master block at `offset` (0..16). Starting the engine may move data
    /// through `mem` at once.
    pub fn bm_write(&mut self, offset: u16, size: u8, val: u32, mem: &mut Memory) {
        let c = offset as usize / 8;
        if c > 1 {
            return;
        }
        for i in 0..(size as usize).clamp(1, 4) {
            let r = (offset as usize % 8) + i;
            let v = (val >> (8 * i)) as u8;
            let bm = &mut self.st.channels[c].bm;
            match r {
                0 => {
                    let was = bm.cmd & BM_CMD_START != 0;
                    bm.cmd = v & (BM_CMD_START | BM_CMD_TO_MEMORY);
                    if v & BM_CMD_START != 0 && !was {
                        bm.status |= BM_ST_ACTIVE;
                        bm.rewind();
                        let u = self.dma_drive(c);
                        self.dma_pump(c, u, mem);
                    } else if v & BM_CMD_START == 0 {
                        bm.status &= !BM_ST_ACTIVE;
                    }
                }
                2 => {
                    bm.status = (bm.status & !(v & (BM_ST_ERROR | BM_ST_INTR)) & 0x07)
                        | (v & 0x60)
                        | (bm.status & BM_ST_ACTIVE)
                }
                4..=7 => {
                    let shift = 8 * (r - 4);
                    bm.prd_addr = (bm.prd_addr & !(0xFF << shift)) | (v as u32) << shift;
                    bm.prd_addr &= !3;
                }
                _ => {}
            }
        }
    }

    /// Moves DMA data for the selected drive of channel `c` when the engine runs.
    fn dma_pump(&mut self, c: usize, u: usize, mem: &mut Memory) {
        let ch = &mut self.st.channels[c];
        if ch.bm.status & BM_ST_ACTIVE == 0 || ch.bm.cmd & BM_CMD_START == 0 {
            return;
        }
        let d = &mut ch.drives[u];
        if d.pending.is_some() {
            return;
        }
        match d.op {
            Op::DiskRead {
                dma: true, left, ..
            }
            | Op::CdRead {
                dma: true, left, ..
            } => {
                if d.dir != Dir::In {
                    return;
                }
                let data = &d.buf[d.pos.min(d.buf.len())..];
                let n = ch.bm.write_memory(mem, data);
                d.pos += n;
                if d.pos < d.buf.len() {
                    return self.prd_too_short(c, u);
                }
                d.dir = Dir::None;
                if left > 0 {
                    if d.kind == DriveKind::Cdrom {
                        self.issue_cd_read(c, u);
                    } else {
                        self.issue_disk_read(c, u);
                    }
                } else {
                    self.dma_finish(c);
                    if d_is_cd(&self.st.channels[c].drives[u]) {
                        self.atapi_ok(c, u);
                    } else {
                        self.ata_done(c, u);
                    }
                }
            }
            Op::CdReply { dma: true } => {
                let data = &d.buf[d.pos.min(d.buf.len())..];
                let n = ch.bm.write_memory(mem, data);
                d.pos += n;
                self.dma_finish(c);
                self.atapi_ok(c, u);
            }
            Op::DiskWrite {
                dma: true,
                lba,
                left,
                ..
            } => {
                let want = left.min(CHUNK_SECTORS) as usize * SECTOR;
                let data = ch.bm.read_memory(mem, want);
                if data.len() < want {
                    return self.prd_too_short(c, u);
                }
                self.issue(
                    c,
                    u,
                    IdeRequestKind::Write {
                        offset: lba * SECTOR as u64,
                        data,
                    },
                );
            }
            _ => {}
        }
    }

    /// The drive of channel `c` with a DMA command in progress (else the selected one).
    fn dma_drive(&self, c: usize) -> usize {
        let ch = &self.st.channels[c];
        let dma = |d: &Drive| op_is_dma(d.op);
        if dma(&ch.drives[ch.unit]) {
            ch.unit
        } else if dma(&ch.drives[1 - ch.unit]) {
            1 - ch.unit
        } else {
            ch.unit
        }
    }

    fn push_tray(&mut self, ev: TrayMoved) {
        if self.st.tray_events.len() >= MAX_TRAY_EVENTS {
            self.st.tray_events.remove(0);
        }
        self.st.tray_events.push(ev);
    }

    /// Moves any DMA data that is ready on both channels. The engine also runs by itself when
    /// it is started and when a request completes; the board calls this after IDE port writes
    /// so that a guest that starts the engine before sending the command (or an ATAPI packet)
    /// is served too.
    pub fn run_dma(&mut self, mem: &mut Memory) {
        for c in 0..2 {
            let u = self.dma_drive(c);
            self.dma_pump(c, u, mem);
        }
    }

    fn dma_finish(&mut self, c: usize) {
        let bm = &mut self.st.channels[c].bm;
        bm.status &= !BM_ST_ACTIVE;
    }

    /// The PRD table ended before the transfer: stop the engine with an error.
    fn prd_too_short(&mut self, c: usize, u: usize) {
        let bm = &mut self.st.channels[c].bm;
        bm.status = (bm.status | BM_ST_ERROR) & !BM_ST_ACTIVE;
        if d_is_cd(&self.st.channels[c].drives[u]) {
            self.atapi_error(c, u, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
        } else {
            self.ata_abort(c, u, ABRT);
        }
    }

    // ------------------------------------------------------------- ATAPI

    fn cd_command(&mut self, c: usize, u: usize, cmd: u8) {
        let d = &mut self.st.channels[c].drives[u];
        match cmd {
            0xA1 => {
                let id = self.identify_cd(c, u);
                let d = &mut self.st.channels[c].drives[u];
                d.buf = id;
                d.pos = 0;
                d.op = Op::Reply;
                d.error = 0;
                self.pio_in_block(c, u, SECTOR, true);
            }
            0xA0 => {
                d.op = Op::Packet;
                d.buf = vec![0; 12];
                d.pos = 0;
                d.blk_end = 12;
                d.dir = Dir::Out;
                d.byte_limit = (d.hcyl as u16) << 8 | d.lcyl as u16;
                d.status = DRDY | DSC | DRQ;
                d.nsector = IR_COD;
                d.error = 0;
            }
            0x08 => {
                // DEVICE RESET.
                d.reset_regs();
                let d = &mut self.st.channels[c].drives[u];
                d.status = 0;
            }
            0x90 => self.diagnostic(c),
            0xEF => self.set_features(c, u),
            0xE0..=0xE3 | 0xE5 => self.ata_done(c, u),
            _ => {
                // IDENTIFY DEVICE and anything else: abort with the packet signature.
                d.set_signature();
                self.ata_abort(c, u, ABRT);
            }
        }
    }

    fn atapi_ok(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        d.op = Op::Idle;
        d.dir = Dir::None;
        d.status = DRDY | DSC;
        d.error = 0;
        d.nsector = IR_IO | IR_COD;
        d.sense_key = SENSE_NONE;
        d.asc = 0;
        d.ascq = 0;
        self.raise_irq(c);
    }

    fn atapi_error(&mut self, c: usize, u: usize, key: u8, asc: u8, ascq: u8) {
        let d = &mut self.st.channels[c].drives[u];
        d.op = Op::Idle;
        d.dir = Dir::None;
        d.status = DRDY | ERR;
        d.error = key << 4;
        d.nsector = IR_IO | IR_COD;
        d.sense_key = key;
        d.asc = asc;
        d.ascq = ascq;
        self.raise_irq(c);
    }

    /// Presents the next PIO block of an ATAPI data-in within the byte-count limit.
    fn atapi_pio_block(&mut self, c: usize, u: usize) {
        let d = &mut self.st.channels[c].drives[u];
        let mut limit = match d.byte_limit {
            0 | 0xFFFF => 0xFFFE,
            l => l as usize,
        };
        let left = d.buf.len().saturating_sub(d.pos);
        if left > limit {
            limit &= !1;
        }
        let n = left.min(limit);
        d.blk_end = d.pos + n;
        d.lcyl = n as u8;
        d.hcyl = (n >> 8) as u8;
        d.nsector = IR_IO;
        d.dir = Dir::In;
        d.status = DRDY | DSC | DRQ;
        self.raise_irq(c);
    }

    fn cd_reply(&mut self, c: usize, u: usize, data: Vec<u8>, mem: Option<&mut Memory>) {
        let d = &mut self.st.channels[c].drives[u];
        if data.is_empty() {
            return self.atapi_ok(c, u);
        }
        let dma = d.feature & 1 != 0;
        d.buf = data;
        d.pos = 0;
        d.op = Op::CdReply { dma };
        if dma {
            d.status = DRDY | DSC | DRQ;
            d.dir = Dir::In;
            if let Some(mem) = mem {
                self.dma_pump(c, u, mem);
            }
        } else {
            self.atapi_pio_block(c, u);
        }
    }

    fn issue_cd_read(&mut self, c: usize, u: usize) {
        let d = &self.st.channels[c].drives[u];
        if let Op::CdRead { lba, left, .. } = d.op {
            let n = left.min(CD_CHUNK_SECTORS);
            let kind = IdeRequestKind::Read {
                offset: lba * CD_SECTOR as u64,
                len: n as usize * CD_SECTOR,
            };
            self.issue(c, u, kind);
        }
    }

    fn atapi_exec(&mut self, c: usize, u: usize, cdb: &[u8; 12]) {
        let r = self.atapi_run(c, u, cdb);
        match r {
            CdResult::Ok => self.atapi_ok(c, u),
            CdResult::Data(v) => self.cd_reply(c, u, v, None),
            CdResult::Started => {}
            CdResult::Error(k, a, q) => self.atapi_error(c, u, k, a, q),
        }
    }

    fn atapi_run(&mut self, c: usize, u: usize, cdb: &[u8; 12]) -> CdResult {
        let op = cdb[0];
        let d = &mut self.st.channels[c].drives[u];
        // Commands that report a pending unit attention, and those that need a medium.
        if d.unit_attention && !matches!(op, 0x03 | 0x12 | 0x46 | 0x4A) {
            d.unit_attention = false;
            return CdResult::Error(SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED, 0);
        }
        if matches!(op, 0x00 | 0x25 | 0x28 | 0xA8 | 0x43 | 0x51 | 0x2B) && !d.cd_has_media() {
            return CdResult::Error(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT, 0);
        }
        let total = d.cd_sectors();
        let alloc16 = be16(cdb, 7) as usize;
        let trunc = |mut v: Vec<u8>, n: usize| {
            v.truncate(n);
            CdResult::Data(v)
        };
        match op {
            0x00 | 0xBB | 0x2B => CdResult::Ok,
            0x03 => {
                let mut s = vec![0u8; 18];
                s[0] = 0x70;
                s[2] = d.sense_key;
                s[7] = 10;
                s[12] = d.asc;
                s[13] = d.ascq;
                d.sense_key = SENSE_NONE;
                d.asc = 0;
                d.ascq = 0;
                trunc(s, cdb[4] as usize)
            }
            0x12 => {
                let mut v = vec![0u8; 36];
                v[0] = 0x05;
                v[1] = 0x80;
                v[2] = 0x00;
                v[3] = 0x21;
                v[4] = 31;
                v[8..16].copy_from_slice(b"QEMU    ");
                v[16..32].copy_from_slice(b"QEMU DVD-ROM    ");
                v[32..36].copy_from_slice(b"1.1.");
                trunc(v, cdb[4] as usize)
            }
            0x25 => {
                let last = total.saturating_sub(1).min(u32::MAX as u64) as u32;
                let mut v = last.to_be_bytes().to_vec();
                v.extend_from_slice(&(CD_SECTOR as u32).to_be_bytes());
                CdResult::Data(v)
            }
            0x28 | 0xA8 => {
                let lba = be32(cdb, 2) as u64;
                let count = if op == 0x28 {
                    be16(cdb, 7)
                } else {
                    be32(cdb, 6)
                } as u64;
                if lba + count > total {
                    return CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
                }
                if count == 0 {
                    return CdResult::Ok;
                }
                let dma = d.feature & 1 != 0;
                d.op = Op::CdRead {
                    lba,
                    left: count,
                    dma,
                };
                self.issue_cd_read(c, u);
                CdResult::Started
            }
            0x43 => {
                let msf = cdb[1] & 2 != 0;
                let format = if cdb[2] & 0x0F != 0 {
                    cdb[2] & 0x0F
                } else {
                    cdb[9] >> 6
                };
                match read_toc(total, format, msf, cdb[6]) {
                    Some(v) => trunc(v, alloc16),
                    None => CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0),
                }
            }
            0x46 => {
                let profile: u16 = if !d.cd_has_media() {
                    0
                } else if total > 333_000 {
                    0x10
                } else {
                    0x08
                };
                let mut v = vec![0u8; 8];
                v[6..8].copy_from_slice(&profile.to_be_bytes());
                // Feature 0: profile list (DVD-ROM, CD-ROM).
                v.extend_from_slice(&[0x00, 0x00, 0x03, 0x08]);
                v.extend_from_slice(&[0x00, 0x10, (profile == 0x10) as u8, 0]);
                v.extend_from_slice(&[0x00, 0x08, (profile == 0x08) as u8, 0]);
                // Feature 1: core (ATAPI interface).
                v.extend_from_slice(&[0x00, 0x01, 0x0B, 0x04, 0, 0, 0, 2]);
                // Feature 3: removable medium (tray, eject, lock state).
                let lock = if d.locked { 0x04 } else { 0 };
                v.extend_from_slice(&[0x00, 0x03, 0x03, 0x04, 0x29 | lock, 0, 0, 0]);
                let len = (v.len() - 4) as u32;
                v[0..4].copy_from_slice(&len.to_be_bytes());
                trunc(v, alloc16)
            }
            0x4A => {
                if cdb[1] & 1 == 0 {
                    return CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                }
                let mut v;
                if cdb[4] & 0x10 != 0 {
                    v = vec![0, 6, 0x04, 0x10, 0, 0, 0, 0];
                    v[4] = d.media_event;
                    v[5] = (d.cd_has_media() as u8) << 1 | d.tray_open as u8;
                    d.media_event = EV_NONE;
                } else {
                    v = vec![0, 2, 0x80, 0x10];
                }
                trunc(v, alloc16)
            }
            0x5A => {
                let pc = cdb[2] >> 6;
                let page = cdb[2] & 0x3F;
                if pc == 3 {
                    return CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
                }
                let mut v = vec![0u8; 8];
                v[2] = if d.cd_has_media() { 0x01 } else { 0x70 };
                let pages: &[u8] = match page {
                    0x01 | 0x0E | 0x2A => &[page],
                    0x3F => &[0x01, 0x0E, 0x2A],
                    _ => {
                        return CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                    }
                };
                for p in pages {
                    match p {
                        0x01 => v.extend_from_slice(&[0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0]),
                        0x0E => v.extend_from_slice(&[
                            0x0E, 0x0E, 0x04, 0, 0, 0, 0, 75, 1, 0xFF, 2, 0xFF, 0, 0, 0, 0,
                        ]),
                        _ => {
                            let mut cap = [0u8; 28];
                            cap[0] = 0x2A;
                            cap[1] = 0x12; // 20-byte page
                            cap[2] = 0x3B; // reads CD-R/RW, DVD-ROM ...
                            cap[4] = 0x71; // audio play, multi-session, mode 2 forms
                            cap[5] = 0xFF; // CD-DA commands, accurate stream ...
                            cap[6] = 0x29 | if d.locked { 0x02 } else { 0 }; // lock, eject, tray
                            cap[7] = 0x03; // separate channel volume and mute
                            cap[8..10].copy_from_slice(&(706u16 * 4).to_be_bytes());
                            cap[10..12].copy_from_slice(&256u16.to_be_bytes());
                            cap[12..14].copy_from_slice(&(2048u16).to_be_bytes());
                            cap[14..16].copy_from_slice(&(706u16 * 4).to_be_bytes());
                            v.extend_from_slice(&cap[..0x14]);
                        }
                    }
                }
                let len = (v.len() - 2) as u16;
                v[0..2].copy_from_slice(&len.to_be_bytes());
                trunc(v, alloc16)
            }
            0x1B => {
                let start = cdb[4] & 1 != 0;
                let loej = cdb[4] & 2 != 0;
                if loej {
                    let drive = c * 2 + u;
                    if start {
                        if d.tray_open {
                            d.tray_open = false;
                            self.push_tray(TrayMoved { drive, open: false });
                        }
                    } else {
                        if d.locked {
                            return CdResult::Error(SENSE_NOT_READY, ASC_REMOVAL_PREVENTED, 2);
                        }
                        if !d.tray_open {
                            d.tray_open = true;
                            self.push_tray(TrayMoved { drive, open: true });
                        }
                    }
                }
                CdResult::Ok
            }
            0x1E => {
                d.locked = cdb[4] & 1 != 0;
                CdResult::Ok
            }
            0x51 => {
                if cdb[1] & 7 != 0 {
                    return CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                }
                let mut v = vec![0u8; 34];
                v[1] = 32;
                v[2] = 0x0E; // complete disc, last session complete
                v[3] = 1;
                v[4] = 1;
                v[5] = 1;
                v[6] = 1;
                v[7] = 0x20; // unrestricted use
                v[16..20].copy_from_slice(&[0xFF; 4]); // last session lead-in
                v[20..24].copy_from_slice(&[0xFF; 4]); // last possible lead-out
                trunc(v, alloc16)
            }
            0xBD => {
                let mut v = vec![0u8; 8];
                v[1] = if d.tray_open { 0x10 } else { 0 };
                trunc(v, be16(cdb, 8) as usize)
            }
            _ => CdResult::Error(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0),
        }
    }

    // --------------------------------------------------------- IDENTIFY

    fn identify_common(w: &mut [u16; 256], n: usize, model: &str) {
        ata_string(&mut w[10..20], &format!("QM{:05}", n + 1));
        ata_string(&mut w[23..27], "1.1.0");
        ata_string(&mut w[27..47], model);
    }

    fn words_to_bytes(w: &[u16; 256]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn mode_bits(d: &Drive) -> (u16, u16) {
        let mdma = if d.xfer_mode & 0xF8 == 0x20 {
            1 << (8 + (d.xfer_mode & 7))
        } else {
            0
        };
        let udma = if d.xfer_mode & 0xF8 == 0x40 {
            1 << (8 + (d.xfer_mode & 7))
        } else {
            0
        };
        (mdma, udma)
    }

    fn identify_disk(&self, c: usize, u: usize) -> Vec<u8> {
        let d = &self.st.channels[c].drives[u];
        let mut w = [0u16; 256];
        let total = d.sectors();
        let chs = d.cyls as u64 * d.heads as u64 * d.secs as u64;
        w[0] = 0x0040;
        w[1] = d.cyls;
        w[3] = d.heads as u16;
        w[4] = 512 * d.secs as u16;
        w[5] = 512;
        w[6] = d.secs as u16;
        Ide::identify_common(&mut w, c * 2 + u, "QEMU HARDDISK");
        w[20] = 3;
        w[21] = 512;
        w[22] = 4;
        w[47] = 0x8000 | MAX_MULT_SECTORS;
        w[48] = 1;
        w[49] = (1 << 11) | (1 << 9) | (1 << 8);
        w[51] = 0x200;
        w[52] = 0x200;
        w[53] = 1 | 2 | 4;
        w[54] = d.cyls;
        w[55] = d.heads as u16;
        w[56] = d.secs as u16;
        w[57] = chs as u16;
        w[58] = (chs >> 16) as u16;
        if d.mult_sectors != 0 {
            w[59] = 0x100 | d.mult_sectors;
        }
        let lba28 = total.min(0x0FFF_FFFF);
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        let (mdma, udma) = Ide::mode_bits(d);
        w[62] = 0x07;
        w[63] = 0x07 | mdma;
        w[64] = 0x03;
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        w[80] = 0xF0;
        w[81] = 0x16;
        w[82] = (1 << 14) | (1 << 5);
        w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
        w[84] = 1 << 14;
        w[85] = (1 << 14) | (1 << 5);
        w[86] = (1 << 13) | (1 << 12) | (1 << 10);
        w[87] = 1 << 14;
        w[88] = 0x3F | udma;
        w[93] = 1 | (1 << 14) | 0x2000;
        w[100] = total as u16;
        w[101] = (total >> 16) as u16;
        w[102] = (total >> 32) as u16;
        w[103] = (total >> 48) as u16;
        Ide::words_to_bytes(&w)
    }

    fn identify_cd(&self, c: usize, u: usize) -> Vec<u8> {
        let d = &self.st.channels[c].drives[u];
        let mut w = [0u16; 256];
        // ATAPI, CD-ROM device, removable, DRQ within 50 µs, 12-byte packets.
        w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
        Ide::identify_common(&mut w, c * 2 + u, "QEMU DVD-ROM");
        w[48] = 1;
        w[49] = (1 << 9) | (1 << 8);
        w[53] = 7;
        let (mdma, udma) = Ide::mode_bits(d);
        w[62] = 7;
        w[63] = 7 | mdma;
        w[64] = 3;
        w[65] = 0xB4;
        w[66] = 0xB4;
        w[67] = 0x12C;
        w[68] = 0xB4;
        w[71] = 30;
        w[72] = 30;
        w[80] = 0x1E;
        w[88] = 0x3F | udma;
        Ide::words_to_bytes(&w)
    }
}

/// Whether the operation moves its data by bus-master DMA (the data port is then idle).
fn op_is_dma(op: Op) -> bool {
    matches!(
        op,
        Op::DiskRead { dma: true, .. }
            | Op::DiskWrite { dma: true, .. }
            | Op::CdRead { dma: true, .. }
            | Op::CdReply { dma: true }
    )
}

fn d_is_cd(d: &Drive) -> bool {
    d.kind == DriveKind::Cdrom
}

/// READ TOC formats 0 (TOC), 1 (session info) and 2 (raw TOC) for a one-track data disc.
fn read_toc(total: u64, format: u8, msf: bool, start_track: u8) -> Option<Vec<u8>> {
    let addr = |lba: u64| -> [u8; 4] {
        if msf {
            lba_to_msf(lba)
        } else {
            (lba as u32).to_be_bytes()
        }
    };
    let mut v = vec![0u8; 4];
    match format {
        0 => {
            if start_track > 1 && start_track != 0xAA {
                return None;
            }
            v[2] = 1;
            v[3] = 1;
            if start_track <= 1 {
                v.extend_from_slice(&[0, 0x14, 1, 0]);
                v.extend_from_slice(&addr(0));
            }
            v.extend_from_slice(&[0, 0x16, 0xAA, 0]);
            v.extend_from_slice(&addr(total));
        }
        1 => {
            v[2] = 1;
            v[3] = 1;
            v.extend_from_slice(&[0, 0x14, 1, 0]);
            v.extend_from_slice(&addr(0));
        }
        2 => {
            v[2] = 1;
            v[3] = 1;
            let lo = lba_to_msf(total);
            for (point, p) in [
                (0xA0u8, [1u8, 0, 0]),
                (0xA1, [1, 0, 0]),
                (0xA2, [lo[1], lo[2], lo[3]]),
            ] {
                v.extend_from_slice(&[1, 0x14, 0, point, 0, 0, 0, 0, p[0], p[1], p[2]]);
            }
            v.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0, 0, 0, 2, 0]);
        }
        _ => return None,
    }
    let len = (v.len() - 2) as u16;
    v[0..2].copy_from_slice(&len.to_be_bytes());
    Some(v)
}

impl Snapshot for Ide {
    type State = IdeState;

    fn save(&self) -> IdeState {
        self.st.clone()
    }

    fn restore(&mut self, s: &IdeState) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("ide", r));
        for ch in &s.channels {
            if ch.unit > 1 {
                return bad("unit out of range");
            }
            for d in &ch.drives {
                if d.buf.len() > MAX_CHUNK || d.pos > d.buf.len() || d.blk_end > d.buf.len() {
                    return bad("data buffer position out of range");
                }
                if d.mult_sectors > MAX_MULT_SECTORS {
                    return bad("multiple count out of range");
                }
                if let Some(m) = d.medium {
                    if m.size % SECTOR as u64 != 0 {
                        return bad("medium size not a multiple of 512");
                    }
                }
                if d.kind == DriveKind::None && (d.medium.is_some() || d.op != Op::Idle) {
                    return bad("absent drive with a medium or an operation");
                }
                if let Some(p) = &d.pending {
                    let len = match &p.kind {
                        IdeRequestKind::Read { len, .. } => *len,
                        IdeRequestKind::Write { data, .. } => data.len(),
                        IdeRequestKind::Flush => 0,
                    };
                    if len > MAX_CHUNK || p.drive > 3 {
                        return bad("pending request out of range");
                    }
                }
            }
        }
        if s.tray_events.len() > MAX_TRAY_EVENTS {
            return bad("too many tray events");
        }
        self.st = s.clone();
        self.requests.clear();
        for ch in &self.st.channels {
            for d in &ch.drives {
                if let Some(p) = &d.pending {
                    self.requests.push_back(p.clone());
                }
            }
        }
        Ok(())
    }
}

crate::snapshot_tests!(
    ide_snapshot,
    || {
        let mut ide = Ide::new();
        ide.attach_disk(0, 1 << 20, false);
        ide.attach_cdrom(2);
        ide
    },
    |ide: &mut Ide| {
        // Start a read so that a request is outstanding, and change a register.
        ide.write(0x1F2, 1, 2);
        let sector = ide.read(0x1F3, 1).wrapping_add(1);
        ide.write(0x1F3, 1, sector);
        ide.write(0x1F6, 1, 0xE0);
        ide.write(0x1F7, 1, 0x20);
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    const CMD0: u16 = 0x1F0;

    fn mem() -> Memory {
        Memory::new(1 << 20).unwrap()
    }

    fn disk(size: u64) -> Ide {
        let mut ide = Ide::new();
        ide.attach_disk(0, size, false);
        ide
    }

    fn status(ide: &mut Ide) -> u8 {
        ide.read(CMD0 + 7, 1) as u8
    }

    fn lba28(ide: &mut Ide, lba: u32, count: u8, cmd: u8) {
        ide.write(CMD0 + 6, 1, 0xE0 | (lba >> 24) & 0xF);
        ide.write(CMD0 + 2, 1, count as u32);
        ide.write(CMD0 + 3, 1, lba & 0xFF);
        ide.write(CMD0 + 4, 1, (lba >> 8) & 0xFF);
        ide.write(CMD0 + 5, 1, (lba >> 16) & 0xFF);
        ide.write(CMD0 + 7, 1, cmd as u32);
    }

    fn pattern(offset: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((offset + i as u64) / 512 + (i as u64 % 512) * 3) as u8)
            .collect()
    }

    /// Answers every queued read with the test pattern and every write with success.
    fn serve(ide: &mut Ide, m: &mut Memory) -> Vec<IdeRequest> {
        let reqs = ide.take_requests();
        for r in &reqs {
            let res = match &r.kind {
                IdeRequestKind::Read { offset, len } => Ok(pattern(*offset, *len)),
                _ => Ok(Vec::new()),
            };
            ide.complete(r.id, res, m);
        }
        reqs
    }

    fn words(b: &[u8]) -> Vec<u16> {
        b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    fn ata_str(w: &[u16]) -> String {
        let b: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
        String::from_utf8(b).unwrap().trim_end().to_string()
    }

    #[test]
    fn identify_fields() {
        let size = 3u64 << 40; // beyond LBA28
        let mut ide = disk(size);
        ide.write(CMD0 + 6, 1, 0xA0);
        ide.write(CMD0 + 7, 1, 0xEC);
        assert!(ide.irq_level(0));
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        assert!(!ide.irq_level(0), "status read acknowledges");
        let mut b = vec![0u8; 512];
        assert_eq!(ide.pio_read_bulk(0, &mut b), 512);
        assert_eq!(status(&mut ide) & DRQ, 0);
        let w = words(&b);
        assert_eq!(w[0], 0x0040);
        assert_eq!(ata_str(&w[27..47]), "QEMU HARDDISK");
        assert_eq!(ata_str(&w[23..27]), "1.1.0");
        assert!(!ata_str(&w[10..20]).is_empty());
        assert_eq!(w[49] & (1 << 9 | 1 << 8), 1 << 9 | 1 << 8, "LBA and DMA");
        assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0FFF_FFFF);
        let lba48 = w[100] as u64 | (w[101] as u64) << 16 | (w[102] as u64) << 32;
        assert_eq!(lba48, size / 512);
        assert_ne!(w[83] & (1 << 10), 0, "LBA48 supported");
        assert_ne!(w[86] & (1 << 10), 0, "LBA48 enabled");
        assert_eq!(w[88] & 0x3F, 0x3F, "UDMA 0-5");
        assert_eq!(w[63] & 7, 7, "MWDMA 0-2");
        assert_eq!(w[47] & 0xFF, 16);
        // SET FEATURES transfer mode UDMA2 shows as selected.
        ide.write(CMD0 + 1, 1, 0x03);
        ide.write(CMD0 + 2, 1, 0x42);
        ide.write(CMD0 + 7, 1, 0xEF);
        assert_eq!(status(&mut ide), DRDY | DSC);
        ide.write(CMD0 + 7, 1, 0xEC);
        ide.pio_read_bulk(0, &mut b);
        assert_eq!(words(&b)[88], 0x3F | 1 << 10);
    }

    #[test]
    fn pio_read_through_request_queue() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        lba28(&mut ide, 5, 2, 0x20);
        assert_eq!(
            ide.read(0x3F6, 1) as u8 & BSY,
            BSY,
            "busy while the request is out"
        );
        let reqs = ide.take_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].drive, 0);
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Read {
                offset: 5 * 512,
                len: 1024
            }
        );
        ide.complete(reqs[0].id, Ok(pattern(5 * 512, 1024)), &mut m);
        assert!(ide.irq_level(0));
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        let mut b = vec![0u8; 1024];
        assert_eq!(ide.pio_read_bulk(0, &mut b[..512]), 512);
        assert!(ide.irq_level(0), "interrupt for the second block");
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        // The second block through 16-bit port reads.
        for i in 0..256 {
            let v = ide.read(CMD0, 2) as u16;
            b[512 + 2 * i..514 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(b, pattern(5 * 512, 1024));
        assert_eq!(status(&mut ide), DRDY | DSC);
        assert_eq!(
            ide.read(CMD0 + 3, 1),
            6,
            "sector register holds the last sector"
        );
        // Out of range: IDNF.
        lba28(&mut ide, 2047, 2, 0x20);
        assert_eq!(status(&mut ide), DRDY | ERR);
        assert_eq!(ide.read(CMD0 + 1, 1) as u8, IDNF);
        assert!(ide.take_requests().is_empty());
    }

    #[test]
    fn read_multiple_uses_blocks() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        lba28(&mut ide, 0, 8, 0xC4);
        assert_eq!(status(&mut ide), DRDY | ERR, "no multiple mode set yet");
        ide.write(CMD0 + 2, 1, 4);
        ide.write(CMD0 + 7, 1, 0xC6);
        assert_eq!(status(&mut ide), DRDY | DSC);
        lba28(&mut ide, 0, 8, 0xC4);
        serve(&mut ide, &mut m);
        let mut b = vec![0u8; 4096];
        assert_eq!(ide.pio_read_bulk(0, &mut b[..2048]), 2048);
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        assert_eq!(ide.read(CMD0 + 2, 1), 8);
        assert_eq!(ide.pio_read_bulk(0, &mut b[2048..]), 2048);
        assert_eq!(status(&mut ide), DRDY | DSC);
        assert_eq!(b, pattern(0, 4096));
    }

    #[test]
    fn lba48_read_addresses_high_sectors() {
        let mut ide = disk(1 << 42);
        let mut m = mem();
        let lba: u64 = 0x1_2345_6789;
        ide.write(CMD0 + 6, 1, 0x40);
        // High-order bytes first, then low-order.
        for (reg, shift) in [(2, 8), (3, 24), (4, 32), (5, 40)] {
            let v = if reg == 2 { 0 } else { (lba >> shift) & 0xFF };
            ide.write(CMD0 + reg, 1, v as u32);
        }
        for (reg, shift) in [(2, 0), (3, 0), (4, 8), (5, 16)] {
            let v = if reg == 2 { 3 } else { (lba >> shift) & 0xFF };
            ide.write(CMD0 + reg, 1, v as u32);
        }
        ide.write(0x3F6, 1, HOB as u32);
        assert_eq!(
            ide.read(CMD0 + 3, 1) as u64,
            (lba >> 24) & 0xFF,
            "HOB read-back"
        );
        ide.write(0x3F6, 1, 0);
        ide.write(CMD0 + 7, 1, 0x24);
        let reqs = serve(&mut ide, &mut m);
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Read {
                offset: lba * 512,
                len: 3 * 512
            }
        );
        let mut b = vec![0u8; 2048];
        assert_eq!(
            ide.pio_read_bulk(0, &mut b),
            1536,
            "all three sectors, then the end"
        );
        assert_eq!(b[..512], pattern(lba * 512, 512)[..]);
    }

    #[test]
    fn pio_write_sectors() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        lba28(&mut ide, 7, 2, 0x30);
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        assert!(!ide.irq_level(0), "no interrupt before the first block");
        let data = pattern(99, 1024);
        assert_eq!(ide.pio_write_bulk(0, &data[..512]), 512);
        assert!(ide.irq_level(0));
        assert!(
            ide.take_requests().is_empty(),
            "buffered until the chunk is complete"
        );
        assert_eq!(ide.pio_write_bulk(0, &data[512..]), 512);
        assert_eq!(ide.read(0x3F6, 1) as u8 & BSY, BSY);
        let reqs = serve(&mut ide, &mut m);
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Write {
                offset: 7 * 512,
                data
            }
        );
        assert!(ide.irq_level(0));
        assert_eq!(status(&mut ide), DRDY | DSC);
        // A failed write aborts.
        lba28(&mut ide, 0, 1, 0x30);
        ide.pio_write_bulk(0, &[0; 512]);
        let r = ide.take_requests();
        ide.complete(r[0].id, Err(IoError::Io), &mut m);
        assert_eq!(status(&mut ide), DRDY | ERR);
    }

    fn prd(m: &mut Memory, at: u32, entries: &[(u32, u32, bool)]) {
        for (i, &(base, len, eot)) in entries.iter().enumerate() {
            m.write_u32(at + 8 * i as u32, base);
            m.write_u32(
                at + 8 * i as u32 + 4,
                (len & 0xFFFF) | if eot { 1 << 31 } else { 0 },
            );
        }
    }

    #[test]
    fn dma_read_and_write_through_prd_table() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        prd(
            &mut m,
            0x1000,
            &[(0x2000, 512, false), (0x3000, 1024, true)],
        );
        ide.bm_write(4, 4, 0x1000, &mut m);
        assert_eq!(ide.bm_read(4, 4), 0x1000);
        lba28(&mut ide, 10, 3, 0xC8);
        ide.bm_write(0, 1, (BM_CMD_START | BM_CMD_TO_MEMORY) as u32, &mut m);
        assert_eq!(ide.bm_read(2, 1) as u8 & BM_ST_ACTIVE, BM_ST_ACTIVE);
        serve(&mut ide, &mut m);
        let want = pattern(10 * 512, 1536);
        let mut got = vec![0u8; 512];
        m.read_phys(0x2000, &mut got);
        assert_eq!(got, want[..512]);
        let mut got = vec![0u8; 1024];
        m.read_phys(0x3000, &mut got);
        assert_eq!(got, want[512..]);
        let st = ide.bm_read(2, 1) as u8;
        assert_eq!(st & (BM_ST_INTR | BM_ST_ACTIVE | BM_ST_ERROR), BM_ST_INTR);
        assert!(ide.irq_level(0));
        assert_eq!(status(&mut ide), DRDY | DSC);
        ide.bm_write(0, 1, 0, &mut m);
        ide.bm_write(2, 1, BM_ST_INTR as u32, &mut m);
        assert_eq!(ide.bm_read(2, 1) as u8 & BM_ST_INTR, 0, "write 1 to clear");

        // DMA write: the engine started before the command.
        m.write_phys(0x5000, &[0xA5; 512]);
        prd(&mut m, 0x1000, &[(0x5000, 512, true)]);
        ide.bm_write(0, 1, BM_CMD_START as u32, &mut m);
        lba28(&mut ide, 3, 1, 0xCA);
        ide.run_dma(&mut m);
        let reqs = serve(&mut ide, &mut m);
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Write {
                offset: 3 * 512,
                data: vec![0xA5; 512]
            }
        );
        assert_eq!(status(&mut ide), DRDY | DSC);
        assert_eq!(
            ide.bm_read(2, 1) as u8 & (BM_ST_INTR | BM_ST_ACTIVE),
            BM_ST_INTR
        );
    }

    #[test]
    fn dma_data_waits_for_the_engine_not_the_data_port() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        prd(&mut m, 0x1000, &[(0x2000, 512, true)]);
        ide.bm_write(4, 4, 0x1000, &mut m);
        ide.bm_write(0, 1, BM_CMD_TO_MEMORY as u32, &mut m);
        lba28(&mut ide, 1, 1, 0xC8);
        serve(&mut ide, &mut m);
        assert_eq!(status(&mut ide), DRDY | DSC | DRQ);
        assert_eq!(
            ide.pio_read_bulk(0, &mut [0u8; 512]),
            0,
            "no PIO during DMA"
        );
        assert!(!ide.irq_level(0));
        ide.bm_write(0, 1, (BM_CMD_START | BM_CMD_TO_MEMORY) as u32, &mut m);
        let mut got = vec![0u8; 512];
        m.read_phys(0x2000, &mut got);
        assert_eq!(got, pattern(512, 512));
        assert!(ide.irq_level(0));
    }

    #[test]
    fn dma_with_short_prd_table_fails() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        prd(&mut m, 0x1000, &[(0x2000, 512, true)]);
        ide.bm_write(4, 4, 0x1000, &mut m);
        lba28(&mut ide, 0, 2, 0xC8);
        ide.bm_write(0, 1, (BM_CMD_START | BM_CMD_TO_MEMORY) as u32, &mut m);
        serve(&mut ide, &mut m);
        assert_ne!(ide.bm_read(2, 1) as u8 & BM_ST_ERROR, 0);
        assert_eq!(status(&mut ide), DRDY | ERR);
    }

    #[test]
    fn prd_walk_is_bounded() {
        let mut ide = disk(64 << 20);
        let mut m = mem();
        // A table of zero-length-free entries that never ends: every entry 2 bytes, no EOT.
        for i in 0..(0x10000 / 8) {
            m.write_u32(0x10000 + 8 * i, 0x40000);
            m.write_u32(0x10000 + 8 * i + 4, 2);
        }
        ide.bm_write(4, 4, 0x10000, &mut m);
        lba28(&mut ide, 0, 0, 0xC8); // 256 sectors = 128 KiB
        ide.bm_write(0, 1, (BM_CMD_START | BM_CMD_TO_MEMORY) as u32, &mut m);
        serve(&mut ide, &mut m);
        assert_ne!(ide.bm_read(2, 1) as u8 & BM_ST_ERROR, 0, "the walk stops");
    }

    const CMD1: u16 = 0x170;

    fn cd() -> Ide {
        let mut ide = Ide::new();
        ide.attach_cdrom(2);
        ide
    }

    /// Sends an ATAPI packet to drive 2 with a PIO byte-count limit.
    fn packet(ide: &mut Ide, cdb: &[u8], limit: u16) {
        let mut full = [0u8; 12];
        full[..cdb.len()].copy_from_slice(cdb);
        ide.write(CMD1 + 6, 1, 0xA0);
        ide.write(CMD1 + 1, 1, 0);
        ide.write(CMD1 + 4, 1, limit as u32 & 0xFF);
        ide.write(CMD1 + 5, 1, limit as u32 >> 8);
        ide.write(CMD1 + 7, 1, 0xA0);
        assert_eq!(ide.read(CMD1 + 2, 1) as u8, IR_COD);
        assert_eq!(ide.pio_write_bulk(1, &full), 12);
    }

    fn sense(ide: &mut Ide) -> (u8, u8) {
        packet(ide, &[0x03, 0, 0, 0, 18], 0xFFFE);
        let mut b = [0u8; 18];
        assert_eq!(ide.pio_read_bulk(1, &mut b), 18);
        (b[2], b[12])
    }

    fn cd_status(ide: &mut Ide) -> u8 {
        ide.read(CMD1 + 7, 1) as u8
    }

    #[test]
    fn atapi_signature_and_identify_packet() {
        let mut ide = cd();
        assert_eq!(ide.read(CMD1 + 4, 1), 0x14);
        assert_eq!(ide.read(CMD1 + 5, 1), 0xEB);
        ide.write(CMD1 + 7, 1, 0xEC);
        assert_eq!(
            cd_status(&mut ide),
            DRDY | ERR,
            "IDENTIFY DEVICE is aborted"
        );
        assert_eq!(ide.read(CMD1 + 5, 1), 0xEB);
        ide.write(CMD1 + 7, 1, 0xA1);
        let mut b = vec![0u8; 512];
        assert_eq!(ide.pio_read_bulk(1, &mut b), 512);
        let w = words(&b);
        assert_eq!(w[0] >> 14, 2);
        assert_eq!((w[0] >> 8) & 0x1F, 5);
        assert_ne!(w[0] & 0x80, 0, "removable");
        assert_eq!(ata_str(&w[27..47]), "QEMU DVD-ROM");
        // Reset through SRST restores the signature.
        ide.write(CMD1 + 4, 1, 0);
        ide.write(0x376, 1, (SRST | NIEN) as u32);
        assert_eq!(cd_status(&mut ide) & BSY, BSY);
        ide.write(0x376, 1, NIEN as u32);
        assert_eq!((ide.read(CMD1 + 4, 1), ide.read(CMD1 + 5, 1)), (0x14, 0xEB));
        assert_eq!((ide.read(CMD1 + 2, 1), ide.read(CMD1 + 3, 1)), (1, 1));
    }

    #[test]
    fn atapi_read10_with_byte_count_limit() {
        let mut ide = cd();
        let mut m = mem();
        ide.insert_medium(2, 10 * 2048, true).unwrap();
        packet(&mut ide, &[0x00], 0);
        assert_eq!(cd_status(&mut ide), DRDY | ERR);
        assert_eq!(
            sense(&mut ide),
            (SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED)
        );
        packet(&mut ide, &[0x00], 0);
        assert_eq!(
            cd_status(&mut ide),
            DRDY | DSC,
            "ready after the unit attention"
        );
        packet(&mut ide, &[0x28, 0, 0, 0, 0, 1, 0, 0, 2], 1000);
        let reqs = serve(&mut ide, &mut m);
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Read {
                offset: 2048,
                len: 4096
            }
        );
        let mut got = Vec::new();
        let mut blocks = Vec::new();
        loop {
            assert!(ide.irq_level(1));
            let st = cd_status(&mut ide);
            if st & DRQ == 0 {
                break;
            }
            assert_eq!(ide.read(CMD1 + 2, 1) as u8, IR_IO);
            let n = ide.read(CMD1 + 4, 1) as usize | (ide.read(CMD1 + 5, 1) as usize) << 8;
            blocks.push(n);
            let mut b = vec![0u8; n];
            assert_eq!(ide.pio_read_bulk(1, &mut b), n);
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(blocks, vec![1000, 1000, 1000, 1000, 96]);
        assert_eq!(got, pattern(2048, 4096));
        assert_eq!(ide.read(CMD1 + 2, 1) as u8, IR_IO | IR_COD);
        assert_eq!(cd_status(&mut ide), DRDY | DSC);
        // Beyond the end of the disc.
        packet(&mut ide, &[0x28, 0, 0, 0, 0, 9, 0, 0, 2], 0);
        assert_eq!(cd_status(&mut ide), DRDY | ERR);
        assert_eq!(ide.read(CMD1 + 1, 1) as u8, SENSE_ILLEGAL_REQUEST << 4);
        assert_eq!(
            sense(&mut ide),
            (SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        );
    }

    #[test]
    fn atapi_dma_read12() {
        let mut ide = cd();
        let mut m = mem();
        ide.insert_medium(2, 4 * 2048, true).unwrap();
        packet(&mut ide, &[0x00], 0);
        prd(&mut m, 0x1000, &[(0x8000, 2048, true)]);
        ide.bm_write(8 + 4, 4, 0x1000, &mut m);
        ide.write(CMD1 + 6, 1, 0xA0);
        ide.write(CMD1 + 1, 1, 1); // DMA
        ide.write(CMD1 + 7, 1, 0xA0);
        ide.pio_write_bulk(1, &[0xA8, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0]);
        ide.bm_write(8, 1, (BM_CMD_START | BM_CMD_TO_MEMORY) as u32, &mut m);
        serve(&mut ide, &mut m);
        let mut b = vec![0u8; 2048];
        m.read_phys(0x8000, &mut b);
        assert_eq!(b, pattern(3 * 2048, 2048));
        assert_eq!(
            ide.bm_read(10, 1) as u8 & (BM_ST_INTR | BM_ST_ACTIVE),
            BM_ST_INTR
        );
        assert_eq!(cd_status(&mut ide), DRDY | DSC);
    }

    #[test]
    fn atapi_queries() {
        let mut ide = cd();
        ide.insert_medium(2, 100 * 2048, true).unwrap();
        packet(&mut ide, &[0x00], 0); // consume the unit attention
        packet(&mut ide, &[0x25], 0);
        let mut b = [0u8; 8];
        assert_eq!(ide.pio_read_bulk(1, &mut b), 8);
        assert_eq!(b, [0, 0, 0, 99, 0, 0, 8, 0]);
        packet(&mut ide, &[0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0], 0);
        let mut toc = [0u8; 20];
        assert_eq!(ide.pio_read_bulk(1, &mut toc), 20);
        assert_eq!(&toc[..4], &[0, 18, 1, 1]);
        assert_eq!(toc[14], 0xAA);
        assert_eq!(&toc[16..20], &[0, 0, 0, 100]);
        packet(&mut ide, &[0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40], 0);
        let mut s = [0u8; 12];
        assert_eq!(ide.pio_read_bulk(1, &mut s), 12);
        assert_eq!(&s[..4], &[0, 10, 1, 1]);
        packet(&mut ide, &[0x43, 0, 2, 0, 0, 0, 0, 0, 255, 0], 0);
        let mut raw = [0u8; 64];
        assert_eq!(ide.pio_read_bulk(1, &mut raw), 4 + 4 * 11);
        packet(&mut ide, &[0x12, 0, 0, 0, 36], 0);
        let mut inq = [0u8; 36];
        assert_eq!(ide.pio_read_bulk(1, &mut inq), 36);
        assert_eq!(inq[0], 5);
        assert_eq!(&inq[16..28], b"QEMU DVD-ROM");
        packet(&mut ide, &[0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64], 0);
        let mut ms = [0u8; 64];
        let n = ide.pio_read_bulk(1, &mut ms);
        assert_eq!(n, 8 + 20);
        assert_eq!(ms[8], 0x2A);
        packet(&mut ide, &[0x5A, 0, 0x3F, 0, 0, 0, 0, 1, 0], 0);
        let n = ide.pio_read_bulk(1, &mut [0u8; 256]);
        assert_eq!(n, 8 + 8 + 16 + 20);
        packet(&mut ide, &[0x5A, 0, 0xC1, 0, 0, 0, 0, 0, 64], 0);
        assert_eq!(
            sense(&mut ide),
            (SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED)
        );
        packet(&mut ide, &[0x46, 0, 0, 0, 0, 0, 0, 0, 64], 0);
        let mut gc = [0u8; 64];
        let n = ide.pio_read_bulk(1, &mut gc);
        assert_eq!(
            u32::from_be_bytes([gc[0], gc[1], gc[2], gc[3]]) as usize,
            n - 4
        );
        assert_eq!(&gc[6..8], &[0, 0x08], "current profile CD-ROM");
        packet(&mut ide, &[0x51, 0, 0, 0, 0, 0, 0, 0, 34], 0);
        assert_eq!(ide.pio_read_bulk(1, &mut [0u8; 64]), 34);
        packet(&mut ide, &[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8], 0);
        assert_eq!(ide.pio_read_bulk(1, &mut [0u8; 64]), 8);
        packet(&mut ide, &[0xBB], 0);
        assert_eq!(cd_status(&mut ide), DRDY | DSC);
        packet(&mut ide, &[0xFF], 0);
        assert_eq!(sense(&mut ide), (SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE));
        packet(&mut ide, &[0x4A, 0, 0, 0, 0x10], 0);
        assert_eq!(
            sense(&mut ide),
            (SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD),
            "async GESN"
        );
    }

    fn gesn(ide: &mut Ide) -> [u8; 8] {
        packet(ide, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8], 0);
        let mut b = [0u8; 8];
        assert_eq!(ide.pio_read_bulk(1, &mut b), 8);
        b
    }

    #[test]
    fn sense_after_medium_change_and_tray_events() {
        let mut ide = cd();
        packet(&mut ide, &[0x00], 0);
        assert_eq!(sense(&mut ide), (SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT));
        ide.insert_medium(2, 2048 * 16, true).unwrap();
        assert!(
            ide.take_tray_events().is_empty(),
            "the tray was closed already"
        );
        assert_eq!(gesn(&mut ide)[4..6], [EV_NEW_MEDIA, 2]);
        assert_eq!(gesn(&mut ide)[4], EV_NONE, "events are reported once");
        packet(&mut ide, &[0x00], 0);
        assert_eq!(
            sense(&mut ide),
            (SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED)
        );
        ide.eject(2, false).unwrap();
        assert_eq!(
            ide.take_tray_events(),
            vec![TrayMoved {
                drive: 2,
                open: true
            }]
        );
        assert!(ide.tray_open(2));
        assert!(!ide.has_medium(2));
        assert_eq!(gesn(&mut ide)[4..6], [EV_MEDIA_REMOVAL, 1]);
        packet(&mut ide, &[0x00], 0);
        assert_eq!(sense(&mut ide), (SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT));
        ide.insert_medium(2, 2048 * 16, true).unwrap();
        assert_eq!(
            ide.take_tray_events(),
            vec![TrayMoved {
                drive: 2,
                open: false
            }]
        );
        packet(&mut ide, &[0x00], 0);
        assert_eq!(
            sense(&mut ide),
            (SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED)
        );
        // The guest opens and closes the tray; the medium stays.
        packet(&mut ide, &[0x1B, 0, 0, 0, 0x02], 0);
        assert!(ide.tray_open(2));
        packet(&mut ide, &[0x1B, 0, 0, 0, 0x03], 0);
        assert_eq!(
            ide.take_tray_events(),
            vec![
                TrayMoved {
                    drive: 2,
                    open: true
                },
                TrayMoved {
                    drive: 2,
                    open: false
                }
            ]
        );
        packet(&mut ide, &[0x00], 0);
        assert_eq!(cd_status(&mut ide), DRDY | DSC);
    }

    #[test]
    fn locked_eject_refused_unless_forced() {
        let mut ide = cd();
        ide.insert_medium(2, 2048, true).unwrap();
        packet(&mut ide, &[0x1E, 0, 0, 0, 1], 0);
        assert!(!ide.locked(2), "the unit attention is reported first");
        packet(&mut ide, &[0x1E, 0, 0, 0, 1], 0);
        assert!(ide.locked(2));
        assert_eq!(ide.eject(2, false), Err(EjectError::Locked));
        assert!(ide.has_medium(2));
        assert_eq!(gesn(&mut ide)[4], EV_EJECT_REQUEST);
        packet(&mut ide, &[0x1B, 0, 0, 0, 0x02], 0);
        assert_eq!(
            cd_status(&mut ide),
            DRDY | ERR,
            "guest eject refused while locked"
        );
        assert_eq!(sense(&mut ide), (SENSE_NOT_READY, ASC_REMOVAL_PREVENTED));
        assert_eq!(ide.eject(2, true), Ok(()));
        assert!(!ide.locked(2));
        assert!(ide.tray_open(2));
        assert_eq!(ide.eject(0, false), Err(EjectError::NotRemovable));
        assert_eq!(ide.eject(9, true), Err(EjectError::NotRemovable));
    }

    #[test]
    fn empty_channel_and_absent_slave() {
        let mut ide = disk(1 << 20);
        assert_eq!(ide.read(CMD1 + 7, 1), 0x7F);
        assert_eq!(ide.read(0x376, 1), 0x7F);
        assert_eq!(ide.read(CMD1 + 2, 1), 0xFF);
        assert_eq!(ide.read(CMD1, 2) & 0xFFFF, 0xFFFF);
        ide.write(CMD0 + 6, 1, 0xB0);
        assert_eq!(status(&mut ide), 0, "absent slave on a present channel");
        assert_eq!(ide.read(0x3F6, 1), 0);
        ide.write(CMD0 + 2, 1, 0x55);
        ide.write(CMD0 + 3, 1, 0xAA);
        assert_eq!(
            (ide.read(CMD0 + 2, 1), ide.read(CMD0 + 3, 1)),
            (0, 0),
            "no echo"
        );
        assert_eq!(ide.read(CMD0 + 6, 1), 0xB0);
        ide.write(CMD0 + 7, 1, 0xEC);
        assert_eq!(
            status(&mut ide),
            0,
            "commands to an absent drive do nothing"
        );
        assert!(!ide.irq_level(0));
        ide.write(CMD0 + 6, 1, 0xA0);
        assert_eq!(status(&mut ide), DRDY | DSC);
        assert_eq!(
            (ide.read(CMD0 + 2, 1), ide.read(CMD0 + 3, 1)),
            (0x55, 0xAA),
            "master echoes"
        );
        assert_eq!(ide.read(0x1234, 1), u32::MAX);
    }

    #[test]
    fn nien_masks_the_interrupt() {
        let mut ide = disk(1 << 20);
        ide.write(0x3F6, 1, NIEN as u32);
        ide.write(CMD0 + 7, 1, 0xE7);
        let mut m = mem();
        serve(&mut ide, &mut m);
        assert!(!ide.irq_level(0));
        ide.write(0x3F6, 1, 0);
        assert!(ide.irq_level(0), "pending interrupt shows once unmasked");
        ide.write(CMD0 + 2, 1, 0);
        ide.write(CMD0 + 7, 1, 0xE5);
        assert_eq!(ide.read(CMD0 + 2, 1), 0xFF, "active");
        ide.write(CMD0 + 7, 1, 0xE0);
        ide.write(CMD0 + 7, 1, 0xE5);
        assert_eq!(ide.read(CMD0 + 2, 1), 0x00, "standby");
    }

    #[test]
    fn srst_cancels_outstanding_request() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        lba28(&mut ide, 0, 1, 0x20);
        let r = ide.take_requests();
        ide.write(0x3F6, 1, SRST as u32);
        ide.write(0x3F6, 1, 0);
        ide.complete(r[0].id, Ok(vec![0; 512]), &mut m);
        assert_eq!(status(&mut ide), DRDY | DSC, "late completion ignored");
        assert_eq!(ide.read(CMD0 + 4, 1), 0);
    }

    #[test]
    fn in_flight_request_restarts_after_restore() {
        let mut ide = disk(1 << 20);
        let mut m = mem();
        lba28(&mut ide, 4, 1, 0x20);
        let first = ide.take_requests();
        let saved = ide.save();
        let mut other = disk(1 << 20);
        other.restore(&saved).unwrap();
        let again = other.take_requests();
        assert_eq!(again, first, "the request is queued again after restore");
        other.complete(again[0].id, Ok(pattern(4 * 512, 512)), &mut m);
        let mut b = vec![0u8; 512];
        assert_eq!(other.pio_read_bulk(0, &mut b), 512);
        assert_eq!(b, pattern(4 * 512, 512));
    }

    #[test]
    fn restore_rejects_bad_state() {
        let ide = disk(1 << 20);
        let mut s = ide.save();
        s.channels[0].drives[0].pos = 5;
        let mut other = Ide::new();
        assert!(other.restore(&s).is_err());
        let mut s = ide.save();
        s.channels[1].unit = 2;
        assert!(other.restore(&s).is_err());
        let mut s = ide.save();
        s.channels[0].drives[0].buf = vec![0; MAX_CHUNK + 1];
        assert!(other.restore(&s).is_err());
        assert_eq!(
            other.save(),
            Ide::new().save(),
            "unchanged after a refused restore"
        );
    }

    #[test]
    fn random_guest_io_never_panics() {
        let mut ide = Ide::new();
        ide.attach_disk(0, 1 << 20, false);
        ide.attach_cdrom(1);
        ide.insert_medium(1, 8 * 2048, true).unwrap();
        ide.attach_cdrom(2);
        let mut m = mem();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ports = [
            0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7, 0x3F6, 0x170, 0x177,
        ];
        for _ in 0..200_000 {
            let r = rnd();
            let port = ports[(r % ports.len() as u64) as usize];
            let v = (r >> 16) as u32;
            match (r >> 8) % 8 {
                0 | 1 => ide.write(port, 1, v),
                2 => {
                    ide.read(port, 2);
                }
                3 => {
                    let mut b = [0u8; 700];
                    ide.pio_read_bulk((r >> 40) as usize % 3, &mut b);
                    ide.pio_write_bulk((r >> 41) as usize % 3, &b);
                }
                4 => ide.bm_write((r >> 40) as u16 % 18, (r >> 50) as u8 % 5, v, &mut m),
                5 => {
                    ide.bm_read((r >> 40) as u16 % 18, 4);
                    ide.run_dma(&mut m);
                }
                6 => {
                    for q in ide.take_requests() {
                        let res = match (q.kind, r % 3) {
                            (_, 0) => Err(IoError::Io),
                            (IdeRequestKind::Read { len, .. }, 1) => Ok(vec![0x33; len]),
                            (_, _) => Ok(vec![1, 2, 3]),
                        };
                        ide.complete(q.id, res, &mut m);
                    }
                }
                _ => {
                    if r % 64 == 0 {
                        let _ = ide.eject(2, r % 128 == 0);
                        let _ = ide.insert_medium(2, v as u64, true);
                    }
                    ide.write(
                        CMD0 + 7,
                        1,
                        [0x20, 0x24, 0xC8, 0x25, 0xCA, 0xA0, 0xEC, 0xC4][(r % 8) as usize],
                    );
                }
            }
            assert!(ide.requests.len() <= 4);
        }
        let saved = ide.save();
        let mut other = Ide::new();
        other.restore(&saved).expect("a live state restores");
    }
}
