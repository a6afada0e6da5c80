//! Segmentation: descriptor fetch, segment register loads with their privilege checks, far
//! JMP/CALL/RET, IRET, call gates, and delivery of interrupts and exceptions (real mode
//! through the IVT, protected mode through the IDT with a TSS stack switch).

use crate::flags::{AC, IF, IOPL, NT, RF, TF, VIF, VIP, VM};
use crate::{fault, gp, sreg, vec, Bus, Cpu, Fault, Res, Seg};

/// A raw 8-byte descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc {
    pub lo: u32,
    pub hi: u32,
}

impl Desc {
    pub(crate) fn base(&self) -> u32 {
        (self.lo >> 16) | ((self.hi & 0xFF) << 16) | (self.hi & 0xFF00_0000)
    }
    pub(crate) fn limit(&self) -> u32 {
        let l = (self.lo & 0xFFFF) | (self.hi & 0xF_0000);
        if self.hi & 0x80_0000 != 0 {
            (l << 12) | 0xFFF
        } else {
            l
        }
    }
    pub(crate) fn attr(&self) -> u16 {
        ((self.hi >> 8) & 0xF0FF) as u16
    }
    pub(crate) fn present(&self) -> bool {
        self.hi & 0x8000 != 0
    }
    pub(crate) fn dpl(&self) -> u8 {
        ((self.hi >> 13) & 3) as u8
    }
    /// S bit: code or data (not system).
    pub(crate) fn is_cd(&self) -> bool {
        self.hi & 0x1000 != 0
    }
    pub(crate) fn typ(&self) -> u32 {
        (self.hi >> 8) & 0xF
    }
    pub(crate) fn is_code(&self) -> bool {
        self.is_cd() && self.typ() & 8 != 0
    }
    pub(crate) fn conforming(&self) -> bool {
        self.is_code() && self.typ() & 4 != 0
    }
    pub(crate) fn readable(&self) -> bool {
        self.is_cd() && (self.typ() & 8 == 0 || self.typ() & 2 != 0)
    }
    pub(crate) fn writable_data(&self) -> bool {
        self.is_cd() && self.typ() & 0xA == 2
    }
    pub(crate) fn seg(&self, sel: u16) -> Seg {
        Seg::from_cache(sel, self.base(), self.limit(), self.attr())
    }
}

/// Classification of an exception for double-fault decisions.
fn class(v: u8) -> u8 {
    match v {
        0 | 10..=13 => 1, // contributory
        14 => 2,          // page fault
        _ => 0,           // benign
    }
}

/// Whether a fault while delivering `first` turns into a double fault.
pub(crate) fn is_double(first: u8, second: u8) -> bool {
    let (a, b) = (class(first), class(second));
    (a == 1 && b == 1) || (a == 2 && b != 0)
}

impl Cpu {
    /// Linear address of the descriptor for `sel`, or None when it is outside its table.
    pub(crate) fn desc_addr(&self, sel: u16) -> Option<u32> {
        let (base, limit) = if sel & 4 != 0 {
            if self.ldtr.sel & 0xFFFC == 0 || !self.ldtr_present() {
                return None;
            }
            (self.ldtr.base, self.ldtr.limit)
        } else {
            (self.gdtr.base, self.gdtr.limit)
        };
        let off = (sel & 0xFFF8) as u32;
        if off + 7 > limit {
            return None;
        }
        Some(base.wrapping_add(off))
    }

    fn ldtr_present(&self) -> bool {
        self.ldtr.attr & 0x80 != 0
    }

    /// Reads the descriptor of `sel`; `None` when outside the table.
    pub(crate) fn read_desc<B: Bus>(&mut self, bus: &mut B, sel: u16) -> Res<Option<Desc>> {
        let Some(a) = self.desc_addr(sel) else {
            return Ok(None);
        };
        let lo = self.rd_sys(bus, a, 4)?;
        let hi = self.rd_sys(bus, a.wrapping_add(4), 4)?;
        Ok(Some(Desc { lo, hi }))
    }

    /// Reads a descriptor or raises #GP(sel).
    pub(crate) fn fetch_desc<B: Bus>(&mut self, bus: &mut B, sel: u16, vector: u8) -> Res<Desc> {
        match self.read_desc(bus, sel)? {
            Some(d) => Ok(d),
            None => fault(vector, Some((sel & 0xFFFC) as u32)),
        }
    }

    /// Sets the accessed bit of a code/data descriptor in memory.
    fn set_accessed<B: Bus>(&mut self, bus: &mut B, sel: u16, d: &Desc) -> Res<()> {
        if d.is_cd() && d.hi & 0x100 == 0 {
            if let Some(a) = self.desc_addr(sel) {
                self.wr_sys(bus, a.wrapping_add(5), 1, (d.hi >> 8) | 1)?;
            }
        }
        Ok(())
    }

    /// Loads a data segment register or SS (MOV, POP, LDS...) with the checks of the mode.
    pub(crate) fn load_seg<B: Bus>(&mut self, bus: &mut B, s: usize, sel: u16) -> Res<()> {
        if !self.pe() {
            let sg = &mut self.segs[s];
            sg.sel = sel;
            sg.base = (sel as u32) << 4;
            return Ok(());
        }
        if self.v86() {
            self.segs[s] = Seg::from_cache(sel, (sel as u32) << 4, 0xFFFF, 0xF3);
            return Ok(());
        }
        let rpl = (sel & 3) as u8;
        if s == sreg::SS {
            if sel & 0xFFFC == 0 {
                return gp(0);
            }
            let d = self.fetch_desc(bus, sel, vec::GP)?;
            if rpl != self.cpl || !d.writable_data() || d.dpl() != self.cpl {
                return gp((sel & 0xFFFC) as u32);
            }
            if !d.present() {
                return fault(vec::SS, Some((sel & 0xFFFC) as u32));
            }
            self.set_accessed(bus, sel, &d)?;
            self.segs[s] = d.seg(sel);
            return Ok(());
        }
        if sel & 0xFFFC == 0 {
            self.segs[s] = Seg {
                sel,
                ..Seg::default()
            };
            return Ok(());
        }
        let d = self.fetch_desc(bus, sel, vec::GP)?;
        if !d.readable() {
            return gp((sel & 0xFFFC) as u32);
        }
        if !d.conforming() && (rpl > d.dpl() || self.cpl > d.dpl()) {
            return gp((sel & 0xFFFC) as u32);
        }
        if !d.present() {
            return fault(vec::NP, Some((sel & 0xFFFC) as u32));
        }
        self.set_accessed(bus, sel, &d)?;
        self.segs[s] = d.seg(sel);
        Ok(())
    }

    /// Installs a code segment and the CPL.
    pub(crate) fn set_cs(&mut self, d: &Desc, sel: u16, cpl: u8) {
        self.segs[sreg::CS] = d.seg((sel & 0xFFFC) | cpl as u16);
        self.set_cpl(cpl);
    }

    /// Pushes `v` (size 2 or 4) at a local stack pointer, respecting SS.B.
    pub(crate) fn push_at<B: Bus>(&mut self, bus: &mut B, sp: &mut u32, v: u32, n: u32) -> Res<()> {
        let nsp = if self.segs[sreg::SS].big {
            sp.wrapping_sub(n)
        } else {
            (*sp & 0xFFFF_0000) | (sp.wrapping_sub(n) & 0xFFFF)
        };
        let off = if self.segs[sreg::SS].big {
            nsp
        } else {
            nsp & 0xFFFF
        };
        self.wr(bus, sreg::SS, off, n, v)?;
        *sp = nsp;
        Ok(())
    }

    /// Pops a value of size `n` at a local stack pointer.
    pub(crate) fn pop_at<B: Bus>(&mut self, bus: &mut B, sp: &mut u32, n: u32) -> Res<u32> {
        let big = self.segs[sreg::SS].big;
        let off = if big { *sp } else { *sp & 0xFFFF };
        let v = self.rd(bus, sreg::SS, off, n)?;
        *sp = if big {
            sp.wrapping_add(n)
        } else {
            (*sp & 0xFFFF_0000) | (sp.wrapping_add(n) & 0xFFFF)
        };
        Ok(v)
    }

    /// Reads the stack for privilege level `dpl` from the current TSS.
    fn tss_stack<B: Bus>(&mut self, bus: &mut B, dpl: u8, ext: u32) -> Res<(u16, u32)> {
        let t = self.tr.attr & 0xF;
        let tss_fault = Fault::new(vec::TS, Some((self.tr.sel & 0xFFFC) as u32 | ext));
        if t == 9 || t == 0xB {
            let off = 4 + dpl as u32 * 8;
            if off + 5 > self.tr.limit {
                return Err(tss_fault);
            }
            let esp = self.rd_sys(bus, self.tr.base.wrapping_add(off), 4)?;
            let ss = self.rd_sys(bus, self.tr.base.wrapping_add(off + 4), 2)? as u16;
            Ok((ss, esp))
        } else if t == 1 || t == 3 {
            let off = 2 + dpl as u32 * 4;
            if off + 3 > self.tr.limit {
                return Err(tss_fault);
            }
            let sp = self.rd_sys(bus, self.tr.base.wrapping_add(off), 2)?;
            let ss = self.rd_sys(bus, self.tr.base.wrapping_add(off + 2), 2)? as u16;
            Ok((ss, sp))
        } else {
            Err(tss_fault)
        }
    }

    /// Validates a stack segment for privilege `dpl` (from a TSS or a return frame).
    fn check_stack_seg<B: Bus>(
        &mut self,
        bus: &mut B,
        sel: u16,
        dpl: u8,
        v: u8,
        ext: u32,
    ) -> Res<Desc> {
        let code = (sel & 0xFFFC) as u32 | ext;
        if sel & 0xFFFC == 0 {
            return fault(v, Some(ext));
        }
        let d = match self.read_desc(bus, sel)? {
            Some(d) => d,
            None => return fault(v, Some(code)),
        };
        if (sel & 3) as u8 != dpl || !d.writable_data() || d.dpl() != dpl {
            return fault(v, Some(code));
        }
        if !d.present() {
            return fault(vec::SS, Some(code));
        }
        self.set_accessed(bus, sel, &d)?;
        Ok(d)
    }

    /// After a return to an outer privilege level: data segments the new CPL may not use
    /// become null.
    fn null_inaccessible_segs(&mut self) {
        for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let sg = &self.segs[s];
            let code = sg.attr & 0x18 == 0x18;
            let conforming = code && sg.attr & 4 != 0;
            if sg.attr & 0x10 != 0 && !conforming && sg.dpl() < self.cpl {
                self.segs[s] = Seg {
                    sel: 0,
                    ..Seg::default()
                };
            }
        }
    }

    /// Far JMP or CALL to `sel:off`. `op32` is the operand size of the instruction; for CALL
    /// the return address is the current EIP.
    pub(crate) fn far_transfer<B: Bus>(
        &mut self,
        bus: &mut B,
        sel: u16,
        off: u32,
        op32: bool,
        call: bool,
    ) -> Res<()> {
        let n = if op32 { 4 } else { 2 };
        if !self.pm() {
            let off = if op32 { off } else { off & 0xFFFF };
            if off > self.segs[sreg::CS].limit {
                return gp(0);
            }
            if call {
                let mut sp = self.regs[4];
                let cs = self.segs[sreg::CS].sel as u32;
                self.push_at(bus, &mut sp, cs, n)?;
                self.push_at(bus, &mut sp, self.eip, n)?;
                self.regs[4] = sp;
            }
            self.set_cs_real(sel);
            self.eip = off;
            return Ok(());
        }
        if sel & 0xFFFC == 0 {
            return gp(0);
        }
        let selc = (sel & 0xFFFC) as u32;
        let d = self.fetch_desc(bus, sel, vec::GP)?;
        let rpl = (sel & 3) as u8;
        if d.is_cd() {
            if !d.is_code() {
                return gp(selc);
            }
            if d.conforming() {
                if d.dpl() > self.cpl {
                    return gp(selc);
                }
            } else if rpl > self.cpl || d.dpl() != self.cpl {
                return gp(selc);
            }
            if !d.present() {
                return fault(vec::NP, Some(selc));
            }
            let off = if op32 { off } else { off & 0xFFFF };
            if off > d.limit() {
                return gp(0);
            }
            if call {
                let mut sp = self.regs[4];
                let cs = self.segs[sreg::CS].sel as u32;
                self.push_at(bus, &mut sp, cs, n)?;
                self.push_at(bus, &mut sp, self.eip, n)?;
                self.regs[4] = sp;
            }
            self.set_accessed(bus, sel, &d)?;
            let cpl = self.cpl;
            self.set_cs(&d, sel, cpl);
            self.eip = off;
            return Ok(());
        }
        match d.typ() {
            4 | 0xC => self.call_gate(bus, sel, &d, call),
            1 | 9 | 5 => self.task_switch_far(bus, sel, &d, call),
            _ => gp(selc),
        }
    }

    fn call_gate<B: Bus>(&mut self, bus: &mut B, sel: u16, g: &Desc, call: bool) -> Res<()> {
        let selc = (sel & 0xFFFC) as u32;
        let rpl = (sel & 3) as u8;
        if g.dpl() < self.cpl || g.dpl() < rpl {
            return gp(selc);
        }
        if !g.present() {
            return fault(vec::NP, Some(selc));
        }
        let gate32 = g.typ() == 0xC;
        let tsel = (g.lo >> 16) as u16;
        let toff = if gate32 {
            (g.lo & 0xFFFF) | (g.hi & 0xFFFF_0000)
        } else {
            g.lo & 0xFFFF
        };
        let params = g.hi & 0x1F;
        if tsel & 0xFFFC == 0 {
            return gp(0);
        }
        let tselc = (tsel & 0xFFFC) as u32;
        let d = self.fetch_desc(bus, tsel, vec::GP)?;
        if !d.is_code() || d.dpl() > self.cpl {
            return gp(tselc);
        }
        if !call && !d.conforming() && d.dpl() != self.cpl {
            return gp(tselc);
        }
        if !d.present() {
            return fault(vec::NP, Some(tselc));
        }
        if toff > d.limit() {
            return gp(0);
        }
        let n = if gate32 { 4 } else { 2 };
        if call && !d.conforming() && d.dpl() < self.cpl {
            // Inter-privilege call: switch to the inner stack and copy the parameters.
            let dpl = d.dpl();
            let (nss, nesp) = self.tss_stack(bus, dpl, 0)?;
            let sd = self.check_stack_seg(bus, nss, dpl, vec::TS, 0)?;
            let old_ss = self.segs[sreg::SS];
            let old_esp = self.regs[4];
            let old_cs = self.segs[sreg::CS];
            let old_cpl = self.cpl;
            let old_eip = self.eip;
            let mut args = [0u32; 32];
            let mut sp = old_esp;
            for a in args.iter_mut().take(params as usize) {
                *a = self.pop_at(bus, &mut sp, n)?;
            }
            self.segs[sreg::SS] = sd.seg(nss);
            self.set_cpl(dpl);
            let mut nsp = nesp;
            let r = (|| -> Res<()> {
                self.push_at(bus, &mut nsp, old_ss.sel as u32, n)?;
                self.push_at(bus, &mut nsp, old_esp, n)?;
                for i in (0..params as usize).rev() {
                    self.push_at(bus, &mut nsp, args[i], n)?;
                }
                self.push_at(bus, &mut nsp, old_cs.sel as u32, n)?;
                self.push_at(bus, &mut nsp, old_eip, n)?;
                Ok(())
            })();
            if let Err(e) = r {
                self.segs[sreg::SS] = old_ss;
                self.set_cpl(old_cpl);
                return Err(e);
            }
            self.regs[4] = nsp;
            self.set_cs(&d, tsel, dpl);
            self.eip = toff;
            return Ok(());
        }
        if call {
            let mut sp = self.regs[4];
            let cs = self.segs[sreg::CS].sel as u32;
            self.push_at(bus, &mut sp, cs, n)?;
            self.push_at(bus, &mut sp, self.eip, n)?;
            self.regs[4] = sp;
        }
        let cpl = self.cpl;
        self.set_cs(&d, tsel, cpl);
        self.eip = toff;
        Ok(())
    }

    /// Far RET (RETF imm16).
    pub(crate) fn far_ret<B: Bus>(&mut self, bus: &mut B, op32: bool, imm: u16) -> Res<()> {
        let n = if op32 { 4 } else { 2 };
        let mut sp = self.regs[4];
        let eip = self.pop_at(bus, &mut sp, n)?;
        let sel = self.pop_at(bus, &mut sp, n)? as u16;
        if !self.pm() {
            if eip > self.segs[sreg::CS].limit {
                return gp(0);
            }
            self.add_sp(&mut sp, imm as u32);
            self.regs[4] = sp;
            self.set_cs_real(sel);
            self.eip = eip;
            return Ok(());
        }
        let d = self.check_return_cs(bus, sel)?;
        let rpl = (sel & 3) as u8;
        if eip > d.limit() {
            return gp(0);
        }
        if rpl == self.cpl {
            self.add_sp(&mut sp, imm as u32);
            self.regs[4] = sp;
            self.set_cs(&d, sel, rpl);
            self.eip = eip;
            return Ok(());
        }
        self.add_sp(&mut sp, imm as u32);
        let nesp = self.pop_at(bus, &mut sp, n)?;
        let nss = self.pop_at(bus, &mut sp, n)? as u16;
        let sd = self.check_stack_seg(bus, nss, rpl, vec::GP, 0)?;
        self.set_cs(&d, sel, rpl);
        self.segs[sreg::SS] = sd.seg(nss);
        let nesp = nesp.wrapping_add(imm as u32);
        self.set_sp_val(nesp);
        self.eip = eip;
        self.null_inaccessible_segs();
        Ok(())
    }

    fn add_sp(&self, sp: &mut u32, k: u32) {
        *sp = if self.segs[sreg::SS].big {
            sp.wrapping_add(k)
        } else {
            (*sp & 0xFFFF_0000) | (sp.wrapping_add(k) & 0xFFFF)
        };
    }

    /// Sets ESP (or SP for a 16-bit stack) after a stack switch.
    fn set_sp_val(&mut self, v: u32) {
        if self.segs[sreg::SS].big {
            self.regs[4] = v;
        } else {
            self.regs[4] = (self.regs[4] & 0xFFFF_0000) | (v & 0xFFFF);
        }
    }

    fn set_cs_real(&mut self, sel: u16) {
        if self.v86() {
            self.segs[sreg::CS] = Seg::from_cache(sel, (sel as u32) << 4, 0xFFFF, 0xF3);
        } else {
            let cs = &mut self.segs[sreg::CS];
            cs.sel = sel;
            cs.base = (sel as u32) << 4;
        }
    }

    /// Checks the CS selector of a RET/IRET frame.
    fn check_return_cs<B: Bus>(&mut self, bus: &mut B, sel: u16) -> Res<Desc> {
        if sel & 0xFFFC == 0 {
            return gp(0);
        }
        let selc = (sel & 0xFFFC) as u32;
        let d = self.fetch_desc(bus, sel, vec::GP)?;
        let rpl = (sel & 3) as u8;
        if !d.is_code() || rpl < self.cpl {
            return gp(selc);
        }
        if d.conforming() {
            if d.dpl() > rpl {
                return gp(selc);
            }
        } else if d.dpl() != rpl {
            return gp(selc);
        }
        if !d.present() {
            return fault(vec::NP, Some(selc));
        }
        self.set_accessed(bus, sel, &d)?;
        Ok(d)
    }

    /// IRET / IRETD.
    pub(crate) fn iret<B: Bus>(&mut self, bus: &mut B, op32: bool) -> Res<()> {
        let n = if op32 { 4 } else { 2 };
        if self.v86() {
            // IOPL < 3: only the VME form (16-bit) is allowed.
            let vme = self.eflags & IOPL != IOPL;
            if vme && (self.cr4 & crate::mmu::CR4_VME == 0 || op32) {
                return gp(0);
            }
            let mut sp = self.regs[4];
            let eip = self.pop_at(bus, &mut sp, n)?;
            let sel = self.pop_at(bus, &mut sp, n)? as u16;
            let fl = self.pop_at(bus, &mut sp, n)?;
            if vme {
                self.vme_flags16(fl)?;
            }
            self.regs[4] = sp;
            self.set_cs_real(sel);
            self.eip = eip;
            if vme {
                self.nmi_blocked = false;
                return Ok(());
            }
            let keep = IOPL | VM | VIF | VIP | if op32 { 0 } else { 0xFFFF_0000 };
            let cur = self.get_eflags();
            self.put_eflags((fl & !keep & crate::flags::WRITABLE) | (cur & keep));
            self.nmi_blocked = false;
            return Ok(());
        }
        if !self.pe() {
            let mut sp = self.regs[4];
            let eip = self.pop_at(bus, &mut sp, n)?;
            let sel = self.pop_at(bus, &mut sp, n)? as u16;
            let fl = self.pop_at(bus, &mut sp, n)?;
            if eip > self.segs[sreg::CS].limit {
                return gp(0);
            }
            self.regs[4] = sp;
            self.set_cs_real(sel);
            self.eip = eip;
            let cur = self.get_eflags();
            let nf = if op32 {
                (fl & crate::flags::WRITABLE & !(VM | VIF | VIP)) | (cur & (VM | VIF | VIP))
            } else {
                (cur & 0xFFFF_0000) | (fl & 0xFFFF & crate::flags::WRITABLE)
            };
            self.put_eflags(nf);
            self.nmi_blocked = false;
            return Ok(());
        }
        if self.eflags & NT != 0 {
            return self.task_return(bus);
        }
        let mut sp = self.regs[4];
        let eip = self.pop_at(bus, &mut sp, n)?;
        let sel = self.pop_at(bus, &mut sp, n)? as u16;
        let fl = self.pop_at(bus, &mut sp, n)?;
        if op32 && fl & VM != 0 && self.cpl == 0 {
            return self.iret_to_v86(bus, sp, eip, sel, fl);
        }
        let d = self.check_return_cs(bus, sel)?;
        let rpl = (sel & 3) as u8;
        if eip > d.limit() {
            return gp(0);
        }
        let old_cpl = self.cpl;
        if rpl > self.cpl {
            let nesp = self.pop_at(bus, &mut sp, n)?;
            let nss = self.pop_at(bus, &mut sp, n)? as u16;
            let sd = self.check_stack_seg(bus, nss, rpl, vec::GP, 0)?;
            self.set_cs(&d, sel, rpl);
            self.segs[sreg::SS] = sd.seg(nss);
            self.set_sp_val(nesp);
        } else {
            self.regs[4] = sp;
            self.set_cs(&d, sel, rpl);
        }
        self.eip = eip;
        self.iret_flags(fl, op32, old_cpl);
        self.rf_keep = true;
        if rpl > old_cpl {
            self.null_inaccessible_segs();
        }
        self.nmi_blocked = false;
        Ok(())
    }

    /// EFLAGS update of a protected-mode IRET executed at `cpl`.
    fn iret_flags(&mut self, fl: u32, op32: bool, cpl: u8) {
        let cur = self.get_eflags();
        let mut mask = crate::flags::WRITABLE & !VM;
        if cpl > 0 {
            // VIF and VIP are loaded only at CPL 0 (with IOPL).
            mask &= !(IOPL | VIF | VIP);
        }
        if cpl > ((cur & IOPL) >> 12) as u8 {
            mask &= !IF;
        }
        if !op32 {
            mask &= 0xFFFF;
        }
        self.put_eflags((cur & !mask) | (fl & mask));
    }

    fn iret_to_v86<B: Bus>(
        &mut self,
        bus: &mut B,
        mut sp: u32,
        eip: u32,
        cs: u16,
        fl: u32,
    ) -> Res<()> {
        let nesp = self.pop_at(bus, &mut sp, 4)?;
        let nss = self.pop_at(bus, &mut sp, 4)? as u16;
        let es = self.pop_at(bus, &mut sp, 4)? as u16;
        let ds = self.pop_at(bus, &mut sp, 4)? as u16;
        let fs = self.pop_at(bus, &mut sp, 4)? as u16;
        let gs = self.pop_at(bus, &mut sp, 4)? as u16;
        self.put_eflags((fl & crate::flags::WRITABLE) | VM);
        for (s, sel) in [
            (sreg::CS, cs),
            (sreg::SS, nss),
            (sreg::ES, es),
            (sreg::DS, ds),
            (sreg::FS, fs),
            (sreg::GS, gs),
        ] {
            self.segs[s] = Seg::from_cache(sel, (sel as u32) << 4, 0xFFFF, 0xF3);
        }
        self.set_cpl(3);
        self.regs[4] = nesp;
        self.eip = eip & 0xFFFF;
        self.nmi_blocked = false;
        Ok(())
    }

    /// Delivers interrupt or exception `vector`. EIP must already hold the return address
    /// (the faulting instruction for faults, the next one for traps and INT n). `soft` marks
    /// INT n/INT3/INTO (gate DPL checked), `ext` an external event (error codes get EXT).
    pub(crate) fn deliver<B: Bus>(
        &mut self,
        bus: &mut B,
        vector: u8,
        code: Option<u32>,
        soft: bool,
        ext: bool,
    ) -> Res<()> {
        self.no_ac = true;
        let r = self.deliver_event(bus, vector, code, soft, ext);
        self.no_ac = false;
        r
    }

    fn deliver_event<B: Bus>(
        &mut self,
        bus: &mut B,
        vector: u8,
        code: Option<u32>,
        soft: bool,
        ext: bool,
    ) -> Res<()> {
        self.halted = false;
        if !self.pe() {
            return self.deliver_real(bus, vector);
        }
        if self.v86() && soft && self.eflags & IOPL != IOPL {
            return gp(0);
        }
        let e = ext as u32;
        let idx = vector as u32 * 8;
        if idx + 7 > self.idtr.limit {
            return gp(idx + 2 + e);
        }
        let lo = self.rd_sys(bus, self.idtr.base.wrapping_add(idx), 4)?;
        let hi = self.rd_sys(bus, self.idtr.base.wrapping_add(idx + 4), 4)?;
        let g = Desc { lo, hi };
        let typ = (hi >> 8) & 0x1F;
        if !matches!(typ, 5 | 6 | 7 | 0xE | 0xF) {
            return gp(idx + 2 + e);
        }
        if soft && g.dpl() < self.cpl {
            return gp(idx + 2);
        }
        if !g.present() {
            return fault(vec::NP, Some(idx + 2 + e));
        }
        if typ == 5 {
            return self.task_gate_int(bus, &g, code);
        }
        let gate32 = typ & 8 != 0;
        let trap = typ & 1 != 0;
        let sel = (lo >> 16) as u16;
        let off = if gate32 {
            (lo & 0xFFFF) | (hi & 0xFFFF_0000)
        } else {
            lo & 0xFFFF
        };
        if sel & 0xFFFC == 0 {
            return gp(e);
        }
        let selc = (sel & 0xFFFC) as u32 | e;
        let d = match self.read_desc(bus, sel)? {
            Some(d) => d,
            None => return gp(selc),
        };
        if !d.is_code() || d.dpl() > self.cpl {
            return gp(selc);
        }
        if !d.present() {
            return fault(vec::NP, Some(selc));
        }
        if off > d.limit() {
            return gp(e);
        }
        let n = if gate32 { 4 } else { 2 };
        let fl = self.get_eflags();
        let old_cs = self.segs[sreg::CS];
        let old_ss = self.segs[sreg::SS];
        let old_esp = self.regs[4];
        let old_cpl = self.cpl;
        let old_segs = self.segs;
        let was_v86 = self.v86();
        if !d.conforming() && d.dpl() < self.cpl {
            let dpl = d.dpl();
            if was_v86 && dpl != 0 {
                return gp(selc);
            }
            let (nss, nesp) = self.tss_stack(bus, dpl, e)?;
            let sd = self.check_stack_seg(bus, nss, dpl, vec::TS, e)?;
            self.segs[sreg::SS] = sd.seg(nss);
            self.set_cpl(dpl);
            let mut sp = nesp;
            let r = (|| -> Res<()> {
                if was_v86 {
                    for s in [sreg::GS, sreg::FS, sreg::DS, sreg::ES] {
                        self.push_at(bus, &mut sp, old_segs[s].sel as u32, n)?;
                    }
                }
                self.push_at(bus, &mut sp, old_ss.sel as u32, n)?;
                self.push_at(bus, &mut sp, old_esp, n)?;
                self.push_at(bus, &mut sp, fl, n)?;
                self.push_at(bus, &mut sp, old_cs.sel as u32, n)?;
                self.push_at(bus, &mut sp, self.eip, n)?;
                if let Some(c) = code {
                    self.push_at(bus, &mut sp, c, n)?;
                }
                Ok(())
            })();
            if let Err(f) = r {
                self.segs = old_segs;
                self.set_cpl(old_cpl);
                return Err(f);
            }
            self.set_sp_val(sp);
            if was_v86 {
                for s in [sreg::GS, sreg::FS, sreg::DS, sreg::ES] {
                    self.segs[s] = Seg {
                        sel: 0,
                        ..Seg::default()
                    };
                }
            }
            self.set_cs(&d, sel, dpl);
        } else {
            if was_v86 {
                return gp(selc);
            }
            let mut sp = self.regs[4];
            self.push_at(bus, &mut sp, fl, n)?;
            self.push_at(bus, &mut sp, old_cs.sel as u32, n)?;
            self.push_at(bus, &mut sp, self.eip, n)?;
            if let Some(c) = code {
                self.push_at(bus, &mut sp, c, n)?;
            }
            self.regs[4] = sp;
            let cpl = self.cpl;
            self.set_cs(&d, sel, cpl);
        }
        self.eip = off;
        let mut nf = fl & !(TF | NT | RF | VM);
        if !trap {
            nf &= !IF;
        }
        self.put_eflags(nf);
        Ok(())
    }

    /// VME: INT n in virtual-8086 mode looks up bit `v` of the interrupt redirection bitmap
    /// (the 32 bytes below the TSS's I/O map base). A clear bit redirects the interrupt to
    /// the V86 task's own IVT at linear 0 (FLAGS with IF from VIF and IOPL 3 when IOPL < 3,
    /// CS, IP pushed; TF, RF and IF, or VIF when IOPL < 3, cleared) and returns true; a set
    /// bit returns false (the protected-mode path, #GP(0) when IOPL < 3).
    pub(crate) fn v86_int_redirect<B: Bus>(&mut self, bus: &mut B, v: u8) -> Res<bool> {
        let t = self.tr.attr & 0xF;
        if (t != 9 && t != 0xB) || self.tr.limit < 0x67 {
            return gp(0);
        }
        let iomap = self.rd_sys(bus, self.tr.base.wrapping_add(0x66), 2)?;
        // An I/O map base below 32 puts the bitmap outside the TSS.
        let off = iomap.wrapping_sub(32).wrapping_add(v as u32 >> 3);
        if iomap < 32 || off > self.tr.limit {
            return gp(0);
        }
        let bits = self.rd_sys(bus, self.tr.base.wrapping_add(off), 1)?;
        if bits & (1 << (v & 7)) != 0 {
            return Ok(false);
        }
        let ent = self.rd_sys(bus, v as u32 * 4, 4)?;
        let fl = self.get_eflags();
        let iopl3 = fl & IOPL == IOPL;
        let mut img = fl & 0xFFFF;
        if !iopl3 {
            img = (img & !IF) | IOPL | if fl & VIF != 0 { IF } else { 0 };
        }
        let mut sp = self.regs[4];
        let cs = self.segs[sreg::CS].sel as u32;
        self.push_at(bus, &mut sp, img, 2)?;
        self.push_at(bus, &mut sp, cs, 2)?;
        self.push_at(bus, &mut sp, self.eip & 0xFFFF, 2)?;
        self.regs[4] = sp;
        self.set_cs_real((ent >> 16) as u16);
        self.eip = ent & 0xFFFF;
        let clear = TF | RF | if iopl3 { IF } else { VIF };
        self.put_eflags(fl & !clear);
        Ok(true)
    }

    fn deliver_real<B: Bus>(&mut self, bus: &mut B, vector: u8) -> Res<()> {
        let idx = vector as u32 * 4;
        if idx + 3 > self.idtr.limit {
            return gp(0);
        }
        let ent = self.rd_lin(bus, self.idtr.base.wrapping_add(idx), 4)?;
        let fl = self.get_eflags();
        let mut sp = self.regs[4];
        let cs = self.segs[sreg::CS].sel as u32;
        self.push_at(bus, &mut sp, fl & 0xFFFF, 2)?;
        self.push_at(bus, &mut sp, cs, 2)?;
        self.push_at(bus, &mut sp, self.eip & 0xFFFF, 2)?;
        self.regs[4] = sp;
        self.set_cs_real((ent >> 16) as u16);
        self.eip = ent & 0xFFFF;
        self.put_eflags(fl & !(IF | TF | AC | RF));
        Ok(())
    }

    // ---- task switching ----

    fn task_switch_far<B: Bus>(&mut self, bus: &mut B, sel: u16, d: &Desc, call: bool) -> Res<()> {
        let selc = (sel & 0xFFFC) as u32;
        if d.dpl() < self.cpl || d.dpl() < (sel & 3) as u8 {
            return gp(selc);
        }
        if !d.present() {
            return fault(vec::NP, Some(selc));
        }
        let (tsel, td) = if d.typ() == 5 {
            let tsel = (d.lo >> 16) as u16;
            if tsel & 4 != 0 {
                return gp((tsel & 0xFFFC) as u32);
            }
            let td = self.fetch_desc(bus, tsel, vec::GP)?;
            (tsel, td)
        } else {
            (sel, *d)
        };
        let kind = if call { Switch::Call } else { Switch::Jmp };
        self.task_switch(bus, tsel, &td, kind, None)
    }

    fn task_gate_int<B: Bus>(&mut self, bus: &mut B, g: &Desc, code: Option<u32>) -> Res<()> {
        let tsel = (g.lo >> 16) as u16;
        if tsel & 4 != 0 {
            return gp((tsel & 0xFFFC) as u32);
        }
        let td = self.fetch_desc(bus, tsel, vec::GP)?;
        self.task_switch(bus, tsel, &td, Switch::Call, code)
    }

    fn task_return<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let back = self.rd_sys(bus, self.tr.base, 2)? as u16;
        if back & 4 != 0 {
            return fault(vec::TS, Some((back & 0xFFFC) as u32));
        }
        let td = match self.read_desc(bus, back)? {
            Some(d) => d,
            None => return fault(vec::TS, Some((back & 0xFFFC) as u32)),
        };
        if td.is_cd() || (td.typ() != 0xB && td.typ() != 3) {
            return fault(vec::TS, Some((back & 0xFFFC) as u32));
        }
        self.task_switch(bus, back, &td, Switch::Iret, None)
    }

    /// Switches to the task of TSS selector `tsel` (286 or 386 TSS).
    fn task_switch<B: Bus>(
        &mut self,
        bus: &mut B,
        tsel: u16,
        td: &Desc,
        kind: Switch,
        code: Option<u32>,
    ) -> Res<()> {
        let tselc = (tsel & 0xFFFC) as u32;
        let t = td.typ();
        let busy_ok = kind == Switch::Iret;
        let valid = if busy_ok {
            t == 3 || t == 0xB
        } else {
            t == 1 || t == 9
        };
        if td.is_cd() || !valid {
            return gp(tselc);
        }
        if !td.present() {
            return fault(vec::NP, Some(tselc));
        }
        let new32 = t & 8 != 0;
        let min = if new32 { 0x67 } else { 0x2B };
        if td.limit() < min {
            return fault(vec::TS, Some(tselc));
        }
        let nb = td.base();
        // Read the new task's state first.
        let r = |c: &mut Cpu, bus: &mut B, off: u32, n: u32| c.rd_sys(bus, nb.wrapping_add(off), n);
        let (neip, nfl, nregs, nsegs, nldt, ncr3);
        let mut regs = [0u32; 8];
        let mut sels = [0u16; 6];
        if new32 {
            ncr3 = Some(r(self, bus, 0x1C, 4)?);
            neip = r(self, bus, 0x20, 4)?;
            nfl = r(self, bus, 0x24, 4)?;
            for (i, v) in regs.iter_mut().enumerate() {
                *v = r(self, bus, 0x28 + 4 * i as u32, 4)?;
            }
            for (i, v) in sels.iter_mut().enumerate() {
                *v = r(self, bus, 0x48 + 4 * i as u32, 2)? as u16;
            }
            nldt = r(self, bus, 0x60, 2)? as u16;
        } else {
            ncr3 = None;
            neip = r(self, bus, 0x0E, 2)?;
            nfl = r(self, bus, 0x10, 2)?;
            for (i, v) in regs.iter_mut().enumerate() {
                *v = 0xFFFF_0000 | r(self, bus, 0x12 + 2 * i as u32, 2)?;
            }
            for (i, v) in sels.iter_mut().take(4).enumerate() {
                *v = r(self, bus, 0x22 + 2 * i as u32, 2)? as u16;
            }
            nldt = r(self, bus, 0x2A, 2)? as u16;
        }
        nregs = regs;
        nsegs = sels;
        // Save the current state into the old TSS.
        let ob = self.tr.base;
        let old32 = self.tr.attr & 8 != 0;
        let mut fl = self.get_eflags();
        if kind == Switch::Iret {
            fl &= !NT;
        }
        if old32 {
            self.wr_sys(bus, ob.wrapping_add(0x20), 4, self.eip)?;
            self.wr_sys(bus, ob.wrapping_add(0x24), 4, fl)?;
            for i in 0..8 {
                self.wr_sys(bus, ob.wrapping_add(0x28 + 4 * i), 4, self.regs[i as usize])?;
            }
            for i in 0..6 {
                self.wr_sys(
                    bus,
                    ob.wrapping_add(0x48 + 4 * i),
                    2,
                    self.segs[i as usize].sel as u32,
                )?;
            }
        } else {
            self.wr_sys(bus, ob.wrapping_add(0x0E), 2, self.eip)?;
            self.wr_sys(bus, ob.wrapping_add(0x10), 2, fl)?;
            for i in 0..8 {
                self.wr_sys(bus, ob.wrapping_add(0x12 + 2 * i), 2, self.regs[i as usize])?;
            }
            for i in 0..4 {
                self.wr_sys(
                    bus,
                    ob.wrapping_add(0x22 + 2 * i),
                    2,
                    self.segs[i as usize].sel as u32,
                )?;
            }
        }
        // Busy bits.
        if kind != Switch::Call {
            if let Some(a) = self.desc_addr(self.tr.sel) {
                let h = self.rd_sys(bus, a.wrapping_add(4), 4)?;
                self.wr_sys(bus, a.wrapping_add(4), 4, h & !0x200)?;
            }
        }
        if kind == Switch::Call {
            self.wr_sys(bus, nb, 2, self.tr.sel as u32)?;
        }
        if kind != Switch::Iret {
            if let Some(a) = self.desc_addr(tsel) {
                self.wr_sys(bus, a.wrapping_add(4), 4, td.hi | 0x200)?;
            }
        }
        // Load the new state.
        let mut nd = *td;
        nd.hi |= 0x200;
        self.tr = nd.seg(tsel);
        self.cr0 |= 8; // TS
        if let Some(c) = ncr3 {
            if self.cr0 & crate::mmu::CR0_PG != 0 && c != self.cr3 {
                self.cr3 = c;
                self.flush_tlb_nonglobal();
            } else {
                self.cr3 = c;
            }
        }
        self.regs = nregs;
        self.eip = neip;
        let mut f = nfl | 2;
        if kind == Switch::Call {
            f |= NT;
        }
        if !new32 {
            f = (f & 0xFFFF) | (self.get_eflags() & 0xFFFF_0000 & !VM);
        }
        self.put_eflags(f & (crate::flags::WRITABLE | 2));
        // LDT.
        if nldt & 0xFFFC == 0 {
            self.ldtr = Seg {
                sel: nldt,
                ..Seg::default()
            };
        } else {
            if nldt & 4 != 0 {
                return fault(vec::TS, Some((nldt & 0xFFFC) as u32));
            }
            let ld = match self.read_desc(bus, nldt)? {
                Some(d) if !d.is_cd() && d.typ() == 2 => d,
                _ => return fault(vec::TS, Some((nldt & 0xFFFC) as u32)),
            };
            if !ld.present() {
                return fault(vec::TS, Some((nldt & 0xFFFC) as u32));
            }
            self.ldtr = ld.seg(nldt);
        }
        if self.v86() {
            for (s, &sel) in nsegs.iter().enumerate() {
                self.segs[s] = Seg::from_cache(sel, (sel as u32) << 4, 0xFFFF, 0xF3);
            }
            self.set_cpl(3);
        } else {
            // Code segment first: it decides the CPL.
            let cs = nsegs[sreg::CS];
            let csd = match self.read_desc(bus, cs)? {
                Some(d) if d.is_code() && cs & 0xFFFC != 0 => d,
                _ => return fault(vec::TS, Some((cs & 0xFFFC) as u32)),
            };
            if !csd.present() {
                return fault(vec::NP, Some((cs & 0xFFFC) as u32));
            }
            let cpl = (cs & 3) as u8;
            self.set_cs(&csd, cs, cpl);
            for s in [sreg::SS, sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
                let sel = nsegs[s];
                if let Err(f) = self.load_seg(bus, s, sel) {
                    return fault(
                        if f.vector == vec::GP {
                            vec::TS
                        } else {
                            f.vector
                        },
                        f.code(),
                    );
                }
            }
        }
        if self.eip > self.segs[sreg::CS].limit {
            return gp(0);
        }
        if let Some(c) = code {
            let n = if new32 { 4 } else { 2 };
            let mut sp = self.regs[4];
            self.push_at(bus, &mut sp, c, n)?;
            self.regs[4] = sp;
        }
        Ok(())
    }
}

/// Why a task switch happens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Switch {
    Jmp,
    Call,
    Iret,
}
