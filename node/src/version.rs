//! Which release a node runs, and which releases it works with.
//!
//! The policy: nodes whose versions share the major number and are at most one minor apart run
//! in one cluster (a rolling upgrade goes one minor at a time). What makes that hold is in the
//! wire and the disk formats: a newer release adds request kinds (an older node refuses a kind it
//! does not know and keeps the connection, [`crate::RequestKind`]), adds reply variants only for
//! those kinds, and reads every format version the release before it wrote
//! (`raft_store::FORMAT_VERSION_MIN`). A new disk format rolls out over two releases: the first
//! reads it and goes on writing the old one, the next writes it, so that a snapshot or entry a
//! newer node writes is one every node of the window reads. `cluster add-node` refuses a node
//! outside that window, and `cluster status` names every node's version.
//!
//! The version is the package's unless the process says otherwise at start: the test build
//! `boxoffice-next-minor` is this release with its minor number one higher, so that tests can run
//! two versions side by side.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// This build's package version.
pub const PACKAGE: &str = env!("CARGO_PKG_VERSION");

static LOCAL: OnceLock<Version> = OnceLock::new();

impl Version {
    /// `MAJOR.MINOR.PATCH`, with anything after a `-` or `+` ignored.
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = Version { major: parts.next()??, minor: parts.next()??, patch: parts.next()?? };
        parts.next().is_none().then_some(version)
    }

    /// The release after this one's minor: `0.1.4` → `0.2.0`.
    pub fn next_minor(self) -> Version {
        Version { major: self.major, minor: self.minor + 1, patch: 0 }
    }

    /// Whether nodes of these two versions may run in one cluster.
    pub fn works_with(self, other: Version) -> bool {
        self.major == other.major && self.minor.abs_diff(other.minor) <= 1
    }

    /// This build's package version.
    pub fn package() -> Version {
        Version::parse(PACKAGE).unwrap_or(Version { major: 0, minor: 0, patch: 0 })
    }

    /// The version this process runs: [`Version::set_local`]'s, else the package's.
    pub fn local() -> Version {
        *LOCAL.get_or_init(Version::package)
    }

    /// Sets the version this process reports, once, before anything asks for it. `false` if it
    /// was already set (or read).
    pub fn set_local(version: Version) -> bool {
        LOCAL.set(version).is_ok()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The versions of a cluster's nodes that cannot all run together: `None` if they can.
pub fn incompatible(versions: &[Version]) -> Option<(Version, Version)> {
    let lowest = versions.iter().min()?;
    let highest = versions.iter().max()?;
    (!lowest.works_with(*highest)).then_some((*lowest, *highest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn versions_parse_and_print() {
        assert_eq!(v("0.1.0"), Version { major: 0, minor: 1, patch: 0 });
        assert_eq!(v("1.12.3-rc.1+build5").to_string(), "1.12.3");
        for bad in ["", "1", "1.2", "1.2.3.4", "a.b.c", "1..3", "-1.0.0"] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Version::parse(PACKAGE).map(|p| p.to_string()).as_deref(), Some(PACKAGE));
    }

    #[test]
    fn nodes_one_minor_apart_work_together_and_no_further() {
        assert!(v("0.1.0").works_with(v("0.2.0")));
        assert!(v("0.2.5").works_with(v("0.1.0")));
        assert!(v("0.1.0").works_with(v("0.1.9")));
        assert!(!v("0.1.0").works_with(v("0.3.0")));
        assert!(!v("1.1.0").works_with(v("2.1.0")));
        assert_eq!(v("0.1.7").next_minor(), v("0.2.0"));
        assert_eq!(incompatible(&[v("0.1.0"), v("0.2.0"), v("0.2.1")]), None);
        assert_eq!(incompatible(&[v("0.1.0"), v("0.2.0"), v("0.3.0")]), Some((v("0.1.0"), v("0.3.0"))));
        assert_eq!(incompatible(&[]), None);
    }
}
