//! Key stores: where client encryption key resources live (in memory, or a JSON file), and
//! export/import of those resources.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use crate::atomic_file::{self, AtomicFile, NonRegularFile, atomic_write};
use crate::error::{Error, Result};
use crate::keys::ClientEncryptionKeyResource;

/// Where client encryption key resources are kept.
///
/// Async and object-safe (`Arc<dyn KeyStore>`), so that a store backed by a service (a
/// Cosmos DB container's client encryption keys) fits the same seam.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// let store: Arc<dyn KeyStore> = Arc::new(InMemoryKeyStore::new());
/// store.create(cek("cek1")?).await?;
/// assert_eq!(store.read("cek1").await?.map(|k| k.id().to_owned()), Some("cek1".into()));
/// assert!(store.read("other").await?.is_none());
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// The key with this id, or `None`.
    ///
    /// # Errors
    ///
    /// When the store cannot be read: for [`JsonFileKeyStore`], [`Error::Io`] or
    /// [`Error::CorruptKeyStore`] when its file cannot be read again or no longer parses;
    /// for a service-backed store, that service's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::with_keys([cek("cek1")?])?;
    /// let key = store.read("cek1").await?;
    /// assert_eq!(key.map(|k| k.id().to_owned()).as_deref(), Some("cek1"));
    /// assert!(store.read("cek2").await?.is_none());
    /// # Ok(()) }
    /// ```
    async fn read(&self, key_id: &str) -> Result<Option<ClientEncryptionKeyResource>>;

    /// Every key, ordered by id.
    ///
    /// # Errors
    ///
    /// When the store cannot be read: as for [`read`](Self::read) (the in-memory store
    /// does not fail).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::with_keys([cek("b")?, cek("a")?])?;
    /// let ids: Vec<String> = store.list().await?.iter().map(|k| k.id().to_owned()).collect();
    /// assert_eq!(ids, ["a", "b"]);
    /// # Ok(()) }
    /// ```
    async fn list(&self) -> Result<Vec<ClientEncryptionKeyResource>>;

    /// Adds a new key.
    ///
    /// # Errors
    ///
    /// [`Error::KeyAlreadyExists`] when a key with this id is already there; store errors
    /// (for [`JsonFileKeyStore`]: [`Error::KeyStoreConflict`], [`Error::CorruptKeyStore`],
    /// [`Error::Io`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::new();
    /// store.create(cek("cek1")?).await?;
    /// let again = store.create(cek("cek1")?).await;
    /// assert!(matches!(again, Err(Error::KeyAlreadyExists { key_id }) if key_id == "cek1"));
    /// # Ok(()) }
    /// ```
    async fn create(&self, key: ClientEncryptionKeyResource) -> Result<()>;

    /// Adds several new keys, all or none: when any id already exists (or appears twice),
    /// nothing is added. The default checks, then adds them one by one, and when an add
    /// fails it deletes the keys it added before returning the error (best effort: a
    /// failure of that clean-up, or a crash in between, can leave some of them); stores
    /// that can write several keys at once override it.
    ///
    /// # Errors
    ///
    /// [`Error::KeyAlreadyExists`]; store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::with_keys([cek("b")?])?;
    /// let clash = store.create_all(vec![cek("a")?, cek("b")?]).await;
    /// assert!(matches!(clash, Err(Error::KeyAlreadyExists { .. })));
    /// assert_eq!(store.list().await?.len(), 1); // "a" was not added either
    /// store.create_all(vec![cek("a")?, cek("c")?]).await?;
    /// assert_eq!(store.list().await?.len(), 3);
    /// # Ok(()) }
    /// ```
    async fn create_all(&self, keys: Vec<ClientEncryptionKeyResource>) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            if !seen.insert(k.id().to_owned()) || self.read(k.id()).await?.is_some() {
                return Err(Error::KeyAlreadyExists {
                    key_id: k.id().to_owned(),
                });
            }
        }
        let mut added: Vec<String> = Vec::with_capacity(keys.len());
        for k in keys {
            let id = k.id().to_owned();
            if let Err(e) = self.create(k).await {
                for id in added.iter().rev() {
                    if let Err(cleanup) = self.delete(id).await {
                        tracing::warn!(
                            key_id = id.as_str(),
                            error = %cleanup,
                            "create_all: could not remove a key added before the failure"
                        );
                    }
                }
                return Err(e);
            }
            added.push(id);
        }
        Ok(())
    }

    /// Replaces the key `expected.id()` with `new`, but only if the stored key is still
    /// exactly `expected` (optimistic concurrency: pass the resource as read).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`] when the key is gone; [`Error::KeyStoreConflict`] when it was
    /// changed since `expected` was read (nothing is written); [`Error::InvalidKeyResource`]
    /// when the ids differ; store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::with_keys([cek("cek1")?])?;
    /// let read = store.read("cek1").await?.expect("stored above");
    /// let new = read.with_wrapping(read.key_wrap_metadata().clone(), vec![2; 256]);
    /// store.replace(&read, new.clone()).await?;
    /// // `read` is stale now: a second replace based on it is refused.
    /// let stale = store.replace(&read, new).await;
    /// assert!(matches!(stale, Err(Error::KeyStoreConflict { .. })));
    /// # Ok(()) }
    /// ```
    async fn replace(
        &self,
        expected: &ClientEncryptionKeyResource,
        new: ClientEncryptionKeyResource,
    ) -> Result<()>;

    /// Removes the key with this id.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`] when there is no such key; store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::with_keys([cek("cek1")?])?;
    /// store.delete("cek1").await?;
    /// assert!(store.read("cek1").await?.is_none());
    /// assert!(matches!(store.delete("cek1").await, Err(Error::KeyNotFound { .. })));
    /// # Ok(()) }
    /// ```
    async fn delete(&self, key_id: &str) -> Result<()>;
}

/// Applies a `create_all` to a list of keys (shared by the stores).
fn apply_create_all(
    keys: &mut Vec<ClientEncryptionKeyResource>,
    new: Vec<ClientEncryptionKeyResource>,
) -> Result<()> {
    for (i, k) in new.iter().enumerate() {
        if keys.iter().any(|e| e.id() == k.id()) || new[..i].iter().any(|e| e.id() == k.id()) {
            return Err(Error::KeyAlreadyExists {
                key_id: k.id().to_owned(),
            });
        }
    }
    keys.extend(new);
    keys.sort_by(|a, b| a.id().cmp(b.id()));
    Ok(())
}

/// Applies a `replace` to a list of keys (shared by the stores).
fn apply_replace(
    store: &str,
    keys: &mut [ClientEncryptionKeyResource],
    expected: &ClientEncryptionKeyResource,
    new: ClientEncryptionKeyResource,
) -> Result<()> {
    ensure_same_id(expected, new.id())?;
    let slot = keys
        .iter_mut()
        .find(|k| k.id() == expected.id())
        .ok_or_else(|| Error::KeyNotFound {
            key_id: expected.id().to_owned(),
        })?;
    if slot != expected {
        return Err(Error::KeyStoreConflict {
            store: store.to_owned(),
            key_id: expected.id().to_owned(),
            reason: "the key was changed since it was read".into(),
        });
    }
    *slot = new;
    Ok(())
}

/// Applies a `delete` to a list of keys (shared by the stores).
fn apply_delete(keys: &mut Vec<ClientEncryptionKeyResource>, key_id: &str) -> Result<()> {
    let before = keys.len();
    keys.retain(|k| k.id() != key_id);
    if keys.len() == before {
        return Err(Error::KeyNotFound {
            key_id: key_id.to_owned(),
        });
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the key list half-changed: every change
    // is computed on a copy and swapped in at the end.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A key store in memory, for tests and for keys loaded from elsewhere. Keys are kept
/// ordered by id.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyResolver};
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// let store = InMemoryKeyStore::with_keys([cek("cek1")?])?;
/// assert_eq!(format!("{store:?}"), r#"InMemoryKeyStore { ids: ["cek1"] }"#);
/// let resolver = KeyResolver::builder(Arc::new(store)).build();
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Default)]
pub struct InMemoryKeyStore {
    keys: RwLock<Vec<ClientEncryptionKeyResource>>,
}

impl InMemoryKeyStore {
    /// An empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{InMemoryKeyStore, KeyStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let store = InMemoryKeyStore::new();
    /// assert!(store.list().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `keys`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyAlreadyExists`] when two keys share an id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// let store = InMemoryKeyStore::with_keys([cek("cek1")?, cek("cek2")?])?;
    /// assert_eq!(format!("{store:?}"), r#"InMemoryKeyStore { ids: ["cek1", "cek2"] }"#);
    /// let twice = InMemoryKeyStore::with_keys([cek("cek1")?, cek("cek1")?]);
    /// assert!(matches!(twice, Err(Error::KeyAlreadyExists { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn with_keys(keys: impl IntoIterator<Item = ClientEncryptionKeyResource>) -> Result<Self> {
        let mut list = Vec::new();
        apply_create_all(&mut list, keys.into_iter().collect())?;
        Ok(InMemoryKeyStore {
            keys: RwLock::new(list),
        })
    }

    fn write(
        &self,
        f: impl FnOnce(&mut Vec<ClientEncryptionKeyResource>) -> Result<()>,
    ) -> Result<()> {
        let mut guard = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let mut copy = guard.clone();
        f(&mut copy)?;
        *guard = copy;
        Ok(())
    }

    fn snapshot(&self) -> std::sync::RwLockReadGuard<'_, Vec<ClientEncryptionKeyResource>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.snapshot().iter().map(|k| k.id().to_owned()).collect();
        f.debug_struct("InMemoryKeyStore")
            .field("ids", &ids)
            .finish()
    }
}

#[async_trait::async_trait]
impl KeyStore for InMemoryKeyStore {
    async fn read(&self, key_id: &str) -> Result<Option<ClientEncryptionKeyResource>> {
        Ok(self.snapshot().iter().find(|k| k.id() == key_id).cloned())
    }

    async fn list(&self) -> Result<Vec<ClientEncryptionKeyResource>> {
        Ok(self.snapshot().clone())
    }

    async fn create(&self, key: ClientEncryptionKeyResource) -> Result<()> {
        self.write(|keys| apply_create_all(keys, vec![key]))
    }

    async fn create_all(&self, new: Vec<ClientEncryptionKeyResource>) -> Result<()> {
        self.write(|keys| apply_create_all(keys, new))
    }

    async fn replace(
        &self,
        expected: &ClientEncryptionKeyResource,
        new: ClientEncryptionKeyResource,
    ) -> Result<()> {
        self.write(|keys| apply_replace("memory", keys, expected, new))
    }

    async fn delete(&self, key_id: &str) -> Result<()> {
        self.write(|keys| apply_delete(keys, key_id))
    }
}

/// A key store in a JSON file holding a JSON array of client encryption key resources
/// (the format [`export_json`] writes and `ae` reads).
///
/// - Every `read` and `list` looks at the file again (and parses it when its bytes
///   changed), so a key another process added, rewrapped or deleted is seen.
///   [`reload`](Self::reload) re-reads it explicitly.
/// - Every change is one atomic write ([`atomic_write`]: a temporary file in the same
///   directory, fsync, rename over the file, fsync of the directory), under an advisory
///   lock on `<file>.lock` (which is left in place: removing it would race). A symbolic
///   link is followed: the lock, the read and the write are on the file it points to, so
///   handles opened through a link and through its target exclude each other.
/// - A new file is readable by its owner only (mode `0600` on Unix); a rewritten file
///   keeps its permissions (see [`atomic_file`](crate::atomic_file)).
/// - Before it writes, the store compares the file on disk with what it loaded. If another
///   writer changed it in between, nothing is written and the change fails with
///   [`Error::KeyStoreConflict`]: a concurrent change is never lost silently. Call
///   [`reload`](Self::reload) and retry.
/// - A file that is not a valid JSON array of keys (corrupt, truncated, empty) is an
///   [`Error::CorruptKeyStore`] naming the file, and is never written over.
/// - A missing file is an error for [`open`](Self::open); [`create`](Self::create) makes
///   a new, empty store and [`open_or_create`](Self::open_or_create) does either.
///
/// File I/O runs on the calling thread (the files are small, and changes are rare).
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{ClientEncryptionKeyResource, JsonFileKeyStore, KeyStore};
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ae-doc-jsonstore-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("keys.json");
/// let store = JsonFileKeyStore::open_or_create(&path)?;
/// store.create(cek("cek1")?).await?;
/// // Another handle (another process) sees the key in the file.
/// let other = JsonFileKeyStore::open(&path)?;
/// assert_eq!(other.list().await?.len(), 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub struct JsonFileKeyStore {
    path: PathBuf,
    state: Mutex<FileState>,
    #[cfg(any(test, feature = "test-util"))]
    fail_point: Mutex<Option<WriteFailPoint>>,
}

struct FileState {
    keys: Vec<ClientEncryptionKeyResource>,
    /// SHA-256 of the file's bytes when `keys` were loaded or last written.
    digest: [u8; 32],
}

/// Where an injected key-store write failure strikes (feature `test-util`, for tests only).
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::keys::{ClientEncryptionKeyResource, JsonFileKeyStore, KeyStore};
/// use always_encrypted::keys::WriteFailPoint;
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ae-doc-failpoint-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # std::fs::create_dir_all(&dir)?;
/// let store = JsonFileKeyStore::create(dir.join("keys.json"))?;
/// store.fail_next_write(WriteFailPoint::BeforeRename);
/// assert!(matches!(store.create(cek("cek1")?).await, Err(Error::Io { .. })));
/// assert_eq!(std::fs::read_to_string(store.path())?, "[]\n"); // the file is untouched
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteFailPoint {
    /// After the temporary file was written and synced, before the rename.
    BeforeRename,
    /// After part of the temporary file was written (a crash or a full disk mid-write).
    MidWrite,
}

impl JsonFileKeyStore {
    /// Opens an existing key store file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read (including when it does not exist);
    /// [`Error::CorruptKeyStore`] when it is not a valid JSON array of keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::JsonFileKeyStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-open-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("keys.json");
    /// assert!(matches!(JsonFileKeyStore::open(&path), Err(Error::Io { .. }))); // no file
    /// std::fs::write(&path, "[]")?;
    /// let store = JsonFileKeyStore::open(&path)?;
    /// assert_eq!(store.path(), path);
    /// std::fs::write(&path, "{oops")?;
    /// assert!(matches!(JsonFileKeyStore::open(&path), Err(Error::CorruptKeyStore { .. })));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            action: "reading the key store file",
            source,
        })?;
        let keys = parse_store(&path, &bytes)?;
        Ok(Self::with_state(path, keys, digest(&bytes)))
    }

    /// Creates a new, empty key store file (`[]`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file already exists or cannot be written, or when its lock
    /// file cannot be opened or locked.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::JsonFileKeyStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-create-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("keys.json");
    /// JsonFileKeyStore::create(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "[]\n");
    /// assert!(matches!(JsonFileKeyStore::create(&path), Err(Error::Io { .. }))); // exists
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let bytes = serialize_store(&[]);
        let real = atomic_file::resolve(&path)?;
        let _lock = LockFile::acquire(&real)?;
        if real.exists() {
            return Err(Error::Io {
                path,
                action: "creating the key store file",
                source: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
        atomic_write(&real, &bytes)?;
        Ok(Self::with_state(path, Vec::new(), digest(&bytes)))
    }

    /// Opens the key store file, or creates an empty one when there is no file. A file
    /// that exists but is corrupt or empty is an error, never treated as an empty store.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open) and [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::JsonFileKeyStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-ooc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("keys.json");
    /// JsonFileKeyStore::open_or_create(&path)?; // creates `[]`
    /// JsonFileKeyStore::open_or_create(&path)?; // opens it
    /// std::fs::write(&path, "")?;
    /// let empty = JsonFileKeyStore::open_or_create(&path);
    /// assert!(matches!(empty, Err(Error::CorruptKeyStore { .. }))); // never taken for `[]`
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match Self::open(path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                match Self::create(path) {
                    // Another process created it in between.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::open(path)
                    }
                    r => r,
                }
            }
            r => r,
        }
    }

    fn with_state(path: PathBuf, keys: Vec<ClientEncryptionKeyResource>, digest: [u8; 32]) -> Self {
        JsonFileKeyStore {
            path,
            state: Mutex::new(FileState { keys, digest }),
            #[cfg(any(test, feature = "test-util"))]
            fail_point: Mutex::new(None),
        }
    }

    /// The file.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::JsonFileKeyStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-path-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = JsonFileKeyStore::create(dir.join("keys.json"))?;
    /// assert_eq!(store.path(), dir.join("keys.json"));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file, dropping what was loaded before.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); on error the keys loaded before are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, JsonFileKeyStore, KeyStore};
    /// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
    /// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
    /// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ae-doc-reload-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("keys.json");
    /// let mine = JsonFileKeyStore::create(&path)?;
    /// JsonFileKeyStore::open(&path)?.create(cek("cek1")?).await?; // another writer
    /// let refused = mine.create(cek("cek2")?).await;
    /// assert!(matches!(refused, Err(Error::KeyStoreConflict { .. })));
    /// mine.reload()?;
    /// mine.create(cek("cek2")?).await?;
    /// assert_eq!(mine.list().await?.len(), 2);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn reload(&self) -> Result<()> {
        let mut state = lock(&self.state);
        let bytes = self.read_file()?;
        let keys = parse_store(&self.path, &bytes)?;
        *state = FileState {
            keys,
            digest: digest(&bytes),
        };
        Ok(())
    }

    /// Makes the next write fail at `point` (feature `test-util`; for tests only).
    #[cfg(any(test, feature = "test-util"))]
    #[doc(hidden)]
    pub fn fail_next_write(&self, point: WriteFailPoint) {
        *lock(&self.fail_point) = Some(point);
    }

    fn read_file(&self) -> Result<Vec<u8>> {
        read_store_file(&self.path)
    }

    fn store_name(&self) -> String {
        self.path.display().to_string()
    }

    /// Read-modify-write under the file lock, refusing when the file changed since it was
    /// loaded.
    fn modify(
        &self,
        f: impl FnOnce(&mut Vec<ClientEncryptionKeyResource>) -> Result<()>,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        // Lock, read and write the file the path names now, links followed: every handle
        // on this file takes the same lock, whichever path (or link) it was opened by.
        let real = atomic_file::resolve(&self.path)?;
        let _lock = LockFile::acquire(&real)?;
        let on_disk = read_store_file(&real)?;
        if digest(&on_disk) != state.digest {
            // Say whether it is corrupt or was changed by someone else.
            parse_store(&self.path, &on_disk)?;
            return Err(Error::KeyStoreConflict {
                store: self.store_name(),
                key_id: String::new(),
                reason: "another writer changed the file since it was loaded".into(),
            });
        }
        let mut keys = state.keys.clone();
        f(&mut keys)?;
        let bytes = serialize_store(&keys);
        self.write_file(&real, &bytes)?;
        *state = FileState {
            keys,
            digest: digest(&bytes),
        };
        Ok(())
    }

    /// Replaces the file `real` with `bytes` (an [`AtomicFile`]; never a device or pipe).
    fn write_file(&self, real: &Path, bytes: &[u8]) -> Result<()> {
        let mut out = AtomicFile::create(real, NonRegularFile::Refuse)?;
        let write_error = |out: &AtomicFile, source| Error::Io {
            path: out.writing_to().to_owned(),
            action: "writing",
            source,
        };
        #[cfg(any(test, feature = "test-util"))]
        match lock(&self.fail_point).take() {
            Some(WriteFailPoint::MidWrite) => {
                let half = out
                    .write_all(&bytes[..bytes.len() / 2])
                    .and_then(|()| out.flush());
                half.map_err(|e| write_error(&out, e))?;
                let injected = std::io::Error::other("injected failure mid-write");
                return Err(write_error(&out, injected));
            }
            Some(WriteFailPoint::BeforeRename) => out.fail_before_rename(),
            None => {}
        }
        out.write_all(bytes).map_err(|e| write_error(&out, e))?;
        out.commit()
    }
}

/// Reads a key store file.
fn read_store_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "reading the key store file",
        source,
    })
}

impl fmt::Debug for JsonFileKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = lock(&self.state)
            .keys
            .iter()
            .map(|k| k.id().to_owned())
            .collect();
        f.debug_struct("JsonFileKeyStore")
            .field("path", &self.path)
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

impl JsonFileKeyStore {
    /// The state, re-read from the file first if the file changed since it was loaded.
    fn refreshed(&self) -> Result<MutexGuard<'_, FileState>> {
        let mut state = lock(&self.state);
        let bytes = self.read_file()?;
        let now = digest(&bytes);
        if now != state.digest {
            let keys = parse_store(&self.path, &bytes)?;
            *state = FileState { keys, digest: now };
        }
        Ok(state)
    }
}

#[async_trait::async_trait]
impl KeyStore for JsonFileKeyStore {
    async fn read(&self, key_id: &str) -> Result<Option<ClientEncryptionKeyResource>> {
        // The file as it is now: another process may have added, rewrapped or deleted the
        // key since it was loaded.
        let state = self.refreshed()?;
        Ok(state.keys.iter().find(|k| k.id() == key_id).cloned())
    }

    async fn list(&self) -> Result<Vec<ClientEncryptionKeyResource>> {
        // The file as it is now: another process may have changed it since it was opened.
        Ok(self.refreshed()?.keys.clone())
    }

    async fn create(&self, key: ClientEncryptionKeyResource) -> Result<()> {
        self.modify(|keys| apply_create_all(keys, vec![key]))
    }

    async fn create_all(&self, new: Vec<ClientEncryptionKeyResource>) -> Result<()> {
        self.modify(|keys| apply_create_all(keys, new))
    }

    async fn replace(
        &self,
        expected: &ClientEncryptionKeyResource,
        new: ClientEncryptionKeyResource,
    ) -> Result<()> {
        let name = self.store_name();
        self.modify(|keys| apply_replace(&name, keys, expected, new))
    }

    async fn delete(&self, key_id: &str) -> Result<()> {
        self.modify(|keys| apply_delete(keys, key_id))
    }
}

/// The check every store's `replace` makes first: the new key keeps the old key's id.
pub(crate) fn ensure_same_id(expected: &ClientEncryptionKeyResource, new_id: &str) -> Result<()> {
    if new_id != expected.id() {
        return Err(Error::InvalidKeyResource {
            key_id: new_id.to_owned(),
            reason: format!(
                "cannot replace key '{}' with a key of another id",
                expected.id()
            ),
        });
    }
    Ok(())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Parses a key store file: a JSON array of client encryption key resources with unique ids.
fn parse_store(path: &Path, bytes: &[u8]) -> Result<Vec<ClientEncryptionKeyResource>> {
    let corrupt = |reason: String| Error::CorruptKeyStore {
        path: path.to_owned(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty (an empty store is `[]`)".into()));
    }
    let keys = parse_key_array(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut sorted = keys;
    sorted.sort_by(|a, b| a.id().cmp(b.id()));
    if let Some(w) = sorted.windows(2).find(|w| w[0].id() == w[1].id()) {
        return Err(corrupt(format!("the key id '{}' appears twice", w[0].id())));
    }
    Ok(sorted)
}

fn serialize_store(keys: &[ClientEncryptionKeyResource]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = keys.iter().map(|k| k.to_value()).collect();
    // Serializing `Value`s cannot fail.
    let mut out = serde_json::to_vec_pretty(&values).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Parses a JSON array of client encryption key resources (an export, or a key store
/// file).
///
/// # Errors
///
/// [`Error::InvalidKeyResource`] naming the position and key id of the first bad element,
/// or saying the text is not a JSON array.
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::keys::parse_key_array;
///
/// let json = br#"[{"id": "cek1", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
///     "keyWrapMetadata": {"type": "AZURE_KEY_VAULT", "name": "kek1",
///         "value": "https://v.vault.azure.net/keys/kek1/1", "algorithm": "RSA-OAEP"},
///     "wrappedDataEncryptionKey": "AAEC"}]"#;
/// assert_eq!(parse_key_array(json)?[0].id(), "cek1");
/// assert!(matches!(parse_key_array(b"{}"), Err(Error::InvalidKeyResource { .. })));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn parse_key_array(json: &[u8]) -> Result<Vec<ClientEncryptionKeyResource>> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Error::InvalidKeyResource {
            key_id: String::new(),
            reason: format!("not JSON: {e}"),
        })?;
    let serde_json::Value::Array(items) = value else {
        return Err(Error::InvalidKeyResource {
            key_id: String::new(),
            reason: "expected a JSON array of client encryption keys".into(),
        });
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            ClientEncryptionKeyResource::from_value(v).map_err(|e| match e {
                Error::InvalidKeyResource { key_id, reason } => Error::InvalidKeyResource {
                    key_id,
                    reason: format!("element {i}: {reason}"),
                },
                e => e,
            })
        })
        .collect()
}

/// An exclusive advisory lock on `<file>.lock`, released on drop.
struct LockFile(File);

impl LockFile {
    /// Locks `<path>.lock`; `path` has its links resolved ([`atomic_file::resolve`]), so
    /// that every path to one file takes one lock.
    fn acquire(path: &Path) -> Result<Self> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                path: lock_path.clone(),
                action: "opening the key store lock file",
                source,
            })?;
        file.lock().map_err(|source| Error::Io {
            path: lock_path,
            action: "locking the key store lock file",
            source,
        })?;
        Ok(LockFile(file))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Closing the file releases the lock too; this only makes it prompt.
        let _ = self.0.unlock();
    }
}

/// Exports keys from `store`: the ones named in `ids` (in that order), or all of them when
/// `ids` is `None`. Resources are exported as stored, system properties included.
///
/// # Errors
///
/// [`Error::KeyNotFound`] when a named key is not in the store; store errors.
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, export_keys};
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// let store = InMemoryKeyStore::with_keys([cek("a")?, cek("b")?, cek("c")?])?;
/// assert_eq!(export_keys(&store, None).await?.len(), 3);
/// let some = export_keys(&store, Some(&["c", "a"])).await?;
/// assert_eq!(some.iter().map(|k| k.id()).collect::<Vec<_>>(), ["c", "a"]);
/// let missing = export_keys(&store, Some(&["x"])).await;
/// assert!(matches!(missing, Err(Error::KeyNotFound { .. })));
/// # Ok(()) }
/// ```
pub async fn export_keys(
    store: &dyn KeyStore,
    ids: Option<&[&str]>,
) -> Result<Vec<ClientEncryptionKeyResource>> {
    match ids {
        None => store.list().await,
        Some(ids) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(store.read(id).await?.ok_or_else(|| Error::KeyNotFound {
                    key_id: (*id).to_owned(),
                })?);
            }
            Ok(out)
        }
    }
}

/// [`export_keys`] as pretty-printed JSON text: a JSON array of resources, the format
/// [`import_keys`] (via [`parse_key_array`]) and [`JsonFileKeyStore`] read.
///
/// # Errors
///
/// As [`export_keys`].
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore};
/// use always_encrypted::keys::{export_json, import_keys, parse_key_array};
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// let source = InMemoryKeyStore::with_keys([cek("cek1")?])?;
/// let json = export_json(&source, None).await?;
/// assert!(json.starts_with("[\n  {\n    \"id\": \"cek1\","));
/// // ... and into another store (another account):
/// let target = InMemoryKeyStore::new();
/// import_keys(&target, parse_key_array(json.as_bytes())?).await?;
/// # Ok(()) }
/// ```
pub async fn export_json(store: &dyn KeyStore, ids: Option<&[&str]>) -> Result<String> {
    let keys = export_keys(store, ids).await?;
    Ok(String::from_utf8_lossy(&serialize_store(&keys)).into_owned())
}

/// What [`import_keys`] did.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{ClientEncryptionKeyResource, ImportReport, InMemoryKeyStore};
/// use always_encrypted::keys::import_keys;
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// let store = InMemoryKeyStore::with_keys([cek("a")?])?;
/// let report: ImportReport = import_keys(&store, vec![cek("a")?, cek("b")?]).await?;
/// assert_eq!(report.created, ["b"]);
/// assert_eq!(report.unchanged, ["a"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Ids of keys added to the store.
    pub created: Vec<String>,
    /// Ids of keys the store already had, identical (see
    /// [`ClientEncryptionKeyResource::same_key`]): left as they were.
    pub unchanged: Vec<String>,
}

/// Imports keys into `store`, all or none: a key the store already has identically is
/// skipped; a different key with the same id is refused (nothing is imported). This is
/// how keys survive a backup restored into a new account.
///
/// # Errors
///
/// [`Error::KeyAlreadyExists`] when the store (or `keys` itself) holds a different key with
/// the same id; store errors.
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyStore};
/// use always_encrypted::keys::import_keys;
/// # fn cek(id: &str) -> always_encrypted::Result<ClientEncryptionKeyResource> {
/// #     use always_encrypted::{cipher::Algorithm::AeadAes256CbcHmacSha256 as Cbc, keys::*};
/// #     let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// #     let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// #     ClientEncryptionKeyResource::new(id, Cbc, kek, vec![1; 256])
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// let store = InMemoryKeyStore::with_keys([cek("a")?])?;
/// // Importing the same key again is harmless.
/// assert_eq!(import_keys(&store, vec![cek("a")?]).await?.unchanged, ["a"]);
/// // Another key under an existing id is refused, and nothing is imported.
/// let other_a = cek("a")?.with_wrapping(cek("a")?.key_wrap_metadata().clone(), vec![2; 256]);
/// let refused = import_keys(&store, vec![cek("b")?, other_a]).await;
/// assert!(matches!(refused, Err(Error::KeyAlreadyExists { key_id }) if key_id == "a"));
/// assert!(store.read("b").await?.is_none());
/// # Ok(()) }
/// ```
pub async fn import_keys(
    store: &dyn KeyStore,
    keys: Vec<ClientEncryptionKeyResource>,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut new: Vec<ClientEncryptionKeyResource> = Vec::new();
    for k in keys {
        if let Some(prev) = new.iter().find(|n| n.id() == k.id()) {
            if prev.same_key(&k) {
                continue;
            }
            return Err(Error::KeyAlreadyExists {
                key_id: k.id().to_owned(),
            });
        }
        match store.read(k.id()).await? {
            Some(existing) if existing.same_key(&k) => {
                if !report.unchanged.iter().any(|u| u == k.id()) {
                    report.unchanged.push(k.id().to_owned());
                }
            }
            Some(_) => {
                return Err(Error::KeyAlreadyExists {
                    key_id: k.id().to_owned(),
                });
            }
            None => new.push(k),
        }
    }
    report.created = new.iter().map(|k| k.id().to_owned()).collect();
    if !new.is_empty() {
        store.create_all(new).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::Algorithm;
    use crate::keys::{KeyWrapAlgorithm, KeyWrapMetadata};

    /// The ids of the keys in `store`, in its order.
    async fn ids(store: &dyn KeyStore) -> Vec<String> {
        let keys = store.list().await.unwrap();
        keys.iter().map(|k| k.id().to_owned()).collect()
    }

    /// A store that keeps the trait's default `create_all` and fails to create `bad`.
    #[derive(Debug)]
    struct FailsOn(InMemoryKeyStore);

    #[async_trait::async_trait]
    impl KeyStore for FailsOn {
        async fn read(&self, key_id: &str) -> Result<Option<ClientEncryptionKeyResource>> {
            self.0.read(key_id).await
        }
        async fn list(&self) -> Result<Vec<ClientEncryptionKeyResource>> {
            self.0.list().await
        }
        async fn create(&self, key: ClientEncryptionKeyResource) -> Result<()> {
            if key.id() == "bad" {
                return Err(Error::KeyStoreConflict {
                    store: "test".into(),
                    key_id: "bad".into(),
                    reason: "injected".into(),
                });
            }
            self.0.create(key).await
        }
        async fn replace(
            &self,
            expected: &ClientEncryptionKeyResource,
            new: ClientEncryptionKeyResource,
        ) -> Result<()> {
            self.0.replace(expected, new).await
        }
        async fn delete(&self, key_id: &str) -> Result<()> {
            self.0.delete(key_id).await
        }
    }

    #[tokio::test]
    async fn the_default_create_all_removes_what_it_added_when_an_add_fails() {
        let store = FailsOn(InMemoryKeyStore::with_keys([cek("old", 0)]).unwrap());
        let e = store
            .create_all(vec![cek("a", 1), cek("b", 2), cek("bad", 3), cek("c", 4)])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::KeyStoreConflict { .. }), "{e}");
        assert_eq!(ids(&store).await, ["old"]);
        store
            .create_all(vec![cek("a", 1), cek("c", 4)])
            .await
            .unwrap();
        assert_eq!(store.list().await.unwrap().len(), 3);
    }

    fn cek(id: &str, wrapped: u8) -> ClientEncryptionKeyResource {
        ClientEncryptionKeyResource::new(
            id,
            Algorithm::AeadAes256CbcHmacSha256,
            KeyWrapMetadata::azure_key_vault("k", "https://v/keys/k/1", KeyWrapAlgorithm::RsaOaep),
            vec![wrapped; 8],
        )
        .unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn in_memory_store_semantics() {
        block_on(async {
            let s = InMemoryKeyStore::new();
            s.create(cek("b", 1)).await.unwrap();
            s.create(cek("a", 2)).await.unwrap();
            assert!(matches!(
                s.create(cek("a", 3)).await,
                Err(Error::KeyAlreadyExists { .. })
            ));
            assert_eq!(ids(&s).await, ["a", "b"]);
            let a = s.read("a").await.unwrap().unwrap();
            s.replace(&a, cek("a", 9)).await.unwrap();
            // A stale `expected` is refused.
            assert!(matches!(
                s.replace(&a, cek("a", 10)).await,
                Err(Error::KeyStoreConflict { .. })
            ));
            assert_eq!(
                s.read("a")
                    .await
                    .unwrap()
                    .unwrap()
                    .wrapped_data_encryption_key(),
                &[9; 8]
            );
            assert!(matches!(
                s.replace(&cek("zz", 1), cek("zz", 2)).await,
                Err(Error::KeyNotFound { .. })
            ));
            assert!(s.replace(&cek("a", 9), cek("b", 2)).await.is_err());
            // create_all is all or none.
            assert!(s.create_all(vec![cek("c", 1), cek("a", 1)]).await.is_err());
            assert!(s.read("c").await.unwrap().is_none());
            s.delete("b").await.unwrap();
            assert!(matches!(
                s.delete("b").await,
                Err(Error::KeyNotFound { .. })
            ));
            assert!(s.read("b").await.unwrap().is_none());
        });
    }

    #[test]
    fn parse_store_rejects_bad_files_naming_them() {
        let p = Path::new("/x/keys.json");
        for (bytes, expect) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"[", "not JSON"),
            (b"{}", "JSON array"),
            (b"[{\"id\":\"a\"}]", "element 0"),
        ] {
            let e = parse_store(p, bytes).unwrap_err();
            let s = e.to_string();
            assert!(matches!(e, Error::CorruptKeyStore { .. }));
            assert!(s.contains("/x/keys.json") && s.contains(expect), "{s}");
        }
        let two = serialize_store(&[cek("a", 1), cek("a", 2)]);
        assert!(
            parse_store(p, &two)
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let ok = serialize_store(&[cek("b", 1), cek("a", 2)]);
        assert_eq!(parse_store(p, &ok).unwrap().len(), 2);
        assert!(parse_store(p, b"[]").unwrap().is_empty());
    }
}
