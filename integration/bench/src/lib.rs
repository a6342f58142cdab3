//! The pieces of the benchmark harness other harnesses share (integration/abuse): a release
//! `stork serve` child process on free localhost ports, and one-off HTTP probes.

pub mod probe;
pub mod stork;
