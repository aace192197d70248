//! The Cosmos DB `ClientEncryptionPolicy`: which paths are encrypted, with which key and
//! which encryption type. Parsed once into typed, validated paths.
//!
//! ```json
//! {
//!   "includedPaths": [
//!     {"path": "/ssn", "clientEncryptionKeyId": "cek1",
//!      "encryptionType": "Deterministic",
//!      "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
//!   ],
//!   "policyFormatVersion": 2
//! }
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::cipher::modern::MAX_BOUND_FIELD_BYTES;
use crate::cipher::{Algorithm, EncryptionType};
use crate::error::{Error, Result};
use crate::path::{self, Segment};

/// Which paths a policy may hold.
///
/// # Examples
///
/// ```
/// use always_encrypted::{ClientEncryptionPolicy, PolicyMode};
///
/// let json = r#"{"includedPaths": [{"path": "/patient/ssn", "clientEncryptionKeyId": "cek1",
///   "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#;
/// assert!(ClientEncryptionPolicy::from_json(json).is_err()); // CosmosCompatible
/// let policy = ClientEncryptionPolicy::from_json_with(json, PolicyMode::Extended)?;
/// assert_eq!(policy.mode(), PolicyMode::Extended);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PolicyMode {
    /// What Cosmos DB and its official SDKs accept: top-level paths only (`/ssn`). The
    /// default.
    #[default]
    CosmosCompatible,
    /// Our extension: nested paths (`/patient/address/zip`) and array elements
    /// (`/cards/[]/number`). Documents written this way are not readable by the official
    /// SDKs; never use it for a Cosmos container they also read.
    Extended,
}

/// The `policyFormatVersion` of a policy.
///
/// # Examples
///
/// ```
/// use always_encrypted::{ClientEncryptionPolicy, PolicyFormatVersion};
///
/// let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": []}"#)?;
/// assert_eq!(policy.format_version(), PolicyFormatVersion::V1);
/// assert_eq!(PolicyFormatVersion::try_from(2u8), Ok(PolicyFormatVersion::V2));
/// assert_eq!(PolicyFormatVersion::try_from(3u8), Err(3));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PolicyFormatVersion {
    /// Version 1 (also what a missing `policyFormatVersion` means): `/id` and
    /// partition-key paths cannot be encrypted.
    #[default]
    V1,
    /// Version 2: `/id` and partition-key paths may be encrypted, Deterministic only.
    V2,
}

impl PolicyFormatVersion {
    /// The number written in the policy JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PolicyFormatVersion;
    ///
    /// assert_eq!(PolicyFormatVersion::V2.as_u8(), 2);
    /// assert_eq!(PolicyFormatVersion::default().as_u8(), 1);
    /// ```
    pub fn as_u8(self) -> u8 {
        match self {
            PolicyFormatVersion::V1 => 1,
            PolicyFormatVersion::V2 => 2,
        }
    }
}

impl TryFrom<u8> for PolicyFormatVersion {
    type Error = u8;

    fn try_from(v: u8) -> std::result::Result<Self, u8> {
        match v {
            1 => Ok(PolicyFormatVersion::V1),
            2 => Ok(PolicyFormatVersion::V2),
            other => Err(other),
        }
    }
}

/// One included path of a policy: the path, its client encryption key, its encryption type
/// and algorithm.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::EncryptionType;
/// use always_encrypted::{ClientEncryptionPolicy, EncryptionPath, PolicyFormatVersion, PolicyMode};
///
/// let ssn = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic)?;
/// let notes = EncryptionPath::new("/notes", "cek1", EncryptionType::Randomized)?;
/// let policy = ClientEncryptionPolicy::new(
///     vec![ssn, notes],
///     PolicyFormatVersion::V2,
///     PolicyMode::CosmosCompatible,
/// )?;
/// assert_eq!(policy.get("/notes").map(|p| p.key_id()), Some("cek1"));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionPath {
    path: String,
    segments: Vec<Segment>,
    key_id: String,
    encryption_type: EncryptionType,
    algorithm: Algorithm,
}

impl EncryptionPath {
    /// An included path using `AEAD_AES_256_CBC_HMAC_SHA256`. The path's syntax is checked
    /// here; the rules that depend on the whole policy (duplicates, nesting, mode, `/id`)
    /// are checked by [`ClientEncryptionPolicy::new`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] for a malformed path, an empty key id, or a path or key id
    /// longer than 65,535 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::EncryptionType;
    /// use always_encrypted::{EncryptionPath, Error};
    ///
    /// let zip = EncryptionPath::new("/address/zip", "cek1", EncryptionType::Randomized)?;
    /// assert_eq!(zip.path(), "/address/zip");
    /// let bad = EncryptionPath::new("ssn", "cek1", EncryptionType::Randomized);
    /// assert!(matches!(bad, Err(Error::InvalidPolicy { .. })));
    /// assert!(EncryptionPath::new("/ssn", "", EncryptionType::Randomized).is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(
        path: impl Into<String>,
        key_id: impl Into<String>,
        encryption_type: EncryptionType,
    ) -> Result<Self> {
        let path = path.into();
        let key_id = key_id.into();
        let segments = path::parse_policy_path(&path).map_err(|r| invalid(&path, r))?;
        if key_id.is_empty() {
            return Err(invalid(&path, "clientEncryptionKeyId must not be empty"));
        }
        // AE1 binds values to both with 16-bit lengths (`cipher::modern`). Refused for every
        // algorithm: no Cosmos key id or path comes near it.
        if path.len() > MAX_BOUND_FIELD_BYTES {
            return Err(invalid(&path, "a path must be at most 65535 bytes long"));
        }
        if key_id.len() > MAX_BOUND_FIELD_BYTES {
            return Err(invalid(
                &path,
                "clientEncryptionKeyId must be at most 65535 bytes long",
            ));
        }
        Ok(EncryptionPath {
            path,
            segments,
            key_id,
            encryption_type,
            algorithm: Algorithm::AeadAes256CbcHmacSha256,
        })
    }

    /// The same path with another cell algorithm (the default is
    /// `AEAD_AES_256_CBC_HMAC_SHA256`). [`Algorithm::Ae1Aes256GcmHkdfSha256`] is accepted by
    /// [`ClientEncryptionPolicy::new`] only in [`PolicyMode::Extended`].
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{Algorithm, EncryptionType};
    /// use always_encrypted::{ClientEncryptionPolicy, EncryptionPath, PolicyFormatVersion, PolicyMode};
    ///
    /// let ssn = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic)?
    ///     .with_algorithm(Algorithm::Ae1Aes256GcmHkdfSha256);
    /// let paths = vec![ssn];
    /// assert!(ClientEncryptionPolicy::new(paths.clone(), PolicyFormatVersion::V2,
    ///     PolicyMode::CosmosCompatible).is_err());
    /// let policy = ClientEncryptionPolicy::new(paths, PolicyFormatVersion::V2, PolicyMode::Extended)?;
    /// assert_eq!(policy.included_paths()[0].algorithm(), Algorithm::Ae1Aes256GcmHkdfSha256);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The path as written in the policy, e.g. `/ssn`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// let p = EncryptionPath::new("/cards/[]/number", "cek1", EncryptionType::Randomized)?;
    /// assert_eq!(p.path(), "/cards/[]/number");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The client encryption key id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// let p = EncryptionPath::new("/ssn", "cek1", EncryptionType::Randomized)?;
    /// assert_eq!(p.key_id(), "cek1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Deterministic or Randomized.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// let p = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic)?;
    /// assert_eq!(p.encryption_type(), EncryptionType::Deterministic);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encryption_type(&self) -> EncryptionType {
        self.encryption_type
    }

    /// The encryption algorithm.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::{Algorithm, EncryptionType};
    ///
    /// let p = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic)?;
    /// assert_eq!(p.algorithm(), Algorithm::AeadAes256CbcHmacSha256);
    /// let p = p.with_algorithm(Algorithm::Ae1Aes256GcmHkdfSha256);
    /// assert_eq!(p.algorithm(), Algorithm::Ae1Aes256GcmHkdfSha256);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// True for a top-level path such as `/ssn`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// let mode = EncryptionType::Randomized;
    /// assert!(EncryptionPath::new("/ssn", "cek1", mode)?.is_top_level());
    /// assert!(!EncryptionPath::new("/address/zip", "cek1", mode)?.is_top_level());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn is_top_level(&self) -> bool {
        self.segments.len() == 1
    }

    /// True for `/id`, the document id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::EncryptionPath;
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// let mode = EncryptionType::Deterministic;
    /// assert!(EncryptionPath::new("/id", "cek1", mode)?.is_id());
    /// assert!(!EncryptionPath::new("/ids", "cek1", mode)?.is_id());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn is_id(&self) -> bool {
        matches!(self.segments.as_slice(), [Segment::Property(p)] if &**p == "id")
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("path".into(), self.path.clone().into());
        m.insert("clientEncryptionKeyId".into(), self.key_id.clone().into());
        m.insert(
            "encryptionType".into(),
            self.encryption_type.as_str().into(),
        );
        m.insert("encryptionAlgorithm".into(), self.algorithm.as_str().into());
        Value::Object(m)
    }
}

/// A validated Cosmos DB `ClientEncryptionPolicy`.
///
/// Parse it with [`from_json`](Self::from_json) (Cosmos-compatible rules) or
/// [`from_json_with`](Self::from_json_with) (choosing [`PolicyMode::Extended`]), then
/// prepare it with its keys ([`PreparedPolicy::new`](crate::PreparedPolicy::new)).
///
/// Rules checked (each error names the offending path and the rule):
/// `policyFormatVersion` is 1 or 2 (missing means 1); paths are non-empty, start with `/`,
/// are not `/`, have no empty segments, are unique and none is under another;
/// `encryptionType` is exactly `Deterministic` or `Randomized`; the algorithm is
/// `AEAD_AES_256_CBC_HMAC_SHA256` or `AE1_AES_256_GCM_HKDF_SHA256`; `/id` is Deterministic
/// and needs version 2 and nothing can be under it; in Cosmos-compatible mode every path
/// is top-level and uses `AEAD_AES_256_CBC_HMAC_SHA256`.
///
/// # Algorithms
///
/// Each path names its cell algorithm in `encryptionAlgorithm`:
/// `AEAD_AES_256_CBC_HMAC_SHA256` (the Cosmos DB algorithm, readable by the Microsoft
/// SDKs; the only one allowed in [`PolicyMode::CosmosCompatible`], the default) or
/// `AE1_AES_256_GCM_HKDF_SHA256` (this crate's modern suite, see
/// [`cipher::modern`](crate::cipher::modern); needs [`PolicyMode::Extended`], because the
/// Microsoft SDKs cannot read it). Both may be mixed in one policy. The client encryption
/// key's own `encryptionAlgorithm` is not checked against the path's: a data-encryption key
/// is 32 random bytes, and each algorithm derives its own subkeys from it (domain
/// separated), so one key, created as `AEAD_AES_256_CBC_HMAC_SHA256` as Cosmos DB expects,
/// can serve paths of both algorithms. Partition-key paths
/// (Deterministic, version 2) are checked when the policy is prepared, or with
/// [`validate_partition_key_paths`](Self::validate_partition_key_paths).
///
/// # Examples
///
/// ```
/// use always_encrypted::{ClientEncryptionPolicy, cipher::EncryptionType};
///
/// let policy = ClientEncryptionPolicy::from_json(r#"{
///   "includedPaths": [{"path": "/ssn", "clientEncryptionKeyId": "cek1",
///     "encryptionType": "Deterministic",
///     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
///   "policyFormatVersion": 2}"#)?;
/// let p = &policy.included_paths()[0];
/// assert_eq!((p.path(), p.key_id()), ("/ssn", "cek1"));
/// assert_eq!(p.encryption_type(), EncryptionType::Deterministic);
///
/// let err = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [{"path": "/id",
///   "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
///   "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)
///   .unwrap_err();
/// assert!(err.to_string().contains("/id"));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEncryptionPolicy {
    paths: Vec<EncryptionPath>,
    version: PolicyFormatVersion,
    mode: PolicyMode,
}

impl ClientEncryptionPolicy {
    /// Builds a policy from included paths, checking every rule of `mode`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] naming the first offending path and the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::EncryptionType;
    /// use always_encrypted::{ClientEncryptionPolicy, EncryptionPath};
    /// use always_encrypted::{PolicyFormatVersion, PolicyMode};
    ///
    /// let id = EncryptionPath::new("/id", "cek1", EncryptionType::Deterministic)?;
    /// let policy = ClientEncryptionPolicy::new(
    ///     vec![id.clone()],
    ///     PolicyFormatVersion::V2,
    ///     PolicyMode::CosmosCompatible,
    /// )?;
    /// assert_eq!(policy.key_ids(), ["cek1"]);
    /// // Encrypting /id needs policy format version 2.
    /// let (v1, mode) = (PolicyFormatVersion::V1, PolicyMode::Extended);
    /// let err = ClientEncryptionPolicy::new(vec![id], v1, mode).unwrap_err();
    /// assert!(err.to_string().contains("policyFormatVersion 2"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(
        paths: Vec<EncryptionPath>,
        version: PolicyFormatVersion,
        mode: PolicyMode,
    ) -> Result<Self> {
        for (i, p) in paths.iter().enumerate() {
            if mode == PolicyMode::CosmosCompatible && !p.is_top_level() {
                return Err(invalid(
                    &p.path,
                    "only top-level paths are allowed in Cosmos-compatible mode \
                     (nested paths and arrays need PolicyMode::Extended)",
                ));
            }
            if mode == PolicyMode::CosmosCompatible && !p.algorithm.is_cosmos_compatible() {
                return Err(invalid(
                    &p.path,
                    &format!(
                        "{} cannot be read by the Microsoft SDKs, so Cosmos-compatible mode \
                         refuses it (use {} or PolicyMode::Extended)",
                        p.algorithm,
                        Algorithm::AeadAes256CbcHmacSha256
                    ),
                ));
            }
            if matches!(p.segments.first(), Some(Segment::Property(n)) if &**n == "id") {
                if !p.is_id() {
                    return Err(invalid(
                        &p.path,
                        "the id is a string: no path can be under /id",
                    ));
                }
                check_lookup_path(p, version, "/id")?;
            }
            for q in &paths[..i] {
                if q.segments == p.segments {
                    return Err(invalid(&p.path, "duplicate path"));
                }
                if path::is_prefix(&q.segments, &p.segments) {
                    return Err(invalid(
                        &p.path,
                        &format!("it is under {}, which is already encrypted", q.path),
                    ));
                }
                if path::is_prefix(&p.segments, &q.segments) {
                    return Err(invalid(
                        &p.path,
                        &format!("{} is under it and already encrypted", q.path),
                    ));
                }
            }
        }
        Ok(ClientEncryptionPolicy {
            paths,
            version,
            mode,
        })
    }

    /// Parses and validates a policy in Cosmos-compatible mode.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] for invalid JSON, a missing or mistyped field, or a broken
    /// rule (see the type's documentation).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, Error};
    ///
    /// let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    ///   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
    ///    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// assert_eq!(policy.included_paths().len(), 1);
    /// let typo = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    ///   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Random",
    ///    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#);
    /// assert!(matches!(typo, Err(Error::InvalidPolicy { path, .. }) if path == "/ssn"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_json_with(json, PolicyMode::CosmosCompatible)
    }

    /// Parses and validates a policy under the rules of `mode`.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, PolicyMode};
    ///
    /// let policy = ClientEncryptionPolicy::from_json_with(r#"{"includedPaths": [
    ///   {"path": "/cards/[]/number", "clientEncryptionKeyId": "cek1",
    ///    "encryptionType": "Randomized",
    ///    "encryptionAlgorithm": "AE1_AES_256_GCM_HKDF_SHA256"}]}"#,
    ///   PolicyMode::Extended)?;
    /// assert!(!policy.included_paths()[0].is_top_level());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_json_with(json: &str, mode: PolicyMode) -> Result<Self> {
        let v: Value = serde_json::from_str(json).map_err(|e| Error::InvalidPolicy {
            path: String::new(),
            reason: format!("not valid JSON: {e}"),
        })?;
        Self::from_value_with(&v, mode)
    }

    /// Validates a parsed policy in Cosmos-compatible mode.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::ClientEncryptionPolicy;
    /// use serde_json::json;
    ///
    /// let v = json!({"policyFormatVersion": 2, "includedPaths": [
    ///     {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    ///      "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]});
    /// let policy = ClientEncryptionPolicy::from_value(&v)?;
    /// assert_eq!(policy.to_value(), v);
    /// assert!(ClientEncryptionPolicy::from_value(&json!([])).is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_value(v: &Value) -> Result<Self> {
        Self::from_value_with(v, PolicyMode::CosmosCompatible)
    }

    /// Validates a parsed policy under the rules of `mode`.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, Error, PolicyMode};
    /// use serde_json::json;
    ///
    /// let v = json!({"includedPaths": [{"path": "/patient/ssn", "clientEncryptionKeyId": "cek1",
    ///     "encryptionType": "Randomized",
    ///     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]});
    /// let policy = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended)?;
    /// assert_eq!(policy.included_paths()[0].path(), "/patient/ssn");
    /// let strict = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::CosmosCompatible);
    /// assert!(matches!(strict, Err(Error::InvalidPolicy { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_value_with(v: &Value, mode: PolicyMode) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("", "a policy must be a JSON object"))?;
        let version = match obj.get("policyFormatVersion") {
            None | Some(Value::Null) => PolicyFormatVersion::V1,
            Some(n) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .and_then(|n| PolicyFormatVersion::try_from(n).ok())
                .ok_or_else(|| invalid("", "policyFormatVersion must be 1 or 2"))?,
        };
        let included = match obj.get("includedPaths") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("", "includedPaths must be an array")),
            None => return Err(invalid("", "includedPaths is missing")),
        };
        let mut paths = Vec::with_capacity(included.len());
        for (i, item) in included.iter().enumerate() {
            paths.push(parse_included_path(i, item)?);
        }
        Self::new(paths, version, mode)
    }

    /// The policy as Cosmos DB JSON (always with `policyFormatVersion`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::ClientEncryptionPolicy;
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` has /ssn (cek1, Deterministic) and /notes (cek2, Randomized).
    /// let v = policy.to_value();
    /// assert_eq!(v["includedPaths"][1]["encryptionType"], "Randomized");
    /// assert_eq!(ClientEncryptionPolicy::from_value(&v)?, policy);
    /// let v1 = ClientEncryptionPolicy::from_json(r#"{"includedPaths": []}"#)?.to_value();
    /// assert_eq!(v1["policyFormatVersion"], 1);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "includedPaths".into(),
            Value::Array(self.paths.iter().map(EncryptionPath::to_json).collect()),
        );
        m.insert(
            "policyFormatVersion".into(),
            Value::from(self.version.as_u8()),
        );
        Value::Object(m)
    }

    /// The included paths, in policy order.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::ClientEncryptionPolicy;
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` has /ssn (cek1, Deterministic) and /notes (cek2, Randomized).
    /// let paths: Vec<&str> = policy.included_paths().iter().map(|p| p.path()).collect();
    /// assert_eq!(paths, ["/ssn", "/notes"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn included_paths(&self) -> &[EncryptionPath] {
        &self.paths
    }

    /// The included path written exactly as `path`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::ClientEncryptionPolicy;
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` has /ssn (cek1, Deterministic) and /notes (cek2, Randomized).
    /// assert_eq!(policy.get("/notes").map(|p| p.key_id()), Some("cek2"));
    /// assert!(policy.get("/name").is_none());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn get(&self, path: &str) -> Option<&EncryptionPath> {
        self.paths.iter().find(|p| p.path == path)
    }

    /// The `policyFormatVersion`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, PolicyFormatVersion};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` was written with "policyFormatVersion": 2.
    /// assert_eq!(policy.format_version(), PolicyFormatVersion::V2);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn format_version(&self) -> PolicyFormatVersion {
        self.version
    }

    /// The rules the policy was validated under.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, PolicyMode};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` was parsed with `from_json`: Cosmos-compatible rules.
    /// assert_eq!(policy.mode(), PolicyMode::CosmosCompatible);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// The distinct client encryption key ids, in order of first use.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::ClientEncryptionPolicy;
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` has /ssn (cek1, Deterministic) and /notes (cek2, Randomized).
    /// assert_eq!(policy.key_ids(), ["cek1", "cek2"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for p in &self.paths {
            if !ids.contains(&p.key_id.as_str()) {
                ids.push(&p.key_id);
            }
        }
        ids
    }

    /// Checks the policy against the container's partition-key paths (e.g. `/pk`; several
    /// for hierarchical partition keys): an encrypted path that is, or holds, a partition
    /// key must be Deterministic and needs policy format version 2.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] naming the offending policy path (or the malformed
    /// partition-key path) and the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::{ClientEncryptionPolicy, Error};
    /// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/notes", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}], "policyFormatVersion": 2}"#)?;
    ///
    /// // `policy` has /ssn (cek1, Deterministic) and /notes (cek2, Randomized).
    /// policy.validate_partition_key_paths(&["/ssn"])?;
    /// policy.validate_partition_key_paths(&["/tenantId", "/userId"])?; // not encrypted
    /// let randomized = policy.validate_partition_key_paths(&["/notes"]);
    /// assert!(matches!(randomized, Err(Error::InvalidPolicy { path, .. }) if path == "/notes"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn validate_partition_key_paths<S: AsRef<str>>(&self, pk_paths: &[S]) -> Result<()> {
        for pk in pk_paths {
            let pk = pk.as_ref();
            let segments = path::parse_policy_path(pk)
                .map_err(|r| invalid(pk, &format!("invalid partition-key path: {r}")))?;
            if segments.contains(&Segment::Elements) {
                return Err(invalid(pk, "a partition-key path cannot contain '[]'"));
            }
            for p in &self.paths {
                if path::is_prefix(&p.segments, &segments) {
                    check_lookup_path(p, self.version, &format!("partition-key path {pk}"))?;
                }
            }
        }
        Ok(())
    }
}

/// `/id` and partition keys: Deterministic, and only in policy format version 2.
fn check_lookup_path(p: &EncryptionPath, version: PolicyFormatVersion, what: &str) -> Result<()> {
    if p.encryption_type != EncryptionType::Deterministic {
        return Err(invalid(
            &p.path,
            &format!(
                "{what} must be Deterministic (point reads and routing compare the encrypted \
                 value), not {}",
                p.encryption_type
            ),
        ));
    }
    if version < PolicyFormatVersion::V2 {
        return Err(invalid(
            &p.path,
            &format!("encrypting {what} needs policyFormatVersion 2"),
        ));
    }
    Ok(())
}

fn parse_included_path(i: usize, item: &Value) -> Result<EncryptionPath> {
    let at = format!("includedPaths[{i}]");
    let obj = item
        .as_object()
        .ok_or_else(|| invalid(&at, "an included path must be a JSON object"))?;
    let field = |name: &str, at: &str| -> Result<&str> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(invalid(at, &format!("{name} must be a string"))),
            None => Err(invalid(at, &format!("{name} is missing"))),
        }
    };
    let path = field("path", &at)?;
    let key_id = field("clientEncryptionKeyId", path)?;
    let ty = field("encryptionType", path)?;
    let encryption_type = EncryptionType::from_name(ty).ok_or_else(|| {
        invalid(
            path,
            &format!("encryptionType must be exactly 'Deterministic' or 'Randomized', not '{ty}'"),
        )
    })?;
    let alg = field("encryptionAlgorithm", path)?;
    let algorithm = Algorithm::from_name(alg).ok_or_else(|| {
        invalid(
            path,
            &format!(
                "unknown encryptionAlgorithm '{alg}' (supported: {}, {})",
                Algorithm::AeadAes256CbcHmacSha256,
                Algorithm::Ae1Aes256GcmHkdfSha256
            ),
        )
    })?;
    let mut p = EncryptionPath::new(path, key_id, encryption_type)?;
    p.algorithm = algorithm;
    Ok(p)
}

fn invalid(path: &str, reason: &str) -> Error {
    Error::InvalidPolicy {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

impl fmt::Display for ClientEncryptionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_value().to_string())
    }
}

impl Serialize for ClientEncryptionPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// Deserializes and validates in Cosmos-compatible mode (use
/// [`ClientEncryptionPolicy::from_value_with`] for extended mode).
impl<'de> Deserialize<'de> for ClientEncryptionPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        ClientEncryptionPolicy::from_value(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, ty: &str) -> Value {
        json!({"path": path, "clientEncryptionKeyId": "cek1", "encryptionType": ty,
               "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
    }

    fn policy(entries: Vec<Value>, version: Option<u64>) -> Value {
        let mut v = json!({ "includedPaths": entries });
        if let Some(n) = version {
            v["policyFormatVersion"] = json!(n);
        }
        v
    }

    fn err(v: &Value, mode: PolicyMode) -> (String, String) {
        match ClientEncryptionPolicy::from_value_with(v, mode) {
            Err(Error::InvalidPolicy { path, reason }) => (path, reason),
            other => panic!("expected InvalidPolicy, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_round_trips() {
        let v = policy(
            vec![
                entry("/ssn", "Deterministic"),
                entry("/notes", "Randomized"),
            ],
            Some(2),
        );
        let p = ClientEncryptionPolicy::from_value(&v).unwrap();
        assert_eq!(p.format_version(), PolicyFormatVersion::V2);
        assert_eq!(p.included_paths().len(), 2);
        assert_eq!(
            p.get("/notes").unwrap().encryption_type(),
            EncryptionType::Randomized
        );
        assert_eq!(p.to_value(), v);
        let back: ClientEncryptionPolicy = serde_json::from_value(p.to_value()).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.key_ids(), vec!["cek1"]);
    }

    #[test]
    fn missing_version_is_one() {
        let v = policy(vec![entry("/ssn", "Randomized")], None);
        let p = ClientEncryptionPolicy::from_value(&v).unwrap();
        assert_eq!(p.format_version(), PolicyFormatVersion::V1);
        let mut v = v;
        v["policyFormatVersion"] = Value::Null;
        assert_eq!(
            ClientEncryptionPolicy::from_value(&v)
                .unwrap()
                .format_version(),
            PolicyFormatVersion::V1
        );
    }

    #[test]
    fn version_must_be_one_or_two() {
        for bad in [
            json!(0),
            json!(3),
            json!(-1),
            json!("2"),
            json!(2.5),
            json!(256),
        ] {
            let mut v = policy(vec![entry("/a", "Randomized")], None);
            v["policyFormatVersion"] = bad.clone();
            let (path, reason) = err(&v, PolicyMode::CosmosCompatible);
            assert_eq!(path, "");
            assert!(reason.contains("policyFormatVersion"), "{bad}: {reason}");
        }
    }

    #[test]
    fn ae1_needs_extended_mode_and_round_trips() {
        let mut e = entry("/ssn", "Deterministic");
        e["encryptionAlgorithm"] = json!("AE1_AES_256_GCM_HKDF_SHA256");
        let v = policy(vec![e, entry("/notes", "Randomized")], Some(2));
        let (path, reason) = err(&v, PolicyMode::CosmosCompatible);
        assert_eq!(path, "/ssn");
        assert!(
            reason.contains("AE1_AES_256_GCM_HKDF_SHA256")
                && reason.contains("Microsoft SDKs")
                && reason.contains("PolicyMode::Extended"),
            "{reason}"
        );
        let p = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap();
        assert_eq!(
            p.get("/ssn").unwrap().algorithm(),
            Algorithm::Ae1Aes256GcmHkdfSha256
        );
        assert_eq!(
            p.get("/notes").unwrap().algorithm(),
            Algorithm::AeadAes256CbcHmacSha256
        );
        assert_eq!(p.to_value(), v);
    }

    #[test]
    fn unknown_algorithm_names_the_supported_ones() {
        let mut e = entry("/ssn", "Deterministic");
        e["encryptionAlgorithm"] = json!("AES_GCM");
        let (path, reason) = err(&policy(vec![e], Some(2)), PolicyMode::Extended);
        assert_eq!(path, "/ssn");
        assert!(
            reason.contains("AES_GCM") && reason.contains("AE1_AES_256_GCM_HKDF_SHA256"),
            "{reason}"
        );
    }

    #[test]
    fn serde_deserialize_validates() {
        let v = policy(vec![entry("/a/b", "Randomized")], Some(2));
        let e = serde_json::from_value::<ClientEncryptionPolicy>(v).unwrap_err();
        assert!(e.to_string().contains("/a/b"), "{e}");
    }
}
