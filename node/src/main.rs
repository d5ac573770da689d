//! The `boxoffice` binary. Its command line lives in `cli.rs`; the simulation (`--cfg madsim`)
//! builds the libraries only, so there the binary is an empty shell.

#[cfg(not(madsim))]
mod cli;

/// mimalloc rather than glibc's allocator: request handling allocates many small, short-lived
/// buffers, and glibc's malloc and free took a fifth of the CPU in the flash-sale profiles.
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
fn main() {}
