//! `kubectl stork`: explain placements, list and create snapshots, schedules, policies and rules,
//! and restore, against the cluster of the user's kubeconfig. See `stork::kubectl`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stork::kubectl::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A plugin's errors are for the person at the terminal: plain text on stderr, no log format.
    match rt.block_on(stork::kubectl::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
