//! Scratch directories (the `tempfile` crate), with the two things tests put in them.

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, named `domo-{tag}-XXXXXX`; removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// Creates the directory; `tag` says which test it belongs to.
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("domo-{tag}-"))
            .tempdir()
            .unwrap();
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `text` to the file `name` in this directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An `ipc://` endpoint for the socket file `name` in this directory.
    pub fn ipc(&self, name: &str) -> String {
        format!("ipc://{}", self.path().join(name).display())
    }
}
