//! Output files written atomically: a temporary file beside the target, renamed over it
//! only when everything was written and synced. After a failure, or if the process is
//! killed, nothing new is at the target path.
//!
//! A symbolic link is followed: the file it points to is replaced, the link stays. A
//! target that exists and is not a regular file (`/dev/null`, `/dev/stdout`, a named pipe)
//! is written directly, as a stream: renaming over it would replace the device or pipe
//! with a regular file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written to a temporary path, moved into place by [`AtomicFile::commit`].
/// Dropping it without committing removes the temporary file.
pub(crate) struct AtomicFile {
    target: PathBuf,
    /// The temporary file; `None` when writing directly to a device or pipe.
    temp: Option<PathBuf>,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates a temporary file in the directory of `target` (of the file it links to, for
    /// a symbolic link), or opens `target` for writing when it exists and is not a regular
    /// file.
    pub(crate) fn create(target: &Path) -> io::Result<Self> {
        let target = match fs::canonicalize(target) {
            // An existing path, links resolved.
            Ok(real) => real,
            // Nothing there yet (or a dangling link): the path as given.
            Err(_) => target.to_path_buf(),
        };
        let target = target.as_path();
        if let Ok(meta) = fs::metadata(target) {
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a directory",
                ));
            }
            if !meta.is_file() {
                let f = File::options().write(true).open(target)?;
                return Ok(AtomicFile {
                    target: target.to_path_buf(),
                    temp: None,
                    file: Some(BufWriter::with_capacity(1 << 16, f)),
                });
            }
        }
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let mut last_err = None;
        for attempt in 0..16u32 {
            let temp = dir.join(format!(
                ".{}.tmp-{}-{}",
                name.to_string_lossy(),
                std::process::id(),
                attempt
            ));
            match File::options().write(true).create_new(true).open(&temp) {
                Ok(f) => {
                    return Ok(AtomicFile {
                        target: target.to_path_buf(),
                        temp: Some(temp),
                        file: Some(BufWriter::with_capacity(1 << 16, f)),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
    }

    /// Flushes, syncs, and renames the temporary file over the target, then syncs the
    /// directory.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let Some(writer) = self.file.take() else {
            return Err(io::Error::other("already committed"));
        };
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let Some(temp) = &self.temp else {
            // A device or pipe: written directly, nothing to sync or move.
            return Ok(());
        };
        file.sync_all()?;
        drop(file);
        fs::rename(temp, &self.target)?;
        if let Ok(d) = File::open(parent_dir(&self.target)) {
            // Not every platform can sync a directory; the rename already happened.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some()
            && let Some(temp) = &self.temp
        {
            let _ = fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ae-output-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn commit_replaces_and_drop_leaves_old_file() {
        let d = tempdir();
        let target = d.join("out.ndjson");
        fs::write(&target, "old\n").unwrap();
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"half").unwrap();
            // dropped without commit
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "temp file removed");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new\n").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_directly_and_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        let mut f = AtomicFile::create(null).unwrap();
        f.write_all(b"discarded\n").unwrap();
        f.commit().unwrap();
        // Renaming a temporary file over it would have made it a regular file.
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_followed_and_kept() {
        let d = tempdir();
        let real = d.join("real.ndjson");
        let link = d.join("link.ndjson");
        fs::write(&real, "old\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link).unwrap();
        f.write_all(b"new\n").unwrap();
        f.commit().unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new\n");
        assert!(AtomicFile::create(&d).is_err(), "a directory is refused");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error() {
        let d = tempdir();
        assert!(AtomicFile::create(&d.join("no/such/dir/out")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
