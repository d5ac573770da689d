//! `boxoffice`: the server and the operator's commands (see the crate's `lib.rs`).

fn main() -> std::process::ExitCode {
    boxoffice::main()
}
