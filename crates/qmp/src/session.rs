//! One QMP connection: greeting, capabilities negotiation, request checking, dispatch
//! through a [`CommandTable`], replies in request order (deferred ones included) and events.
//!
//! The session is transport-free: bytes go in through [`Session::feed`] (or
//! [`Session::handle`]) and the bytes to send come out of [`Session::take_output`], one JSON
//! object per line, each ending in CRLF.

use crate::error::QmpError;
use crate::event::{Event, Timestamp};
use crate::json::{to_line, Frame, JsonStreamer, Limits};
use crate::table::{Args, CommandTable, DeferredToken, Kind, Outcome, Reply};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// The QEMU version the greeting and `query-version` report (1.1.0).
pub const QEMU_VERSION: (u32, u32, u32) = (1, 1, 0);

/// Protocol mode of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only `qmp_capabilities` is accepted; no events are sent.
    Negotiation,
    /// Every command but `qmp_capabilities` is accepted; events are sent.
    Command,
}

/// How a session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The greeting's `package` string.
    pub package: String,
    /// Send the greeting and start in negotiation mode (a QMP socket), or send nothing and
    /// start in command mode (the page's own door).
    pub negotiate: bool,
    /// Framing limits.
    pub limits: Limits,
}

impl SessionConfig {
    /// A QMP connection as QEMU's: greeting, then negotiation.
    pub fn socket() -> SessionConfig {
        SessionConfig {
            package: default_package(),
            negotiate: true,
            limits: Limits::default(),
        }
    }

    /// The page door: no greeting, command mode from the start.
    pub fn page_door() -> SessionConfig {
        SessionConfig {
            negotiate: false,
            ..SessionConfig::socket()
        }
    }
}

/// `"wasm86 <crate version>"`.
pub fn default_package() -> String {
    format!("wasm86 {}", env!("CARGO_PKG_VERSION"))
}

/// The `query-version` value: `{"qemu": {"micro", "minor", "major"}, "package"}`.
pub fn version_info(package: &str) -> Value {
    let (major, minor, micro) = QEMU_VERSION;
    let mut q = Map::new();
    q.insert("micro".into(), micro.into());
    q.insert("minor".into(), minor.into());
    q.insert("major".into(), major.into());
    let mut v = Map::new();
    v.insert("qemu".into(), Value::Object(q));
    v.insert("package".into(), Value::String(package.into()));
    Value::Object(v)
}

/// The greeting object `{"QMP": {"version": ..., "capabilities": []}}`.
pub fn greeting(package: &str) -> Value {
    let mut qmp = Map::new();
    qmp.insert("version".into(), version_info(package));
    qmp.insert("capabilities".into(), Value::Array(Vec::new()));
    let mut g = Map::new();
    g.insert("QMP".into(), Value::Object(qmp));
    Value::Object(g)
}

/// A well-formed request: `{"execute": name, "arguments": {...}, "id": any}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Command name.
    pub execute: String,
    /// Arguments (empty when absent).
    pub arguments: Map<String, Value>,
    /// The client's id, echoed verbatim in the reply.
    pub id: Option<Value>,
}

/// One framed input: a request to dispatch, or an error answered without id.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request that passed the input-object checks.
    Request(Request),
    /// Malformed JSON or a malformed input object.
    Invalid(QmpError),
}

/// 1.1's `qmp_check_input_obj()`: the members are checked in the order the client sent them.
pub fn check_input_object(value: Value) -> Incoming {
    let Value::Object(map) = value else {
        return Incoming::Invalid(QmpError::qmp_bad_input_object("object"));
    };
    let mut execute = None;
    let mut arguments = Map::new();
    let mut id = None;
    for (name, member) in map {
        match name.as_str() {
            "execute" => match member {
                Value::String(s) => execute = Some(s),
                _ => {
                    return Incoming::Invalid(QmpError::qmp_bad_input_object_member(
                        "execute", "string",
                    ))
                }
            },
            "arguments" => match member {
                Value::Object(m) => arguments = m,
                _ => {
                    return Incoming::Invalid(QmpError::qmp_bad_input_object_member(
                        "arguments",
                        "object",
                    ))
                }
            },
            "id" => id = Some(member),
            _ => return Incoming::Invalid(QmpError::qmp_extra_input_object_member(&name)),
        }
    }
    match execute {
        Some(execute) => Incoming::Request(Request {
            execute,
            arguments,
            id,
        }),
        None => Incoming::Invalid(QmpError::qmp_bad_input_object("execute")),
    }
}

/// `{"return": value, "id": id}` (id only when the request had one).
pub fn return_object(value: Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), value);
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// `{"error": {...}, "id": id}` (id only when known).
pub fn error_object(error: &QmpError, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), error.to_json());
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

#[derive(Debug)]
enum Slot {
    /// Reply lines (and the lines of events that follow the reply) ready to go.
    Ready(String),
    /// A deferred reply not yet completed.
    Pending {
        token: DeferredToken,
        id: Option<Value>,
        after: Vec<Event>,
        now: Timestamp,
    },
}

/// One QMP connection.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    package: String,
    streamer: JsonStreamer,
    /// Bytes ready to send.
    out: String,
    /// Replies behind the first deferred one (the front is always `Pending` when non-empty).
    queue: VecDeque<Slot>,
    next_token: u64,
}

impl Session {
    /// A new connection. A socket session's output starts with the greeting line.
    pub fn new(config: SessionConfig) -> Session {
        let mut s = Session {
            mode: if config.negotiate {
                Mode::Negotiation
            } else {
                Mode::Command
            },
            package: config.package,
            streamer: JsonStreamer::new(config.limits),
            out: String::new(),
            queue: VecDeque::new(),
            next_token: 0,
        };
        if config.negotiate {
            s.out.push_str(&to_line(&greeting(&s.package)));
        }
        s
    }

    /// Current protocol mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The greeting's package string.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// Frames `bytes`: complete requests and immediate protocol errors, in input order.
    /// Nothing is answered until each item goes through [`Session::dispatch`].
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Incoming> {
        let mut frames = Vec::new();
        self.streamer.feed(bytes, &mut frames);
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Value(v) => check_input_object(v),
                Frame::Error => Incoming::Invalid(QmpError::json_parsing()),
            })
            .collect()
    }

    /// Feeds bytes and dispatches everything complete. Returns the events handlers emitted,
    /// in order, for the caller to send to the *other* sessions (this one already has
    /// them).
    pub fn handle<C>(
        &mut self,
        table: &CommandTable<C>,
        ctx: &mut C,
        bytes: &[u8],
        now: Timestamp,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for item in self.feed(bytes) {
            events.extend(self.dispatch(table, ctx, item, now));
        }
        events
    }

    /// Answers one framed input: mode check, table lookup, argument check, handler. Returns
    /// the events the handler emitted (for the other sessions); on this session they are
    /// already queued around the reply (`now` is their timestamp).
    pub fn dispatch<C>(
        &mut self,
        table: &CommandTable<C>,
        ctx: &mut C,
        item: Incoming,
        now: Timestamp,
    ) -> Vec<Event> {
        let req = match item {
            Incoming::Invalid(e) => {
                self.push_reply(to_line(&error_object(&e, None)), Vec::new(), now);
                return Vec::new();
            }
            Incoming::Request(r) => r,
        };
        let token = DeferredToken(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        let id = req.id;
        let result = self.run(table, ctx, &req.execute, req.arguments, token);
        match result {
            Err(e) => {
                self.push_reply(to_line(&error_object(&e, id)), Vec::new(), now);
                Vec::new()
            }
            Ok(reply) => {
                let Reply {
                    outcome,
                    before,
                    after,
                } = reply;
                for ev in &before {
                    self.out.push_str(&ev.to_line(now));
                }
                match outcome {
                    Outcome::Return(v) => {
                        self.push_reply(to_line(&return_object(v, id)), after.clone(), now)
                    }
                    Outcome::Deferred(t) if t == token => self.queue.push_back(Slot::Pending {
                        token,
                        id,
                        after: after.clone(),
                        now,
                    }),
                    Outcome::Deferred(_) => {
                        let e = QmpError::undefined_error();
                        self.push_reply(to_line(&error_object(&e, id)), after.clone(), now)
                    }
                }
                let mut events = before;
                events.extend(after);
                events
            }
        }
    }

    fn run<C>(
        &mut self,
        table: &CommandTable<C>,
        ctx: &mut C,
        name: &str,
        args: Map<String, Value>,
        token: DeferredToken,
    ) -> Result<Reply, QmpError> {
        let is_caps = name == "qmp_capabilities";
        if (self.mode == Mode::Negotiation) != is_caps {
            return Err(QmpError::command_not_found(name));
        }
        let cmd = table
            .get(name)
            .ok_or_else(|| QmpError::command_not_found(name))?;
        cmd.check(&args)?;
        match &cmd.kind {
            Kind::Handler(h) => h(ctx, Args::new(args, token)),
            Kind::Capabilities => {
                self.mode = Mode::Command;
                Ok(Reply::empty())
            }
            Kind::QueryCommands => Ok(Reply::value(table.query_commands())),
            Kind::Hmp(run) => {
                let hmp = table
                    .hmp()
                    .ok_or_else(|| QmpError::command_not_found(name))?;
                let line = args
                    .get("command-line")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let cpu = args.get("cpu-index").and_then(Value::as_i64);
                run(hmp, ctx, line, cpu).map(|s| Reply::value(Value::String(s)))
            }
        }
    }

    fn push_reply(&mut self, mut line: String, after: Vec<Event>, now: Timestamp) {
        for ev in &after {
            line.push_str(&ev.to_line(now));
        }
        if self.queue.is_empty() {
            self.out.push_str(&line);
        } else {
            self.queue.push_back(Slot::Ready(line));
        }
    }

    /// Completes a deferred reply. Replies queued behind it that are ready go out with it.
    /// Returns false if no reply is waiting for `token`.
    pub fn complete(&mut self, token: DeferredToken, result: Result<Value, QmpError>) -> bool {
        let Some(slot) = self
            .queue
            .iter_mut()
            .find(|s| matches!(s, Slot::Pending { token: t, .. } if *t == token))
        else {
            return false;
        };
        let Slot::Pending { id, after, now, .. } = slot else {
            return false;
        };
        let obj = match result {
            Ok(v) => return_object(v, id.take()),
            Err(e) => error_object(&e, id.take()),
        };
        let mut line = to_line(&obj);
        for ev in after.iter() {
            line.push_str(&ev.to_line(*now));
        }
        *slot = Slot::Ready(line);
        while let Some(Slot::Ready(_)) = self.queue.front() {
            if let Some(Slot::Ready(line)) = self.queue.pop_front() {
                self.out.push_str(&line);
            }
        }
        true
    }

    /// Deferred replies not yet completed.
    pub fn pending(&self) -> usize {
        self.queue
            .iter()
            .filter(|s| matches!(s, Slot::Pending { .. }))
            .count()
    }

    /// Replies (deferred or ready) waiting behind an uncompleted deferred reply. An
    /// caller may stop reading input while this is high.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues an asynchronous event; dropped unless the session is in command mode. Events
    /// do not wait behind deferred replies.
    pub fn push_event(&mut self, event: &Event, ts: Timestamp) -> bool {
        if self.mode != Mode::Command {
            return false;
        }
        self.out.push_str(&event.to_line(ts));
        true
    }

    /// Bytes held for an incomplete input message.
    pub fn buffered_input(&self) -> usize {
        self.streamer.buffered()
    }

    /// Takes the bytes to send (whole lines, each ending in CRLF).
    pub fn take_output(&mut self) -> String {
        std::mem::take(&mut self.out)
    }

    /// Bytes waiting in the output.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }
}
