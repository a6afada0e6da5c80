//! RFC 6455 WebSocket pieces for the server side: the handshake key and frame coding.
//!
//! Bounded by construction: a frame longer than [`FrameReader`]'s limit, a text message
//! longer than its text limit, and every protocol violation end the connection with an
//! error (and the close code RFC 6455 §7.4.1 gives for it), never a panic or an
//! unbounded allocation.

use std::io::{self, Read};

use thiserror::Error;

use crate::sha1::{base64_decode, base64_encode, sha1};

/// The GUID that RFC 6455 §1.3 appends to the client's key.
pub const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the endpoint is going away (or is replaced).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: protocol error.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: text frame payload is not UTF-8.
pub const CLOSE_BAD_DATA: u16 = 1007;
/// Close code: message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Returns `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + HANDSHAKE_GUID.len());
    input.extend_from_slice(key.trim().as_bytes());
    input.extend_from_slice(HANDSHAKE_GUID.as_bytes());
    base64_encode(&sha1(&input))
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of exactly 16 bytes.
pub fn valid_client_key(key: &str) -> bool {
    base64_decode(key.trim()).is_some_and(|k| k.len() == 16)
}

/// One message as the relay sees it. Binary data is delivered frame by frame (its
/// boundaries carry no meaning); text messages are reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Payload of one binary frame (or one fragment of a binary message).
    Binary(Vec<u8>),
    /// A complete text message.
    Text(String),
    /// A ping with its payload.
    Ping(Vec<u8>),
    /// A pong with its payload.
    Pong(Vec<u8>),
    /// A close frame with its status code, if any.
    Close(Option<u16>),
}

/// Why a WebSocket stream could not be read further.
#[derive(Debug, Error)]
pub enum WsError {
    /// The transport failed or ended in the middle of a frame.
    #[error("websocket i/o: {0}")]
    Io(#[from] io::Error),
    /// The transport ended cleanly between frames.
    #[error("websocket connection ended without a close frame")]
    Eof,
    /// The peer broke RFC 6455.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or message exceeded the configured size.
    #[error("websocket message too big ({0} bytes)")]
    TooBig(u64),
    /// A text message was not valid UTF-8.
    #[error("websocket text message is not UTF-8")]
    BadUtf8,
}

impl WsError {
    /// The close code to send the peer for this error, if a close frame is still useful.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Io(_) | WsError::Eof => None,
            WsError::Protocol(_) => Some(CLOSE_PROTOCOL),
            WsError::TooBig(_) => Some(CLOSE_TOO_BIG),
            WsError::BadUtf8 => Some(CLOSE_BAD_DATA),
        }
    }
}

/// Reads client-to-server frames (which must be masked) from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    max_frame: usize,
    max_text: usize,
    /// Opcode of the fragmented message in progress (text or binary), if any.
    fragmented: Option<u8>,
    text_buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// A reader that accepts frames up to `max_frame` payload bytes and text messages
    /// up to `max_text` bytes.
    pub fn new(inner: R, max_frame: usize, max_text: usize) -> Self {
        Self {
            inner,
            max_frame,
            max_text,
            fragmented: None,
            text_buf: Vec::new(),
        }
    }

    /// Reads the next message. Control frames may arrive between fragments.
    pub fn read_message(&mut self) -> Result<Message, WsError> {
        loop {
            let mut head = [0u8; 2];
            match self.inner.read(&mut head[..1]) {
                Ok(0) => return Err(WsError::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WsError::Io(e)),
            }
            self.inner.read_exact(&mut head[1..])?;
            let fin = head[0] & 0x80 != 0;
            if head[0] & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            let opcode = head[0] & 0x0F;
            if head[1] & 0x80 == 0 {
                return Err(WsError::Protocol("client frame not masked"));
            }
            let len = match head[1] & 0x7F {
                126 => {
                    let mut b = [0u8; 2];
                    self.inner.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.inner.read_exact(&mut b)?;
                    let n = u64::from_be_bytes(b);
                    if n >> 63 != 0 {
                        return Err(WsError::Protocol("64-bit length with top bit set"));
                    }
                    n
                }
                n => u64::from(n),
            };
            let is_control = opcode & 0x8 != 0;
            if is_control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
                return Err(WsError::Protocol("fragmented or oversized control frame"));
            }
            if len > self.max_frame as u64 {
                return Err(WsError::TooBig(len));
            }
            let mut mask = [0u8; 4];
            self.inner.read_exact(&mut mask)?;
            // `len <= max_frame`, so this fits in usize.
            let mut payload = vec![0u8; len as usize];
            self.inner.read_exact(&mut payload)?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                OP_PING => return Ok(Message::Ping(payload)),
                OP_PONG => return Ok(Message::Pong(payload)),
                OP_CLOSE => {
                    return match payload.len() {
                        0 => Ok(Message::Close(None)),
                        1 => Err(WsError::Protocol("one-byte close payload")),
                        _ => {
                            if std::str::from_utf8(&payload[2..]).is_err() {
                                return Err(WsError::BadUtf8);
                            }
                            Ok(Message::Close(Some(u16::from_be_bytes([
                                payload[0], payload[1],
                            ]))))
                        }
                    };
                }
                OP_BINARY | OP_TEXT => {
                    if self.fragmented.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if !fin {
                        self.fragmented = Some(opcode);
                    }
                    if opcode == OP_BINARY {
                        return Ok(Message::Binary(payload));
                    }
                    self.text_buf.clear();
                    if let Some(m) = self.push_text(payload, fin)? {
                        return Ok(m);
                    }
                }
                OP_CONTINUATION => match self.fragmented {
                    None => return Err(WsError::Protocol("continuation without a message")),
                    Some(kind) => {
                        if fin {
                            self.fragmented = None;
                        }
                        if kind == OP_BINARY {
                            return Ok(Message::Binary(payload));
                        }
                        if let Some(m) = self.push_text(payload, fin)? {
                            return Ok(m);
                        }
                    }
                },
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    fn push_text(&mut self, payload: Vec<u8>, fin: bool) -> Result<Option<Message>, WsError> {
        let total = self.text_buf.len() as u64 + payload.len() as u64;
        if total > self.max_text as u64 {
            return Err(WsError::TooBig(total));
        }
        self.text_buf.extend_from_slice(&payload);
        if !fin {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.text_buf);
        String::from_utf8(bytes)
            .map(|s| Some(Message::Text(s)))
            .map_err(|_| WsError::BadUtf8)
    }
}

/// Encodes one unmasked (server-to-client) frame with FIN set.
pub fn encode_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | (opcode & 0x0F));
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Encodes a close frame with `code` and a short UTF-8 `reason` (cut to fit 125 bytes).
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
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
        out
    }

    fn reader(bytes: Vec<u8>) -> FrameReader<std::io::Cursor<Vec<u8>>> {
        FrameReader::new(std::io::Cursor::new(bytes), 1 << 20, 1024)
    }

    #[test]
    fn rfc6455_example_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_client_key("dGhlIHNhbXBsZQ=="));
        assert!(!valid_client_key("not base64!"));
    }

    #[test]
    fn reads_masked_frames_of_every_length_encoding() {
        let mask = [1, 2, 3, 4];
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut r = reader(masked(0x82, &data, mask));
            assert_eq!(r.read_message().unwrap(), Message::Binary(data));
            assert!(matches!(r.read_message(), Err(WsError::Eof)));
        }
    }

    #[test]
    fn reassembles_fragmented_text_around_a_ping() {
        let mut bytes = masked(0x01, b"{\"type\":", [9, 8, 7, 6]);
        bytes.extend(masked(0x89, b"hi", [1, 1, 1, 1]));
        bytes.extend(masked(0x80, b"\"open\"}", [5, 5, 5, 5]));
        let mut r = reader(bytes);
        assert_eq!(r.read_message().unwrap(), Message::Ping(b"hi".to_vec()));
        assert_eq!(
            r.read_message().unwrap(),
            Message::Text("{\"type\":\"open\"}".into())
        );
    }

    #[test]
    fn binary_fragments_are_delivered_as_they_come() {
        let mut bytes = masked(0x02, b"ab", [1, 2, 3, 4]);
        bytes.extend(masked(0x00, b"cd", [1, 2, 3, 4]));
        bytes.extend(masked(0x80, b"ef", [1, 2, 3, 4]));
        let mut r = reader(bytes);
        for part in [b"ab", b"cd", b"ef"] {
            assert_eq!(r.read_message().unwrap(), Message::Binary(part.to_vec()));
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let unmasked = vec![0x82, 0x01, 0x41];
        assert!(matches!(
            reader(unmasked).read_message(),
            Err(WsError::Protocol(_))
        ));
        let rsv = masked(0xC2, b"x", [0; 4]);
        assert!(matches!(
            reader(rsv).read_message(),
            Err(WsError::Protocol(_))
        ));
        let bad_op = masked(0x83, b"x", [0; 4]);
        assert!(matches!(
            reader(bad_op).read_message(),
            Err(WsError::Protocol(_))
        ));
        let lone_cont = masked(0x80, b"x", [0; 4]);
        assert!(matches!(
            reader(lone_cont).read_message(),
            Err(WsError::Protocol(_))
        ));
        let frag_ping = masked(0x09, b"x", [0; 4]);
        assert!(matches!(
            reader(frag_ping).read_message(),
            Err(WsError::Protocol(_))
        ));
        let bad_utf8 = masked(0x81, &[0xFF, 0xFE], [0; 4]);
        let err = reader(bad_utf8).read_message().unwrap_err();
        assert_eq!(err.close_code(), Some(CLOSE_BAD_DATA));
    }

    #[test]
    fn size_limits_are_enforced_before_allocation() {
        // Declares 2^40 bytes but sends none: must fail on the header alone.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        let err = reader(huge).read_message().unwrap_err();
        assert!(matches!(err, WsError::TooBig(n) if n == 1 << 40));
        assert_eq!(err.close_code(), Some(CLOSE_TOO_BIG));
        let long_text = masked(0x81, &[b'a'; 2000], [0; 4]);
        assert!(matches!(
            reader(long_text).read_message(),
            Err(WsError::TooBig(2000))
        ));
        let truncated = masked(0x82, b"abcdef", [0; 4])[..5].to_vec();
        assert!(matches!(
            reader(truncated).read_message(),
            Err(WsError::Io(_))
        ));
    }

    #[test]
    fn close_frames_parse_and_encode() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut r = reader(masked(0x88, &payload, [3, 3, 3, 3]));
        assert_eq!(r.read_message().unwrap(), Message::Close(Some(1001)));
        let enc = encode_close(1000, &"é".repeat(100));
        assert_eq!(enc[0], 0x88);
        assert!(usize::from(enc[1]) <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&enc[4..]).is_ok());
    }

    #[test]
    fn encodes_server_frames_unmasked() {
        assert_eq!(encode_frame(OP_BINARY, b"hi"), vec![0x82, 2, b'h', b'i']);
        let big = encode_frame(OP_TEXT, &[0; 300]);
        assert_eq!(&big[..4], &[0x81, 126, 1, 44]);
        let huge = encode_frame(OP_BINARY, &vec![0; 70000]);
        assert_eq!(huge[1], 127);
        assert_eq!(huge.len(), 70000 + 10);
    }
}
