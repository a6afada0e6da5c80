//! The worker's file store: where `screendump`, `memsave` and `pmemsave` write in a browser.
//!
//! A tab has no host file system, so a file name given to those commands names an entry in
//! this in-memory store. The page lists the entries and offers them for download. The store is
//! size-capped (the guest can make QMP clients write large files, and every byte lives in the
//! worker's memory): a write that would push the total over the cap is refused with a clear
//! error, and the command fails as it would on a full disk.

use std::collections::BTreeMap;

/// Default cap on the total size of the stored files: 64 MiB.
pub const DEFAULT_CAP: usize = 64 << 20;

/// Longest accepted file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The name is empty, too long, or holds a control character.
    #[error("invalid file name {0:?}: 1 to 255 bytes without control characters")]
    BadName(String),
    /// The store would grow beyond its cap.
    #[error(
        "the browser file store is full: writing {size} bytes to '{name}' would bring it to \
         {would} bytes, over its cap of {cap} bytes; download and remove files first"
    )]
    Full {
        /// The file name.
        name: String,
        /// The size of the refused write.
        size: usize,
        /// The total the store would reach.
        would: usize,
        /// The cap.
        cap: usize,
    },
}

/// Named files, size-capped, with a record of the names written since the last
/// [`FileStore::take_changed`].
#[derive(Debug, Clone)]
pub struct FileStore {
    files: BTreeMap<String, Vec<u8>>,
    changed: Vec<String>,
    total: usize,
    cap: usize,
}

impl Default for FileStore {
    fn default() -> Self {
        FileStore::new(DEFAULT_CAP)
    }
}

impl FileStore {
    /// An empty store holding at most `cap` bytes in all.
    pub fn new(cap: usize) -> FileStore {
        FileStore {
            files: BTreeMap::new(),
            changed: Vec::new(),
            total: 0,
            cap,
        }
    }

    /// Writes (creates or replaces) a file. Replacing a file frees its old size first.
    pub fn write(&mut self, name: &str, data: &[u8]) -> Result<(), FileError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(FileError::BadName(name.to_string()));
        }
        let old = self.files.get(name).map_or(0, Vec::len);
        let would = (self.total - old).saturating_add(data.len());
        if would > self.cap {
            return Err(FileError::Full {
                name: name.to_string(),
                size: data.len(),
                would,
                cap: self.cap,
            });
        }
        self.files.insert(name.to_string(), data.to_vec());
        self.total = would;
        if !self.changed.iter().any(|n| n == name) {
            self.changed.push(name.to_string());
        }
        Ok(())
    }

    /// A file's contents.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// Removes a file; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.files.remove(name) {
            Some(d) => {
                self.total -= d.len();
                self.changed.retain(|n| n != name);
                true
            }
            None => false,
        }
    }

    /// The files written since the last call (name and current contents), in write order.
    pub fn take_changed(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|n| self.files.get(&n).map(|d| (n.clone(), d.clone())))
            .collect()
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// Total bytes stored.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The cap in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replace_and_take_changed() {
        let mut s = FileStore::new(100);
        s.write("a.ppm", &[1; 10]).unwrap();
        s.write("b.bin", &[2; 20]).unwrap();
        s.write("a.ppm", &[3; 30]).unwrap();
        assert_eq!(s.total(), 50);
        let ch = s.take_changed();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0], ("a.ppm".to_string(), vec![3; 30]));
        assert_eq!(ch[1].0, "b.bin");
        assert!(s.take_changed().is_empty());
        assert_eq!(s.get("b.bin"), Some(&[2u8; 20][..]));
        assert_eq!(s.names(), vec!["a.ppm".to_string(), "b.bin".to_string()]);
    }

    #[test]
    fn cap_is_enforced_and_replacement_frees_old_size() {
        let mut s = FileStore::new(100);
        s.write("x", &[0; 90]).unwrap();
        let e = s.write("y", &[0; 11]).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::Full {
                    would: 101,
                    cap: 100,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("over its cap of 100 bytes"), "{e}");
        assert_eq!(s.get("y"), None);
        // Replacing x with 100 bytes fits: its 90 old bytes are freed first.
        s.write("x", &[0; 100]).unwrap();
        assert_eq!(s.total(), 100);
        assert!(s.remove("x"));
        assert!(!s.remove("x"));
        assert_eq!(s.total(), 0);
        s.write("y", &[0; 100]).unwrap();
    }

    #[test]
    fn bad_names_are_refused() {
        let mut s = FileStore::default();
        assert_eq!(s.cap(), DEFAULT_CAP);
        for bad in ["", "a\nb", "\u{7f}"] {
            assert!(
                matches!(s.write(bad, b"x"), Err(FileError::BadName(_))),
                "{bad:?}"
            );
        }
        let long = "n".repeat(256);
        assert!(s.write(&long, b"x").is_err());
        s.write(&"n".repeat(255), b"x").unwrap();
        s.write("dir/with spaces.ppm", b"x").unwrap();
    }

    #[test]
    fn removed_file_is_not_reported_as_changed() {
        let mut s = FileStore::new(10);
        s.write("a", b"1").unwrap();
        s.remove("a");
        assert!(s.take_changed().is_empty());
    }
}
