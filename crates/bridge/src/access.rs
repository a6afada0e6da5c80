//! The access record (`--access-log FILE`): one line per HTTP response, so that a test (or a
//! person) can see exactly which bytes of which file left the bridge.
//!
//! Each line is five fields separated by one space:
//!
//! ```text
//! METHOD PATH STATUS RANGE BYTES
//! GET /images/linux/linux-hd.img 206 65536-131071 65536
//! HEAD /images/linux/linux-hd.img 200 - 0
//! ```
//!
//! - `PATH` is the request target's path as sent (no query; never holds a space or a control
//!   character: such request lines are refused before they get here).
//! - `RANGE` is `FIRST-LAST` (inclusive) of the file bytes in the body: the `Content-Range` of a
//!   206, the whole file for a 200 with a body; `-` when no body is sent (HEAD, 304, errors).
//! - `BYTES` is the number of body bytes written to the socket, or `aborted` when the write
//!   failed part-way (the peer went away).
//!
//! The file is opened for appending (created if missing); each line is written with one
//! `write` call under a lock, so lines of concurrent connections never interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

/// One response, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The status code sent.
    pub status: u16,
    /// First and last byte of the file in the body, inclusive.
    pub range: Option<(u64, u64)>,
    /// Body bytes written; `None` when the write failed part-way.
    pub bytes: Option<u64>,
}

impl AccessEntry {
    /// The record's line, with its newline.
    pub fn line(&self) -> String {
        let range = match self.range {
            Some((a, b)) => format!("{a}-{b}"),
            None => "-".to_string(),
        };
        let bytes = match self.bytes {
            Some(n) => n.to_string(),
            None => "aborted".to_string(),
        };
        // Method and path are checked tokens; escape anyway so that a line is always one line
        // of five fields.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_whitespace() || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        };
        format!(
            "{} {} {} {range} {bytes}\n",
            clean(&self.method),
            clean(&self.path),
            self.status
        )
    }

    /// Parses a line written by [`AccessEntry::line`] (without or with its newline).
    pub fn parse(line: &str) -> Option<AccessEntry> {
        let mut f = line.trim_end_matches(['\n', '\r']).split(' ');
        let (Some(method), Some(path), Some(status), Some(range), Some(bytes), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return None;
        };
        let range = match range {
            "-" => None,
            r => {
                let (a, b) = r.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            }
        };
        let bytes = match bytes {
            "aborted" => None,
            n => Some(n.parse().ok()?),
        };
        Some(AccessEntry {
            method: method.to_string(),
            path: path.to_string(),
            status: status.parse().ok()?,
            range,
            bytes,
        })
    }
}

/// Parses `bytes FIRST-LAST/LEN` (a `Content-Range` the bridge sends) into `(FIRST, LAST)`.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, _len) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The open access record.
#[derive(Debug)]
pub struct AccessLog {
    file: Mutex<File>,
}

impl AccessLog {
    /// Opens (creates, appends to) the record at `path`.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry. A failed write is reported once per failure on stderr and
    /// otherwise ignored: the record never stops the server.
    pub fn record(&self, entry: &AccessEntry) {
        let line = entry.line();
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!("wasm86-bridge: cannot write the access log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let e = AccessEntry {
            method: "GET".into(),
            path: "/images/linux/linux-hd.img".into(),
            status: 206,
            range: Some((65536, 131071)),
            bytes: Some(65536),
        };
        assert_eq!(
            e.line(),
            "GET /images/linux/linux-hd.img 206 65536-131071 65536\n"
        );
        assert_eq!(AccessEntry::parse(&e.line()), Some(e));
        let head = AccessEntry {
            method: "HEAD".into(),
            path: "/x".into(),
            status: 200,
            range: None,
            bytes: None,
        };
        assert_eq!(head.line(), "HEAD /x 200 - aborted\n");
        assert_eq!(AccessEntry::parse(&head.line()), Some(head));
        let odd = AccessEntry {
            method: "GET".into(),
            path: "/a b\nc".into(),
            status: 404,
            range: None,
            bytes: Some(10),
        };
        assert_eq!(odd.line(), "GET /a_b_c 404 - 10\n");
        for bad in [
            "",
            "GET / 200 - 1 extra",
            "GET / x - 1",
            "GET / 200 1 1",
            "GET / 200 - -",
        ] {
            assert_eq!(AccessEntry::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9)));
        assert_eq!(parse_content_range(" bytes 5-5/*"), Some((5, 5)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn the_record_appends_whole_lines() {
        let path = std::env::temp_dir().join(format!("wasm86-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::open(&path).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..50u64 {
                        log.record(&AccessEntry {
                            method: "GET".into(),
                            path: format!("/t{t}"),
                            status: 206,
                            range: Some((i * 10, i * 10 + 9)),
                            bytes: Some(10),
                        });
                    }
                });
            }
        });
        drop(log);
        let again = AccessLog::open(&path).unwrap();
        again.record(&AccessEntry {
            method: "HEAD".into(),
            path: "/last".into(),
            status: 200,
            range: None,
            bytes: Some(0),
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let entries: Vec<AccessEntry> = text
            .lines()
            .map(|l| AccessEntry::parse(l).expect("a whole line"))
            .collect();
        assert_eq!(entries.len(), 201);
        assert_eq!(entries[200].path, "/last", "opening again appends");
        for t in 0..4 {
            let n = entries
                .iter()
                .filter(|e| e.path == format!("/t{t}"))
                .count();
            assert_eq!(n, 50);
        }
    }
}
