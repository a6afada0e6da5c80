//! The shared conformance report: a Markdown file with one section per tool (single-step,
//! ALU differential, fuzzer). Each tool replaces only its own section, so the CPU engineer
//! always sees the latest result of every tool.

use std::path::Path;

/// Environment variable naming the report file that the tests update (unset: no report).
pub const REPORT_ENV: &str = "WASM86_CONFORMANCE_REPORT";

fn begin(name: &str) -> String {
    format!("<!-- begin {name} -->")
}

fn end(name: &str) -> String {
    format!("<!-- end {name} -->")
}

/// Returns `doc` with section `name` replaced by `body` (appended if absent).
pub fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let (b, e) = (begin(name), end(name));
    let block = format!("{b}\n{}\n{e}", body.trim_end());
    if let (Some(s), Some(t)) = (doc.find(&b), doc.find(&e)) {
        if s < t {
            return format!("{}{block}{}", &doc[..s], &doc[t + e.len()..]);
        }
    }
    let mut out = if doc.trim().is_empty() {
        "# wasm86 CPU conformance report\n\nWritten by `wasm86-conformance`; each section is \
         replaced by the tool that owns it.\n"
            .to_string()
    } else {
        doc.trim_end().to_string() + "\n"
    };
    out.push('\n');
    out.push_str(&block);
    out.push('\n');
    out
}

/// Replaces section `name` of the report at `path` (creating the file if needed).
pub fn update(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let doc = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    std::fs::write(path, replace_section(&doc, name, body))
}

/// Updates section `name` of the report named by [`REPORT_ENV`], if set. Errors are printed,
/// not returned: a report is a convenience, never a reason for a test to fail.
pub fn update_from_env(name: &str, body: &str) {
    if let Some(p) = std::env::var_os(REPORT_ENV) {
        if let Err(e) = update(Path::new(&p), name, body) {
            eprintln!("could not update report {}: {e}", Path::new(&p).display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_independently() {
        let d = replace_section("", "singlestep", "one");
        let d = replace_section(&d, "alu", "two");
        assert!(d.contains("one") && d.contains("two"));
        let d2 = replace_section(&d, "singlestep", "three\n");
        assert!(!d2.contains("one"));
        assert!(d2.contains("three") && d2.contains("two"));
        assert!(d2.find("three").unwrap() < d2.find("two").unwrap());
        assert_eq!(replace_section(&d2, "singlestep", "three"), d2);
    }

    #[test]
    fn update_writes_file() {
        let dir = std::env::temp_dir().join(format!("wasm86-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.md");
        update(&p, "fuzz", "hello").unwrap();
        update(&p, "fuzz", "again").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("again") && !s.contains("hello"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
