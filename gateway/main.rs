//! The `accord` command: parses the command line and hands each subcommand to its
//! module under `cli/`. Exit status: 0 done, 1 bad input (an agreement, key or input
//! that cannot be used), 2 bad usage.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
