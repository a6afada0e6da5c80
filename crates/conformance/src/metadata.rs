//! The suite's `metadata.json`: per-opcode (and per ModR/M reg group) status and the mask of
//! FLAGS bits that are defined after the instruction.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// Errors reading `metadata.json`.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not the expected JSON.
    #[error("invalid metadata.json: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Deserialize)]
struct RawFile {
    opcodes: HashMap<String, RawEntry>,
}

#[derive(Debug, Deserialize)]
struct RawEntry {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "flags-mask")]
    flags_mask: Option<u32>,
    #[serde(default)]
    reg: Option<HashMap<String, RawEntry>>,
}

/// What the metadata says about one opcode form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpcodeInfo {
    /// "normal", "prefix", "undefined", "alias", "fpu" ...
    pub status: String,
    /// FLAGS bits to compare (1 = defined). 0xFFFF when the metadata gives no mask.
    pub flags_mask: u16,
}

/// Parsed metadata, keyed like the test files: "00", "80.1", "F6.7".
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: HashMap<String, OpcodeInfo>,
}

impl Metadata {
    /// Reads `metadata.json`.
    pub fn load(path: &Path) -> Result<Metadata, MetadataError> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text)
    }

    /// Parses the JSON text.
    pub fn parse(text: &str) -> Result<Metadata, MetadataError> {
        let raw: RawFile = serde_json::from_str(text)?;
        let mut entries = HashMap::new();
        let info = |e: &RawEntry| OpcodeInfo {
            status: e.status.clone().unwrap_or_else(|| "normal".into()),
            flags_mask: e.flags_mask.map_or(0xFFFF, |m| (m & 0xFFFF) as u16),
        };
        for (op, e) in &raw.opcodes {
            let op = op.to_ascii_uppercase();
            entries.insert(op.clone(), info(e));
            if let Some(regs) = &e.reg {
                for (r, sub) in regs {
                    entries.insert(format!("{op}.{r}"), info(sub));
                }
            }
        }
        Ok(Metadata { entries })
    }

    /// Information for a file key ("80.1"); falls back to the bare opcode ("80").
    pub fn get(&self, key: &str) -> Option<&OpcodeInfo> {
        let key = key.to_ascii_uppercase();
        self.entries
            .get(&key)
            .or_else(|| self.entries.get(key.split('.').next().unwrap_or("")))
    }

    /// FLAGS compare mask for a file key (all bits when unknown).
    pub fn flags_mask(&self, key: &str) -> u16 {
        self.get(key).map_or(0xFFFF, |i| i.flags_mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_reg_groups() {
        let m = Metadata::parse(
            r#"{"version":"1","opcodes":{
                "08":{"status":"normal","flags-mask":65519},
                "40":{"status":"normal"},
                "D2":{"reg":{"0":{"status":"normal","flags-mask":63487},"6":{"status":"alias"}}}
            }}"#,
        )
        .unwrap();
        assert_eq!(m.flags_mask("08"), 0xFFEF);
        assert_eq!(m.flags_mask("40"), 0xFFFF);
        assert_eq!(m.flags_mask("D2.0"), 0xF7FF);
        assert_eq!(m.get("d2.6").unwrap().status, "alias");
        assert_eq!(m.flags_mask("99"), 0xFFFF);
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(Metadata::parse("{").is_err());
        assert!(Metadata::parse(r#"{"opcodes":{"00":{"flags-mask":"x"}}}"#).is_err());
    }
}
