//! The human monitor (HMP) behind `human-monitor-command`: a second command table, QEMU's
//! command-line parser (quoted strings, `/fmt` for `x`/`xp`/`print`, flags, expressions), its
//! expression evaluator, its memory-dump and `print` formatting, and `help`/`info` help
//! generated from the table. Output uses CRLF line ends, as QEMU's monitor writes them.
//!
//! Handlers write `\n` line ends; [`HmpTable::execute`] turns every `\n` into `\r\n`.
//!
//! `args_type` kinds of HMP (as in QEMU's hmp-commands.hx): `s`/`F`/`B` a word or quoted
//! string, `S` the rest of the line, `i`/`l` an expression, `M` an expression in MiB (stored in
//! bytes), `o` a size with an optional `K`/`M`/`G`/`T` suffix (MiB without one), `T` a float,
//! `b` `on`/`off`, `-x` a flag, `/` a format (`/count format size`); `?` makes one optional.

use crate::table::TableError;

/// Largest number of bytes one `x`/`xp` dump shows (a bound on the output the command line
/// can ask for; QEMU has none).
pub const MAX_DUMP_BYTES: u64 = 64 << 10;

/// State of the human monitor that outlives a command: the remembered dump format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmpState {
    /// Last format letter (QEMU starts with `x`).
    pub format: char,
    /// Last unit size in bytes (QEMU starts with 4).
    pub size: u32,
}

impl Default for HmpState {
    fn default() -> HmpState {
        HmpState {
            format: 'x',
            size: 4,
        }
    }
}

/// What the human monitor needs from the machine side.
pub trait HmpContext {
    /// The remembered `/fmt` defaults.
    fn hmp_state(&mut self) -> &mut HmpState;
    /// Value of register `$name` of the current CPU, `None` if there is no such register.
    fn register(&mut self, name: &str) -> Option<u64>;
    /// Makes CPU `index` current (`cpu-index` of `human-monitor-command`); false if none.
    fn select_cpu(&mut self, index: i64) -> bool;
}

/// A parsed `/fmt`: count, format letter, unit size in bytes (-1: none, for `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFormat {
    /// Number of units.
    pub count: u64,
    /// Format letter: `x d u o c i a s`.
    pub format: char,
    /// Unit size in bytes: 1, 2, 4 or 8 (-1 for `i` without a size).
    pub size: i32,
}

/// One parsed HMP argument.
#[derive(Debug, Clone, PartialEq)]
pub enum HmpValue {
    /// `s`, `F`, `B`, `S`.
    Str(String),
    /// `i`, `l`, `M`, `o`.
    Int(i64),
    /// `b`, `-x`.
    Bool(bool),
    /// `T`.
    Float(f64),
    /// `/`.
    Format(DumpFormat),
}

/// Parsed arguments of an HMP command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HmpArgs {
    values: Vec<(String, HmpValue)>,
}

impl HmpArgs {
    /// An argument by name.
    pub fn get(&self, name: &str) -> Option<&HmpValue> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A string argument.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(HmpValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer argument.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(HmpValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// A boolean or flag argument (an absent flag is false).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(HmpValue::Bool(true)))
    }

    /// A float argument.
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(HmpValue::Float(v)) => Some(*v),
            _ => None,
        }
    }

    /// The `/fmt` argument, if the command has one.
    pub fn format(&self) -> Option<DumpFormat> {
        self.values.iter().find_map(|(_, v)| match v {
            HmpValue::Format(f) => Some(*f),
            _ => None,
        })
    }
}

/// An HMP command handler: output text (with `\n` line ends) or an error message.
pub type HmpHandler<C> = fn(&mut C, HmpArgs) -> Result<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HmpKindArg {
    Str,
    Rest,
    Expr,
    Mega,
    Size,
    Float,
    OnOff,
    Flag(char),
    Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HmpArgSpec {
    name: String,
    kind: HmpKindArg,
    optional: bool,
}

fn parse_hmp_args_type(s: &str) -> Result<Vec<HmpArgSpec>, &'static str> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for item in s.split(',') {
        let (name, ty) = item.split_once(':').ok_or("argument without ':'")?;
        let mut chars = ty.chars();
        let kind = match chars.next().ok_or("empty type")? {
            's' | 'F' | 'B' => HmpKindArg::Str,
            'S' => HmpKindArg::Rest,
            'i' | 'l' => HmpKindArg::Expr,
            'M' => HmpKindArg::Mega,
            'o' => HmpKindArg::Size,
            'T' => HmpKindArg::Float,
            'b' => HmpKindArg::OnOff,
            '-' => HmpKindArg::Flag(chars.next().ok_or("flag without a letter")?),
            '/' => HmpKindArg::Format,
            _ => return Err("unknown kind"),
        };
        let optional = match chars.next() {
            None => matches!(kind, HmpKindArg::Flag(_) | HmpKindArg::Format),
            Some('?') => true,
            Some(_) => return Err("junk after the kind"),
        };
        out.push(HmpArgSpec {
            name: name.to_owned(),
            kind,
            optional,
        });
    }
    Ok(out)
}

enum HmpKind<C> {
    Handler(HmpHandler<C>),
    Help,
    Info,
    Print,
}

/// One HMP command.
pub struct HmpCommand<C> {
    name: String,
    params: String,
    help: String,
    args: Vec<HmpArgSpec>,
    kind: HmpKind<C>,
}

impl<C> HmpCommand<C> {
    /// Name, with `|`-separated aliases (`"print|p"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn matches(&self, word: &str) -> bool {
        self.name.split('|').any(|n| n == word)
    }

    fn help_line(&self, prefix: &str) -> String {
        format!("{}{} {} -- {}\n", prefix, self.name, self.params, self.help)
    }
}

/// The human monitor's command table. Built-ins: `help|?`, `info`, `print|p`.
pub struct HmpTable<C> {
    commands: Vec<HmpCommand<C>>,
    info: Vec<HmpCommand<C>>,
}

impl<C> Default for HmpTable<C> {
    fn default() -> Self {
        HmpTable::new()
    }
}

impl<C> HmpTable<C> {
    /// A table with the built-ins.
    pub fn new() -> HmpTable<C> {
        let builtin = |name: &str, args: &str, params: &str, help: &str, kind| HmpCommand {
            name: name.into(),
            params: params.into(),
            help: help.into(),
            args: parse_hmp_args_type(args).unwrap_or_default(),
            kind,
        };
        HmpTable {
            commands: vec![
                builtin("help|?", "name:S?", "[cmd]", "show the help", HmpKind::Help),
                builtin(
                    "info",
                    "item:s?",
                    "[subcommand]",
                    "show various information about the system state",
                    HmpKind::Info,
                ),
                builtin(
                    "print|p",
                    "fmt:/,val:l",
                    "/fmt expr",
                    "print expression value (use $reg for CPU register access)",
                    HmpKind::Print,
                ),
            ],
            info: Vec::new(),
        }
    }

    fn make(
        list: &[HmpCommand<C>],
        name: &str,
        args_type: &str,
        params: &str,
        help: &str,
        handler: HmpHandler<C>,
    ) -> Result<HmpCommand<C>, TableError> {
        if name.split('|').any(|n| list.iter().any(|c| c.matches(n))) {
            return Err(TableError::Duplicate(name.into()));
        }
        let args = parse_hmp_args_type(args_type).map_err(|reason| TableError::BadArgsType {
            command: name.into(),
            args_type: args_type.into(),
            reason,
        })?;
        Ok(HmpCommand {
            name: name.into(),
            params: params.into(),
            help: help.into(),
            args,
            kind: HmpKind::Handler(handler),
        })
    }

    /// Registers a command: name (`"x"`, `"quit|q"`), HMP `args_type` (`"fmt:/,addr:l"`),
    /// parameters as shown by `help` (`"/fmt addr"`), help text, handler.
    pub fn register(
        &mut self,
        name: &str,
        args_type: &str,
        params: &str,
        help: &str,
        handler: HmpHandler<C>,
    ) -> Result<(), TableError> {
        let c = Self::make(&self.commands, name, args_type, params, help, handler)?;
        self.commands.push(c);
        Ok(())
    }

    /// Registers an `info` subcommand.
    pub fn register_info(
        &mut self,
        name: &str,
        args_type: &str,
        params: &str,
        help: &str,
        handler: HmpHandler<C>,
    ) -> Result<(), TableError> {
        let c = Self::make(&self.info, name, args_type, params, help, handler)?;
        self.info.push(c);
        Ok(())
    }

    /// The `help` text: every command (or those named `name`), `help info` for `info`.
    pub fn help(&self, name: Option<&str>) -> String {
        let mut out = String::new();
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some("info") => self
                .info
                .iter()
                .for_each(|c| out.push_str(&c.help_line("info "))),
            Some(n) => self
                .commands
                .iter()
                .filter(|c| c.matches(n))
                .for_each(|c| out.push_str(&c.help_line(""))),
            None => self
                .commands
                .iter()
                .for_each(|c| out.push_str(&c.help_line(""))),
        }
        out
    }
}

impl<C: HmpContext> HmpTable<C> {
    /// Runs one command line; returns its output with CRLF line ends (errors included, as
    /// the monitor prints them).
    pub fn execute(&self, ctx: &mut C, line: &str) -> String {
        let text = match self.run(ctx, line) {
            Ok(s) | Err(s) => s,
        };
        crlf(&text)
    }

    fn run(&self, ctx: &mut C, line: &str) -> Result<String, String> {
        let mut p = Cursor::new(line);
        p.skip_ws();
        let name = p.take_while(|c| c != '/' && !c.is_ascii_whitespace());
        if name.is_empty() {
            return Ok(String::new());
        }
        let Some(cmd) = self.commands.iter().find(|c| c.matches(name)) else {
            return Err(format!("unknown command: '{name}'\n"));
        };
        if let HmpKind::Info = cmd.kind {
            p.skip_ws();
            let item = p.take_while(|c| !c.is_ascii_whitespace());
            if item.is_empty() {
                return Ok(self.help(Some("info")));
            }
            let Some(sub) = self.info.iter().find(|c| c.matches(item)) else {
                return Ok(self.help(Some("info")));
            };
            return self.call(ctx, sub, &mut p, &format!("info {item}"));
        }
        self.call(ctx, cmd, &mut p, name)
    }

    fn call(
        &self,
        ctx: &mut C,
        cmd: &HmpCommand<C>,
        p: &mut Cursor<'_>,
        name: &str,
    ) -> Result<String, String> {
        let args = parse_command_args(ctx, &cmd.args, p, name)?;
        match &cmd.kind {
            HmpKind::Handler(h) => h(ctx, args),
            HmpKind::Help => Ok(self.help(args.str("name"))),
            HmpKind::Info => Ok(self.help(Some("info"))),
            HmpKind::Print => {
                let f = args.format().unwrap_or(DumpFormat {
                    count: 1,
                    format: 'd',
                    size: 4,
                });
                Ok(format_print(f.format, args.int("val").unwrap_or(0) as u64))
            }
        }
    }
}

/// Converts every `\n` into `\r\n`, as QEMU's `monitor_puts()`.
pub fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|r| r.chars().next())
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.s.get(self.pos..)?.chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&mut self) -> &'a str {
        let r = self.s.get(self.pos..).unwrap_or("");
        self.pos = self.s.len();
        r
    }
}

/// Reads a word or a quoted string (`"a \"b\""`, escapes `\n \r \\ \' \"`).
fn get_str(p: &mut Cursor<'_>) -> Result<String, String> {
    p.skip_ws();
    match p.peek() {
        None => Err("string expected".into()),
        Some('"') => {
            p.bump();
            let mut out = String::new();
            loop {
                match p.bump() {
                    None => return Err("unterminated string".into()),
                    Some('"') => return Ok(out),
                    Some('\\') => match p.bump() {
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some(c @ ('\\' | '\'' | '"')) => out.push(c),
                        Some(c) => return Err(format!("unsupported escape code: '\\{c}'")),
                        None => return Err("unterminated string".into()),
                    },
                    Some(c) => out.push(c),
                }
            }
        }
        Some(_) => Ok(p.take_while(|c| !c.is_ascii_whitespace()).to_owned()),
    }
}

fn parse_format<C: HmpContext>(ctx: &mut C, p: &mut Cursor<'_>) -> Result<DumpFormat, String> {
    p.skip_ws();
    let st = ctx.hmp_state();
    if p.peek() != Some('/') {
        let size = if st.format == 'i' { -1 } else { st.size as i32 };
        return Ok(DumpFormat {
            count: 1,
            format: st.format,
            size,
        });
    }
    p.bump();
    let mut count: u64 = 1;
    if p.peek().is_some_and(|c| c.is_ascii_digit()) {
        count = 0;
        while let Some(d) = p.peek().and_then(|c| c.to_digit(10)) {
            count = count.saturating_mul(10).saturating_add(u64::from(d));
            p.bump();
        }
    }
    let mut format = None;
    let mut size: Option<u32> = None;
    loop {
        match p.peek() {
            Some(c @ ('o' | 'd' | 'u' | 'x' | 'i' | 'c' | 'a' | 's')) => format = Some(c),
            Some('b') => size = Some(1),
            Some('h') => size = Some(2),
            Some('w') => size = Some(4),
            Some('g' | 'L') => size = Some(8),
            _ => break,
        }
        p.bump();
    }
    if let Some(c) = p.peek().filter(|c| !c.is_ascii_whitespace()) {
        return Err(format!("invalid char in format: '{c}'"));
    }
    let format = format.unwrap_or(st.format);
    let size = if format == 'i' {
        size.map_or(-1, |s| s as i32)
    } else {
        let s = size.unwrap_or(st.size);
        st.size = s;
        s as i32
    };
    st.format = format;
    Ok(DumpFormat {
        count,
        format,
        size,
    })
}

fn parse_command_args<C: HmpContext>(
    ctx: &mut C,
    specs: &[HmpArgSpec],
    p: &mut Cursor<'_>,
    cmd: &str,
) -> Result<HmpArgs, String> {
    let mut args = HmpArgs::default();
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.name.clone();
        match spec.kind {
            HmpKindArg::Format => {
                let f = parse_format(ctx, p).map_err(|e| format!("{e}\n"))?;
                args.values.push((name, HmpValue::Format(f)));
                continue;
            }
            HmpKindArg::Flag(letter) => {
                p.skip_ws();
                let save = p.pos;
                if p.peek() == Some('-') {
                    p.bump();
                    match p.peek() {
                        Some(c) if c == letter => {
                            p.bump();
                            args.values.push((name, HmpValue::Bool(true)));
                        }
                        Some(c) if specs[i..].iter().any(|s| s.kind == HmpKindArg::Flag(c)) => {
                            p.pos = save;
                        }
                        Some(c) if c.is_ascii_alphabetic() => {
                            return Err(format!("{cmd}: unsupported option -{c}\n"));
                        }
                        _ => p.pos = save,
                    }
                }
                continue;
            }
            _ => {}
        }
        p.skip_ws();
        let expr = matches!(spec.kind, HmpKindArg::Expr | HmpKindArg::Mega);
        // A missing expression is reported by the evaluator, as QEMU does.
        if p.at_end() && (spec.optional || !expr) {
            if spec.optional {
                continue;
            }
            let what = match spec.kind {
                HmpKindArg::Size => "size",
                HmpKindArg::Float => "number",
                HmpKindArg::OnOff => "'on' or 'off'",
                _ => "string",
            };
            return Err(format!("{cmd}: {what} expected\n"));
        }
        let value = match spec.kind {
            HmpKindArg::Str => HmpValue::Str(get_str(p).map_err(|e| format!("{cmd}: {e}\n"))?),
            HmpKindArg::Rest => HmpValue::Str(p.rest().trim_end().to_owned()),
            HmpKindArg::Expr => HmpValue::Int(eval_expr(ctx, p).map_err(|e| format!("{e}\n"))?),
            HmpKindArg::Mega => {
                let v = eval_expr(ctx, p).map_err(|e| format!("{e}\n"))?;
                HmpValue::Int(v.wrapping_shl(20))
            }
            HmpKindArg::Size => {
                let w = get_str(p).map_err(|e| format!("{cmd}: {e}\n"))?;
                HmpValue::Int(parse_size(&w).ok_or_else(|| "invalid size\n".to_string())?)
            }
            HmpKindArg::Float => {
                let w = get_str(p).map_err(|e| format!("{cmd}: {e}\n"))?;
                HmpValue::Float(parse_seconds(&w).ok_or_else(|| "invalid number\n".to_string())?)
            }
            HmpKindArg::OnOff => match get_str(p).as_deref() {
                Ok("on") => HmpValue::Bool(true),
                Ok("off") => HmpValue::Bool(false),
                _ => return Err("Expected 'on' or 'off'\n".into()),
            },
            HmpKindArg::Format | HmpKindArg::Flag(_) => continue,
        };
        args.values.push((name, value));
    }
    p.skip_ws();
    if !p.at_end() {
        return Err(format!("{cmd}: extraneous characters at the end of line\n"));
    }
    Ok(args)
}

/// `12`, `12K`, `3M`, `1G`, `1T` (no suffix: MiB, as QEMU's `o` kind).
fn parse_size(w: &str) -> Option<i64> {
    let (num, shift) = match w.char_indices().last()? {
        (i, 'k' | 'K') => (&w[..i], 10),
        (i, 'm' | 'M') => (&w[..i], 20),
        (i, 'g' | 'G') => (&w[..i], 30),
        (i, 't' | 'T') => (&w[..i], 40),
        (i, 'b' | 'B') => (&w[..i], 0),
        _ => (w, 20),
    };
    let v: f64 = num.parse().ok()?;
    let bytes = v * (1u64 << shift) as f64;
    (v >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// A float with an optional `ms`/`us`/`ns` suffix, in seconds.
fn parse_seconds(w: &str) -> Option<f64> {
    let (num, div) = if let Some(n) = w.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = w.strip_suffix("us") {
        (n, 1e6)
    } else if let Some(n) = w.strip_suffix("ns") {
        (n, 1e9)
    } else {
        (w, 1.0)
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v / div)
}

/// Evaluates an HMP expression at the cursor, stopping at the first character that cannot
/// continue it. Operators, loosest first: `<< >>`, `+ -`, `* / %`, `& | ^`; unary `+ - ~`;
/// parentheses; numbers in C notation (`0x1f`, `017`, `42`); `'c'` characters; `$reg`.
/// Arithmetic wraps in 64 bits, as QEMU's.
pub fn eval<C: HmpContext>(ctx: &mut C, text: &str) -> Result<i64, String> {
    let mut p = Cursor::new(text);
    let v = eval_expr(ctx, &mut p)?;
    p.skip_ws();
    if !p.at_end() {
        return Err("invalid char in expression".into());
    }
    Ok(v)
}

fn eval_expr<C: HmpContext>(ctx: &mut C, p: &mut Cursor<'_>) -> Result<i64, String> {
    Expr { ctx, p, depth: 0 }.shift()
}

/// Deepest parenthesis nesting an expression may use.
const MAX_EXPR_DEPTH: u32 = 64;

struct Expr<'c, 'p, 'a, C> {
    ctx: &'c mut C,
    p: &'p mut Cursor<'a>,
    depth: u32,
}

impl<C: HmpContext> Expr<'_, '_, '_, C> {
    fn shift(&mut self) -> Result<i64, String> {
        let mut v = self.sum()?;
        loop {
            self.p.skip_ws();
            let op = match (self.p.peek(), self.p.peek2()) {
                (Some('<'), Some('<')) => '<',
                (Some('>'), Some('>')) => '>',
                _ => return Ok(v),
            };
            self.p.bump();
            self.p.bump();
            let r = self.sum()?;
            let n = (r & 63) as u32;
            v = if op == '<' {
                v.wrapping_shl(n)
            } else {
                ((v as u64) >> n) as i64
            };
        }
    }

    fn sum(&mut self) -> Result<i64, String> {
        let mut v = self.prod()?;
        loop {
            self.p.skip_ws();
            match self.p.peek() {
                Some('+') => {
                    self.p.bump();
                    v = v.wrapping_add(self.prod()?);
                }
                Some('-') => {
                    self.p.bump();
                    v = v.wrapping_sub(self.prod()?);
                }
                _ => return Ok(v),
            }
        }
    }

    fn prod(&mut self) -> Result<i64, String> {
        let mut v = self.logic()?;
        loop {
            self.p.skip_ws();
            let op = match self.p.peek() {
                Some(c @ ('*' | '/' | '%')) => c,
                _ => return Ok(v),
            };
            self.p.bump();
            let r = self.logic()?;
            v = match op {
                '*' => v.wrapping_mul(r),
                _ if r == 0 => return Err("division by zero".into()),
                '/' => v.wrapping_div(r),
                _ => v.wrapping_rem(r),
            };
        }
    }

    fn logic(&mut self) -> Result<i64, String> {
        let mut v = self.unary()?;
        loop {
            self.p.skip_ws();
            let op = match self.p.peek() {
                Some(c @ ('&' | '|' | '^')) => c,
                _ => return Ok(v),
            };
            self.p.bump();
            let r = self.unary()?;
            v = match op {
                '&' => v & r,
                '|' => v | r,
                _ => v ^ r,
            };
        }
    }

    fn unary(&mut self) -> Result<i64, String> {
        self.p.skip_ws();
        let Some(c) = self.p.peek() else {
            return Err("unexpected end of expression".into());
        };
        match c {
            '+' | '-' | '~' | '(' => {
                self.depth += 1;
                if self.depth > MAX_EXPR_DEPTH {
                    return Err("expression too deep".into());
                }
                self.p.bump();
                let v = if c == '(' {
                    let v = self.shift()?;
                    self.p.skip_ws();
                    if self.p.bump() != Some(')') {
                        return Err("')' expected".into());
                    }
                    v
                } else {
                    let v = self.unary()?;
                    match c {
                        '-' => v.wrapping_neg(),
                        '~' => !v,
                        _ => v,
                    }
                };
                self.depth -= 1;
                Ok(v)
            }
            '\'' => {
                self.p.bump();
                let ch = self.p.bump().ok_or("unexpected end of expression")?;
                if self.p.bump() != Some('\'') {
                    return Err("invalid char in expression".into());
                }
                Ok(i64::from(u32::from(ch)))
            }
            '$' => {
                self.p.bump();
                let name = self
                    .p
                    .take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                self.ctx
                    .register(name)
                    .map(|v| v as i64)
                    .ok_or_else(|| "unknown register".into())
            }
            '0'..='9' => {
                let (radix, digits) =
                    if self.p.peek() == Some('0') && matches!(self.p.peek2(), Some('x' | 'X')) {
                        self.p.bump();
                        self.p.bump();
                        (16, self.p.take_while(|c| c.is_ascii_hexdigit()))
                    } else if self.p.peek() == Some('0') {
                        (8, self.p.take_while(|c| ('0'..='7').contains(&c)))
                    } else {
                        (10, self.p.take_while(|c| c.is_ascii_digit()))
                    };
                if digits.is_empty() {
                    return Err("invalid char in expression".into());
                }
                u64::from_str_radix(digits, radix)
                    .map(|v| v as i64)
                    .map_err(|_| "number too large".into())
            }
            _ => Err("invalid char in expression".into()),
        }
    }
}

/// QEMU's `monitor_printc`: a character in quotes, with C escapes.
pub fn format_char(c: u64) -> String {
    match c {
        0x27 => "'\\''".into(),
        0x5C => "'\\\\'".into(),
        0x0A => "'\\n'".into(),
        0x0D => "'\\r'".into(),
        32..=126 => format!("'{}'", c as u8 as char),
        _ => format!("'\\x{:02x}'", c),
    }
}

/// `print`'s output for `format`: `%#o`, `%#x`, `%u`, `%c` or (default) `%d`, plus `\n`.
pub fn format_print(format: char, val: u64) -> String {
    let s = match format {
        'o' if val == 0 => "0".to_string(),
        'o' => format!("{val:#o}").replacen("0o", "0", 1),
        'x' | 'a' if val == 0 => "0".to_string(),
        'x' | 'a' => format!("{val:#x}"),
        'u' => val.to_string(),
        'c' => format_char(val),
        _ => (val as i64).to_string(),
    };
    s + "\n"
}

/// QEMU's `memory_dump()` for `x` (virtual: `%08x:` addresses) and `xp` (physical:
/// `%016x:`), with its columns (8 units per line for bytes, 16 bytes per line otherwise) and
/// number formats. `read(addr, buf)` fills `buf` from guest memory without side effects, or
/// returns false (a virtual dump then prints `Cannot access memory`). Format `i` needs a
/// disassembler and is not handled here. At most [`MAX_DUMP_BYTES`] are shown.
pub fn memory_dump(
    f: DumpFormat,
    mut addr: u64,
    physical: bool,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> String {
    let mut wsize = match f.size {
        1 | 2 | 4 | 8 => f.size as u64,
        _ => 4,
    };
    if f.format == 'a' {
        wsize = 4;
    }
    let mut len = wsize.saturating_mul(f.count).min(MAX_DUMP_BYTES);
    let line_size: u64 = if wsize == 1 { 8 } else { 16 };
    let max_digits = match f.format {
        'o' => (wsize * 8).div_ceil(3) as usize,
        'u' | 'd' => (wsize * 8 * 10).div_ceil(33) as usize,
        _ => (wsize * 8 / 4) as usize,
    };
    if matches!(f.format, 'c' | 's') {
        wsize = 1;
    }
    let mut out = String::new();
    let mut buf = [0u8; 16];
    while len > 0 {
        if physical {
            out.push_str(&format!("{addr:016x}:"));
        } else {
            out.push_str(&format!("{:08x}:", addr as u32));
        }
        let l = len.min(line_size) as usize;
        let chunk = &mut buf[..l];
        if !read(addr, chunk) {
            if physical {
                chunk.fill(0xff);
            } else {
                out.push_str(" Cannot access memory\n");
                break;
            }
        }
        if f.format == 's' {
            out.push_str(" \"");
            for &b in chunk.iter() {
                let q = format_char(u64::from(b));
                out.push_str(&q[1..q.len() - 1]);
            }
            out.push('"');
        } else {
            for unit in chunk.chunks(wsize as usize) {
                let mut v: u64 = 0;
                for (k, b) in unit.iter().enumerate() {
                    v |= u64::from(*b) << (8 * k);
                }
                out.push(' ');
                match f.format {
                    'o' if v == 0 => out.push_str(&format!("{:>max_digits$}", "0")),
                    'o' => out.push_str(&format!("{:>max_digits$}", format!("0{v:o}"))),
                    'u' => out.push_str(&format!("{v:>max_digits$}")),
                    'd' => out.push_str(&format!("{:>max_digits$}", v as i64)),
                    'c' => out.push_str(&format_char(v)),
                    _ => out.push_str(&format!("0x{v:0max_digits$x}")),
                }
            }
        }
        out.push('\n');
        addr = addr.wrapping_add(l as u64);
        len -= l as u64;
    }
    out
}
