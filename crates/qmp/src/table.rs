//! The one QMP command table: names, QEMU 1.1 `args_type` strings, handlers.
//!
//! Arguments are checked against the entry's `args_type` exactly as 1.1's
//! `qmp_check_client_args()` does, before a handler sees them: first a missing mandatory
//! argument (`MissingParameter`), then, in the client's order, an unknown name
//! (`InvalidParameter`, unless the command has an `O` open dictionary) or a wrong JSON type
//! (`InvalidParameterType` with 1.1's expected names `string`, `int`, `number`, `bool`).
//! Only then does the handler deserialise them into a typed struct with [`Args::parse`].
//!
//! Kinds of 1.1's `args_type` accepted here: `s` string, `F` file name, `B` block device
//! (strings); `i`, `l`, `M` (bytes), `o` (bytes) integers; `T` number (integer or float);
//! `b` boolean; `-x` flag (boolean, always optional); `O` open dictionary (any other member
//! accepted, checked by the handler); `q` any JSON value. A `?` after the kind makes the
//! argument optional.

use crate::error::QmpError;
use crate::event::Event;
use crate::hmp::{HmpContext, HmpTable};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess};
use serde_json::{Map, Value};
use std::cell::RefCell;

/// A command handler: the context and the checked arguments in, a reply or an error out.
pub type Handler<C> = fn(&mut C, Args) -> Result<Reply, QmpError>;

/// Kind of one argument (a letter of 1.1's `args_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `s`: a string.
    Str,
    /// `F`: a file name (a string).
    Filename,
    /// `B`: a block device name (a string).
    BlockDevice,
    /// `i`: an integer.
    Int,
    /// `l`: a 64-bit integer.
    Long,
    /// `M`: a size in bytes (an integer; HMP takes MiB).
    Megabytes,
    /// `o`: a size in bytes (an integer; HMP takes suffixes).
    Octets,
    /// `T`: a number (integer or float).
    Number,
    /// `b`: a boolean.
    Bool,
    /// `-x`: a flag (a boolean, always optional); the letter is HMP's option name.
    Flag(char),
    /// `O`: an open dictionary; any member is accepted and left to the handler.
    OpenDict,
    /// `q`: any JSON value.
    Any,
}

impl ArgKind {
    /// The type name 1.1 puts in `InvalidParameterType`'s `expected`.
    pub fn expected(self) -> &'static str {
        match self {
            ArgKind::Str | ArgKind::Filename | ArgKind::BlockDevice => "string",
            ArgKind::Int | ArgKind::Long | ArgKind::Megabytes | ArgKind::Octets => "int",
            ArgKind::Number => "number",
            ArgKind::Bool | ArgKind::Flag(_) => "bool",
            ArgKind::OpenDict => "object",
            ArgKind::Any => "any",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ArgKind::Str | ArgKind::Filename | ArgKind::BlockDevice => v.is_string(),
            ArgKind::Int | ArgKind::Long | ArgKind::Megabytes | ArgKind::Octets => {
                v.is_i64() || v.is_u64()
            }
            ArgKind::Number => v.is_number(),
            ArgKind::Bool | ArgKind::Flag(_) => v.is_boolean(),
            ArgKind::OpenDict | ArgKind::Any => true,
        }
    }
}

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    /// Argument name.
    pub name: String,
    /// Kind.
    pub kind: ArgKind,
    /// Whether it may be left out.
    pub optional: bool,
}

/// A malformed table entry (a programming error of the embedding crate, reported, never a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The name is already in the table.
    #[error("command {0} registered twice")]
    Duplicate(String),
    /// The `args_type` string cannot be parsed.
    #[error("bad args_type {args_type:?} of {command}: {reason}")]
    BadArgsType {
        /// Command name.
        command: String,
        /// The offending string.
        args_type: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Parses a 1.1 `args_type` string such as `"device:B,force:-b"` or `"val:l,size:i,filename:s"`.
pub fn parse_args_type(args_type: &str) -> Result<Vec<ArgSpec>, &'static str> {
    let mut specs: Vec<ArgSpec> = Vec::new();
    if args_type.is_empty() {
        return Ok(specs);
    }
    for item in args_type.split(',') {
        let (name, ty) = item.split_once(':').ok_or("argument without ':'")?;
        if name.is_empty() {
            return Err("empty argument name");
        }
        if specs.iter().any(|s| s.name == name) {
            return Err("argument listed twice");
        }
        let mut chars = ty.chars();
        let kind = match chars.next().ok_or("empty type")? {
            's' => ArgKind::Str,
            'F' => ArgKind::Filename,
            'B' => ArgKind::BlockDevice,
            'i' => ArgKind::Int,
            'l' => ArgKind::Long,
            'M' => ArgKind::Megabytes,
            'o' => ArgKind::Octets,
            'T' => ArgKind::Number,
            'b' => ArgKind::Bool,
            '-' => ArgKind::Flag(chars.next().ok_or("flag without a letter")?),
            'O' => ArgKind::OpenDict,
            'q' => ArgKind::Any,
            _ => return Err("kind not supported by QMP"),
        };
        let optional = match chars.next() {
            None => matches!(kind, ArgKind::Flag(_) | ArgKind::OpenDict),
            Some('?') if chars.next().is_none() => true,
            Some(_) => return Err("junk after the kind"),
        };
        if kind == ArgKind::OpenDict && specs.iter().any(|s| s.kind == ArgKind::OpenDict) {
            return Err("two open dictionaries");
        }
        specs.push(ArgSpec {
            name: name.to_owned(),
            kind,
            optional,
        });
    }
    Ok(specs)
}

/// Checks client arguments against a parsed `args_type` in 1.1's order.
pub fn check_args(specs: &[ArgSpec], args: &Map<String, Value>) -> Result<(), QmpError> {
    let mut open = false;
    for s in specs {
        if s.kind == ArgKind::OpenDict {
            open = true;
        } else if !s.optional && !args.contains_key(&s.name) {
            return Err(QmpError::missing_parameter(&s.name));
        }
    }
    for (name, value) in args {
        match specs.iter().find(|s| s.name == *name) {
            None if open => {}
            None => return Err(QmpError::invalid_parameter(name)),
            Some(s) if !s.kind.accepts(value) => {
                return Err(QmpError::invalid_parameter_type(name, s.kind.expected()))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Identifies a request whose reply is sent later with `Session::complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeferredToken(pub(crate) u64);

impl DeferredToken {
    /// The token's number (unique within its session).
    pub fn id(self) -> u64 {
        self.0
    }
}

/// What a command answers: a value now, or later.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `{"return": value}` now.
    Return(Value),
    /// The reply comes later through `Session::complete` with this token; replies to later
    /// requests wait behind it.
    Deferred(DeferredToken),
}

/// A handler's successful answer, with the events that must surround it on the wire.
///
/// QEMU 1.1 emits STOP/RESUME/DEVICE_TRAY_MOVED inside `stop`/`cont`/`eject` (before the
/// return) and RESET/POWERDOWN/SHUTDOWN from the main loop after `system_reset`,
/// `system_powerdown` and `quit` return. A handler expresses either with
/// [`Reply::event_before`] / [`Reply::event_after`]. The session writes them around the
/// reply on its own connection and hands them back for the other connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The answer.
    pub outcome: Outcome,
    /// Events to send before the answer.
    pub before: Vec<Event>,
    /// Events to send after the answer.
    pub after: Vec<Event>,
}

impl Reply {
    /// `{"return": value}`.
    pub fn value(value: Value) -> Reply {
        Reply {
            outcome: Outcome::Return(value),
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// `{"return": {}}`, the answer of commands without data.
    pub fn empty() -> Reply {
        Reply::value(Value::Object(Map::new()))
    }

    /// A reply completed later (the token comes from [`Args::defer`]).
    pub fn deferred(token: DeferredToken) -> Reply {
        Reply {
            outcome: Outcome::Deferred(token),
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Adds an event sent before the answer.
    pub fn event_before(mut self, event: Event) -> Reply {
        self.before.push(event);
        self
    }

    /// Adds an event sent after the answer.
    pub fn event_after(mut self, event: Event) -> Reply {
        self.after.push(event);
        self
    }
}

/// Checked arguments of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    map: Map<String, Value>,
    token: DeferredToken,
}

impl Args {
    /// Arguments as given by the client (already checked against the table).
    pub fn new(map: Map<String, Value>, token: DeferredToken) -> Args {
        Args { map, token }
    }

    /// The raw arguments.
    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The raw arguments, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }

    /// One raw argument.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// The token of this request, to answer it later with [`Reply::deferred`].
    pub fn defer(&self) -> DeferredToken {
        self.token
    }

    /// Deserialises the arguments into `T` (usually a struct with
    /// `#[serde(rename_all = "kebab-case", deny_unknown_fields)]`).
    ///
    /// Errors map to 1.1 classes: a missing field to `MissingParameter`, an unknown field to
    /// `InvalidParameter`, a value the type refuses (out of range, unknown enum variant) to
    /// `InvalidParameterValue` naming the argument.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, QmpError> {
        let failed = RefCell::new(None);
        let access = ArgsAccess {
            iter: self.map.iter(),
            value: None,
            failed: &failed,
        };
        T::deserialize(de::value::MapAccessDeserializer::new(access)).map_err(|e| {
            let msg = e.to_string();
            if let Some(name) = failed.borrow_mut().take() {
                let expected = msg
                    .rsplit_once("expected ")
                    .map_or("a valid value", |(_, x)| x);
                return QmpError::invalid_parameter_value(&name, expected);
            }
            if let Some(name) = backticked(&msg, "missing field `") {
                QmpError::missing_parameter(name)
            } else if let Some(name) = backticked(&msg, "unknown field `") {
                QmpError::invalid_parameter(name)
            } else {
                QmpError::invalid_parameter_value("arguments", &msg)
            }
        })
    }
}

fn backticked<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Walks the argument map for serde, remembering which argument a value error belongs to.
struct ArgsAccess<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<(&'a String, &'a Value)>,
    failed: &'a RefCell<Option<String>>,
}

impl<'de, 'a> MapAccess<'de> for ArgsAccess<'a> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                let key: de::value::StrDeserializer<'_, serde_json::Error> =
                    k.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let Some((k, v)) = self.value.take() else {
            return Err(de::Error::custom("value without key"));
        };
        // The owned copy lets serde borrow for 'de regardless of the map's lifetime.
        seed.deserialize(v.clone()).inspect_err(|_| {
            *self.failed.borrow_mut() = Some(k.clone());
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

pub(crate) type HmpRunner<C> =
    fn(&HmpTable<C>, &mut C, &str, Option<i64>) -> Result<String, QmpError>;

pub(crate) enum Kind<C> {
    Handler(Handler<C>),
    Capabilities,
    QueryCommands,
    Hmp(HmpRunner<C>),
}

/// One command of the table.
pub struct Command<C> {
    name: String,
    args_type: String,
    specs: Vec<ArgSpec>,
    pub(crate) kind: Kind<C>,
}

impl<C> Command<C> {
    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 1.1 `args_type` string.
    pub fn args_type(&self) -> &str {
        &self.args_type
    }

    /// The parsed arguments.
    pub fn args(&self) -> &[ArgSpec] {
        &self.specs
    }

    /// Checks client arguments against this command (1.1's order and classes).
    pub fn check(&self, args: &Map<String, Value>) -> Result<(), QmpError> {
        check_args(&self.specs, args)
    }
}

/// The command table of a QMP server. Built-ins: `qmp_capabilities`, `query-commands`, and
/// `human-monitor-command` once an HMP table is attached.
pub struct CommandTable<C> {
    commands: Vec<Command<C>>,
    hmp: Option<HmpTable<C>>,
}

impl<C> Default for CommandTable<C> {
    fn default() -> Self {
        CommandTable::new()
    }
}

impl<C> CommandTable<C> {
    /// A table holding the built-ins `qmp_capabilities` and `query-commands`.
    pub fn new() -> CommandTable<C> {
        let mut t = CommandTable {
            commands: Vec::new(),
            hmp: None,
        };
        t.commands.push(Command {
            name: "qmp_capabilities".into(),
            args_type: String::new(),
            specs: Vec::new(),
            kind: Kind::Capabilities,
        });
        t.commands.push(Command {
            name: "query-commands".into(),
            args_type: String::new(),
            specs: Vec::new(),
            kind: Kind::QueryCommands,
        });
        t
    }

    fn insert(&mut self, name: &str, args_type: &str, kind: Kind<C>) -> Result<(), TableError> {
        if self.get(name).is_some() {
            return Err(TableError::Duplicate(name.into()));
        }
        let specs = parse_args_type(args_type).map_err(|reason| TableError::BadArgsType {
            command: name.into(),
            args_type: args_type.into(),
            reason,
        })?;
        self.commands.push(Command {
            name: name.into(),
            args_type: args_type.into(),
            specs,
            kind,
        });
        Ok(())
    }

    /// Registers a command with its 1.1 `args_type` string (e.g. `"device:B,force:-b"`).
    pub fn register(
        &mut self,
        name: &str,
        args_type: &str,
        handler: Handler<C>,
    ) -> Result<(), TableError> {
        self.insert(name, args_type, Kind::Handler(handler))
    }

    /// Looks a command up.
    pub fn get(&self, name: &str) -> Option<&Command<C>> {
        self.commands.iter().find(|c| c.name == name)
    }

    /// Command names in table order (what `query-commands` answers).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.commands.iter().map(|c| c.name.as_str())
    }

    /// The `query-commands` answer: `[{"name": ...}, ...]` in table order.
    pub fn query_commands(&self) -> Value {
        Value::Array(
            self.names()
                .map(|n| {
                    let mut m = Map::new();
                    m.insert("name".into(), Value::String(n.into()));
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// The attached HMP table, if any.
    pub fn hmp(&self) -> Option<&HmpTable<C>> {
        self.hmp.as_ref()
    }
}

impl<C: HmpContext> CommandTable<C> {
    /// Attaches an HMP table and registers `human-monitor-command`
    /// (`"command-line:s,cpu-index:i?"`), which runs a command line through it and returns
    /// its output with CRLF line ends.
    pub fn set_hmp(&mut self, hmp: HmpTable<C>) -> Result<(), TableError> {
        if self.hmp.is_none() {
            self.insert(
                "human-monitor-command",
                "command-line:s,cpu-index:i?",
                Kind::Hmp(run_hmp::<C>),
            )?;
        }
        self.hmp = Some(hmp);
        Ok(())
    }
}

fn run_hmp<C: HmpContext>(
    hmp: &HmpTable<C>,
    ctx: &mut C,
    line: &str,
    cpu: Option<i64>,
) -> Result<String, QmpError> {
    if let Some(index) = cpu {
        if !ctx.select_cpu(index) {
            return Err(QmpError::invalid_parameter_value(
                "cpu-index",
                "a CPU number",
            ));
        }
    }
    Ok(hmp.execute(ctx, line))
}
