//! A key store on a Cosmos DB container.

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use futures::TryStreamExt;
use serde_json::{Map, Value};

use super::{cosmos_error, is_not_found};
use crate::error::{Error, Result};
use crate::keys::{ClientEncryptionKeyResource, KeyStore};

/// Properties the service adds to every document; not part of a key resource.
const SYSTEM_PROPERTIES: [&str; 5] = ["_rid", "_self", "_etag", "_ts", "_attachments"];

/// Client encryption key resources kept as documents (the same JSON as the official
/// `clientencryptionkeys` resource) in a Cosmos DB container of your choice, whose
/// partition key must be `/id`. See the [module docs](super) for moving keys to and from
/// the official resource.
///
/// The documents hold wrapped keys only; restrict write access to the container to the
/// principals that manage keys. [`replace`](KeyStore::replace) is conditional on the
/// stored document's `_etag` (an If-Match write): a concurrent change fails with
/// [`Error::KeyStoreConflict`], and so does a document without an `_etag`.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use always_encrypted::cosmos::{CosmosKeyStore, sdk::clients::DatabaseClient};
/// use always_encrypted::keys::{KeyResolver, KeyStore, LocalRsaKeyProvider};
/// # async fn example(db: DatabaseClient) -> Result<(), Box<dyn std::error::Error>> {
/// let keys = CosmosKeyStore::new(db.container_client("keys", None).await?);
/// let ids: Vec<String> = keys.list().await?.iter().map(|k| k.id().to_owned()).collect();
/// assert!(ids.is_sorted());
/// let resolver = KeyResolver::builder(Arc::new(keys)).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CosmosKeyStore {
    container: ContainerClient,
}

impl std::fmt::Debug for CosmosKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosKeyStore").finish_non_exhaustive()
    }
}

impl CosmosKeyStore {
    /// A key store on `container` (partition key `/id`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use always_encrypted::cosmos::{CosmosKeyStore, sdk::clients::DatabaseClient};
    /// use always_encrypted::keys::KeyStore;
    /// # async fn example(db: DatabaseClient) -> Result<(), Box<dyn std::error::Error>> {
    /// let keys = CosmosKeyStore::new(db.container_client("keys", None).await?);
    /// assert!(keys.read("cek1").await?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn new(container: ContainerClient) -> Self {
        Self { container }
    }

    /// Reads the raw document of a key: the resource and the document's `_etag`.
    async fn read_raw(
        &self,
        key_id: &str,
    ) -> Result<Option<(ClientEncryptionKeyResource, Option<String>)>> {
        match self
            .container
            .read_item(key_id.to_owned(), key_id, None)
            .await
        {
            Ok(r) => {
                let doc: Value = r
                    .into_model()
                    .map_err(|e| cosmos_error("read client encryption key", e))?;
                from_document(doc).map(Some)
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cosmos_error("read client encryption key", e)),
        }
    }
}

/// The key resource in a stored document, and its `_etag`.
fn from_document(doc: Value) -> Result<(ClientEncryptionKeyResource, Option<String>)> {
    let Value::Object(mut obj) = doc else {
        return Err(Error::InvalidKeyResource {
            key_id: String::new(),
            reason: "the stored document is not a JSON object".into(),
        });
    };
    let etag = obj.get("_etag").and_then(Value::as_str).map(str::to_owned);
    strip_system_properties(&mut obj);
    Ok((
        ClientEncryptionKeyResource::from_value(Value::Object(obj))?,
        etag,
    ))
}

/// Write options that make a replace conditional on `etag`, the `_etag` read with the
/// document. Without one the write could not be conditional, and a concurrent rewrap
/// between the read and the write would be lost: that is refused.
fn if_match(key_id: &str, etag: Option<String>) -> Result<ItemWriteOptions> {
    let etag = etag.ok_or_else(|| Error::KeyStoreConflict {
        store: "(Cosmos DB container)".into(),
        key_id: key_id.to_owned(),
        reason: "the stored document has no _etag, so it cannot be replaced safely".into(),
    })?;
    Ok(ItemWriteOptions::default().with_precondition(Precondition::if_match(etag)))
}

fn strip_system_properties(obj: &mut Map<String, Value>) {
    for p in SYSTEM_PROPERTIES {
        obj.shift_remove(p);
    }
}

#[async_trait::async_trait]
impl KeyStore for CosmosKeyStore {
    async fn read(&self, key_id: &str) -> Result<Option<ClientEncryptionKeyResource>> {
        Ok(self.read_raw(key_id).await?.map(|(k, _)| k))
    }

    async fn list(&self) -> Result<Vec<ClientEncryptionKeyResource>> {
        let stream = self
            .container
            .query_items::<Value>(
                Query::from("SELECT * FROM c"),
                FeedScope::full_container(),
                None,
            )
            .await
            .map_err(|e| cosmos_error("list client encryption keys", e))?;
        let docs: Vec<Value> = stream
            .try_collect()
            .await
            .map_err(|e| cosmos_error("list client encryption keys", e))?;
        let mut keys = docs
            .into_iter()
            .map(|d| from_document(d).map(|(k, _)| k))
            .collect::<Result<Vec<_>>>()?;
        keys.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(keys)
    }

    async fn create(&self, key: ClientEncryptionKeyResource) -> Result<()> {
        let id = key.id().to_owned();
        let mut doc = key.to_value();
        if let Value::Object(obj) = &mut doc {
            strip_system_properties(obj);
        }
        match self
            .container
            .create_item(id.clone(), &id, &doc, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_conflict() => Err(Error::KeyAlreadyExists { key_id: id }),
            Err(e) => Err(cosmos_error("create client encryption key", e)),
        }
    }

    async fn replace(
        &self,
        expected: &ClientEncryptionKeyResource,
        new: ClientEncryptionKeyResource,
    ) -> Result<()> {
        crate::keys::store::ensure_same_id(expected, new.id())?;
        let id = expected.id().to_owned();
        let conflict = || Error::KeyStoreConflict {
            store: "(Cosmos DB container)".into(),
            key_id: id.clone(),
            reason: "the key was changed since it was read".into(),
        };
        let (current, etag) = self
            .read_raw(&id)
            .await?
            .ok_or_else(|| Error::KeyNotFound { key_id: id.clone() })?;
        if &current != expected {
            return Err(conflict());
        }
        let mut doc = new.to_value();
        if let Value::Object(obj) = &mut doc {
            strip_system_properties(obj);
        }
        let options = if_match(&id, etag)?;
        match self
            .container
            .replace_item(id.clone(), &id, &doc, Some(options))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_not_found() => Err(Error::KeyNotFound { key_id: id }),
            Err(e) if u16::from(e.status().status_code()) == 412 => Err(conflict()),
            Err(e) => Err(cosmos_error("replace client encryption key", e)),
        }
    }

    async fn delete(&self, key_id: &str) -> Result<()> {
        match self
            .container
            .delete_item(key_id.to_owned(), key_id, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(Error::KeyNotFound {
                key_id: key_id.to_owned(),
            }),
            Err(e) => Err(cosmos_error("delete client encryption key", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_properties_are_not_part_of_the_key() {
        let doc = serde_json::json!({
            "id": "cek1", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
            "keyWrapMetadata": {"type": "akv", "name": "kek1",
                "value": "https://v.vault.azure.net/keys/kek1/1", "algorithm": "RSA-OAEP"},
            "wrappedDataEncryptionKey": "AAAA",
            "_rid": "x", "_self": "y", "_etag": "\"e1\"", "_ts": 1, "_attachments": "a/"
        });
        let (key, etag) = from_document(doc).unwrap();
        assert_eq!(etag.as_deref(), Some("\"e1\""));
        assert_eq!(key.id(), "cek1");
        assert!(key.other_properties().is_empty());
    }

    #[test]
    fn replace_is_conditional_on_the_etag_and_refused_without_one() {
        let options = if_match("cek1", Some("\"e1\"".into())).unwrap();
        assert_eq!(
            options.precondition,
            Some(Precondition::if_match("\"e1\"".to_owned()))
        );
        match if_match("cek1", None) {
            Err(Error::KeyStoreConflict { key_id, reason, .. }) => {
                assert_eq!(key_id, "cek1");
                assert!(reason.contains("_etag"), "{reason}");
            }
            other => panic!("expected KeyStoreConflict, got {:?}", other.map(|_| ())),
        }
    }
}
