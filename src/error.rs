//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// Errors returned by `always-encrypted`.
///
/// Every variant says what went wrong and where (the JSON path, the key id, the file),
/// and never carries key material or plaintext.
///
/// A JSON path names each property as it is after unescaping, except a property name with
/// a lone UTF-16 surrogate escape (valid JSON that no Rust string can hold): its path keeps
/// that escape, lowercase (`/k\udb5e`). Messages (`Display`) write control characters,
/// the line separators and bidirectional-text controls in paths and reasons as JSON escapes
/// (`/k\u0001`), so a hostile name cannot break a log line or a terminal.
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
/// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
///
/// // `prepared` encrypts /ssn with the key cek1.
/// let mut stored = prepared.encrypt_str(r#"{"ssn": "123-45-6789"}"#)?;
/// // Change one base64 character of the stored value's tag (the value starts at byte 9).
/// let c = if &stored[20..21] == "A" { "B" } else { "A" };
/// stored.replace_range(20..21, c);
/// let err = prepared.decrypt_str(&stored).unwrap_err();
/// assert!(matches!(&err, Error::DecryptionFailed { path, key_id }
///     if path == "/ssn" && key_id == "cek1"));
/// assert!(err.to_string().starts_with("cannot decrypt the value at /ssn with key 'cek1'"));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// A ciphertext failed authentication: it was tampered with, written under another
    /// key, or is not a ciphertext at all. Deliberately opaque: a bad tag and bad padding
    /// look the same, so no oracle can tell them apart.
    DecryptionFailed {
        /// JSON path of the property (empty when a lone value was decrypted).
        path: String,
        /// Id of the client encryption key that was used.
        key_id: String,
    },
    /// The stored value is not a ciphertext this crate understands (bad base64, too
    /// short, unknown version byte, unknown type marker, wrong payload length, ...).
    MalformedCiphertext {
        /// JSON path of the property (empty when a lone value was decrypted).
        path: String,
        /// Id of the client encryption key that was used.
        key_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A plaintext value cannot be encrypted (NaN, an integer that fits neither an int64
    /// nor a double exactly, a value of a type that cannot be stored, ...).
    UnsupportedValue {
        /// JSON path of the property (empty when a lone value was encrypted).
        path: String,
        /// Why it cannot be encrypted.
        reason: String,
    },
    /// A key given to the library is unusable (wrong length, ...).
    InvalidKey {
        /// Id of the key, if known.
        key_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No client encryption key with this id is in the key store.
    KeyNotFound {
        /// The client encryption key id that was looked up.
        key_id: String,
    },
    /// A key-encryption-key provider failed (Key Vault, a local RSA key, ...).
    KeyProvider {
        /// Id of the client encryption key being wrapped or unwrapped.
        key_id: String,
        /// What failed, with its kind and the key-encryption key URL.
        source: crate::keys::KeyProviderError,
    },
    /// The operating system's random number generator failed.
    Random(getrandom::Error),
    /// A key-encryption-key provider cannot be set up (an unreadable `SSL_CERT_FILE`, no
    /// trusted root certificates, ...).
    KeyProviderConfig {
        /// The provider type, e.g. `AZURE_KEY_VAULT`.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A client encryption key resource is malformed (bad base64, an unknown algorithm, a
    /// missing field, ...).
    InvalidKeyResource {
        /// Id of the client encryption key (empty when even the id is unreadable).
        key_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A client encryption key with this id already exists in the key store (and, on
    /// import, is a different key).
    KeyAlreadyExists {
        /// The client encryption key id.
        key_id: String,
    },
    /// The key store changed under this operation: another writer changed the key store
    /// file since it was loaded, or the key was replaced since it was read. Nothing was
    /// written; reload and try again.
    KeyStoreConflict {
        /// The key store (a file name, or `memory`).
        store: String,
        /// The client encryption key id concerned, if one.
        key_id: String,
        /// What changed.
        reason: String,
    },
    /// A key store file is not a valid JSON array of client encryption keys (corrupt,
    /// truncated, empty). The file is left untouched.
    CorruptKeyStore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`reading`, `writing`, `renaming`, ...).
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// No key-encryption-key provider is configured for a client encryption key's
    /// `keyWrapMetadata` (neither for its key URL nor for its type).
    NoKeyProvider {
        /// Id of the client encryption key.
        key_id: String,
        /// `keyWrapMetadata.type`.
        provider_type: String,
        /// `keyWrapMetadata.value`, the key-encryption key URL.
        kek_url: String,
    },
    /// A rewrap was refused: the new wrapping did not unwrap to the same data-encryption
    /// key. The stored key was left as it was.
    RewrapVerificationFailed {
        /// Id of the client encryption key.
        key_id: String,
        /// The new key-encryption key URL.
        kek_url: String,
    },
    /// A `ClientEncryptionPolicy` breaks a rule; `path` is the offending included path
    /// (empty when the policy as a whole is wrong, e.g. its format version).
    InvalidPolicy {
        /// The included path the error is about, as written in the policy.
        path: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A document cannot be processed: it is not valid JSON, not a JSON object, nested too
    /// deeply, or (for typed helpers) does not match the target type.
    InvalidDocument {
        /// JSON Pointer of the offending value (empty for the document as a whole).
        path: String,
        /// What is wrong. Never contains a value from the document.
        reason: String,
    },
    /// An untrusted document is over one of the limits of
    /// [`PrepareOptions`](crate::PrepareOptions) (size, encrypted leaves, string length).
    /// Nothing was written; raise the limit if the document is legitimate.
    LimitExceeded {
        /// JSON Pointer of the offending value (empty for the document as a whole).
        path: String,
        /// The `PrepareOptions` setter of the limit: `max_document_bytes`,
        /// `max_encrypted_leaves` or `max_string_bytes`.
        limit: &'static str,
        /// The limit's value.
        max: usize,
    },
    /// The key a property needs was recorded as unavailable to this caller when the
    /// policy was prepared (access denied, key missing or disabled).
    KeyUnavailable {
        /// JSON Pointer of the property.
        path: String,
        /// The client encryption key id.
        key_id: String,
        /// Why the key is unavailable (the error of the key lookup).
        source: std::sync::Arc<Error>,
    },
    /// An operation is not allowed on an encrypted path: an equality query on a
    /// Randomized path, `incr` on an encrypted property, a query parameter for a path the
    /// policy does not encrypt, ...
    UnsupportedOperation {
        /// The path the operation names.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A Cosmos DB request failed (feature `cosmos`): the service answered with an error
    /// status, or the request could not be sent.
    Cosmos {
        /// What was being done (`create item`, `read container`, ...).
        operation: &'static str,
        /// The HTTP status code, when the service answered.
        status: Option<u16>,
        /// The SDK's error (its message names no key material: requests carry ciphertext).
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// `Result` with [`Error`] as the default error type.
///
/// # Examples
///
/// ```
/// use always_encrypted::{ClientEncryptionPolicy, Result};
///
/// fn key_ids(policy_json: &str) -> Result<Vec<String>> {
///     let policy = ClientEncryptionPolicy::from_json(policy_json)?;
///     Ok(policy.key_ids().into_iter().map(String::from).collect())
/// }
/// assert!(key_ids("not JSON").is_err());
/// assert!(key_ids(r#"{"includedPaths": []}"#)?.is_empty());
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The JSON path of the variants that name a place in a document.
    pub(crate) fn document_path_mut(&mut self) -> Option<&mut String> {
        match self {
            Error::DecryptionFailed { path, .. }
            | Error::MalformedCiphertext { path, .. }
            | Error::UnsupportedValue { path, .. }
            | Error::InvalidDocument { path, .. }
            | Error::LimitExceeded { path, .. }
            | Error::KeyUnavailable { path, .. }
            | Error::UnsupportedOperation { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Sets the JSON path on variants that carry one and where it is still empty.
    pub(crate) fn at_path(mut self, at: &str) -> Self {
        if let Some(path) = self.document_path_mut()
            && path.is_empty()
        {
            at.clone_into(path);
        }
        self
    }

    /// True when this error means a key is unavailable to the caller (missing from the key
    /// store, access denied, key-encryption key not found or disabled, no provider
    /// configured for its key-encryption key), rather than a
    /// passing fault or bad data. Lenient decryption skips properties for such errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{InMemoryKeyStore, KeyResolver};
    /// use always_encrypted::{ClientEncryptionPolicy, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new())).build();
    /// let Err(missing) = resolver.resolve("cek1").await else { panic!("no key was created") };
    /// assert!(matches!(missing, Error::KeyNotFound { .. }));
    /// assert!(missing.is_key_unavailable());
    /// let Err(bad_policy) = ClientEncryptionPolicy::from_json("{}") else { panic!() };
    /// assert!(!bad_policy.is_key_unavailable());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_key_unavailable(&self) -> bool {
        match self {
            Error::KeyNotFound { .. }
            | Error::KeyUnavailable { .. }
            | Error::NoKeyProvider { .. } => true,
            Error::KeyProvider { source, .. } => source.kind().is_revocation(),
            _ => false,
        }
    }

    /// The JSON path this error is about, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
    /// // `prepared` encrypts /ssn.
    /// let err = prepared.decrypt_str(r#"{"ssn": 42}"#).unwrap_err();
    /// assert_eq!(err.path(), Some("/ssn"));
    /// let err = ClientEncryptionPolicy::from_json(r#"{"includedPaths": 1}"#).unwrap_err();
    /// assert_eq!(err.path(), None); // about the policy as a whole
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::DecryptionFailed { path, .. }
            | Error::MalformedCiphertext { path, .. }
            | Error::UnsupportedValue { path, .. }
            | Error::InvalidPolicy { path, .. }
            | Error::InvalidDocument { path, .. }
            | Error::LimitExceeded { path, .. }
            | Error::KeyUnavailable { path, .. }
            | Error::UnsupportedOperation { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            _ => None,
        }
    }
}

/// Writes " at {path}" when a path is known, [`Escaped`].
struct At<'a>(&'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " at {}", Escaped(self.0))
        }
    }
}

/// Writes a path (or a reason that names one) for a message: a property name can hold any
/// character, so control characters (U+0000 to U+001F, U+007F to U+009F), the line and
/// paragraph separators and the bidirectional-text controls are written as JSON escapes
/// (`\u0001`), and a message stays one readable line. A name with a lone UTF-16 surrogate
/// is already written so in a path (`\udb5e`).
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl Escaped<'_> {
    fn needs_escape(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{61c}' | '\u{200e}' | '\u{200f}'
                    | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| Self::needs_escape(c)) {
            f.write_str(&rest[..i])?;
            write!(f, "\\u{:04x}", u32::from(c))?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Writes through to a formatter with [`Escaped`]'s rule, so that no part of a message
/// (a key id or key URL from a key resource, a provider's or the OS's own text) can put a
/// control character into a terminal or a log.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write!(self.0, "{}", Escaped(s))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        // Every message goes through the escaping writer: key ids, key URLs and reasons can
        // come from a key resource or a document, which an attacker may have written.
        let f = &mut EscapingWriter(out);
        match self {
            Error::DecryptionFailed { path, key_id } => write!(
                f,
                "cannot decrypt the value{} with key '{key_id}': authentication failed \
                 (tampered, written under another key, or not a ciphertext)",
                At(path)
            ),
            Error::MalformedCiphertext {
                path,
                key_id,
                reason,
            } => write!(
                f,
                "malformed ciphertext{} (key '{key_id}'): {reason}",
                At(path)
            ),
            Error::UnsupportedValue { path, reason } => write!(
                f,
                "cannot encrypt the value{}: {}",
                At(path),
                Escaped(reason)
            ),
            Error::InvalidKey { key_id, reason } => {
                write!(f, "invalid key '{key_id}': {reason}")
            }
            Error::KeyNotFound { key_id } => {
                write!(
                    f,
                    "client encryption key '{key_id}' is not in the key store"
                )
            }
            Error::KeyProvider { key_id, source } => {
                write!(f, "client encryption key '{key_id}': {source}")
            }
            Error::Random(e) => write!(f, "the OS random number generator failed: {e}"),
            Error::KeyProviderConfig { provider, reason } => {
                write!(f, "cannot set up the {provider} key provider: {reason}")
            }
            Error::InvalidKeyResource { key_id, reason } => {
                if key_id.is_empty() {
                    write!(f, "invalid client encryption key resource: {reason}")
                } else {
                    write!(f, "invalid client encryption key '{key_id}': {reason}")
                }
            }
            Error::KeyAlreadyExists { key_id } => write!(
                f,
                "a different client encryption key '{key_id}' already exists in the key store"
            ),
            Error::KeyStoreConflict {
                store,
                key_id,
                reason,
            } => {
                write!(f, "key store {store} changed concurrently")?;
                if !key_id.is_empty() {
                    write!(f, " (key '{key_id}')")?;
                }
                write!(f, ": {reason}; nothing was written, reload and retry")
            }
            Error::CorruptKeyStore { path, reason } => write!(
                f,
                "key store file {} is not a valid JSON array of client encryption keys: \
                 {reason} (the file was left untouched)",
                path.display()
            ),
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            Error::NoKeyProvider {
                key_id,
                provider_type,
                kek_url,
            } => write!(
                f,
                "client encryption key '{key_id}': no key-encryption-key provider for type \
                 '{provider_type}' or key {kek_url}"
            ),
            Error::RewrapVerificationFailed { key_id, kek_url } => write!(
                f,
                "client encryption key '{key_id}': the new wrapping under {kek_url} does not \
                 unwrap to the same data-encryption key; the stored key is unchanged"
            ),
            Error::InvalidPolicy { path, reason } => {
                if path.is_empty() {
                    write!(f, "invalid encryption policy: {}", Escaped(reason))
                } else {
                    write!(
                        f,
                        "invalid encryption policy: path '{}': {}",
                        Escaped(path),
                        Escaped(reason)
                    )
                }
            }
            Error::InvalidDocument { path, reason } => {
                write!(f, "invalid document{}: {}", At(path), Escaped(reason))
            }
            Error::LimitExceeded { path, limit, max } => {
                let what = match *limit {
                    "max_document_bytes" => "the document is larger than",
                    "max_encrypted_leaves" => "the document has more encrypted leaves than",
                    "max_string_bytes" => "a string is longer than",
                    _ => "a limit is exceeded:",
                };
                let unit = if limit.ends_with("bytes") {
                    " bytes"
                } else {
                    ""
                };
                write!(
                    f,
                    "document over a limit{}: {what} {max}{unit} (PrepareOptions::{limit})",
                    At(path)
                )
            }
            Error::KeyUnavailable {
                path,
                key_id,
                source,
            } => write!(
                f,
                "client encryption key '{key_id}' needed{} is unavailable: {source}",
                At(path)
            ),
            Error::UnsupportedOperation { path, reason } => {
                write!(f, "unsupported operation{}: {}", At(path), Escaped(reason))
            }
            Error::Cosmos {
                operation,
                status,
                source,
            } => match status {
                Some(code) => write!(
                    f,
                    "Cosmos DB {operation} failed with status {code}: {source}"
                ),
                None => write!(f, "Cosmos DB {operation} failed: {source}"),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Random(e) => Some(e),
            Error::KeyProvider { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::KeyUnavailable { source, .. } => Some(source.as_ref()),
            Error::Cosmos { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn f<T: Send + Sync + 'static>() {}
        f::<Error>();
    }

    #[test]
    fn at_path_fills_only_an_empty_path() {
        let e = Error::DecryptionFailed {
            path: String::new(),
            key_id: "cek1".into(),
        }
        .at_path("/ssn")
        .at_path("/other");
        assert_eq!(e.path(), Some("/ssn"));
        assert_eq!(
            e.to_string(),
            "cannot decrypt the value at /ssn with key 'cek1': authentication failed \
             (tampered, written under another key, or not a ciphertext)"
        );
    }

    #[test]
    fn messages_escape_control_characters_in_paths_and_reasons() {
        let path = "/a\u{0}b\n\u{1b}[31m\u{7f}\u{85}\u{2028}\u{202e}\u{2067}/k\\udb5e/é😀";
        let shown = r"/a\u0000b\u000a\u001b[31m\u007f\u0085\u2028\u202e\u2067/k\udb5e/é😀";
        let reason = || format!("property '{path}' is wrong");
        let cases = [
            Error::DecryptionFailed {
                path: path.into(),
                key_id: "k".into(),
            },
            Error::MalformedCiphertext {
                path: path.into(),
                key_id: "k".into(),
                reason: "bad",
            },
            Error::UnsupportedValue {
                path: path.into(),
                reason: reason(),
            },
            Error::InvalidPolicy {
                path: path.into(),
                reason: reason(),
            },
            Error::InvalidDocument {
                path: path.into(),
                reason: reason(),
            },
            Error::LimitExceeded {
                path: path.into(),
                limit: "max_string_bytes",
                max: 1,
            },
            Error::KeyUnavailable {
                path: path.into(),
                key_id: "k".into(),
                source: std::sync::Arc::new(Error::KeyNotFound { key_id: "k".into() }),
            },
            Error::UnsupportedOperation {
                path: path.into(),
                reason: reason(),
            },
        ];
        for e in cases {
            let msg = e.to_string();
            assert!(msg.contains(shown), "{msg}");
            assert!(!msg.chars().any(Escaped::needs_escape), "{msg:?}");
            // The path itself is the name as it is.
            assert_eq!(e.path(), Some(path));
        }
        // Nothing else changes.
        assert_eq!(Escaped("/plain/\\u0041 x").to_string(), "/plain/\\u0041 x");
    }
}
