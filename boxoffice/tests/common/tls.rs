//! The test processes' TLS credentials. Every connection between processes is mutual TLS, so a
//! test cluster needs a CA and a credential per role: one set serves every test, made once under
//! the target directory (`CARGO_TARGET_TMPDIR/tls`) and published by an atomic rename, so that
//! test binaries running at once never see half of it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pki::{ClusterCa, Role};

/// How long the test credentials are valid, in days.
const DAYS: u32 = 3650;
/// Written last: a directory without it was never finished.
const READY: &str = "ready";

pub struct TestTls {
    root: PathBuf,
}

/// The shared credentials, made on first use.
pub fn tls() -> &'static TestTls {
    static TLS: OnceLock<TestTls> = OnceLock::new();
    TLS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls");
        if !root.join(READY).exists() {
            make(&root);
        }
        TestTls { root }
    })
}

fn make(root: &Path) {
    let staging = root.with_file_name(format!("tls.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let ca = ClusterCa::create(&staging.join("ca"), DAYS).expect("test CA");
    let local = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    for (role, hosts) in
        [(Role::Node, &local[..]), (Role::Api, &[]), (Role::Indexer, &local[..]), (Role::Operator, &[])]
    {
        let issued = ca.issue(role, &format!("test-{role}"), hosts, DAYS).expect("test credential");
        issued.write(&staging.join(role.as_str())).expect("credential written");
    }
    std::fs::write(staging.join(READY), b"").expect("ready marker");
    // Another test binary may have published first: then its set serves, and ours goes.
    if std::fs::rename(&staging, root).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        assert!(root.join(READY).exists(), "no test credentials at {}", root.display());
    }
}

impl TestTls {
    /// The `--tls-dir` of a process acting as `role`.
    pub fn dir(&self, role: Role) -> PathBuf {
        self.root.join(role.as_str())
    }

    pub fn node(&self) -> String {
        self.dir(Role::Node).display().to_string()
    }

    pub fn api(&self) -> String {
        self.dir(Role::Api).display().to_string()
    }

    pub fn indexer(&self) -> String {
        self.dir(Role::Indexer).display().to_string()
    }

    pub fn operator(&self) -> String {
        self.dir(Role::Operator).display().to_string()
    }

    /// The CA (to issue more credentials in a test).
    pub fn ca(&self) -> ClusterCa {
        ClusterCa::load(&self.root.join("ca")).expect("test CA")
    }

    /// A credential of `role`, loaded.
    pub fn credential(&self, role: Role) -> pki::Credential {
        pki::Credential::load(&self.dir(role)).expect("test credential")
    }
}
