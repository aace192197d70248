//! The `ClientEncryptionKey` resource, exactly as Cosmos DB stores it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::cipher::Algorithm;
use crate::error::{Error, Result};
use crate::keys::KeyWrapAlgorithm;

/// `keyWrapMetadata.type` of a key wrapped by an Azure Key Vault key (and of a key wrapped
/// by a [`LocalRsaKeyProvider`](crate::keys::LocalRsaKeyProvider) standing in for one).
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{AZURE_KEY_VAULT, KeyWrapAlgorithm, KeyWrapMetadata};
///
/// let url = "https://myvault.vault.azure.net/keys/kek1/1";
/// let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// assert_eq!(kek.provider_type(), AZURE_KEY_VAULT);
/// assert_eq!(AZURE_KEY_VAULT, "AZURE_KEY_VAULT");
/// ```
pub const AZURE_KEY_VAULT: &str = "AZURE_KEY_VAULT";

/// Longest id Cosmos DB accepts for a resource.
const MAX_ID_LEN: usize = 255;

/// A client encryption key (CEK): a data-encryption key wrapped by a key-encryption key,
/// as the JSON resource Cosmos DB stores:
///
/// ```json
/// {
///   "id": "cek1",
///   "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
///   "keyWrapMetadata": {
///     "type": "AZURE_KEY_VAULT",
///     "name": "kek1",
///     "value": "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
///     "algorithm": "RSA-OAEP"
///   },
///   "wrappedDataEncryptionKey": "<standard base64>"
/// }
/// ```
///
/// Any other property (the system properties `_rid`, `_etag`, `_ts`, `_self`, or anything
/// else) is kept, in order, and written back after the known ones. Parsing validates the
/// algorithm names, the base64 and the id, with errors that name the key id.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::ClientEncryptionKeyResource;
///
/// let json = r#"{"id":"cek1","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256",
///   "keyWrapMetadata":{"type":"AZURE_KEY_VAULT","name":"kek1",
///     "value":"https://v.vault.azure.net/keys/kek1/1","algorithm":"RSA-OAEP"},
///   "wrappedDataEncryptionKey":"AAEC","_etag":"\"00\""}"#;
/// let cek = ClientEncryptionKeyResource::from_json(json)?;
/// assert_eq!(cek.id(), "cek1");
/// assert_eq!(cek.wrapped_data_encryption_key(), &[0, 1, 2]);
/// assert_eq!(cek.etag(), Some("\"00\""));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct ClientEncryptionKeyResource {
    id: String,
    encryption_algorithm: Algorithm,
    key_wrap_metadata: KeyWrapMetadata,
    wrapped: Vec<u8>,
    other: Map<String, Value>,
}

/// Which key-encryption key wraps a client encryption key, and how
/// (`keyWrapMetadata` of the resource).
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
///
/// let kek = KeyWrapMetadata::azure_key_vault(
///     "kek1",
///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
///     KeyWrapAlgorithm::RsaOaep,
/// );
/// assert_eq!(kek.provider_type(), "AZURE_KEY_VAULT");
/// assert_eq!(kek.name(), "kek1");
/// assert_eq!(kek.algorithm(), KeyWrapAlgorithm::RsaOaep);
/// ```
#[derive(Clone, PartialEq)]
pub struct KeyWrapMetadata {
    provider_type: String,
    name: String,
    value: String,
    algorithm: KeyWrapAlgorithm,
    other: Map<String, Value>,
}

impl KeyWrapMetadata {
    /// Metadata for the key-encryption key at `kek_url` (`value`), served by providers of
    /// type `provider_type` (`type`, e.g. [`AZURE_KEY_VAULT`]), labelled `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::new("MY_HSM", "kek1", "hsm:kek1", KeyWrapAlgorithm::RsaOaep256);
    /// assert_eq!(kek.provider_type(), "MY_HSM");
    /// assert_eq!(kek.kek_url(), "hsm:kek1");
    /// ```
    pub fn new(
        provider_type: impl Into<String>,
        name: impl Into<String>,
        kek_url: impl Into<String>,
        algorithm: KeyWrapAlgorithm,
    ) -> Self {
        KeyWrapMetadata {
            provider_type: provider_type.into(),
            name: name.into(),
            value: kek_url.into(),
            algorithm,
            other: Map::new(),
        }
    }

    /// Metadata for an Azure Key Vault key (`type` [`AZURE_KEY_VAULT`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1",
    ///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
    ///     KeyWrapAlgorithm::RsaOaep,
    /// );
    /// assert_eq!(kek.provider_type(), "AZURE_KEY_VAULT");
    /// ```
    pub fn azure_key_vault(
        name: impl Into<String>,
        kek_url: impl Into<String>,
        algorithm: KeyWrapAlgorithm,
    ) -> Self {
        Self::new(AZURE_KEY_VAULT, name, kek_url, algorithm)
    }

    /// `type`: which kind of provider holds the key-encryption key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1",
    ///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
    ///     KeyWrapAlgorithm::RsaOaep,
    /// );
    /// assert_eq!(kek.provider_type(), "AZURE_KEY_VAULT");
    /// ```
    pub fn provider_type(&self) -> &str {
        &self.provider_type
    }

    /// `name`: a free label for the key-encryption key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1",
    ///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
    ///     KeyWrapAlgorithm::RsaOaep,
    /// );
    /// assert_eq!(kek.name(), "kek1");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `value`: the key-encryption key's URL (for Key Vault,
    /// `https://<vault>.vault.azure.net/keys/<name>/<version>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1",
    ///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
    ///     KeyWrapAlgorithm::RsaOaep,
    /// );
    /// assert_eq!(kek.kek_url(), "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef");
    /// ```
    pub fn kek_url(&self) -> &str {
        &self.value
    }

    /// `algorithm`: how the data-encryption key is wrapped.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1",
    ///     "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
    ///     KeyWrapAlgorithm::RsaOaep,
    /// );
    /// assert_eq!(kek.algorithm().as_str(), "RSA-OAEP");
    /// ```
    pub fn algorithm(&self) -> KeyWrapAlgorithm {
        self.algorithm
    }

    /// The same metadata with another key URL (e.g. the versioned URL a provider returned).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// let versioned = kek.with_kek_url(format!("{url}/0123456789abcdef"));
    /// assert_eq!(versioned.kek_url(), format!("{url}/0123456789abcdef"));
    /// assert_eq!(versioned.name(), "kek1");
    /// ```
    #[must_use]
    pub fn with_kek_url(mut self, kek_url: impl Into<String>) -> Self {
        self.value = kek_url.into();
        self
    }

    /// True when both name the same key-encryption key the same way (`type`, `name`,
    /// `value`, `algorithm`; other properties are ignored).
    fn same_key(&self, other: &KeyWrapMetadata) -> bool {
        self.provider_type == other.provider_type
            && self.name == other.name
            && self.value == other.value
            && self.algorithm == other.algorithm
    }
}

impl fmt::Debug for KeyWrapMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWrapMetadata")
            .field("type", &self.provider_type)
            .field("name", &self.name)
            .field("value", &self.value)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl ClientEncryptionKeyResource {
    /// A new resource.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyResource`] when the id is not a valid Cosmos DB id (empty, longer
    /// than 255 characters, or containing `/`, `\`, `?` or `#`), the wrapped key is
    /// empty, or the metadata's `type` or `value` (key URL) is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// let kek = KeyWrapMetadata::azure_key_vault(
    ///     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// let alg = Algorithm::AeadAes256CbcHmacSha256;
    /// let cek = ClientEncryptionKeyResource::new("cek1", alg, kek.clone(), vec![1, 2, 3])?;
    /// assert_eq!(cek.id(), "cek1");
    /// let bad = ClientEncryptionKeyResource::new("a/b", alg, kek, vec![1, 2, 3]);
    /// assert!(matches!(bad, Err(Error::InvalidKeyResource { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(
        id: impl Into<String>,
        encryption_algorithm: Algorithm,
        key_wrap_metadata: KeyWrapMetadata,
        wrapped_data_encryption_key: Vec<u8>,
    ) -> Result<Self> {
        let cek = ClientEncryptionKeyResource {
            id: id.into(),
            encryption_algorithm,
            key_wrap_metadata,
            wrapped: wrapped_data_encryption_key,
            other: Map::new(),
        };
        cek.validate()?;
        Ok(cek)
    }

    /// Parses a resource from JSON text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyResource`] naming the key id (when it can be read) and what is
    /// wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    ///
    /// let json = r#"{"id": "cek1", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
    ///     "keyWrapMetadata": {"type": "AZURE_KEY_VAULT", "name": "kek1",
    ///         "value": "https://v.vault.azure.net/keys/kek1/1", "algorithm": "RSA-OAEP"},
    ///     "wrappedDataEncryptionKey": "AAEC"}"#;
    /// assert_eq!(ClientEncryptionKeyResource::from_json(json)?.id(), "cek1");
    ///
    /// let bad = ClientEncryptionKeyResource::from_json(&json.replace("AAEC", "not base64!"));
    /// assert!(matches!(bad, Err(Error::InvalidKeyResource { key_id, .. }) if key_id == "cek1"));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|e| Error::InvalidKeyResource {
            key_id: String::new(),
            reason: format!("not JSON: {e}"),
        })?;
        Self::from_value(value)
    }

    /// Parses a resource from a JSON value.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyResource`] naming the key id (when it can be read) and what is
    /// wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, KeyWrapAlgorithm};
    /// use serde_json::json;
    ///
    /// let cek = ClientEncryptionKeyResource::from_value(json!({
    ///     "id": "cek1",
    ///     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
    ///     "keyWrapMetadata": {"type": "AZURE_KEY_VAULT", "name": "kek1",
    ///         "value": "https://v.vault.azure.net/keys/kek1/1", "algorithm": "RSA-OAEP-256"},
    ///     "wrappedDataEncryptionKey": "AAEC",
    /// }))?;
    /// assert_eq!(cek.key_wrap_metadata().algorithm(), KeyWrapAlgorithm::RsaOaep256);
    /// assert!(ClientEncryptionKeyResource::from_value(json!({"id": "cek1"})).is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut obj) = value else {
            return Err(invalid("", "not a JSON object"));
        };
        let id = match obj.shift_remove("id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(invalid("", "`id` is not a string")),
            None => return Err(invalid("", "`id` is missing")),
        };
        let bad = |reason: String| Error::InvalidKeyResource {
            key_id: id.clone(),
            reason,
        };
        let encryption_algorithm = take_str(&mut obj, "encryptionAlgorithm").map_err(&bad)?;
        let encryption_algorithm =
            Algorithm::from_name(&encryption_algorithm).ok_or_else(|| {
                bad(format!(
                    "unknown `encryptionAlgorithm` '{encryption_algorithm}' (expected {}, as \
                     Cosmos DB writes it, or {})",
                    Algorithm::AeadAes256CbcHmacSha256,
                    Algorithm::Ae1Aes256GcmHkdfSha256
                ))
            })?;
        let metadata = match obj.shift_remove("keyWrapMetadata") {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(bad("`keyWrapMetadata` is not an object".into())),
            None => return Err(bad("`keyWrapMetadata` is missing".into())),
        };
        let key_wrap_metadata = parse_metadata(metadata).map_err(&bad)?;
        let wrapped = take_str(&mut obj, "wrappedDataEncryptionKey").map_err(&bad)?;
        let wrapped = STANDARD.decode(wrapped.as_bytes()).map_err(|e| {
            bad(format!(
                "`wrappedDataEncryptionKey` is not standard padded base64: {e}"
            ))
        })?;
        let cek = ClientEncryptionKeyResource {
            id,
            encryption_algorithm,
            key_wrap_metadata,
            wrapped,
            other: obj,
        };
        cek.validate()?;
        Ok(cek)
    }

    /// The resource as a JSON value, in Cosmos DB's property order, followed by the other
    /// properties in their original order.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// let v = cek.to_value();
    /// assert_eq!(v["id"], "cek1");
    /// assert_eq!(v["keyWrapMetadata"]["algorithm"], "RSA-OAEP");
    /// assert_eq!(v["wrappedDataEncryptionKey"], "AQID"); // standard base64 of [1, 2, 3]
    /// assert_eq!(ClientEncryptionKeyResource::from_value(v)?, cek);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn to_value(&self) -> Value {
        let mut meta = Map::new();
        meta.insert(
            "type".into(),
            self.key_wrap_metadata.provider_type.clone().into(),
        );
        meta.insert("name".into(), self.key_wrap_metadata.name.clone().into());
        meta.insert("value".into(), self.key_wrap_metadata.value.clone().into());
        meta.insert(
            "algorithm".into(),
            self.key_wrap_metadata.algorithm.as_str().into(),
        );
        for (k, v) in &self.key_wrap_metadata.other {
            meta.insert(k.clone(), v.clone());
        }
        let mut obj = Map::new();
        obj.insert("id".into(), self.id.clone().into());
        obj.insert(
            "encryptionAlgorithm".into(),
            self.encryption_algorithm.as_str().into(),
        );
        obj.insert("keyWrapMetadata".into(), Value::Object(meta));
        obj.insert(
            "wrappedDataEncryptionKey".into(),
            STANDARD.encode(&self.wrapped).into(),
        );
        for (k, v) in &self.other {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// The resource as pretty-printed JSON text.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// let text = cek.to_json_pretty();
    /// assert!(text.starts_with("{\n  \"id\": \"cek1\","));
    /// assert_eq!(ClientEncryptionKeyResource::from_json(&text)?, cek);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn to_json_pretty(&self) -> String {
        // Serializing a `Value` to a String cannot fail (string keys only).
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }

    /// `id`: the client encryption key id a policy names.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// assert_eq!(cek.id(), "cek1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `encryptionAlgorithm`: the cell algorithm the key is for.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// assert_eq!(cek.encryption_algorithm(), Algorithm::AeadAes256CbcHmacSha256);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encryption_algorithm(&self) -> Algorithm {
        self.encryption_algorithm
    }

    /// `keyWrapMetadata`: the key-encryption key that wraps the data-encryption key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// assert_eq!(cek.key_wrap_metadata().kek_url(), "https://v.vault.azure.net/keys/kek1/1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_wrap_metadata(&self) -> &KeyWrapMetadata {
        &self.key_wrap_metadata
    }

    /// `wrappedDataEncryptionKey`, decoded: the wrapped data-encryption key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// assert_eq!(cek.wrapped_data_encryption_key(), &[1, 2, 3]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn wrapped_data_encryption_key(&self) -> &[u8] {
        &self.wrapped
    }

    /// Every other property (system properties such as `_rid`, `_etag`, `_ts`, `_self`,
    /// and anything unknown), in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    ///
    /// let cek = ClientEncryptionKeyResource::from_json(r#"{"id": "cek1",
    ///     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
    ///     "keyWrapMetadata": {"type": "AZURE_KEY_VAULT", "name": "kek1",
    ///         "value": "https://v.vault.azure.net/keys/kek1/1", "algorithm": "RSA-OAEP"},
    ///     "wrappedDataEncryptionKey": "AAEC", "_rid": "abc=", "_ts": 1700000000}"#)?;
    /// let names: Vec<&str> = cek.other_properties().keys().map(String::as_str).collect();
    /// assert_eq!(names, ["_rid", "_ts"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn other_properties(&self) -> &Map<String, Value> {
        &self.other
    }

    /// `_etag`, when the resource came from Cosmos DB.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// assert_eq!(cek.etag(), None); // made here, not read from Cosmos DB
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn etag(&self) -> Option<&str> {
        self.other.get("_etag").and_then(Value::as_str)
    }

    /// The same resource (id, algorithm, other properties) wrapped differently: what a
    /// rewrap stores.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// let kek2 = KeyWrapMetadata::azure_key_vault(
    ///     "kek2", "https://v.vault.azure.net/keys/kek2/7", KeyWrapAlgorithm::RsaOaep);
    /// let rewrapped = cek.with_wrapping(kek2, vec![9, 9, 9]);
    /// assert_eq!(rewrapped.id(), "cek1");
    /// assert_eq!(rewrapped.key_wrap_metadata().name(), "kek2");
    /// assert!(!rewrapped.same_key(&cek));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    #[must_use]
    pub fn with_wrapping(&self, key_wrap_metadata: KeyWrapMetadata, wrapped: Vec<u8>) -> Self {
        ClientEncryptionKeyResource {
            id: self.id.clone(),
            encryption_algorithm: self.encryption_algorithm,
            key_wrap_metadata,
            wrapped,
            other: self.other.clone(),
        }
    }

    /// True when both describe the same key: same id, algorithm, key-encryption key
    /// (`type`, `name`, `value`, `algorithm`) and wrapped bytes. Other properties (system
    /// properties such as `_rid`, `_etag`, `_ts`, which differ between accounts) are
    /// ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::ClientEncryptionKeyResource;
    /// use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    ///
    /// # let kek = KeyWrapMetadata::azure_key_vault(
    /// #     "kek1", "https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1, 2, 3])?;
    /// let mut from_other_account = cek.to_value();
    /// from_other_account["_etag"] = "\"0b00\"".into();
    /// let from_other_account = ClientEncryptionKeyResource::from_value(from_other_account)?;
    /// assert!(cek.same_key(&from_other_account));
    /// assert_ne!(cek, from_other_account); // `==` compares every property
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn same_key(&self, other: &ClientEncryptionKeyResource) -> bool {
        self.id == other.id
            && self.encryption_algorithm == other.encryption_algorithm
            && self.key_wrap_metadata.same_key(&other.key_wrap_metadata)
            && self.wrapped == other.wrapped
    }

    fn validate(&self) -> Result<()> {
        validate_id(&self.id)?;
        if self.wrapped.is_empty() {
            return Err(invalid(&self.id, "`wrappedDataEncryptionKey` is empty"));
        }
        let m = &self.key_wrap_metadata;
        if m.provider_type.is_empty() {
            return Err(invalid(&self.id, "`keyWrapMetadata.type` is empty"));
        }
        if m.value.is_empty() {
            return Err(invalid(&self.id, "`keyWrapMetadata.value` is empty"));
        }
        Ok(())
    }
}

/// Checks a client encryption key id against Cosmos DB's rules for resource ids.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(invalid(id, "the id is empty"));
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(invalid(id, "the id is longer than 255 characters"));
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '/' | '\\' | '?' | '#')) {
        return Err(invalid(id, &format!("the id contains '{c}'")));
    }
    Ok(())
}

fn invalid(key_id: &str, reason: &str) -> Error {
    Error::InvalidKeyResource {
        key_id: key_id.to_owned(),
        reason: reason.to_owned(),
    }
}

fn take_str(obj: &mut Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.shift_remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("`{field}` is not a string")),
        None => Err(format!("`{field}` is missing")),
    }
}

fn parse_metadata(mut m: Map<String, Value>) -> Result<KeyWrapMetadata, String> {
    let field = |m: &mut Map<String, Value>, name: &str| {
        take_str(m, name).map_err(|e| format!("keyWrapMetadata: {e}"))
    };
    let provider_type = field(&mut m, "type")?;
    let name = field(&mut m, "name")?;
    let value = field(&mut m, "value")?;
    let algorithm = field(&mut m, "algorithm")?;
    let algorithm = KeyWrapAlgorithm::from_name(&algorithm).ok_or_else(|| {
        format!(
            "unknown `keyWrapMetadata.algorithm` '{algorithm}' (expected {} or {})",
            KeyWrapAlgorithm::RsaOaep,
            KeyWrapAlgorithm::RsaOaep256
        )
    })?;
    Ok(KeyWrapMetadata {
        provider_type,
        name,
        value,
        algorithm,
        other: m,
    })
}

impl fmt::Debug for ClientEncryptionKeyResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEncryptionKeyResource")
            .field("id", &self.id)
            .field("encryption_algorithm", &self.encryption_algorithm)
            .field("key_wrap_metadata", &self.key_wrap_metadata)
            .field("wrapped_len", &self.wrapped.len())
            .finish_non_exhaustive()
    }
}

impl Serialize for ClientEncryptionKeyResource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ClientEncryptionKeyResource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": "cek1",
            "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
            "keyWrapMetadata": {
                "type": "AZURE_KEY_VAULT",
                "name": "kek1",
                "value": "https://v.vault.azure.net/keys/kek1/1",
                "algorithm": "RSA-OAEP"
            },
            "wrappedDataEncryptionKey": "AAECAw==",
            "_rid": "abc=",
            "_self": "dbs/abc=/clientencryptionkeys/abc=/",
            "_etag": "\"0000\"",
            "zzz": [1, {"b": 2, "a": 1}],
            "_ts": 1_700_000_000
        })
    }

    #[test]
    fn round_trips_known_and_unknown_fields_in_order() {
        let cek = ClientEncryptionKeyResource::from_value(sample()).unwrap();
        assert_eq!(cek.id(), "cek1");
        assert_eq!(cek.wrapped_data_encryption_key(), &[0, 1, 2, 3]);
        assert_eq!(
            cek.key_wrap_metadata().algorithm(),
            KeyWrapAlgorithm::RsaOaep
        );
        assert_eq!(cek.etag(), Some("\"0000\""));
        let out = serde_json::to_string(&cek).unwrap();
        assert_eq!(out, serde_json::to_string(&sample()).unwrap());
        let again: ClientEncryptionKeyResource = serde_json::from_str(&out).unwrap();
        assert_eq!(again, cek);
    }

    #[test]
    fn errors_name_the_key_id() {
        let cases: [(&str, Value, &str); 6] = [
            (
                "encryptionAlgorithm",
                json!("AES"),
                "unknown `encryptionAlgorithm`",
            ),
            ("wrappedDataEncryptionKey", json!("not base64!"), "base64"),
            ("wrappedDataEncryptionKey", json!(""), "is empty"),
            ("wrappedDataEncryptionKey", json!(5), "not a string"),
            ("keyWrapMetadata", json!([]), "not an object"),
            ("id", json!("a/b"), "contains '/'"),
        ];
        for (field, value, expect) in cases {
            let mut v = sample();
            v[field] = value;
            let e = ClientEncryptionKeyResource::from_value(v).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::InvalidKeyResource { .. }), "{msg}");
            assert!(msg.contains(expect), "{field}: {msg}");
            if field != "id" {
                assert!(msg.contains("'cek1'"), "{msg}");
            }
        }
        let mut v = sample();
        v["keyWrapMetadata"]["algorithm"] = json!("RSA1_5");
        let msg = ClientEncryptionKeyResource::from_value(v)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'cek1'") && msg.contains("RSA1_5"), "{msg}");
        let mut v = sample();
        v.as_object_mut().unwrap().remove("keyWrapMetadata");
        assert!(
            ClientEncryptionKeyResource::from_value(v)
                .unwrap_err()
                .to_string()
                .contains("`keyWrapMetadata` is missing")
        );
        assert!(ClientEncryptionKeyResource::from_json("[1]").is_err());
        assert!(ClientEncryptionKeyResource::from_json("{").is_err());
        assert!(ClientEncryptionKeyResource::from_json(r#"{"x":1}"#).is_err());
    }

    #[test]
    fn same_key_ignores_system_properties_only() {
        let a = ClientEncryptionKeyResource::from_value(sample()).unwrap();
        let mut v = sample();
        v["_rid"] = json!("other");
        v.as_object_mut().unwrap().remove("_etag");
        let b = ClientEncryptionKeyResource::from_value(v).unwrap();
        assert!(a.same_key(&b));
        assert_ne!(a, b);
        let c = a.with_wrapping(a.key_wrap_metadata().clone(), vec![9; 4]);
        assert!(!a.same_key(&c));
        assert_eq!(c.other_properties(), a.other_properties());
    }

    #[test]
    fn debug_shows_no_wrapped_bytes() {
        let a = ClientEncryptionKeyResource::from_value(sample()).unwrap();
        let s = format!("{a:?}");
        assert!(s.contains("cek1") && s.contains("wrapped_len: 4"), "{s}");
        assert!(!s.contains("AAECAw"), "{s}");
    }

    proptest! {
        #[test]
        fn any_valid_resource_round_trips(
            id in "[a-zA-Z0-9_.-]{1,40}",
            wrapped in proptest::collection::vec(any::<u8>(), 1..600),
            name in ".{0,20}",
            oaep256 in any::<bool>(),
            extra in proptest::collection::vec(("_?[a-z]{1,8}", any::<i64>()), 0..5),
        ) {
            let alg = if oaep256 { KeyWrapAlgorithm::RsaOaep256 } else { KeyWrapAlgorithm::RsaOaep };
            let meta = KeyWrapMetadata::azure_key_vault(name, "https://v.vault.azure.net/keys/k/1", alg);
            let mut cek = ClientEncryptionKeyResource::new(id, Algorithm::AeadAes256CbcHmacSha256, meta, wrapped).unwrap();
            for (k, v) in extra {
                if !matches!(k.as_str(), "id") {
                    cek.other.insert(k, v.into());
                }
            }
            let text = serde_json::to_string(&cek).unwrap();
            let back: ClientEncryptionKeyResource = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &cek);
            prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
}
