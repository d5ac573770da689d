//! Starts `boxoffice` processes for the integration tests and the bench.
//!
//! Every `boxoffice` server prints one line once it listens — a fixed prefix, then its address —
//! and scripts, tests and the bench read the address from it. [`spawn_announced`] starts a
//! command, waits for that line, and hands back a [`Process`] that kills the child when dropped,
//! so a failing test or an interrupted bench never leaves a server behind.
//!
//! Architecture invariant: this crate knows the binary only by its command line and its stdout;
//! it links none of the server's crates.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Environment variable naming the `boxoffice` binary to start.
pub const BOXOFFICE_BIN_ENV: &str = "BOXOFFICE_BIN";

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot find the `boxoffice` binary beside {beside} (build it with `cargo build --bin boxoffice`, or name it in {BOXOFFICE_BIN_ENV})")]
    NoBinary { beside: String },
    #[error("cannot start {what}: {source}")]
    Start { what: String, source: std::io::Error },
    #[error("{what} printed no address line within {timeout:?}")]
    Silent { what: String, timeout: Duration },
    #[error("{what} exited before it printed its address line")]
    Exited { what: String },
    #[error("{what} printed {line:?} where its address line was expected (`{prefix}…`)")]
    Unexpected { what: String, line: String, prefix: String },
    #[error("{what} failed ({status}): {stderr}")]
    Failed { what: String, status: std::process::ExitStatus, stderr: String },
}

/// The `boxoffice` binary: `$BOXOFFICE_BIN` if set, else the one built beside the running
/// executable (`target/PROFILE/`, which is also the parent of a test binary's `deps/`).
pub fn boxoffice_bin() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os(BOXOFFICE_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| HarnessError::NoBinary { beside: e.to_string() })?;
    let name = format!("boxoffice{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::NoBinary { beside: exe.display().to_string() })
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// Takes ownership of `child`.
    pub fn own(child: Child) -> Process {
        Process { child: Some(child) }
    }

    /// SIGKILL, no shutdown: what a crash looks like to the rest of the cluster.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has not been killed and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `command` with its stdout piped and waits up to `timeout` for its first line, which
/// must start with `prefix`; returns the process and the rest of that line (the address). The rest
/// of stdout is drained by a thread so the child never blocks on a full pipe. Blocks the calling
/// thread: from async code, call it on a blocking thread.
pub fn spawn_announced(
    mut command: Command,
    what: &str,
    prefix: &str,
    timeout: Duration,
) -> Result<(Process, String), HarnessError> {
    let child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Start { what: what.to_owned(), source })?;
    let mut process = Process::own(child);
    let stdout = process.child.as_mut().and_then(|c| c.stdout.take());
    let Some(stdout) = stdout else {
        return Err(HarnessError::Exited { what: what.to_owned() });
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let line = match rx.recv_timeout(timeout) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(HarnessError::Silent { what: what.to_owned(), timeout }),
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(HarnessError::Exited { what: what.to_owned() }),
    };
    match line.strip_prefix(prefix) {
        Some(rest) => Ok((process, rest.trim().to_owned())),
        None => Err(HarnessError::Unexpected { what: what.to_owned(), line, prefix: prefix.to_owned() }),
    }
}

/// Runs a short command to completion; returns its stdout, or its stderr in the error.
pub fn run_to_end(mut command: Command, what: &str) -> Result<String, HarnessError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Start { what: what.to_owned(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(HarnessError::Failed { what: what.to_owned(), status: out.status, stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn the_address_line_is_read_and_the_child_dies_with_its_owner() {
        let (mut process, addr) = spawn_announced(
            sh("echo 'server: listening on 127.0.0.1:9'; sleep 60"),
            "sh",
            "server: listening on ",
            Duration::from_secs(10),
        )
        .expect("announced");
        assert_eq!(addr, "127.0.0.1:9");
        assert!(process.is_running());
        let pid = process.id().expect("pid");
        drop(process);
        // Killed and reaped by the drop: the pid is gone.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists");
    }

    #[test]
    fn a_wrong_first_line_and_an_early_exit_are_errors() {
        let wrong = spawn_announced(sh("echo hello; sleep 60"), "sh", "server: ", Duration::from_secs(10));
        assert!(matches!(wrong, Err(HarnessError::Unexpected { .. })), "{wrong:?}");
        let exited = spawn_announced(sh("exit 3"), "sh", "server: ", Duration::from_secs(10));
        assert!(matches!(exited, Err(HarnessError::Exited { .. })), "{exited:?}");
        let silent = spawn_announced(sh("sleep 60"), "sh", "server: ", Duration::from_millis(100));
        assert!(matches!(silent, Err(HarnessError::Silent { .. })), "{silent:?}");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let failed = run_to_end(sh("echo oops >&2; exit 2"), "sh");
        assert!(matches!(&failed, Err(HarnessError::Failed { stderr, .. }) if stderr == "oops"), "{failed:?}");
        assert_eq!(run_to_end(sh("echo fine"), "sh").expect("ran"), "fine\n");
    }
}
