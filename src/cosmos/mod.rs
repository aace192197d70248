//! Cosmos DB integration (feature `cosmos`, off by default): an encrypting container
//! client on the official Azure Cosmos DB SDK for Rust (`azure_data_cosmos` 1.0,
//! re-exported as [`sdk`]).
//!
//! [`EncryptedContainer`] wraps the SDK's [`ContainerClient`]: it encrypts on write
//! (create, upsert, replace, patch), decrypts on read and query, and encrypts the id and
//! partition-key values of point operations, and the parameters of equality queries, as
//! the container's client encryption policy says, the way the official .NET and
//! JavaScript SDKs do. Documents stay byte-compatible with theirs.
//!
//! # The policy lives with the container
//!
//! [`create_encrypted_container`] writes the `clientEncryptionPolicy` with the container
//! definition; [`EncryptedContainer::new`] reads it (and the partition-key paths) back
//! from the container, so every client agrees on the policy. A container with no policy is
//! refused.
//!
//! # Where the client encryption keys live
//!
//! The official SDKs keep client encryption key (CEK) resources in the database's
//! `clientencryptionkeys` resource. `azure_data_cosmos` 1.0 has no API for that resource
//! (no operation type, no resource link builder), so this crate stores the very same
//! JSON resources as documents of a container of your choice, through
//! [`CosmosKeyStore`] (a [`KeyStore`](crate::keys::KeyStore); partition key `/id`).
//!
//! Moving keys between that store and the official resource: the resources are the same
//! JSON (`id`, `encryptionAlgorithm`, `keyWrapMetadata`, `wrappedDataEncryptionKey`).
//! - official → this crate: read the keys with an official SDK
//!   (`database.getClientEncryptionKey(...)` / `ReadClientEncryptionKeyAsync`) or
//!   `GET /dbs/{db}/clientencryptionkeys`, save them as a JSON array, then
//!   `ae keys import --store file.json` into a [`JsonFileKeyStore`](crate::keys::JsonFileKeyStore)
//!   and copy them with [`KeyStore::create_all`](crate::keys::KeyStore::create_all) into a
//!   [`CosmosKeyStore`] (or `create_item` each resource into its container).
//! - this crate → official: [`KeyStore::list`](crate::keys::KeyStore::list) (or
//!   `ae keys export`), then create each resource with an official SDK's
//!   `createClientEncryptionKey` using the same id and `keyWrapMetadata`. The official
//!   create API wraps a new key itself, so to move an existing wrapped key, `POST` the
//!   resource JSON to `/dbs/{db}/clientencryptionkeys` with the REST API.
//!
//! Keys are never stored unwrapped: both stores hold only the wrapped key and its
//! Key Vault metadata.
//!
//! # Request headers
//!
//! Every request sends `x-ms-cosmos-is-client-encrypted: true` and
//! `x-ms-cosmos-intended-collection-rid: <container _rid>`, as the official SDKs do,
//! through the SDK's `OperationOptions::custom_headers` (the only way the SDK offers; it
//! notes that its gateway V2 transport may ignore custom headers). The SDK 1.0 already
//! sends the collection rid on item requests by itself; the integration tests check that
//! both headers reach the server with the container's rid.
//!
//! # Point operations on encrypted ids and partition keys
//!
//! Writes take the id and partition key from the encrypted document itself. Reads,
//! deletes and patches take the plaintext id and partition-key value and encrypt them
//! (Deterministic) when the policy covers `/id` or the partition-key path. An encrypted
//! partition-key path must be Deterministic and needs policy format version 2 (checked
//! when the container client is made).
//!
//! # Queries
//!
//! [`EncryptedQuery`] holds the SQL text and its parameters; a parameter compared with an
//! encrypted (Deterministic) path is added with
//! [`EncryptedQuery::with_encrypted_parameter`] and encrypted exactly as the stored
//! values are, so equality filters find their documents. Results are decrypted.
//! Range comparisons, `ORDER BY`, `LIKE` and functions on encrypted paths cannot work on
//! ciphertext, as with the official SDKs.
//!
//! # Connecting
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use always_encrypted::cosmos::{sdk, CosmosKeyStore, EncryptedContainer, EncryptedQuery};
//! use always_encrypted::keys::KeyResolver;
//! # let credential: Arc<dyn always_encrypted::azure_core::credentials::TokenCredential> = todo!();
//! # let kv: Arc<dyn always_encrypted::keys::KeyEncryptionKeyProvider> = todo!();
//! let account = sdk::AccountReference::with_credential(
//!     "https://myaccount.documents.azure.com/".parse()?, credential.clone());
//! let client = sdk::CosmosClient::builder()
//!     .build(account, sdk::RoutingStrategy::ProximityTo("West Europe".into()))
//!     .await?;
//! let db = client.database_client("appdb");
//! let keys = CosmosKeyStore::new(db.container_client("keys", None).await?);
//! let resolver = KeyResolver::builder(Arc::new(keys)).provider(kv).build();
//! let orders = EncryptedContainer::new(db.container_client("orders", None).await?, &resolver)
//!     .await?;
//! orders.upsert_item(&serde_json::json!({"id": "1", "tenant": "t1", "ssn": "123-45-6789"}))
//!     .await?;
//! let found: Vec<serde_json::Value> = orders
//!     .query_items(
//!         &EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
//!             .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789"),
//!         None,
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! See `examples/cosmos_orders.rs` for a program to run against a real account.
//!
//! # Build cost
//!
//! The feature adds `azure_data_cosmos` and its driver, `reqwest` with HTTP/2, and the
//! `aws-lc-rs` rustls provider that the SDK's default TLS feature selects (32 more crates
//! in the normal dependency tree: 232 → 264). Measured on the 2-core CI machine under
//! heavy load from parallel builds (load average 6–10, so expect far less on an idle
//! machine): a debug build of the library with `--features cosmos` on top of an existing
//! default-features build took 291 s wall (547 s summed over units, per
//! `cargo build --timings`), of which `aws-lc-sys`'s C build script was 159 s and the
//! Cosmos driver 64 s. Clean debug builds in fresh target directories took 616 s without
//! and 533 s with the feature in the same loaded conditions, i.e. within the noise of the
//! machine's load; the incremental figure above is the reliable one.
//!
use std::collections::HashMap;

use azure_core::http::headers::{HeaderName, HeaderValue};
use azure_data_cosmos::clients::{ContainerClient, DatabaseClient};
use azure_data_cosmos::models::{
    ContainerProperties, CosmosNumber, PartitionKeyValue, PatchInstructions,
};
use azure_data_cosmos::options::{
    ItemReadOptions, ItemWriteOptions, OperationOptions, PatchItemOptions, QueryOptions,
};
use azure_data_cosmos::{CosmosError, FeedScope, PartitionKey, Query};
use futures::TryStreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::document::patch::{NumberType, PatchOperation};
use crate::error::{Error, Result};
use crate::keys::KeyResolver;
use crate::policy::ClientEncryptionPolicy;
use crate::prepared::{PrepareOptions, PreparedPolicy};

mod key_store;

pub use azure_data_cosmos as sdk;
pub use key_store::CosmosKeyStore;

/// Header the official SDKs send on every request when encryption is on (`true`).
///
/// # Examples
///
/// ```
/// use always_encrypted::cosmos::HEADER_IS_CLIENT_ENCRYPTED;
///
/// assert_eq!(HEADER_IS_CLIENT_ENCRYPTED, "x-ms-cosmos-is-client-encrypted");
/// ```
pub const HEADER_IS_CLIENT_ENCRYPTED: &str = "x-ms-cosmos-is-client-encrypted";
/// Header the official SDKs send with the container's `_rid` when encryption is on.
///
/// # Examples
///
/// ```
/// use always_encrypted::cosmos::HEADER_INTENDED_COLLECTION_RID;
///
/// assert_eq!(HEADER_INTENDED_COLLECTION_RID, "x-ms-cosmos-intended-collection-rid");
/// ```
pub const HEADER_INTENDED_COLLECTION_RID: &str = "x-ms-cosmos-intended-collection-rid";

/// Wraps an SDK error.
pub(crate) fn cosmos_error(operation: &'static str, e: CosmosError) -> Error {
    let status = e.status();
    let code = u16::from(status.status_code());
    Error::Cosmos {
        operation,
        // The driver uses codes below 100 for client-side failures (no response).
        status: (code >= 100).then_some(code),
        source: Box::new(e),
    }
}

/// True when the SDK error is a 404 Not Found.
pub(crate) fn is_not_found(e: &CosmosError) -> bool {
    e.status().is_not_found()
}

/// The container definition (id, partition key, client encryption policy) to create an
/// encrypted container with, for callers that need to set more properties (indexing,
/// throughput) before creating it with the SDK.
///
/// # Errors
///
/// [`Error::InvalidPolicy`] when the policy does not hold for the partition-key path (an
/// encrypted partition key must be Deterministic, with policy format version 2).
///
/// # Examples
///
/// ```
/// use always_encrypted::cosmos::container_properties;
/// use always_encrypted::{ClientEncryptionPolicy, Error};
///
/// let policy = ClientEncryptionPolicy::from_json(r#"{"policyFormatVersion": 2, "includedPaths": [
///     {"path": "/tenant", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
///      "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// let props = container_properties("orders", "/customer", &policy)?;
/// assert_eq!(props.id, "orders");
/// assert_eq!(serde_json::to_value(&props)?["clientEncryptionPolicy"]["policyFormatVersion"], 2);
/// // A Randomized path cannot be the partition key.
/// let bad = container_properties("orders", "/tenant", &policy);
/// assert!(matches!(bad, Err(Error::InvalidPolicy { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn container_properties(
    id: &str,
    partition_key_path: &str,
    policy: &ClientEncryptionPolicy,
) -> Result<ContainerProperties> {
    // Checks the policy against the partition key without needing any key.
    check_policy_for_partition_key(policy, partition_key_path)?;
    let definition = json!({
        "id": id,
        "partitionKey": {"paths": [partition_key_path], "kind": "Hash", "version": 2},
        "clientEncryptionPolicy": policy,
    });
    serde_json::from_value(definition).map_err(|e| Error::InvalidPolicy {
        path: String::new(),
        reason: format!("cannot build the container definition: {e}"),
    })
}

/// Creates a container whose definition carries `policy` as its
/// `clientEncryptionPolicy`, so that every client (this crate's, or an official SDK's)
/// reads the same policy back.
///
/// # Errors
///
/// As [`container_properties`]; [`Error::Cosmos`] when the service refuses (status 409
/// when the container exists).
///
/// # Examples
///
/// ```no_run
/// use always_encrypted::ClientEncryptionPolicy;
/// use always_encrypted::cosmos::{create_encrypted_container, sdk::clients::DatabaseClient};
/// # async fn example(db: DatabaseClient) -> always_encrypted::Result<()> {
/// let policy = ClientEncryptionPolicy::from_json(r#"{"policyFormatVersion": 2, "includedPaths": [
///     {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
///      "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// create_encrypted_container(&db, "orders", "/tenant", &policy).await?;
/// # Ok(()) }
/// ```
pub async fn create_encrypted_container(
    database: &DatabaseClient,
    id: &str,
    partition_key_path: &str,
    policy: &ClientEncryptionPolicy,
) -> Result<()> {
    let properties = container_properties(id, partition_key_path, policy)?;
    database
        .create_container(properties, None)
        .await
        .map_err(|e| cosmos_error("create container", e))?;
    Ok(())
}

fn check_policy_for_partition_key(policy: &ClientEncryptionPolicy, pk: &str) -> Result<()> {
    // PreparedPolicy::new validates partition-key rules before any key lookup; give it a
    // lookup that is never reached when the rules fail, and ignore lookup failures.
    match PreparedPolicy::new(policy, PrepareOptions::new().partition_key_path(pk), |id| {
        Err(Error::KeyNotFound {
            key_id: id.to_owned(),
        })
    }) {
        Err(e @ Error::InvalidPolicy { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// The encryption-related parts of a container's definition.
///
/// # Examples
///
/// ```no_run
/// use always_encrypted::cosmos::{read_container_encryption_info, sdk::clients::ContainerClient};
/// # async fn example(container: ContainerClient) -> always_encrypted::Result<()> {
/// let info = read_container_encryption_info(&container).await?;
/// if let Some(policy) = &info.policy {
///     println!("{} keys, partition key {:?}", policy.key_ids().len(), info.partition_key_paths);
/// }
/// assert!(!info.rid.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ContainerEncryptionInfo {
    /// The container's `clientEncryptionPolicy`, if it has one.
    pub policy: Option<ClientEncryptionPolicy>,
    /// The partition-key paths, in order.
    pub partition_key_paths: Vec<String>,
    /// The container's `_rid` (empty when the service did not return one).
    pub rid: String,
}

/// Reads a container's definition and returns its client encryption policy,
/// partition-key paths and `_rid`.
///
/// # Errors
///
/// [`Error::Cosmos`] when the container cannot be read; [`Error::InvalidPolicy`] when its
/// policy is malformed.
///
/// # Examples
///
/// ```no_run
/// use always_encrypted::cosmos::{read_container_encryption_info, sdk::clients::ContainerClient};
/// # async fn example(container: ContainerClient) -> always_encrypted::Result<()> {
/// let info = read_container_encryption_info(&container).await?;
/// assert!(info.policy.is_some(), "not an encrypted container");
/// assert_eq!(info.partition_key_paths, ["/tenant"]);
/// # Ok(()) }
/// ```
pub async fn read_container_encryption_info(
    container: &ContainerClient,
) -> Result<ContainerEncryptionInfo> {
    let properties = container
        .read(None)
        .await
        .map_err(|e| cosmos_error("read container", e))?
        .into_model()
        .map_err(|e| cosmos_error("read container", e))?;
    let value = serde_json::to_value(&properties).map_err(|e| Error::InvalidPolicy {
        path: String::new(),
        reason: format!("cannot read the container definition: {e}"),
    })?;
    let policy = match value.get("clientEncryptionPolicy") {
        None | Some(Value::Null) => None,
        Some(p) => Some(ClientEncryptionPolicy::from_json(&p.to_string())?),
    };
    let partition_key_paths = value
        .pointer("/partitionKey/paths")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let rid = value
        .get("_rid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(ContainerEncryptionInfo {
        policy,
        partition_key_paths,
        rid,
    })
}

/// A query and its parameters; parameters compared with encrypted paths are encrypted
/// when the query runs.
///
/// # Examples
///
/// ```
/// use always_encrypted::cosmos::EncryptedQuery;
/// use serde_json::json;
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(
/// #   r#"{"policyFormatVersion": 2, "includedPaths": [
/// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
/// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
/// #     Ok(ResolvedKey::new(id, DataEncryptionKey::generate()?))
/// # })?;
/// let query = EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn AND c.tenant = @t")
///     .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789")
///     .with_parameter("@t", "t1");
/// // What `EncryptedContainer::query_items` sends:
/// let sent = serde_json::to_value(query.to_sdk_query(&prepared)?)?;
/// assert_eq!(sent["parameters"][1], json!({"name": "@t", "value": "t1"}));
/// assert_ne!(sent["parameters"][0]["value"], "123-45-6789"); // ciphertext
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EncryptedQuery {
    text: String,
    parameters: Vec<Parameter>,
}

#[derive(Debug, Clone)]
enum Parameter {
    Plain {
        name: String,
        value: Value,
    },
    Encrypted {
        name: String,
        path: String,
        value: Value,
        number_type: Option<NumberType>,
    },
}

impl EncryptedQuery {
    /// A query with this SQL text and no parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cosmos::EncryptedQuery;
    ///
    /// let query = EncryptedQuery::new("SELECT * FROM c");
    /// assert_eq!(query.text(), "SELECT * FROM c");
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            parameters: Vec::new(),
        }
    }

    /// Adds a parameter sent as it is (compared with a path the policy does not encrypt).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cosmos::EncryptedQuery;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(
    /// #   r#"{"policyFormatVersion": 2, "includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(ResolvedKey::new(id, DataEncryptionKey::generate()?))
    /// # })?;
    /// let query = EncryptedQuery::new("SELECT * FROM c WHERE c.total > @min")
    ///     .with_parameter("@min", 100);
    /// let sent = serde_json::to_value(query.to_sdk_query(&prepared)?)?;
    /// assert_eq!(sent["parameters"], json!([{"name": "@min", "value": 100}]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_parameter(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.parameters.push(Parameter::Plain {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a parameter compared for equality with the encrypted property at `path` (a
    /// JSON Pointer such as `/ssn`); it is encrypted as that property's stored values are.
    /// Numbers are typed as parsed (int64: Long, else Double); use
    /// [`with_encrypted_number_parameter`](Self::with_encrypted_number_parameter) to pick.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cosmos::EncryptedQuery;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(
    /// #   r#"{"policyFormatVersion": 2, "includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(ResolvedKey::new(id, DataEncryptionKey::generate()?))
    /// # })?;
    /// let query = EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
    ///     .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789");
    /// let sent = serde_json::to_value(query.to_sdk_query(&prepared)?)?;
    /// // Encrypted as a stored `/ssn` value is (Deterministic), so equality matches.
    /// let stored = prepared.encrypt_query_parameter("/ssn", &json!("123-45-6789"), None)?;
    /// assert_eq!(sent["parameters"][0]["value"], stored);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_encrypted_parameter(
        mut self,
        name: impl Into<String>,
        path: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        self.parameters.push(Parameter::Encrypted {
            name: name.into(),
            path: path.into(),
            value: value.into(),
            number_type: None,
        });
        self
    }

    /// As [`with_encrypted_parameter`](Self::with_encrypted_parameter) with the stored
    /// number type of the property (an equality match needs the same type).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::NumberType;
    /// use always_encrypted::cosmos::EncryptedQuery;
    /// use serde_json::json;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(
    /// #   r#"{"policyFormatVersion": 2, "includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(ResolvedKey::new(id, DataEncryptionKey::generate()?))
    /// # })?;
    /// // `age` was stored as the double 42.0; a query for 42 must send a double too.
    /// let query = EncryptedQuery::new("SELECT * FROM c WHERE c.age = @age")
    ///     .with_encrypted_number_parameter("@age", "/age", 42, NumberType::Double);
    /// let sent = serde_json::to_value(query.to_sdk_query(&prepared)?)?;
    /// let as_double = prepared.encrypt_query_parameter("/age", &json!(42.0), None)?;
    /// assert_eq!(sent["parameters"][0]["value"], as_double);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_encrypted_number_parameter(
        mut self,
        name: impl Into<String>,
        path: impl Into<String>,
        value: impl Into<Value>,
        number_type: NumberType,
    ) -> Self {
        self.parameters.push(Parameter::Encrypted {
            name: name.into(),
            path: path.into(),
            value: value.into(),
            number_type: Some(number_type),
        });
        self
    }

    /// The SQL text.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cosmos::EncryptedQuery;
    ///
    /// let query = EncryptedQuery::new("SELECT c.id FROM c").with_parameter("@x", 1);
    /// assert_eq!(query.text(), "SELECT c.id FROM c");
    /// ```
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The SDK query with every encrypted parameter encrypted under `prepared`.
    ///
    /// # Errors
    ///
    /// As [`PreparedPolicy::encrypt_query_parameter`]; [`Error::UnsupportedValue`] when a
    /// parameter cannot be serialized.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::cosmos::EncryptedQuery;
    /// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    /// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
    /// # let policy = ClientEncryptionPolicy::from_json(
    /// #   r#"{"policyFormatVersion": 2, "includedPaths": [
    /// #   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    /// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
    /// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
    /// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
    /// #     Ok(ResolvedKey::new(id, DataEncryptionKey::generate()?))
    /// # })?;
    /// let ok = EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
    ///     .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789");
    /// ok.to_sdk_query(&prepared)?;
    /// // `/name` is not encrypted: an encrypted parameter for it is refused.
    /// let wrong = EncryptedQuery::new("SELECT * FROM c WHERE c.name = @n")
    ///     .with_encrypted_parameter("@n", "/name", "Ada");
    /// assert!(matches!(wrong.to_sdk_query(&prepared), Err(Error::UnsupportedOperation { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_sdk_query(&self, prepared: &PreparedPolicy) -> Result<Query> {
        let mut query = Query::from(self.text.clone());
        for p in &self.parameters {
            let (name, value) = match p {
                Parameter::Plain { name, value } => (name, value.clone()),
                Parameter::Encrypted {
                    name,
                    path,
                    value,
                    number_type,
                } => (
                    name,
                    prepared.encrypt_query_parameter(path, value, *number_type)?,
                ),
            };
            query =
                query
                    .with_parameter(name.clone(), value)
                    .map_err(|e| Error::UnsupportedValue {
                        path: String::new(),
                        reason: format!("query parameter {name}: {e}"),
                    })?;
        }
        Ok(query)
    }
}

/// An encrypting, decrypting client for one Cosmos DB container.
///
/// Cheap to clone. The prepared policy keeps its keys for as long as this client lives:
/// make a new one (cheap while the keys are cached) to pick up key rewraps and honour
/// revocation.
///
/// # Examples
///
/// ```no_run
/// use always_encrypted::cosmos::{EncryptedContainer, sdk::clients::ContainerClient};
/// use always_encrypted::keys::KeyResolver;
/// use serde_json::{Value, json};
/// # async fn example(client: ContainerClient, resolver: KeyResolver)
/// # -> always_encrypted::Result<()> {
/// let orders = EncryptedContainer::new(client, &resolver).await?;
/// orders.upsert_item(&json!({"id": "1", "tenant": "t1", "ssn": "123-45-6789"})).await?;
/// let read: Option<Value> = orders.read_item(&json!("t1"), "1").await?;
/// assert_eq!(read.map(|d| d["ssn"].clone()), Some(json!("123-45-6789")));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EncryptedContainer {
    client: ContainerClient,
    prepared: PreparedPolicy,
    partition_key_paths: Vec<String>,
    headers: HashMap<HeaderName, HeaderValue>,
}

impl std::fmt::Debug for EncryptedContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedContainer")
            .field("prepared", &self.prepared)
            .field("partition_key_paths", &self.partition_key_paths)
            .finish_non_exhaustive()
    }
}

impl EncryptedContainer {
    /// Reads the container's client encryption policy and partition-key paths, resolves
    /// the keys the policy names through `resolver`, and wraps `client`.
    ///
    /// # Errors
    ///
    /// [`Error::Cosmos`] when the container cannot be read; [`Error::InvalidPolicy`] when
    /// it has no client encryption policy or the policy breaks a partition-key rule;
    /// key resolution errors as [`KeyResolver::prepare`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::cosmos::{EncryptedContainer, sdk::clients::DatabaseClient};
    /// use always_encrypted::keys::KeyResolver;
    /// # async fn example(db: DatabaseClient, resolver: KeyResolver)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let orders = EncryptedContainer::new(db.container_client("orders", None).await?, &resolver)
    ///     .await?;
    /// assert_eq!(orders.partition_key_paths(), ["/tenant"]);
    /// # Ok(()) }
    /// ```
    pub async fn new(client: ContainerClient, resolver: &KeyResolver) -> Result<Self> {
        Self::with_options(client, resolver, PrepareOptions::new()).await
    }

    /// As [`new`](Self::new), with prepare options (for example
    /// [`allow_unavailable_keys`](PrepareOptions::allow_unavailable_keys)); the
    /// container's partition-key paths are added to them.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); [`Error::InvalidPolicy`] when `options` already names
    /// partition-key paths that differ from the container's.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::PrepareOptions;
    /// use always_encrypted::cosmos::{EncryptedContainer, sdk::clients::ContainerClient};
    /// use always_encrypted::keys::KeyResolver;
    /// use serde_json::Value;
    /// # async fn example(client: ContainerClient, resolver: KeyResolver)
    /// # -> always_encrypted::Result<()> {
    /// // A reader that may lack some keys: properties it cannot decrypt stay encrypted.
    /// let options = PrepareOptions::new().allow_unavailable_keys(true);
    /// let orders = EncryptedContainer::with_options(client, &resolver, options).await?;
    /// let doc: Option<Value> = orders.read_item(&"t1".into(), "1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_options(
        client: ContainerClient,
        resolver: &KeyResolver,
        options: PrepareOptions,
    ) -> Result<Self> {
        let info = read_container_encryption_info(&client).await?;
        let policy = info.policy.ok_or_else(|| Error::InvalidPolicy {
            path: String::new(),
            reason: "the container has no clientEncryptionPolicy".into(),
        })?;
        let options = merge_partition_key_paths(options, &info.partition_key_paths)?;
        let prepared = resolver.prepare(&policy, options).await?;
        Ok(Self::from_parts(
            client,
            prepared,
            info.partition_key_paths,
            &info.rid,
        ))
    }

    /// Wraps `client` with an already prepared policy (which must be the container's,
    /// prepared with its partition-key paths) and the container's `_rid` for the request
    /// header (empty: no header).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::PrepareOptions;
    /// use always_encrypted::cosmos::{EncryptedContainer, read_container_encryption_info};
    /// use always_encrypted::cosmos::sdk::clients::ContainerClient;
    /// use always_encrypted::keys::KeyResolver;
    /// # async fn example(client: ContainerClient, resolver: KeyResolver)
    /// # -> always_encrypted::Result<()> {
    /// let info = read_container_encryption_info(&client).await?;
    /// # let policy = info.policy.expect("an encrypted container");
    /// let options = PrepareOptions::new().partition_key_path(&info.partition_key_paths[0]);
    /// let prepared = resolver.prepare(&policy, options).await?;
    /// let pk_paths = info.partition_key_paths;
    /// let orders = EncryptedContainer::from_parts(client, prepared, pk_paths, &info.rid);
    /// assert_eq!(orders.request_headers().count(), 2);
    /// # Ok(()) }
    /// ```
    pub fn from_parts(
        client: ContainerClient,
        prepared: PreparedPolicy,
        partition_key_paths: Vec<String>,
        container_rid: &str,
    ) -> Self {
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static(HEADER_IS_CLIENT_ENCRYPTED),
            HeaderValue::from_static("true"),
        );
        if !container_rid.is_empty() {
            headers.insert(
                HeaderName::from_static(HEADER_INTENDED_COLLECTION_RID),
                HeaderValue::from(container_rid.to_owned()),
            );
        }
        Self {
            client,
            prepared,
            partition_key_paths,
            headers,
        }
    }

    /// The SDK's container client (no encryption: what it writes is stored as given).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> Result<(), Box<dyn std::error::Error>> {
    /// // The stored (encrypted) document, as a reader without the keys sees it.
    /// let pk = orders.partition_key(&"t1".into())?;
    /// let response = orders.container().read_item(pk, "1", None).await?;
    /// let stored: serde_json::Value = response.into_model()?;
    /// assert_ne!(stored["ssn"], "123-45-6789");
    /// # Ok(()) }
    /// ```
    pub fn container(&self) -> &ContainerClient {
        &self.client
    }

    /// The prepared policy.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// // Encrypt a document for a batch or bulk request made with the SDK directly.
    /// let doc = orders.prepared().encrypt_item(&json!({"id": "1", "ssn": "123-45-6789"}))?;
    /// assert_ne!(doc["ssn"], "123-45-6789");
    /// # Ok(()) }
    /// ```
    pub fn prepared(&self) -> &PreparedPolicy {
        &self.prepared
    }

    /// The container's partition-key paths.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// assert_eq!(orders.partition_key_paths(), ["/tenant"]);
    /// # Ok(()) }
    /// ```
    pub fn partition_key_paths(&self) -> &[String] {
        &self.partition_key_paths
    }

    /// The headers sent on every request (see the module docs).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::cosmos::HEADER_IS_CLIENT_ENCRYPTED;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// let headers: Vec<(&str, &str)> = orders.request_headers().collect();
    /// assert!(headers.contains(&(HEADER_IS_CLIENT_ENCRYPTED, "true")));
    /// # Ok(()) }
    /// ```
    pub fn request_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn operation_options(&self) -> OperationOptions {
        let mut o = OperationOptions::default();
        o.custom_headers = Some(self.headers.clone());
        o
    }

    /// The id to send for a point operation: encrypted when the policy encrypts `/id`.
    ///
    /// # Errors
    ///
    /// As [`PreparedPolicy::encrypt_id`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> Result<(), Box<dyn std::error::Error>> {
    /// // Only needed to call the SDK directly: the point operations encrypt the id themselves.
    /// let id = orders.encrypt_id("order-1")?;
    /// let pk = orders.partition_key(&"t1".into())?;
    /// orders.container().read_item(pk, &id, None).await?;
    /// # Ok(()) }
    /// ```
    pub fn encrypt_id(&self, id: &str) -> Result<String> {
        self.prepared.encrypt_id(id)
    }

    /// The SDK partition key for a plaintext partition-key value (an array of values for a
    /// hierarchical key), encrypted where the policy encrypts the partition-key path.
    ///
    /// # Errors
    ///
    /// As [`PreparedPolicy::encrypt_partition_key_values`]; [`Error::UnsupportedValue`]
    /// for a value that cannot be a partition key (an object, a non-finite number).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// let pk = orders.partition_key(&json!("t1"))?;
    /// let bad = orders.partition_key(&json!({"not": "a key"}));
    /// assert!(matches!(bad, Err(Error::UnsupportedValue { .. })));
    /// # Ok(()) }
    /// ```
    pub fn partition_key(&self, value: &Value) -> Result<PartitionKey> {
        let values = match (value, self.partition_key_paths.len()) {
            (Value::Array(a), n) if n > 1 => a.clone(),
            (v, _) => vec![v.clone()],
        };
        let encrypted = self.prepared.encrypt_partition_key_values(&values)?;
        sdk_partition_key(&encrypted)
    }

    /// The partition key of an (already encrypted) document.
    fn partition_key_of(&self, doc: &Value) -> Result<PartitionKey> {
        let values: Vec<Value> = self
            .partition_key_paths
            .iter()
            .map(|p| doc.pointer(p).cloned().unwrap_or(Value::Null))
            .collect();
        sdk_partition_key(&values)
    }

    fn encrypt_for_write<T: Serialize + ?Sized>(&self, item: &T) -> Result<(Value, String)> {
        let doc = self.prepared.encrypt_item(item)?;
        let id = match doc.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(Error::InvalidDocument {
                    path: "/id".into(),
                    reason: "a Cosmos DB item needs a string `id`".into(),
                });
            }
        };
        Ok((doc, id))
    }

    fn write_options(&self) -> ItemWriteOptions {
        ItemWriteOptions::default().with_operation_options(self.operation_options())
    }

    /// Encrypts `item` and creates it; the id and partition key are taken from the
    /// encrypted document.
    ///
    /// # Errors
    ///
    /// Encryption errors as [`PreparedPolicy::encrypt_item`]; [`Error::InvalidDocument`]
    /// when the item has no string `id`; [`Error::Cosmos`] (409 when it exists).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// let order = json!({"id": "1", "tenant": "t1", "ssn": "123-45-6789"});
    /// orders.create_item(&order).await?;
    /// let again = orders.create_item(&order).await;
    /// assert!(matches!(again, Err(Error::Cosmos { status: Some(409), .. })));
    /// # Ok(()) }
    /// ```
    pub async fn create_item<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let (doc, id) = self.encrypt_for_write(item)?;
        let pk = self.partition_key_of(&doc)?;
        self.client
            .create_item(pk, &id, &doc, Some(self.write_options()))
            .await
            .map_err(|e| cosmos_error("create item", e))?;
        Ok(())
    }

    /// Encrypts `item` and creates or replaces it.
    ///
    /// # Errors
    ///
    /// As [`create_item`](Self::create_item).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde::Serialize;
    /// #[derive(Serialize)]
    /// struct Order<'a> { id: &'a str, tenant: &'a str, ssn: &'a str }
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// orders.upsert_item(&Order { id: "1", tenant: "t1", ssn: "123-45-6789" }).await?;
    /// orders.upsert_item(&Order { id: "1", tenant: "t1", ssn: "987-65-4321" }).await?; // replaces
    /// # Ok(()) }
    /// ```
    pub async fn upsert_item<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let (doc, id) = self.encrypt_for_write(item)?;
        let pk = self.partition_key_of(&doc)?;
        self.client
            .upsert_item(pk, &id, &doc, Some(self.write_options()))
            .await
            .map_err(|e| cosmos_error("upsert item", e))?;
        Ok(())
    }

    /// Encrypts `item` and replaces the stored item with the same id and partition key.
    ///
    /// # Errors
    ///
    /// As [`create_item`](Self::create_item) (404 when there is no such item).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::Error;
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// orders.replace_item(&json!({"id": "1", "tenant": "t1", "ssn": "987-65-4321"})).await?;
    /// let missing = orders.replace_item(&json!({"id": "404", "tenant": "t1"})).await;
    /// assert!(matches!(missing, Err(Error::Cosmos { status: Some(404), .. })));
    /// # Ok(()) }
    /// ```
    pub async fn replace_item<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let (doc, id) = self.encrypt_for_write(item)?;
        let pk = self.partition_key_of(&doc)?;
        self.client
            .replace_item(pk, &id, &doc, Some(self.write_options()))
            .await
            .map_err(|e| cosmos_error("replace item", e))?;
        Ok(())
    }

    /// Reads and decrypts the item with this plaintext partition-key value and id, or
    /// `None` when there is none.
    ///
    /// # Errors
    ///
    /// As [`partition_key`](Self::partition_key) and [`encrypt_id`](Self::encrypt_id);
    /// [`Error::Cosmos`]; decryption errors as [`PreparedPolicy::decrypt_item`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde::Deserialize;
    /// use serde_json::json;
    /// #[derive(Deserialize)]
    /// struct Order { ssn: String }
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// // Plaintext partition key and id: encrypted here when the policy encrypts them.
    /// let order: Option<Order> = orders.read_item(&json!("t1"), "1").await?;
    /// assert_eq!(order.map(|o| o.ssn).as_deref(), Some("123-45-6789"));
    /// assert!(orders.read_item::<Order>(&json!("t1"), "404").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn read_item<T: DeserializeOwned>(
        &self,
        partition_key: &Value,
        id: &str,
    ) -> Result<Option<T>> {
        let pk = self.partition_key(partition_key)?;
        let id = self.encrypt_id(id)?;
        let options = ItemReadOptions::default().with_operation_options(self.operation_options());
        let response = match self.client.read_item(pk, &id, Some(options)).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(cosmos_error("read item", e)),
        };
        let doc: Value = response
            .into_model()
            .map_err(|e| cosmos_error("read item", e))?;
        self.prepared.decrypt_item(doc).map(Some)
    }

    /// Deletes the item with this plaintext partition-key value and id; `false` when there
    /// was none.
    ///
    /// # Errors
    ///
    /// As [`read_item`](Self::read_item).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// assert!(orders.delete_item(&json!("t1"), "1").await?);
    /// assert!(!orders.delete_item(&json!("t1"), "1").await?); // already gone
    /// # Ok(()) }
    /// ```
    pub async fn delete_item(&self, partition_key: &Value, id: &str) -> Result<bool> {
        let pk = self.partition_key(partition_key)?;
        let id = self.encrypt_id(id)?;
        match self
            .client
            .delete_item(pk, &id, Some(self.write_options()))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(cosmos_error("delete item", e)),
        }
    }

    /// Applies patch operations to the item with this plaintext partition-key value and
    /// id, with their values encrypted as the policy says.
    ///
    /// # Errors
    ///
    /// As [`PreparedPolicy::encrypt_patch`] (`incr` on an encrypted path, `move` across
    /// encrypted paths); as [`read_item`](Self::read_item).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::{Error, PatchOperation};
    /// use serde_json::json;
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// let set_ssn = PatchOperation::set("/ssn", json!("987-65-4321")); // encrypted
    /// orders.patch_item(&json!("t1"), "1", &[set_ssn]).await?;
    /// let incr = PatchOperation::incr("/ssn", json!(1));
    /// let refused = orders.patch_item(&json!("t1"), "1", &[incr]).await;
    /// assert!(matches!(refused, Err(Error::UnsupportedOperation { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn patch_item(
        &self,
        partition_key: &Value,
        id: &str,
        operations: &[PatchOperation],
    ) -> Result<()> {
        let pk = self.partition_key(partition_key)?;
        let id = self.encrypt_id(id)?;
        let mut instructions = PatchInstructions::new();
        for op in self.prepared.encrypt_patch(operations)? {
            instructions = instructions.with_operation(sdk_patch_operation(op)?);
        }
        let options = PatchItemOptions::default().with_operation_options(self.operation_options());
        self.client
            .patch_item(pk, &id, instructions, Some(options))
            .await
            .map_err(|e| cosmos_error("patch item", e))?;
        Ok(())
    }

    /// Runs a query, its encrypted parameters encrypted, and decrypts every result (whole
    /// documents or projections of them: a projected encrypted property is decrypted when
    /// its name is the policy path's). `partition_key` scopes it to one partition
    /// (plaintext value, encrypted as needed); `None` queries the whole container.
    ///
    /// # Errors
    ///
    /// As [`EncryptedQuery::to_sdk_query`]; [`Error::Cosmos`]; decryption errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::cosmos::EncryptedQuery;
    /// use serde_json::{Value, json};
    /// # use always_encrypted::cosmos::EncryptedContainer;
    /// # async fn example(orders: EncryptedContainer) -> always_encrypted::Result<()> {
    /// let query = EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
    ///     .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789");
    /// let found: Vec<Value> = orders.query_items(&query, Some(&json!("t1"))).await?;
    /// assert!(found.iter().all(|d| d["ssn"] == "123-45-6789")); // decrypted
    /// # Ok(()) }
    /// ```
    pub async fn query_items<T: DeserializeOwned>(
        &self,
        query: &EncryptedQuery,
        partition_key: Option<&Value>,
    ) -> Result<Vec<T>> {
        let sdk_query = query.to_sdk_query(&self.prepared)?;
        let scope = match partition_key {
            Some(v) => FeedScope::partition(self.partition_key(v)?),
            None => FeedScope::full_container(),
        };
        let options = QueryOptions::default().with_operation_options(self.operation_options());
        let stream = self
            .client
            .query_items::<Value>(sdk_query, scope, Some(options))
            .await
            .map_err(|e| cosmos_error("query items", e))?;
        let docs: Vec<Value> = stream
            .try_collect()
            .await
            .map_err(|e| cosmos_error("query items", e))?;
        docs.into_iter()
            .map(|doc| match doc {
                Value::Object(_) => self.prepared.decrypt_item(doc),
                // A `SELECT VALUE` scalar cannot be matched to a path: returned as is.
                other => serde_json::from_value(other).map_err(|e| Error::InvalidDocument {
                    path: String::new(),
                    reason: format!("query result does not fit the requested type: {e}"),
                }),
            })
            .collect()
    }
}

fn merge_partition_key_paths(
    options: PrepareOptions,
    container: &[String],
) -> Result<PrepareOptions> {
    if options.partition_key_paths().is_empty() {
        Ok(container
            .iter()
            .fold(options, |o, p| o.partition_key_path(p.clone())))
    } else if options.partition_key_paths() == container {
        Ok(options)
    } else {
        Err(Error::InvalidPolicy {
            path: String::new(),
            reason: format!(
                "the prepare options name partition-key paths {:?} but the container's are {:?}",
                options.partition_key_paths(),
                container
            ),
        })
    }
}

fn sdk_partition_key_value(v: &Value) -> Result<PartitionKeyValue> {
    let bad = |reason: &str| Error::UnsupportedValue {
        path: String::new(),
        reason: format!("partition-key value: {reason}"),
    };
    Ok(match v {
        Value::Null => PartitionKeyValue::NULL,
        Value::Bool(b) => PartitionKeyValue::from(*b),
        Value::String(s) => PartitionKeyValue::from(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                PartitionKeyValue::from(i)
            } else if let Some(u) = n.as_u64() {
                PartitionKeyValue::from(u)
            } else {
                let f = n.as_f64().ok_or_else(|| bad("not a finite number"))?;
                PartitionKeyValue::try_from(f).map_err(|_| bad("not a finite number"))?
            }
        }
        Value::Array(_) | Value::Object(_) => {
            return Err(bad("an array or object cannot be a partition key"));
        }
    })
}

fn sdk_partition_key(values: &[Value]) -> Result<PartitionKey> {
    let values = values
        .iter()
        .map(sdk_partition_key_value)
        .collect::<Result<Vec<_>>>()?;
    PartitionKey::try_from(values).map_err(|e| Error::UnsupportedValue {
        path: String::new(),
        reason: format!("partition key: {e}"),
    })
}

fn sdk_patch_operation(op: PatchOperation) -> Result<sdk::models::PatchOperation> {
    use sdk::models::PatchOperation as Sdk;
    Ok(match op {
        PatchOperation::Add { path, value } => Sdk::add(path, value),
        PatchOperation::Set { path, value } => Sdk::set(path, value),
        PatchOperation::Replace { path, value } => Sdk::replace(path, value),
        PatchOperation::Remove { path } => Sdk::remove(path),
        PatchOperation::Move { from, path } => Sdk::move_value(from, path),
        PatchOperation::Incr { path, value } => {
            let n: CosmosNumber = match value.as_i64() {
                Some(i) => i.into(),
                None => value
                    .as_f64()
                    .ok_or_else(|| Error::UnsupportedValue {
                        path: path.clone(),
                        reason: "incr needs a number".into(),
                    })?
                    .into(),
            };
            Sdk::increment(path, n)
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(Error::UnsupportedOperation {
                path: String::new(),
                reason: "this patch operation is not supported by the Cosmos DB SDK".into(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ClientEncryptionPolicy {
        ClientEncryptionPolicy::from_json(
            r#"{"includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/tenant", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
            "policyFormatVersion": 2}"#,
        )
        .unwrap()
    }

    #[test]
    fn container_properties_carry_the_policy_and_partition_key() {
        let p = container_properties("orders", "/pk", &policy()).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["id"], "orders");
        assert_eq!(v["partitionKey"]["paths"], json!(["/pk"]));
        let back =
            ClientEncryptionPolicy::from_json(&v["clientEncryptionPolicy"].to_string()).unwrap();
        assert_eq!(back.included_paths().len(), 2);
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(policy()).unwrap()
        );
    }

    #[test]
    fn a_randomized_partition_key_is_refused_before_any_request() {
        let e = container_properties("orders", "/tenant", &policy()).unwrap_err();
        assert!(matches!(e, Error::InvalidPolicy { .. }), "{e}");
    }

    #[test]
    fn partition_key_values_map_to_the_sdk() {
        assert!(sdk_partition_key(&[json!("a")]).is_ok());
        assert!(sdk_partition_key(&[json!(1), json!(true), Value::Null]).is_ok());
        assert!(matches!(
            sdk_partition_key(&[json!({"a": 1})]),
            Err(Error::UnsupportedValue { .. })
        ));
    }

    #[test]
    fn partition_key_paths_must_agree_with_the_container() {
        let ok = merge_partition_key_paths(PrepareOptions::new(), &["/pk".into()]).unwrap();
        assert_eq!(ok.partition_key_paths(), ["/pk"]);
        let e = merge_partition_key_paths(
            PrepareOptions::new().partition_key_path("/other"),
            &["/pk".into()],
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidPolicy { .. }));
    }
}
