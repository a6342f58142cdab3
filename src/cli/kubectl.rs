//! The `kubectl stork` plugin's process: its command line, its runtime, and its errors, which
//! are for the person at the terminal (plain text on stderr, not a log line). See
//! [`crate::kubectl`] for what it does.

use std::process::ExitCode;

use clap::Parser;

/// Parses the plugin's command line, runs it, and prints an error as `error: …`.
pub fn main() -> ExitCode {
    let cli = crate::kubectl::Cli::parse();
    crate::tls::install_crypto_provider();
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(crate::kubectl::run(cli)).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
