//! Secrets given as files (`--jwt-secret-file`, `--queue-secret-file`, `--cluster-secret-file`):
//! a file every user of the machine may read is refused, so a key is never served from one by
//! mistake (`pki::read_private`). Keys `boxoffice dev` generates are written readable by their
//! owner only.

use std::path::Path;

use pki::PkiError;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("secret file {0}")]
    File(#[from] PkiError),
    #[error("secret file {path} is empty or not text")]
    Empty { path: String },
}

/// The secret in `path`, without a trailing newline; refused if the file is world-readable.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let bytes = pki::read_private(path)?;
    let empty = || SecretFileError::Empty { path: path.display().to_string() };
    let text = String::from_utf8(bytes).map_err(|_| empty())?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(empty());
    }
    Ok(secret.to_owned())
}

/// The secret given inline or as a file (clap lets only one of them through).
pub fn inline_or_file(inline: Option<&str>, file: Option<&Path>) -> Result<Option<String>, SecretFileError> {
    match (inline, file) {
        (Some(secret), _) => Ok(Some(secret.to_owned())),
        (None, Some(path)) => read_secret_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// A random key of 32 bytes, as 64 hex digits.
pub fn generate() -> String {
    (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// The key kept at `path`, or a new one written there readable by its owner only.
pub fn kept_or_generated(path: &Path) -> Result<String, SecretFileError> {
    match read_secret_file(path) {
        Ok(secret) => return Ok(secret),
        Err(SecretFileError::File(PkiError::Io { source, .. })) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(SecretFileError::Empty { .. }) => {}
        #[cfg(unix)]
        Err(SecretFileError::File(PkiError::WorldReadable { .. })) => {
            // Written by an older version, readable by all: ours to tighten.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| PkiError::Io { path: path.display().to_string(), source })?;
            return read_secret_file(path);
        }
        Err(e) => return Err(e),
    }
    let secret = generate();
    pki::write_private(path, secret.as_bytes(), false)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    #[test]
    fn a_secret_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "key", "s3cret-of-the-cluster\n", 0o600);
        assert_eq!(read_secret_file(&path).unwrap(), "s3cret-of-the-cluster");
        let group = write(dir.path(), "group", "shared-with-the-group", 0o640);
        assert_eq!(read_secret_file(&group).unwrap(), "shared-with-the-group");
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_or_empty_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = write(dir.path(), "open", "anyone-can-read-this", 0o644);
        assert!(matches!(
            read_secret_file(&open),
            Err(SecretFileError::File(PkiError::WorldReadable { mode: 0o644, .. }))
        ));
        let empty = write(dir.path(), "empty", "\n", 0o600);
        assert!(matches!(read_secret_file(&empty), Err(SecretFileError::Empty { .. })));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretFileError::File(PkiError::Io { .. }))
        ));
    }

    #[test]
    fn a_generated_key_is_kept_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-key");
        let first = kept_or_generated(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(kept_or_generated(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            // One an older version left readable by all is kept, and tightened.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(kept_or_generated(&path).unwrap(), first);
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
