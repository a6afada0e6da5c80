//! A small HTTP/1.1 server side: bounded request heads, static files with byte ranges.
//!
//! Every limit is explicit: the request head is at most [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] header lines; bodies are never read (a request that announces one is
//! answered and its connection closed). Paths are percent-decoded, then `.`/`..`
//! segments, NUL and backslashes are refused, and the resolved file is canonicalised and
//! must stay under its root, so a symbolic link cannot lead outside either.

use std::fs::{self, File};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Largest request head (request line + headers) accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest number of header lines accepted.
pub const MAX_HEADERS: usize = 100;
/// Chunk size for file bodies.
const COPY_CHUNK: usize = 64 * 1024;

/// Why a request head could not be read.
#[derive(Debug, Error)]
pub enum HeadError {
    /// The peer closed the connection before sending anything (normal keep-alive end).
    #[error("connection closed")]
    Eof,
    /// The head exceeded [`MAX_HEAD`] bytes or [`MAX_HEADERS`] lines.
    #[error("request head too large")]
    TooLarge,
    /// The head is not HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// An HTTP version other than 1.0 and 1.1.
    #[error("unsupported HTTP version")]
    Version,
    /// The head did not complete before its deadline (a slow sender).
    #[error("request head not received in time")]
    TooSlow,
    /// The transport failed (including the idle timeout).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any `name` header lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection may serve another request after this one.
    pub fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    /// Whether the request announces a body (which this server never reads).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }

    /// The path part of the target (before `?` or `#`).
    pub fn path(&self) -> &str {
        let end = self.target.find(['?', '#']).unwrap_or(self.target.len());
        &self.target[..end]
    }

    /// The query part of the target including its `?`, or `""`.
    pub fn query(&self) -> &str {
        match self.target.find('?') {
            Some(i) => {
                let end = self
                    .target
                    .find('#')
                    .filter(|&h| h > i)
                    .unwrap_or(self.target.len());
                &self.target[i..end]
            }
            None => "",
        }
    }
}

/// Reads one request head (up to and including the blank line) from `r`.
/// Blank lines before the request line are skipped (RFC 9112 §2.2). Once the first byte
/// has arrived the whole head must arrive within `budget` (checked after each read, so
/// the transport's own read timeout bounds a single wait).
pub fn read_head<R: BufRead>(r: &mut R, budget: Duration) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(HeadError::TooSlow);
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(if head.is_empty() {
                    HeadError::Eof
                } else {
                    HeadError::Io(e)
                })
            }
        };
        if buf.is_empty() {
            return Err(if head.is_empty() {
                HeadError::Eof
            } else {
                HeadError::Malformed("connection closed inside the request head")
            });
        }
        let mut used = 0;
        let mut done = false;
        for &b in buf {
            used += 1;
            if head.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            head.push(b);
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                done = true;
                break;
            }
            if head.len() >= MAX_HEAD {
                break;
            }
        }
        r.consume(used);
        if deadline.is_none() && !head.is_empty() {
            deadline = Some(Instant::now() + budget);
        }
        if done {
            return Ok(head);
        }
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses a request head read by [`read_head`].
pub fn parse_request(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::Malformed("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(HeadError::Malformed("bad method"));
    }
    if target.is_empty() || target.chars().any(|c| c.is_ascii_control()) {
        return Err(HeadError::Malformed("bad request target"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("bad HTTP version")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(HeadError::Malformed("obsolete header folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line without ':'"))?;
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    })
}

/// Reason phrase of a status code this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// MIME type for a file name, by extension.
pub fn mime_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "ppm" => "image/x-portable-pixmap",
        "woff2" => "font/woff2",
        // Disk and firmware images (.iso, .img, .bin, .qcow2, .raw ...) and all else.
        _ => "application/octet-stream",
    }
}

/// What a `Range` header asks of a file of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Send the whole file (no range, an ignored range, or several ranges).
    Full,
    /// Send bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// Digits only; saturates at `u64::MAX` (a huge position is still a position).
fn parse_pos(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// Interprets a `Range` header for a file of `len` bytes. Only a single `bytes=` range
/// is honoured; syntactically invalid or multi-range headers are ignored (RFC 9110
/// §14.2 lets a server ignore Range), so they give [`RangeSpec::Full`].
pub fn parse_range(header: Option<&str>, len: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| h[6..].trim())
    else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last `n` bytes.
        let Some(n) = parse_pos(last) else {
            return RangeSpec::Full;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(start) = parse_pos(first) else {
        return RangeSpec::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse_pos(last) {
            Some(e) if e >= start => e,
            _ => return RangeSpec::Full,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Partial {
        start,
        end: end.min(len - 1),
    }
}

/// Formats a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Days since the epoch to a proleptic Gregorian date, counting in 400-year eras
    // whose years start on 1 March (so the leap day is last).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_name = MONTHS[(month - 1).clamp(0, 11) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {hh:02}:{mm:02}:{ss:02} GMT")
}

/// A response body.
pub enum Body {
    /// No body bytes (also for HEAD).
    Empty,
    /// In-memory bytes.
    Bytes(Vec<u8>),
    /// `len` bytes of `file` starting at its current position.
    File {
        /// The open file, already positioned.
        file: File,
        /// Bytes to send.
        len: u64,
    },
}

impl Body {
    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of body bytes the response promises.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// A response about to be written.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (the common ones are added by [`write_response`]).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A plain-text response, typically an error with a one-line explanation.
    pub fn text(status: u16, msg: &str) -> Self {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_string())],
            body: Body::Bytes(format!("{status} {}: {msg}\n", reason(status)).into_bytes()),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Writes `resp` with the common headers; the body is omitted when `head_only`.
/// Returns the number of body bytes sent.
pub fn write_response<W: Write>(
    w: &mut W,
    resp: Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<u64> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let len = resp.body.len();
    let mut common: Vec<(&str, String)> = vec![
        (
            "Server",
            concat!("wasm86-bridge/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
        ("Date", http_date(SystemTime::now())),
        ("Cross-Origin-Opener-Policy", "same-origin".to_string()),
        ("Cross-Origin-Embedder-Policy", "require-corp".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ];
    if resp.status != 304 {
        common.push(("Content-Length", len.to_string()));
    }
    common.push((
        "Connection",
        if keep_alive { "keep-alive" } else { "close" }.to_string(),
    ));
    for (n, v) in common
        .iter()
        .map(|(n, v)| (*n, v))
        .chain(resp.headers.iter().map(|(n, v)| (*n, v)))
    {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if head_only {
        w.flush()?;
        return Ok(0);
    }
    let sent = match resp.body {
        Body::Empty => 0,
        Body::Bytes(b) => {
            w.write_all(&b)?;
            b.len() as u64
        }
        Body::File { file, len } => {
            let mut src = file.take(len);
            let mut buf = vec![0u8; COPY_CHUNK];
            let mut sent = 0u64;
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                w.write_all(&buf[..n])?;
                sent += n as u64;
            }
            if sent != len {
                // The file shrank while being sent: the promised length cannot be
                // kept, so the connection must not be reused.
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
            }
            sent
        }
    };
    w.flush()?;
    Ok(sent)
}

/// The three directory roots.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Served at `/`.
    pub www: PathBuf,
    /// Served at `/pkg/`.
    pub pkg: PathBuf,
    /// Served at `/images/`.
    pub images: PathBuf,
}

/// Why a path does not lead to a file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Not an origin-form path, or a `.`/`..` segment, NUL, backslash or bad escape.
    #[error("path not allowed")]
    BadPath,
    /// No such file.
    #[error("not found")]
    NotFound,
    /// The file resolves outside its root (a symbolic link).
    #[error("outside the served directory")]
    Outside,
    /// A directory asked for without its trailing slash: redirect there.
    #[error("directory needs a trailing slash")]
    AddSlash,
}

/// Decodes `%XX` escapes; `None` on a bad escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps a request path to a file under one of the roots.
pub fn resolve(roots: &Roots, path: &str) -> Result<PathBuf, ResolveError> {
    if !path.starts_with('/') {
        return Err(ResolveError::BadPath);
    }
    let decoded = percent_decode(path).ok_or(ResolveError::BadPath)?;
    if decoded.contains(['\0', '\\']) {
        return Err(ResolveError::BadPath);
    }
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err(ResolveError::BadPath),
            s => segments.push(s),
        }
    }
    let trailing_slash = decoded.ends_with('/');
    let (root, rest) = match segments.first() {
        Some(&"pkg") => (&roots.pkg, &segments[1..]),
        Some(&"images") => (&roots.images, &segments[1..]),
        _ => (&roots.www, &segments[..]),
    };
    let root = fs::canonicalize(root).map_err(|_| ResolveError::NotFound)?;
    let mut candidate = root.clone();
    for seg in rest {
        candidate.push(seg);
    }
    let mut real = fs::canonicalize(&candidate).map_err(|_| ResolveError::NotFound)?;
    if !real.starts_with(&root) {
        return Err(ResolveError::Outside);
    }
    if real.is_dir() {
        if !trailing_slash && !rest.is_empty() {
            return Err(ResolveError::AddSlash);
        }
        real = fs::canonicalize(real.join("index.html")).map_err(|_| ResolveError::NotFound)?;
        if !real.starts_with(&root) {
            return Err(ResolveError::Outside);
        }
    }
    if !real.is_file() {
        return Err(ResolveError::NotFound);
    }
    Ok(real)
}

/// Builds the response for a GET or HEAD of a static path.
pub fn serve_static(roots: &Roots, req: &Request) -> Response {
    let path = req.path();
    let file_path = match resolve(roots, path) {
        Ok(p) => p,
        Err(ResolveError::BadPath) => return Response::text(400, "path not allowed"),
        Err(ResolveError::NotFound) => {
            return Response::text(404, &format!("no file at {}", path.escape_debug()))
        }
        Err(ResolveError::Outside) => {
            return Response::text(403, "the path leads outside the served directory")
        }
        Err(ResolveError::AddSlash) => {
            return Response::text(301, "directory")
                .with("Location", format!("{path}/{}", req.query()))
        }
    };
    let (mut file, meta) = match File::open(&file_path).and_then(|f| {
        let m = f.metadata()?;
        Ok((f, m))
    }) {
        Ok(x) => x,
        Err(_) => return Response::text(404, "file cannot be opened"),
    };
    let len = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime_secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{len:x}-{mtime_secs:x}\"");
    let last_modified = http_date(mtime);
    let mime = mime_type(&file_path);
    let common = |r: Response| {
        r.with("Accept-Ranges", "bytes")
            .with("ETag", etag.clone())
            .with("Last-Modified", last_modified.clone())
            .with("Cache-Control", "no-cache")
    };
    if let Some(inm) = req.header("if-none-match") {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return common(Response {
                status: 304,
                headers: Vec::new(),
                body: Body::Empty,
            });
        }
    }
    let mut range = parse_range(req.header("range"), len);
    if let Some(ir) = req.header("if-range") {
        if ir != etag && ir != last_modified {
            range = RangeSpec::Full;
        }
    }
    match range {
        RangeSpec::Full => common(Response {
            status: 200,
            headers: vec![("Content-Type", mime.to_string())],
            body: Body::File { file, len },
        }),
        RangeSpec::Partial { start, end } => {
            if let Err(e) = io::Seek::seek(&mut file, io::SeekFrom::Start(start)) {
                return Response::text(500, &format!("seek failed: {e}"));
            }
            common(Response {
                status: 206,
                headers: vec![
                    ("Content-Type", mime.to_string()),
                    ("Content-Range", format!("bytes {start}-{end}/{len}")),
                ],
                body: Body::File {
                    file,
                    len: end - start + 1,
                },
            })
        }
        RangeSpec::Unsatisfiable => common(
            Response::text(416, &format!("the file has {len} bytes"))
                .with("Content-Range", format!("bytes */{len}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    const T: Duration = Duration::from_secs(30);

    /// Yields one byte per read, after a pause.
    struct Slow(Vec<u8>, usize);
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(&b), Some(slot)) => {
                    *slot = b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn slow_heads_hit_the_deadline() {
        let raw = b"GET / HTTP/1.1\r\nHost: slow\r\n\r\n".to_vec();
        let mut r = BufReader::new(Slow(raw.clone(), 0));
        let err = read_head(&mut r, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, HeadError::TooSlow));
        let mut r = BufReader::new(Slow(raw, 0));
        assert!(read_head(&mut r, T).is_ok());
    }

    #[test]
    fn reads_and_parses_pipelined_heads() {
        let raw = b"\r\nGET /a?x=1 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, keep-alive\r\n\r\nHEAD / HTTP/1.0\n\n";
        let mut r = BufReader::new(&raw[..]);
        let req = parse_request(&read_head(&mut r, T).unwrap()).unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/a");
        assert_eq!(req.query(), "?x=1");
        assert_eq!(req.header("HOST"), Some("h"));
        assert!(req.has_token("connection", "upgrade"));
        assert!(req.keep_alive());
        let req2 = parse_request(&read_head(&mut r, T).unwrap()).unwrap();
        assert_eq!((req2.method.as_str(), req2.minor), ("HEAD", 0));
        assert!(!req2.keep_alive());
        assert!(matches!(read_head(&mut r, T), Err(HeadError::Eof)));
    }

    #[test]
    fn head_limits_and_malformed_heads() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert!(matches!(
            read_head(&mut BufReader::new(&big[..]), T),
            Err(HeadError::TooLarge)
        ));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(
            parse_request(many.as_bytes()),
            Err(HeadError::TooLarge)
        ));
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\xff: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Version)
        ));
        let truncated = b"GET / HTTP/1.1\r\nHost";
        assert!(matches!(
            read_head(&mut BufReader::new(&truncated[..]), T),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let p = |s, e| Partial { start: s, end: e };
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), p(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 100), p(10, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), p(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), p(0, 99));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), p(50, 99));
        assert_eq!(parse_range(Some("Bytes=99-99"), 100), p(99, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 100),
            Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=0-99999999999999999999999"), 100),
            p(0, 99)
        );
        assert_eq!(parse_range(Some("bytes=9-0"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 100), Full);
        assert_eq!(parse_range(Some("bytes=-"), 100), Full);
        assert_eq!(parse_range(Some("bytes"), 100), Full);
        assert_eq!(parse_range(Some("é"), 100), Full);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn mime_types() {
        for (name, mime) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a.JS", "text/javascript; charset=utf-8"),
            ("w.mjs", "text/javascript; charset=utf-8"),
            ("s.css", "text/css; charset=utf-8"),
            ("m.json", "application/json"),
            ("x_bg.wasm", "application/wasm"),
            ("d.iso", "application/octet-stream"),
            ("d.img", "application/octet-stream"),
            ("bios.bin", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(mime_type(Path::new(name)), mime, "{name}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%2e%2E").as_deref(), Some("/.."));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        assert_eq!(percent_decode("/%+1"), None);
        assert_eq!(percent_decode("/%ff"), None);
        assert_eq!(percent_decode("/%c3%a9").as_deref(), Some("/é"));
    }
}
