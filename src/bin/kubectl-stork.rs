//! `kubectl stork`: explain placements, list and create snapshots, schedules, policies and rules,
//! and restore, against the cluster of the user's kubeconfig. See `stork::kubectl`.

fn main() -> std::process::ExitCode {
    stork::cli::kubectl::main()
}
