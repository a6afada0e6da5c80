//! Static serving: MIME types, ranges, HEAD, traversal, errors and keep-alive, against
//! the real binary.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{get, raw_request, read_resp, Bridge, TempDir};

struct Site {
    _dir: TempDir,
    bridge: Bridge,
    image: Vec<u8>,
}

fn site() -> Site {
    let dir = TempDir::new("http");
    let root = dir.path();
    for d in ["www/sub", "pkg", "images", "secret"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("www/index.html"),
        "<!doctype html><title>wasm86</title>",
    )
    .unwrap();
    std::fs::write(root.join("www/app.js"), "export {};").unwrap();
    std::fs::write(root.join("www/worker.mjs"), "self.x = 1;").unwrap();
    std::fs::write(root.join("www/style.css"), "body{}").unwrap();
    std::fs::write(root.join("www/sub/index.html"), "sub index").unwrap();
    std::fs::write(root.join("www/a b.json"), "{\"spaced\": true}").unwrap();
    std::fs::write(root.join("pkg/wasm86_web_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(root.join("pkg/wasm86_web.js"), "export default 1;").unwrap();
    std::fs::write(root.join("images/list.json"), "[]").unwrap();
    let image: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("images/disk.img"), &image).unwrap();
    std::fs::write(root.join("images/cd.iso"), b"CD001").unwrap();
    std::fs::write(root.join("images/seabios.bin"), b"\x55\xaa").unwrap();
    std::fs::write(root.join("secret/key.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(root.join("secret/key.txt"), root.join("www/escape.txt")).unwrap();
    let p = |d: &str| root.join(d).to_str().unwrap().to_string();
    let bridge = Bridge::start(&[
        "--www",
        &p("www"),
        "--pkg",
        &p("pkg"),
        "--images",
        &p("images"),
    ]);
    Site {
        _dir: dir,
        bridge,
        image,
    }
}

#[test]
fn mime_types_and_roots() {
    let s = site();
    let a = s.bridge.addr;
    for (path, mime, body) in [
        (
            "/",
            "text/html",
            &b"<!doctype html><title>wasm86</title>"[..],
        ),
        (
            "/index.html",
            "text/html",
            b"<!doctype html><title>wasm86</title>",
        ),
        ("/app.js", "text/javascript", b"export {};"),
        ("/worker.mjs", "text/javascript", b"self.x = 1;"),
        ("/style.css", "text/css", b"body{}"),
        ("/a%20b.json", "application/json", b"{\"spaced\": true}"),
        ("/sub/", "text/html", b"sub index"),
        (
            "/pkg/wasm86_web_bg.wasm",
            "application/wasm",
            b"\0asm\x01\0\0\0",
        ),
        (
            "/pkg/wasm86_web.js",
            "text/javascript",
            b"export default 1;",
        ),
        ("/images/list.json", "application/json", b"[]"),
        ("/images/cd.iso", "application/octet-stream", b"CD001"),
        (
            "/images/seabios.bin",
            "application/octet-stream",
            b"\x55\xaa",
        ),
        ("/app.js?v=3", "text/javascript", b"export {};"),
    ] {
        let r = get(a, path, "");
        assert_eq!(r.status, 200, "{path}");
        let ct = r.header("content-type").unwrap();
        assert!(ct.starts_with(mime), "{path}: {ct}");
        assert_eq!(r.body, body, "{path}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
    }
    let r = get(a, "/images/disk.img", "");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, s.image);
}

#[test]
fn page_has_cross_origin_isolation_headers() {
    let s = site();
    let r = get(s.bridge.addr, "/", "");
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    assert_eq!(
        r.header("cross-origin-embedder-policy"),
        Some("require-corp")
    );
}

#[test]
fn byte_ranges() {
    let s = site();
    let a = s.bridge.addr;
    let len = s.image.len();
    let r = get(a, "/images/disk.img", "Range: bytes=100-199\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.body, &s.image[100..200]);

    let r = get(a, "/images/disk.img", "Range: bytes=9990-\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 9990-9999/10000"));
    assert_eq!(r.body, &s.image[9990..]);

    let r = get(a, "/images/disk.img", "Range: bytes=-16\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 9984-9999/10000"));
    assert_eq!(r.body, &s.image[9984..]);

    let r = get(a, "/images/disk.img", "Range: bytes=9000-20000\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &s.image[9000..]);

    for unsat in ["bytes=10000-", "bytes=20000-30000", "bytes=-0"] {
        let r = get(a, "/images/disk.img", &format!("Range: {unsat}\r\n"));
        assert_eq!(r.status, 416, "{unsat}");
        assert_eq!(r.header("content-range"), Some("bytes */10000"), "{unsat}");
    }

    // Several ranges or a malformed header: the whole file.
    for ignored in ["bytes=0-1,5-6", "bytes=5-1", "pages=1-2"] {
        let r = get(a, "/images/disk.img", &format!("Range: {ignored}\r\n"));
        assert_eq!(r.status, 200, "{ignored}");
        assert_eq!(r.body.len(), len, "{ignored}");
    }

    // If-Range with a validator that does not match: the whole file.
    let r = get(
        a,
        "/images/disk.img",
        "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_string();
    let r = get(
        a,
        "/images/disk.img",
        &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &s.image[..1]);
    let r = get(a, "/images/disk.img", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
}

#[test]
fn head_sends_headers_only() {
    let s = site();
    let a = s.bridge.addr;
    let stream = TcpStream::connect(a).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    // Two HEADs then a GET on one connection: a body after HEAD would corrupt the next.
    write!(w, "HEAD /images/disk.img HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let h = read_resp(&mut r, true);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("10000"));
    assert_eq!(h.header("content-type"), Some("application/octet-stream"));
    write!(
        w,
        "HEAD /images/disk.img HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
    )
    .unwrap();
    let h = read_resp(&mut r, true);
    assert_eq!(h.status, 206);
    assert_eq!(h.header("content-length"), Some("10"));
    assert_eq!(h.header("content-range"), Some("bytes 0-9/10000"));
    write!(w, "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let g = read_resp(&mut r, false);
    assert_eq!((g.status, g.body.as_slice()), (200, &b"body{}"[..]));
    assert_eq!(g.header("connection"), Some("keep-alive"));
}

#[test]
fn traversal_is_rejected() {
    let s = site();
    let a = s.bridge.addr;
    for path in [
        "/../secret/key.txt",
        "/%2e%2e/secret/key.txt",
        "/pkg/../../secret/key.txt",
        "/images/..%2f..%2fsecret%2fkey.txt",
        "/sub/./index.html",
        "/%00",
        "/a%5c..%5csecret",
        "/%zz",
    ] {
        let r = get(a, path, "");
        assert_eq!(r.status, 400, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("top secret"));
    }
    // Not origin-form.
    let r = raw_request(a, "GET secret/key.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = raw_request(
        a,
        "GET http://x/../secret/key.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // A symbolic link that leads outside the root.
    let r = get(a, "/escape.txt", "");
    assert_eq!(r.status, 403);
    assert!(!String::from_utf8_lossy(&r.body).contains("top secret"));
    // Doubled slashes stay inside the root.
    let r = get(a, "//etc/passwd", "");
    assert_eq!(r.status, 404);
}

#[test]
fn errors_have_clear_bodies() {
    let s = site();
    let a = s.bridge.addr;
    let r = get(a, "/missing.js", "");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("404 Not Found"));
    let r = raw_request(
        a,
        "POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = raw_request(a, "BROKEN\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = raw_request(a, "GET / HTTP/3.0\r\n\r\n");
    assert_eq!(r.status, 505);
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let r = raw_request(a, &big);
    assert_eq!(r.status, 431);
    let r = get(a, "/sub", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/"));
    // The server is still fine after all that.
    assert_eq!(get(a, "/", "").status, 200);
}

#[test]
fn http10_closes_and_verbose_logs() {
    let dir = TempDir::new("verbose");
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let b = Bridge::start(&["--www", dir.path().to_str().unwrap(), "--verbose"]);
    let r = raw_request(b.addr, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
    assert_eq!(r.header("connection"), Some("close"));
    b.wait_stderr("\"GET / HTTP/1.0\" 200 2");
}

#[test]
fn access_log_records_each_response_with_its_byte_range() {
    let dir = TempDir::new("access");
    let root = dir.path();
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), "hi").unwrap();
    let image: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("images/disk.img"), &image).unwrap();
    let log = root.join("access.log");
    let p = |d: &str| root.join(d).to_str().unwrap().to_string();
    let bridge = Bridge::start(&[
        "--www",
        &p("www"),
        "--pkg",
        &p("www"),
        "--images",
        &p("images"),
        "--access-log",
        &p("access.log"),
    ]);
    let a = bridge.addr;
    assert_eq!(
        get(a, "/images/disk.img", "Range: bytes=100-199\r\n").status,
        206
    );
    assert_eq!(
        get(a, "/images/disk.img", "Range: bytes=-16\r\n").status,
        206
    );
    assert_eq!(get(a, "/images/disk.img?v=1", "").body.len(), 10_000);
    let head = raw_request(
        a,
        &format!("HEAD /images/disk.img HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(head.header("content-length"), Some("10000"));
    assert_eq!(get(a, "/images/none.img", "").status, 404);
    assert_eq!(
        get(a, "/images/disk.img", "Range: bytes=20000-\r\n").status,
        416
    );
    // Each connection writes its line after its response, so the lines of consecutive
    // requests may come in either order, and the last one a moment after its response.
    let want = [
        "GET /images/disk.img 206 100-199 100",
        "GET /images/disk.img 206 9984-9999 16",
        "GET /images/disk.img 200 0-9999 10000",
        "HEAD /images/disk.img 200 - 0",
    ];
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for w in want {
        assert_eq!(lines.iter().filter(|l| **l == w).count(), 1, "{w}:\n{text}");
    }
    for prefix in ["GET /images/none.img 404 - ", "GET /images/disk.img 416 - "] {
        let n = lines.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(n, 1, "{prefix}:\n{text}");
    }
    for l in &lines {
        assert!(
            wasm86_bridge::access::AccessEntry::parse(l).is_some(),
            "{l}"
        );
    }
}
