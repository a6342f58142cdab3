//! Subcommands that belong to the `stork` binary only, not to the library: the demo.

pub mod demo;
