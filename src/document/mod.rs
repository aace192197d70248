//! The document walker: given a prepared policy, visits exactly the selected properties of
//! a JSON document and encrypts or decrypts every primitive leaf under them.
//!
//! Two front ends share one selection tree and one set of leaf operations:
//! - [`text`]: JSON text in, JSON text out; parses only the top level (and the ancestors of
//!   nested paths) and copies everything not selected byte for byte;
//! - [`tree`]: `serde_json::Value` in place, transactional.
//!
//! This layer never sees key stores or providers: it gets ready cell keys, or the record
//! that a key is unavailable to this caller.

pub(crate) mod patch;
pub(crate) mod scan;
pub(crate) mod text;
pub(crate) mod tree;

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::cipher::{CbcHmacKey, EncryptionType, ModernKey, ReserveWiping};
use crate::error::{Error, Result};
use crate::path::Segment;
use crate::policy::{ClientEncryptionPolicy, EncryptionPath};
use crate::value::{self, Alphabet, Plaintext, TypeMarker};

/// The default of [`Limits::max_depth`]: a value under a selected property whose path
/// would have more than this many segments is refused (`serde_json` refuses such documents
/// when it parses them, so only hand-built values and the text API can reach it).
pub(crate) const MAX_DEPTH: usize = 128;

/// Limits on untrusted documents (see `PrepareOptions`): every walk checks them, so a
/// hostile document costs at most linear time and bounded memory, and never overflows
/// the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Nesting depth of a value under a selected property (path segments).
    pub(crate) max_depth: usize,
    /// Size of a JSON text document in bytes (text and byte APIs).
    pub(crate) max_document_bytes: usize,
    /// Leaves encrypted or decrypted in one document.
    pub(crate) max_encrypted_leaves: usize,
    /// Length in bytes of one string leaf under a selected property (as JSON text in the
    /// text API, as UTF-8 in the Value API; for decryption, the stored string).
    pub(crate) max_string_bytes: usize,
}

impl Limits {
    pub(crate) const DEFAULT: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_document_bytes: 16 << 20,
        max_encrypted_leaves: 1 << 20,
        max_string_bytes: 4 << 20,
    };

    /// Checks the leaf count after one more leaf.
    pub(crate) fn leaf(&self, count: &mut usize) -> Result<(), Error> {
        *count += 1;
        if *count > self.max_encrypted_leaves {
            return Err(Error::LimitExceeded {
                path: String::new(),
                limit: "max_encrypted_leaves",
                max: self.max_encrypted_leaves,
            });
        }
        Ok(())
    }

    /// Checks the length of a string leaf.
    pub(crate) fn string(&self, len: usize) -> Result<(), Error> {
        if len > self.max_string_bytes {
            return Err(Error::LimitExceeded {
                path: String::new(),
                limit: "max_string_bytes",
                max: self.max_string_bytes,
            });
        }
        Ok(())
    }

    /// The error for a value nested deeper than `max_depth`.
    pub(crate) fn too_deep(&self, path: String) -> Error {
        Error::InvalidDocument {
            path,
            reason: format!(
                "nested more than {} levels deep (the limit is PrepareOptions::max_depth)",
                self.max_depth
            ),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What a walk does to each selected leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Encrypt,
    Decrypt { lenient: bool },
}

/// The cell key of a selected path, for its algorithm.
#[derive(Clone)]
pub(crate) enum CellKey {
    /// `AEAD_AES_256_CBC_HMAC_SHA256`: one key per client encryption key.
    Cosmos(CbcHmacKey),
    /// `AE1`: subkeys derived once for this path (and mode) when the policy was prepared.
    Ae1(Arc<ModernKey>),
}

impl CellKey {
    pub(crate) fn key_id(&self) -> &str {
        match self {
            CellKey::Cosmos(k) => k.key_id(),
            CellKey::Ae1(k) => k.key_id(),
        }
    }

    /// The length of the binary stored form (before base64) of a plaintext of `len` bytes.
    pub(crate) fn stored_len(&self, len: usize) -> usize {
        match self {
            CellKey::Cosmos(_) => 1 + CbcHmacKey::ciphertext_len(len),
            CellKey::Ae1(_) => ModernKey::ciphertext_len(len),
        }
    }

    /// Appends the stored form (base64 text) of `plaintext` to `out`, using `scratch` for
    /// the binary form. `out` is unchanged on error.
    pub(crate) fn encrypt_to_bytes(
        &self,
        mode: EncryptionType,
        plaintext: &Plaintext<'_>,
        alphabet: Alphabet,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match self {
            CellKey::Cosmos(k) => {
                value::encrypt_to_stored_bytes_into(k, mode, plaintext, alphabet, scratch, out)
            }
            CellKey::Ae1(k) => {
                value::ae1_encrypt_to_stored_bytes_into(k, plaintext, alphabet, scratch, out)
                    .map_err(leaf_error)
            }
        }
    }

    /// Appends the stored form (base64 text) of `plaintext` to `out`.
    pub(crate) fn encrypt_to_string(
        &self,
        mode: EncryptionType,
        plaintext: &Plaintext<'_>,
        alphabet: Alphabet,
        scratch: &mut Vec<u8>,
        out: &mut String,
    ) -> Result<()> {
        match self {
            CellKey::Cosmos(k) => {
                value::encrypt_to_stored_into(k, mode, plaintext, alphabet, scratch, out)
            }
            CellKey::Ae1(k) => {
                value::ae1_encrypt_to_stored_into(k, plaintext, alphabet, scratch, out)
                    .map_err(leaf_error)
            }
        }
    }

    /// Decodes and decrypts a stored value into `plain`; returns its type marker.
    pub(crate) fn decrypt(
        &self,
        stored: &str,
        alphabet: Alphabet,
        raw: &mut Vec<u8>,
        plain: &mut Zeroizing<Vec<u8>>,
    ) -> Result<TypeMarker> {
        match self {
            CellKey::Cosmos(k) => value::decrypt_stored_into(k, stored, alphabet, raw, plain),
            CellKey::Ae1(k) => {
                value::ae1_decrypt_stored_into(k, stored, alphabet, raw, plain).map_err(leaf_error)
            }
        }
    }
}

/// The `AE1` cipher names its policy path in errors; the walkers name the leaf's JSON
/// Pointer instead (filled in by [`Error::at_path`], which keeps a non-empty path).
fn leaf_error(mut e: Error) -> Error {
    match &mut e {
        Error::DecryptionFailed { path, .. }
        | Error::MalformedCiphertext { path, .. }
        | Error::UnsupportedValue { path, .. } => path.clear(),
        _ => {}
    }
    e
}

/// The key of a selected path, or why it is unavailable to this caller.
#[derive(Clone)]
pub(crate) enum KeySlot {
    Ready(CellKey),
    Unavailable { key_id: String, error: Arc<Error> },
}

impl KeySlot {
    pub(crate) fn key_id(&self) -> &str {
        match self {
            KeySlot::Ready(k) => k.key_id(),
            KeySlot::Unavailable { key_id, .. } => key_id,
        }
    }
}

/// One included path, ready for the hot path.
#[derive(Clone)]
pub(crate) struct Selected {
    /// The path as written in the policy.
    pub(crate) path: Box<str>,
    pub(crate) key: KeySlot,
    pub(crate) mode: EncryptionType,
    /// URL-safe for `/id`, standard otherwise.
    pub(crate) alphabet: Alphabet,
    /// `/id`: the value must be a string.
    pub(crate) is_id: bool,
}

/// A node of the selection tree. The root is the document; a node is either selected (and
/// then a leaf of the tree: policies never nest paths) or an ancestor of selected nodes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Node {
    /// Named children, sorted by (`prefix_key`, name) for binary search.
    children: Vec<Child>,
    /// The `[]` child: every element of an array.
    elements: Option<usize>,
    /// The index of the selected path ending here.
    selected: Option<usize>,
}

/// A named child: its name, a cheap integer key for the lookup and the node id.
#[derive(Debug, Clone)]
struct Child {
    key: u64,
    name: Box<str>,
    id: usize,
}

/// The first seven bytes of `name` and its length (capped at 255), as one integer: most
/// lookups are decided by comparing these.
#[inline]
fn prefix_key(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut w = [0u8; 8];
    let n = b.len().min(7);
    w[..n].copy_from_slice(&b[..n]);
    w[7] = u8::try_from(b.len()).unwrap_or(u8::MAX);
    u64::from_be_bytes(w)
}

/// The selection tree of a policy and its prepared paths.
#[derive(Clone)]
pub(crate) struct Engine {
    nodes: Vec<Node>,
    selected: Vec<Selected>,
    pub(crate) limits: Limits,
}

pub(crate) const ROOT: usize = 0;

impl Engine {
    /// Builds the tree. `key_for` gives the key slot of an included path (its key id,
    /// algorithm and, for `AE1`, path and mode).
    pub(crate) fn new(
        policy: &ClientEncryptionPolicy,
        mut key_for: impl FnMut(&EncryptionPath) -> KeySlot,
    ) -> Self {
        let mut nodes = vec![Node::default()];
        let mut selected = Vec::with_capacity(policy.included_paths().len());
        for p in policy.included_paths() {
            let mut cur = ROOT;
            for seg in p.segments() {
                cur = match seg {
                    Segment::Property(name) => {
                        match nodes[cur].children.iter().find(|c| c.name == *name) {
                            Some(c) => c.id,
                            None => {
                                let id = nodes.len();
                                nodes.push(Node::default());
                                nodes[cur].children.push(Child {
                                    key: prefix_key(name),
                                    name: name.clone(),
                                    id,
                                });
                                id
                            }
                        }
                    }
                    Segment::Elements => match nodes[cur].elements {
                        Some(id) => id,
                        None => {
                            let id = nodes.len();
                            nodes.push(Node::default());
                            nodes[cur].elements = Some(id);
                            id
                        }
                    },
                };
            }
            nodes[cur].selected = Some(selected.len());
            selected.push(Selected {
                path: p.path().into(),
                key: key_for(p),
                mode: p.encryption_type(),
                alphabet: if p.is_id() {
                    Alphabet::UrlSafe
                } else {
                    Alphabet::Standard
                },
                is_id: p.is_id(),
            });
        }
        for n in &mut nodes {
            n.children
                .sort_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)));
        }
        Engine {
            nodes,
            selected,
            limits: Limits::DEFAULT,
        }
    }

    pub(crate) fn node(&self, id: usize) -> &Node {
        &self.nodes[id]
    }

    pub(crate) fn sel(&self, id: usize) -> &Selected {
        &self.selected[id]
    }

    pub(crate) fn selected_paths(&self) -> &[Selected] {
        &self.selected
    }

    /// The named child of `node`.
    #[inline]
    pub(crate) fn child(&self, node: &Node, name: &str) -> Option<usize> {
        let key = prefix_key(name);
        let c = &node.children;
        let mut i = c.partition_point(|x| x.key < key);
        while let Some(x) = c.get(i) {
            if x.key != key {
                break;
            }
            if *x.name == *name {
                return Some(x.id);
            }
            i += 1;
        }
        None
    }
}

impl Node {
    pub(crate) fn selected(&self) -> Option<usize> {
        self.selected
    }

    pub(crate) fn elements(&self) -> Option<usize> {
        self.elements
    }

    pub(crate) fn has_children(&self) -> bool {
        !self.children.is_empty()
    }
}

/// Scratch buffers reused for every leaf of a walk.
pub(crate) struct Buffers {
    /// Binary ciphertext (encrypt) or decoded stored bytes (decrypt).
    pub(crate) scratch: Vec<u8>,
    /// Decrypted plaintext.
    pub(crate) plain: Zeroizing<Vec<u8>>,
    /// An unescaped JSON string.
    pub(crate) text: Zeroizing<String>,
}

impl Buffers {
    /// Sized for typical leaves, so most documents need no further growth.
    pub(crate) fn new() -> Self {
        Buffers {
            scratch: Vec::with_capacity(512),
            plain: Zeroizing::new(Vec::with_capacity(256)),
            text: Zeroizing::new(String::new()),
        }
    }
}

/// A property lenient decryption left as it was, because its key is unavailable to the
/// caller.
///
/// # Examples
///
/// ```
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
/// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
/// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
/// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
/// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
/// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
/// # })?;
/// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
/// // A reader whose key lookup finds cek1 only: cek-hr is recorded as unavailable.
/// let options = PrepareOptions::new().allow_unavailable_keys(true);
/// let reader = PreparedPolicy::new(&policy, options, |id| match id {
///     "cek1" => Ok(pii.clone()),
///     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
/// })?;
/// let (doc, report) = reader.decrypt_str_lenient(&stored)?;
/// assert!(doc.contains("123-45-6789"));
/// let skipped = &report.skipped()[0];
/// assert_eq!((skipped.path(), skipped.key_id()), ("/salary", "cek-hr"));
/// assert!(skipped.to_string().starts_with("/salary left encrypted (key 'cek-hr')"));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SkippedProperty {
    path: String,
    key_id: String,
    reason: Arc<Error>,
}

impl SkippedProperty {
    pub(crate) fn new(path: String, key_id: &str, reason: &Arc<Error>) -> Self {
        SkippedProperty {
            path,
            key_id: key_id.to_owned(),
            reason: Arc::clone(reason),
        }
    }

    /// Where the property is, as a JSON Pointer (`/ssn`, `/cards/0/number`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// # let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// // `reader` lacks the key cek-hr of /salary; `stored` encrypts /ssn and /salary.
    /// assert_eq!(report.skipped()[0].path(), "/salary");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The client encryption key it needs.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// # let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// // `reader` lacks the key cek-hr of /salary; `stored` encrypts /ssn and /salary.
    /// assert_eq!(report.skipped()[0].key_id(), "cek-hr");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Why the key is unavailable: the key lookup's error when the policy was prepared
    /// (check [`Error::is_key_unavailable`], or match `KeyNotFound` / `KeyProvider`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// # let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// // `reader` lacks the key cek-hr of /salary; `stored` encrypts /ssn and /salary.
    /// let reason = report.skipped()[0].reason();
    /// assert!(reason.is_key_unavailable());
    /// assert!(matches!(reason, Error::KeyNotFound { key_id } if key_id == "cek-hr"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn reason(&self) -> &Error {
        &self.reason
    }
}

impl fmt::Display for SkippedProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} left encrypted (key '{}'): {}",
            crate::error::Escaped(&self.path),
            self.key_id,
            self.reason
        )
    }
}

/// What lenient decryption left encrypted.
///
/// # Examples
///
/// ```
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
/// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
/// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
/// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
/// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
/// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
/// # })?;
/// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
/// // A reader whose key lookup finds cek1 only: cek-hr is recorded as unavailable.
/// let options = PrepareOptions::new().allow_unavailable_keys(true);
/// let reader = PreparedPolicy::new(&policy, options, |id| match id {
///     "cek1" => Ok(pii.clone()),
///     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
/// })?;
/// let (doc, report) = reader.decrypt_str_lenient(&stored)?;
/// assert!(!report.is_complete());
/// assert_eq!(report.skipped().len(), 1);
/// // The full writer's report is complete.
/// assert!(writer.decrypt_str_lenient(&stored)?.1.is_complete());
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DecryptReport {
    pub(crate) skipped: Vec<SkippedProperty>,
}

impl DecryptReport {
    /// Every property left as it was, in document order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// # let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// // `reader` lacks the key cek-hr of /salary; `stored` encrypts /ssn and /salary.
    /// let paths: Vec<&str> = report.skipped().iter().map(|s| s.path()).collect();
    /// assert_eq!(paths, ["/salary"]);
    /// assert!(doc.contains(r#""ssn": "123-45-6789""#)); // decrypted
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn skipped(&self) -> &[SkippedProperty] {
        &self.skipped
    }

    /// True when every selected property was decrypted.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, Error, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/salary", "clientEncryptionKeyId": "cek-hr", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    /// # let pii = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// # let hr = ResolvedKey::new("cek-hr", DataEncryptionKey::generate()?);
    /// # let writer = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(if id == "cek1" { pii.clone() } else { hr.clone() })
    /// # })?;
    /// # let stored = writer.encrypt_str(r#"{"ssn": "123-45-6789", "salary": 98000}"#)?;
    /// # let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// # let reader = PreparedPolicy::new(&policy, options, |id| match id {
    /// #     "cek1" => Ok(pii.clone()),
    /// #     _ => Err(Error::KeyNotFound { key_id: id.to_owned() }),
    /// # })?;
    /// # let (doc, report) = reader.decrypt_str_lenient(&stored)?;
    /// // `reader` lacks the key cek-hr of /salary; `stored` encrypts /ssn and /salary.
    /// assert!(!report.is_complete());
    /// assert!(writer.decrypt_str_lenient(&stored)?.1.is_complete());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

/// Why [`unescape`] refuses a string that holds a lone UTF-16 surrogate escape (valid JSON
/// grammar, RFC 8259 §7, but not Unicode text).
pub(crate) const LONE_SURROGATE: &str = "a string holds a lone UTF-16 surrogate";

/// Unescapes the JSON string literal `raw` (quotes included). Borrows `raw` when it holds
/// no escape; otherwise writes into `buf`. The reason on error.
pub(crate) fn unescape<'s>(raw: &'s str, buf: &'s mut String) -> Result<&'s str, &'static str> {
    unescape_with(raw, buf, false)
}

/// A property name as the selection tree compares it: the unescaped JSON string literal
/// `raw` (quotes included), or `None` when it holds a lone UTF-16 surrogate. Such a name
/// is not Unicode, so no policy path (UTF-8 text) names it: it is never selected.
pub(crate) fn property_name<'s>(
    raw: &'s str,
    buf: &'s mut String,
) -> Result<Option<&'s str>, &'static str> {
    match unescape(raw, buf) {
        Ok(name) => Ok(Some(name)),
        Err(LONE_SURROGATE) => Ok(None),
        Err(r) => Err(r),
    }
}

/// A property name as a JSON Pointer token (for paths in errors and reports): the
/// unescaped JSON string literal `raw`, except that a lone UTF-16 surrogate, which UTF-8
/// cannot hold, stays the JSON escape `\udb5e` (lowercase hex).
pub(crate) fn pointer_name<'s>(raw: &'s str, buf: &'s mut String) -> Result<&'s str, &'static str> {
    unescape_with(raw, buf, true)
}

/// [`unescape`]; with `keep_lone`, a lone surrogate is written as its `\uXXXX` escape
/// instead of being refused.
fn unescape_with<'s>(
    raw: &'s str,
    buf: &'s mut String,
    keep_lone: bool,
) -> Result<&'s str, &'static str> {
    const BAD: &str = "invalid JSON string";
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(BAD)?;
    if !inner.contains('\\') {
        return Ok(inner);
    }
    buf.clear();
    // Unescaping never lengthens the text, so this is the only growth of `buf`, and it
    // wipes the previous (plaintext) contents it frees.
    buf.reserve_wiping(inner.len());
    let mut rest = inner;
    while let Some(p) = rest.find('\\') {
        buf.push_str(&rest[..p]);
        let esc = &rest[p + 1..];
        let (c, used) = match esc.as_bytes().first() {
            Some(b'"') => ('"', 1),
            Some(b'\\') => ('\\', 1),
            Some(b'/') => ('/', 1),
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => {
                let hi = hex4(esc.get(1..5)).ok_or(BAD)?;
                let pair = match hi {
                    0xD800..=0xDBFF => esc
                        .get(5..7)
                        .filter(|s| *s == "\\u")
                        .and_then(|_| hex4(esc.get(7..11)))
                        .filter(|lo| (0xDC00..=0xDFFF).contains(lo))
                        .map(|lo| 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)),
                    _ => None,
                };
                match (hi, pair) {
                    (_, Some(c)) => (char::from_u32(c).ok_or(BAD)?, 11),
                    (0xD800..=0xDFFF, None) if keep_lone => {
                        use std::fmt::Write as _;
                        let _ = write!(buf, "\\u{hi:04x}");
                        rest = esc.get(5..).ok_or(BAD)?;
                        continue;
                    }
                    (0xD800..=0xDFFF, None) => return Err(LONE_SURROGATE),
                    _ => (char::from_u32(hi).ok_or(BAD)?, 5),
                }
            }
            _ => return Err(BAD),
        };
        buf.push(c);
        rest = esc.get(used..).ok_or(BAD)?;
    }
    buf.push_str(rest);
    Ok(buf.as_str())
}

/// The value of exactly four hex digits (those of a `\uXXXX` escape), if `s` is that.
pub(crate) fn hex4(s: Option<&str>) -> Option<u32> {
    let s = s?;
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(raw: &str) -> Result<String, &'static str> {
        let mut buf = String::new();
        unescape(raw, &mut buf).map(str::to_owned)
    }

    #[test]
    fn unescape_matches_serde_json() {
        for raw in [
            r#""plain""#,
            r#""""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u0041""#,
            r#""\ud83d\ude00 smile""#,
            r#""caf\u00E9 ☕""#,
            r#""\u0000""#,
        ] {
            let want: String = serde_json::from_str(raw).unwrap();
            assert_eq!(un(raw).unwrap(), want, "{raw}");
        }
        for bad in [
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\x""#,
            r#""\u12""#,
            r#""\u12g4""#,
            r#""abc"#,
            "abc",
            r#""\"#,
        ] {
            assert!(un(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lone_surrogate_names_match_nothing_and_keep_their_escape_in_pointers() {
        let name = |raw: &str| {
            let mut buf = String::new();
            property_name(raw, &mut buf).map(|n| n.map(str::to_owned))
        };
        let pointer = |raw: &str| {
            let mut buf = String::new();
            pointer_name(raw, &mut buf).map(str::to_owned)
        };
        assert_eq!(name(r#""\u0061b""#), Ok(Some("ab".to_owned())));
        assert_eq!(pointer(r#""\u0061b""#).as_deref(), Ok("ab"));
        for (raw, token) in [
            (r#""k\udb5e""#, r"k\udb5e"),
            (r#""\uDB5E\n""#, "\\udb5e\n"),
            (r#""\ud800\u0061""#, r"\ud800a"),
            (r#""\ude00\ud83d""#, r"\ude00\ud83d"),
            (r#""\ud83d\ude00\ud800""#, "\u{1f600}\\ud800"),
        ] {
            assert_eq!(name(raw), Ok(None), "{raw}");
            assert_eq!(un(raw), Err(LONE_SURROGATE), "{raw}");
            assert_eq!(pointer(raw).as_deref(), Ok(token), "{raw}");
        }
        // Broken escapes (the scanner refuses them before names are read).
        for bad in [r#""\ud80""#, r#""\ud800\x""#, r#""\ud800\u12""#] {
            assert!(pointer(bad).is_err(), "{bad}");
            assert!(!matches!(name(bad), Ok(Some(_))), "{bad}");
        }
    }
}
