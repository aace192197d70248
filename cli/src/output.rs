//! `-o FILE`: output written through the library's [`AtomicFile`], the writer the key
//! store uses too. A temporary file beside the target (mode 0600 from its first byte, or
//! the existing target's mode) is renamed over it only when everything was written and
//! synced: after a failure, or if the process is killed, nothing new is at the target.
//!
//! A symbolic link is followed: the file it points to is replaced, the link stays. A
//! target that exists and is not a regular file (`/dev/null`, `/dev/stdout`, a named pipe)
//! is written directly, as a stream: renaming over it would replace the device or pipe
//! with a regular file.

use std::io;
use std::path::Path;

use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};

use crate::error::CliError;

/// Starts writing the output file `path`.
pub(crate) fn create(path: &Path) -> Result<AtomicFile, CliError> {
    AtomicFile::create(path, NonRegularFile::WriteDirectly).map_err(|e| output_error(path, e))
}

/// Moves the finished output into place.
pub(crate) fn commit(file: AtomicFile, path: &Path) -> Result<(), CliError> {
    file.commit().map_err(|e| output_error(path, e))
}

/// The library's error as an output error (exit code 4) for `path`, keeping its message
/// (which names the step and the file) and its I/O error kind.
fn output_error(path: &Path, e: always_encrypted::Error) -> CliError {
    let kind = match &e {
        always_encrypted::Error::Io { source, .. } => source.kind(),
        _ => io::ErrorKind::Other,
    };
    CliError::Output {
        path: Some(path.to_owned()),
        source: io::Error::new(kind, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::test_dir::TempDir;

    #[test]
    fn commit_replaces_and_drop_leaves_old_file() {
        let d = TempDir::new("output");
        let target = d.join("out.ndjson");
        std::fs::write(&target, "old\n").unwrap();
        {
            let mut f = create(&target).unwrap();
            f.write_all(b"half").unwrap();
            // dropped without commit
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "temp file removed"
        );
        let mut f = create(&target).unwrap();
        f.write_all(b"new\n").unwrap();
        commit(f, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_directly_and_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        let mut f = create(null).unwrap();
        f.write_all(b"discarded\n").unwrap();
        commit(f, null).unwrap();
        assert!(
            std::fs::metadata(null)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn errors_are_output_errors_naming_the_path() {
        let d = TempDir::new("output");
        let missing = d.join("no/such/dir/out");
        let e = create(&missing).err().unwrap();
        assert_eq!(e.exit_code(), crate::error::EXIT_OUTPUT);
        assert!(
            matches!(&e, CliError::Output { path: Some(p), source }
                if *p == missing && source.kind() == io::ErrorKind::NotFound),
            "{e}"
        );
        let e = create(&d).err().unwrap();
        assert!(
            matches!(&e, CliError::Output { source, .. }
                if source.kind() == io::ErrorKind::IsADirectory),
            "{e}"
        );
    }
}
