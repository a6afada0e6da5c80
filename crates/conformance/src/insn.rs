//! Just enough 16-bit instruction decoding to classify a test: its prefixes, opcode and
//! ModR/M byte, and whether a LOCK prefix is legal on a P6 for it.

/// Prefix bytes of 16-bit code as a P6 decodes them (segment overrides, LOCK, REP; F1 is
/// INT1 on a P6, not the LOCK alias it is on a 286; 64h-67h do not occur in 286 code).
pub fn is_prefix(b: u8) -> bool {
    matches!(b, 0x26 | 0x2E | 0x36 | 0x3E | 0xF0 | 0xF2 | 0xF3)
}

/// Whether a one-byte opcode (8086..286 set) is followed by a ModR/M byte.
pub fn has_modrm(op: u8) -> bool {
    matches!(op,
        0x00..=0x03 | 0x08..=0x0B | 0x10..=0x13 | 0x18..=0x1B | 0x20..=0x23 | 0x28..=0x2B
        | 0x30..=0x33 | 0x38..=0x3B | 0x62 | 0x63 | 0x69 | 0x6B | 0x80..=0x8F | 0xC0 | 0xC1
        | 0xC4..=0xC7 | 0xD0..=0xD3 | 0xD8..=0xDF | 0xF6 | 0xF7 | 0xFE | 0xFF)
}

/// A decoded instruction head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Prefix bytes in order.
    pub prefixes: Vec<u8>,
    /// The opcode byte (`None` if the bytes are only prefixes).
    pub opcode: Option<u8>,
    /// Second opcode byte after 0x0F.
    pub opcode2: Option<u8>,
    /// ModR/M byte, when the opcode has one and it is present.
    pub modrm: Option<u8>,
}

impl Head {
    /// Decodes the head of `bytes`.
    pub fn decode(bytes: &[u8]) -> Head {
        let n = bytes.iter().take_while(|b| is_prefix(**b)).count();
        let prefixes = bytes[..n].to_vec();
        let opcode = bytes.get(n).copied();
        let mut opcode2 = None;
        let modrm = match opcode {
            Some(0x0F) => {
                opcode2 = bytes.get(n + 1).copied();
                bytes.get(n + 2).copied()
            }
            Some(op) if has_modrm(op) => bytes.get(n + 1).copied(),
            _ => None,
        };
        Head {
            prefixes,
            opcode,
            opcode2,
            modrm,
        }
    }

    /// Whether a LOCK prefix is present.
    pub fn has_lock(&self) -> bool {
        self.prefixes.contains(&0xF0)
    }

    /// Whether the ModR/M byte selects a register operand (mod = 3).
    pub fn modrm_is_register(&self) -> bool {
        self.modrm.is_some_and(|m| m >> 6 == 3)
    }

    /// ModR/M reg field.
    pub fn reg_field(&self) -> Option<u8> {
        self.modrm.map(|m| m >> 3 & 7)
    }

    /// Whether a P6 accepts LOCK on this instruction: one of the read-modify-write
    /// instructions with a memory destination (SDM Vol. 2, LOCK). Otherwise it raises #UD.
    pub fn lock_legal_on_p6(&self) -> bool {
        if self.modrm.is_none_or(|m| m >> 6 == 3) {
            return false;
        }
        let reg = self.reg_field().unwrap_or(0);
        match self.opcode {
            // ADD OR ADC SBB AND SUB XOR with a memory destination (not CMP: 0x38/0x39).
            Some(op @ 0x00..=0x31) => op & 7 <= 1,
            Some(0x80..=0x83) => reg != 7,
            Some(0x86 | 0x87) => true,
            Some(0xF6 | 0xF7) => reg == 2 || reg == 3,
            Some(0xFE | 0xFF) => reg <= 1,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_prefixes_and_modrm() {
        let h = Head::decode(&[0x26, 0xF0, 0x00, 0x5F, 0x0E, 0xF4]);
        assert_eq!(h.prefixes, vec![0x26, 0xF0]);
        assert_eq!(h.opcode, Some(0x00));
        assert_eq!(h.modrm, Some(0x5F));
        assert!(h.has_lock());
        assert!(h.lock_legal_on_p6());
        assert!(!Head::decode(&[0xF0, 0xCC]).lock_legal_on_p6());
        // CMP never takes LOCK; register destinations never do.
        assert!(!Head::decode(&[0xF0, 0x38, 0x07]).lock_legal_on_p6());
        assert!(!Head::decode(&[0xF0, 0x00, 0xC0]).lock_legal_on_p6());
        assert!(Head::decode(&[0xF0, 0xFE, 0x07]).lock_legal_on_p6());
        assert!(!Head::decode(&[0xF0, 0xFE, 0x17]).lock_legal_on_p6());
        assert!(Head::decode(&[0x8D, 0xC0]).modrm_is_register());
        assert_eq!(Head::decode(&[0xF3]).opcode, None);
    }
}
