//! Instruction-level tests of the x87: environment layouts, FSAVE/FRSTOR, pending
//! exceptions, fault atomicity, undefined encodings, bookkeeping, FCMOVcc, transcendentals
//! and state save/restore.

use wasm86_cpu::fpu::{Fpu, FpuContext, FpuError, FpuMemory, FpuOutcome, FpuState};

/// Memory with a faulting window `[fault_from, fault_to)`.
struct Mem {
    bytes: Vec<u8>,
    fault_from: u32,
    fault_to: u32,
}

#[derive(Debug, PartialEq)]
struct Fault(u32);

impl Mem {
    fn new() -> Mem {
        Mem {
            bytes: vec![0; 512],
            fault_from: u32::MAX,
            fault_to: u32::MAX,
        }
    }
    fn check(&self, offset: u32, len: usize) -> Result<usize, Fault> {
        let end = offset as u64 + len as u64;
        if u64::from(self.fault_from) < end && u64::from(self.fault_to) > u64::from(offset) {
            return Err(Fault(offset));
        }
        if end > self.bytes.len() as u64 {
            return Err(Fault(offset));
        }
        Ok(offset as usize)
    }
    fn put(&mut self, at: usize, data: &[u8]) {
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }
    fn get(&self, at: usize, n: usize) -> &[u8] {
        &self.bytes[at..at + n]
    }
}

impl FpuMemory for Mem {
    type Fault = Fault;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Fault> {
        let o = self.check(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
        Ok(())
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Fault> {
        let o = self.check(offset, data.len())?;
        self.bytes[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn ctx() -> FpuContext {
    FpuContext {
        op32: true,
        protected: true,
        ..FpuContext::default()
    }
}

fn run(f: &mut Fpu, m: &mut Mem, op: u8, modrm: u8, ea: Option<u32>) -> FpuOutcome {
    f.execute(op, modrm, ea, &ctx(), m).expect("instruction")
}

fn f64_to_mem(m: &mut Mem, at: usize, bits: u64) {
    m.put(at, &bits.to_le_bytes());
}

/// Pushes a double onto the stack with FLD m64.
fn push_f64(f: &mut Fpu, m: &mut Mem, bits: u64) {
    f64_to_mem(m, 400, bits);
    run(f, m, 0xDD, 0x00, Some(400));
}

/// Pops ST(0) as a double (FSTP m64).
fn pop_f64(f: &mut Fpu, m: &mut Mem) -> u64 {
    run(f, m, 0xDD, 0x18, Some(408));
    u64::from_le_bytes(m.get(408, 8).try_into().unwrap_or([0; 8]))
}

const ONE: u64 = 0x3FF0_0000_0000_0000;
const TWO: u64 = 0x4000_0000_0000_0000;
const THREE: u64 = 0x4008_0000_0000_0000;

#[test]
fn init_state() {
    let f = Fpu::new();
    assert_eq!(f.control_word(), 0x037F);
    assert_eq!(f.status_word(), 0);
    assert_eq!(f.tag_word(), 0xFFFF);
    assert!(!f.wait_check());
}

#[test]
fn arithmetic_through_memory_forms() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    push_f64(&mut f, &mut m, THREE);
    // FIMUL m16int 7 → 21; FISUBR m32int 100 → 79; FDIV m64 2 → 39.5.
    m.put(0, &7i16.to_le_bytes());
    run(&mut f, &mut m, 0xDE, 0x08, Some(0));
    m.put(0, &100i32.to_le_bytes());
    run(&mut f, &mut m, 0xDA, 0x28, Some(0));
    m.put(0, &TWO.to_le_bytes());
    run(&mut f, &mut m, 0xDC, 0x30, Some(0));
    assert_eq!(pop_f64(&mut f, &mut m), 0x4043_C000_0000_0000);
    assert_eq!(f.tag_word(), 0xFFFF);
}

#[test]
fn register_forms_and_pops() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    push_f64(&mut f, &mut m, TWO); // ST1 after next push
    push_f64(&mut f, &mut m, THREE); // ST0
                                     // FSUBRP ST(1), ST(0) (DE E1): ST1 := ST0 − ST1 = 1, pop.
    run(&mut f, &mut m, 0xDE, 0xE1, None);
    assert_eq!(pop_f64(&mut f, &mut m), ONE);
    push_f64(&mut f, &mut m, TWO);
    push_f64(&mut f, &mut m, THREE);
    // FSUBP ST(1), ST(0) (DE E9): ST1 := ST1 − ST0 = −1, pop.
    run(&mut f, &mut m, 0xDE, 0xE9, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0xBFF0_0000_0000_0000);
    push_f64(&mut f, &mut m, TWO);
    push_f64(&mut f, &mut m, THREE);
    // FDIVRP (DE F1): ST1 := ST0 / ST1 = 1.5.
    run(&mut f, &mut m, 0xDE, 0xF1, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0x3FF8_0000_0000_0000);
    // FCOMPP with 3 vs 2: ST0 > ST1 → C3=C2=C0=0; both popped.
    push_f64(&mut f, &mut m, TWO);
    push_f64(&mut f, &mut m, THREE);
    run(&mut f, &mut m, 0xDE, 0xD9, None);
    assert_eq!(f.status_word() & 0x4500, 0);
    assert_eq!(f.tag_word(), 0xFFFF);
    // FUCOMIP: 2 vs 3 → CF.
    push_f64(&mut f, &mut m, THREE);
    push_f64(&mut f, &mut m, TWO);
    let out = run(&mut f, &mut m, 0xDF, 0xE9, None);
    assert_eq!(
        out,
        FpuOutcome::SetFlags {
            zf: false,
            pf: false,
            cf: true
        }
    );
    assert_eq!(pop_f64(&mut f, &mut m), THREE);
}

#[test]
fn stack_overflow_and_underflow() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    // Underflow: FADD with an empty stack, masked → indefinite, IE|SF, C1 = 0.
    run(&mut f, &mut m, 0xD8, 0xC1, None);
    assert_eq!(f.status_word() & 0x0241, 0x0041);
    for _ in 0..8 {
        push_f64(&mut f, &mut m, ONE);
    }
    run(&mut f, &mut m, 0xDB, 0xE2, None); // FNCLEX
    push_f64(&mut f, &mut m, ONE);
    // Overflow: IE|SF with C1 = 1; ST0 holds the indefinite.
    assert_eq!(f.status_word() & 0x0241, 0x0241);
    assert_eq!(f.st(0), [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF]);
}

#[test]
fn pending_exception_blocks_waiting_instructions_only() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    // Unmask ZE, divide 1 by 0.
    m.put(0, &0x037Bu16.to_le_bytes());
    run(&mut f, &mut m, 0xD9, 0x28, Some(0));
    push_f64(&mut f, &mut m, 0);
    push_f64(&mut f, &mut m, ONE);
    let before = f.st(0);
    run(&mut f, &mut m, 0xD8, 0xF1, None); // FDIV ST0, ST1
    assert_eq!(f.st(0), before, "unmasked ZE leaves the destination alone");
    assert!(f.wait_check());
    assert_eq!(f.status_word() & 0x8084, 0x8084);
    let r = f.execute(0xD8, 0xC1, None, &ctx(), &mut m);
    assert!(matches!(r, Err(FpuError::PendingException)));
    // FNSTSW AX, FNSTCW and FNSTENV still run.
    assert!(matches!(
        run(&mut f, &mut m, 0xDF, 0xE0, None),
        FpuOutcome::StoreAx(sw) if sw & 0x84 == 0x84
    ));
    run(&mut f, &mut m, 0xD9, 0x38, Some(100));
    assert_eq!(m.get(100, 2), &0x037Bu16.to_le_bytes());
    // FLDCW that masks ZE clears the pending state.
    m.put(0, &0x037Fu16.to_le_bytes());
    assert!(f.execute(0xD9, 0x28, Some(0), &ctx(), &mut m).is_err());
    run(&mut f, &mut m, 0xDB, 0xE2, None);
    assert!(!f.wait_check());
    run(&mut f, &mut m, 0xD8, 0xC1, None);
}

#[test]
fn memory_faults_leave_state_unchanged() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    push_f64(&mut f, &mut m, THREE);
    push_f64(&mut f, &mut m, TWO);
    m.fault_from = 200;
    m.fault_to = 300;
    let s = f.state();
    for (op, modrm) in [
        (0xDD, 0x18u8), // FSTP m64
        (0xDB, 0x38),   // FSTP m80
        (0xDF, 0x38),   // FISTP m64
        (0xDF, 0x30),   // FBSTP
        (0xDB, 0x28),   // FLD m80
        (0xD8, 0x00),   // FADD m32
        (0xDD, 0x30),   // FNSAVE
        (0xDD, 0x20),   // FRSTOR
        (0xD9, 0x20),   // FLDENV
        (0xD9, 0x30),   // FNSTENV
        (0xD9, 0x28),   // FLDCW
    ] {
        let r = f.execute(op, modrm, Some(250), &ctx(), &mut m);
        assert!(
            matches!(r, Err(FpuError::Fault(Fault(_)))),
            "{op:02x} {modrm:02x}"
        );
        assert_eq!(f.state(), s, "{op:02x} {modrm:02x} changed the state");
    }
    // A FRSTOR whose register area faults part-way is also atomic.
    let r = f.execute(0xDD, 0x20, Some(150), &ctx(), &mut m);
    assert!(r.is_err());
    assert_eq!(f.state(), s);
}

#[test]
fn undefined_encodings() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    for (op, modrm, ea) in [
        (0xD9u8, 0xD1u8, None),
        (0xD9, 0xE2, None),
        (0xD9, 0xEF, None),
        (0xDA, 0xE8, None),
        (0xDA, 0xF0, None),
        (0xDB, 0xE5, None),
        (0xDB, 0xF8, None),
        (0xDD, 0xF0, None),
        (0xDE, 0xD8, None),
        (0xDF, 0xE1, None),
        (0xDF, 0xF8, None),
        (0xD9, 0x08, Some(0)),
        (0xDB, 0x08, Some(0)),
        (0xDB, 0x20, Some(0)),
        (0xDD, 0x28, Some(0)),
        (0xDF, 0x08, Some(0)),
        (0xD8, 0x00, None),
    ] {
        let r = f.execute(op, modrm, ea, &ctx(), &mut m);
        assert!(
            matches!(r, Err(FpuError::Undefined)),
            "{op:02x} {modrm:02x}"
        );
    }
    assert!(matches!(
        f.execute(0xD7, 0xC0, None, &ctx(), &mut m),
        Err(FpuError::Undefined)
    ));
}

#[test]
fn environment_layouts() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    push_f64(&mut f, &mut m, ONE);
    // FADD m64 with recorded pointers.
    let c = FpuContext {
        ip: 0x1234_5678,
        cs: 0x0008,
        dp: 0x0000_0100,
        ds: 0x0010,
        ..ctx()
    };
    m.put(0x100, &ONE.to_le_bytes());
    f.execute(0xDC, 0x05, Some(0x100), &c, &mut m)
        .expect("FADD");
    // 32-bit protected.
    f.execute(0xD9, 0x30, Some(0), &ctx(), &mut m)
        .expect("FNSTENV");
    let e = m.get(0, 28).to_vec();
    assert_eq!(&e[0..4], &[0x7F, 0x03, 0xFF, 0xFF]);
    assert_eq!(&e[8..10], &0x3FFFu16.to_le_bytes()[..]); // ST0 valid, rest empty
    assert_eq!(
        u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
        0x1234_5678
    );
    assert_eq!(u16::from_le_bytes([e[16], e[17]]), 8);
    assert_eq!(u16::from_le_bytes([e[18], e[19]]), 0x405);
    assert_eq!(u32::from_le_bytes([e[20], e[21], e[22], e[23]]), 0x100);
    assert_eq!(u16::from_le_bytes([e[24], e[25]]), 0x10);
    // FNSTENV masks every exception.
    assert_eq!(f.control_word() & 0x3F, 0x3F);
    // 16-bit protected.
    let c16 = FpuContext {
        op32: false,
        ..ctx()
    };
    f.execute(0xD9, 0x30, Some(32), &c16, &mut m)
        .expect("FNSTENV");
    let e = m.get(32, 14).to_vec();
    assert_eq!(u16::from_le_bytes([e[6], e[7]]), 0x5678);
    assert_eq!(u16::from_le_bytes([e[8], e[9]]), 8);
    assert_eq!(u16::from_le_bytes([e[10], e[11]]), 0x100);
    // 16-bit real mode: 20-bit linear pointers, FOP beside FIP[19:16].
    let mut f = Fpu::new();
    let cr = FpuContext {
        op32: false,
        protected: false,
        ip: 0x0010,
        cs: 0x1234,
        dp: 0x0020,
        ds: 0x2000,
        ..ctx()
    };
    m.put(0x100, &ONE.to_le_bytes());
    f.execute(0xDD, 0x06, Some(0x100), &cr, &mut m)
        .expect("FLD");
    f.execute(0xD9, 0x30, Some(64), &cr, &mut m)
        .expect("FNSTENV");
    let e = m.get(64, 14).to_vec();
    let lin_ip = 0x12340u32 + 0x10;
    assert_eq!(u16::from_le_bytes([e[6], e[7]]), lin_ip as u16);
    assert_eq!(
        u16::from_le_bytes([e[8], e[9]]),
        (((lin_ip >> 16) as u16) << 12) | 0x506
    );
    assert_eq!(u16::from_le_bytes([e[10], e[11]]), 0x0020);
    assert_eq!(u16::from_le_bytes([e[12], e[13]]), 0x2000);
    // 32-bit real mode.
    let cr32 = FpuContext { op32: true, ..cr };
    f.execute(0xD9, 0x30, Some(96), &cr32, &mut m)
        .expect("FNSTENV");
    let e = m.get(96, 28).to_vec();
    assert_eq!(
        u32::from_le_bytes([e[12], e[13], e[14], e[15]]) & 0xFFFF,
        lin_ip & 0xFFFF
    );
    assert_eq!(
        u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
        ((lin_ip >> 16) << 12) | 0x506
    );
    assert_eq!(u32::from_le_bytes([e[24], e[25], e[26], e[27]]), 0x2 << 12);
    // FLDENV of the real-mode image gives back the same image, except that the tag of the
    // non-empty register is recomputed from its (here zero) contents.
    let mut g = Fpu::new();
    g.execute(0xD9, 0x20, Some(96), &cr32, &mut m)
        .expect("FLDENV");
    g.execute(0xD9, 0x30, Some(160), &cr32, &mut m)
        .expect("FNSTENV");
    assert_eq!(m.get(160, 8), m.get(96, 8));
    assert_eq!(m.get(160, 2 + 8)[8..], [0xFF, 0x7F]);
    assert_eq!(m.get(170, 18), m.get(106, 18));
}

#[test]
fn fsave_frstor_round_trip() {
    for (op32, protected) in [(true, true), (true, false), (false, true), (false, false)] {
        let c = FpuContext {
            op32,
            protected,
            ..ctx()
        };
        let mut f = Fpu::new();
        let mut m = Mem::new();
        push_f64(&mut f, &mut m, ONE);
        push_f64(&mut f, &mut m, THREE);
        run(&mut f, &mut m, 0xD9, 0xFA, None); // FSQRT: inexact → PE
        let s = f.state();
        f.execute(0xDD, 0x30, Some(0), &c, &mut m).expect("FNSAVE");
        assert_eq!(f.tag_word(), 0xFFFF, "FNSAVE reinitialises");
        assert_eq!(f.control_word(), 0x037F);
        f.execute(0xDD, 0x20, Some(0), &c, &mut m).expect("FRSTOR");
        let r = f.state();
        assert_eq!((r.cw, r.sw, r.tw, r.regs), (s.cw, s.sw, s.tw, s.regs));
        assert_eq!(pop_f64(&mut f, &mut m), 0x3FFB_B67A_E858_4CAA);
    }
}

#[test]
fn fcmov_conditions() {
    let cases = [
        (0xDA, 0xC1, 0x01, true),  // FCMOVB, CF
        (0xDA, 0xC9, 0x40, true),  // FCMOVE, ZF
        (0xDA, 0xD1, 0x00, false), // FCMOVBE
        (0xDA, 0xD9, 0x04, true),  // FCMOVU, PF
        (0xDB, 0xC1, 0x01, false), // FCMOVNB
        (0xDB, 0xC9, 0x00, true),  // FCMOVNE
        (0xDB, 0xD1, 0x40, false), // FCMOVNBE
        (0xDB, 0xD9, 0x00, true),  // FCMOVNU
    ];
    for (op, modrm, eflags, taken) in cases {
        let mut f = Fpu::new();
        let mut m = Mem::new();
        push_f64(&mut f, &mut m, TWO);
        push_f64(&mut f, &mut m, ONE);
        let c = FpuContext { eflags, ..ctx() };
        f.execute(op, modrm, None, &c, &mut m).expect("FCMOV");
        let want = if taken { TWO } else { ONE };
        assert_eq!(pop_f64(&mut f, &mut m), want, "{op:02x} {modrm:02x}");
    }
}

#[test]
fn transcendentals() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    // FPTAN of 0 pushes 1.0 after tan = 0.
    push_f64(&mut f, &mut m, 0);
    run(&mut f, &mut m, 0xD9, 0xF2, None);
    assert_eq!(pop_f64(&mut f, &mut m), ONE);
    assert_eq!(pop_f64(&mut f, &mut m), 0);
    // FSIN of 2^63 is out of range: C2 set, operand kept.
    push_f64(&mut f, &mut m, 0x43E0_0000_0000_0000);
    run(&mut f, &mut m, 0xD9, 0xFE, None);
    assert_ne!(f.status_word() & 0x0400, 0);
    assert_eq!(pop_f64(&mut f, &mut m), 0x43E0_0000_0000_0000);
    // FSINCOS(0.5): ST0 = cos, ST1 = sin; cos² + sin² = 1 at double precision.
    push_f64(&mut f, &mut m, 0x3FE0_0000_0000_0000);
    run(&mut f, &mut m, 0xD9, 0xFB, None);
    assert_eq!(f.status_word() & 0x0400, 0);
    assert_eq!(pop_f64(&mut f, &mut m), 0x3FEC_1528_065B_7D50); // cos(0.5)
    assert_eq!(pop_f64(&mut f, &mut m), 0x3FDE_AEE8_744B_05F0); // sin(0.5)
                                                                // FPATAN(1, -1) = 3π/4.
    push_f64(&mut f, &mut m, ONE); // y = ST1
    push_f64(&mut f, &mut m, 0xBFF0_0000_0000_0000); // x = ST0
    run(&mut f, &mut m, 0xD9, 0xF3, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0x4002_D97C_7F33_21D2);
    // FYL2X: 3 · log2(8) = 9; FYL2X of 0 → ZE, −∞.
    push_f64(&mut f, &mut m, THREE);
    push_f64(&mut f, &mut m, 0x4020_0000_0000_0000);
    run(&mut f, &mut m, 0xD9, 0xF1, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0x4022_0000_0000_0000);
    push_f64(&mut f, &mut m, ONE);
    push_f64(&mut f, &mut m, 0);
    run(&mut f, &mut m, 0xD9, 0xF1, None);
    assert_ne!(f.status_word() & 0x0004, 0);
    assert_eq!(pop_f64(&mut f, &mut m), 0xFFF0_0000_0000_0000);
    // F2XM1(0.5) = √2 − 1; FYL2XP1(y = 1, x = 0.25) = log2(1.25).
    push_f64(&mut f, &mut m, 0x3FE0_0000_0000_0000);
    run(&mut f, &mut m, 0xD9, 0xF0, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0x3FDA_8279_99FC_EF32);
    push_f64(&mut f, &mut m, ONE);
    push_f64(&mut f, &mut m, 0x3FD0_0000_0000_0000);
    run(&mut f, &mut m, 0xD9, 0xF9, None);
    assert_eq!(pop_f64(&mut f, &mut m), 0x3FD4_9A78_4BCD_1B8B);
}

#[test]
fn state_round_trip_and_validation() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    push_f64(&mut f, &mut m, THREE);
    push_f64(&mut f, &mut m, TWO);
    run(&mut f, &mut m, 0xD8, 0xF1, None);
    let s = f.state();
    let bytes = postcard::to_allocvec(&s).expect("serialise");
    let back: FpuState = postcard::from_bytes(&bytes).expect("deserialise");
    assert_eq!(back, s);
    let mut g = Fpu::new();
    g.restore(&back).expect("restore");
    assert_eq!(g.state(), s);
    assert_eq!(g.st(1), f.st(1));
    // Continue identically after restore.
    run(&mut f, &mut m, 0xDE, 0xC1, None);
    run(&mut g, &mut m, 0xDE, 0xC1, None);
    assert_eq!(f.state(), g.state());
    let bad = FpuState { fop: 0x800, ..s };
    assert!(g.restore(&bad).is_err());
}

#[test]
fn bookkeeping_skips_control_instructions() {
    let mut f = Fpu::new();
    let mut m = Mem::new();
    let c = FpuContext {
        ip: 0x40,
        cs: 0x1B,
        ..ctx()
    };
    f.execute(0xD9, 0xE8, None, &c, &mut m).expect("FLD1");
    let later = FpuContext { ip: 0x99, ..c };
    f.execute(0xD9, 0x38, Some(0), &later, &mut m)
        .expect("FNSTCW");
    f.execute(0xDB, 0xE2, None, &later, &mut m).expect("FNCLEX");
    let s = f.state();
    assert_eq!((s.fip, s.fcs, s.fop), (0x40, 0x1B, 0x1E8));
}

/// Random encodings, operands, images and contexts never panic, and a refused instruction
/// (fault, #UD, pending exception) never changes the state.
#[test]
fn random_instructions_never_panic() {
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut f = Fpu::new();
    let mut m = Mem::new();
    for b in m.bytes.iter_mut() {
        *b = next() as u8;
    }
    m.fault_from = 480;
    m.fault_to = 512;
    for _ in 0..200_000 {
        let op = 0xD8 + (next() % 8) as u8;
        let modrm = next() as u8;
        let ea = if next() % 16 == 0 {
            None
        } else {
            Some((next() % 520) as u32)
        };
        let c = FpuContext {
            op32: next() % 2 == 0,
            protected: next() % 2 == 0,
            ip: next() as u32,
            cs: next() as u16,
            dp: next() as u32,
            ds: next() as u16,
            opcode: next() as u16,
            eflags: next() as u32,
        };
        if next() % 64 == 0 {
            let at = (next() % 400) as usize;
            let v = next().to_le_bytes();
            m.put(at, &v);
        }
        let before = f.state();
        match f.execute(op, modrm, ea, &c, &mut m) {
            Ok(_) => {}
            Err(_) => assert_eq!(f.state(), before, "{op:02x} {modrm:02x} {ea:?}"),
        }
        if f.wait_check() && next() % 4 == 0 {
            f.execute(0xDB, 0xE2, None, &c, &mut m).expect("FNCLEX");
        }
    }
}
