//! The one atomic writer (`atomic_file`) the key store and `ae -o` share: private new
//! files, kept permissions, links followed, devices refused or streamed, nothing left
//! behind on failure (issue 19, item 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;

use always_encrypted::Error;
use always_encrypted::atomic_file::{AtomicFile, NonRegularFile, atomic_write};
use common::TempDir;

/// The names of the temporary files of `name` in `dir`.
fn temps(dir: &TempDir, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.tmp-");
    dir.names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn commit_replaces_and_drop_keeps_the_old_file() {
    let dir = TempDir::new("atomic-commit");
    let path = dir.join("out.ndjson");
    std::fs::write(&path, "old\n").unwrap();
    let mut f = AtomicFile::create(&path, NonRegularFile::Refuse).unwrap();
    f.write_all(b"half a line").unwrap();
    f.flush().unwrap();
    assert_eq!(temps(&dir, "out.ndjson").len(), 1);
    drop(f);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
    assert_eq!(dir.names(), ["out.ndjson"], "the temporary file is removed");

    let mut f = AtomicFile::create(&path, NonRegularFile::Refuse).unwrap();
    f.write_all(b"new\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
    f.commit().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    assert_eq!(dir.names(), ["out.ndjson"]);
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// The permission bits, in octal.
    fn mode(p: &Path) -> String {
        format!(
            "{:o}",
            std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
        )
    }

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The test runs under the umask it was given (usually 022, which leaves a plain new
    /// file readable by everyone); the CLI tests set 022 explicitly.
    #[test]
    fn a_new_file_is_private_from_its_first_byte() {
        let dir = TempDir::new("atomic-new");
        let path = dir.join("plain.ndjson");
        let f = AtomicFile::create(&path, NonRegularFile::Refuse).unwrap();
        let temp = dir.join(&temps(&dir, "plain.ndjson")[0]);
        assert_eq!(mode(&temp), "600");
        f.commit().unwrap();
        assert_eq!(mode(&path), "600");

        atomic_write(&dir.join("policy.json"), b"{}").unwrap();
        assert_eq!(mode(&dir.join("policy.json")), "600");
    }

    #[test]
    fn an_existing_file_keeps_its_mode_before_anything_is_written() {
        let dir = TempDir::new("atomic-existing");
        let path = dir.join("plain.ndjson");
        std::fs::write(&path, "old\n").unwrap();
        for m in [0o600, 0o640, 0o444] {
            set_mode(&path, m);
            let mut f = AtomicFile::create(&path, NonRegularFile::Refuse).unwrap();
            let temp = dir.join(&temps(&dir, "plain.ndjson")[0]);
            assert_eq!(std::fs::metadata(&temp).unwrap().len(), 0);
            assert_eq!(mode(&temp), format!("{m:o}"), "before the first byte");
            f.write_all(b"new\n").unwrap();
            f.commit().unwrap();
            assert_eq!(mode(&path), format!("{m:o}"));
            atomic_write(&path, b"newer\n").unwrap();
            assert_eq!(mode(&path), format!("{m:o}"));
        }
        // Set-id and sticky bits are not carried over to a rewritten file.
        set_mode(&path, 0o4750);
        atomic_write(&path, b"x\n").unwrap();
        assert_eq!(mode(&path), "750");
    }

    /// An existing file keeps its owner and group where the process may set them (root
    /// here; skipped otherwise). The case where the group cannot be kept (a user not in
    /// the group) is in the CLI tests (`private_output`), which can run `ae` as another
    /// user.
    #[test]
    fn an_existing_file_keeps_its_owner_and_group() {
        let dir = TempDir::new("atomic-owner");
        let path = dir.join("shared.ndjson");
        std::fs::write(&path, "old\n").unwrap();
        if std::os::unix::fs::chown(&path, Some(4243), Some(4242)).is_err() {
            eprintln!("skipped: needs root to set the owner of a file");
            return;
        }
        set_mode(&path, 0o640);
        atomic_write(&path, b"new\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), mode(&path)),
            (4243, 4242, "640".to_owned())
        );
    }

    #[test]
    fn a_link_is_followed_and_kept() {
        let dir = TempDir::new("atomic-link");
        let real = dir.join("real.ndjson");
        let link = dir.join("link.ndjson");
        std::fs::write(&real, "old\n").unwrap();
        set_mode(&real, 0o640);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link, NonRegularFile::Refuse).unwrap();
        assert_eq!(f.target(), std::fs::canonicalize(&real).unwrap());
        f.write_all(b"new\n").unwrap();
        f.commit().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
        assert_eq!(mode(&real), "640");
        assert_eq!(dir.names(), ["link.ndjson", "real.ndjson"]);

        // A dangling link is replaced by the new (private) file.
        let dangling = dir.join("dangling.ndjson");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        atomic_write(&dangling, b"x\n").unwrap();
        assert!(std::fs::symlink_metadata(&dangling).unwrap().is_file());
        assert_eq!(mode(&dangling), "600");
        assert!(!dir.join("nowhere").exists());
    }

    #[test]
    fn devices_are_refused_or_streamed_and_stay_devices() {
        let null = Path::new("/dev/null");
        let e = AtomicFile::create(null, NonRegularFile::Refuse).unwrap_err();
        assert!(
            matches!(&e, Error::Io { path, source, .. }
                if path == null && source.kind() == std::io::ErrorKind::InvalidInput),
            "{e}"
        );
        assert!(matches!(atomic_write(null, b"x"), Err(Error::Io { .. })));
        let mut f = AtomicFile::create(null, NonRegularFile::WriteDirectly).unwrap();
        f.write_all(b"discarded\n").unwrap();
        f.commit().unwrap();
        // Renaming a temporary file over it would have made it a regular file.
        assert!(
            std::fs::metadata(null)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn a_failed_rename_leaves_the_file_and_no_temporary_file() {
        let dir = TempDir::new("atomic-rename-fails");
        let path = dir.join("out.ndjson");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = AtomicFile::create(&path, NonRegularFile::Refuse).unwrap();
        f.write_all(b"new\n").unwrap();
        // Something else takes the target's place in between: a directory cannot be
        // renamed over.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = f.commit().unwrap_err();
        assert!(
            matches!(&e, Error::Io { path: p, .. } if p.ends_with("out.ndjson")),
            "{e}"
        );
        assert_eq!(dir.names(), ["out.ndjson"], "the temporary file is removed");
    }
}

#[test]
fn a_directory_or_a_missing_directory_is_an_error_naming_it() {
    let dir = TempDir::new("atomic-errors");
    for non_regular in [NonRegularFile::Refuse, NonRegularFile::WriteDirectly] {
        let e = AtomicFile::create(dir.path(), non_regular).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. }
                if source.kind() == std::io::ErrorKind::IsADirectory),
            "{e}"
        );
    }
    let missing = dir.join("no/such");
    let e = AtomicFile::create(missing.join("out"), NonRegularFile::Refuse).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, source, .. }
            if *path == missing && source.kind() == std::io::ErrorKind::NotFound),
        "{e}"
    );
    assert!(dir.names().is_empty());
}
