//! Command-line options of `wasm86-bridge`.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Default HTTP/WebSocket listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8086";

/// Help text printed by `--help`.
pub const USAGE: &str = "\
usage: wasm86-bridge [OPTIONS]

Serves the wasm86 web page and relays the QMP of a VM running in a browser tab
to ordinary QMP sockets (qmp-shell, qemu.qmp).

options:
  --listen ADDR          HTTP and WebSocket address (default 127.0.0.1:8086; port 0 picks one)
  --www DIR              page directory, served at / (default ./www)
  --pkg DIR              wasm-bindgen output, served at /pkg/ (default ./pkg)
  --images DIR           guest images, served at /images/ (default ./guest-images)
  --qmp unix:PATH        QMP endpoint on a unix socket (repeatable)
  --qmp tcp:HOST:PORT    QMP endpoint on TCP (repeatable)
  --allow-origin ORIGIN  also accept VM WebSocket connections from ORIGIN (repeatable)
  --access-log FILE      append one line per HTTP response to FILE:
                         METHOD PATH STATUS FIRST-LAST BYTES (range '-' without a body)
  --verbose              log one line per HTTP request to stderr
  --help                 print this help
  --version              print the version

The VM's worker connects to ws://ADDR/qmp (for example index.html?qmp=ws://127.0.0.1:8086/qmp).
";

/// One `--qmp` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEndpoint {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// A TCP listener on `host:port`.
    Tcp(String),
}

impl fmt::Display for QmpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpEndpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            QmpEndpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Everything the bridge needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP/WebSocket listen address, `host:port`.
    pub listen: String,
    /// Directory served at `/`.
    pub www: PathBuf,
    /// Directory served at `/pkg/`.
    pub pkg: PathBuf,
    /// Directory served at `/images/`.
    pub images: PathBuf,
    /// QMP endpoints for standard clients.
    pub qmp: Vec<QmpEndpoint>,
    /// Extra origins allowed to open the `/qmp` WebSocket (lower-case, no trailing slash).
    pub allow_origins: Vec<String>,
    /// Log one line per request to stderr.
    pub verbose: bool,
    /// Append one line per response to this file (`--access-log`).
    pub access_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            www: PathBuf::from("./www"),
            pkg: PathBuf::from("./pkg"),
            images: PathBuf::from("./guest-images"),
            qmp: Vec::new(),
            allow_origins: Vec::new(),
            verbose: false,
            access_log: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server.
    Run(Config),
    /// Print [`USAGE`] and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// A command-line error; its message is one line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An option that does not exist.
    #[error("unknown option '{0}' (try --help)")]
    UnknownOption(String),
    /// An option given without its value.
    #[error("option '{0}' needs a value")]
    MissingValue(String),
    /// A flag given a value with `=`.
    #[error("option '{0}' takes no value")]
    UnexpectedValue(String),
    /// A single-valued option given twice.
    #[error("option '{0}' given more than once")]
    Repeated(String),
    /// A bad value.
    #[error("invalid value '{value}' for {option}: {reason}")]
    BadValue {
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn bad(option: &str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::BadValue {
        option: option.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// Checks `host:port` (host may be `[v6]`); returns it unchanged.
fn parse_host_port(option: &str, value: &str) -> Result<String, ConfigError> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| bad(option, value, "expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(bad(option, value, "missing host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad(
            option,
            value,
            "IPv6 hosts need brackets, as [::1]:PORT",
        ));
    }
    port.parse::<u16>()
        .map_err(|_| bad(option, value, "port must be a number from 0 to 65535"))?;
    Ok(value.to_string())
}

/// Parses a `--qmp` value: `unix:PATH` or `tcp:HOST:PORT`. QEMU's `,server`,
/// `,nowait`, `,server=on` and `,wait=off` suffixes are accepted and mean nothing more.
pub fn parse_qmp_endpoint(value: &str) -> Result<QmpEndpoint, ConfigError> {
    let option = "--qmp";
    let mut parts = value.split(',');
    let main = parts.next().unwrap_or_default();
    for extra in parts {
        if !matches!(extra, "server" | "nowait" | "server=on" | "wait=off") {
            return Err(bad(
                option,
                value,
                "only ,server and ,nowait may follow the address",
            ));
        }
    }
    if let Some(path) = main.strip_prefix("unix:") {
        if path.is_empty() || path.contains('\0') {
            return Err(bad(option, value, "unix: needs a socket path"));
        }
        Ok(QmpEndpoint::Unix(PathBuf::from(path)))
    } else if let Some(addr) = main.strip_prefix("tcp:") {
        parse_host_port(option, addr).map(QmpEndpoint::Tcp)
    } else {
        Err(bad(option, value, "expected unix:PATH or tcp:HOST:PORT"))
    }
}

/// Parses an `--allow-origin` value: `http(s)://host[:port]`, returned lower-case.
pub fn parse_origin(value: &str) -> Result<String, ConfigError> {
    let option = "--allow-origin";
    let lower = value.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| {
            bad(
                option,
                value,
                "expected http://HOST[:PORT] or https://HOST[:PORT]",
            )
        })?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad(
            option,
            value,
            "an origin is a scheme, a host and a port only",
        ));
    }
    Ok(lower.strip_suffix('/').unwrap_or(&lower).to_string())
}

/// Parses the arguments after the program name.
pub fn parse_args<I>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut cfg = Config::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag = |inline: &Option<String>| match inline {
            Some(_) => Err(ConfigError::UnexpectedValue(name.clone())),
            None => Ok(()),
        };
        match name.as_str() {
            "--help" | "-h" => {
                flag(&inline)?;
                return Ok(Command::Help);
            }
            "--version" | "-V" => {
                flag(&inline)?;
                return Ok(Command::Version);
            }
            "--verbose" | "-v" => {
                flag(&inline)?;
                cfg.verbose = true;
            }
            "--listen" | "--www" | "--pkg" | "--images" | "--qmp" | "--allow-origin"
            | "--access-log" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| ConfigError::MissingValue(name.clone()))?,
                };
                let single: Option<&'static str> = match name.as_str() {
                    "--listen" => Some("--listen"),
                    "--www" => Some("--www"),
                    "--pkg" => Some("--pkg"),
                    "--images" => Some("--images"),
                    "--access-log" => Some("--access-log"),
                    _ => None,
                };
                if let Some(s) = single {
                    if seen.contains(&s) {
                        return Err(ConfigError::Repeated(name));
                    }
                    seen.push(s);
                }
                match name.as_str() {
                    "--listen" => cfg.listen = parse_host_port("--listen", &value)?,
                    "--access-log" => {
                        if value.is_empty() || value.contains('\0') {
                            return Err(bad(&name, &value, "expected a file path"));
                        }
                        cfg.access_log = Some(PathBuf::from(value));
                    }
                    "--www" | "--pkg" | "--images" => {
                        if value.is_empty() || value.contains('\0') {
                            return Err(bad(&name, &value, "expected a directory"));
                        }
                        let dir = PathBuf::from(value);
                        match name.as_str() {
                            "--www" => cfg.www = dir,
                            "--pkg" => cfg.pkg = dir,
                            _ => cfg.images = dir,
                        }
                    }
                    "--qmp" => {
                        let ep = parse_qmp_endpoint(&value)?;
                        if cfg.qmp.contains(&ep) {
                            return Err(bad(&name, &value, "endpoint given twice"));
                        }
                        cfg.qmp.push(ep);
                    }
                    _ => {
                        let origin = parse_origin(&value)?;
                        if !cfg.allow_origins.contains(&origin) {
                            cfg.allow_origins.push(origin);
                        }
                    }
                }
            }
            _ => return Err(ConfigError::UnknownOption(arg)),
        }
    }
    Ok(Command::Run(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let Command::Run(c) = parse(&[]).unwrap() else {
            panic!("expected Run")
        };
        assert_eq!(c, Config::default());
        assert_eq!(c.listen, "127.0.0.1:8086");
        assert_eq!(c.www, PathBuf::from("./www"));
        assert_eq!(c.pkg, PathBuf::from("./pkg"));
        assert_eq!(c.images, PathBuf::from("./guest-images"));
    }

    #[test]
    fn all_options_both_spellings() {
        let Command::Run(c) = parse(&[
            "--listen=[::1]:0",
            "--www",
            "/srv/www",
            "--pkg=p",
            "--images",
            "img",
            "--qmp",
            "unix:/tmp/q.sock",
            "--qmp=tcp:127.0.0.1:4444,server,nowait",
            "--allow-origin",
            "HTTP://Example.org:8000/",
            "--verbose",
            "--access-log=/tmp/a.log",
        ])
        .unwrap() else {
            panic!("expected Run")
        };
        assert_eq!(c.listen, "[::1]:0");
        assert_eq!(c.www, PathBuf::from("/srv/www"));
        assert_eq!(c.pkg, PathBuf::from("p"));
        assert_eq!(c.images, PathBuf::from("img"));
        assert_eq!(
            c.qmp,
            vec![
                QmpEndpoint::Unix("/tmp/q.sock".into()),
                QmpEndpoint::Tcp("127.0.0.1:4444".into())
            ]
        );
        assert_eq!(c.allow_origins, vec!["http://example.org:8000".to_string()]);
        assert!(c.verbose);
        assert_eq!(c.access_log, Some(PathBuf::from("/tmp/a.log")));
        assert_eq!(c.qmp[1].to_string(), "tcp:127.0.0.1:4444");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--qmp", "unix:/x", "-h"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--version"]).unwrap(), Command::Version);
    }

    #[test]
    fn errors_are_one_line() {
        let cases: &[&[&str]] = &[
            &["--bogus"],
            &["stray"],
            &["--listen"],
            &["--listen", "nohost"],
            &["--listen", "127.0.0.1:99999"],
            &["--listen", "::1:80"],
            &["--listen", "a:1", "--listen", "b:2"],
            &["--qmp", "stdio"],
            &["--qmp", "unix:"],
            &["--qmp", "tcp:localhost"],
            &["--qmp", "tcp:h:1,telnet"],
            &["--qmp", "unix:/a", "--qmp", "unix:/a"],
            &["--allow-origin", "example.org"],
            &["--allow-origin", "http://a/b"],
            &["--verbose=1"],
            &["--www", ""],
            &["--access-log"],
            &["--access-log", ""],
            &["--access-log", "a", "--access-log", "b"],
        ];
        for args in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            let msg = err.to_string();
            assert!(!msg.contains('\n') && !msg.is_empty(), "{msg:?}");
        }
    }
}
