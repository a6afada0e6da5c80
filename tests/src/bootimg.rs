//! Small x86 boot images built in-tree, without an external assembler.
//!
//! [`Asm`] emits the machine code of the handful of instructions the test programs need (each
//! method documents its encoding, from the Intel SDM's opcode tables) and resolves labels.
//! [`floppy`] turns a program into a 1.44 MB floppy image: the boot sector holds a loader that
//! reads the program from the following sectors with INT 13h (so every image also exercises the
//! BIOS floppy path) and jumps to it. [`VideoTest`] describes the video-mode programs of the VGA
//! golden tests: each sets a mode through the VGA BIOS, draws a deterministic pattern, writes
//! [`DONE_BYTE`] to the debug console port 0x402 and halts with `cli; hlt`.
//!
//! [`GuestVm`] and [`Qmp`] run such images (and the guest images) in the release binary with
//! a QMP socket and a debug-console log; [`Ppm`] reads screendumps and
//! [`sha256_hex`] hashes them for the golden files.

use crate::{bin, guest, Guard};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Byte written to port 0x402 when a test program has finished drawing.
pub const DONE_BYTE: u8 = b'D';
/// Byte written to port 0x402 before a one-letter failure code (see [`VideoTest`] programs).
pub const FAIL_BYTE: u8 = b'!';
/// The debug console port (SeaBIOS's log port, `-debugcon`).
pub const DEBUGCON_PORT: u16 = 0x402;
/// Size of a 1.44 MB floppy image.
pub const FLOPPY_SIZE: usize = 1_474_560;
/// Bytes per sector.
pub const SECTOR: usize = 512;
/// Sectors per track of a 1.44 MB floppy; the loader reads only from the first track.
pub const SECTORS_PER_TRACK: usize = 18;
/// Where the BIOS loads the boot sector.
pub const BOOT_ORIGIN: u32 = 0x7C00;
/// Where the loader puts the program (the sectors after the boot sector).
pub const PROGRAM_ORIGIN: u32 = 0x7E00;
/// Where the VBE program asks INT 10h AX=4F01h to store the mode information block.
pub const VBE_INFO_ADDR: u16 = 0x0600;
/// Where the VBE program asks INT 10h AX=4F00h to store the controller information block.
pub const VBE_CONTROLLER_ADDR: u16 = 0x0800;
/// Where the VBE program stores the number of the mode it chose (a word).
pub const VBE_MODE_ADDR: u16 = 0x05F0;

/// Errors of the assembler and the image builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootImgError {
    /// A label was used but never placed.
    UnboundLabel(usize),
    /// A label was placed twice.
    LabelTwice(usize),
    /// A short jump does not reach its label.
    JumpOutOfRange {
        /// Offset of the jump's displacement byte in the program.
        at: usize,
        /// The displacement needed.
        distance: i64,
    },
    /// An absolute address does not fit the field it is stored in.
    AddressTooLarge {
        /// Offset of the field in the program.
        at: usize,
        /// The address.
        addr: u32,
    },
    /// The program does not fit on the first track after the boot sector.
    ProgramTooLarge(usize),
}

impl fmt::Display for BootImgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootImgError::UnboundLabel(l) => write!(f, "label {l} is used but never placed"),
            BootImgError::LabelTwice(l) => write!(f, "label {l} is placed twice"),
            BootImgError::JumpOutOfRange { at, distance } => {
                write!(f, "short jump at {at:#x} cannot reach {distance} bytes")
            }
            BootImgError::AddressTooLarge { at, addr } => {
                write!(f, "address {addr:#x} does not fit the field at {at:#x}")
            }
            BootImgError::ProgramTooLarge(n) => write!(
                f,
                "program of {n} bytes is larger than the {} sectors after the boot sector",
                SECTORS_PER_TRACK - 1
            ),
        }
    }
}

impl std::error::Error for BootImgError {}

/// A general-purpose register number as encoded in ModRM and `+r` opcodes. The same number
/// names the 8-, 16- and 32-bit register: the instruction chooses the width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// AL / AX / EAX (0).
    A = 0,
    /// CL / CX / ECX (1).
    C = 1,
    /// DL / DX / EDX (2).
    D = 2,
    /// BL / BX / EBX (3).
    B = 3,
    /// AH / SP / ESP (4).
    Sp = 4,
    /// CH / BP / EBP (5).
    Bp = 5,
    /// DH / SI / ESI (6).
    Si = 6,
    /// BH / DI / EDI (7).
    Di = 7,
}

/// A segment register as encoded in the ModRM reg field of `mov Sreg, r/m16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sreg {
    /// ES (0).
    Es = 0,
    /// SS (2).
    Ss = 2,
    /// DS (3).
    Ds = 3,
}

/// A condition code, the low nibble of `Jcc rel8` (0x70 + cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Below / carry (CF=1).
    B = 2,
    /// Above or equal / no carry (CF=0).
    Ae = 3,
    /// Equal / zero.
    E = 4,
    /// Not equal / not zero.
    Ne = 5,
}

/// A jump target; create with [`Asm::label`], place with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum FixKind {
    /// Signed 8-bit displacement from the end of the field.
    Rel8,
    /// Signed 16-bit displacement from the end of the field.
    Rel16,
    /// Signed 32-bit displacement from the end of the field.
    Rel32,
    /// 16-bit absolute address (origin + offset).
    Abs16,
    /// 32-bit absolute address (origin + offset).
    Abs32,
}

#[derive(Debug, Clone, Copy)]
struct Fixup {
    at: usize,
    label: Label,
    kind: FixKind,
}

/// A tiny x86 assembler: appends machine code and resolves labels at [`Asm::finish`].
///
/// The code size (16 or 32 bits) decides when the operand-size prefix 0x66 is needed; the
/// methods named `..16`/`..32` choose the operand size, whatever the code size.
#[derive(Debug, Clone)]
pub struct Asm {
    code: Vec<u8>,
    origin: u32,
    bits32: bool,
    /// Label positions as offsets from the origin (negative or past the end for labels at
    /// absolute addresses outside the program).
    labels: Vec<Option<i64>>,
    fixups: Vec<Fixup>,
}

impl Asm {
    /// An empty program loaded at linear address `origin`, starting in 16-bit code.
    pub fn new(origin: u32) -> Asm {
        Asm {
            code: Vec::new(),
            origin,
            bits32: false,
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    /// Bytes emitted so far (fixups not yet applied).
    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// True when nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The linear address of the next byte.
    pub fn here(&self) -> u32 {
        self.origin.wrapping_add(self.code.len() as u32)
    }

    /// Switches the code size for the following instructions (`[bits 16]` / `[bits 32]`).
    pub fn bits32(&mut self, on: bool) -> &mut Self {
        self.bits32 = on;
        self
    }

    /// A new, unplaced label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the current position.
    pub fn bind(&mut self, l: Label) -> Result<&mut Self, BootImgError> {
        let pos = self.code.len() as i64;
        match self.labels.get_mut(l.0) {
            Some(slot @ None) => *slot = Some(pos),
            Some(Some(_)) => return Err(BootImgError::LabelTwice(l.0)),
            None => return Err(BootImgError::UnboundLabel(l.0)),
        }
        Ok(self)
    }

    /// A label at a fixed linear address, which may lie outside the program (jumps into code
    /// loaded elsewhere).
    pub fn label_at(&mut self, addr: u32) -> Label {
        self.labels
            .push(Some(i64::from(addr) - i64::from(self.origin)));
        Label(self.labels.len() - 1)
    }

    /// Raw bytes (data, or an instruction without a helper).
    pub fn db(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }

    /// A little-endian word.
    pub fn dw(&mut self, v: u16) -> &mut Self {
        self.db(&v.to_le_bytes())
    }

    /// A little-endian doubleword.
    pub fn dd(&mut self, v: u32) -> &mut Self {
        self.db(&v.to_le_bytes())
    }

    /// A little-endian quadword (a GDT descriptor).
    pub fn dq(&mut self, v: u64) -> &mut Self {
        self.db(&v.to_le_bytes())
    }

    /// The absolute address of `l` as a word (patched at [`Asm::finish`]).
    pub fn dw_addr(&mut self, l: Label) -> &mut Self {
        self.fix(l, FixKind::Abs16);
        self.dw(0)
    }

    /// The absolute address of `l` as a doubleword (patched at [`Asm::finish`]).
    pub fn dd_addr(&mut self, l: Label) -> &mut Self {
        self.fix(l, FixKind::Abs32);
        self.dd(0)
    }

    /// Pads with `fill` up to a multiple of `n` bytes from the origin.
    pub fn align(&mut self, n: usize, fill: u8) -> &mut Self {
        while n > 1 && !self.code.len().is_multiple_of(n) {
            self.code.push(fill);
        }
        self
    }

    fn fix(&mut self, label: Label, kind: FixKind) {
        self.fixups.push(Fixup {
            at: self.code.len(),
            label,
            kind,
        });
    }

    /// Operand-size prefix 0x66 when the wanted size differs from the code size.
    fn osize(&mut self, want32: bool) {
        if want32 != self.bits32 {
            self.code.push(0x66);
        }
    }

    /// ModRM byte with mod=11 (register operand): `11 reg rm`.
    fn modrm_rr(&mut self, reg: u8, rm: u8) {
        self.code.push(0xC0 | ((reg & 7) << 3) | (rm & 7));
    }

    /// `cli` = FA: clear IF.
    pub fn cli(&mut self) -> &mut Self {
        self.db(&[0xFA])
    }

    /// `sti` = FB: set IF.
    pub fn sti(&mut self) -> &mut Self {
        self.db(&[0xFB])
    }

    /// `cld` = FC: string operations go upwards.
    pub fn cld(&mut self) -> &mut Self {
        self.db(&[0xFC])
    }

    /// `hlt` = F4.
    pub fn hlt(&mut self) -> &mut Self {
        self.db(&[0xF4])
    }

    /// `int imm8` = CD ib.
    pub fn int(&mut self, n: u8) -> &mut Self {
        self.db(&[0xCD, n])
    }

    /// `mov r8, imm8` = B0+r ib (register numbers 4..7 are AH, CH, DH, BH).
    pub fn mov8(&mut self, r: Reg, v: u8) -> &mut Self {
        self.db(&[0xB0 + r as u8, v])
    }

    /// `mov r16, imm16` = [66] B8+r iw.
    pub fn mov16(&mut self, r: Reg, v: u16) -> &mut Self {
        self.osize(false);
        self.code.push(0xB8 + r as u8);
        self.dw(v)
    }

    /// `mov r32, imm32` = [66] B8+r id.
    pub fn mov32(&mut self, r: Reg, v: u32) -> &mut Self {
        self.osize(true);
        self.code.push(0xB8 + r as u8);
        self.dd(v)
    }

    /// `mov r16, [label]` in 16-bit code = 8B /r with mod=00 rm=110 and a disp16 address.
    pub fn mov16_load(&mut self, r: Reg, l: Label) -> &mut Self {
        self.osize(false);
        self.code.push(0x8B);
        self.code.push(((r as u8) << 3) | 0b110);
        self.dw_addr(l)
    }

    /// `mov r32, [disp32]` in 32-bit code = 8B /r with mod=00 rm=101 and a disp32 address.
    pub fn mov32_load_abs(&mut self, r: Reg, addr: u32) -> &mut Self {
        self.osize(true);
        self.code.push(0x8B);
        self.code.push(((r as u8) << 3) | 0b101);
        self.dd(addr)
    }

    /// `mov r16, [disp16]` in 16-bit code = 8B /r with mod=00 rm=110.
    pub fn mov16_load_abs(&mut self, r: Reg, addr: u16) -> &mut Self {
        self.osize(false);
        self.code.push(0x8B);
        self.code.push(((r as u8) << 3) | 0b110);
        self.dw(addr)
    }

    /// `mov [disp16], r16` in 16-bit code = 89 /r with mod=00 rm=110.
    pub fn mov16_store_abs(&mut self, addr: u16, r: Reg) -> &mut Self {
        self.osize(false);
        self.code.push(0x89);
        self.code.push(((r as u8) << 3) | 0b110);
        self.dw(addr)
    }

    /// `lds r16, [disp16]` in 16-bit code = C5 /r with mod=00 rm=110: loads offset and DS.
    pub fn lds16_abs(&mut self, r: Reg, addr: u16) -> &mut Self {
        self.code.push(0xC5);
        self.code.push(((r as u8) << 3) | 0b110);
        self.dw(addr)
    }

    /// `mov al, [moffs16]` in 16-bit code = A0 iw.
    pub fn mov_al_moffs(&mut self, addr: u16) -> &mut Self {
        self.code.push(0xA0);
        self.dw(addr)
    }

    /// `mov ax, [moffs16]` in 16-bit code = [66] A1 iw.
    pub fn mov_ax_moffs(&mut self, addr: u16) -> &mut Self {
        self.osize(false);
        self.code.push(0xA1);
        self.dw(addr)
    }

    /// The ES segment-override prefix = 26, for the next instruction's memory operand.
    pub fn seg_es(&mut self) -> &mut Self {
        self.db(&[0x26])
    }

    /// `lodsw` = [66] AD: AX = [DS:SI], SI += 2.
    pub fn lodsw(&mut self) -> &mut Self {
        self.osize(false);
        self.db(&[0xAD])
    }

    /// `push r16` = [66] 50+r.
    pub fn push16(&mut self, r: Reg) -> &mut Self {
        self.osize(false);
        self.code.push(0x50 + r as u8);
        self
    }

    /// `pop r16` = [66] 58+r.
    pub fn pop16(&mut self, r: Reg) -> &mut Self {
        self.osize(false);
        self.code.push(0x58 + r as u8);
        self
    }

    /// `push ds` = 1E.
    pub fn push_ds(&mut self) -> &mut Self {
        self.db(&[0x1E])
    }

    /// `pop ds` = 1F.
    pub fn pop_ds(&mut self) -> &mut Self {
        self.db(&[0x1F])
    }

    /// `mov dst8, src8` = 88 /r (ModRM reg = source, rm = destination).
    pub fn mov8_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.code.push(0x88);
        self.modrm_rr(src as u8, dst as u8);
        self
    }

    /// `mov dst16, src16` = [66] 89 /r.
    pub fn mov16_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.osize(false);
        self.code.push(0x89);
        self.modrm_rr(src as u8, dst as u8);
        self
    }

    /// `mov dst32, src32` = [66] 89 /r.
    pub fn mov32_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.osize(true);
        self.code.push(0x89);
        self.modrm_rr(src as u8, dst as u8);
        self
    }

    /// `movzx r32, r8` = [66] 0F B6 /r.
    pub fn movzx32_8(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.osize(true);
        self.db(&[0x0F, 0xB6]);
        self.modrm_rr(dst as u8, src as u8);
        self
    }

    /// `mov Sreg, r16` = 8E /r (ModRM reg = segment register).
    pub fn mov_sreg(&mut self, s: Sreg, r: Reg) -> &mut Self {
        self.code.push(0x8E);
        self.modrm_rr(s as u8, r as u8);
        self
    }

    /// An ALU operation `op dst, src` of the 01/09/21/29/31/39 family: [66] op /r.
    fn alu_rr(&mut self, opcode: u8, wide: bool, dst: Reg, src: Reg) -> &mut Self {
        self.osize(wide);
        self.code.push(opcode);
        self.modrm_rr(src as u8, dst as u8);
        self
    }

    /// `add dst16, src16` = [66] 01 /r.
    pub fn add16_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_rr(0x01, false, dst, src)
    }

    /// `add dst32, src32` = [66] 01 /r.
    pub fn add32_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_rr(0x01, true, dst, src)
    }

    /// `or dst32, src32` = [66] 09 /r.
    pub fn or32_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_rr(0x09, true, dst, src)
    }

    /// `xor dst16, src16` = [66] 31 /r.
    pub fn xor16_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_rr(0x31, false, dst, src)
    }

    /// `xor dst32, src32` = [66] 31 /r.
    pub fn xor32_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_rr(0x31, true, dst, src)
    }

    /// An ALU operation with an immediate, group 1: [66] 81 /ext iw|id.
    fn alu_imm(&mut self, ext: u8, wide: bool, r: Reg, v: u32) -> &mut Self {
        self.osize(wide);
        self.code.push(0x81);
        self.modrm_rr(ext, r as u8);
        if wide {
            self.dd(v)
        } else {
            self.dw(v as u16)
        }
    }

    /// `add r16, imm16` = [66] 81 /0 iw.
    pub fn add16_imm(&mut self, r: Reg, v: u16) -> &mut Self {
        self.alu_imm(0, false, r, u32::from(v))
    }

    /// `or r16, imm16` = [66] 81 /1 iw.
    pub fn or16_imm(&mut self, r: Reg, v: u16) -> &mut Self {
        self.alu_imm(1, false, r, u32::from(v))
    }

    /// `and r32, imm32` = [66] 81 /4 id.
    pub fn and32_imm(&mut self, r: Reg, v: u32) -> &mut Self {
        self.alu_imm(4, true, r, v)
    }

    /// `cmp r16, imm16` = [66] 81 /7 iw.
    pub fn cmp16_imm(&mut self, r: Reg, v: u16) -> &mut Self {
        self.alu_imm(7, false, r, u32::from(v))
    }

    /// `cmp r32, imm32` = [66] 81 /7 id.
    pub fn cmp32_imm(&mut self, r: Reg, v: u32) -> &mut Self {
        self.alu_imm(7, true, r, v)
    }

    /// `and al, imm8` = 24 ib.
    pub fn and_al(&mut self, v: u8) -> &mut Self {
        self.db(&[0x24, v])
    }

    /// `or al, imm8` = 0C ib.
    pub fn or_al(&mut self, v: u8) -> &mut Self {
        self.db(&[0x0C, v])
    }

    /// `cmp al, imm8` = 3C ib.
    pub fn cmp_al(&mut self, v: u8) -> &mut Self {
        self.db(&[0x3C, v])
    }

    /// `neg r8` = F6 /3.
    pub fn neg8(&mut self, r: Reg) -> &mut Self {
        self.code.push(0xF6);
        self.modrm_rr(3, r as u8);
        self
    }

    /// A shift by an immediate count, group 2: [66] C1 /ext ib (an 80186 encoding).
    fn shift(&mut self, ext: u8, wide: bool, r: Reg, n: u8) -> &mut Self {
        self.osize(wide);
        self.code.push(0xC1);
        self.modrm_rr(ext, r as u8);
        self.code.push(n);
        self
    }

    /// `shl r16, imm8` = [66] C1 /4 ib.
    pub fn shl16(&mut self, r: Reg, n: u8) -> &mut Self {
        self.shift(4, false, r, n)
    }

    /// `shr r16, imm8` = [66] C1 /5 ib.
    pub fn shr16(&mut self, r: Reg, n: u8) -> &mut Self {
        self.shift(5, false, r, n)
    }

    /// `shl r32, imm8` = [66] C1 /4 ib.
    pub fn shl32(&mut self, r: Reg, n: u8) -> &mut Self {
        self.shift(4, true, r, n)
    }

    /// `shr r8, imm8` = C0 /5 ib.
    pub fn shr8(&mut self, r: Reg, n: u8) -> &mut Self {
        self.code.push(0xC0);
        self.modrm_rr(5, r as u8);
        self.code.push(n);
        self
    }

    /// `inc r16` = [66] 40+r (a one-byte form in 16- and 32-bit code).
    pub fn inc16(&mut self, r: Reg) -> &mut Self {
        self.osize(false);
        self.code.push(0x40 + r as u8);
        self
    }

    /// `inc r32` = [66] 40+r.
    pub fn inc32(&mut self, r: Reg) -> &mut Self {
        self.osize(true);
        self.code.push(0x40 + r as u8);
        self
    }

    /// `out dx, al` = EE.
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.db(&[0xEE])
    }

    /// `out dx, ax` = [66] EF: AL to port DX, AH to port DX+1 (an index/data register pair).
    pub fn out_dx_ax(&mut self) -> &mut Self {
        self.osize(false);
        self.db(&[0xEF])
    }

    /// `in al, dx` = EC.
    pub fn in_al_dx(&mut self) -> &mut Self {
        self.db(&[0xEC])
    }

    /// `stosb` = AA: [ES:DI] = AL, DI += 1.
    pub fn stosb(&mut self) -> &mut Self {
        self.db(&[0xAA])
    }

    /// `stosw` = [66] AB.
    pub fn stosw(&mut self) -> &mut Self {
        self.osize(false);
        self.db(&[0xAB])
    }

    /// `stosd` = [66] AB.
    pub fn stosd(&mut self) -> &mut Self {
        self.osize(true);
        self.db(&[0xAB])
    }

    /// `rep stosb` = F3 AA: CX times.
    pub fn rep_stosb(&mut self) -> &mut Self {
        self.db(&[0xF3]).stosb()
    }

    /// `rep stosw` = F3 [66] AB.
    pub fn rep_stosw(&mut self) -> &mut Self {
        self.db(&[0xF3]).stosw()
    }

    /// `jmp rel8` = EB cb.
    pub fn jmp_short(&mut self, l: Label) -> &mut Self {
        self.code.push(0xEB);
        self.fix(l, FixKind::Rel8);
        self.db(&[0])
    }

    /// `jmp $` = EB FE: a jump to itself.
    pub fn jmp_self(&mut self) -> &mut Self {
        self.db(&[0xEB, 0xFE])
    }

    /// `jmp rel16` (16-bit code) = E9 cw, `jmp rel32` (32-bit code) = E9 cd.
    pub fn jmp_near(&mut self, l: Label) -> &mut Self {
        self.code.push(0xE9);
        if self.bits32 {
            self.fix(l, FixKind::Rel32);
            self.dd(0)
        } else {
            self.fix(l, FixKind::Rel16);
            self.dw(0)
        }
    }

    /// `jcc rel8` = 70+cc cb.
    pub fn jcc(&mut self, c: Cond, l: Label) -> &mut Self {
        self.code.push(0x70 + c as u8);
        self.fix(l, FixKind::Rel8);
        self.db(&[0])
    }

    /// `loop rel8` = E2 cb: decrement (E)CX, jump while not zero.
    pub fn loop_(&mut self, l: Label) -> &mut Self {
        self.code.push(0xE2);
        self.fix(l, FixKind::Rel8);
        self.db(&[0])
    }

    /// `jmp ptr16:16` (16-bit code) = EA iw(offset) iw(selector): a far jump that reloads CS.
    pub fn jmp_far16(&mut self, selector: u16, l: Label) -> &mut Self {
        self.code.push(0xEA);
        self.dw_addr(l);
        self.dw(selector)
    }

    /// `lgdt [label]` in 16-bit code = 0F 01 /2 with mod=00 rm=110 disp16: 0F 01 16 disp16.
    pub fn lgdt16(&mut self, l: Label) -> &mut Self {
        self.db(&[0x0F, 0x01, 0x16]);
        self.dw_addr(l)
    }

    /// `mov r32, cr0` = 0F 20 /r (ModRM reg = 0 for CR0, rm = the register).
    pub fn mov_from_cr0(&mut self, r: Reg) -> &mut Self {
        self.db(&[0x0F, 0x20]);
        self.modrm_rr(0, r as u8);
        self
    }

    /// `mov cr0, r32` = 0F 22 /r.
    pub fn mov_to_cr0(&mut self, r: Reg) -> &mut Self {
        self.db(&[0x0F, 0x22]);
        self.modrm_rr(0, r as u8);
        self
    }

    /// `mov dx, port; mov al, byte; out dx, al`: one byte to an I/O port.
    pub fn out_byte(&mut self, port: u16, byte: u8) -> &mut Self {
        self.mov16(Reg::D, port).mov8(Reg::A, byte).out_dx_al()
    }

    /// `mov dx, port; mov ax, (value << 8) | index; out dx, ax`: one indexed VGA register.
    pub fn out_indexed(&mut self, port: u16, index: u8, value: u8) -> &mut Self {
        self.mov16(Reg::D, port)
            .mov16(Reg::A, u16::from(value) << 8 | u16::from(index))
            .out_dx_ax()
    }

    /// `out imm8, al` = E6 ib.
    pub fn out_imm_al(&mut self, port: u8) -> &mut Self {
        self.db(&[0xE6, port])
    }

    /// The end of every test program: [`DONE_BYTE`] to port 0x402, then `cli; hlt; jmp $`.
    pub fn done(&mut self) -> &mut Self {
        self.out_byte(DEBUGCON_PORT, DONE_BYTE)
            .cli()
            .hlt()
            .jmp_self()
    }

    /// A failure exit: [`FAIL_BYTE`] and `code` to port 0x402, then `cli; hlt; jmp $`.
    pub fn fail(&mut self, code: u8) -> &mut Self {
        self.out_byte(DEBUGCON_PORT, FAIL_BYTE)
            .mov8(Reg::A, code)
            .out_dx_al()
            .cli()
            .hlt()
            .jmp_self()
    }

    /// Applies the fixups and returns the machine code.
    pub fn finish(self) -> Result<Vec<u8>, BootImgError> {
        let mut code = self.code;
        for f in &self.fixups {
            let target = self
                .labels
                .get(f.label.0)
                .copied()
                .flatten()
                .ok_or(BootImgError::UnboundLabel(f.label.0))?;
            let (size, value) = match f.kind {
                FixKind::Rel8 | FixKind::Rel16 | FixKind::Rel32 => {
                    let size = match f.kind {
                        FixKind::Rel8 => 1,
                        FixKind::Rel16 => 2,
                        _ => 4,
                    };
                    let distance = target - (f.at + size) as i64;
                    let fits = match size {
                        1 => i8::try_from(distance).is_ok(),
                        2 => i16::try_from(distance).is_ok(),
                        _ => i32::try_from(distance).is_ok(),
                    };
                    if !fits {
                        return Err(BootImgError::JumpOutOfRange { at: f.at, distance });
                    }
                    (size, distance as u64)
                }
                FixKind::Abs16 | FixKind::Abs32 => {
                    let addr = i64::from(self.origin) + target;
                    let size = if matches!(f.kind, FixKind::Abs16) {
                        2
                    } else {
                        4
                    };
                    let limit = if size == 2 { 0xFFFF } else { 0xFFFF_FFFF };
                    if !(0..=limit).contains(&addr) {
                        return Err(BootImgError::AddressTooLarge {
                            at: f.at,
                            addr: addr as u32,
                        });
                    }
                    (size, addr as u64)
                }
            };
            let bytes = value.to_le_bytes();
            let field = code
                .get_mut(f.at..f.at + size)
                .ok_or(BootImgError::UnboundLabel(f.label.0))?;
            field.copy_from_slice(&bytes[..size]);
        }
        Ok(code)
    }
}

/// The boot-sector loader: sets up segments and a stack below 0x7C00, reads `sectors` sectors
/// starting at CHS 0/0/2 from the boot drive (DL as the BIOS left it) to 0000:7E00 with INT 13h
/// AH=02h, and jumps there. On a read error it reports failure code `L`.
fn loader(sectors: u8) -> Result<Vec<u8>, BootImgError> {
    let mut a = Asm::new(BOOT_ORIGIN);
    let error = a.label();
    a.cli() // FA
        .xor16_rr(Reg::A, Reg::A) // 31 C0: ax = 0
        .mov_sreg(Sreg::Ds, Reg::A) // 8E D8
        .mov_sreg(Sreg::Es, Reg::A) // 8E C0
        .mov_sreg(Sreg::Ss, Reg::A) // 8E D0
        .mov16(Reg::Sp, BOOT_ORIGIN as u16) // BC 00 7C
        .sti() // FB
        .cld() // FC
        .mov16(Reg::A, 0x0200 | u16::from(sectors)) // B8 nn 02: AH=02h read, AL=count
        .mov16(Reg::C, 0x0002) // B9 02 00: CH=cylinder 0, CL=sector 2
        .mov8(Reg::Si, 0) // B6 00: DH=head 0 (DL: boot drive)
        .mov16(Reg::B, PROGRAM_ORIGIN as u16) // BB 00 7E: ES:BX = 0000:7E00
        .int(0x13) // CD 13
        .jcc(Cond::B, error) // 72 cb: CF set on error
        .cmp_al(sectors) // 3C ib: AL = sectors read
        .jcc(Cond::Ne, error); // 75 cb
    let program = a.label_at(PROGRAM_ORIGIN);
    a.jmp_near(program); // E9 cw: to 0000:7E00
    a.bind(error)?;
    a.fail(b'L');
    a.finish()
}

/// A 1.44 MB floppy image: the loader in the boot sector (with the 55 AA signature), then
/// `program` (assembled for [`PROGRAM_ORIGIN`]) in the following sectors of the first track.
pub fn floppy(program: &[u8]) -> Result<Vec<u8>, BootImgError> {
    let sectors = program.len().div_ceil(SECTOR).max(1);
    if sectors > SECTORS_PER_TRACK - 1 {
        return Err(BootImgError::ProgramTooLarge(program.len()));
    }
    let boot = loader(sectors as u8)?;
    if boot.len() > SECTOR - 2 {
        return Err(BootImgError::ProgramTooLarge(boot.len()));
    }
    let mut img = vec![0u8; FLOPPY_SIZE];
    img[..boot.len()].copy_from_slice(&boot);
    img[510] = 0x55;
    img[511] = 0xAA;
    img[SECTOR..SECTOR + program.len()].copy_from_slice(program);
    Ok(img)
}

/// A program that reports [`DONE_BYTE`] and halts with `cli; hlt` while the PIC keeps its
/// inputs unmasked, so the timer's request stays pending at the halted CPU (a machine that
/// wakes the CPU only for an interrupt it can take must still return to its host).
pub fn halt_with_pending_interrupt() -> Result<Vec<u8>, BootImgError> {
    let mut a = Asm::new(PROGRAM_ORIGIN);
    a.mov8(Reg::A, 0x00) // B0 00
        .out_imm_al(0x21) // E6 21: every master PIC input enabled (IRQ 0, the PIT, ticks)
        .sti() // FB
        .hlt() // F4: wait for one timer tick with interrupts enabled
        .out_byte(DEBUGCON_PORT, DONE_BYTE) // BA 02 04, B0 44, EE
        .cli() // FA
        .hlt() // F4: the next tick is requested but cannot be taken
        .jmp_self(); // EB FE
    floppy(&a.finish()?)
}

/// The video-mode test programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoTest {
    /// Mode 03h, 80×25 text: every character and attribute (blink off through INT 10h
    /// AX=1003h), a line written by the BIOS teletype, the cursor at row 12, column 40.
    Text80x25,
    /// Mode 12h, 640×480 planar 16 colours: diagonal colour bands drawn plane by plane.
    Vga12h,
    /// Mode 13h, 320×200 256 colours: the XOR texture `x ^ y`.
    Vga13h,
    /// Mode X: mode 13h unchained (sequencer and CRTC reprogrammed) to 320×240, the XOR
    /// texture drawn plane by plane.
    ModeX,
    /// A VBE mode of 1024×768 with 32 bits per pixel, found in the VGA BIOS's mode list and set
    /// with the linear frame buffer (bit 14), drawn in 32-bit protected mode at the address INT
    /// 10h AX=4F01h reports.
    Vbe1024x768x32,
}

impl VideoTest {
    /// Every test, in order.
    pub const ALL: [VideoTest; 5] = [
        VideoTest::Text80x25,
        VideoTest::Vga12h,
        VideoTest::Vga13h,
        VideoTest::ModeX,
        VideoTest::Vbe1024x768x32,
    ];

    /// The name used in the golden file.
    pub fn name(self) -> &'static str {
        match self {
            VideoTest::Text80x25 => "text80x25",
            VideoTest::Vga12h => "vga12h",
            VideoTest::Vga13h => "vga13h",
            VideoTest::ModeX => "modex320x240",
            VideoTest::Vbe1024x768x32 => "vbe1024x768x32",
        }
    }

    /// The size of the picture the display shows, in pixels.
    pub fn screen_size(self) -> (usize, usize) {
        match self {
            VideoTest::Text80x25 => (720, 400),
            VideoTest::Vga12h => (640, 480),
            VideoTest::Vga13h => (320, 200),
            VideoTest::ModeX => (320, 240),
            VideoTest::Vbe1024x768x32 => (1024, 768),
        }
    }

    /// For text modes, the cursor cell (column, row) the program leaves.
    pub fn cursor(self) -> Option<(usize, usize)> {
        match self {
            VideoTest::Text80x25 => Some((40, 12)),
            _ => None,
        }
    }

    /// The program's machine code, for [`PROGRAM_ORIGIN`].
    pub fn program(self) -> Result<Vec<u8>, BootImgError> {
        let mut a = Asm::new(PROGRAM_ORIGIN);
        match self {
            VideoTest::Text80x25 => text_program(&mut a)?,
            VideoTest::Vga12h => vga12h_program(&mut a)?,
            VideoTest::Vga13h => vga13h_program(&mut a)?,
            VideoTest::ModeX => modex_program(&mut a)?,
            VideoTest::Vbe1024x768x32 => vbe_program(&mut a)?,
        }
        a.finish()
    }

    /// The floppy image of the program.
    pub fn image(self) -> Result<Vec<u8>, BootImgError> {
        floppy(&self.program()?)
    }
}

/// Mode 03h with every character/attribute pair, a teletype line and a placed cursor.
fn text_program(a: &mut Asm) -> Result<(), BootImgError> {
    a.mov16(Reg::A, 0x0003) // B8 03 00: AH=00h set mode, AL=03h
        .int(0x10) // CD 10
        .mov16(Reg::A, 0x1003) // B8 03 10: AX=1003h, toggle intensity/blink
        .mov16(Reg::B, 0x0000) // BB 00 00: BL=0, background intensity (no blink)
        .int(0x10) // CD 10
        .mov16(Reg::A, 0xB800) // B8 00 B8
        .mov_sreg(Sreg::Es, Reg::A) // 8E C0: ES = text buffer
        .xor16_rr(Reg::Di, Reg::Di) // 31 FF: DI = 0
        .xor16_rr(Reg::B, Reg::B) // 31 DB: BX = cell number
        .mov16(Reg::C, 80 * 25); // B9 D0 07: CX = cells
    let cell = a.label();
    a.bind(cell)?;
    a.mov16_rr(Reg::A, Reg::B) // 89 D8: AL = character = cell number
        .mov16_rr(Reg::D, Reg::B) // 89 DA
        .shr16(Reg::D, 3) // C1 EA 03: DX = cell / 8
        .mov8_rr(Reg::Sp, Reg::D) // 88 D4: AH = attribute = cell / 8 (AH is reg 4)
        .stosw() // AB
        .inc16(Reg::B) // 43
        .loop_(cell); // E2 cb
                      // The BIOS teletype writes a line at row 20 (AH=02h places the cursor, AH=0Eh writes).
    a.mov16(Reg::A, 0x0200) // B8 00 02: AH=02h set cursor position
        .mov16(Reg::B, 0x0000) // BB 00 00: BH = page 0
        .mov16(Reg::D, 20 << 8 | 2) // BA 02 14: DH = row 20, DL = column 2
        .int(0x10); // CD 10
    for &ch in b"wasm86 text mode 80x25" {
        a.mov16(Reg::A, 0x0E00 | u16::from(ch)) // B8 ch 0E: AH=0Eh teletype, AL = char
            .int(0x10); // CD 10
    }
    a.mov16(Reg::A, 0x0200) // B8 00 02: AH=02h set cursor position
        .mov16(Reg::B, 0x0000) // BB 00 00: page 0
        .mov16(Reg::D, 12 << 8 | 40) // BA 28 0C: row 12, column 40
        .int(0x10) // CD 10
        .done();
    Ok(())
}

/// Mode 12h: for each plane p the map mask selects p alone, and each byte (8 pixels) of row y,
/// column c is 0xFF when bit p of `c + y / 16` is set: diagonal bands of the 16 colours.
fn vga12h_program(a: &mut Asm) -> Result<(), BootImgError> {
    a.mov16(Reg::A, 0x0012) // B8 12 00: set mode 12h
        .int(0x10) // CD 10
        .mov16(Reg::A, 0xA000) // B8 00 A0
        .mov_sreg(Sreg::Es, Reg::A); // 8E C0: ES = graphics window
    for plane in 0..4u8 {
        a.out_indexed(0x3C4, 0x02, 1 << plane) // BA C4 03, B8 02 mm, EF: map mask
            .xor16_rr(Reg::Di, Reg::Di) // 31 FF
            .xor16_rr(Reg::B, Reg::B); // 31 DB: BX = row
        let row = a.label();
        let col = a.label();
        a.bind(row)?;
        a.xor16_rr(Reg::Si, Reg::Si); // 31 F6: SI = column byte
        a.bind(col)?;
        a.mov16_rr(Reg::A, Reg::B) // 89 D8: AX = row
            .shr16(Reg::A, 4) // C1 E8 04: row / 16
            .add16_rr(Reg::A, Reg::Si) // 01 F0: + column
            .shr8(Reg::A, plane) // C0 E8 pp: bit p to bit 0
            .and_al(1) // 24 01
            .neg8(Reg::A) // F6 D8: 0 or 0xFF
            .stosb() // AA
            .inc16(Reg::Si) // 46
            .cmp16_imm(Reg::Si, 80) // 81 FE 50 00
            .jcc(Cond::B, col) // 72 cb
            .inc16(Reg::B) // 43
            .cmp16_imm(Reg::B, 480) // 81 FB E0 01
            .jcc(Cond::B, row); // 72 cb
    }
    a.out_indexed(0x3C4, 0x02, 0x0F) // map mask back to all planes
        .done();
    Ok(())
}

/// Mode 13h: pixel (x, y) = `x ^ y` (low byte), x in SI, y in BX.
fn vga13h_program(a: &mut Asm) -> Result<(), BootImgError> {
    a.mov16(Reg::A, 0x0013) // B8 13 00: set mode 13h
        .int(0x10) // CD 10
        .mov16(Reg::A, 0xA000) // B8 00 A0
        .mov_sreg(Sreg::Es, Reg::A) // 8E C0
        .xor16_rr(Reg::Di, Reg::Di) // 31 FF
        .xor16_rr(Reg::B, Reg::B); // 31 DB: y
    let row = a.label();
    let col = a.label();
    a.bind(row)?;
    a.xor16_rr(Reg::Si, Reg::Si); // 31 F6: x
    a.bind(col)?;
    a.mov16_rr(Reg::A, Reg::Si) // 89 F0: AX = x
        .xor16_rr(Reg::A, Reg::B) // 31 D8: ^ y
        .stosb() // AA
        .inc16(Reg::Si) // 46
        .cmp16_imm(Reg::Si, 320) // 81 FE 40 01
        .jcc(Cond::B, col) // 72 cb
        .inc16(Reg::B) // 43
        .cmp16_imm(Reg::B, 200) // 81 FB C8 00
        .jcc(Cond::B, row) // 72 cb
        .done();
    Ok(())
}

/// Mode X: mode 13h, then chain-4 off, byte addressing, and the 480-line (double-scanned to
/// 240) CRTC timing; pixel (x, y) = `(x ^ y) + y / 4` drawn plane by plane (plane = x mod 4).
fn modex_program(a: &mut Asm) -> Result<(), BootImgError> {
    a.mov16(Reg::A, 0x0013) // B8 13 00: set mode 13h
        .int(0x10) // CD 10
        .out_indexed(0x3C4, 0x04, 0x06) // sequencer memory mode: chain-4 off, odd/even off
        .out_indexed(0x3C4, 0x00, 0x01) // synchronous reset while the clock changes
        .out_byte(0x3C2, 0xE3) // misc output: 25 MHz clock, 480-line sync polarities
        .out_indexed(0x3C4, 0x00, 0x03) // end of reset
        .out_indexed(0x3D4, 0x11, 0x2C); // vertical retrace end, CR0-7 write protect off
    for (index, value) in [
        (0x06u8, 0x0Du8), // vertical total
        (0x07, 0x3E),     // overflow
        (0x09, 0x41),     // maximum scan line: double scan
        (0x10, 0xEA),     // vertical retrace start
        (0x11, 0xAC),     // vertical retrace end (protect on again)
        (0x12, 0xDF),     // vertical display end: 480 lines
        (0x14, 0x00),     // underline location: doubleword mode off
        (0x15, 0xE7),     // start vertical blank
        (0x16, 0x06),     // end vertical blank
        (0x17, 0xE3),     // mode control: byte mode
    ] {
        a.out_indexed(0x3D4, index, value); // BA D4 03, B8 vv ii, EF
    }
    a.mov16(Reg::A, 0xA000) // B8 00 A0
        .mov_sreg(Sreg::Es, Reg::A); // 8E C0
    for plane in 0..4u8 {
        a.out_indexed(0x3C4, 0x02, 1 << plane) // map mask = plane
            .xor16_rr(Reg::Di, Reg::Di) // 31 FF
            .xor16_rr(Reg::B, Reg::B); // 31 DB: y
        let row = a.label();
        let col = a.label();
        a.bind(row)?;
        a.xor16_rr(Reg::Si, Reg::Si); // 31 F6: column byte c (x = 4c + plane)
        a.bind(col)?;
        a.mov16_rr(Reg::A, Reg::Si) // 89 F0
            .shl16(Reg::A, 2) // C1 E0 02: 4c
            .add16_imm(Reg::A, u16::from(plane)) // 81 C0 pp 00: x
            .xor16_rr(Reg::A, Reg::B) // 31 D8: x ^ y
            .mov16_rr(Reg::D, Reg::B) // 89 DA
            .shr16(Reg::D, 2) // C1 EA 02: y / 4
            .add16_rr(Reg::A, Reg::D) // 01 D0
            .stosb() // AA
            .inc16(Reg::Si) // 46
            .cmp16_imm(Reg::Si, 80) // 81 FE 50 00
            .jcc(Cond::B, col) // 72 cb
            .inc16(Reg::B) // 43
            .cmp16_imm(Reg::B, 240) // 81 FB F0 00
            .jcc(Cond::B, row); // 72 cb
    }
    a.done();
    Ok(())
}

/// VBE: INT 10h AX=4F00h for the controller information (with the "VBE2" signature), then
/// AX=4F01h for each mode of its mode list until one is 1024×768 with 32 bits per pixel and a
/// linear frame buffer (SeaBIOS's VGA BIOS numbers it 0x144; its 0x118 is the 24-bit mode).
/// The mode number is stored at [`VBE_MODE_ADDR`]; AX=4F02h sets it with bit 14 (LFB), then
/// 32-bit protected mode with flat segments draws pixel (x, y) = R `x & 0xFF`, G `y & 0xFF`,
/// B `(x ^ y) & 0xFF` at the frame buffer address the mode information gives.
fn vbe_program(a: &mut Asm) -> Result<(), BootImgError> {
    let info = VBE_INFO_ADDR;
    let ctrl = VBE_CONTROLLER_ADDR;
    let bad_info = a.label();
    let bad_mode = a.label();
    let bad_set = a.label();
    let gdt = a.label();
    let gdtr = a.label();
    let pm = a.label();
    let row = a.label();
    let col = a.label();
    let next = a.label();
    let found = a.label();
    a.mov16(Reg::A, u16::from_le_bytes(*b"VB")) // B8 56 42: signature "VBE2" asks for
        .mov16_store_abs(ctrl, Reg::A) // 89 06 00 08: VBE 2.0 information
        .mov16(Reg::A, u16::from_le_bytes(*b"E2")) // B8 45 32
        .mov16_store_abs(ctrl + 2, Reg::A) // 89 06 02 08
        .mov16(Reg::A, 0x4F00) // B8 00 4F: return controller information
        .mov16(Reg::Di, ctrl) // BF 00 08: ES:DI = 0000:0800
        .int(0x10) // CD 10
        .cmp16_imm(Reg::A, 0x004F) // 81 F8 4F 00: supported and successful
        .jcc(Cond::Ne, bad_info) // 75 cb
        .lds16_abs(Reg::Si, ctrl + 0x0E); // C5 36 0E 08: DS:SI = VideoModePtr
    a.bind(next)?;
    a.lodsw() // AD: AX = [DS:SI], SI += 2
        .cmp16_imm(Reg::A, 0xFFFF) // 81 F8 FF FF: end of the list
        .jcc(Cond::E, bad_mode) // 74 cb
        .mov16_rr(Reg::C, Reg::A) // 89 C1: CX = mode
        .push_ds() // 1E
        .push16(Reg::Si) // 56
        .xor16_rr(Reg::A, Reg::A) // 31 C0
        .mov_sreg(Sreg::Ds, Reg::A) // 8E D8
        .mov16_store_abs(VBE_MODE_ADDR, Reg::C) // 89 0E F0 05
        .mov16(Reg::A, 0x4F01) // B8 01 4F: return mode information
        .mov16(Reg::Di, info) // BF 00 06: ES:DI = 0000:0600
        .int(0x10) // CD 10
        .pop16(Reg::Si) // 5E
        .pop_ds() // 1F
        .cmp16_imm(Reg::A, 0x004F) // 81 F8 4F 00
        .jcc(Cond::Ne, next) // 75 cb
        .seg_es()
        .mov_ax_moffs(info + 0x12) // 26 A1 12 06: XResolution
        .cmp16_imm(Reg::A, 1024) // 81 F8 00 04
        .jcc(Cond::Ne, next) // 75 cb
        .seg_es()
        .mov_ax_moffs(info + 0x14) // 26 A1 14 06: YResolution
        .cmp16_imm(Reg::A, 768) // 81 F8 00 03
        .jcc(Cond::Ne, next) // 75 cb
        .seg_es()
        .mov_al_moffs(info + 0x19) // 26 A0 19 06: BitsPerPixel
        .cmp_al(32) // 3C 20
        .jcc(Cond::Ne, next) // 75 cb
        .seg_es()
        .mov_al_moffs(info) // 26 A0 00 06: ModeAttributes
        .and_al(0x80) // 24 80: linear frame buffer available
        .jcc(Cond::Ne, found) // 75 cb
        .jmp_short(next); // EB cb
    a.bind(found)?;
    a.xor16_rr(Reg::A, Reg::A) // 31 C0
        .mov_sreg(Sreg::Ds, Reg::A) // 8E D8
        .mov16_load_abs(Reg::B, VBE_MODE_ADDR) // 8B 1E F0 05
        .or16_imm(Reg::B, 0x4000) // 81 CB 00 40: use the linear frame buffer
        .mov16(Reg::A, 0x4F02) // B8 02 4F: set VBE mode
        .int(0x10) // CD 10
        .cmp16_imm(Reg::A, 0x004F) // 81 F8 4F 00
        .jcc(Cond::Ne, bad_set) // 75 cb
        // Enter 32-bit protected mode with flat 4 GB segments.
        .cli() // FA
        .lgdt16(gdtr) // 0F 01 16 disp16
        .mov_from_cr0(Reg::A) // 0F 20 C0
        .or_al(1) // 0C 01: PE
        .mov_to_cr0(Reg::A) // 0F 22 C0
        .jmp_far16(0x08, pm); // EA off16 08 00: CS = code descriptor
    a.bind(bad_info)?;
    a.fail(b'I');
    a.bind(bad_mode)?;
    a.fail(b'M');
    a.bind(bad_set)?;
    a.fail(b'S');
    a.align(8, 0x90);
    a.bind(gdt)?;
    a.dq(0) // null descriptor
        .dq(0x00CF_9A00_0000_FFFF) // 0x08: code, base 0, limit 4 GB, 32-bit, DPL 0
        .dq(0x00CF_9200_0000_FFFF); // 0x10: data, base 0, limit 4 GB, writable
    a.bind(gdtr)?;
    a.dw(3 * 8 - 1).dd_addr(gdt); // limit, base
    a.bits32(true);
    a.bind(pm)?;
    a.mov16(Reg::A, 0x10) // 66 B8 10 00: data selector
        .mov_sreg(Sreg::Ds, Reg::A) // 8E D8
        .mov_sreg(Sreg::Es, Reg::A) // 8E C0
        .mov_sreg(Sreg::Ss, Reg::A) // 8E D0
        .mov32(Reg::Sp, BOOT_ORIGIN) // BC 00 7C 00 00
        .mov32_load_abs(Reg::Di, u32::from(info) + 0x28) // 8B 3D 28 06 00 00: EDI = PhysBasePtr
        .xor32_rr(Reg::B, Reg::B); // 31 DB: y
    a.bind(row)?;
    a.xor32_rr(Reg::Si, Reg::Si); // 31 F6: x
    a.bind(col)?;
    a.mov32_rr(Reg::A, Reg::Si) // 89 F0: x
        .xor32_rr(Reg::A, Reg::B) // 31 D8: x ^ y
        .movzx32_8(Reg::A, Reg::A) // 0F B6 C0: blue = low byte
        .mov32_rr(Reg::D, Reg::Si) // 89 F2
        .and32_imm(Reg::D, 0xFF) // 81 E2 FF 00 00 00
        .shl32(Reg::D, 16) // C1 E2 10: red
        .or32_rr(Reg::A, Reg::D) // 09 D0
        .mov32_rr(Reg::D, Reg::B) // 89 DA
        .and32_imm(Reg::D, 0xFF) // 81 E2 FF 00 00 00
        .shl32(Reg::D, 8) // C1 E2 08: green
        .or32_rr(Reg::A, Reg::D) // 09 D0
        .stosd() // AB
        .inc32(Reg::Si) // 46
        .cmp32_imm(Reg::Si, 1024) // 81 FE 00 04 00 00
        .jcc(Cond::B, col) // 72 cb
        .inc32(Reg::B) // 43
        .cmp32_imm(Reg::B, 768) // 81 FB 00 03 00 00
        .jcc(Cond::B, row) // 72 cb
        .done();
    Ok(())
}

/// SHA-256 of `data`, as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A binary PPM (P6, maxval 255) parsed: width, height and the RGB bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ppm {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

impl Ppm {
    /// Parses a P6 file with maxval 255 and exactly `width * height * 3` bytes of pixels.
    pub fn parse(data: &[u8]) -> Result<Ppm, String> {
        let mut fields = Vec::new();
        let mut pos = 0;
        while fields.len() < 4 {
            while data.get(pos).is_some_and(|b| b.is_ascii_whitespace()) {
                pos += 1;
            }
            if data.get(pos) == Some(&b'#') {
                while data.get(pos).is_some_and(|&b| b != b'\n') {
                    pos += 1;
                }
                continue;
            }
            let start = pos;
            while data.get(pos).is_some_and(|b| !b.is_ascii_whitespace()) {
                pos += 1;
            }
            if start == pos {
                return Err("truncated PPM header".into());
            }
            fields.push(String::from_utf8_lossy(&data[start..pos]).into_owned());
        }
        // Exactly one whitespace byte separates the header from the pixels.
        pos += 1;
        if fields[0] != "P6" {
            return Err(format!("not a P6 PPM: {:?}", fields[0]));
        }
        let num = |s: &str| s.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
        let (width, height, maxval) = (num(&fields[1])?, num(&fields[2])?, num(&fields[3])?);
        if maxval != 255 {
            return Err(format!("maxval {maxval}"));
        }
        let rgb = data.get(pos..).unwrap_or_default().to_vec();
        if Some(rgb.len()) != width.checked_mul(height).and_then(|n| n.checked_mul(3)) {
            return Err(format!(
                "{width}x{height} PPM with {} bytes of pixels",
                rgb.len()
            ));
        }
        Ok(Ppm { width, height, rgb })
    }

    /// The RGB of pixel (x, y), if inside.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width {
            return None;
        }
        let i = y.checked_mul(self.width)?.checked_add(x)?.checked_mul(3)?;
        let p = self.rgb.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }
}

/// A negotiated QMP connection over a unix socket, for the guest tests.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    /// Events received while waiting for replies, in order.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying for up to 20 s while the socket appears), reads the greeting and
    /// negotiates capabilities.
    pub fn connect(path: &Path) -> Qmp {
        let t = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("QMP connect to {}: {e}", path.display()),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("socket timeout");
        let mut q = Qmp {
            r: BufReader::new(s.try_clone().expect("socket clone")),
            w: s,
            events: Vec::new(),
        };
        let greeting = q.line();
        assert!(greeting.get("QMP").is_some(), "greeting: {greeting}");
        let r = q.cmd(json!({"execute": "qmp_capabilities"}));
        assert_eq!(r, json!({"return": {}}));
        q
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("QMP read");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    /// Sends one command and returns its reply (events met on the way go to `events`).
    pub fn cmd(&mut self, req: Value) -> Value {
        self.w
            .write_all(req.to_string().as_bytes())
            .expect("QMP write");
        loop {
            let v = self.line();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Sends one command and waits at most `timeout` for its reply; an error when the reply
    /// does not come in time (the previous read timeout is restored).
    pub fn cmd_within(&mut self, req: Value, timeout: Duration) -> std::io::Result<Value> {
        self.w.set_read_timeout(Some(timeout))?;
        self.w.write_all(req.to_string().as_bytes())?;
        let r = loop {
            let mut l = String::new();
            if let Err(e) = self.r.read_line(&mut l) {
                break Err(e);
            }
            match serde_json::from_str::<Value>(&l) {
                Ok(v) if v.get("event").is_some() => self.events.push(v),
                Ok(v) => break Ok(v),
                Err(e) => break Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        };
        self.w.set_read_timeout(Some(Duration::from_secs(120)))?;
        r
    }

    /// Runs an HMP command through `human-monitor-command` and returns its text.
    pub fn hmp(&mut self, line: &str) -> String {
        let r = self.cmd(json!({
            "execute": "human-monitor-command",
            "arguments": {"command-line": line}
        }));
        r["return"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}: {r}"))
            .to_string()
    }

    /// `screendump` to `path`, then reads and parses the file.
    pub fn screendump(&mut self, path: &Path) -> (Vec<u8>, Ppm) {
        let _ = std::fs::remove_file(path);
        let r = self.cmd(json!({
            "execute": "screendump",
            "arguments": {"filename": path.to_str().expect("utf-8 path")}
        }));
        assert_eq!(r, json!({"return": {}}), "screendump");
        let data = std::fs::read(path).expect("screendump file");
        let ppm = Ppm::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (data, ppm)
    }
}

/// A wasm86 process with a QMP socket and a debug-console log in a private directory; the
/// process is killed and the directory removed when dropped.
pub struct GuestVm {
    /// The QMP connection.
    pub qmp: Qmp,
    /// The private directory (images, socket, log, screendumps).
    pub dir: PathBuf,
    /// The `-debugcon` log.
    pub log: PathBuf,
    serial: Option<SerialPort>,
    _vm: Guard,
}

/// The guest's serial port when it is the process's stdio.
struct SerialPort {
    input: ChildStdin,
    rx: Receiver<Vec<u8>>,
    seen: String,
}

impl GuestVm {
    /// Starts `wasm86 -L guest-images/bios -clock deterministic -display none -debugcon
    /// file:LOG -qmp unix:SOCK,server,nowait` with `args` in a fresh directory named after
    /// `tag`; `serial` is the `-serial` backend (with `stdio` the guest's serial port is
    /// available through [`GuestVm::wait_serial`] and [`GuestVm::shell`]). `files` are
    /// written to the directory first and `{dir}` in `args` is replaced by its path.
    pub fn start(tag: &str, files: &[(&str, &[u8])], serial: &str, args: &[&str]) -> GuestVm {
        let dir = std::env::temp_dir().join(format!("wasm86-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        for (name, data) in files {
            std::fs::write(dir.join(name), data).expect("write image");
        }
        let sock = dir.join("qmp.sock");
        let log = dir.join("debugcon.log");
        let dirs = dir.to_str().expect("utf-8 temp dir").to_string();
        let stdio = serial == "stdio";
        let pipe = || if stdio { Stdio::piped() } else { Stdio::null() };
        let mut child = Command::new(bin("wasm86"))
            .args(["-clock", "deterministic", "-display", "none", "-L"])
            .arg(guest("bios"))
            .arg("-serial")
            .arg(serial)
            .arg("-debugcon")
            .arg(format!("file:{}", log.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server,nowait", sock.display()))
            .args(args.iter().map(|a| a.replace("{dir}", &dirs)))
            .stdin(pipe())
            .stdout(pipe())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wasm86");
        let serial = match (child.stdin.take(), child.stdout.take()) {
            (Some(input), Some(mut out)) => {
                let (tx, rx) = channel();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = out.read(&mut buf) {
                        if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                });
                Some(SerialPort {
                    input,
                    rx,
                    seen: String::new(),
                })
            }
            _ => None,
        };
        let guard = Guard(child);
        let qmp = Qmp::connect(&sock);
        GuestVm {
            qmp,
            dir,
            log,
            serial,
            _vm: guard,
        }
    }

    fn serial_port(&mut self) -> &mut SerialPort {
        self.serial
            .as_mut()
            .expect("the VM was started without -serial stdio")
    }

    /// Serial output received so far (lossy UTF-8).
    pub fn serial_text(&mut self) -> &str {
        let port = self.serial_port();
        while let Ok(b) = port.rx.try_recv() {
            port.seen.push_str(&String::from_utf8_lossy(&b));
        }
        &port.seen
    }

    /// Waits until the serial output after byte offset `from` contains `pat`; returns the
    /// offset just after it. Panics with the output's tail after `timeout`.
    pub fn wait_serial(&mut self, from: usize, pat: &str, timeout: Duration) -> usize {
        let port = self.serial_port();
        let start = Instant::now();
        loop {
            if let Some(i) = port.seen.get(from..).and_then(|s| s.find(pat)) {
                return from + i + pat.len();
            }
            let Some(left) = timeout.checked_sub(start.elapsed()) else {
                let tail: String = {
                    let chars: Vec<char> = port.seen.chars().collect();
                    chars[chars.len().saturating_sub(3000)..].iter().collect()
                };
                panic!("{pat:?} not seen within {timeout:?}; serial output ends with:\n{tail}");
            };
            if let Ok(b) = port.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                port.seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }

    /// Types `line` and a newline on the serial port.
    pub fn type_line(&mut self, line: &str) {
        let port = self.serial_port();
        port.input
            .write_all(format!("{line}\n").as_bytes())
            .expect("serial input");
        port.input.flush().expect("serial input");
    }

    /// Runs a shell command on the serial console and returns what it printed (between two
    /// markers that the echoed command line cannot contain).
    pub fn shell(&mut self, cmd: &str, timeout: Duration) -> String {
        let from = self.serial_text().len();
        self.type_line(&format!("echo BEGIN-$((1+1)); {cmd}; echo END-$((2+2))"));
        let a = self.wait_serial(from, "BEGIN-2", timeout);
        let b = self.wait_serial(a, "END-4", timeout);
        let seen = &self.serial_port().seen;
        seen.get(a..b - "END-4".len())
            .unwrap_or_default()
            .replace("\r\n", "\n")
            .trim()
            .to_string()
    }

    /// The debug console output so far.
    pub fn debugcon(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }

    /// Waits until the debug console ends with [`DONE_BYTE`]; panics with the log's tail on
    /// a failure code or a timeout. Returns the time waited.
    pub fn wait_done(&self, timeout: Duration) -> Duration {
        let t = Instant::now();
        loop {
            let log = self.debugcon();
            if log.last() == Some(&DONE_BYTE) {
                return t.elapsed();
            }
            let tail = || {
                let from = log.len().saturating_sub(1500);
                String::from_utf8_lossy(&log[from..]).into_owned()
            };
            if let Some(i) = log.iter().rposition(|&b| b == FAIL_BYTE) {
                if let Some(&code) = log.get(i + 1) {
                    panic!(
                        "the guest program failed with code {:?}; debugcon ends with:\n{}",
                        code as char,
                        tail()
                    );
                }
            }
            assert!(
                t.elapsed() < timeout,
                "no done byte within {timeout:?}; debugcon ends with:\n{}",
                tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GuestVm {
    fn drop(&mut self) {
        let _ = self.qmp.w.write_all(br#"{"execute": "quit"}"#);
        if std::env::var_os("WASM86_KEEP_TEST_FILES").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_opcode_tables() {
        let mut a = Asm::new(0x7C00);
        a.mov16(Reg::A, 0x1234) // B8 34 12
            .mov8(Reg::Sp, 0x0E) // B4 0E: mov ah, 0Eh
            .mov_sreg(Sreg::Es, Reg::A) // 8E C0
            .mov_sreg(Sreg::Ds, Reg::B) // 8E DB
            .xor16_rr(Reg::Di, Reg::Di) // 31 FF
            .mov16_rr(Reg::A, Reg::B) // 89 D8
            .mov8_rr(Reg::Sp, Reg::D) // 88 D4: mov ah, dl
            .mov32(Reg::A, 0xE000_0000) // 66 B8 00 00 00 E0
            .shr16(Reg::D, 3) // C1 EA 03
            .shr8(Reg::A, 2) // C0 E8 02
            .cmp16_imm(Reg::Si, 80) // 81 FE 50 00
            .neg8(Reg::A) // F6 D8
            .out_dx_al() // EE
            .out_dx_ax() // EF
            .rep_stosb() // F3 AA
            .rep_stosw() // F3 AB
            .stosd() // 66 AB
            .int(0x10) // CD 10
            .mov_from_cr0(Reg::A) // 0F 20 C0
            .mov_to_cr0(Reg::A) // 0F 22 C0
            .cli()
            .hlt()
            .jmp_self(); // FA F4 EB FE
        let code = a.finish().unwrap();
        assert_eq!(
            code,
            [
                0xB8, 0x34, 0x12, 0xB4, 0x0E, 0x8E, 0xC0, 0x8E, 0xDB, 0x31, 0xFF, 0x89, 0xD8, 0x88,
                0xD4, 0x66, 0xB8, 0x00, 0x00, 0x00, 0xE0, 0xC1, 0xEA, 0x03, 0xC0, 0xE8, 0x02, 0x81,
                0xFE, 0x50, 0x00, 0xF6, 0xD8, 0xEE, 0xEF, 0xF3, 0xAA, 0xF3, 0xAB, 0x66, 0xAB, 0xCD,
                0x10, 0x0F, 0x20, 0xC0, 0x0F, 0x22, 0xC0, 0xFA, 0xF4, 0xEB, 0xFE
            ]
        );
    }

    #[test]
    fn operand_size_prefix_follows_the_code_size() {
        let mut a = Asm::new(0);
        a.bits32(true)
            .mov16(Reg::A, 0x10) // 66 B8 10 00
            .mov32(Reg::Sp, 0x7C00) // BC 00 7C 00 00
            .stosd() // AB
            .stosw() // 66 AB
            .inc32(Reg::Si) // 46
            .movzx32_8(Reg::A, Reg::A) // 0F B6 C0
            .and32_imm(Reg::D, 0xFF) // 81 E2 FF 00 00 00
            .mov32_load_abs(Reg::Di, 0x628); // 8B 3D 28 06 00 00
        assert_eq!(
            a.finish().unwrap(),
            [
                0x66, 0xB8, 0x10, 0x00, 0xBC, 0x00, 0x7C, 0x00, 0x00, 0xAB, 0x66, 0xAB, 0x46, 0x0F,
                0xB6, 0xC0, 0x81, 0xE2, 0xFF, 0x00, 0x00, 0x00, 0x8B, 0x3D, 0x28, 0x06, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn labels_resolve_backwards_forwards_and_absolute() {
        let mut a = Asm::new(0x7E00);
        let top = a.label();
        let end = a.label();
        a.bind(top).unwrap();
        a.loop_(top) // E2 FE
            .jcc(Cond::Ne, end) // 75 08
            .jmp_near(top) // E9 F9 FF
            .lgdt16(end); // at 7E07: 0F 01 16 0C 7E (end = 7E0C)
        a.bind(end).unwrap();
        a.jmp_far16(0x08, end); // EA 0C 7E 08 00
        assert_eq!(
            a.finish().unwrap(),
            [
                0xE2, 0xFE, 0x75, 0x08, 0xE9, 0xF9, 0xFF, 0x0F, 0x01, 0x16, 0x0C, 0x7E, 0xEA, 0x0C,
                0x7E, 0x08, 0x00
            ]
        );
    }

    #[test]
    fn label_errors_are_reported() {
        let mut a = Asm::new(0);
        let l = a.label();
        a.jmp_short(l);
        assert_eq!(a.clone().finish(), Err(BootImgError::UnboundLabel(0)));
        a.db(&[0x90; 200]);
        a.bind(l).unwrap();
        assert!(matches!(a.bind(l), Err(BootImgError::LabelTwice(0))));
        assert_eq!(
            a.finish(),
            Err(BootImgError::JumpOutOfRange {
                at: 1,
                distance: 200
            })
        );
        let mut b = Asm::new(0xFFF0);
        let far = b.label();
        b.dw_addr(far).db(&[0; 20]);
        b.bind(far).unwrap();
        assert!(matches!(
            b.finish(),
            Err(BootImgError::AddressTooLarge { addr: 0x10006, .. })
        ));
    }

    #[test]
    fn floppy_layout() {
        let program = VideoTest::Vbe1024x768x32.program().unwrap();
        let img = floppy(&program).unwrap();
        assert_eq!(img.len(), FLOPPY_SIZE);
        assert_eq!(&img[510..512], &[0x55, 0xAA]);
        assert_eq!(&img[SECTOR..SECTOR + program.len()], &program[..]);
        // The loader reads exactly the program's sectors (B8 nn 02) and jumps to 0x7E00.
        let sectors = program.len().div_ceil(SECTOR) as u8;
        let boot = &img[..SECTOR];
        let read = boot.windows(3).position(|w| w == [0xB8, sectors, 0x02]);
        assert!(read.is_some(), "no INT 13h read of {sectors} sectors");
        let jmp = boot.iter().position(|&b| b == 0xE9).unwrap();
        let rel = i16::from_le_bytes([boot[jmp + 1], boot[jmp + 2]]);
        assert_eq!(
            BOOT_ORIGIN as i64 + jmp as i64 + 3 + i64::from(rel),
            PROGRAM_ORIGIN as i64
        );
        assert_eq!(
            floppy(&vec![0x90; 17 * SECTOR + 1]),
            Err(BootImgError::ProgramTooLarge(17 * SECTOR + 1))
        );
    }

    #[test]
    fn every_video_program_assembles_and_ends_with_done() {
        let mut done = Asm::new(0);
        done.done();
        let done = done.finish().unwrap();
        for t in VideoTest::ALL {
            let code = t.program().unwrap();
            let found = code.windows(done.len()).any(|w| w == done.as_slice());
            assert!(found, "{} never writes the done byte", t.name());
            assert!(code.len() <= 17 * SECTOR, "{}", t.name());
        }
    }

    #[test]
    fn sha256_test_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256_hex(&million),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn ppm_parsing() {
        let mut data = b"P6\n2 1\n255\n".to_vec();
        data.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let p = Ppm::parse(&data).unwrap();
        assert_eq!((p.width, p.height), (2, 1));
        assert_eq!(p.pixel(1, 0), Some([4, 5, 6]));
        assert_eq!(p.pixel(2, 0), None);
        assert!(Ppm::parse(&data[..data.len() - 1]).is_err());
        assert!(Ppm::parse(b"P5\n1 1\n255\n\0").is_err());
        assert!(Ppm::parse(b"P6\n1").is_err());
        assert!(Ppm::parse(b"P6\n99999999999 99999999999\n255\n").is_err());
    }
}
