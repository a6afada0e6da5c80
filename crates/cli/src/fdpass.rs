//! File descriptors passed to QMP with SCM_RIGHTS on a unix socket (`getfd`).
//!
//! The reader of a unix QMP connection receives with `recvmsg`, so the descriptors a client
//! attaches to a message arrive together with that message's bytes. They travel with the bytes
//! to the VM thread, which hands them to [`wasm86_vmm::Vm::feed_with_fds`]; there a `getfd`
//! among those commands claims one, and the rest are closed.
//!
//! Like QEMU, one descriptor per message is kept (the last one); any others are closed as soon
//! as they are received. Ancillary data the kernel truncated, or that does not have the
//! expected shape, is skipped without failing the read. Received descriptors are
//! close-on-exec where the platform allows it.

use std::io::Read;

/// Most descriptors kept from one message; earlier ones are closed at once.
pub const MAX_FDS_KEPT: usize = 1;

/// Room in the control buffer, in descriptors: more than a client normally sends, so that
/// extras are received (and closed here) rather than left to the kernel's truncation.
#[cfg(unix)]
const CONTROL_FDS: usize = 16;

/// What a read gives: the byte count (0 at end of stream) and the descriptors kept.
pub type RecvResult = std::io::Result<(usize, Vec<ReceivedFd>)>;

/// A descriptor received from a client. Dropping it closes it.
#[derive(Debug)]
pub struct ReceivedFd(#[cfg(unix)] pub std::os::fd::OwnedFd);

/// Wraps received descriptors as the VM's opaque passed resources. Natively the resource
/// is a [`std::os::fd::OwnedFd`].
pub fn to_passed(fds: Vec<ReceivedFd>) -> Vec<wasm86_vmm::fds::PassedFd> {
    fds.into_iter()
        .map(|f| {
            #[cfg(unix)]
            {
                wasm86_vmm::fds::PassedFd::new(f.0)
            }
            #[cfg(not(unix))]
            {
                wasm86_vmm::fds::PassedFd::new(f)
            }
        })
        .collect()
}

/// Reads from a stream that cannot carry descriptors (TCP, stdio).
pub fn read_plain<S: Read>(stream: &mut S, buf: &mut [u8]) -> RecvResult {
    stream.read(buf).map(|n| (n, Vec::new()))
}

/// Receives bytes and the descriptors passed with them from a unix stream socket. At most
/// [`MAX_FDS_KEPT`] descriptors are returned (the last ones received); the others are closed.
#[cfg(unix)]
pub fn recv_unix(stream: &mut std::os::unix::net::UnixStream, buf: &mut [u8]) -> RecvResult {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let int_len = std::mem::size_of::<libc::c_int>();
    // SAFETY: CMSG_SPACE only computes a size from its argument; it touches no memory.
    let space = unsafe { libc::CMSG_SPACE((CONTROL_FDS * int_len) as libc::c_uint) } as usize;
    // u64 elements give the buffer the alignment a `cmsghdr` needs.
    let mut control = vec![0u64; space.div_ceil(8)];
    let control_len = control.len() * 8;

    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `msghdr` is a plain C struct of integers and pointers, for which all-zero bytes
    // are a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let flags = 0;

    let n = loop {
        // SAFETY: `msg` points at `iov` (which describes `buf`, writable for `buf.len()`
        // bytes) and at `control` (writable for `control_len` bytes); all three outlive the
        // call, and the descriptor is the open socket borrowed from `stream`.
        let r = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, flags) };
        if r >= 0 {
            break r as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };

    // Whatever the kernel wrote into the control buffer: never more than the buffer.
    let filled = (msg.msg_controllen as usize).min(control_len);
    let base = control.as_ptr() as usize;
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: `msg` describes `control`, which is alive; CMSG_FIRSTHDR returns either null or
    // a pointer into it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        let start = cmsg as usize;
        // The header itself must lie inside what the kernel filled.
        if start < base || start + std::mem::size_of::<libc::cmsghdr>() > base + filled {
            break;
        }
        // SAFETY: `cmsg` points at a whole `cmsghdr` inside `control` (checked just above);
        // the buffer is 8-byte aligned and CMSG_* keep headers aligned.
        let hdr = unsafe { std::ptr::read(cmsg) };
        // SAFETY: CMSG_DATA only computes an address inside the header's message.
        let data = unsafe { libc::CMSG_DATA(cmsg) } as usize;
        // SAFETY: CMSG_LEN only computes a size from its argument.
        let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
        let len = hdr.cmsg_len as usize;
        let end = start.saturating_add(len);
        if len < header_len || end > base + filled || data < start {
            // Malformed or truncated: nothing after it can be trusted.
            break;
        }
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            let count = (end - data) / int_len;
            for i in 0..count {
                // SAFETY: `data + i * int_len .. + int_len` lies inside this message, which
                // lies inside `control` (checked above); the read is unaligned-safe.
                let raw =
                    unsafe { std::ptr::read_unaligned((data + i * int_len) as *const libc::c_int) };
                if raw >= 0 {
                    // SAFETY: the kernel installed `raw` in this process for us with this
                    // message; nothing else owns it, so it is ours to own and close.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        // SAFETY: `msg` and `cmsg` describe `control`, which is alive; CMSG_NXTHDR returns
        // null at the end of the filled control data.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    // Keep the last ones; dropping the earlier `OwnedFd`s closes them.
    let extra = fds.len().saturating_sub(MAX_FDS_KEPT);
    let kept: Vec<ReceivedFd> = fds.into_iter().skip(extra).map(ReceivedFd).collect();
    Ok((n, kept))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    /// Sends `data` with `fds` attached, the way a QMP client does.
    fn send_with_fds(s: &UnixStream, data: &[u8], fds: &[i32]) {
        // SAFETY: size computations only.
        let space =
            unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as libc::c_uint) } as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid `msghdr`.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes `control`, large enough for one header and `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as libc::c_uint) as _;
            let d = libc::CMSG_DATA(c) as *mut libc::c_int;
            for (i, f) in fds.iter().enumerate() {
                std::ptr::write_unaligned(d.add(i), *f);
            }
        }
        // SAFETY: `msg` describes live buffers; the socket is open.
        let r = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
        assert_eq!(r, data.len() as isize);
    }

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut p = [0 as libc::c_int; 2];
        // SAFETY: `p` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // SAFETY: pipe() just created both descriptors; each is owned once.
        unsafe {
            (
                std::fs::File::from(OwnedFd::from_raw_fd(p[0])),
                std::fs::File::from(OwnedFd::from_raw_fd(p[1])),
            )
        }
    }

    /// Whether the pipe's write side is closed everywhere (a read sees EOF at once).
    fn writer_closed(r: &std::fs::File) -> bool {
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 0) };
        pfd.revents & libc::POLLHUP != 0
    }

    #[test]
    fn bytes_and_the_last_fd_arrive_together() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        send_with_fds(
            &a,
            b"{\"execute\":\"getfd\"}",
            &[w1.as_raw_fd(), w2.as_raw_fd()],
        );
        drop((w1, w2));
        let mut buf = [0u8; 64];
        let (n, fds) = recv_unix(&mut b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"execute\":\"getfd\"}");
        assert_eq!(fds.len(), 1);
        assert!(writer_closed(&r1), "the extra fd is closed");
        assert!(!writer_closed(&r2), "the kept fd is open");
        // The kept descriptor really is the pipe's write end.
        let mut w = std::fs::File::from(fds.into_iter().next().unwrap().0);
        w.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        (&r2).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        drop(w);
        assert!(writer_closed(&r2));
    }

    #[test]
    fn plain_bytes_bring_no_fds_and_eof_is_zero() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = recv_unix(&mut b, &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"hello"[..], 0));
        drop(a);
        let (n, fds) = recv_unix(&mut b, &mut buf).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn more_fds_than_the_control_buffer_are_all_closed_but_one() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let pipes: Vec<_> = (0..CONTROL_FDS + 4).map(|_| pipe()).collect();
        let raws: Vec<i32> = pipes.iter().map(|p| p.1.as_raw_fd()).collect();
        send_with_fds(&a, b"x", &raws);
        let readers: Vec<_> = pipes.into_iter().map(|(r, _w)| r).collect();
        let mut buf = [0u8; 8];
        let (n, fds) = recv_unix(&mut b, &mut buf).unwrap();
        assert_eq!(n, 1);
        assert!(fds.len() <= MAX_FDS_KEPT);
        drop(fds);
        for (i, r) in readers.iter().enumerate() {
            assert!(writer_closed(r), "pipe {i} still has a writer");
        }
    }
}
