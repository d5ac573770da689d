//! The `boxoffice` binary: `dev`, `node`, `api`, `indexer`, and the operator's commands. Its
//! command line lives in `cli.rs`; each long-running command in a module of its own.

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

fn main() -> std::process::ExitCode {
    cli::main()
}
