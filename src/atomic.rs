//! Files written whole or not at all: a hidden temporary file beside the target, fsynced and
//! renamed over it. Every writer of an output, table, sidecar or download goes through here.
//!
//! The temporary name carries 64 random bits besides the process id: pods of a Kubernetes Job
//! all run as process 1 and may share a volume, so a pid alone would let two of them write into
//! one temporary file. `create_new` makes sharing impossible even then.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary file beside a target; removed on drop unless [`TempFile::persist`] succeeded.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `.NAME.stylize-tmp-PID-RANDOM` in `target`'s directory (which must exist).
    pub fn create(target: &Path) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = dir_of(target);
        let base = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        loop {
            let mut r = [0u8; 8];
            // Without OS randomness the counter and the clock still separate this process's
            // files; create_new refuses a name another writer holds.
            if getrandom::getrandom(&mut r).is_err() {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                r = (nanos.as_nanos() as u64).to_le_bytes();
            }
            let unique = u64::from_le_bytes(r) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{base}.stylize-tmp-{}-{unique:016x}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(TempFile { path, file: Some(file) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (None once persisted).
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// fsync, close and rename over `target`, then (best effort) sync the directory so the
    /// rename itself survives a crash.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        fs::rename(&self.path, target)?;
        // Renamed: nothing left for Drop to clean up.
        self.path = PathBuf::new();
        // Not every platform or filesystem lets a directory be opened and synced.
        if let Ok(d) = File::open(dir_of(target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or_else(|| io::Error::other("temporary file closed"))?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` atomically: readers see the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = TempFile::create(path)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)
}

/// The directory `path` lives in ("" means the current directory).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("stylize-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two, longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two, longer");
        // Two temporaries for one target at once never share a name.
        let (a, b) = (TempFile::create(&p).unwrap(), TempFile::create(&p).unwrap());
        assert_ne!(a.path(), b.path());
        assert!(a.path().file_name().unwrap().to_string_lossy().starts_with(".t.json.stylize-tmp-"));
        drop((a, b));
        // A dropped temporary is removed; only the target is left.
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("t.json")]);
        assert!(write_atomic(&dir.join("missing").join("x"), b"x").is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
