//! The `wasm86-bridge` binary: parses options, binds, prints the addresses, serves.

use std::io::Write;
use std::process::ExitCode;

use wasm86_bridge::config::USAGE;
use wasm86_bridge::{parse_args, Bridge, Command};

fn main() -> ExitCode {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                eprintln!("wasm86-bridge: argument {a:?} is not UTF-8");
                return ExitCode::from(1);
            }
        }
    }
    let cfg = match parse_args(args) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("wasm86-bridge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wasm86-bridge: {e}");
            return ExitCode::from(1);
        }
    };
    for (opt, dir) in [
        ("--www", &cfg.www),
        ("--pkg", &cfg.pkg),
        ("--images", &cfg.images),
    ] {
        if !dir.is_dir() {
            eprintln!(
                "wasm86-bridge: warning: {} ({opt}) is not a directory; its paths will answer 404",
                dir.display()
            );
        }
    }
    let bridge = match Bridge::bind(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wasm86-bridge: {e}");
            return ExitCode::from(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{}", bridge.local_addr());
        for ep in bridge.qmp_endpoints() {
            let _ = writeln!(out, "qmp on {ep}");
        }
        let _ = out.flush();
    }
    match bridge.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm86-bridge: {e}");
            ExitCode::from(1)
        }
    }
}
