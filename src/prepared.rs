//! A policy with its keys resolved: the hot path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cipher::{Algorithm, EncryptionType, ModernKey};
use crate::document::patch::{
    NumberType, PatchOperation, Target, one_json_value, rebase_error, retype_numbers,
};
use crate::document::tree::{self, Numbers};
use crate::document::{CellKey, DecryptReport, Engine, KeySlot, Limits, Op, SkippedProperty, text};
use crate::error::{Error, Result};
use crate::keys::ResolvedKey;
use crate::path::{self, Segment};
use crate::policy::ClientEncryptionPolicy;

/// Options for [`PreparedPolicy::new`].
///
/// # Examples
///
/// ```
/// use always_encrypted::PrepareOptions;
/// let options = PrepareOptions::new()
///     .partition_key_path("/tenantId")
///     .allow_unavailable_keys(true);
/// assert_eq!(options.partition_key_paths(), ["/tenantId"]);
/// ```
///
/// # Limits on untrusted documents
///
/// Documents come from outside (a database, a file, a stream), so every walk is bounded;
/// a document over a limit fails with [`Error::LimitExceeded`] naming the limit (or, for
/// nesting, [`Error::InvalidDocument`]), and nothing is written. Work is linear in the
/// document's size. The defaults fit any Cosmos DB item (at most 2 MB) with room to spare:
///
/// | limit | default | applies to |
/// |---|---|---|
/// | [`max_document_bytes`](Self::max_document_bytes) | 16 MiB | the text and byte APIs (`encrypt_str`, `decrypt_slice`, ...) |
/// | [`max_encrypted_leaves`](Self::max_encrypted_leaves) | 1,048,576 | leaves encrypted or decrypted in one document, all APIs |
/// | [`max_string_bytes`](Self::max_string_bytes) | 4 MiB | one string leaf under a selected path, all APIs |
/// | [`max_depth`](Self::max_depth) | 128 | nesting of a value under a selected path, all APIs |
///
/// Content outside the policy is validated by an iterative scanner (no recursion, so no
/// stack overflow at any depth) and is bounded only by the document size.
///
/// ```
/// use always_encrypted::PrepareOptions;
/// let options = PrepareOptions::new().max_document_bytes(2 << 20).max_depth(32);
/// assert_eq!(options.limits(), (2 << 20, 1 << 20, 4 << 20, 32));
/// ```
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    partition_key_paths: Vec<String>,
    allow_unavailable_keys: bool,
    limits: Limits,
}

impl PrepareOptions {
    /// The defaults: no partition-key paths, every key must be available.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new();
    /// assert!(options.partition_key_paths().is_empty());
    /// assert_eq!(options.limits(), (16 << 20, 1 << 20, 4 << 20, 128));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a partition-key path of the container (call once per path of a hierarchical
    /// partition key, in order). An encrypted path that is or holds one must be
    /// Deterministic and needs policy format version 2.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new()
    ///     .partition_key_path("/tenantId")
    ///     .partition_key_path("/userId");
    /// assert_eq!(options.partition_key_paths(), ["/tenantId", "/userId"]);
    /// ```
    #[must_use]
    pub fn partition_key_path(mut self, path: impl Into<String>) -> Self {
        self.partition_key_paths.push(path.into());
        self
    }

    /// For readers with partial rights: when a key lookup fails because the key is
    /// unavailable to the caller ([`Error::is_key_unavailable`]: access denied, key
    /// missing or disabled), record the key as unavailable instead of failing. Then
    /// encryption and strict decryption of a property under that key fail with
    /// [`Error::KeyUnavailable`], and lenient decryption leaves it as it is and reports it.
    /// Other lookup errors (a transient fault, a bad key) still fail. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// // `policy` encrypts /ssn with cek1, which this caller's key lookup cannot find.
    /// let no_key = |id: &str| Err(Error::KeyNotFound { key_id: id.to_owned() });
    /// assert!(PreparedPolicy::new(&policy, PrepareOptions::new(), no_key).is_err());
    /// let lenient = PrepareOptions::new().allow_unavailable_keys(true);
    /// let reader = PreparedPolicy::new(&policy, lenient, no_key)?;
    /// assert_eq!(reader.unavailable_keys(), ["cek1"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    #[must_use]
    pub fn allow_unavailable_keys(mut self, allow: bool) -> Self {
        self.allow_unavailable_keys = allow;
        self
    }

    /// The partition-key paths.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new().partition_key_path("/pk");
    /// assert_eq!(options.partition_key_paths(), ["/pk"]);
    /// ```
    pub fn partition_key_paths(&self) -> &[String] {
        &self.partition_key_paths
    }

    /// The largest JSON text document, in bytes, the text and byte APIs accept.
    /// Default 16 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new().max_document_bytes(2 << 20); // 2 MiB, a Cosmos item
    /// assert_eq!(options.limits().0, 2 << 20);
    /// ```
    #[must_use]
    pub fn max_document_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_document_bytes = bytes;
        self
    }

    /// The most leaves (strings, numbers, booleans under selected paths) encrypted or
    /// decrypted in one document. Default 1,048,576.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new().max_encrypted_leaves(1000);
    /// assert_eq!(options.limits().1, 1000);
    /// ```
    #[must_use]
    pub fn max_encrypted_leaves(mut self, leaves: usize) -> Self {
        self.limits.max_encrypted_leaves = leaves;
        self
    }

    /// The longest string leaf under a selected path, in bytes: as JSON text (escapes
    /// included) in the text API, as UTF-8 in the Value API; when decrypting, the stored
    /// base64 string. Default 4 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new().max_string_bytes(64 << 10);
    /// assert_eq!(options.limits().2, 64 << 10);
    /// ```
    #[must_use]
    pub fn max_string_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_string_bytes = bytes;
        self
    }

    /// The deepest nesting of a value under a selected path, counted in path segments
    /// from the document root. Default 128 (as `serde_json`'s parser).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let options = PrepareOptions::new().max_depth(16);
    /// assert_eq!(options.limits().3, 16);
    /// ```
    #[must_use]
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.limits.max_depth = depth;
        self
    }

    /// The limits, as (`max_document_bytes`, `max_encrypted_leaves`, `max_string_bytes`,
    /// `max_depth`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PrepareOptions;
    ///
    /// let (bytes, leaves, string, depth) = PrepareOptions::new().max_depth(8).limits();
    /// assert_eq!((bytes, leaves, string, depth), (16 << 20, 1 << 20, 4 << 20, 8));
    /// ```
    pub fn limits(&self) -> (usize, usize, usize, usize) {
        let l = &self.limits;
        (
            l.max_document_bytes,
            l.max_encrypted_leaves,
            l.max_string_bytes,
            l.max_depth,
        )
    }
}

/// A validated policy with every key it needs resolved: encrypts and decrypts documents
/// with no awaits, no locks and no I/O. Cheap to clone and share between threads.
///
/// The selected properties are encrypted leaf by leaf: an object or array keeps its shape
/// and keys, every string, number and boolean in it becomes a stored string
/// (`base64(type marker || ciphertext)`), `null` stays `null`, `{}` and `[]` stay as they
/// are. Absent properties (or, for nested paths, a shape that does not match) are skipped.
/// Properties outside the policy are never touched. `/id` must be a string and is stored in
/// the URL-safe base64 alphabet.
///
/// Paths whose algorithm is `AE1_AES_256_GCM_HKDF_SHA256` (extended policies only) store
/// `base64(AE1 bytes)` instead (version byte `0xA1` first; see
/// [`cipher::modern`](crate::cipher::modern)), with subkeys derived once per (key id,
/// policy path, mode) when the policy is prepared. Their ciphertexts are bound to the
/// policy path: they do not decrypt under another path or key. Query parameters, partition
/// keys, ids and patch values on such paths are encrypted the same way.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
///
/// let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
///   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
///    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
/// let dek = DataEncryptionKey::generate()?;
/// let mut dek = Some(dek);
/// let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
///     // Normally: the key store and the DEK cache.
///     Ok(ResolvedKey::new(id, dek.take().expect("one key")))
/// })?;
///
/// let doc = r#"{"id": "1", "ssn": "123-45-6789", "name": "Ada"}"#;
/// let encrypted = prepared.encrypt_str(doc)?;
/// assert!(encrypted.starts_with(r#"{"id": "1", "ssn": ""#));
/// assert!(encrypted.ends_with(r#"", "name": "Ada"}"#));
/// assert_eq!(prepared.decrypt_str(&encrypted)?, doc);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone)]
pub struct PreparedPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    policy: ClientEncryptionPolicy,
    options: PrepareOptions,
    engine: Engine,
}

impl PreparedPolicy {
    /// Prepares `policy`: checks it against the partition-key paths of `options`, then
    /// calls `lookup` once per distinct client encryption key id to get the unwrapped key
    /// (usually from the DEK cache, resolved asynchronously beforehand).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] when a partition-key path breaks a rule; the lookup's error
    /// for a key that cannot be resolved (unless `allow_unavailable_keys` is set and the
    /// key is unavailable to the caller); [`Error::InvalidKey`] when the lookup returns a
    /// key with another id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// // `policy` encrypts /ssn and /notes, both with cek1.
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// let mut lookups = Vec::new();
    /// let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    ///     lookups.push(id.to_owned());
    ///     Ok(key.clone())
    /// })?;
    /// assert_eq!(lookups, ["cek1"]); // once per distinct key id
    /// let other = ResolvedKey::new("cek2", DataEncryptionKey::generate()?);
    /// let wrong = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(other.clone()));
    /// assert!(matches!(wrong, Err(Error::InvalidKey { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new<F>(
        policy: &ClientEncryptionPolicy,
        options: PrepareOptions,
        mut lookup: F,
    ) -> Result<Self>
    where
        F: FnMut(&str) -> Result<ResolvedKey>,
    {
        policy.validate_partition_key_paths(&options.partition_key_paths)?;
        let mut keys: HashMap<&str, std::result::Result<ResolvedKey, Arc<Error>>> = HashMap::new();
        for id in policy.key_ids() {
            let key = match lookup(id) {
                Ok(key) if key.key_id() == id => Ok(key),
                Ok(key) => {
                    return Err(Error::InvalidKey {
                        key_id: id.to_owned(),
                        reason: format!(
                            "the key lookup for '{id}' returned the key '{}'",
                            key.key_id()
                        ),
                    });
                }
                Err(e) if options.allow_unavailable_keys && e.is_key_unavailable() => {
                    tracing::warn!(
                        key_id = id,
                        error = %e,
                        "key unavailable: its properties will be left encrypted by lenient \
                         decryption"
                    );
                    Err(Arc::new(e))
                }
                Err(e) => return Err(e),
            };
            keys.insert(id, key);
        }
        // Cell keys are derived here, once: per key id for the Cosmos algorithm, per
        // (key id, path, mode) for AE1 (HKDF), never per value.
        let mut engine = Engine::new(policy, |p| match keys.get(p.key_id()) {
            Some(Ok(key)) => KeySlot::Ready(match p.algorithm() {
                Algorithm::Ae1Aes256GcmHkdfSha256 => CellKey::Ae1(Arc::new(ModernKey::new(
                    key.dek(),
                    p.key_id(),
                    p.path(),
                    p.encryption_type(),
                ))),
                Algorithm::AeadAes256CbcHmacSha256 => CellKey::Cosmos(key.cbc_hmac().clone()),
            }),
            Some(Err(error)) => KeySlot::Unavailable {
                key_id: p.key_id().to_owned(),
                error: Arc::clone(error),
            },
            // Unreachable: every key id of the policy was looked up above.
            None => KeySlot::Unavailable {
                key_id: p.key_id().to_owned(),
                error: Arc::new(Error::KeyNotFound {
                    key_id: p.key_id().to_owned(),
                }),
            },
        });
        engine.limits = options.limits;
        Ok(PreparedPolicy {
            inner: Arc::new(Inner {
                policy: policy.clone(),
                options,
                engine,
            }),
        })
    }

    /// The selection tree with its keys (re-encryption walks two policies' trees at once).
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The policy.
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// assert_eq!(prepared.policy().key_ids(), ["cek1"]);
    /// assert!(prepared.policy().get("/ssn").is_some());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn policy(&self) -> &ClientEncryptionPolicy {
        &self.inner.policy
    }

    /// The partition-key paths it was prepared with.
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/id", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/tenantId", "clientEncryptionKeyId": "cek1",
    /// #    "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let options = PrepareOptions::new().partition_key_path("/tenantId");
    /// # let prepared = PreparedPolicy::new(&policy, options, |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /id and the partition key /tenantId (Deterministic).
    /// assert_eq!(prepared.partition_key_paths(), ["/tenantId"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn partition_key_paths(&self) -> &[String] {
        &self.inner.options.partition_key_paths
    }

    /// The ids of the keys recorded as unavailable (see
    /// [`PrepareOptions::allow_unavailable_keys`]).
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// // `writer` has both keys; `reader` lacks cek-hr, the key of /salary.
    /// assert_eq!(reader.unavailable_keys(), ["cek-hr"]);
    /// assert!(writer.unavailable_keys().is_empty());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn unavailable_keys(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for s in self.inner.engine.selected_paths() {
            if let KeySlot::Unavailable { key_id, .. } = &s.key
                && !ids.contains(&key_id.as_str())
            {
                ids.push(key_id);
            }
        }
        ids
    }

    /// True when the value at the JSON Pointer `path` (e.g. `/ssn`, `/o/x`,
    /// `/cards/0/number`) is stored encrypted: it is an included path or under one.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedOperation`] for a malformed or ambiguous pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// assert!(prepared.is_encrypted("/ssn")?);
    /// assert!(prepared.is_encrypted("/notes/0/text")?); // under /notes
    /// assert!(!prepared.is_encrypted("/name")?);
    /// let malformed = prepared.is_encrypted("ssn");
    /// assert!(matches!(malformed, Err(Error::UnsupportedOperation { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn is_encrypted(&self, path: &str) -> Result<bool> {
        Ok(matches!(self.target(path)?.1, Target::Selected { .. }))
    }

    // ---- serde_json::Value ----

    /// Encrypts the selected properties of `doc` in place.
    ///
    /// Numbers are typed as `serde_json` parsed them: an int64 is a Long, anything else a
    /// Double (`1.0` stays a Double), as [`encrypt_str`](Self::encrypt_str) types the
    /// same text, with two limits a `Value` imposes. `-0.0` under a selected path is
    /// refused: serde_json reads the literal `-0` (a Long 0 in text) and `-0.0` (a Double)
    /// alike, and either guess would store different bytes than the text for one of them.
    /// And serde_json rounds an integer literal beyond the 64-bit range to a double while
    /// parsing, before this crate sees it: it is stored as that Double, where
    /// [`encrypt_str`](Self::encrypt_str) refuses the literal. To type numbers from the
    /// text as written, encrypt the text. Transactional: on error `doc` is unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] when `doc` is not an object or nests too deeply;
    /// [`Error::UnsupportedValue`] for a value that cannot be stored (an integer with no
    /// exact int64 or double, `-0.0`, a non-string `/id`); [`Error::KeyUnavailable`] for a
    /// present property whose key is unavailable; [`Error::LimitExceeded`] for a document
    /// over a limit of [`PrepareOptions`]; [`Error::Random`] if a Randomized value cannot
    /// get an IV (the operating system's random number generator failed). Errors name the
    /// path.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let mut doc = json!({"id": "1", "ssn": "123-45-6789", "notes": {"a": 1, "b": null}});
    /// prepared.encrypt_document(&mut doc)?;
    /// assert!(doc["ssn"].is_string() && doc["notes"]["a"].is_string());
    /// assert_eq!((&doc["id"], &doc["notes"]["b"]), (&json!("1"), &json!(null)));
    /// let mut too_big = json!({"ssn": u64::MAX}); // neither an int64 nor an exact double
    /// let err = prepared.encrypt_document(&mut too_big).unwrap_err();
    /// assert!(matches!(err, Error::UnsupportedValue { path, .. } if path == "/ssn"));
    /// assert_eq!(too_big, json!({"ssn": u64::MAX})); // unchanged
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_document(&self, doc: &mut Value) -> Result<()> {
        self.document(doc, Op::Encrypt).map(drop)
    }

    /// Decrypts the selected properties of `doc` in place (strict: every property must
    /// decrypt). Transactional: on error `doc` is unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::DecryptionFailed`] (tampered, wrong key) or [`Error::MalformedCiphertext`]
    /// naming the path and key id; [`Error::KeyUnavailable`] for a present property whose
    /// key is unavailable; [`Error::InvalidDocument`] when `doc` is not an object;
    /// [`Error::LimitExceeded`] for a document over a limit of [`PrepareOptions`].
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let original = json!({"id": "1", "ssn": "123-45-6789", "notes": ["a", "b"]});
    /// let mut doc = original.clone();
    /// prepared.encrypt_document(&mut doc)?;
    /// let mut garbled = doc.clone();
    /// prepared.decrypt_document(&mut doc)?;
    /// assert_eq!(doc, original);
    /// garbled["ssn"] = json!("not a ciphertext");
    /// let err = prepared.decrypt_document(&mut garbled).unwrap_err();
    /// assert!(matches!(err, Error::MalformedCiphertext { path, .. } if path == "/ssn"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_document(&self, doc: &mut Value) -> Result<()> {
        self.document(doc, Op::Decrypt { lenient: false }).map(drop)
    }

    /// Decrypts in place every selected property whose key is available, leaves the others
    /// as they are and reports them. This is property-level access control: a reader
    /// without rights to one key still reads the rest. Transactional.
    ///
    /// # Errors
    ///
    /// As [`decrypt_document`](Self::decrypt_document), except for unavailable keys:
    /// tampered or malformed data is an error in both modes.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// // `writer` has both keys; `reader` lacks cek-hr, the key of /salary.
    /// let mut doc = json!({"id": "1", "ssn": "123-45-6789", "salary": 98000});
    /// writer.encrypt_document(&mut doc)?;
    /// let stored_salary = doc["salary"].clone();
    /// let report = reader.decrypt_document_lenient(&mut doc)?;
    /// assert_eq!(doc["ssn"], "123-45-6789");
    /// assert_eq!(doc["salary"], stored_salary); // left as stored
    /// assert_eq!(report.skipped()[0].path(), "/salary");
    /// assert!(reader.decrypt_document(&mut doc).is_err()); // strict refuses
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_document_lenient(&self, doc: &mut Value) -> Result<DecryptReport> {
        self.document(doc, Op::Decrypt { lenient: true })
    }

    fn document(&self, doc: &mut Value, op: Op) -> Result<DecryptReport> {
        let Value::Object(map) = doc else {
            return Err(Error::InvalidDocument {
                path: String::new(),
                reason: "a document must be a JSON object".into(),
            });
        };
        let mut walk = tree::Walk::new(&self.inner.engine, op);
        let changes = walk.document(map)?;
        let skipped = std::mem::take(&mut walk.skipped);
        drop(walk);
        tree::apply(map, changes);
        log_skips(&skipped);
        Ok(DecryptReport { skipped })
    }

    // ---- JSON text ----

    /// Encrypts the selected properties of the JSON object `json`.
    ///
    /// Everything not selected (other properties, keys, whitespace, order) comes out byte
    /// for byte. Numbers are typed from their literal text, as the .NET and Java SDKs do:
    /// an integer literal that fits int64 is a Long, anything else a Double; an integer
    /// that fits neither exactly is refused.
    ///
    /// The whole document is checked to be JSON (RFC 8259) as strictly as `serde_json`
    /// checks it, with one difference: the range of a number outside the selected
    /// properties is not checked, because it is never interpreted, only copied. So
    /// `{"n": 1e400}` passes through here, while `serde_json` (and therefore
    /// [`encrypt_document`](Self::encrypt_document), which takes a parsed `Value`) refuses
    /// it as out of range. A number under a selected property must be a finite double.
    ///
    /// Parse untrusted text with this API rather than into a `serde_json::Value` first:
    /// when serde_json's `raw_value` feature is on in a build (the Azure Cosmos SDK turns
    /// it on), `serde_json` reads an object keyed `"$serde_json::private::RawValue"` as
    /// the JSON inside its string, so the `Value` need not have the text's structure.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] for invalid JSON or a non-object;
    /// [`Error::LimitExceeded`] when `json` is longer than
    /// [`PrepareOptions::max_document_bytes`]; otherwise as
    /// [`encrypt_document`](Self::encrypt_document). Never partial output.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let doc = r#"{ "ssn": "123-45-6789",  "n": 1.50 }"#;
    /// let stored = prepared.encrypt_str(doc)?;
    /// assert!(stored.starts_with(r#"{ "ssn": ""#) && stored.ends_with(r#"",  "n": 1.50 }"#));
    /// // Deterministic: the same text gives the same output.
    /// assert_eq!(prepared.encrypt_str(doc)?, stored);
    /// let err = prepared.encrypt_str(r#"{"ssn": 1"#).unwrap_err();
    /// assert!(matches!(err, Error::InvalidDocument { .. }));
    /// // Outside the policy a number is copied whatever its range; under it, it must fit.
    /// assert_eq!(prepared.encrypt_str(r#"{"n": 1e400}"#)?, r#"{"n": 1e400}"#);
    /// assert!(prepared.encrypt_str(r#"{"ssn": 1e400}"#).is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_str(&self, json: &str) -> Result<String> {
        let mut skipped = Vec::new();
        let out = text::transform(&self.inner.engine, Op::Encrypt, json, &mut skipped)?;
        into_string(out)
    }

    /// [`encrypt_str`](Self::encrypt_str) on UTF-8 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] when `json` is not UTF-8; as
    /// [`encrypt_str`](Self::encrypt_str).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let stored = prepared.encrypt_slice(br#"{"ssn": "123-45-6789"}"#)?;
    /// assert_eq!(prepared.decrypt_slice(&stored)?, br#"{"ssn": "123-45-6789"}"#);
    /// let err = prepared.encrypt_slice(b"{\"ssn\": \"\xff\"}").unwrap_err();
    /// assert!(matches!(err, Error::InvalidDocument { .. })); // not UTF-8
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_slice(&self, json: &[u8]) -> Result<Vec<u8>> {
        let mut skipped = Vec::new();
        text::transform(&self.inner.engine, Op::Encrypt, utf8(json)?, &mut skipped)
    }

    /// Decrypts the selected properties of the JSON object `json` (strict). Everything
    /// not selected comes out byte for byte.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] for invalid JSON or a non-object;
    /// [`Error::LimitExceeded`] when `json` is longer than
    /// [`PrepareOptions::max_document_bytes`]; otherwise as
    /// [`decrypt_document`](Self::decrypt_document). Never partial output.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let doc = r#"{"id": "1", "ssn": "123-45-6789", "notes": [null, "x"]}"#;
    /// let stored = prepared.encrypt_str(doc)?;
    /// assert_eq!(prepared.decrypt_str(&stored)?, doc);
    /// let edited = stored.replace(r#""id": "1""#, r#""id": "2""#); // outside the policy
    /// assert!(prepared.decrypt_str(&edited)?.contains(r#""id": "2""#));
    /// let err = prepared.decrypt_str(r#"{"ssn": "AAAA"}"#).unwrap_err();
    /// assert!(matches!(err, Error::MalformedCiphertext { path, .. } if path == "/ssn"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_str(&self, json: &str) -> Result<String> {
        let mut skipped = Vec::new();
        let out = text::transform(
            &self.inner.engine,
            Op::Decrypt { lenient: false },
            json,
            &mut skipped,
        )?;
        into_string(out)
    }

    /// [`decrypt_str`](Self::decrypt_str) on UTF-8 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] when `json` is not UTF-8; as
    /// [`decrypt_str`](Self::decrypt_str).
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let stored = prepared.encrypt_slice(br#"{"notes": "call back"}"#)?;
    /// let plain = prepared.decrypt_slice(&stored)?;
    /// assert_eq!(plain, br#"{"notes": "call back"}"#);
    /// assert!(prepared.decrypt_slice(b"[1, 2]").is_err()); // not an object
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_slice(&self, json: &[u8]) -> Result<Vec<u8>> {
        let mut skipped = Vec::new();
        text::transform(
            &self.inner.engine,
            Op::Decrypt { lenient: false },
            utf8(json)?,
            &mut skipped,
        )
    }

    /// Lenient [`decrypt_str`](Self::decrypt_str): properties whose key is unavailable are
    /// left as they are and reported.
    ///
    /// # Errors
    ///
    /// As [`decrypt_document_lenient`](Self::decrypt_document_lenient).
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// // `writer` has both keys; `reader` lacks cek-hr, the key of /salary.
    /// let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// assert!(doc.starts_with(r#"{"ssn": "123-45-6789", "salary": ""#));
    /// assert_eq!(report.skipped()[0].key_id(), "cek-hr");
    /// assert!(writer.decrypt_str_lenient(&stored)?.1.is_complete());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_str_lenient(&self, json: &str) -> Result<(String, DecryptReport)> {
        let mut skipped = Vec::new();
        let out = text::transform(
            &self.inner.engine,
            Op::Decrypt { lenient: true },
            json,
            &mut skipped,
        )?;
        log_skips(&skipped);
        Ok((into_string(out)?, DecryptReport { skipped }))
    }

    /// Lenient [`decrypt_slice`](Self::decrypt_slice).
    ///
    /// # Errors
    ///
    /// As [`decrypt_str_lenient`](Self::decrypt_str_lenient).
    ///
    /// # Examples
    ///
    /// ```
    ///
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// // `writer` has both keys; `reader` lacks cek-hr, the key of /salary.
    /// let stored = writer.encrypt_slice(br#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// let (doc, report) = reader.decrypt_slice_lenient(&stored)?;
    /// assert!(doc.starts_with(br#"{"ssn": "123-45-6789", "salary": ""#));
    /// assert_eq!(report.skipped()[0].path(), "/salary");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_slice_lenient(&self, json: &[u8]) -> Result<(Vec<u8>, DecryptReport)> {
        let mut skipped = Vec::new();
        let out = text::transform(
            &self.inner.engine,
            Op::Decrypt { lenient: true },
            utf8(json)?,
            &mut skipped,
        )?;
        log_skips(&skipped);
        Ok((out, DecryptReport { skipped }))
    }

    // ---- typed ----

    /// Serializes `item` and encrypts it (numbers typed as in
    /// [`encrypt_document`](Self::encrypt_document)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] when `item` does not serialize to a JSON object; as
    /// [`encrypt_document`](Self::encrypt_document).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Patient {
    ///     id: String,
    ///     ssn: String,
    /// }
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let ada = Patient { id: "1".into(), ssn: "123-45-6789".into() };
    /// let stored = prepared.encrypt_item(&ada)?;
    /// assert_eq!(stored["id"], "1");
    /// assert_ne!(stored["ssn"], "123-45-6789");
    /// assert_eq!(prepared.decrypt_item::<Patient>(stored)?, ada);
    /// assert!(prepared.encrypt_item(&["not", "an", "object"]).is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_item<T: Serialize + ?Sized>(&self, item: &T) -> Result<Value> {
        let mut doc = serde_json::to_value(item).map_err(|e| Error::InvalidDocument {
            path: String::new(),
            reason: format!("cannot serialize the item: {e}"),
        })?;
        self.encrypt_document(&mut doc)?;
        Ok(doc)
    }

    /// Decrypts `doc` (strict) and deserializes it into a `T`.
    ///
    /// # Errors
    ///
    /// As [`decrypt_document`](Self::decrypt_document); [`Error::InvalidDocument`] when
    /// the decrypted document does not fit `T` (the message never quotes a value).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Patient {
    ///     id: String,
    ///     ssn: String,
    /// }
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let stored = prepared.encrypt_item(&Patient { id: "1".into(), ssn: "123-45-6789".into() })?;
    /// let back: Patient = prepared.decrypt_item(stored.clone())?;
    /// assert_eq!(back.ssn, "123-45-6789");
    /// let err = prepared.decrypt_item::<Vec<u8>>(stored).unwrap_err();
    /// assert!(!err.to_string().contains("123-45-6789"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_item<T: DeserializeOwned>(&self, mut doc: Value) -> Result<T> {
        self.decrypt_document(&mut doc)?;
        serde_json::from_value(doc).map_err(typed_error)
    }

    /// Decrypts the JSON text `json` (strict) and deserializes it into a `T`.
    ///
    /// # Errors
    ///
    /// As [`decrypt_str`](Self::decrypt_str) and [`decrypt_item`](Self::decrypt_item).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Patient {
    ///     id: String,
    ///     ssn: String,
    /// }
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let stored = prepared.encrypt_str(r#"{"id": "1", "ssn": "123-45-6789"}"#)?;
    /// let back: Patient = prepared.decrypt_item_str(&stored)?;
    /// assert_eq!(back, Patient { id: "1".into(), ssn: "123-45-6789".into() });
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_item_str<T: DeserializeOwned>(&self, json: &str) -> Result<T> {
        let plain = self.decrypt_str(json)?;
        serde_json::from_str(&plain).map_err(typed_error)
    }

    // ---- ids, partition keys, query parameters, patch ----

    /// The id to use for a point operation (read, replace, delete) on a document whose id
    /// is `id`: encrypted (Deterministic, URL-safe base64) when the policy encrypts `/id`,
    /// unchanged otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::KeyUnavailable`] when `/id`'s key is unavailable; [`Error::LimitExceeded`]
    /// when `id` is longer than [`PrepareOptions::max_string_bytes`].
    ///
    /// # Examples
    ///
    /// ```
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/id", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/tenantId", "clientEncryptionKeyId": "cek1",
    /// #    "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let options = PrepareOptions::new().partition_key_path("/tenantId");
    /// # let prepared = PreparedPolicy::new(&policy, options, |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /id and the partition key /tenantId (Deterministic).
    /// let encrypted_id = prepared.encrypt_id("order-1")?;
    /// assert!(!encrypted_id.contains(['+', '/'])); // URL-safe: it goes into resource URLs
    /// let mut doc = json!({"id": "order-1", "tenantId": "contoso"});
    /// prepared.encrypt_document(&mut doc)?;
    /// assert_eq!(doc["id"], encrypted_id.as_str());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_id(&self, id: &str) -> Result<String> {
        let v = Value::String(id.to_owned());
        match self.encrypt_at("/id", &[Cow::Borrowed("id")], &v, Numbers::AsParsed)? {
            Value::String(s) => Ok(s),
            _ => Err(Error::UnsupportedValue {
                path: "/id".into(),
                reason: "internal error: the encrypted id is not a string".into(),
            }),
        }
    }

    /// The partition-key value to send for a partition-key path (e.g. `/pk`): encrypted
    /// exactly as the stored property when the policy encrypts that path (or a path
    /// holding it), unchanged otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] for a malformed path; [`Error::UnsupportedOperation`] when
    /// the path is encrypted Randomized (only possible when it was not declared in
    /// [`PrepareOptions`]); as [`encrypt_document`](Self::encrypt_document).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/id", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/tenantId", "clientEncryptionKeyId": "cek1",
    /// #    "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let options = PrepareOptions::new().partition_key_path("/tenantId");
    /// # let prepared = PreparedPolicy::new(&policy, options, |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /id and the partition key /tenantId (Deterministic).
    /// let pk = prepared.encrypt_partition_key("/tenantId", &json!("contoso"))?;
    /// let mut doc = json!({"id": "1", "tenantId": "contoso"});
    /// prepared.encrypt_document(&mut doc)?;
    /// assert_eq!(doc["tenantId"], pk);
    /// // A path the policy does not encrypt: the value as it is.
    /// assert_eq!(prepared.encrypt_partition_key("/region", &json!("eu"))?, json!("eu"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_partition_key(&self, path: &str, value: &Value) -> Result<Value> {
        let segments = path::parse_policy_path(path).map_err(|r| Error::InvalidPolicy {
            path: path.to_owned(),
            reason: format!("invalid partition-key path: {r}"),
        })?;
        let mut tokens = Vec::with_capacity(segments.len());
        for s in &segments {
            match s {
                Segment::Property(p) => tokens.push(Cow::Borrowed(&**p)),
                Segment::Elements => {
                    return Err(Error::InvalidPolicy {
                        path: path.to_owned(),
                        reason: "a partition-key path cannot contain '[]'".into(),
                    });
                }
            }
        }
        let target = self.inner.engine.resolve(path, &tokens)?;
        if let Target::Selected { sel, .. } = target
            && self.inner.engine.sel(sel).mode != EncryptionType::Deterministic
        {
            return Err(Error::UnsupportedOperation {
                path: path.to_owned(),
                reason: "a partition key on a Randomized path cannot be matched".into(),
            });
        }
        self.encrypt_resolved(&tokens, target, value, Numbers::AsParsed)
    }

    /// [`encrypt_partition_key`](Self::encrypt_partition_key) for every partition-key path
    /// of the options, in order (one value per path; several for a hierarchical key).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedOperation`] when the number of values differs from the number
    /// of partition-key paths; as [`encrypt_partition_key`](Self::encrypt_partition_key).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/id", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/tenantId", "clientEncryptionKeyId": "cek1",
    /// #    "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let options = PrepareOptions::new().partition_key_path("/tenantId");
    /// # let prepared = PreparedPolicy::new(&policy, options, |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /id and the partition key /tenantId (Deterministic).
    /// let values = prepared.encrypt_partition_key_values(&[json!("contoso")])?;
    /// assert_eq!(values, [prepared.encrypt_partition_key("/tenantId", &json!("contoso"))?]);
    /// let two = prepared.encrypt_partition_key_values(&[json!("contoso"), json!("eu")]);
    /// assert!(matches!(two, Err(Error::UnsupportedOperation { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_partition_key_values(&self, values: &[Value]) -> Result<Vec<Value>> {
        let paths = self.partition_key_paths();
        if paths.len() != values.len() {
            return Err(Error::UnsupportedOperation {
                path: String::new(),
                reason: format!(
                    "{} partition-key values for {} partition-key paths",
                    values.len(),
                    paths.len()
                ),
            });
        }
        paths
            .iter()
            .zip(values)
            .map(|(p, v)| self.encrypt_partition_key(p, v))
            .collect()
    }

    /// Encrypts a query parameter compared for equality with the property at `path`
    /// (a JSON Pointer: `/ssn`, or `/o/x` under an encrypted `/o`), exactly as that
    /// property's stored leaves are. `null` stays `null`.
    ///
    /// Numbers: `number_type` types every number as a Long or a Double (see
    /// [`NumberType`]); `None` types them as [`encrypt_document`](Self::encrypt_document)
    /// types a `Value`: an int64 is a Long, any other number a Double, and `-0.0` is
    /// refused, because serde_json reads both `-0` (a Long 0 in a document's text) and
    /// `-0.0` (a Double) as `-0.0`. A parameter that arrives as JSON text (a request, a
    /// command line) belongs in
    /// [`encrypt_query_parameter_str`](Self::encrypt_query_parameter_str), which types it
    /// from its literal exactly as [`encrypt_str`](Self::encrypt_str) types a stored
    /// value.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedOperation`] when the path is not encrypted, holds encrypted
    /// properties rather than being one, or is Randomized (equality cannot work);
    /// [`Error::UnsupportedValue`] for a number that does not fit `number_type`, or
    /// `-0.0` without one;
    /// [`Error::KeyUnavailable`]; [`Error::LimitExceeded`] for a string longer than
    /// [`PrepareOptions::max_string_bytes`].
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let mut doc = json!({"ssn": "123-45-6789"});
    /// prepared.encrypt_document(&mut doc)?;
    /// // SELECT * FROM c WHERE c.ssn = @ssn
    /// let ssn = prepared.encrypt_query_parameter("/ssn", &json!("123-45-6789"), None)?;
    /// assert_eq!(ssn, doc["ssn"]);
    /// let randomized = prepared.encrypt_query_parameter("/notes", &json!("x"), None);
    /// assert!(matches!(randomized, Err(Error::UnsupportedOperation { .. })));
    /// let plain = prepared.encrypt_query_parameter("/name", &json!("Ada"), None);
    /// assert!(matches!(plain, Err(Error::UnsupportedOperation { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_query_parameter(
        &self,
        path: &str,
        value: &Value,
        number_type: Option<NumberType>,
    ) -> Result<Value> {
        let (tokens, target) = self.query_target(path)?;
        let numbers = match number_type {
            None => Numbers::AsParsed,
            Some(NumberType::Long) => Numbers::Long,
            Some(NumberType::Double) => Numbers::Double,
        };
        self.encrypt_resolved(&tokens, target, value, numbers)
    }

    /// [`encrypt_query_parameter`](Self::encrypt_query_parameter) for a parameter given
    /// as JSON text (`"123-45-6789"`, `42`, `-0`, `{"zip": 98052}`), encrypted by the very
    /// walker [`encrypt_str`](Self::encrypt_str) uses, so the parameter gets exactly the
    /// stored bytes of that value in a document, or the same error: numbers are typed
    /// from their literal (`42` and `-0` are Longs, `42.0` a Double, an integer that fits
    /// neither an int64 nor a double exactly is refused, never rounded). JSON whitespace
    /// around the value is ignored. Returns the encrypted parameter as JSON text.
    ///
    /// With a `number_type`, every number is typed as that instead (see [`NumberType`]):
    /// as a Long, `1.0`, `1E3` and `9.2e18` are accepted since their values are exact
    /// integers, `1.5` and `1e19` are refused.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDocument`] when `json` is not exactly one JSON value (the message
    /// never quotes it); otherwise as
    /// [`encrypt_query_parameter`](Self::encrypt_query_parameter) and
    /// [`encrypt_str`](Self::encrypt_str).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{Error, NumberType};
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /age, Deterministic.
    /// let stored = |lit: &str| -> always_encrypted::Result<String> {
    ///     let doc = prepared.encrypt_str(&format!(r#"{{"age":{lit}}}"#))?;
    ///     Ok(doc["{\"age\":".len()..doc.len() - 1].to_owned())
    /// };
    /// let q = |lit: &str, t| prepared.encrypt_query_parameter_str("/age", lit, t);
    /// // -0 is stored as a Long 0, and so is the parameter.
    /// assert_eq!(q("-0", None)?, stored("0")?);
    /// assert_eq!(q("42\n", None)?, stored("42")?);
    /// assert_eq!(q("42.0", Some(NumberType::Long))?, stored("42")?);
    /// // Refused like the document, never rounded to a neighbour.
    /// let big = "100000000000000000000000";
    /// assert!(matches!(stored(big), Err(Error::UnsupportedValue { .. })));
    /// let refused = q(big, None);
    /// assert!(matches!(refused, Err(Error::UnsupportedValue { path, .. }) if path == "/age"));
    /// assert!(matches!(q("42, 43", None), Err(Error::InvalidDocument { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_query_parameter_str(
        &self,
        path: &str,
        json: &str,
        number_type: Option<NumberType>,
    ) -> Result<String> {
        let (tokens, _) = self.query_target(path)?;
        let value = one_json_value(json, path)?;
        let retyped;
        let value = match number_type {
            None => value,
            Some(t) => {
                retyped = retype_numbers(value, t, path)?;
                retyped.as_str()
            }
        };
        let engine = &self.inner.engine;
        let w = engine.wrapper(&tokens);
        let mut doc = Zeroizing::new(String::with_capacity(
            w.before.len() + value.len() + w.after.len(),
        ));
        doc.push_str(&w.before);
        doc.push_str(value);
        doc.push_str(&w.after);
        let out = text::transform(engine, Op::Encrypt, &doc, &mut Vec::new())
            .map_err(|e| rebase_error(e, &w.pointer, path))?;
        let internal = || Error::UnsupportedValue {
            path: path.to_owned(),
            reason: "internal error: the encrypted parameter lost its place".into(),
        };
        if !(out.starts_with(w.before.as_bytes()) && out.ends_with(w.after.as_bytes())) {
            return Err(internal());
        }
        let inner = out
            .get(w.before.len()..out.len() - w.after.len())
            .ok_or_else(internal)?;
        String::from_utf8(inner.to_vec()).map_err(|_| internal())
    }

    /// Resolves the path of a query parameter, refusing one that is not encrypted, holds
    /// encrypted properties, or is Randomized.
    fn query_target<'p>(&self, path: &'p str) -> Result<(Vec<Cow<'p, str>>, Target)> {
        let (tokens, target) = self.target(path)?;
        let sel = match target {
            Target::Selected { sel, .. } => self.inner.engine.sel(sel),
            Target::Plain => {
                return Err(Error::UnsupportedOperation {
                    path: path.to_owned(),
                    reason: "the policy does not encrypt this path: pass the value as it is".into(),
                });
            }
            Target::Interior(_) => {
                return Err(Error::UnsupportedOperation {
                    path: path.to_owned(),
                    reason: "the path holds encrypted properties: compare them one by one".into(),
                });
            }
        };
        if sel.mode != EncryptionType::Deterministic {
            return Err(Error::UnsupportedOperation {
                path: path.to_owned(),
                reason: format!(
                    "{} is Randomized: equal values have different ciphertexts, so it \
                     cannot be queried for equality",
                    sel.path
                ),
            });
        }
        Ok((tokens, target))
    }

    /// Encrypts the values of patch operations on encrypted paths, leaf by leaf, exactly as
    /// the stored properties (a sub-path such as `/o/x` uses `/o`'s key and type).
    /// `remove` and operations on other paths pass through unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedOperation`] for `incr` on (or above) an encrypted property, a
    /// `move` into, out of or between encrypted properties, or a malformed path; as
    /// [`encrypt_document`](Self::encrypt_document) for the values.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{Error, PatchOperation};
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn (Deterministic) and /notes (Randomized) with cek1.
    /// let ops = [
    ///     PatchOperation::set("/ssn", json!("987-65-4321")),
    ///     PatchOperation::set("/name", json!("Grace")),
    /// ];
    /// let encrypted = prepared.encrypt_patch(&ops)?;
    /// let mut doc = json!({"ssn": "987-65-4321"});
    /// prepared.encrypt_document(&mut doc)?;
    /// assert_eq!(encrypted[0], PatchOperation::set("/ssn", doc["ssn"].clone()));
    /// assert_eq!(encrypted[1], ops[1]); // not encrypted: unchanged
    /// let incr = prepared.encrypt_patch(&[PatchOperation::incr("/ssn", json!(1))]);
    /// assert!(matches!(incr, Err(Error::UnsupportedOperation { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_patch(&self, ops: &[PatchOperation]) -> Result<Vec<PatchOperation>> {
        ops.iter().map(|op| self.encrypt_patch_op(op)).collect()
    }

    fn encrypt_patch_op(&self, op: &PatchOperation) -> Result<PatchOperation> {
        let enc = |path: &str, value: &Value| -> Result<Value> {
            let (tokens, target) = self.target(path)?;
            self.encrypt_resolved(&tokens, target, value, Numbers::AsParsed)
        };
        Ok(match op {
            PatchOperation::Add { path, value } => PatchOperation::Add {
                path: path.clone(),
                value: enc(path, value)?,
            },
            PatchOperation::Set { path, value } => PatchOperation::Set {
                path: path.clone(),
                value: enc(path, value)?,
            },
            PatchOperation::Replace { path, value } => PatchOperation::Replace {
                path: path.clone(),
                value: enc(path, value)?,
            },
            PatchOperation::Remove { .. } => op.clone(),
            PatchOperation::Incr { path, .. } => {
                if self.target(path)?.1 != Target::Plain {
                    return Err(Error::UnsupportedOperation {
                        path: path.clone(),
                        reason: "incr cannot change an encrypted property (its stored value \
                                 is ciphertext); read, change and set it instead"
                            .into(),
                    });
                }
                op.clone()
            }
            PatchOperation::Move { from, path } => {
                let a = self.target(from)?.1;
                let b = self.target(path)?.1;
                let same_path = matches!(
                    (a, b),
                    (Target::Selected { sel: x, .. }, Target::Selected { sel: y, .. })
                        if x == y && !self.inner.engine.sel(x).is_id
                );
                if !(a == Target::Plain && b == Target::Plain || same_path) {
                    return Err(Error::UnsupportedOperation {
                        path: path.clone(),
                        reason: format!(
                            "move from {from} would carry a value into, out of or between \
                             encrypted properties"
                        ),
                    });
                }
                op.clone()
            }
        })
    }

    /// Parses a JSON Pointer and resolves it in the selection tree.
    fn target<'p>(&self, path: &'p str) -> Result<(Vec<Cow<'p, str>>, Target)> {
        let tokens = path::parse_pointer(path).map_err(|r| Error::UnsupportedOperation {
            path: path.to_owned(),
            reason: format!("invalid JSON Pointer: {r}"),
        })?;
        let target = self.inner.engine.resolve(path, &tokens)?;
        Ok((tokens, target))
    }

    fn encrypt_at(
        &self,
        path: &str,
        tokens: &[Cow<'_, str>],
        value: &Value,
        numbers: Numbers,
    ) -> Result<Value> {
        let target = self.inner.engine.resolve(path, tokens)?;
        self.encrypt_resolved(tokens, target, value, numbers)
    }

    /// Encrypts `value`, headed for the path of `tokens` (which resolved to `target`).
    fn encrypt_resolved(
        &self,
        tokens: &[Cow<'_, str>],
        target: Target,
        value: &Value,
        numbers: Numbers,
    ) -> Result<Value> {
        let prefix: Vec<&str> = tokens.iter().map(|t| &**t).collect();
        let engine = &self.inner.engine;
        let walk = || {
            tree::Walk::new(engine, Op::Encrypt)
                .with_numbers(numbers)
                .at(&prefix)
        };
        let out = match target {
            Target::Plain => None,
            Target::Selected { sel, exact } => walk().selected(engine.sel(sel), value, exact)?,
            Target::Interior(node) => walk().node(node, value)?,
        };
        Ok(out.unwrap_or_else(|| value.clone()))
    }
}

fn utf8(json: &[u8]) -> Result<&str> {
    std::str::from_utf8(json).map_err(|e| Error::InvalidDocument {
        path: String::new(),
        reason: format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
    })
}

fn into_string(out: Vec<u8>) -> Result<String> {
    String::from_utf8(out).map_err(|_| Error::InvalidDocument {
        path: String::new(),
        reason: "internal error: the output is not UTF-8".into(),
    })
}

/// A deserialization error whose message cannot quote a value from the document.
fn typed_error(e: serde_json::Error) -> Error {
    let msg = e.to_string();
    let safe = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| msg.starts_with(p));
    Error::InvalidDocument {
        path: String::new(),
        reason: if safe {
            format!("the decrypted document does not fit the type: {msg}")
        } else {
            "the decrypted document does not fit the type (a value has the wrong type or \
             range)"
                .into()
        },
    }
}

impl fmt::Debug for PreparedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Paths<'a>(&'a Engine);
        impl fmt::Debug for Paths<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.selected_paths().iter().map(|s| {
                        format!(
                            "{} {} key '{}'{}",
                            s.path,
                            s.mode,
                            s.key.key_id(),
                            match s.key {
                                KeySlot::Ready(CellKey::Cosmos(_)) => "",
                                KeySlot::Ready(CellKey::Ae1(_)) => " AE1",
                                KeySlot::Unavailable { .. } => " (unavailable)",
                            }
                        )
                    }))
                    .finish()
            }
        }
        f.debug_struct("PreparedPolicy")
            .field("paths", &Paths(&self.inner.engine))
            .field(
                "partition_key_paths",
                &self.inner.options.partition_key_paths,
            )
            .field("mode", &self.inner.policy.mode())
            .finish()
    }
}

impl crate::keys::KeyResolver {
    /// Resolves every key `policy` needs (from the DEK cache, or unwrapped by the
    /// key-encryption-key provider) and prepares the policy for the hot path.
    ///
    /// Keys are resolved concurrently, once per distinct key id. A prepared policy keeps
    /// its keys for as long as it lives: prepare again (cheap while the keys are cached)
    /// to pick up rewraps and honour revocation within the cache's time to live.
    ///
    /// # Errors
    ///
    /// As [`PreparedPolicy::new`]; key resolution errors ([`Error::KeyNotFound`],
    /// [`Error::KeyProvider`], key store errors) unless `allow_unavailable_keys` is set and
    /// the key is unavailable to the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};
    /// # let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"),
    /// #     "/../shared/testvectors/cosmos-js-4.10.1/kek.pem")).unwrap();
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let url = "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef";
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem.as_str())])?))
    ///     .build();
    /// let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// resolver.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek).await?;
    ///
    /// let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [{"path": "/ssn",
    ///     "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    ///     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// let prepared = resolver.prepare(&policy, PrepareOptions::new()).await?;
    /// let stored = prepared.encrypt_str(r#"{"id":"1","ssn":"123-45-6789"}"#)?;
    /// assert_eq!(prepared.decrypt_str(&stored)?, r#"{"id":"1","ssn":"123-45-6789"}"#);
    /// # Ok::<(), always_encrypted::Error>(())
    /// # }).unwrap();
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub async fn prepare(
        &self,
        policy: &ClientEncryptionPolicy,
        options: PrepareOptions,
    ) -> Result<PreparedPolicy> {
        let ids = policy.key_ids();
        let resolved = futures_join_all(ids.iter().map(|id| self.resolve(id))).await;
        let mut by_id: HashMap<&str, Result<ResolvedKey>> =
            ids.iter().copied().zip(resolved).collect();
        PreparedPolicy::new(policy, options, |id| {
            by_id.remove(id).unwrap_or_else(|| {
                Err(Error::KeyNotFound {
                    key_id: id.to_owned(),
                })
            })
        })
    }
}

/// One `tracing` event per property lenient decryption left encrypted: its path and key id.
fn log_skips(skipped: &[SkippedProperty]) {
    for s in skipped {
        tracing::debug!(
            path = s.path(),
            key_id = s.key_id(),
            "lenient decryption left a property encrypted: its key is unavailable"
        );
    }
}

/// Awaits every future, concurrently, keeping their order (a tiny `join_all` so as not to
/// depend on the `futures` crate for one function).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<_> = futures.map(Box::pin).collect();
    // Sequential awaits would serialize Key Vault round trips; poll all of them together.
    let mut pending: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in set.iter_mut().enumerate() {
            if pending[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => pending[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    pending.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DataEncryptionKey;
    use crate::policy::PolicyMode;

    #[test]
    fn ae1_subkeys_are_derived_once_per_path_when_preparing() {
        let policy = ClientEncryptionPolicy::from_json_with(
            r#"{"includedPaths": [
              {"path": "/a", "clientEncryptionKeyId": "k1", "encryptionType": "Deterministic",
               "encryptionAlgorithm": "AE1_AES_256_GCM_HKDF_SHA256"},
              {"path": "/b/[]/c", "clientEncryptionKeyId": "k1", "encryptionType": "Randomized",
               "encryptionAlgorithm": "AE1_AES_256_GCM_HKDF_SHA256"},
              {"path": "/d", "clientEncryptionKeyId": "k1", "encryptionType": "Deterministic",
               "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
              "policyFormatVersion": 2}"#,
            PolicyMode::Extended,
        )
        .unwrap();
        let mut lookups = 0;
        let p = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
            lookups += 1;
            Ok(ResolvedKey::new(
                id,
                DataEncryptionKey::from_bytes(&[3; 32]).unwrap(),
            ))
        })
        .unwrap();
        assert_eq!(lookups, 1, "one lookup per key id");
        let keys: Vec<_> = p
            .inner
            .engine
            .selected_paths()
            .iter()
            .map(|s| match &s.key {
                KeySlot::Ready(CellKey::Ae1(k)) => {
                    Some((k.key_id(), k.path(), k.encryption_type(), Arc::clone(k)))
                }
                _ => None,
            })
            .collect();
        let (id, path, mode, a) = keys[0].clone().unwrap();
        assert_eq!(
            (id, path, mode),
            ("k1", "/a", EncryptionType::Deterministic)
        );
        let (_, path, mode, _) = keys[1].clone().unwrap();
        assert_eq!((path, mode), ("/b/[]/c", EncryptionType::Randomized));
        assert!(keys[2].is_none(), "/d uses the Cosmos algorithm");
        // Encrypting uses the prepared subkeys; clones share them.
        let enc = p
            .encrypt_str(r#"{"a": "x", "b": [{"c": 1}], "d": true}"#)
            .unwrap();
        assert_eq!(
            p.clone().decrypt_str(&enc).unwrap(),
            r#"{"a": "x", "b": [{"c": 1}], "d": true}"#
        );
        let q = p.clone();
        match &q.inner.engine.selected_paths()[0].key {
            KeySlot::Ready(CellKey::Ae1(k)) => assert!(Arc::ptr_eq(k, &a)),
            _ => unreachable!(),
        }
        let debug = format!("{p:?}");
        assert!(debug.contains("/a Deterministic key 'k1' AE1") && !debug.contains("[3, 3"));
    }
}
