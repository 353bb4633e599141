//! `loadgen`: capacity tests for fanout and any server that follows its client contract.
//!
//! The method (open-loop pacing from scheduled send times, what counts as loss, how server CPU
//! per delivery is computed, and the 2-core caveat) is documented at the top of the library,
//! `loadgen/src/lib.rs`; `loadgen/CAPACITY.md` has a worked example.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match loadgen::run(loadgen::cli::Cli::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ loadgen::RunError::Assertion { .. }) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}
