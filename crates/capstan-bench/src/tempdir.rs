//! A temporary directory removed on drop. Not the `tempfile` crate: its dependencies would change
//! the features of crates shared with `capstan` (bitflags, fastrand), so that building both packages
//! together would compile a `capstan` whose symbol names miss its link order (crates/capstan/build.rs).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temp dir, named `<prefix><pid>-<nanoseconds>`.
    pub(crate) fn new(prefix: &str) -> Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{prefix}{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_created_empty_and_removed_on_drop() {
        let dir = TempDir::new("capstan-bench-test-").expect("temp dir");
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        assert_eq!(std::fs::read_dir(&path).expect("read").count(), 0);
        std::fs::write(path.join("f"), b"x").expect("write");
        drop(dir);
        assert!(!path.exists());
    }
}
