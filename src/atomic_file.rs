//! Files replaced atomically, readable by their owner only: [`AtomicFile`] streams into a
//! temporary file beside the target and renames it over the target on
//! [`commit`](AtomicFile::commit); [`atomic_write`] writes one buffer that way. The
//! [`JsonFileKeyStore`](crate::keys::JsonFileKeyStore) and the `ae` tool's `-o` both use
//! them.
//!
//! - Readers see the old file or the new one, never a mix. When a step fails, or the writer
//!   is dropped without a commit, the target is untouched and the temporary file is
//!   removed. (A killed process can leave a `.<name>.tmp-<random>` file beside the target,
//!   never a partial target.) A commit syncs the file, renames it, then syncs the directory.
//! - Permissions (Unix): the temporary file is created with mode `0600` as it is opened,
//!   so a new file is readable by its owner only from its first byte, whatever the umask.
//!   When the target exists, the temporary file takes the target's owner and group where
//!   the process may set them, and its permission bits (`0o777`; not set-id or sticky
//!   bits), before anything is written to it. When the group cannot be kept (the process
//!   is not a member of it), the group bits are cleared, so that no other group gains
//!   access. ACLs and extended attributes are not copied.
//! - A symbolic link is followed: the file it points to is replaced, the link stays. (A
//!   dangling link is replaced by the new file.)
//! - A target that exists and is a directory is refused. A device or a named pipe is
//!   refused with [`NonRegularFile::Refuse`]; with [`NonRegularFile::WriteDirectly`] it is
//!   written directly, as a stream (`-o /dev/null`, `-o /dev/stdout`): renaming over it
//!   would replace it with a regular file. Such a write is not atomic.
//!
//! # Examples
//!
//! ```
//! use std::io::Write;
//! use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("ae-doc-atomic-file-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("plain.ndjson");
//! let mut out = AtomicFile::create(&path, NonRegularFile::Refuse)?;
//! out.write_all(b"{\"id\":\"1\"}\n")?;
//! assert!(!path.exists()); // nothing at the target until the commit
//! out.commit()?;
//! assert_eq!(std::fs::read_to_string(&path)?, "{\"id\":\"1\"}\n");
//! #[cfg(unix)]
//! {
//!     use std::os::unix::fs::PermissionsExt;
//!     assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
//! }
//! // Dropped without a commit: the file keeps its contents.
//! let mut out = AtomicFile::create(&path, NonRegularFile::Refuse)?;
//! out.write_all(b"half a docu")?;
//! drop(out);
//! assert_eq!(std::fs::read_to_string(&path)?, "{\"id\":\"1\"}\n");
//! assert_eq!(std::fs::read_dir(&dir)?.count(), 1); // no temporary file left behind
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// What [`AtomicFile::create`] does when the target exists and is not a regular file nor a
/// directory (a device such as `/dev/null`, a named pipe, a socket).
///
/// ```
/// use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
/// # #[cfg(unix)]
/// # fn main() -> always_encrypted::Result<()> {
/// // Output for a user: `-o /dev/null` streams to the device.
/// AtomicFile::create("/dev/null", NonRegularFile::WriteDirectly)?.commit()?;
/// // A key store: only a regular file can be replaced atomically.
/// assert!(AtomicFile::create("/dev/null", NonRegularFile::Refuse).is_err());
/// # Ok(()) }
/// # #[cfg(not(unix))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonRegularFile {
    /// Refuse it with [`Error::Io`] (kind [`io::ErrorKind::InvalidInput`]). For files that
    /// must be replaced atomically, such as a key store.
    Refuse,
    /// Open it and write to it directly, as a stream; [`AtomicFile::commit`] then only
    /// flushes. For output a user may send to `/dev/stdout` or a pipe.
    WriteDirectly,
}

/// A file being written to a temporary file beside its target, moved over the target by
/// [`commit`](Self::commit). Dropping it without a commit removes the temporary file and
/// leaves the target as it was. See the [module docs](self) for permissions, links and
/// devices.
///
/// Writes are buffered (the buffer, which may hold plaintext, is zeroized when it is freed);
/// errors from [`Write`] are the operating system's.
///
/// ```
/// use std::io::Write;
/// use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
///
/// let dir = std::env::temp_dir().join(format!("ae-atomic-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("out.ndjson");
/// let mut out = AtomicFile::create(&path, NonRegularFile::Refuse)?;
/// out.write_all(b"{}\n")?;
/// assert!(!path.exists()); // nothing at the target until the commit
/// out.commit()?;
/// assert_eq!(std::fs::read(&path)?, b"{}\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AtomicFile {
    /// The file replaced (links resolved).
    target: PathBuf,
    /// The temporary file; `None` when writing directly to a device or pipe, or once it
    /// was renamed over the target.
    temp: Option<PathBuf>,
    file: Option<WipingBufWriter<File>>,
    /// The target's permissions, set just before the rename (where there are no mode bits
    /// to set at creation).
    #[cfg(not(unix))]
    permissions: Option<fs::Permissions>,
    #[cfg(any(test, feature = "test-util"))]
    fail_before_rename: bool,
}

impl AtomicFile {
    /// Starts replacing `path`: creates a temporary file in the directory of the file
    /// `path` names (links followed), or, with [`NonRegularFile::WriteDirectly`], opens a
    /// device or pipe at `path` for writing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file or directory: its directory does not exist or cannot
    /// be written, `path` is a directory (or, with [`NonRegularFile::Refuse`], a device or
    /// pipe), the temporary file cannot be created or given the target's permissions;
    /// [`Error::Random`] when the OS random number generator (which names the temporary
    /// file) fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
    /// # #[cfg(unix)]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let null = std::path::Path::new("/dev/null");
    /// let refused = AtomicFile::create(null, NonRegularFile::Refuse);
    /// assert!(matches!(refused, Err(Error::Io { .. })));
    /// let stream = AtomicFile::create(null, NonRegularFile::WriteDirectly)?;
    /// stream.commit()?;
    /// # Ok(()) }
    /// # #[cfg(not(unix))]
    /// # fn main() {}
    /// ```
    pub fn create(path: impl AsRef<Path>, non_regular: NonRegularFile) -> Result<Self> {
        let target = resolve(path.as_ref())?;
        let existing = match fs::metadata(&target) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::Io {
                    path: target,
                    action: "looking up",
                    source,
                });
            }
        };
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(Error::Io {
                    path: target,
                    action: "writing",
                    source: io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
                });
            }
            if !meta.is_file() {
                return match non_regular {
                    NonRegularFile::Refuse => Err(Error::Io {
                        path: target,
                        action: "writing",
                        source: io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "not a regular file (a device or pipe)",
                        ),
                    }),
                    NonRegularFile::WriteDirectly => {
                        let file =
                            OpenOptions::new()
                                .write(true)
                                .open(&target)
                                .map_err(|source| Error::Io {
                                    path: target.clone(),
                                    action: "opening",
                                    source,
                                })?;
                        Ok(Self::new(target, None, file))
                    }
                };
            }
        }
        let name = target.file_name().ok_or_else(|| Error::Io {
            path: target.clone(),
            action: "writing",
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        })?;
        let name = name.to_string_lossy().into_owned();
        let (temp, file) = create_temp(&parent_dir(&target), &name)?;
        // From here on, dropping `out` removes the temporary file.
        let mut out = Self::new(target, Some(temp), file);
        if let Some(meta) = existing {
            out.take_access_of(&meta)?;
        }
        Ok(out)
    }

    fn new(target: PathBuf, temp: Option<PathBuf>, file: File) -> Self {
        AtomicFile {
            target,
            temp,
            file: Some(WipingBufWriter::with_capacity(1 << 16, file)),
            #[cfg(not(unix))]
            permissions: None,
            #[cfg(any(test, feature = "test-util"))]
            fail_before_rename: false,
        }
    }

    /// Gives the (still empty) temporary file the existing target's owner, group and
    /// permission bits, as far as this process may.
    #[cfg(unix)]
    fn take_access_of(&mut self, target: &fs::Metadata) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
        let (Some(temp), Some(writer)) = (&self.temp, &self.file) else {
            return Ok(());
        };
        let file = writer.get_ref();
        let io = |action| {
            move |source| Error::Io {
                path: temp.clone(),
                action,
                source,
            }
        };
        let mine = file
            .metadata()
            .map_err(io("reading the metadata of the temporary file"))?;
        let mut mode = target.mode() & 0o777;
        if (mine.uid(), mine.gid()) != (target.uid(), target.gid())
            && fchown(file, Some(target.uid()), Some(target.gid())).is_err()
        {
            // Not root: the owner is this process's user. Keep the group if this process
            // is a member of it; otherwise no group may read what the old one could.
            let group_kept =
                mine.gid() == target.gid() || fchown(file, None, Some(target.gid())).is_ok();
            if !group_kept {
                mode &= !0o070;
            }
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("setting the permissions of the temporary file"))
    }

    #[cfg(not(unix))]
    fn take_access_of(&mut self, target: &fs::Metadata) -> Result<()> {
        self.permissions = Some(target.permissions());
        Ok(())
    }

    /// The file this replaces: the path given to [`create`](Self::create) with symbolic
    /// links resolved.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-atomic-target-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let out = AtomicFile::create(dir.join("out.ndjson"), NonRegularFile::Refuse)?;
    /// assert_eq!(out.target(), std::fs::canonicalize(&dir)?.join("out.ndjson"));
    /// # drop(out);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The file written to: the temporary file, or the target itself for a device or pipe.
    pub(crate) fn writing_to(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.target)
    }

    /// Makes [`commit`](Self::commit) fail after the sync, before the rename (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn fail_before_rename(&mut self) {
        self.fail_before_rename = true;
    }

    /// Flushes and syncs the temporary file, renames it over the target, and syncs the
    /// directory. For a device or pipe written directly, flushes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file or directory and the step that failed. When the
    /// error comes before the rename, the target is untouched and the temporary file is
    /// removed; only a failure to sync the directory comes after it (the new file is in
    /// place but may not survive a crash).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use always_encrypted::atomic_file::{AtomicFile, NonRegularFile};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-atomic-commit-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("out.ndjson");
    /// std::fs::write(&path, "old\n")?;
    /// let mut out = AtomicFile::create(&path, NonRegularFile::Refuse)?;
    /// out.write_all(b"new\n")?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "old\n");
    /// out.commit()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "new\n");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn commit(mut self) -> Result<()> {
        let writing_to = self.writing_to().to_owned();
        let io = |path: &Path, action: &'static str| {
            let path = path.to_owned();
            move |source| Error::Io {
                path,
                action,
                source,
            }
        };
        let Some(writer) = self.file.take() else {
            return Err(Error::Io {
                path: writing_to,
                action: "committing",
                source: io::Error::other("already committed"),
            });
        };
        let file = writer.into_inner().map_err(io(&writing_to, "writing"))?;
        let Some(temp) = self.temp.clone() else {
            // A device or pipe, written directly: nothing to sync or move.
            return Ok(());
        };
        file.sync_all().map_err(io(&temp, "syncing"))?;
        #[cfg(not(unix))]
        if let Some(permissions) = self.permissions.take() {
            file.set_permissions(permissions)
                .map_err(io(&temp, "setting the permissions of"))?;
        }
        drop(file);
        #[cfg(any(test, feature = "test-util"))]
        if self.fail_before_rename {
            return Err(Error::Io {
                path: temp,
                action: "renaming",
                source: io::Error::other("injected failure before rename"),
            });
        }
        fs::rename(&temp, &self.target)
            .map_err(io(&self.target, "renaming a temporary file over"))?;
        self.temp = None;
        sync_dir(&parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf),
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
        // Close before removing (needed on Windows). What is still buffered is written
        // first, as `BufWriter` does when dropped (a device or pipe gets it).
        if let Some(mut writer) = self.file.take() {
            let _ = writer.flush_buf();
        }
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

impl fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicFile")
            .field("target", &self.target)
            .field("temp", &self.temp)
            .finish_non_exhaustive()
    }
}

/// A buffered writer like [`io::BufWriter`] whose buffer never grows and is zeroized when
/// it is freed, for output that may be plaintext. Unlike `BufWriter`, dropping it does not
/// write out what is still buffered (the bytes are wiped): call [`flush`](Write::flush)
/// or [`into_inner`](Self::into_inner) first.
///
/// Not part of the stable API (the `ae` tool uses it for its standard output).
#[doc(hidden)]
pub struct WipingBufWriter<W: Write> {
    inner: W,
    buf: Zeroizing<Vec<u8>>,
}

impl<W: Write> WipingBufWriter<W> {
    /// A writer to `inner` buffering up to `capacity` bytes. Writes of at least that many
    /// bytes go to `inner` directly once the buffer is written out.
    #[doc(hidden)]
    pub fn with_capacity(capacity: usize, inner: W) -> Self {
        WipingBufWriter {
            inner,
            buf: Zeroizing::new(Vec::with_capacity(capacity)),
        }
    }

    /// The writer written to.
    #[doc(hidden)]
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Writes out the buffer and returns the writer written to (not flushed).
    ///
    /// # Errors
    ///
    /// The error of writing the buffer out; the buffer is then wiped and dropped.
    #[doc(hidden)]
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush_buf()?;
        Ok(self.inner)
    }

    /// Writes the buffer to `inner`. On an error what was not written stays buffered.
    fn flush_buf(&mut self) -> io::Result<()> {
        let mut written = 0;
        let mut result = Ok(());
        while written < self.buf.len() {
            match self.inner.write(&self.buf[written..]) {
                Ok(0) => {
                    result = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Moves the rest to the front, within the allocation.
        self.buf.drain(..written);
        result
    }

    fn spare(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }
}

impl<W: Write> Write for WipingBufWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() > self.spare() {
            self.flush_buf()?;
        }
        if data.len() >= self.buf.capacity() {
            self.inner.write(data)
        } else {
            // Fits: the buffer is empty or had room.
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > self.spare() {
            self.flush_buf()?;
        }
        if data.len() >= self.buf.capacity() {
            self.inner.write_all(data)
        } else {
            self.buf.extend_from_slice(data);
            Ok(())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for WipingBufWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WipingBufWriter")
            .field("buffered", &self.buf.len())
            .field("capacity", &self.buf.capacity())
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` to `path` atomically with an [`AtomicFile`]: to a new temporary file in
/// the same directory, fsync, rename over `path`, fsync of the directory. Readers see the
/// old file or the new one, never a mix; when anything fails the old file is untouched and
/// the temporary file is removed. A new file is readable by its owner only (on Unix); an
/// existing file keeps its permissions. A symbolic link is followed: the file it points to
/// is replaced and the link kept.
///
/// # Errors
///
/// [`Error::Io`] naming the file or directory and the step that failed, or when `path`
/// exists and is not a regular file (a directory, a device such as `/dev/null`, a pipe);
/// [`Error::Random`] when the OS random number generator (used to name the temporary
/// file) fails.
///
/// # Examples
///
/// ```
/// use always_encrypted::atomic_file::atomic_write;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ae-doc-atomic-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("policy.json");
/// atomic_write(&path, b"{}")?;
/// atomic_write(&path, br#"{"policyFormatVersion": 2}"#)?;
/// assert_eq!(std::fs::read_to_string(&path)?, r#"{"policyFormatVersion": 2}"#);
/// assert_eq!(std::fs::read_dir(&dir)?.count(), 1); // no temporary file left behind
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = AtomicFile::create(path, NonRegularFile::Refuse)?;
    out.write_all(bytes).map_err(|source| Error::Io {
        path: out.writing_to().to_owned(),
        action: "writing",
        source,
    })?;
    out.commit()
}

/// The file `path` names once symbolic links are followed: the canonical path of an
/// existing file; for a path with nothing at it (or a dangling link), its directory's
/// canonical path joined with its name.
pub(crate) fn resolve(path: &Path) -> Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = path.file_name().ok_or_else(|| Error::Io {
                path: path.to_owned(),
                action: "resolving",
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            })?;
            let dir = parent_dir(path);
            let dir = fs::canonicalize(&dir).map_err(|source| Error::Io {
                path: dir,
                action: "resolving the directory",
                source,
            })?;
            Ok(dir.join(name))
        }
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            action: "resolving",
            source,
        }),
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename in `dir` durable. Filesystems that cannot sync a directory say so with
/// `EINVAL` or `ENOTSUP`; that is not an error. (Elsewhere than on Unix a directory cannot
/// be opened as a file, and the rename is all there is.)
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            return Err(Error::Io {
                path: dir.to_owned(),
                action: "syncing the directory",
                source: e,
            });
        }
        _ => {}
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `.<name>.tmp-<random>` in `dir`, new (never an existing file), with mode `0600`
/// on Unix.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    let mut last_err = None;
    for _ in 0..8 {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(Error::Random)?;
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let temp = dir.join(format!(".{name}.tmp-{suffix}"));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&temp) {
            Ok(f) => return Ok((temp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(source) => {
                return Err(Error::Io {
                    path: temp,
                    action: "creating a temporary file",
                    source,
                });
            }
        }
    }
    Err(Error::Io {
        path: dir.to_owned(),
        action: "creating a temporary file in",
        source: last_err.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write it is given; fails after `fail_after` of them.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        fail_after: Option<usize>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail_after == Some(self.writes.len()) {
                return Err(io::Error::other("disk full"));
            }
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_wiping_writer_buffers_like_bufwriter() -> io::Result<()> {
        let mut w = WipingBufWriter::with_capacity(8, Recorder::default());
        w.write_all(b"abc")?;
        w.write_all(b"def")?;
        assert!(w.get_ref().writes.is_empty(), "buffered");
        // Does not fit: the buffer goes first, then a large write goes directly.
        w.write_all(b"0123456789")?;
        assert_eq!(w.get_ref().writes, [&b"abcdef"[..], b"0123456789"]);
        w.write_all(b"xy")?;
        w.flush()?;
        assert_eq!(w.get_ref().writes.len(), 3);
        w.write_all(b"z")?;
        let inner = w.into_inner()?;
        assert_eq!(inner.writes.concat(), b"abcdef0123456789xyz");
        Ok(())
    }

    #[test]
    fn a_failed_write_out_keeps_the_data_and_says_so() {
        let recorder = Recorder {
            fail_after: Some(0),
            ..Recorder::default()
        };
        let mut w = WipingBufWriter::with_capacity(8, recorder);
        w.write_all(b"abc").unwrap();
        assert!(w.flush().is_err());
        w.inner.fail_after = None;
        w.flush().unwrap();
        assert_eq!(w.get_ref().writes, [b"abc"]);
        assert_eq!(w.buf.capacity(), 8, "the buffer never grows");
    }
}
