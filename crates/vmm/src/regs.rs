//! Text and JSON renderings of machine state: `info registers`, `info pci`/`query-pci`, and
//! register values for HMP expressions.

use serde_json::{json, Value};
use wasm86_cpu::{Registers, SegmentView};
use wasm86_devices::pci::PciDeviceInfo;

/// `query-pci` device objects, as QEMU 1.1 shapes them.
pub fn pci_json(devs: &[PciDeviceInfo]) -> Value {
    let list: Vec<Value> = devs
        .iter()
        .map(|d| {
            let regions: Vec<Value> = d
                .regions
                .iter()
                .map(|r| {
                    let addr = r.address.map(|a| a as i64).unwrap_or(-1);
                    if r.io {
                        json!({ "bar": r.bar, "type": "io", "address": addr, "size": r.size })
                    } else {
                        json!({
                            "bar": r.bar, "type": "memory", "address": addr, "size": r.size,
                            "prefetch": r.prefetch, "mem_type_64": r.mem_type_64,
                        })
                    }
                })
                .collect();
            let mut class_info = serde_json::Map::new();
            if let Some(desc) = d.class_desc {
                class_info.insert("desc".into(), json!(desc));
            }
            class_info.insert("class".into(), json!(d.class));
            let mut o = serde_json::Map::new();
            o.insert("bus".into(), json!(d.bus));
            o.insert("slot".into(), json!(d.slot));
            o.insert("function".into(), json!(d.function));
            o.insert("class_info".into(), Value::Object(class_info));
            o.insert(
                "id".into(),
                json!({ "device": d.device, "vendor": d.vendor }),
            );
            if let Some(irq) = d.irq {
                o.insert("irq".into(), json!(irq));
            }
            o.insert("qdev_id".into(), json!(""));
            o.insert("regions".into(), Value::Array(regions));
            Value::Object(o)
        })
        .collect();
    json!([{ "bus": 0, "devices": list }])
}

/// `info pci` text.
pub fn format_pci(devs: &[PciDeviceInfo]) -> String {
    let mut out = String::new();
    for d in devs {
        out.push_str(&format!(
            "  Bus {:2}, device {:3}, function {}:\n",
            d.bus, d.slot, d.function
        ));
        match d.class_desc {
            Some(desc) => out.push_str(&format!("    {desc}")),
            None => out.push_str(&format!("    Class {:04x}", d.class)),
        }
        out.push_str(&format!(": PCI device {:04x}:{:04x}\n", d.vendor, d.device));
        if let Some(irq) = d.irq {
            out.push_str(&format!("      IRQ {irq}.\n"));
        }
        for r in &d.regions {
            let addr = r.address.unwrap_or(u64::MAX);
            let end = addr.wrapping_add(r.size).wrapping_sub(1);
            if r.io {
                out.push_str(&format!(
                    "      BAR{}: I/O at 0x{:04x} [0x{:04x}].\n",
                    r.bar, addr, end
                ));
            } else {
                out.push_str(&format!(
                    "      BAR{}: {} bit{} memory at 0x{:08x} [0x{:08x}].\n",
                    r.bar,
                    if r.mem_type_64 { 64 } else { 32 },
                    if r.prefetch { " prefetchable" } else { "" },
                    addr,
                    end
                ));
            }
        }
        out.push_str("      id \"\"\n");
    }
    out
}

/// Value of register `name` (without `$`), for HMP expressions.
pub fn register_value(r: &Registers, name: &str) -> Option<u64> {
    let gpr = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    if let Some(i) = gpr.iter().position(|g| *g == name) {
        return Some(r.gpr[i] as u64);
    }
    let w = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
    if let Some(i) = w.iter().position(|g| *g == name) {
        return Some((r.gpr[i] & 0xFFFF) as u64);
    }
    let seg = ["es", "cs", "ss", "ds", "fs", "gs"];
    if let Some(i) = seg.iter().position(|g| *g == name) {
        return Some(r.segs[i].selector as u64);
    }
    Some(match name {
        "eip" => r.eip as u64,
        "pc" => r.segs[1].base as u64 + r.eip as u64,
        "eflags" => r.eflags as u64,
        "cr0" => r.cr0 as u64,
        "cr2" => r.cr2 as u64,
        "cr3" => r.cr3 as u64,
        "cr4" => r.cr4 as u64,
        _ => return None,
    })
}

fn flag_string(efl: u32) -> String {
    let bits = [
        (11, 'O'),
        (10, 'D'),
        (7, 'S'),
        (6, 'Z'),
        (4, 'A'),
        (2, 'P'),
        (0, 'C'),
    ];
    bits.iter()
        .map(|(b, c)| if efl & (1 << b) != 0 { *c } else { '-' })
        .collect()
}

/// A segment's attributes as QEMU prints them: the high descriptor dword's flag bits.
fn qemu_flags(s: &SegmentView) -> u32 {
    ((s.attr as u32 & 0xFF) << 8) | (((s.attr as u32 >> 12) & 0xF) << 20)
}

/// `info registers` text, in the layout of QEMU's x86 register dump.
pub fn format_registers(r: &Registers, a20: bool, halted: bool) -> String {
    let g = &r.gpr;
    let mut s = format!(
        "EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}\nESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}\n",
        g[0], g[3], g[1], g[2], g[6], g[7], g[5], g[4]
    );
    s.push_str(&format!(
        "EIP={:08x} EFL={:08x} [{}] CPL={} II=0 A20={} SMM=0 HLT={}\n",
        r.eip,
        r.eflags,
        flag_string(r.eflags),
        r.cpl,
        a20 as u8,
        halted as u8
    ));
    for (name, i) in [
        ("ES =", 0),
        ("CS =", 1),
        ("SS =", 2),
        ("DS =", 3),
        ("FS =", 4),
        ("GS =", 5),
    ] {
        let sg = &r.segs[i];
        s.push_str(&format!(
            "{name}{:04x} {:08x} {:08x} {:08x}\n",
            sg.selector,
            sg.base,
            sg.limit,
            qemu_flags(sg)
        ));
    }
    s.push_str(&format!(
        "LDT={:04x} {:08x} {:08x} {:08x}\n",
        r.ldtr.selector,
        r.ldtr.base,
        r.ldtr.limit,
        qemu_flags(&r.ldtr)
    ));
    s.push_str(&format!(
        "TR ={:04x} {:08x} {:08x} {:08x}\n",
        r.tr.selector,
        r.tr.base,
        r.tr.limit,
        qemu_flags(&r.tr)
    ));
    s.push_str(&format!(
        "GDT=     {:08x} {:08x}\n",
        r.gdtr.base, r.gdtr.limit
    ));
    s.push_str(&format!(
        "IDT=     {:08x} {:08x}\n",
        r.idtr.base, r.idtr.limit
    ));
    s.push_str(&format!(
        "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}\n",
        r.cr0, r.cr2, r.cr3, r.cr4
    ));
    s.push_str(&format!(
        "DR0={:08x} DR1={:08x} DR2={:08x} DR3={:08x} \nDR6={:08x} DR7={:08x}\n",
        r.dr[0], r.dr[1], r.dr[2], r.dr[3], r.dr[6], r.dr[7]
    ));
    s.push_str("EFER=0000000000000000\n");
    let top = usize::from((r.fpu_sw >> 11) & 7);
    // FTW as the abbreviated tag byte: bit i set when physical register i is not empty.
    let ftw = (0..8).fold(0u8, |acc, i| {
        if (r.fpu_tw >> (2 * i)) & 3 != 3 {
            acc | (1 << i)
        } else {
            acc
        }
    });
    s.push_str(&format!(
        "FCW={:04x} FSW={:04x} [ST={}] FTW={:02x} MXCSR={:08x}\n",
        r.fpu_cw, r.fpu_sw, top, ftw, r.mxcsr
    ));
    // FPRn is physical register Rn (the one MMn aliases); `fpu_st` is indexed by ST(i), and
    // ST(i) is R((TOP + i) mod 8), so Rn is ST((n - TOP) mod 8).
    for phys in 0..8usize {
        let st = r.fpu_st[(phys + 8 - top) & 7];
        let mant = u64::from_le_bytes([st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]]);
        let exp = u16::from_le_bytes([st[8], st[9]]);
        s.push_str(&format!("FPR{phys}={mant:016x} {exp:04x}"));
        s.push(if phys % 2 == 1 { '\n' } else { ' ' });
    }
    // XMMnn as one 128-bit hex number (high quadword first), two registers per line.
    for (i, [lo, hi]) in r.xmm.iter().enumerate() {
        s.push_str(&format!("XMM{i:02}={hi:016x}{lo:016x}"));
        s.push(if i % 2 == 1 { '\n' } else { ' ' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::format_registers;
    use wasm86_cpu::Cpu;

    /// The lines from the FPU line to the end of the dump.
    fn fpu_tail(text: &str) -> Vec<&str> {
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("FCW="))
            .expect("no FCW line");
        lines[at..].to_vec()
    }

    #[test]
    fn reset_cpu_prints_mxcsr_and_zero_xmm_registers() {
        let cpu = Cpu::new();
        let text = format_registers(&cpu.registers(), true, false);
        assert!(text.ends_with('\n'), "{text}");
        let tail = fpu_tail(&text);
        assert_eq!(tail.len(), 1 + 4 + 4, "{text}");
        assert!(tail[0].ends_with(" MXCSR=00001f80"), "{text}");
        for (n, line) in tail[5..].iter().enumerate() {
            let (a, b) = (2 * n, 2 * n + 1);
            assert_eq!(
                *line,
                format!("XMM{a:02}={z} XMM{b:02}={z}", z = "0".repeat(32)),
                "{text}"
            );
        }
    }

    #[test]
    fn restored_xmm_mxcsr_and_fpu_print_in_qemu_layout() {
        let mut cpu = Cpu::new();
        let mut st = cpu.state();
        for (i, x) in st.xmm.iter_mut().enumerate() {
            let i = i as u64;
            *x = [0x0011_2233_4455_6677 + i, 0x8899_aabb_ccdd_ee00 | (i << 4)];
        }
        st.xmm[7] = [u64::MAX, 0x8000_0000_0000_0001];
        st.mxcsr = 0x0000_9fa1;
        // TOP = 6; R6 and R7 hold values (ST0 and ST1), the rest are empty.
        st.fpu.cw = 0x037f;
        st.fpu.sw = (6 << 11) | 0x0001;
        st.fpu.tw = 0x0fff;
        for (n, r) in st.fpu.regs.iter_mut().enumerate() {
            let mut b = [0u8; 10];
            b[..8].copy_from_slice(&(0x8000_0000_0000_0000u64 | n as u64).to_le_bytes());
            b[8..].copy_from_slice(&(0x3fff + n as u16).to_le_bytes());
            *r = b;
        }
        cpu.restore(&st).expect("restore");
        let text = format_registers(&cpu.registers(), true, false);
        let want = [
            "FCW=037f FSW=3001 [ST=6] FTW=c0 MXCSR=00009fa1",
            "FPR0=8000000000000000 3fff FPR1=8000000000000001 4000",
            "FPR2=8000000000000002 4001 FPR3=8000000000000003 4002",
            "FPR4=8000000000000004 4003 FPR5=8000000000000005 4004",
            "FPR6=8000000000000006 4005 FPR7=8000000000000007 4006",
            "XMM00=8899aabbccddee000011223344556677 XMM01=8899aabbccddee100011223344556678",
            "XMM02=8899aabbccddee200011223344556679 XMM03=8899aabbccddee30001122334455667a",
            "XMM04=8899aabbccddee40001122334455667b XMM05=8899aabbccddee50001122334455667c",
            "XMM06=8899aabbccddee60001122334455667d XMM07=8000000000000001ffffffffffffffff",
        ];
        assert_eq!(fpu_tail(&text), want, "{text}");
        // The register lines before the FPU are untouched by the additions.
        assert!(text.starts_with("EAX="), "{text}");
        assert!(text.contains("\nEFER=0000000000000000\nFCW="), "{text}");
    }
}
