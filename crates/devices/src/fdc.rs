//! 82078-style floppy disk controller: ports 0x3F0–0x3F7 (the board passes the port), IRQ6,
//! ISA DMA channel 2.
//!
//! Two drives (`floppy0`, `floppy1`). Registers: SRA/SRB (read as 0xFF), DOR, TDR, MSR/DSR,
//! FIFO, DIR/CCR. Commands: SPECIFY, SENSE DRIVE STATUS, RECALIBRATE, SENSE INTERRUPT STATUS,
//! SEEK, READ DATA, WRITE DATA, READ ID, FORMAT TRACK, VERSION, CONFIGURE, LOCK, PERPENDICULAR
//! MODE, DUMPREG. Media: 360K, 720K, 1.2M, 1.44M, 1.72M (DMF, 21 sectors) and 2.88M images; the
//! data rate written to DSR/CCR must match the medium's (as SeaBIOS's media sense expects).
//!
//! # Storage and DMA
//! Image bytes are not kept in the device: like IDE, the controller queues [`FdcRequest`]s
//! ([`Fdc::take_requests`]) that the board answers with [`Fdc::complete`]. Data moves between
//! the controller and guest memory only through the 8237 (channel 2) in [`Fdc::pump`], which
//! the board calls after FDC port writes and completions while [`Fdc::needs_pump`] is true
//! (the DMA channel may be programmed or unmasked after the command). A READ DATA issues its
//! reads, then writes the data to memory up to the DMA terminal count; a WRITE DATA or FORMAT
//! TRACK first reads guest memory through DMA, then issues its writes. Non-DMA (PIO) transfer
//! mode is not supported: SPECIFY with ND set is accepted, but transfers still use DMA.
//!
//! # Snapshots
//! The state holds the registers, the command/result bytes, the transfer in progress and its
//! outstanding request; after [`Snapshot::restore`] the request is queued again with the same
//! id (see the IDE module for the same scheme).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use wasm86_memory::Memory;

use crate::ide::{IdeRequestKind, IoError};
use crate::{Snapshot, StateError};

/// The ISA DMA channel of the floppy controller.
pub const FDC_DMA_CHANNEL: usize = 2;
/// Number of drives.
pub const DRIVES: usize = 2;
const SECTOR: usize = 512;
/// Largest transfer of one command: two heads of 36 sectors.
const MAX_XFER: usize = 2 * 36 * SECTOR;

// MSR bits.
const MSR_RQM: u8 = 0x80;
const MSR_DIO: u8 = 0x40;
const MSR_CB: u8 = 0x10;
// DOR bits.
const DOR_RESET_N: u8 = 0x04;
const DOR_DMA_IRQ: u8 = 0x08;
// ST0 bits.
const ST0_ABNORMAL: u8 = 0x40;
const ST0_INVALID: u8 = 0x80;
const ST0_SEEK_END: u8 = 0x20;
const ST0_POLL: u8 = 0xC0;
// ST1 bits.
const ST1_MA: u8 = 0x01;
const ST1_NW: u8 = 0x02;
const ST1_ND: u8 = 0x04;
// ST3 bits.
const ST3_WP: u8 = 0x40;
const ST3_RDY: u8 = 0x20;
const ST3_T0: u8 = 0x10;
const ST3_TS: u8 = 0x08;

/// The DMA controller as the floppy controller uses it (the 8237 model implements it).
pub trait FloppyDma {
    /// Whether the channel is unmasked and programmed.
    fn channel_ready(&self, ch: usize) -> bool;
    /// Device-to-memory transfer; returns the bytes moved (stops at terminal count).
    fn write_memory(&mut self, ch: usize, mem: &mut Memory, data: &[u8]) -> usize;
    /// Memory-to-device transfer into `buf`; returns the bytes moved.
    fn read_memory(&mut self, ch: usize, mem: &Memory, buf: &mut [u8]) -> usize;
    /// Whether the channel reached terminal count.
    fn terminal_count(&self, ch: usize) -> bool;
}

impl FloppyDma for crate::dma::Dma {
    fn channel_ready(&self, ch: usize) -> bool {
        crate::dma::Dma::channel_ready(self, ch)
    }

    fn write_memory(&mut self, ch: usize, mem: &mut Memory, data: &[u8]) -> usize {
        crate::dma::Dma::write_memory(self, ch, mem, data)
    }

    fn read_memory(&mut self, ch: usize, mem: &Memory, buf: &mut [u8]) -> usize {
        crate::dma::Dma::read_memory(self, ch, mem, buf)
    }

    fn terminal_count(&self, ch: usize) -> bool {
        crate::dma::Dma::terminal_count(self, ch)
    }
}

/// A storage request of the floppy controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdcRequest {
    /// Identifies the request in [`Fdc::complete`].
    pub id: u64,
    /// Drive number (0 or 1).
    pub drive: usize,
    /// What to do (the same kinds as IDE).
    pub kind: IdeRequestKind,
}

/// Errors of the floppy media API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FloppyError {
    /// The image size is not one of the supported formats.
    #[error("unsupported floppy image size {0}")]
    UnsupportedSize(u64),
    /// No such drive.
    #[error("no floppy drive {0}")]
    NoDrive(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Medium {
    size: u64,
    read_only: bool,
    tracks: u8,
    heads: u8,
    spt: u8,
    rate: u8,
}

/// Geometry (tracks, heads, sectors per track, data rate code) of the supported sizes.
fn geometry(size: u64) -> Option<(u8, u8, u8, u8)> {
    Some(match size {
        368_640 => (40, 2, 9, 1),
        737_280 => (80, 2, 9, 2),
        1_228_800 => (80, 2, 15, 0),
        1_474_560 => (80, 2, 18, 0),
        1_720_320 => (80, 2, 21, 0),
        2_949_120 => (80, 2, 36, 3),
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DriveState {
    medium: Option<Medium>,
    track: u8,
    head: u8,
    sector: u8,
    /// The disk-change line (DIR bit 7).
    changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Command,
    /// Waiting for storage or DMA.
    Execution,
    Result,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum XferKind {
    Read,
    Write,
    Format,
}

/// A data transfer in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Xfer {
    kind: XferKind,
    drive: usize,
    /// Command start address, end-of-track sector and multi-track flag.
    c: u8,
    h: u8,
    r: u8,
    eot: u8,
    mt: bool,
    /// Up to two runs of (lba, sectors).
    segments: Vec<(u64, u32)>,
    /// Next segment to request.
    seg: usize,
    /// Data read from the image (read) or from memory (write, format).
    data: Vec<u8>,
    /// Bytes already moved by DMA (read) / whether memory was read (write).
    dma_done: usize,
    dma_finished: bool,
    /// Filler byte of FORMAT TRACK.
    filler: u8,
}

/// Saved state of the floppy controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdcState {
    dor: u8,
    tdr: u8,
    rate: u8,
    phase: Phase,
    cmd: Vec<u8>,
    result: Vec<u8>,
    result_pos: usize,
    irq: bool,
    /// Sense-interrupt statuses pending after a reset (drives 0..4).
    reset_sense: u8,
    /// Pending seek-end status: (ST0, PCN).
    seek_status: Option<(u8, u8)>,
    srt_hut: u8,
    hlt_nd: u8,
    config: u8,
    pretrk: u8,
    lock: bool,
    perpendicular: u8,
    drives: [DriveState; DRIVES],
    xfer: Option<Xfer>,
    pending: Option<FdcRequest>,
    next_id: u64,
}

/// The floppy controller (see the module documentation).
#[derive(Debug, Clone)]
pub struct Fdc {
    st: FdcState,
    requests: VecDeque<FdcRequest>,
}

/// Number of command bytes (including the opcode) of each command, by low 5 bits.
fn command_len(op: u8) -> usize {
    match op & 0x1F {
        0x03 => 3,        // SPECIFY
        0x04 => 2,        // SENSE DRIVE STATUS
        0x05 | 0x06 => 9, // WRITE / READ DATA
        0x07 => 2,        // RECALIBRATE
        0x08 => 1,        // SENSE INTERRUPT
        0x0A => 2,        // READ ID
        0x0D => 6,        // FORMAT TRACK
        0x0E => 1,        // DUMPREG
        0x0F => 3,        // SEEK
        0x10 => 1,        // VERSION
        0x12 => 2,        // PERPENDICULAR MODE
        0x13 => 4,        // CONFIGURE
        0x14 => 1,        // LOCK
        _ => 1,           // invalid: answered at once
    }
}

impl Default for Fdc {
    fn default() -> Self {
        Fdc::new()
    }
}

impl Fdc {
    /// A controller with two empty drives, out of reset.
    pub fn new() -> Fdc {
        let drive = || DriveState {
            medium: None,
            track: 0,
            head: 0,
            sector: 1,
            changed: true,
        };
        Fdc {
            st: FdcState {
                dor: DOR_RESET_N | DOR_DMA_IRQ,
                tdr: 0,
                rate: 0,
                phase: Phase::Command,
                cmd: Vec::new(),
                result: Vec::new(),
                result_pos: 0,
                irq: false,
                reset_sense: 0,
                seek_status: None,
                srt_hut: 0,
                hlt_nd: 0,
                config: 0x20,
                pretrk: 0,
                lock: false,
                perpendicular: 0,
                drives: [drive(), drive()],
                xfer: None,
                pending: None,
                next_id: 1,
            },
            requests: VecDeque::new(),
        }
    }

    /// Inserts an image of `size` bytes (one of the supported formats).
    pub fn insert_medium(
        &mut self,
        drive: usize,
        size: u64,
        read_only: bool,
    ) -> Result<(), FloppyError> {
        let d = self
            .st
            .drives
            .get_mut(drive)
            .ok_or(FloppyError::NoDrive(drive))?;
        let (tracks, heads, spt, rate) =
            geometry(size).ok_or(FloppyError::UnsupportedSize(size))?;
        d.medium = Some(Medium {
            size,
            read_only,
            tracks,
            heads,
            spt,
            rate,
        });
        d.changed = true;
        Ok(())
    }

    /// Removes the medium (the disk-change line goes up).
    pub fn eject(&mut self, drive: usize) -> Result<(), FloppyError> {
        let d = self
            .st
            .drives
            .get_mut(drive)
            .ok_or(FloppyError::NoDrive(drive))?;
        d.medium = None;
        d.changed = true;
        Ok(())
    }

    /// Whether `drive` holds a medium.
    pub fn has_medium(&self, drive: usize) -> bool {
        self.st
            .drives
            .get(drive)
            .is_some_and(|d| d.medium.is_some())
    }

    /// Drains the storage requests.
    pub fn take_requests(&mut self) -> Vec<FdcRequest> {
        self.requests.drain(..).collect()
    }

    /// The IRQ6 line (gated by DOR's DMA/IRQ enable bit).
    pub fn irq_level(&self) -> bool {
        self.st.irq && self.st.dor & DOR_DMA_IRQ != 0
    }

    /// Whether a transfer waits for [`Fdc::pump`].
    pub fn needs_pump(&self) -> bool {
        self.st.pending.is_none()
            && self.st.xfer.as_ref().is_some_and(|x| match x.kind {
                XferKind::Read => x.data.len() > x.dma_done && !x.dma_finished,
                _ => !x.dma_finished,
            })
    }

    /// Hardware reset.
    pub fn reset(&mut self) {
        let drives = self.st.drives.clone();
        *self = Fdc::new();
        for (d, old) in self.st.drives.iter_mut().zip(drives) {
            d.medium = old.medium;
        }
    }

    fn controller_reset(&mut self) {
        let s = &mut self.st;
        s.phase = Phase::Command;
        s.cmd.clear();
        s.result.clear();
        s.result_pos = 0;
        s.xfer = None;
        s.pending = None;
        s.seek_status = None;
        s.reset_sense = 0;
        s.irq = false;
        if !s.lock {
            s.config = 0x20;
            s.pretrk = 0;
        }
        s.perpendicular = 0;
        self.requests.clear();
    }

    /// Leaving reset: the controller interrupts and reports polling status for 4 drives.
    fn reset_done(&mut self) {
        self.st.reset_sense = 4;
        self.st.irq = true;
    }

    /// Reads a port (`port` is the full I/O address 0x3F0–0x3F7).
    pub fn read(&mut self, port: u16) -> u8 {
        match port & 7 {
            2 => self.st.dor,
            3 => self.st.tdr,
            4 => self.msr(),
            5 => self.fifo_read(),
            7 => {
                let sel = (self.st.dor & 3) as usize;
                let changed = self.st.drives.get(sel).is_none_or(|d| d.changed);
                if changed {
                    0x80
                } else {
                    0
                }
            }
            _ => 0xFF,
        }
    }

    fn msr(&self) -> u8 {
        if self.st.dor & DOR_RESET_N == 0 {
            return 0;
        }
        match self.st.phase {
            Phase::Command if self.st.cmd.is_empty() => MSR_RQM,
            Phase::Command => MSR_RQM | MSR_CB,
            Phase::Execution => MSR_CB,
            Phase::Result => MSR_RQM | MSR_DIO | MSR_CB,
        }
    }

    fn fifo_read(&mut self) -> u8 {
        if self.st.phase != Phase::Result {
            return 0xFF;
        }
        self.st.irq = false;
        let v = self
            .st
            .result
            .get(self.st.result_pos)
            .copied()
            .unwrap_or(0xFF);
        self.st.result_pos += 1;
        if self.st.result_pos >= self.st.result.len() {
            self.st.phase = Phase::Command;
            self.st.result.clear();
            self.st.result_pos = 0;
        }
        v
    }

    /// Writes a port.
    pub fn write(&mut self, port: u16, val: u8) {
        match port & 7 {
            2 => {
                let old = self.st.dor;
                self.st.dor = val;
                if val & DOR_RESET_N == 0 && old & DOR_RESET_N != 0 {
                    self.controller_reset();
                } else if val & DOR_RESET_N != 0 && old & DOR_RESET_N == 0 {
                    self.reset_done();
                }
            }
            3 => self.st.tdr = val,
            4 => {
                self.st.rate = val & 3;
                if val & 0x80 != 0 {
                    self.controller_reset();
                    self.reset_done();
                }
            }
            5 => self.fifo_write(val),
            7 => self.st.rate = val & 3,
            _ => {}
        }
    }

    fn fifo_write(&mut self, val: u8) {
        if self.st.dor & DOR_RESET_N == 0 || self.st.phase != Phase::Command {
            return;
        }
        self.st.cmd.push(val);
        let op = self.st.cmd[0];
        if self.st.cmd.len() >= command_len(op) {
            let cmd = std::mem::take(&mut self.st.cmd);
            self.execute(&cmd);
        }
    }

    fn set_result(&mut self, bytes: Vec<u8>, irq: bool) {
        self.st.result = bytes;
        self.st.result_pos = 0;
        self.st.phase = if self.st.result.is_empty() {
            Phase::Command
        } else {
            Phase::Result
        };
        if irq {
            self.st.irq = true;
        }
    }

    fn execute(&mut self, cmd: &[u8]) {
        let op = cmd[0];
        let arg = |i: usize| cmd.get(i).copied().unwrap_or(0);
        let drive = (arg(1) & 3) as usize;
        let head = (arg(1) >> 2) & 1;
        match op & 0x1F {
            0x03 => {
                self.st.srt_hut = arg(1);
                self.st.hlt_nd = arg(2);
                self.set_result(Vec::new(), false);
            }
            0x04 => {
                let mut st3 = (arg(1) & 7) | ST3_TS;
                if let Some(d) = self.st.drives.get(drive) {
                    st3 |= ST3_RDY;
                    if d.track == 0 {
                        st3 |= ST3_T0;
                    }
                    if d.medium.is_some_and(|m| m.read_only) {
                        st3 |= ST3_WP;
                    }
                }
                self.set_result(vec![st3], false);
            }
            0x07 => self.seek(drive, head, 0),
            0x0F => self.seek(drive, head, arg(2)),
            0x08 => {
                let res = if self.st.reset_sense > 0 {
                    let n = 4 - self.st.reset_sense;
                    self.st.reset_sense -= 1;
                    let pcn = self.st.drives.get(n as usize).map_or(0, |d| d.track);
                    vec![ST0_POLL | n, pcn]
                } else if let Some((st0, pcn)) = self.st.seek_status.take() {
                    vec![st0, pcn]
                } else {
                    vec![ST0_INVALID]
                };
                self.st.irq = false;
                self.set_result(res, false);
            }
            0x0A => {
                let st0 = (head << 2) | drive as u8;
                let res = match self.readable_medium(drive) {
                    Some(_) => {
                        let d = &mut self.st.drives[drive];
                        d.head = head;
                        vec![st0, 0, 0, d.track, head, 1, 2]
                    }
                    None => vec![st0 | ST0_ABNORMAL, 0, 0, 0, 0, 1, 2],
                };
                self.set_result(res, true);
            }
            0x05 | 0x06 => self.start_rw(cmd),
            0x0D => self.start_format(cmd),
            0x0E => {
                let s = &self.st;
                let t = |i: usize| s.drives.get(i).map_or(0, |d| d.track);
                let res = vec![
                    t(0),
                    t(1),
                    0,
                    0,
                    s.srt_hut,
                    s.hlt_nd,
                    self.current_spt(),
                    (s.lock as u8) << 7 | s.perpendicular & 0x7F,
                    s.config,
                    s.pretrk,
                ];
                self.set_result(res, false);
            }
            0x10 => self.set_result(vec![0x90], false),
            0x12 => {
                self.st.perpendicular = arg(1) & 0x7F;
                self.set_result(Vec::new(), false);
            }
            0x13 => {
                self.st.config = arg(2);
                self.st.pretrk = arg(3);
                self.set_result(Vec::new(), false);
            }
            0x14 => {
                self.st.lock = op & 0x80 != 0;
                self.set_result(vec![(self.st.lock as u8) << 4], false);
            }
            _ => self.set_result(vec![ST0_INVALID], false),
        }
    }

    fn current_spt(&self) -> u8 {
        let sel = (self.st.dor & 1) as usize;
        self.st
            .drives
            .get(sel)
            .and_then(|d| d.medium)
            .map_or(0, |m| m.spt)
    }

    fn seek(&mut self, drive: usize, head: u8, track: u8) {
        let mut st0 = ST0_SEEK_END | (head << 2) | drive as u8;
        let pcn = match self.st.drives.get_mut(drive) {
            Some(d) => {
                d.track = track;
                d.head = head;
                if d.medium.is_some() {
                    d.changed = false;
                }
                track
            }
            None => {
                st0 |= ST0_ABNORMAL | 0x10; // equipment check
                0
            }
        };
        self.st.seek_status = Some((st0, pcn));
        self.set_result(Vec::new(), true);
    }

    /// The medium of `drive` if it can be read at the current data rate.
    fn readable_medium(&self, drive: usize) -> Option<Medium> {
        let m = self.st.drives.get(drive)?.medium?;
        (m.rate == self.st.rate).then_some(m)
    }

    fn error_result(&mut self, drive: usize, head: u8, st1: u8, chrn: [u8; 4]) {
        let st0 = ST0_ABNORMAL | (head << 2) | (drive as u8 & 3);
        let res = vec![st0, st1, 0, chrn[0], chrn[1], chrn[2], chrn[3]];
        self.st.xfer = None;
        self.set_result(res, true);
    }

    fn start_rw(&mut self, cmd: &[u8]) {
        let op = cmd[0];
        let drive = (cmd[1] & 3) as usize;
        let hds = (cmd[1] >> 2) & 1;
        let (c, h, r, n, eot) = (cmd[2], cmd[3], cmd[4], cmd[5], cmd[6]);
        let mt = op & 0x80 != 0;
        let write = op & 0x1F == 0x05;
        let chrn = [c, h, r, n];
        let Some(m) = self.readable_medium(drive) else {
            return self.error_result(drive, hds, ST1_MA, chrn);
        };
        if write && m.read_only {
            return self.error_result(drive, hds, ST1_NW, chrn);
        }
        let eot = eot.min(m.spt);
        if n != 2 || r == 0 || r > eot || c >= m.tracks || h >= m.heads {
            return self.error_result(drive, hds, ST1_ND, chrn);
        }
        let lba =
            |h: u8, r: u8| ((c as u64 * m.heads as u64 + h as u64) * m.spt as u64) + r as u64 - 1;
        let mut segments = vec![(lba(h, r), (eot - r + 1) as u32)];
        if mt && h == 0 && m.heads == 2 {
            segments.push((lba(1, 1), eot as u32));
        }
        let d = &mut self.st.drives[drive];
        d.track = c;
        d.head = h;
        self.st.xfer = Some(Xfer {
            kind: if write {
                XferKind::Write
            } else {
                XferKind::Read
            },
            drive,
            c,
            h,
            r,
            eot,
            mt,
            segments,
            seg: 0,
            data: Vec::new(),
            dma_done: 0,
            dma_finished: false,
            filler: 0,
        });
        self.st.phase = Phase::Execution;
        if !write {
            self.issue_next_read();
        }
    }

    fn start_format(&mut self, cmd: &[u8]) {
        let drive = (cmd[1] & 3) as usize;
        let head = (cmd[1] >> 2) & 1;
        let (n, sc, filler) = (cmd[2], cmd[3], cmd[5]);
        let track = self.st.drives.get(drive).map_or(0, |d| d.track);
        let chrn = [track, head, 1, n];
        let Some(m) = self.readable_medium(drive) else {
            return self.error_result(drive, head, ST1_MA, chrn);
        };
        if m.read_only {
            return self.error_result(drive, head, ST1_NW, chrn);
        }
        if n != 2 || sc == 0 || sc > m.spt || track >= m.tracks || head >= m.heads {
            return self.error_result(drive, head, ST1_ND, chrn);
        }
        let lba = (track as u64 * m.heads as u64 + head as u64) * m.spt as u64;
        self.st.xfer = Some(Xfer {
            kind: XferKind::Format,
            drive,
            c: track,
            h: head,
            r: 1,
            eot: sc,
            mt: false,
            segments: vec![(lba, sc as u32)],
            seg: 0,
            data: Vec::new(),
            dma_done: 0,
            dma_finished: false,
            filler,
        });
        self.st.phase = Phase::Execution;
    }

    fn issue(&mut self, drive: usize, kind: IdeRequestKind) {
        let id = self.st.next_id;
        self.st.next_id = self.st.next_id.wrapping_add(1).max(1);
        let req = FdcRequest { id, drive, kind };
        self.st.pending = Some(req.clone());
        self.requests.push_back(req);
    }

    fn issue_next_read(&mut self) {
        let Some(x) = &self.st.xfer else { return };
        let Some(&(lba, n)) = x.segments.get(x.seg) else {
            return;
        };
        let drive = x.drive;
        let kind = IdeRequestKind::Read {
            offset: lba * SECTOR as u64,
            len: n as usize * SECTOR,
        };
        self.issue(drive, kind);
    }

    /// Issues the write of the next segment of a write/format, from `data`.
    fn issue_next_write(&mut self) {
        let Some(x) = &self.st.xfer else { return };
        let Some(&(lba, n)) = x.segments.get(x.seg) else {
            return;
        };
        let start: usize = x.segments[..x.seg]
            .iter()
            .map(|s| s.1 as usize * SECTOR)
            .sum();
        let end = (start + n as usize * SECTOR).min(x.data.len());
        let data = x.data.get(start..end).unwrap_or(&[]).to_vec();
        let drive = x.drive;
        if data.is_empty() {
            return self.finish_xfer();
        }
        self.issue(
            drive,
            IdeRequestKind::Write {
                offset: lba * SECTOR as u64,
                data,
            },
        );
    }

    /// Answers a request; then call [`Fdc::pump`] to move the data by DMA.
    pub fn complete<D: FloppyDma>(
        &mut self,
        id: u64,
        result: Result<Vec<u8>, IoError>,
        dma: &mut D,
        mem: &mut Memory,
    ) {
        if self.st.pending.as_ref().is_none_or(|p| p.id != id) {
            return;
        }
        self.requests.retain(|r| r.id != id);
        let Some(req) = self.st.pending.take() else {
            return;
        };
        let Some(x) = &mut self.st.xfer else { return };
        let ok = match (&req.kind, result) {
            (IdeRequestKind::Read { len, .. }, Ok(v)) if v.len() == *len => {
                if x.data.len() + v.len() > MAX_XFER {
                    false
                } else {
                    x.data.extend_from_slice(&v);
                    true
                }
            }
            (IdeRequestKind::Write { .. }, Ok(_)) => true,
            _ => false,
        };
        if !ok {
            let (drive, h, chrn) = (x.drive, x.h, [x.c, x.h, x.r, 2]);
            return self.error_result(drive, h, ST1_ND, chrn);
        }
        x.seg += 1;
        let more = x.seg < x.segments.len();
        match x.kind {
            XferKind::Read => self.pump(dma, mem),
            _ if more => self.issue_next_write(),
            _ => self.finish_xfer(),
        }
    }

    /// Moves the data of the transfer in progress through DMA channel 2 when it is ready.
    pub fn pump<D: FloppyDma>(&mut self, dma: &mut D, mem: &mut Memory) {
        if !self.needs_pump() || !dma.channel_ready(FDC_DMA_CHANNEL) {
            return;
        }
        let Some(x) = &mut self.st.xfer else { return };
        match x.kind {
            XferKind::Read => {
                let rest = x.data.get(x.dma_done..).unwrap_or(&[]);
                let n = dma.write_memory(FDC_DMA_CHANNEL, mem, rest);
                if n == 0 {
                    // Not programmed for this direction: wait, as the hardware would.
                    return;
                }
                x.dma_done += n.min(rest.len());
                let all_read = x.seg >= x.segments.len();
                if dma.terminal_count(FDC_DMA_CHANNEL) || (all_read && x.dma_done >= x.data.len()) {
                    x.dma_finished = true;
                    self.finish_xfer();
                } else if x.dma_done >= x.data.len() {
                    // The next track side is read only when the DMA wants more.
                    self.issue_next_read();
                }
            }
            XferKind::Write => {
                let total: usize = x.segments.iter().map(|s| s.1 as usize * SECTOR).sum();
                let mut buf = vec![0u8; total.min(MAX_XFER)];
                let n = dma
                    .read_memory(FDC_DMA_CHANNEL, mem, &mut buf)
                    .min(buf.len());
                if n == 0 {
                    return;
                }
                // A partial last sector is written padded with zeros.
                buf.truncate(n.div_ceil(SECTOR) * SECTOR);
                x.dma_done = n;
                x.dma_finished = true;
                x.data = buf;
                // Drop segments beyond the data.
                let mut left = x.data.len() / SECTOR;
                for s in &mut x.segments {
                    let take = (s.1 as usize).min(left);
                    s.1 = take as u32;
                    left -= take;
                }
                x.segments.retain(|s| s.1 > 0);
                self.issue_next_write();
            }
            XferKind::Format => {
                let ids = x.eot as usize * 4;
                let mut buf = vec![0u8; ids];
                let n = dma.read_memory(FDC_DMA_CHANNEL, mem, &mut buf);
                if n == 0 {
                    return;
                }
                x.dma_finished = true;
                x.data = vec![x.filler; x.eot as usize * SECTOR];
                self.issue_next_write();
            }
        }
    }

    /// Ends a transfer with the result phase; the address is the sector after the last one
    /// moved (as the 82077 reports it, which Linux uses to count sectors).
    fn finish_xfer(&mut self) {
        let Some(x) = self.st.xfer.take() else { return };
        let sectors = match x.kind {
            XferKind::Read => x.dma_done.div_ceil(SECTOR),
            XferKind::Write => x.data.len() / SECTOR,
            XferKind::Format => 0,
        };
        let (mut c, mut h, mut r) = (x.c, x.h, x.r);
        if x.kind == XferKind::Format {
            r = x.eot;
        }
        for _ in 0..sectors {
            if r >= x.eot {
                r = 1;
                if x.mt {
                    if h == 0 {
                        h = 1;
                    } else {
                        h = 0;
                        c = c.wrapping_add(1);
                    }
                } else {
                    c = c.wrapping_add(1);
                }
            } else {
                r += 1;
            }
        }
        if let Some(d) = self.st.drives.get_mut(x.drive) {
            d.sector = r;
            d.head = h;
        }
        let st0 = (x.h << 2) | x.drive as u8;
        self.set_result(vec![st0, 0, 0, c, h, r, 2], true);
    }
}

impl Snapshot for Fdc {
    type State = FdcState;

    fn save(&self) -> FdcState {
        self.st.clone()
    }

    fn restore(&mut self, s: &FdcState) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("fdc", r));
        if s.cmd.len() > 9 || s.result.len() > 10 || s.result_pos > s.result.len() {
            return bad("command or result bytes out of range");
        }
        if s.reset_sense > 4 || s.rate > 3 {
            return bad("register out of range");
        }
        for d in &s.drives {
            if let Some(m) = d.medium {
                if geometry(m.size) != Some((m.tracks, m.heads, m.spt, m.rate)) {
                    return bad("medium geometry does not match its size");
                }
            }
        }
        if let Some(x) = &s.xfer {
            let total: usize = x.segments.iter().map(|s| s.1 as usize * SECTOR).sum();
            if x.drive >= DRIVES
                || x.segments.len() > 2
                || x.seg > x.segments.len()
                || total > MAX_XFER
                || x.data.len() > MAX_XFER
                || x.dma_done > x.data.len().max(total)
                || x.eot == 0
            {
                return bad("transfer out of range");
            }
        }
        if let Some(p) = &s.pending {
            if p.drive >= DRIVES || s.xfer.is_none() {
                return bad("pending request without a transfer");
            }
        }
        self.st = s.clone();
        self.requests.clear();
        if let Some(p) = &self.st.pending {
            self.requests.push_back(p.clone());
        }
        Ok(())
    }
}

crate::snapshot_tests!(
    fdc_snapshot,
    || {
        let mut f = Fdc::new();
        f.insert_medium(0, 1_474_560, false).unwrap();
        f
    },
    |f: &mut Fdc| {
        f.write(0x3F2, 0x1C);
        f.write(0x3F5, 0x0F);
        f.write(0x3F5, 0x00);
        let t = f.read(0x3F5);
        f.write(0x3F5, t.wrapping_add(3));
        // Start a read so that a request is outstanding.
        for b in [0xE6, 0x00, 0x00, 0x00, 0x01, 0x02, 0x12, 0x1B, 0xFF] {
            f.write(0x3F5, b);
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal single-channel DMA for tests: an address, a count and a mask.
    #[derive(Default)]
    pub(super) struct TestDma {
        pub addr: u32,
        pub left: usize,
        pub unmasked: bool,
        pub tc: bool,
    }

    impl FloppyDma for TestDma {
        fn channel_ready(&self, ch: usize) -> bool {
            ch == 2 && self.unmasked
        }
        fn write_memory(&mut self, _ch: usize, mem: &mut Memory, data: &[u8]) -> usize {
            let n = data.len().min(self.left);
            mem.write_phys(self.addr, &data[..n]);
            self.addr += n as u32;
            self.left -= n;
            self.tc = self.left == 0;
            n
        }
        fn read_memory(&mut self, _ch: usize, mem: &Memory, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.left);
            mem.read_phys(self.addr, &mut buf[..n]);
            self.addr += n as u32;
            self.left -= n;
            self.tc = self.left == 0;
            n
        }
        fn terminal_count(&self, _ch: usize) -> bool {
            self.tc
        }
    }

    fn pattern(offset: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((offset + i as u64) / 512 * 7 + i as u64 % 251) as u8)
            .collect()
    }

    fn cmd(f: &mut Fdc, bytes: &[u8]) {
        for &b in bytes {
            assert_ne!(f.read(0x3F4) & MSR_RQM, 0, "ready for a command byte");
            f.write(0x3F5, b);
        }
    }

    fn results(f: &mut Fdc) -> Vec<u8> {
        let mut out = Vec::new();
        while f.read(0x3F4) & (MSR_RQM | MSR_DIO) == MSR_RQM | MSR_DIO {
            out.push(f.read(0x3F5));
        }
        out
    }

    fn serve(f: &mut Fdc, image: &mut [u8], dma: &mut TestDma, m: &mut Memory) {
        while let Some(r) = f.take_requests().pop() {
            let res = match &r.kind {
                IdeRequestKind::Read { offset, len } => {
                    Ok(image[*offset as usize..*offset as usize + len].to_vec())
                }
                IdeRequestKind::Write { offset, data } => {
                    image[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
                    Ok(Vec::new())
                }
                IdeRequestKind::Flush => Ok(Vec::new()),
            };
            f.complete(r.id, res, dma, m);
            f.pump(dma, m);
        }
    }

    fn ready_fdc() -> Fdc {
        let mut f = Fdc::new();
        f.insert_medium(0, 1_474_560, false).unwrap();
        // Reset as SeaBIOS does, then the four sense interrupts.
        f.write(0x3F2, 0x00);
        assert_eq!(f.read(0x3F4), 0, "in reset");
        f.write(0x3F2, 0x0C);
        assert!(f.irq_level(), "IRQ6 after reset");
        for n in 0..4 {
            cmd(&mut f, &[0x08]);
            assert_eq!(results(&mut f), vec![0xC0 | n, 0]);
        }
        assert!(!f.irq_level());
        f.write(0x3F2, 0x1C);
        f
    }

    #[test]
    fn sense_interrupt_after_recalibrate_and_seek() {
        let mut f = ready_fdc();
        cmd(&mut f, &[0x08]);
        assert_eq!(results(&mut f), vec![0x80], "no interrupt pending: invalid");
        cmd(&mut f, &[0x0F, 0x04, 40]);
        assert!(f.irq_level());
        cmd(&mut f, &[0x08]);
        assert_eq!(results(&mut f), vec![0x24, 40]);
        assert!(!f.irq_level());
        cmd(&mut f, &[0x07, 0x00]);
        assert!(f.irq_level());
        cmd(&mut f, &[0x08]);
        assert_eq!(results(&mut f), vec![0x20, 0]);
        cmd(&mut f, &[0x04, 0x00]);
        assert_eq!(results(&mut f)[0] & (ST3_T0 | ST3_RDY), ST3_T0 | ST3_RDY);
    }

    #[test]
    fn read_data_through_dma_to_memory() {
        let mut f = ready_fdc();
        let mut image = pattern(0, 1_474_560);
        let mut m = Memory::new(1 << 20).unwrap();
        let mut dma = TestDma {
            addr: 0x7C00,
            left: 3 * 512,
            unmasked: true,
            tc: false,
        };
        // READ DATA, MT+MFM, drive 0 head 1, C=2 H=1 R=17, N=2, EOT=18: 2 sectors on head 1,
        // then the DMA count stops it after one more... none (head 1 has no continuation).
        cmd(&mut f, &[0xE6, 0x04, 2, 1, 17, 2, 18, 0x1B, 0xFF]);
        assert_eq!(f.read(0x3F4) & MSR_RQM, 0, "execution phase");
        let reqs = f.take_requests();
        assert_eq!(reqs.len(), 1);
        let lba = (2 * 2 + 1) * 18 + 16;
        assert_eq!(
            reqs[0].kind,
            IdeRequestKind::Read {
                offset: lba * 512,
                len: 1024
            }
        );
        f.requests.extend(reqs);
        serve(&mut f, &mut image, &mut dma, &mut m);
        assert!(f.irq_level());
        let res = results(&mut f);
        // Two sectors from (2,1,17) end at (3,0,1) with MT.
        assert_eq!(res, vec![0x04, 0, 0, 3, 0, 1, 2]);
        let mut got = vec![0u8; 1024];
        m.read_phys(0x7C00, &mut got);
        assert_eq!(got, image[lba as usize * 512..lba as usize * 512 + 1024]);
        assert!(!f.irq_level(), "reading the result clears the interrupt");

        // Terminal count stops a multi-track read in the middle: 1 sector of 36 requested.
        let mut dma = TestDma {
            addr: 0x1000,
            left: 512,
            unmasked: false,
            tc: false,
        };
        cmd(&mut f, &[0xE6, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF]);
        serve(&mut f, &mut image, &mut dma, &mut m);
        assert!(f.needs_pump(), "waits for the DMA channel");
        dma.unmasked = true;
        f.pump(&mut dma, &mut m);
        assert_eq!(results(&mut f), vec![0x00, 0, 0, 0, 0, 2, 2]);
        let mut got = vec![0u8; 512];
        m.read_phys(0x1000, &mut got);
        assert_eq!(got, image[..512]);
    }

    #[test]
    fn write_data_and_format_reach_the_image() {
        let mut f = ready_fdc();
        let mut image = vec![0u8; 1_474_560];
        let mut m = Memory::new(1 << 20).unwrap();
        m.write_phys(0x2000, &[0x5A; 1024]);
        let mut dma = TestDma {
            addr: 0x2000,
            left: 1024,
            unmasked: true,
            tc: false,
        };
        cmd(&mut f, &[0xC5, 0x00, 1, 0, 5, 2, 18, 0x1B, 0xFF]);
        f.pump(&mut dma, &mut m);
        serve(&mut f, &mut image, &mut dma, &mut m);
        assert_eq!(results(&mut f), vec![0x00, 0, 0, 1, 0, 7, 2]);
        let off = (36 + 4) * 512;
        assert_eq!(&image[off..off + 1024], &[0x5A; 1024][..]);
        assert_eq!(image[off + 1024], 0);
        // FORMAT TRACK head 1 of track 1 with filler 0xF6.
        cmd(&mut f, &[0x0F, 0x04, 1]);
        cmd(&mut f, &[0x08]);
        results(&mut f);
        let mut dma = TestDma {
            addr: 0x3000,
            left: 18 * 4,
            unmasked: true,
            tc: false,
        };
        cmd(&mut f, &[0x4D, 0x04, 2, 18, 0x54, 0xF6]);
        f.pump(&mut dma, &mut m);
        serve(&mut f, &mut image, &mut dma, &mut m);
        assert_eq!(results(&mut f)[0] & 0xC0, 0);
        let off = 54 * 512;
        assert!(image[off..off + 18 * 512].iter().all(|&b| b == 0xF6));
        // Read-only media refuse writes.
        f.insert_medium(0, 1_474_560, true).unwrap();
        cmd(&mut f, &[0xC5, 0x00, 1, 0, 5, 2, 18, 0x1B, 0xFF]);
        assert_eq!(results(&mut f)[..2], [0x40, ST1_NW]);
    }

    #[test]
    fn read_id_checks_the_data_rate_and_media() {
        let mut f = ready_fdc();
        f.write(0x3F7, 0);
        cmd(&mut f, &[0x4A, 0x00]);
        assert_eq!(results(&mut f), vec![0x00, 0, 0, 0, 0, 1, 2]);
        f.write(0x3F7, 2);
        cmd(&mut f, &[0x4A, 0x00]);
        assert_eq!(results(&mut f)[0] & 0xC0, 0x40, "wrong rate");
        f.insert_medium(1, 2_949_120, false).unwrap();
        f.write(0x3F7, 3);
        cmd(&mut f, &[0x4A, 0x01]);
        assert_eq!(results(&mut f)[0], 0x01);
        f.eject(1).unwrap();
        cmd(&mut f, &[0x4A, 0x01]);
        assert_eq!(results(&mut f), vec![0x41, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            f.insert_medium(0, 12345, false),
            Err(FloppyError::UnsupportedSize(12345))
        );
        assert_eq!(
            f.insert_medium(5, 1_474_560, false),
            Err(FloppyError::NoDrive(5))
        );
    }

    #[test]
    fn disk_change_line_and_misc_commands() {
        let mut f = ready_fdc();
        assert_eq!(f.read(0x3F7) & 0x80, 0x80, "changed since insertion");
        cmd(&mut f, &[0x0F, 0x00, 1]);
        cmd(&mut f, &[0x08]);
        results(&mut f);
        assert_eq!(
            f.read(0x3F7) & 0x80,
            0,
            "a seek with a disk clears the line"
        );
        f.eject(0).unwrap();
        assert_eq!(f.read(0x3F7) & 0x80, 0x80);
        cmd(&mut f, &[0x10]);
        assert_eq!(results(&mut f), vec![0x90]);
        cmd(&mut f, &[0x03, 0xAF, 0x02]);
        assert!(results(&mut f).is_empty());
        cmd(&mut f, &[0x13, 0, 0x57, 0x00]);
        cmd(&mut f, &[0x94]);
        assert_eq!(results(&mut f), vec![0x10]);
        cmd(&mut f, &[0x12, 0x00]);
        cmd(&mut f, &[0x0E]);
        let d = results(&mut f);
        assert_eq!(d.len(), 10);
        assert_eq!(
            (d[0], d[4], d[5], d[7] & 0x80, d[8]),
            (1, 0xAF, 0x02, 0x80, 0x57)
        );
        // CONFIGURE survives a reset when locked.
        f.write(0x3F4, 0x80);
        cmd(&mut f, &[0x0E]);
        assert_eq!(results(&mut f)[8], 0x57);
        cmd(&mut f, &[0x1F]);
        assert_eq!(results(&mut f), vec![0x80], "invalid command");
        assert_eq!(f.read(0x3F0), 0xFF);
    }

    #[test]
    fn in_flight_read_restarts_after_restore() {
        let mut f = ready_fdc();
        cmd(&mut f, &[0xE6, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF]);
        let first = f.take_requests();
        let saved = f.save();
        let mut g = Fdc::new();
        g.restore(&saved).unwrap();
        assert_eq!(g.take_requests(), first);
        let mut s = saved.clone();
        s.result_pos = 99;
        assert!(g.restore(&s).is_err());
        let mut s = saved;
        if let Some(x) = &mut s.xfer {
            x.segments.push((0, 40));
        }
        assert!(g.restore(&s).is_err());
    }

    #[test]
    fn random_guest_io_never_panics() {
        let mut f = Fdc::new();
        f.insert_medium(0, 1_474_560, false).unwrap();
        f.insert_medium(1, 2_949_120, true).unwrap();
        let mut m = Memory::new(1 << 20).unwrap();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let r = rnd();
            let port = 0x3F0 + (r % 8) as u16;
            match (r >> 8) % 6 {
                0..=2 => f.write(port, (r >> 16) as u8),
                3 => {
                    f.read(port);
                }
                4 => {
                    let mut dma = TestDma {
                        addr: (r >> 20) as u32 & 0xFFFFF,
                        left: (r >> 40) as usize % 40000,
                        unmasked: r & 1 == 0,
                        tc: false,
                    };
                    for q in f.take_requests() {
                        let res = match (q.kind, r % 3) {
                            (_, 0) => Err(IoError::Io),
                            (IdeRequestKind::Read { len, .. }, 1) => Ok(vec![0x44; len]),
                            (_, _) => Ok(vec![9]),
                        };
                        f.complete(q.id, res, &mut dma, &mut m);
                    }
                    f.pump(&mut dma, &mut m);
                }
                _ => {
                    let op = [0xE6, 0xC5, 0x4D, 0x4A, 0x0F, 0x07, 0x08][(r % 7) as usize];
                    f.write(0x3F5, op);
                }
            }
            assert!(f.requests.len() <= 1);
        }
        let saved = f.save();
        Fdc::new().restore(&saved).expect("a live state restores");
    }

    /// Programs channel 2 of the 8237 model as SeaBIOS does (§7.3 of the platform notes).
    fn program_dma(dma: &mut crate::dma::Dma, addr: u32, len: u16, mode: u8) {
        dma.write(0x0A, 0x06);
        dma.write(0x0C, 0);
        dma.write(0x04, addr as u8);
        dma.write(0x04, (addr >> 8) as u8);
        dma.write(0x0C, 0);
        dma.write(0x05, (len - 1) as u8);
        dma.write(0x05, ((len - 1) >> 8) as u8);
        dma.write(0x0B, mode);
        dma.write(0x81, (addr >> 16) as u8);
        dma.write(0x0A, 0x02);
    }

    #[test]
    fn read_and_write_with_the_8237_model() {
        let mut f = ready_fdc();
        let mut image = pattern(0, 1_474_560);
        let mut m = Memory::new(1 << 20).unwrap();
        let mut dma = crate::dma::Dma::new();
        // Boot-sector style read: 1 sector of C0 H0 R1 to 0x7C00.
        program_dma(&mut dma, 0x7C00, 512, 0x46);
        cmd(&mut f, &[0xE6, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF]);
        let reqs = f.take_requests();
        assert_eq!(reqs.len(), 1);
        for r in reqs {
            let IdeRequestKind::Read { offset, len } = r.kind else {
                panic!("read expected")
            };
            let data = image[offset as usize..offset as usize + len].to_vec();
            f.complete(r.id, Ok(data), &mut dma, &mut m);
        }
        assert!(f.irq_level());
        assert_eq!(
            results(&mut f),
            vec![0x00, 0, 0, 0, 0, 2, 2],
            "TC after one sector"
        );
        let mut got = vec![0u8; 512];
        m.read_phys(0x7C00, &mut got);
        assert_eq!(got, image[..512]);
        assert!(
            !FloppyDma::channel_ready(&dma, 2),
            "masked at terminal count"
        );

        // Write 2 sectors from 0x12000 (page 1) to C1 H1 R3.
        m.write_phys(0x12000, &[0xC3; 1024]);
        program_dma(&mut dma, 0x12000, 1024, 0x4A);
        cmd(&mut f, &[0xC5, 0x04, 1, 1, 3, 2, 18, 0x1B, 0xFF]);
        assert!(f.needs_pump());
        f.pump(&mut dma, &mut m);
        serve_real(&mut f, &mut image, &mut dma, &mut m);
        assert_eq!(results(&mut f), vec![0x04, 0, 0, 1, 1, 5, 2]);
        let off = (3 * 18 + 2) * 512;
        assert_eq!(&image[off..off + 1024], &[0xC3; 1024][..]);
    }

    fn serve_real(f: &mut Fdc, image: &mut [u8], dma: &mut crate::dma::Dma, m: &mut Memory) {
        while let Some(r) = f.take_requests().pop() {
            if let IdeRequestKind::Write { offset, data } = &r.kind {
                image[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            }
            f.complete(r.id, Ok(Vec::new()), dma, m);
        }
    }
}
