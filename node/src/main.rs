//! The `boxoffice` binary. Its command line lives in `cli.rs`; the simulation (`--cfg madsim`)
//! builds the libraries only, so there the binary is an empty shell.

#[cfg(not(madsim))]
mod cli;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
fn main() {}
