//! The HTTP/WebSocket listener: static files, the `/qmp` upgrade, and the QMP endpoints.

use std::io::{self, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use thiserror::Error;

use crate::access::{parse_content_range, AccessEntry, AccessLog};
use crate::config::Config;
use crate::http::{
    parse_request, read_head, serve_static, write_response, HeadError, Request, Response, Roots,
};
use crate::relay::{run_endpoint, serve_worker, EndpointError, Hub, QmpListener};
use crate::ws::{accept_key, valid_client_key};

/// Most simultaneous HTTP connections (the VM's WebSocket included); more get 503.
pub const MAX_CONNECTIONS: usize = 128;
/// An idle keep-alive connection is closed after this long; also the longest single
/// wait for request bytes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A request head must be complete this long after its first byte.
pub const HEAD_BUDGET: Duration = Duration::from_secs(30);
/// A peer that accepts no response bytes for this long is dropped.
pub const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The WebSocket path the VM's worker connects to.
pub const QMP_PATH: &str = "/qmp";

/// Why the bridge could not start or stopped.
#[derive(Debug, Error)]
pub enum BridgeError {
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from `--listen`.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// A `--qmp` endpoint could not be bound.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
    /// The `--access-log` file could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        /// The path given.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Which `Origin` values may open the `/qmp` WebSocket.
///
/// The bridge's own origins are `http://IP:PORT` of the bound address and, when it is a
/// loopback address, `http://localhost:PORT`, `http://127.0.0.1:PORT` and
/// `http://[::1]:PORT`. When bound to an unspecified address (`0.0.0.0`, `::`) an origin
/// equal to `http://` + the `Host` header is also accepted if that host is an IP literal
/// with the bridge's port, so the page works by IP from another machine while a DNS
/// name (the DNS-rebinding route) is refused. Everything else needs `--allow-origin`.
/// A request without `Origin` is refused: browsers always send one.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    own: Vec<String>,
    extra: Vec<String>,
    port: u16,
    unspecified: bool,
}

fn with_port(host: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{host}")
    } else {
        format!("http://{host}:{port}")
    }
}

fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl OriginPolicy {
    /// The policy for a bridge bound at `local` with extra allowed origins `extra`
    /// (already lower-case, as [`crate::config::parse_origin`] returns them).
    pub fn new(local: SocketAddr, extra: &[String]) -> Self {
        let port = local.port();
        let ip = local.ip();
        let mut own = vec![with_port(&host_literal(ip), port)];
        if ip.is_loopback() {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                own.push(with_port(h, port));
            }
        }
        Self {
            own,
            extra: extra.to_vec(),
            port,
            unspecified: ip.is_unspecified(),
        }
    }

    /// Whether a WebSocket upgrade with these `Origin` and `Host` headers is allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(|o| o.trim().to_ascii_lowercase()) else {
            return false;
        };
        if self.own.contains(&origin) || self.extra.contains(&origin) {
            return true;
        }
        if !self.unspecified {
            return false;
        }
        let Some(host) = host.map(|h| h.trim().to_ascii_lowercase()) else {
            return false;
        };
        let Ok(addr) = host.parse::<SocketAddr>() else {
            return false;
        };
        addr.port() == self.port && origin == with_port(&host_literal(addr.ip()), self.port)
    }
}

struct Ctx {
    roots: Roots,
    hub: Arc<Hub>,
    origins: OriginPolicy,
    verbose: bool,
    access: Option<AccessLog>,
    active: AtomicUsize,
}

/// A bound bridge, ready to [`run`](Bridge::run).
pub struct Bridge {
    listener: TcpListener,
    local: SocketAddr,
    endpoints: Vec<Arc<QmpListener>>,
    ctx: Arc<Ctx>,
}

impl Bridge {
    /// Binds the HTTP address and every QMP endpoint of `cfg`.
    pub fn bind(cfg: &Config) -> Result<Self, BridgeError> {
        let listener =
            TcpListener::bind(cfg.listen.as_str()).map_err(|source| BridgeError::Listen {
                addr: cfg.listen.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| BridgeError::Listen {
                addr: cfg.listen.clone(),
                source,
            })?;
        let access = match &cfg.access_log {
            Some(path) => Some(
                AccessLog::open(path).map_err(|source| BridgeError::AccessLog {
                    path: path.display().to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        let mut endpoints = Vec::new();
        for ep in &cfg.qmp {
            endpoints.push(Arc::new(QmpListener::bind(ep)?));
        }
        let ctx = Arc::new(Ctx {
            roots: Roots {
                www: cfg.www.clone(),
                pkg: cfg.pkg.clone(),
                images: cfg.images.clone(),
            },
            hub: Arc::new(Hub::new(cfg.verbose)),
            origins: OriginPolicy::new(local, &cfg.allow_origins),
            verbose: cfg.verbose,
            access,
            active: AtomicUsize::new(0),
        });
        Ok(Self {
            listener,
            local,
            endpoints,
            ctx,
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The bound QMP endpoints, as `unix:PATH` or `tcp:IP:PORT`.
    pub fn qmp_endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.describe()).collect()
    }

    /// Serves forever (returns only if a thread cannot be started). Unix socket files
    /// are removed when the bridge is dropped.
    pub fn run(self) -> Result<(), BridgeError> {
        for ep in &self.endpoints {
            let ep = Arc::clone(ep);
            let hub = Arc::clone(&self.ctx.hub);
            thread::Builder::new()
                .name(format!("qmp {}", ep.describe()))
                .spawn(move || run_endpoint(&hub, &ep))
                .map_err(BridgeError::Thread)?;
        }
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("wasm86-bridge: accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let ctx = Arc::clone(&self.ctx);
            if ctx.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                ctx.active.fetch_sub(1, Ordering::SeqCst);
                refuse_busy(stream);
                continue;
            }
            let spawned = thread::Builder::new().name("http".into()).spawn(move || {
                handle_connection(&ctx, stream, peer);
                ctx.active.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                self.ctx.active.fetch_sub(1, Ordering::SeqCst);
                eprintln!("wasm86-bridge: cannot start a connection thread: {e}");
            }
        }
    }
}

fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_response(
        &mut stream,
        Response::text(503, "too many connections"),
        false,
        false,
    );
}

/// What a response's body holds of its file: the `Content-Range` of a 206, the whole body of
/// a 200; nothing for HEAD and other statuses.
fn body_range(resp: &Response, head_only: bool) -> Option<(u64, u64)> {
    if head_only {
        return None;
    }
    match resp.status {
        206 => resp
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-range"))
            .and_then(|(_, v)| parse_content_range(v)),
        200 => {
            let len = resp.body.len();
            (len > 0).then(|| (0, len - 1))
        }
        _ => None,
    }
}

/// Records a response: the `--verbose` line and the `--access-log` entry. `sent` is `None`
/// when writing the response failed.
fn log(
    ctx: &Ctx,
    peer: SocketAddr,
    req: Option<&Request>,
    status: u16,
    range: Option<(u64, u64)>,
    sent: Option<u64>,
) {
    if let Some(access) = &ctx.access {
        access.record(&AccessEntry {
            method: req.map_or("-", |r| r.method.as_str()).to_string(),
            path: req.map_or("-", |r| r.path()).to_string(),
            status,
            range: range.filter(|_| sent.is_some_and(|n| n > 0)),
            bytes: sent,
        });
    }
    if !ctx.verbose {
        return;
    }
    let bytes = sent.unwrap_or(0);
    match req {
        Some(r) => eprintln!(
            "{peer} \"{} {} HTTP/1.{}\" {status} {bytes}",
            r.method.escape_debug(),
            r.target.escape_debug(),
            r.minor
        ),
        None => eprintln!("{peer} (unreadable request) {status} {bytes}"),
    }
}

fn handle_connection(ctx: &Ctx, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(HTTP_WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    loop {
        let head = match read_head(&mut reader, HEAD_BUDGET) {
            Ok(h) => h,
            Err(HeadError::Eof) | Err(HeadError::Io(_)) => return,
            Err(e) => {
                let status = match e {
                    HeadError::TooLarge => 431,
                    HeadError::TooSlow => 408,
                    _ => 400,
                };
                let sent = write_response(
                    &mut out,
                    Response::text(status, &e.to_string()),
                    false,
                    false,
                );
                log(ctx, peer, None, status, None, sent.ok());
                return;
            }
        };
        let req = match parse_request(&head) {
            Ok(r) => r,
            Err(e) => {
                let status = match e {
                    HeadError::TooLarge => 431,
                    HeadError::Version => 505,
                    _ => 400,
                };
                let sent = write_response(
                    &mut out,
                    Response::text(status, &e.to_string()),
                    false,
                    false,
                );
                log(ctx, peer, None, status, None, sent.ok());
                return;
            }
        };
        // Bodies are never read, so a request with one ends the connection.
        let keep_alive = req.keep_alive() && !req.has_body();
        if req.path() == QMP_PATH {
            match check_upgrade(ctx, &req) {
                Ok(accept) => {
                    if write_switching(&mut out, &req, &accept).is_err() {
                        return;
                    }
                    log(ctx, peer, Some(&req), 101, None, Some(0));
                    serve_worker(&ctx.hub, reader, out, &peer.to_string());
                    return;
                }
                Err(resp) => {
                    let status = resp.status;
                    let sent = write_response(&mut out, resp, req.method == "HEAD", false);
                    log(ctx, peer, Some(&req), status, None, sent.ok());
                    return;
                }
            }
        }
        let head_only = req.method == "HEAD";
        let resp = if req.method == "GET" || head_only {
            serve_static(&ctx.roots, &req)
        } else {
            Response::text(405, &format!("method {} is not allowed", req.method))
                .with("Allow", "GET, HEAD")
        };
        let status = resp.status;
        let range = body_range(&resp, head_only);
        let keep_alive = keep_alive && status != 405;
        match write_response(&mut out, resp, head_only, keep_alive) {
            Ok(sent) => log(ctx, peer, Some(&req), status, range, Some(sent)),
            Err(_) => {
                log(ctx, peer, Some(&req), status, range, None);
                return;
            }
        }
        if !keep_alive {
            return;
        }
    }
}

/// Validates a `/qmp` upgrade request; `Ok` carries `Sec-WebSocket-Accept`.
fn check_upgrade(ctx: &Ctx, req: &Request) -> Result<String, Response> {
    if req.method != "GET" {
        return Err(Response::text(405, "the QMP relay takes a WebSocket GET").with("Allow", "GET"));
    }
    if !req.has_token("upgrade", "websocket") || !req.has_token("connection", "upgrade") {
        return Err(
            Response::text(426, "this is the WebSocket endpoint of the VM's QMP relay")
                .with("Upgrade", "websocket"),
        );
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(
            Response::text(426, "only WebSocket version 13 is supported")
                .with("Sec-WebSocket-Version", "13"),
        );
    }
    let key = req.header("sec-websocket-key").unwrap_or_default();
    if !valid_client_key(key) {
        return Err(Response::text(400, "missing or invalid Sec-WebSocket-Key"));
    }
    if !ctx.origins.allows(req.header("origin"), req.header("host")) {
        eprintln!(
            "wasm86-bridge: refused a VM connection from origin {:?} (see --allow-origin)",
            req.header("origin").unwrap_or("<none>")
        );
        return Err(Response::text(
            403,
            "this origin may not connect to the QMP relay (see --allow-origin)",
        ));
    }
    Ok(accept_key(key))
}

fn write_switching(out: &mut TcpStream, req: &Request, accept: &str) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if req.has_token("sec-websocket-protocol", "binary") {
        head.push_str("Sec-WebSocket-Protocol: binary\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins() {
        let p = OriginPolicy::new("127.0.0.1:8086".parse().unwrap(), &[]);
        assert!(p.allows(Some("http://127.0.0.1:8086"), None));
        assert!(p.allows(Some("http://localhost:8086"), None));
        assert!(p.allows(Some("HTTP://LOCALHOST:8086"), None));
        assert!(p.allows(Some("http://[::1]:8086"), None));
        assert!(!p.allows(Some("http://127.0.0.1:8087"), None));
        assert!(!p.allows(Some("https://127.0.0.1:8086"), None));
        assert!(!p.allows(Some("http://evil.example:8086"), Some("evil.example:8086")));
        assert!(!p.allows(Some("null"), None));
        assert!(!p.allows(None, Some("127.0.0.1:8086")));
    }

    #[test]
    fn extra_and_unspecified_origins() {
        let extra = vec!["https://app.example".to_string()];
        let p = OriginPolicy::new("0.0.0.0:9000".parse().unwrap(), &extra);
        assert!(p.allows(Some("https://app.example"), None));
        assert!(p.allows(Some("http://192.0.2.7:9000"), Some("192.0.2.7:9000")));
        assert!(!p.allows(Some("http://192.0.2.7:9000"), Some("192.0.2.8:9000")));
        assert!(!p.allows(
            Some("http://rebind.example:9000"),
            Some("rebind.example:9000")
        ));
        assert!(!p.allows(Some("http://192.0.2.7:9001"), Some("192.0.2.7:9001")));
        let p80 = OriginPolicy::new("127.0.0.1:80".parse().unwrap(), &[]);
        assert!(p80.allows(Some("http://localhost"), None));
    }
}
