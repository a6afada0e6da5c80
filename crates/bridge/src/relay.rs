//! The QMP relay: one browser worker on the `/qmp` WebSocket, QMP clients on unix/TCP.
//!
//! The [`Hub`] holds the single worker link and the single open client. A client is
//! "open" from the moment the bridge sends `{"type":"open","client":N}` until it sends
//! `{"type":"close","client":N}`; while one client is open every other client (of any
//! endpoint) waits, because the relay protocol has no client tag on binary frames.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::QmpEndpoint;
use crate::ws::{
    encode_close, encode_frame, FrameReader, Message, CLOSE_GOING_AWAY, CLOSE_NORMAL, OP_BINARY,
    OP_PONG, OP_TEXT,
};

/// Largest WebSocket frame accepted from the worker.
pub const MAX_WORKER_FRAME: usize = 1 << 20;
/// Largest text (control) message accepted from the worker.
pub const MAX_WORKER_TEXT: usize = 64 * 1024;
/// Client bytes buffered while the client waits for the VM; beyond this the bridge stops
/// reading the client (its writes then block) until the client is opened.
pub const MAX_PENDING: usize = 1 << 20;
/// A client or worker that accepts no bytes for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After `close N` the next client is opened only this much later, and VM bytes that
/// arrive meanwhile (late output of session N) are dropped instead of reaching client
/// N+1. Binary frames carry no client number, so this is a time bound, not a proof.
pub const REOPEN_GAP: Duration = Duration::from_millis(100);
/// Client read size.
const READ_CHUNK: usize = 64 * 1024;

/// A QMP client connection: TCP or unix.
#[derive(Debug)]
pub enum ClientStream {
    /// TCP client.
    Tcp(TcpStream),
    /// Unix-socket client.
    Unix(UnixStream),
}

impl ClientStream {
    /// A second handle to the same connection.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            ClientStream::Tcp(s) => ClientStream::Tcp(s.try_clone()?),
            ClientStream::Unix(s) => ClientStream::Unix(s.try_clone()?),
        })
    }

    /// Shuts down both directions; errors (already closed) are ignored.
    pub fn shutdown(&self) {
        let _ = match self {
            ClientStream::Tcp(s) => s.shutdown(Shutdown::Both),
            ClientStream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => s.set_write_timeout(d),
            ClientStream::Unix(s) => s.set_write_timeout(d),
        }
    }

    /// Writes all of `buf` through a shared reference.
    pub fn write_all_shared(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => (&*s).write_all(buf),
            ClientStream::Unix(s) => (&*s).write_all(buf),
        }
    }

    fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => (&*s).read(buf),
            ClientStream::Unix(s) => (&*s).read(buf),
        }
    }
}

/// The sending half of the worker's WebSocket. Frames are written whole under a lock.
#[derive(Debug)]
pub struct WorkerWriter {
    stream: Mutex<TcpStream>,
}

impl WorkerWriter {
    /// Wraps the worker's socket (a write timeout is set on it).
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        Self {
            stream: Mutex::new(stream),
        }
    }

    /// Sends one encoded frame; a failed write shuts the socket down, which ends the
    /// worker's reader and detaches it.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let r = s.write_all(frame).and_then(|()| s.flush());
        if r.is_err() {
            let _ = s.shutdown(Shutdown::Both);
        }
        r
    }

    /// Sends a text (control) frame.
    pub fn send_text(&self, text: &str) -> io::Result<()> {
        self.send(&encode_frame(OP_TEXT, text.as_bytes()))
    }

    /// Sends a binary (QMP bytes) frame.
    pub fn send_binary(&self, data: &[u8]) -> io::Result<()> {
        self.send(&encode_frame(OP_BINARY, data))
    }

    /// Sends a close frame and shuts the socket down.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.send(&encode_close(code, reason));
        self.shutdown();
    }

    /// Shuts the socket down without a close frame.
    pub fn shutdown(&self) {
        let s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// The `{"type":"open","client":N}` control message.
pub fn open_message(client: u32) -> String {
    serde_json::json!({"type": "open", "client": client}).to_string()
}

/// The `{"type":"close","client":N}` control message.
pub fn close_message(client: u32) -> String {
    serde_json::json!({"type": "close", "client": client}).to_string()
}

struct WorkerLink {
    gen: u64,
    out: Arc<WorkerWriter>,
}

struct OpenClient {
    id: u32,
    gen: u64,
    stream: Arc<ClientStream>,
}

struct HubState {
    worker: Option<WorkerLink>,
    next_gen: u64,
    open: Option<OpenClient>,
    next_client: u32,
    /// No client is opened before this instant (the quiet gap after a `close`).
    reopen_at: Instant,
}

/// Shared relay state: at most one worker and at most one open client.
pub struct Hub {
    state: Mutex<HubState>,
    cond: Condvar,
    verbose: bool,
}

impl Hub {
    /// An empty hub; `verbose` logs relay events to stderr.
    pub fn new(verbose: bool) -> Self {
        Self {
            state: Mutex::new(HubState {
                worker: None,
                next_gen: 1,
                open: None,
                next_client: 1,
                reopen_at: Instant::now(),
            }),
            cond: Condvar::new(),
            verbose,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a worker is connected now.
    pub fn has_worker(&self) -> bool {
        self.lock().worker.is_some()
    }

    fn is_current(&self, gen: u64) -> bool {
        self.lock().worker.as_ref().is_some_and(|w| w.gen == gen)
    }

    /// Installs a new worker, replacing (and closing) any previous one and dropping the
    /// client that was open on it. Returns the worker's generation.
    fn attach_worker(&self, out: Arc<WorkerWriter>) -> u64 {
        let (old, stale_client, gen) = {
            let mut st = self.lock();
            let gen = st.next_gen;
            st.next_gen += 1;
            let old = st.worker.replace(WorkerLink { gen, out });
            let stale = st.open.take().map(|o| o.stream);
            (old, stale, gen)
        };
        if let Some(old) = old {
            eprintln!("wasm86-bridge: a new VM connection replaces the previous one");
            old.out
                .close(CLOSE_GOING_AWAY, "replaced by a new VM connection");
        }
        if let Some(c) = stale_client {
            c.shutdown();
        }
        self.cond.notify_all();
        gen
    }

    /// Removes worker `gen` if it is still the current one and disconnects its client.
    fn detach_worker(&self, gen: u64) {
        let stale_client = {
            let mut st = self.lock();
            if st.worker.as_ref().is_none_or(|w| w.gen != gen) {
                return;
            }
            st.worker = None;
            match &st.open {
                Some(o) if o.gen == gen => st.open.take().map(|o| o.stream),
                _ => None,
            }
        };
        if let Some(c) = stale_client {
            c.shutdown();
        }
        self.cond.notify_all();
    }

    /// QMP bytes from worker `gen`: written to the open client, or dropped if none.
    fn worker_data(&self, gen: u64, data: &[u8]) {
        let target = {
            let st = self.lock();
            if st.worker.as_ref().is_none_or(|w| w.gen != gen) {
                return;
            }
            st.open
                .as_ref()
                .filter(|o| o.gen == gen)
                .map(|o| (o.id, Arc::clone(&o.stream)))
        };
        match target {
            Some((id, stream)) => {
                if let Err(e) = stream.write_all_shared(data) {
                    if self.verbose {
                        eprintln!("wasm86-bridge: qmp client {id}: write failed: {e}");
                    }
                    stream.shutdown();
                }
            }
            None => {
                if self.verbose {
                    eprintln!(
                        "wasm86-bridge: {} bytes from the VM with no client open: dropped",
                        data.len()
                    );
                }
            }
        }
    }

    /// A control message from the worker. `{"type":"close","client":N}` disconnects
    /// client N (for example after `quit`); anything else is ignored.
    fn worker_control(&self, gen: u64, text: &str) {
        let msg: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                if self.verbose {
                    eprintln!("wasm86-bridge: ignoring non-JSON control message from the VM");
                }
                return;
            }
        };
        let kind = msg.get("type").and_then(|t| t.as_str());
        let client = msg.get("client").and_then(|c| c.as_u64());
        if let (Some("close"), Some(n)) = (kind, client) {
            let stream = {
                let st = self.lock();
                st.open
                    .as_ref()
                    .filter(|o| o.gen == gen && u64::from(o.id) == n)
                    .map(|o| Arc::clone(&o.stream))
            };
            if let Some(s) = stream {
                s.shutdown();
            }
        } else if self.verbose {
            eprintln!("wasm86-bridge: ignoring control message from the VM: {text:.200}");
        }
    }
}

/// Serves an upgraded `/qmp` WebSocket until it ends. `reader` reads the socket (it may
/// hold bytes already buffered after the handshake); `stream` is its writing handle.
pub fn serve_worker<R: Read>(hub: &Hub, reader: R, stream: TcpStream, peer: &str) {
    let _ = stream.set_read_timeout(None);
    let out = Arc::new(WorkerWriter::new(stream));
    let gen = hub.attach_worker(Arc::clone(&out));
    eprintln!("wasm86-bridge: VM connected from {peer}");
    let mut frames = FrameReader::new(reader, MAX_WORKER_FRAME, MAX_WORKER_TEXT);
    let why = loop {
        match frames.read_message() {
            Ok(Message::Binary(b)) => hub.worker_data(gen, &b),
            Ok(Message::Text(t)) => hub.worker_control(gen, &t),
            Ok(Message::Ping(p)) => {
                if out.send(&encode_frame(OP_PONG, &p)).is_err() {
                    break "write failed".to_string();
                }
            }
            Ok(Message::Pong(_)) => {}
            Ok(Message::Close(_)) => {
                out.close(CLOSE_NORMAL, "");
                break "closed by the VM".to_string();
            }
            Err(e) => {
                if let Some(code) = e.close_code() {
                    out.close(code, &e.to_string());
                }
                break e.to_string();
            }
        }
    };
    hub.detach_worker(gen);
    out.shutdown();
    eprintln!("wasm86-bridge: VM connection from {peer} ended ({why})");
}

/// Removes a unix socket file on drop, if the file is still the one that was bound.
#[derive(Debug)]
pub struct SocketFileGuard {
    path: PathBuf,
    dev_ino: Option<(u64, u64)>,
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.file_type().is_socket() && self.dev_ino == Some((m.dev(), m.ino())) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound `--qmp` endpoint.
#[derive(Debug)]
pub enum QmpListener {
    /// TCP endpoint.
    Tcp(TcpListener),
    /// Unix endpoint; the guard removes the socket file when the listener is dropped.
    Unix(UnixListener, SocketFileGuard),
}

/// Why a `--qmp` endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The path exists and is not a socket: it is never removed.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Another server is accepting connections on the socket.
    #[error("another server is listening on {0}")]
    InUse(PathBuf),
    /// The bind failed.
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The OS error.
        source: io::Error,
    },
}

fn prepare_unix_path(path: &Path) -> Result<(), EndpointError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(EndpointError::NotASocket(path.to_path_buf()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(EndpointError::InUse(path.to_path_buf()));
    }
    // A stale socket from an earlier run.
    std::fs::remove_file(path).map_err(|source| EndpointError::Bind {
        endpoint: format!("unix:{}", path.display()),
        source,
    })
}

impl QmpListener {
    /// Binds an endpoint; a stale unix socket file is removed first.
    pub fn bind(ep: &QmpEndpoint) -> Result<Self, EndpointError> {
        let bind_err = |source| EndpointError::Bind {
            endpoint: ep.to_string(),
            source,
        };
        match ep {
            QmpEndpoint::Tcp(addr) => TcpListener::bind(addr.as_str())
                .map(QmpListener::Tcp)
                .map_err(bind_err),
            QmpEndpoint::Unix(path) => {
                prepare_unix_path(path)?;
                let l = UnixListener::bind(path).map_err(bind_err)?;
                let dev_ino = std::fs::symlink_metadata(path)
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
                let guard = SocketFileGuard {
                    path: path.clone(),
                    dev_ino,
                };
                Ok(QmpListener::Unix(l, guard))
            }
        }
    }

    /// The endpoint as bound, e.g. `tcp:127.0.0.1:40123` or `unix:/tmp/qmp.sock`.
    pub fn describe(&self) -> String {
        match self {
            QmpListener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp:{a}"),
                Err(_) => "tcp:?".to_string(),
            },
            QmpListener::Unix(_, g) => format!("unix:{}", g.path.display()),
        }
    }

    fn accept(&self) -> io::Result<ClientStream> {
        match self {
            QmpListener::Tcp(l) => l.accept().map(|(s, _)| ClientStream::Tcp(s)),
            QmpListener::Unix(l, _) => l.accept().map(|(s, _)| ClientStream::Unix(s)),
        }
    }
}

/// Accepts clients on `listener` one at a time, forever: while a client is served the
/// next one waits in the listen backlog (connected, but not greeted), as with QEMU.
pub fn run_endpoint(hub: &Hub, listener: &QmpListener) {
    let name = listener.describe();
    loop {
        match listener.accept() {
            Ok(client) => serve_client(hub, client, &name),
            Err(e) => {
                eprintln!("wasm86-bridge: accept on {name} failed: {e}");
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Chunks read from a client; `None` marks its end.
type ClientChunks = Receiver<Option<Vec<u8>>>;

/// Reads a client into a bounded channel.
fn spawn_client_reader(stream: ClientStream) -> io::Result<(ClientChunks, thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<Option<Vec<u8>>>(16);
    let handle = thread::Builder::new()
        .name("qmp-client-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match stream.read_shared(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(None);
        })?;
    Ok((rx, handle))
}

/// Serves one QMP client: waits for a VM and a free slot, opens a session on the worker,
/// relays bytes until either side ends, then closes the session.
pub fn serve_client(hub: &Hub, client: ClientStream, endpoint: &str) {
    let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
    let client = Arc::new(client);
    let (rx, reader) = match client.try_clone().and_then(spawn_client_reader) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("wasm86-bridge: cannot serve a client on {endpoint}: {e}");
            client.shutdown();
            return;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut told_waiting = false;
    let opened = loop {
        {
            let mut st = hub.lock();
            let now = Instant::now();
            if st.open.is_none() && now >= st.reopen_at {
                if let Some(w) = &st.worker {
                    let (gen, out) = (w.gen, Arc::clone(&w.out));
                    let id = st.next_client;
                    st.next_client = st.next_client.checked_add(1).unwrap_or(1);
                    st.open = Some(OpenClient {
                        id,
                        gen,
                        stream: Arc::clone(&client),
                    });
                    break Some((id, gen, out));
                }
            }
            if st.worker.is_none() && !told_waiting {
                told_waiting = true;
                eprintln!(
                    "wasm86-bridge: QMP client on {endpoint} waits for a VM to connect to /qmp"
                );
            }
            let wait = if st.open.is_none() && st.worker.is_some() {
                st.reopen_at.saturating_duration_since(now)
            } else {
                Duration::from_millis(200)
            };
            let _ = hub.cond.wait_timeout(
                st,
                wait.clamp(Duration::from_millis(1), Duration::from_millis(200)),
            );
        }
        // Notice a client that leaves while waiting; keep what it already sent.
        let mut gone = false;
        while pending.len() < MAX_PENDING {
            match rx.try_recv() {
                Ok(Some(bytes)) => pending.extend_from_slice(&bytes),
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if gone {
            break None;
        }
    };
    if let Some((id, gen, out)) = opened {
        if hub.verbose {
            eprintln!("wasm86-bridge: QMP client {id} on {endpoint} opened");
        }
        let mut ok = out.send_text(&open_message(id)).is_ok();
        if ok && !pending.is_empty() {
            ok = out.send_binary(&pending).is_ok();
        }
        while ok {
            match rx.recv() {
                Ok(Some(bytes)) => {
                    ok = hub.is_current(gen) && out.send_binary(&bytes).is_ok();
                }
                Ok(None) | Err(_) => break,
            }
        }
        if hub.is_current(gen) {
            let _ = out.send_text(&close_message(id));
        }
        {
            let mut st = hub.lock();
            if st.open.as_ref().is_some_and(|o| o.id == id) {
                st.open = None;
                st.reopen_at = Instant::now() + REOPEN_GAP;
            }
        }
        hub.cond.notify_all();
        if hub.verbose {
            eprintln!("wasm86-bridge: QMP client {id} on {endpoint} closed");
        }
    } else if hub.verbose {
        eprintln!("wasm86-bridge: QMP client on {endpoint} left before a VM connected");
    }
    client.shutdown();
    drop(rx);
    let _ = reader.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_are_the_documented_json() {
        let v: serde_json::Value = serde_json::from_str(&open_message(7)).unwrap();
        assert_eq!(v, serde_json::json!({"type": "open", "client": 7}));
        let v: serde_json::Value = serde_json::from_str(&close_message(7)).unwrap();
        assert_eq!(v, serde_json::json!({"type": "close", "client": 7}));
    }

    #[test]
    fn unix_bind_refuses_regular_files_and_live_sockets_and_removes_stale_ones() {
        let dir = std::env::temp_dir().join(format!("wasm86-bridge-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"keep me").unwrap();
        let err = QmpListener::bind(&QmpEndpoint::Unix(file.clone())).unwrap_err();
        assert!(matches!(err, EndpointError::NotASocket(_)));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let sock = dir.join("q.sock");
        let live = QmpListener::bind(&QmpEndpoint::Unix(sock.clone())).unwrap();
        let err = QmpListener::bind(&QmpEndpoint::Unix(sock.clone())).unwrap_err();
        assert!(matches!(err, EndpointError::InUse(_)));
        drop(live);
        assert!(!sock.exists(), "the guard removes the socket file");

        // A stale socket: bound, then its listener closed without removing the file.
        let stale = UnixListener::bind(&sock).unwrap();
        drop(stale);
        assert!(sock.exists());
        let l = QmpListener::bind(&QmpEndpoint::Unix(sock.clone())).unwrap();
        assert_eq!(l.describe(), format!("unix:{}", sock.display()));
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
