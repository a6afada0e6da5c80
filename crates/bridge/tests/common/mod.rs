//! Test helpers: a temporary directory, the real bridge binary as a child process, a raw
//! HTTP client and a minimal WebSocket client written independently of the crate.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("w86b-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bridge binary running as a child; killed on drop.
pub struct Bridge {
    child: Child,
    pub addr: SocketAddr,
    pub qmp: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wasm86-bridge")
}

impl Bridge {
    /// Starts the bridge on 127.0.0.1:0 with `args` added, and waits for its banner.
    pub fn start(args: &[&str]) -> Bridge {
        let mut child = Command::new(bin())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasm86-bridge");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected banner {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .parse()
            .unwrap();
        let n_qmp = args.iter().filter(|a| **a == "--qmp").count();
        let mut qmp = Vec::new();
        for _ in 0..n_qmp {
            line.clear();
            out.read_line(&mut line).unwrap();
            qmp.push(
                line.trim()
                    .strip_prefix("qmp on ")
                    .expect("qmp line")
                    .to_string(),
            );
        }
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Bridge {
            child,
            addr,
            qmp,
            stderr,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("stderr never contained {needle:?}: {}", self.stderr());
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
}

/// Reads a response head; returns status and lower-cased headers.
pub fn read_resp_head<R: BufRead>(r: &mut R) -> (u16, HashMap<String, String>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    (status, headers)
}

/// Reads one response from a keep-alive connection.
pub fn read_resp<R: BufRead>(r: &mut R, head_request: bool) -> Resp {
    let (status, headers) = read_resp_head(r);
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![
        0u8;
        if head_request || status == 304 {
            0
        } else {
            len
        }
    ];
    r.read_exact(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn raw_request(addr: SocketAddr, raw: &str) -> Resp {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(raw.as_bytes()).unwrap();
    let head = raw.starts_with("HEAD ");
    read_resp(&mut BufReader::new(s), head)
}

/// `GET path` with extra header lines.
pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// A minimal client-side WebSocket (masked frames out, unmasked in).
pub struct Ws {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

/// A received frame: opcode and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Sends an upgrade request for `/qmp` with the given Origin header line (or none).
pub fn ws_handshake(
    addr: SocketAddr,
    origin: Option<&str>,
) -> (Resp, BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let origin_line = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /qmp HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{origin_line}\r\n"
    );
    (&s).write_all(req.as_bytes()).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let (status, headers) = read_resp_head(&mut reader);
    let mut body = Vec::new();
    if status != 101 {
        let len: usize = headers
            .get("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
    }
    (
        Resp {
            status,
            headers,
            body,
        },
        reader,
        s,
    )
}

impl Ws {
    /// Connects as the VM's worker with the bridge's own origin.
    pub fn connect(bridge: &Bridge) -> Ws {
        let (resp, reader, stream) = ws_handshake(bridge.addr, Some(&bridge.origin()));
        assert_eq!(
            resp.status,
            101,
            "{:?}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(resp.header("sec-websocket-accept"), Some(WS_ACCEPT));
        Ws { reader, stream }
    }

    pub fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first_byte];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(0x82, payload);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(0x81, text.as_bytes());
    }

    /// Reads one frame; `None` on timeout or end of stream.
    pub fn try_read(&mut self, timeout: Duration) -> Option<Frame> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut head = [0u8; 2];
        if self.reader.read_exact(&mut head).is_err() {
            return None;
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.reader.read_exact(&mut payload).unwrap();
        assert_ne!(head[0] & 0x80, 0, "server frames have FIN set");
        Some(Frame {
            opcode: head[0] & 0x0F,
            payload,
        })
    }

    pub fn read(&mut self) -> Frame {
        self.try_read(Duration::from_secs(10))
            .expect("a frame from the bridge")
    }

    /// Reads a text frame and parses it as JSON.
    pub fn read_control(&mut self) -> serde_json::Value {
        let f = self.read();
        assert_eq!(f.opcode, 1, "expected a text frame, got {f:?}");
        serde_json::from_slice(&f.payload).unwrap()
    }

    /// Reads binary frames until `n` bytes have arrived.
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let f = self.read();
            assert_eq!(f.opcode, 2, "expected a binary frame, got {f:?}");
            got.extend_from_slice(&f.payload);
        }
        got
    }
}

/// The greeting a fake worker sends.
pub const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 1, \"minor\": 1, \"micro\": 0}, \"package\": \"wasm86 test\"}, \"capabilities\": []}}\r\n";

/// Reads from `r` until `\r\n`, returning the line including it.
pub fn read_line_crlf<R: Read>(r: &mut R) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        let n = r.read(&mut b).unwrap();
        assert_ne!(
            n,
            0,
            "connection ended after {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}
