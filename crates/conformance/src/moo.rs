//! Reader for the MOO single-step test format (version 1.x) used by the SingleStepTests
//! 80286 suite: a sequence of `id, u32 length, payload` chunks, gzip-compressed.
//!
//! Every length and count is checked against the bytes present; a truncated or corrupt file
//! gives a [`MooError`], never a panic.

use std::io::Read;
use std::path::Path;

/// Largest decompressed file accepted (the biggest real file is a few MiB).
pub const MAX_DECOMPRESSED: u64 = 256 << 20;

/// Number of 16-bit registers in a `REGS` chunk.
pub const REG_COUNT: usize = 14;

/// Register names in `REGS` bit order.
pub const REG_NAMES: [&str; REG_COUNT] = [
    "ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags",
];

/// Index of a register in [`REG_NAMES`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Reg {
    /// AX.
    Ax = 0,
    /// BX.
    Bx,
    /// CX.
    Cx,
    /// DX.
    Dx,
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS.
    Ds,
    /// ES.
    Es,
    /// SP.
    Sp,
    /// BP.
    Bp,
    /// SI.
    Si,
    /// DI.
    Di,
    /// IP.
    Ip,
    /// FLAGS.
    Flags,
}

impl Reg {
    /// All registers in file order.
    pub const ALL: [Reg; REG_COUNT] = [
        Reg::Ax,
        Reg::Bx,
        Reg::Cx,
        Reg::Dx,
        Reg::Cs,
        Reg::Ss,
        Reg::Ds,
        Reg::Es,
        Reg::Sp,
        Reg::Bp,
        Reg::Si,
        Reg::Di,
        Reg::Ip,
        Reg::Flags,
    ];

    /// Lower-case name ("ax", "flags").
    pub fn name(self) -> &'static str {
        REG_NAMES[self as usize]
    }

    /// Parses a lower-case register name.
    pub fn from_name(s: &str) -> Option<Reg> {
        REG_NAMES.iter().position(|n| *n == s).map(|i| Reg::ALL[i])
    }
}

/// Errors reading a MOO file.
#[derive(Debug, thiserror::Error)]
pub enum MooError {
    /// The file could not be read or decompressed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The decompressed data exceeds [`MAX_DECOMPRESSED`].
    #[error("decompressed size exceeds {MAX_DECOMPRESSED} bytes")]
    TooLarge,
    /// A chunk or field extends past the end of its container.
    #[error("truncated {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset in the decompressed data (or in the enclosing chunk).
        offset: usize,
    },
    /// The file does not start with a `MOO ` header chunk.
    #[error("missing MOO header")]
    NoHeader,
    /// Unsupported major version.
    #[error("unsupported MOO version {0}.{1}")]
    Version(u8, u8),
    /// A test lacks a required sub-chunk.
    #[error("test {index}: missing {what}")]
    Missing {
        /// Test index.
        index: u32,
        /// Missing chunk name.
        what: &'static str,
    },
    /// The header's test count does not match the tests present.
    #[error("header announces {announced} tests, file holds {found}")]
    Count {
        /// Count in the header.
        announced: u32,
        /// Tests found.
        found: usize,
    },
}

/// Register values (or masks) from a `REGS`/`RMSK` chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs16 {
    /// Bit `i` set: register `i` is present.
    pub present: u16,
    /// Values in [`Reg`] order (0 where absent).
    pub values: [u16; REG_COUNT],
}

impl Regs16 {
    /// The value of `r` if present.
    pub fn get(&self, r: Reg) -> Option<u16> {
        (self.present >> r as u8 & 1 != 0).then(|| self.values[r as usize])
    }
}

/// A CPU state (`INIT` or `FINA`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Registers (all present in `INIT`; only changed ones in `FINA`).
    pub regs: Regs16,
    /// Memory bytes: `(physical address, value)`.
    pub ram: Vec<(u32, u8)>,
    /// Undefined-bit masks given inside this state.
    pub rmsk: Option<Regs16>,
}

/// The exception or interrupt a test raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Vector number.
    pub vector: u8,
    /// Physical address of the FLAGS word pushed on the stack.
    pub flags_addr: u32,
}

/// One test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// Index in the file.
    pub index: u32,
    /// Disassembly.
    pub name: String,
    /// Instruction bytes (prefixes included; the suite appends a HLT).
    pub bytes: Vec<u8>,
    /// Initial state.
    pub init: State,
    /// Final state.
    pub fina: State,
    /// Exception raised, if any.
    pub exception: Option<Exception>,
    /// SHA-1 identifying the test.
    pub hash: Option<[u8; 20]>,
}

impl Test {
    /// The hash as lower-case hex ("" when absent).
    pub fn hash_hex(&self) -> String {
        self.hash
            .map(|h| h.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default()
    }
}

/// File header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Test count.
    pub test_count: u32,
    /// CPU id ("C286").
    pub cpu: String,
}

/// A parsed MOO file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MooFile {
    /// Header.
    pub header: Header,
    /// Mnemonic from the `META` chunk, if any.
    pub mnemonic: Option<String>,
    /// File-level undefined-bit masks.
    pub rmsk: Option<Regs16>,
    /// Tests.
    pub tests: Vec<Test>,
}

/// Reads and parses a gzip-compressed MOO file.
pub fn read_gz(path: &Path) -> Result<MooFile, MooError> {
    let file = std::fs::File::open(path)?;
    let data = decompress(std::io::BufReader::new(file))?;
    parse(&data)
}

/// Decompresses gzip data with the [`MAX_DECOMPRESSED`] cap.
pub fn decompress<R: Read>(r: R) -> Result<Vec<u8>, MooError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(r)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(MooError::TooLarge);
    }
    Ok(out)
}

/// A bounds-checked little-endian reader over a byte slice.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MooError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(MooError::Truncated {
                what,
                offset: self.pos,
            }),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MooError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MooError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, MooError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Next chunk: id and payload.
    fn chunk(&mut self) -> Result<([u8; 4], &'a [u8]), MooError> {
        let id = self.take(4, "chunk id")?;
        let id = [id[0], id[1], id[2], id[3]];
        let len = self.u32("chunk length")? as usize;
        let payload = self.take(len, "chunk payload")?;
        Ok((id, payload))
    }
}

fn parse_regs(p: &[u8]) -> Result<Regs16, MooError> {
    let mut c = Cursor::new(p);
    let present = c.u16("register mask")?;
    let mut values = [0u16; REG_COUNT];
    for (i, v) in values.iter_mut().enumerate() {
        if present >> i & 1 != 0 {
            *v = c.u16("register value")?;
        }
    }
    Ok(Regs16 {
        present: present & ((1 << REG_COUNT) - 1),
        values,
    })
}

fn parse_ram(p: &[u8]) -> Result<Vec<(u32, u8)>, MooError> {
    let mut c = Cursor::new(p);
    let count = c.u32("RAM count")? as usize;
    if count
        .checked_mul(5)
        .is_none_or(|n| n > p.len().saturating_sub(4))
    {
        return Err(MooError::Truncated {
            what: "RAM entries",
            offset: 4,
        });
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let addr = c.u32("RAM address")?;
        let v = c.u8("RAM value")?;
        out.push((addr, v));
    }
    Ok(out)
}

fn parse_state(p: &[u8], index: u32) -> Result<State, MooError> {
    let mut c = Cursor::new(p);
    let mut st = State::default();
    let mut have_regs = false;
    while !c.at_end() {
        let (id, payload) = c.chunk()?;
        match &id {
            b"REGS" => {
                st.regs = parse_regs(payload)?;
                have_regs = true;
            }
            b"RAM " => st.ram = parse_ram(payload)?,
            b"RMSK" => st.rmsk = Some(parse_regs(payload)?),
            _ => {}
        }
    }
    if !have_regs {
        return Err(MooError::Missing {
            index,
            what: "REGS",
        });
    }
    Ok(st)
}

fn parse_text<'a>(p: &'a [u8], what: &'static str) -> Result<&'a [u8], MooError> {
    let mut c = Cursor::new(p);
    let len = c.u32(what)? as usize;
    c.take(len, what)
}

fn parse_test(p: &[u8]) -> Result<Test, MooError> {
    let mut c = Cursor::new(p);
    let index = c.u32("test index")?;
    let mut name = String::new();
    let mut bytes = None;
    let mut init = None;
    let mut fina = None;
    let mut exception = None;
    let mut hash = None;
    while !c.at_end() {
        let (id, payload) = c.chunk()?;
        match &id {
            b"NAME" => name = String::from_utf8_lossy(parse_text(payload, "NAME")?).into_owned(),
            b"BYTS" => bytes = Some(parse_text(payload, "BYTS")?.to_vec()),
            b"INIT" => init = Some(parse_state(payload, index)?),
            b"FINA" => fina = Some(parse_state(payload, index)?),
            b"EXCP" => {
                let mut e = Cursor::new(payload);
                let vector = e.u8("EXCP vector")?;
                let flags_addr = e.u32("EXCP address")?;
                exception = Some(Exception { vector, flags_addr });
            }
            b"HASH" => {
                let h: [u8; 20] = payload.get(..20).and_then(|s| s.try_into().ok()).ok_or(
                    MooError::Truncated {
                        what: "HASH",
                        offset: 0,
                    },
                )?;
                hash = Some(h);
            }
            _ => {}
        }
    }
    let init = init.ok_or(MooError::Missing {
        index,
        what: "INIT",
    })?;
    if init.regs.present != (1 << REG_COUNT) - 1 {
        return Err(MooError::Missing {
            index,
            what: "INIT registers",
        });
    }
    Ok(Test {
        index,
        name,
        bytes: bytes.ok_or(MooError::Missing {
            index,
            what: "BYTS",
        })?,
        init,
        fina: fina.ok_or(MooError::Missing {
            index,
            what: "FINA",
        })?,
        exception,
        hash,
    })
}

/// Parses decompressed MOO data.
pub fn parse(data: &[u8]) -> Result<MooFile, MooError> {
    let mut c = Cursor::new(data);
    let (id, payload) = c.chunk().map_err(|_| MooError::NoHeader)?;
    if &id != b"MOO " {
        return Err(MooError::NoHeader);
    }
    let mut h = Cursor::new(payload);
    let major = h.u8("header")?;
    let minor = h.u8("header")?;
    h.u16("header")?;
    let test_count = h.u32("header")?;
    let cpu = String::from_utf8_lossy(h.take(4, "header")?).into_owned();
    if major != 1 {
        return Err(MooError::Version(major, minor));
    }
    let header = Header {
        major,
        minor,
        test_count,
        cpu,
    };
    let mut mnemonic = None;
    let mut rmsk = None;
    // The header count is checked below; do not trust it for allocation beyond a bound.
    let mut tests = Vec::with_capacity(test_count.min(10_000) as usize);
    while !c.at_end() {
        let (id, payload) = c.chunk()?;
        match &id {
            b"META" => {
                // u8 major, u8 minor, u8 cpu type, u32 opcode, 8 ASCII mnemonic, ...
                if let Some(m) = payload.get(7..15) {
                    mnemonic = Some(String::from_utf8_lossy(m).trim_end().to_string());
                }
            }
            b"RMSK" => rmsk = Some(parse_regs(payload)?),
            b"TEST" => tests.push(parse_test(payload)?),
            _ => {}
        }
    }
    if tests.len() != test_count as usize {
        return Err(MooError::Count {
            announced: test_count,
            found: tests.len(),
        });
    }
    Ok(MooFile {
        header,
        mnemonic,
        rmsk,
        tests,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds one chunk.
    pub(crate) fn chunk(id: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Encodes registers.
    pub(crate) fn regs(present: u16, vals: &[u16]) -> Vec<u8> {
        let mut v = present.to_le_bytes().to_vec();
        for x in vals {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    /// Encodes a RAM chunk payload.
    pub(crate) fn ram(entries: &[(u32, u8)]) -> Vec<u8> {
        let mut v = (entries.len() as u32).to_le_bytes().to_vec();
        for (a, b) in entries {
            v.extend_from_slice(&a.to_le_bytes());
            v.push(*b);
        }
        v
    }

    /// A small synthetic file with one test: `inc ax` at 0000:0100.
    pub(crate) fn sample_file() -> Vec<u8> {
        let mut header = vec![1, 1, 0, 0];
        header.extend_from_slice(&1u32.to_le_bytes());
        header.extend_from_slice(b"C286");
        let init_regs = regs(
            0x3FFF,
            &[1, 2, 3, 4, 0, 0x100, 0, 0, 0xFFFE, 0, 0, 0, 0x100, 2],
        );
        let mut init = chunk(b"REGS", &init_regs);
        init.extend(chunk(b"RAM ", &ram(&[(0x100, 0x40), (0x101, 0xF4)])));
        let mut fina = chunk(b"REGS", &regs(1 | 1 << 12 | 1 << 13, &[2, 0x101, 0x2]));
        fina.extend(chunk(b"RAM ", &ram(&[])));
        let mut t = 0u32.to_le_bytes().to_vec();
        let mut name = 6u32.to_le_bytes().to_vec();
        name.extend_from_slice(b"inc ax");
        t.extend(chunk(b"NAME", &name));
        t.extend(chunk(b"BYTS", &[2, 0, 0, 0, 0x40, 0xF4]));
        t.extend(chunk(b"INIT", &init));
        t.extend(chunk(b"FINA", &fina));
        t.extend(chunk(b"HASH", &[0xAB; 20]));
        let mut f = chunk(b"MOO ", &header);
        f.extend(chunk(b"XTRA", b"unknown chunks are skipped"));
        f.extend(chunk(b"TEST", &t));
        f
    }

    #[test]
    fn parses_synthetic_file() {
        let f = parse(&sample_file()).unwrap();
        assert_eq!(f.header.cpu, "C286");
        assert_eq!(f.tests.len(), 1);
        let t = &f.tests[0];
        assert_eq!(t.name, "inc ax");
        assert_eq!(t.bytes, vec![0x40, 0xF4]);
        assert_eq!(t.init.regs.get(Reg::Ss), Some(0x100));
        assert_eq!(t.init.regs.get(Reg::Flags), Some(2));
        assert_eq!(t.fina.regs.get(Reg::Ax), Some(2));
        assert_eq!(t.fina.regs.get(Reg::Ip), Some(0x101));
        assert_eq!(t.fina.regs.get(Reg::Bx), None);
        assert_eq!(t.init.ram, vec![(0x100, 0x40), (0x101, 0xF4)]);
        assert_eq!(t.hash_hex(), "ab".repeat(20));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = sample_file();
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        assert!(parse(&full).is_ok());
    }

    #[test]
    fn corrupt_lengths_are_errors() {
        let mut f = sample_file();
        // Blow up the RAM count of INIT: find "RAM " and set a huge count after its length.
        let pos = f.windows(4).position(|w| w == b"RAM ").unwrap();
        f[pos + 8..pos + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&f), Err(MooError::Truncated { .. })));
        let mut g = sample_file();
        g[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&g).is_err());
        assert!(matches!(parse(b"NOPE\0\0\0\0"), Err(MooError::NoHeader)));
    }

    #[test]
    fn count_mismatch_is_reported() {
        let mut f = sample_file();
        f[12..16].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            parse(&f),
            Err(MooError::Count {
                announced: 2,
                found: 1
            })
        ));
    }

    #[test]
    fn bad_gzip_is_an_error() {
        assert!(decompress(&b"\x1f\x8b\x08\0garbage"[..]).is_err());
    }
}
