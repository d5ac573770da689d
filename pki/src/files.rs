//! Private files (keys, secrets): never read if every user of the machine could read them, and
//! written readable by their owner only.

use std::io::Write;
use std::path::Path;

use crate::PkiError;

/// The bytes of a private file; refused if it is world-readable.
pub fn read_private(path: &Path) -> Result<Vec<u8>, PkiError> {
    let file = std::fs::File::open(path).map_err(PkiError::io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(PkiError::io(path))?.permissions().mode();
        if mode & 0o004 != 0 {
            return Err(PkiError::WorldReadable { path: path.display().to_string(), mode: mode & 0o777 });
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(PkiError::io(path))?;
    Ok(bytes)
}

/// Writes a private file readable by its owner only, replacing it unless `create_new`.
pub fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<(), PkiError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => PkiError::Exists { path: path.display().to_string() },
        _ => PkiError::Io { path: path.display().to_string(), source: e },
    })?;
    #[cfg(unix)]
    {
        // A file that existed keeps its mode through `open`: narrow it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(PkiError::io(path))?;
    }
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(PkiError::io(path))
}

/// Writes a public file (a certificate).
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    std::fs::write(path, bytes).map_err(PkiError::io(path))
}
