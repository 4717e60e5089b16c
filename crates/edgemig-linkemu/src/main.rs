//! `edgemig-linkemu` binary: parses options and runs the emulator.

use std::process::ExitCode;

use clap::Parser;
use edgemig_linkemu::app::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    match app::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgemig-linkemu: {e}");
            ExitCode::FAILURE
        }
    }
}
