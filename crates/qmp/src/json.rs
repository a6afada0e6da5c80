//! JSON framing of the QMP input stream and QMP's output format.
//!
//! Input is a byte stream with no message delimiter: a message ends when its braces and
//! brackets balance, as in QEMU's `json-streamer.c`. [`JsonStreamer`] runs a lexer of its
//! own over the bytes, counts nesting, and hands every complete message to `serde_json`.
//! Like QEMU 1.1 it accepts single-quoted strings (and `\'` escapes), keeps the last value of a
//! duplicate key, clamps integers outside the `i64` range as `strtoll` does, and answers every
//! lexical error, stray closing bracket, nesting above [`MAX_NESTING`] or message above
//! [`MAX_TOKEN_SIZE`] with one [`Frame::Error`], then starts afresh with the next byte. A
//! 0xFF byte is never valid, so it always forces such a resynchronisation.
//!
//! Memory held per stream is bounded by twice the token size limit (the normalised text of
//! a message is at most twice its source bytes).
//!
//! Output is one JSON object per line, with QEMU's `", "` / `": "` separators, non-ASCII
//! characters as `\uXXXX` (uppercase hex, surrogate pairs above the BMP) and a CRLF ending.

use serde::Deserialize;
use serde_json::Value;
use std::io;

/// QEMU's limit on the bytes of one message (`MAX_TOKEN_SIZE`, 64 MiB).
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// QEMU's limit on brace or bracket nesting (`MAX_NESTING`, 1024).
pub const MAX_NESTING: usize = 1024;

/// Limits of a [`JsonStreamer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes (source bytes of all its tokens).
    pub max_token_size: usize,
    /// Deepest brace or bracket nesting.
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_token_size: MAX_TOKEN_SIZE,
            max_nesting: MAX_NESTING,
        }
    }
}

/// One result of framing: a parsed JSON value or a syntax error (`JSONParsing`).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A complete, well-formed JSON value (object or not).
    Value(Value),
    /// Malformed input, or a limit exceeded.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Str { quote: u8, esc: Esc },
    Num(Num),
    Keyword,
}

enum Step {
    /// Byte consumed, token continues.
    More,
    /// Whitespace between tokens: consumed, not counted.
    Skip,
    /// Byte consumed and it completed the token.
    Done,
    /// Token complete; the byte was not consumed and starts the next token.
    DoneLookahead,
    /// Byte is not valid here.
    Bad,
}

/// A streaming splitter and parser of JSON messages.
#[derive(Debug)]
pub struct JsonStreamer {
    limits: Limits,
    state: State,
    /// Normalised text of the token being lexed.
    token: Vec<u8>,
    /// Normalised text of the message so far.
    message: Vec<u8>,
    /// Source bytes of the message so far, including the current token.
    size: usize,
    braces: isize,
    brackets: isize,
    is_number: bool,
}

impl Default for JsonStreamer {
    fn default() -> JsonStreamer {
        JsonStreamer::new(Limits::default())
    }
}

impl JsonStreamer {
    /// A streamer with the given limits.
    pub fn new(limits: Limits) -> JsonStreamer {
        JsonStreamer {
            limits,
            state: State::Start,
            token: Vec::new(),
            message: Vec::new(),
            size: 0,
            braces: 0,
            brackets: 0,
            is_number: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes held for an incomplete message.
    pub fn buffered(&self) -> usize {
        self.message.len() + self.token.len()
    }

    /// Feeds bytes; every complete message or error is appended to `out` in input order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            self.feed_byte(b, out);
        }
    }

    fn feed_byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        // At most two rounds: a byte that ends a number or keyword is looked at again.
        for _ in 0..2 {
            match self.step(b) {
                Step::More => {
                    self.size += 1;
                    if self.size > self.limits.max_token_size {
                        self.fail(out);
                    }
                    return;
                }
                Step::Skip => return,
                Step::Done => {
                    self.size += 1;
                    self.end_token(out);
                    return;
                }
                Step::DoneLookahead => self.end_token(out),
                Step::Bad => {
                    self.fail(out);
                    return;
                }
            }
        }
    }

    /// Resets everything and reports one error.
    fn fail(&mut self, out: &mut Vec<Frame>) {
        self.reset();
        out.push(Frame::Error);
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.token.clear();
        self.message.clear();
        self.size = 0;
        self.braces = 0;
        self.brackets = 0;
        self.is_number = false;
    }

    fn step(&mut self, b: u8) -> Step {
        match self.state {
            State::Start => match b {
                b' ' | b'\t' | b'\r' | b'\n' => Step::Skip,
                b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                    self.token.push(b);
                    Step::Done
                }
                b'"' | b'\'' => {
                    self.token.push(b'"');
                    self.state = State::Str {
                        quote: b,
                        esc: Esc::None,
                    };
                    Step::More
                }
                b'-' => self.start_num(b, Num::Minus),
                b'0' => self.start_num(b, Num::Zero),
                b'1'..=b'9' => self.start_num(b, Num::Int),
                b'a'..=b'z' => {
                    self.token.push(b);
                    self.state = State::Keyword;
                    Step::More
                }
                _ => Step::Bad,
            },
            State::Keyword => match b {
                b'a'..=b'z' => {
                    self.token.push(b);
                    Step::More
                }
                _ => Step::DoneLookahead,
            },
            State::Num(n) => self.step_num(n, b),
            State::Str { quote, esc } => self.step_str(quote, esc, b),
        }
    }

    fn start_num(&mut self, b: u8, n: Num) -> Step {
        self.token.push(b);
        self.is_number = true;
        self.state = State::Num(n);
        Step::More
    }

    fn step_num(&mut self, n: Num, b: u8) -> Step {
        let digit = b.is_ascii_digit();
        let next = match n {
            Num::Minus if b == b'0' => Num::Zero,
            Num::Minus if digit => Num::Int,
            Num::Minus => return Step::Bad,
            Num::Int if digit => Num::Int,
            Num::Zero | Num::Int if b == b'.' => Num::Dot,
            Num::Zero | Num::Int | Num::Frac if b == b'e' || b == b'E' => Num::Exp,
            Num::Dot | Num::Frac if digit => Num::Frac,
            Num::Dot => return Step::Bad,
            Num::Exp if b == b'+' || b == b'-' => Num::ExpSign,
            Num::Exp | Num::ExpSign | Num::ExpDigits if digit => Num::ExpDigits,
            Num::Exp | Num::ExpSign => return Step::Bad,
            Num::Zero | Num::Int | Num::Frac | Num::ExpDigits => return Step::DoneLookahead,
        };
        self.token.push(b);
        self.state = State::Num(next);
        Step::More
    }

    fn step_str(&mut self, quote: u8, esc: Esc, b: u8) -> Step {
        match esc {
            Esc::None => match b {
                _ if b == quote => {
                    self.token.push(b'"');
                    return Step::Done;
                }
                b'\\' => {
                    self.state = State::Str {
                        quote,
                        esc: Esc::Backslash,
                    };
                    return Step::More;
                }
                0x00..=0x1F | 0xC0 | 0xC1 | 0xF5..=0xFF => return Step::Bad,
                b'"' => self.token.extend_from_slice(b"\\\""),
                _ => self.token.push(b),
            },
            Esc::Backslash => {
                let next = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        self.token.push(b'\\');
                        self.token.push(b);
                        Esc::None
                    }
                    b'\'' => {
                        self.token.push(b'\'');
                        Esc::None
                    }
                    b'u' => {
                        self.token.extend_from_slice(b"\\u");
                        Esc::Hex(4)
                    }
                    _ => return Step::Bad,
                };
                self.state = State::Str { quote, esc: next };
            }
            Esc::Hex(left) => {
                if !b.is_ascii_hexdigit() {
                    return Step::Bad;
                }
                self.token.push(b);
                let next = if left <= 1 {
                    Esc::None
                } else {
                    Esc::Hex(left - 1)
                };
                self.state = State::Str { quote, esc: next };
            }
        }
        Step::More
    }

    fn end_token(&mut self, out: &mut Vec<Frame>) {
        self.state = State::Start;
        let mut token = std::mem::take(&mut self.token);
        if self.is_number {
            clamp_integer(&mut token);
            self.is_number = false;
        }
        match token.first() {
            Some(b'{') => self.braces += 1,
            Some(b'}') => self.braces -= 1,
            Some(b'[') => self.brackets += 1,
            Some(b']') => self.brackets -= 1,
            _ => {}
        }
        self.message.extend_from_slice(&token);
        // Keep adjacent numbers and keywords apart for the parser.
        self.message.push(b' ');
        token.clear();
        self.token = token;

        if self.braces < 0 || self.brackets < 0 || (self.braces == 0 && self.brackets == 0) {
            let frame = parse_message(&self.message);
            self.reset();
            out.push(frame);
        } else if self.size > self.limits.max_token_size
            || self.braces.unsigned_abs() > self.limits.max_nesting
            || self.brackets.unsigned_abs() > self.limits.max_nesting
        {
            self.fail(out);
        }
    }
}

/// An integer literal outside `i64` becomes `i64::MAX` or `i64::MIN`, as 1.1's `strtoll`.
fn clamp_integer(token: &mut Vec<u8>) {
    if token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return;
    }
    let fits = std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .is_some();
    if !fits {
        let clamped = if token.first() == Some(&b'-') {
            i64::MIN
        } else {
            i64::MAX
        };
        *token = clamped.to_string().into_bytes();
    }
}

fn parse_message(text: &[u8]) -> Frame {
    let Ok(text) = std::str::from_utf8(text) else {
        return Frame::Error;
    };
    let mut de = serde_json::Deserializer::from_str(text);
    // Nesting is already bounded by the streamer's limit.
    de.disable_recursion_limit();
    match Value::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Frame::Value(v),
        Err(_) => Frame::Error,
    }
}

/// serde_json formatter for QMP output: `", "` and `": "` separators, non-ASCII and control
/// characters as `\uXXXX` with uppercase hex digits.
struct QmpFormatter;

impl serde_json::ser::Formatter for QmpFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\x7f' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04X}", u)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape;
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(c) => return write!(w, "\\u{:04X}", c),
        };
        w.write_all(s)
    }
}

/// Formats `value` as one QMP output line, CRLF included.
pub fn to_line(value: &Value) -> String {
    let mut buf = Vec::with_capacity(64);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, QmpFormatter);
    // Serialising a `Value` into a Vec cannot fail: keys are strings, writes are infallible.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        buf.clear();
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\r\n");
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut s = JsonStreamer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn numbers_lex_and_clamp() {
        let f =
            frames(&[b"[0, -1, 2.5, 1e3, -0.5E-2, 99999999999999999999, -99999999999999999999]"]);
        assert_eq!(
            f,
            vec![Frame::Value(json!([
                0,
                -1,
                2.5,
                1000.0,
                -0.005,
                i64::MAX,
                i64::MIN
            ]))]
        );
        assert_eq!(frames(&[b"[01]"]), vec![Frame::Error]);
        assert_eq!(frames(&[b"[1.]"]), vec![Frame::Error]);
        assert_eq!(frames(&[b"[1e]"]), vec![Frame::Error]);
        assert_eq!(frames(&[b"[-]"]), vec![Frame::Error]);
    }

    #[test]
    fn top_level_scalars_complete_on_lookahead() {
        assert_eq!(frames(&[b"42"]), vec![]);
        assert_eq!(frames(&[b"42 "]), vec![Frame::Value(json!(42))]);
        assert_eq!(frames(&[b"true\n"]), vec![Frame::Value(json!(true))]);
        assert_eq!(frames(&[b"\"x\""]), vec![Frame::Value(json!("x"))]);
        assert_eq!(frames(&[b"hello "]), vec![Frame::Error]);
    }

    #[test]
    fn single_quotes_and_escapes() {
        assert_eq!(
            frames(&[br#"{'a': 'it\'s "q"', "b": "\u00e9\/"}"#]),
            vec![Frame::Value(json!({"a": "it's \"q\"", "b": "\u{e9}/"}))]
        );
        assert_eq!(frames(&[br#"{"a": "\q"}"#]).first(), Some(&Frame::Error));
    }

    #[test]
    fn output_format() {
        let v = json!({"return": {"a": [1, 2], "s": "\u{e9}\u{1F600}\x01\x7f\r\n"}, "id": null});
        assert_eq!(
            to_line(&v),
            "{\"return\": {\"a\": [1, 2], \"s\": \"\\u00E9\\uD83D\\uDE00\\u0001\\u007F\\r\\n\"}, \"id\": null}\r\n"
        );
    }
}
