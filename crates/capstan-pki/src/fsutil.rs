//! Small file helpers: atomic writes with an explicit mode, reads that map "not found" to `None`.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::PkiError;

/// Mode for files holding private keys or secrets.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode for certificates.
pub(crate) const PUBLIC: u32 = 0o644;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its parents; a newly created leaf directory gets mode 0700.
pub(crate) fn create_dir(dir: &Path) -> Result<(), PkiError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Creates the parent directory of `path` if it has one.
pub(crate) fn create_parent(path: &Path) -> Result<(), PkiError> {
    match path.parent() {
        Some(parent) => create_dir(parent),
        None => Ok(()),
    }
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename) with file mode `mode`.
/// The mode is applied even when `path` already existed with another mode.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // The mode given to open() is filtered by the umask and ignored for an existing file.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        file.write_all(contents).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads `path` as UTF-8; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_sets_mode_even_over_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        fs::write(&path, b"old").expect("seed file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        write_atomic(&path, b"new", PRIVATE).expect("write");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("read_dir").collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn read_optional_maps_missing_to_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_optional(&dir.path().join("nope")).expect("read"), None);
    }

    #[test]
    fn create_parent_makes_nested_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/c/file");
        create_parent(&path).expect("create");
        assert!(dir.path().join("a/b/c").is_dir());
    }
}
