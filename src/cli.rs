//! The command line: one binary, one subcommand per job. Exit codes follow the contract:
//! 0 done, 1 the operation failed, 2 bad usage, bad config or bad input file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code: the operation failed or was aborted.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage, bad config or bad input file.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "flowgate", version, about = "A Layer-7 proxy that moves a region's traffic safely")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// The static config (TOML).
        #[arg(short, long, default_value = "config/flowgate.toml")]
        config: PathBuf,
    },
    /// Check a config and/or a traffic table without starting anything. With both, the
    /// table is checked against the config's regions and origins.
    Validate {
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(short, long)]
        table: Option<PathBuf>,
    },
}
