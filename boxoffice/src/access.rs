//! What a process or an operator's command presents to the cluster, read from its flags: the TLS
//! credential of `--tls-dir`, which must name the role the command acts in, and the cluster
//! secret, inline or from a file no other user can read.

use std::path::PathBuf;
use std::sync::Arc;

use pki::{Credential, PkiError, Role};

use crate::secrets::{inline_or_file, SecretFileError};
use crate::settings::{cluster_secret, ClusterAccess, ShortSecret};

/// A command's credential and the cluster secret, checked.
#[derive(Clone, Debug)]
pub struct Access {
    pub credential: Arc<Credential>,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "give a credential of the {role} role with --tls-dir (or BOXOFFICE_TLS_DIR): a directory that `boxoffice \
         certs issue --role {role}` writes, from the cluster CA that `boxoffice certs init` creates"
    )]
    NoTlsDir { role: Role },
    #[error("--tls-dir {dir}: {source}")]
    Credential { dir: PathBuf, source: PkiError },
    #[error(
        "--tls-dir {dir} holds a credential of the {found} role; this command acts in the {expected} role \
         (`boxoffice certs issue --role {expected}`)"
    )]
    WrongRole { dir: PathBuf, found: Role, expected: Role },
    #[error("give the cluster secret (--cluster-secret, or --cluster-secret-file)")]
    NoSecret,
    #[error(transparent)]
    SecretFile(#[from] SecretFileError),
    #[error("--cluster-secret-file: {0}")]
    ShortSecret(#[from] ShortSecret),
}

impl ClusterAccess {
    /// The credential and secret these flags give, for a command that acts as `role`.
    pub fn resolve(&self, role: Role) -> Result<Access, AccessError> {
        let dir = self.tls_dir.clone().ok_or(AccessError::NoTlsDir { role })?;
        let credential =
            Credential::load(&dir).map_err(|source| AccessError::Credential { dir: dir.clone(), source })?;
        if credential.role() != role {
            return Err(AccessError::WrongRole { dir, found: credential.role(), expected: role });
        }
        let secret = inline_or_file(self.cluster_secret.as_deref(), self.cluster_secret_file.as_deref())?
            .ok_or(AccessError::NoSecret)?;
        // An inline secret was checked by its flag's parser; a file's is checked here.
        let secret = cluster_secret(&secret)?;
        Ok(Access { credential: Arc::new(credential), secret })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn flags(tls_dir: Option<PathBuf>, secret: Option<&str>, file: Option<PathBuf>) -> ClusterAccess {
        ClusterAccess { cluster_secret: secret.map(str::to_owned), cluster_secret_file: file, tls_dir }
    }

    #[test]
    fn a_command_needs_a_credential_of_its_role_and_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::ClusterCa::create(&dir.path().join("ca"), 30).unwrap();
        let api_dir = dir.path().join("api");
        ca.issue(Role::Api, "api", &[], 30).unwrap().write(&api_dir).unwrap();
        let secret = Some("a-cluster-secret-for-tests");

        let missing = flags(None, secret, None).resolve(Role::Api).unwrap_err();
        assert!(matches!(missing, AccessError::NoTlsDir { role: Role::Api }));
        let text = missing.to_string();
        assert!(text.contains("--tls-dir") && text.contains("boxoffice certs"), "{text}");

        let wrong = flags(Some(api_dir.clone()), secret, None).resolve(Role::Node).unwrap_err();
        assert!(matches!(wrong, AccessError::WrongRole { found: Role::Api, expected: Role::Node, .. }), "{wrong}");
        assert!(matches!(flags(Some(api_dir.clone()), None, None).resolve(Role::Api), Err(AccessError::NoSecret)));

        let access = flags(Some(api_dir.clone()), secret, None).resolve(Role::Api).unwrap();
        assert_eq!((access.credential.role(), access.secret.as_str()), (Role::Api, "a-cluster-secret-for-tests"));

        // From a file: read without its newline, refused if short or world-readable.
        let file = dir.path().join("secret");
        pki::write_private(&file, b"a-secret-from-a-file\n", false).unwrap();
        let access = flags(Some(api_dir.clone()), None, Some(file.clone())).resolve(Role::Api).unwrap();
        assert_eq!(access.secret, "a-secret-from-a-file");
        pki::write_private(&file, b"short\n", false).unwrap();
        let short = flags(Some(api_dir.clone()), None, Some(file.clone())).resolve(Role::Api);
        assert!(matches!(short, Err(AccessError::ShortSecret(_))), "{short:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            pki::write_private(&file, b"a-secret-from-a-file\n", false).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let open = flags(Some(api_dir), None, Some(file)).resolve(Role::Api);
            assert!(matches!(open, Err(AccessError::SecretFile(_))), "{open:?}");
        }
    }
}
