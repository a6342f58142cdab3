//! `stork-fuzz`: see [`stork_fuzz`] and `--help`.

use std::process::ExitCode;

use clap::Parser;
use stork_fuzz::cli::{Cli, run};

fn main() -> ExitCode {
    run(Cli::parse()).unwrap_or_else(|e| {
        eprintln!("stork-fuzz: {e:#}");
        ExitCode::from(2)
    })
}
