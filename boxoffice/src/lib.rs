//! The `boxoffice` binary's code: `dev`, `node`, `api`, `indexer`, and the operator's commands.
//! Its command line lives in `cli.rs`; each long-running command in a module of its own. Two
//! binaries run it: `boxoffice`, and the test build `boxoffice-next-minor` (`src/next_minor.rs`).

mod access;
mod backup;
mod certs;
mod cli;
mod cluster_cli;
mod config;
mod demo;
mod dev;
mod error;
mod http;
mod ports;
mod process;
mod restore;
mod secrets;
mod serve;
mod settings;
mod telemetry;

/// mimalloc rather than glibc's allocator: request handling allocates many small, short-lived
/// buffers, and glibc's malloc and free took a fifth of the CPU in the flash-sale profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command line as this process was given it.
pub fn main() -> std::process::ExitCode {
    cli::main()
}

/// [`main`], reporting `version` as this process's release (a test build's).
pub fn main_as(version: node::Version) -> std::process::ExitCode {
    node::Version::set_local(version);
    cli::main()
}
