//! `wasm86`: the native command-line PC emulator.

mod fdpass;
mod native;
mod options;

use std::process::ExitCode;

fn main() -> ExitCode {
    match options::parse(std::env::args().skip(1)) {
        Ok(options::Command::Help) => {
            print!("{}", options::HELP);
            ExitCode::SUCCESS
        }
        Ok(options::Command::Version) => {
            println!(
                "wasm86 {} (QMP: QEMU 1.1 dialect)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(options::Command::Run(o)) => match native::run(&o) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("wasm86: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("wasm86: {e}");
            ExitCode::FAILURE
        }
    }
}
