//! The Cosmos DB integration against a real Cosmos-compatible server on 127.0.0.1
//! (`@vercel/cosmosdb-server`, pinned in `testing/cosmos-server/package-lock.json`, started
//! by `testing/cosmos-server/launch.js` on a free port, over HTTPS in the SDK's emulator
//! certificate mode). Needs Node 20; runs `npm ci` there when `node_modules` is missing.
#![cfg(feature = "cosmos")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use always_encrypted::cosmos::sdk::clients::{ContainerClient, DatabaseClient};
use always_encrypted::cosmos::sdk::models::ContainerProperties;
use always_encrypted::cosmos::sdk::options::{
    BinaryEncodingOptions, ConnectionPoolOptions, ServerCertificateValidation,
};
use always_encrypted::cosmos::sdk::{
    AccountReference, CosmosClient, CosmosRuntime, FeedScope, Query, RoutingStrategy,
};
use always_encrypted::cosmos::{
    CosmosKeyStore, EncryptedContainer, EncryptedQuery, create_encrypted_container,
    read_container_encryption_info,
};
use always_encrypted::keys::{
    ClientEncryptionKeyResource, KeyResolver, KeyStore, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, Error, PatchOperation};
use futures::TryStreamExt;
use serde_json::{Value, json};

const KEK_URL: &str =
    "https://anchor-public.vault.azure.net/keys/kek1/00000000000000000000000000000001";

fn server_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testing/cosmos-server")
}

/// Installs the pinned server once per test binary (`npm ci` from the lockfile).
fn ensure_installed() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    let dir = server_dir();
    if !dir.join("node_modules/@vercel/cosmosdb-server").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node 20) is needed for the Cosmos DB tests");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    *done = true;
}

/// The server process, stopped on drop (and when its stdin closes, should we die).
struct Server {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    /// One JSON line per request: method, path and the client-encryption headers.
    header_log: PathBuf,
    _dir: common::TempDir,
}

impl Server {
    fn start() -> Self {
        ensure_installed();
        let dir = common::TempDir::new("cosmos-server");
        let header_log = dir.join("headers.ndjson");
        let mut child = Command::new("node")
            .arg("launch.js")
            .env("COSMOS_SERVER_HEADER_LOG", &header_log)
            .current_dir(server_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (20) is needed for the Cosmos DB tests");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the server did not start: {line:?}"));
        Self {
            child,
            _stdin: stdin,
            port,
            header_log,
            _dir: dir,
        }
    }

    /// The requests logged so far.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.header_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn client(&self) -> CosmosClient {
        // Server 1.0.1 speaks HTTP/1.1 and text JSON only; its certificate is self-signed,
        // accepted for the emulator host 127.0.0.1 only.
        let pool = ConnectionPoolOptions::builder()
            .with_is_http2_allowed(false)
            .with_gateway_v2_disabled(true)
            .with_server_certificate_validation(ServerCertificateValidation::RequiredUnlessEmulator)
            .build()
            .unwrap();
        let runtime = CosmosRuntime::builder()
            .with_connection_pool(pool)
            .build()
            .await
            .unwrap();
        let endpoint = format!("https://127.0.0.1:{}/", self.port).parse().unwrap();
        // The server does not check keys; any base64 key will do.
        let account = AccountReference::with_authentication_key(
            endpoint,
            "dGVzdC1vbmx5LWtleS1mb3ItYS1sb29wYmFjay1zZXJ2ZXI=".to_owned(),
        );
        CosmosClient::builder()
            .with_runtime(runtime)
            .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false))
            .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database with a key container holding the official vectors' `cek1`, and a resolver
/// reading keys from it (KEK: the vectors' RSA key).
struct Fixture {
    server: Server,
    db: DatabaseClient,
    resolver: KeyResolver,
    keys: Arc<CosmosKeyStore>,
}

impl Fixture {
    async fn new() -> Self {
        let server = Server::start();
        let client = server.client().await;
        client.create_database("appdb", None).await.unwrap();
        let db = client.database_client("appdb");
        db.create_container(ContainerProperties::new("keys", "/id".into()), None)
            .await
            .unwrap();
        let keys = Arc::new(CosmosKeyStore::new(
            db.container_client("keys", None).await.unwrap(),
        ));
        let cek1 = ClientEncryptionKeyResource::from_json(&common::read("cek1.json")).unwrap();
        keys.create(cek1).await.unwrap();
        let pem = common::read("kek.pem");
        let resolver = KeyResolver::builder(keys.clone())
            .provider(Arc::new(
                LocalRsaKeyProvider::from_pems([(KEK_URL, pem.as_str())]).unwrap(),
            ))
            .build();
        Self {
            server,
            db,
            resolver,
            keys,
        }
    }

    async fn container(
        &self,
        id: &str,
        pk: &str,
        policy: &str,
    ) -> (EncryptedContainer, ContainerClient) {
        let policy = ClientEncryptionPolicy::from_json(policy).unwrap();
        create_encrypted_container(&self.db, id, pk, &policy)
            .await
            .unwrap();
        let plain = self.db.container_client(id, None).await.unwrap();
        let enc = EncryptedContainer::new(plain.clone(), &self.resolver)
            .await
            .unwrap();
        (enc, plain)
    }
}

/// Every document in the container as stored, read with the plain SDK client.
async fn stored(plain: &ContainerClient) -> Vec<Value> {
    let mut docs: Vec<Value> = plain
        .query_items::<Value>(
            Query::from("SELECT * FROM c"),
            FeedScope::full_container(),
            None,
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs = without_system_properties(docs);
    docs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    docs
}

/// Drops the properties the server adds (`_rid`, `_ts`, ...).
fn without_system_properties(mut docs: Vec<Value>) -> Vec<Value> {
    for d in &mut docs {
        d.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with('_'));
    }
    docs
}

fn sorted_by_id(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    docs
}

fn policy_rule(path: &str, kind: &str) -> Value {
    json!({"path": path, "clientEncryptionKeyId": "cek1", "encryptionType": kind,
           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_documents_are_the_official_sdks_ciphertext_and_round_trip() {
    let fx = Fixture::new().await;
    let (orders, plain) = fx
        .container("vectors", "/id", &common::read("policy.json"))
        .await;
    let docs = common::ndjson("plain.ndjson");
    for d in &docs {
        orders.create_item(d).await.unwrap();
    }

    // Read back with the plain client: byte for byte what @azure/cosmos 4.10.1 stores
    // (every path in the vectors' policy is Deterministic).
    let raw = stored(&plain).await;
    assert_eq!(raw, sorted_by_id(common::ndjson("enc.ndjson")));
    assert_ne!(raw, sorted_by_id(docs.clone()));

    // And the library decrypts them, by point read and by query.
    for d in &docs {
        let id = d["id"].as_str().unwrap();
        let back: Value = orders.read_item(&json!(id), id).await.unwrap().unwrap();
        assert_eq!(
            without_system_properties(vec![back]),
            std::slice::from_ref(d)
        );
    }
    let all: Vec<Value> = orders
        .query_items(&EncryptedQuery::new("SELECT * FROM c"), None)
        .await
        .unwrap();
    assert_eq!(
        sorted_by_id(without_system_properties(all)),
        sorted_by_id(docs)
    );
}

fn people_policy() -> String {
    json!({"includedPaths": [
        policy_rule("/ssn", "Deterministic"),
        policy_rule("/age", "Deterministic"),
        policy_rule("/address", "Randomized"),
    ], "policyFormatVersion": 2})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equality_queries_on_deterministic_paths_find_their_documents() {
    let fx = Fixture::new().await;
    let (people, plain) = fx.container("people", "/tenant", &people_policy()).await;
    let ada = json!({"id": "ada", "tenant": "t1", "ssn": "111-11-1111", "age": 36,
                     "address": {"city": "London"}});
    let bob = json!({"id": "bob", "tenant": "t1", "ssn": "222-22-2222", "age": 41,
                     "address": {"city": "Paris"}});
    let cy = json!({"id": "cy", "tenant": "t2", "ssn": "111-11-1111", "age": 36,
                    "address": {"city": "Rome"}});
    for d in [&ada, &bob, &cy] {
        people.upsert_item(d).await.unwrap();
    }

    // Stored as ciphertext: no plaintext value of an encrypted path reaches the server.
    for raw in stored(&plain).await {
        for p in ["ssn", "age"] {
            let s = raw[p].as_str().expect("an encrypted value is a string");
            assert!(!s.contains("111-11") && !s.contains("222-22") && s != "36");
        }
        let city = &raw["address"]["city"];
        assert!(city.is_string() && !["London", "Paris", "Rome"].contains(&city.as_str().unwrap()));
        assert!(
            raw["tenant"] == "t1" || raw["tenant"] == "t2",
            "plain paths stay plain"
        );
    }

    let by_ssn = EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
        .with_encrypted_parameter("@ssn", "/ssn", "111-11-1111");
    let found: Vec<Value> = people.query_items(&by_ssn, None).await.unwrap();
    let mut ids: Vec<&str> = found.iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ada", "cy"]);
    assert!(
        found.iter().any(|d| d["address"]["city"] == "London"),
        "decrypted"
    );

    // Scoped to one partition; a number parameter; a plain parameter beside it.
    let q = EncryptedQuery::new("SELECT * FROM c WHERE c.age = @age AND c.tenant = @t")
        .with_encrypted_parameter("@age", "/age", 36)
        .with_parameter("@t", "t2");
    let found: Vec<Value> = people.query_items(&q, Some(&json!("t2"))).await.unwrap();
    assert_eq!(without_system_properties(found), std::slice::from_ref(&cy));

    // A value nobody has finds nothing; the plaintext itself finds nothing either.
    let none: Vec<Value> =
        people
            .query_items(
                &EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
                    .with_encrypted_parameter("@ssn", "/ssn", "999-99-9999"),
                None,
            )
            .await
            .unwrap();
    assert!(none.is_empty());
    let none: Vec<Value> = people
        .query_items(
            &EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
                .with_parameter("@ssn", "111-11-1111"),
            None,
        )
        .await
        .unwrap();
    assert!(none.is_empty());

    // Randomized paths cannot be compared: refused before any request.
    let e =
        people
            .query_items::<Value>(
                &EncryptedQuery::new("SELECT * FROM c WHERE c.address = @a")
                    .with_encrypted_parameter("@a", "/address", json!({"city": "Rome"})),
                None,
            )
            .await
            .unwrap_err();
    assert!(matches!(e, Error::UnsupportedOperation { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_operations_on_an_encrypted_id_and_partition_key() {
    let fx = Fixture::new().await;
    let policy = json!({"includedPaths": [
        policy_rule("/id", "Deterministic"),
        policy_rule("/pk", "Deterministic"),
        policy_rule("/secret", "Randomized"),
    ], "policyFormatVersion": 2})
    .to_string();
    let (c, plain) = fx.container("idpk", "/pk", &policy).await;
    let doc = json!({"id": "order-1", "pk": "tenant-a", "secret": "s1", "n": 1});
    c.create_item(&doc).await.unwrap();

    // A second create is a conflict, reported without any plaintext.
    let e = c.create_item(&doc).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Cosmos {
                status: Some(409),
                ..
            }
        ),
        "{e}"
    );
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("order-1") && !shown.contains("tenant-a") && !shown.contains("s1\""));

    let raw = stored(&plain).await;
    assert_eq!(raw.len(), 1);
    assert_ne!(raw[0]["id"], "order-1");
    assert_ne!(raw[0]["pk"], "tenant-a");
    assert_eq!(raw[0]["id"], c.encrypt_id("order-1").unwrap());
    assert!(
        !raw[0]["id"].as_str().unwrap().contains(['+', '/']),
        "URL-safe id"
    );

    let pk = json!("tenant-a");
    let back: Value = c.read_item(&pk, "order-1").await.unwrap().unwrap();
    assert_eq!(back["secret"], "s1");
    assert_eq!(back["id"], "order-1");
    assert!(
        c.read_item::<Value>(&pk, "order-2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.read_item::<Value>(&json!("tenant-b"), "order-1")
            .await
            .unwrap()
            .is_none()
    );

    // Replace, then patch an encrypted and a plain property.
    c.replace_item(&json!({"id": "order-1", "pk": "tenant-a", "secret": "s2", "n": 2}))
        .await
        .unwrap();
    let back: Value = c.read_item(&pk, "order-1").await.unwrap().unwrap();
    assert_eq!(
        (back["secret"].as_str(), back["n"].as_i64()),
        (Some("s2"), Some(2))
    );
    c.patch_item(
        &pk,
        "order-1",
        &[
            PatchOperation::Set {
                path: "/secret".into(),
                value: json!("s3"),
            },
            PatchOperation::Set {
                path: "/n".into(),
                value: json!(3),
            },
        ],
    )
    .await
    .unwrap();
    let raw = stored(&plain).await;
    assert!(
        raw[0]["secret"].is_string() && raw[0]["secret"] != "s3",
        "patched value encrypted"
    );
    assert_eq!(raw[0]["n"], 3);
    let back: Value = c.read_item(&pk, "order-1").await.unwrap().unwrap();
    assert_eq!(back["secret"], "s3");
    let e = c
        .patch_item(
            &pk,
            "order-1",
            &[PatchOperation::Incr {
                path: "/secret".into(),
                value: json!(1),
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedOperation { .. }), "{e}");

    assert!(c.delete_item(&pk, "order-1").await.unwrap());
    assert!(!c.delete_item(&pk, "order-1").await.unwrap());
    assert!(stored(&plain).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_read_back_from_the_container() {
    let fx = Fixture::new().await;
    let (writer, plain) = fx.container("shared", "/tenant", &people_policy()).await;
    let info = read_container_encryption_info(&plain).await.unwrap();
    assert_eq!(info.partition_key_paths, ["/tenant"]);
    assert_eq!(
        serde_json::to_value(info.policy.unwrap()).unwrap(),
        serde_json::from_str::<Value>(&people_policy()).unwrap()
    );
    writer
        .create_item(&json!({"id": "1", "tenant": "t", "ssn": "x"}))
        .await
        .unwrap();
    // A second client knows nothing but the container and the key store.
    let reader = EncryptedContainer::new(
        fx.db.container_client("shared", None).await.unwrap(),
        &fx.resolver,
    )
    .await
    .unwrap();
    let back: Value = reader.read_item(&json!("t"), "1").await.unwrap().unwrap();
    assert_eq!(back["ssn"], "x");
    assert!(
        reader
            .request_headers()
            .any(|(k, v)| k == "x-ms-cosmos-is-client-encrypted" && v == "true")
    );

    // A container without a policy is refused.
    fx.db
        .create_container(ContainerProperties::new("plain", "/id".into()), None)
        .await
        .unwrap();
    let e = EncryptedContainer::new(
        fx.db.container_client("plain", None).await.unwrap(),
        &fx.resolver,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::InvalidPolicy { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_store_on_a_container() {
    let fx = Fixture::new().await;
    let keys = &fx.keys;
    let cek1 = keys.read("cek1").await.unwrap().unwrap();
    assert_eq!(
        cek1,
        ClientEncryptionKeyResource::from_json(&common::read("cek1.json")).unwrap()
    );
    assert!(keys.read("nope").await.unwrap().is_none());
    assert!(matches!(
        keys.create(cek1.clone()).await,
        Err(Error::KeyAlreadyExists { .. })
    ));

    // Keys created through the resolver land in the container and resolve.
    let created = fx
        .resolver
        .create_key(
            "cek2",
            always_encrypted::cipher::Algorithm::AeadAes256CbcHmacSha256,
            cek1.key_wrap_metadata().clone(),
        )
        .await
        .unwrap();
    let ids: Vec<String> = keys
        .list()
        .await
        .unwrap()
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    assert_eq!(ids, ["cek1", "cek2"]);
    fx.resolver.resolve("cek2").await.unwrap();

    // Replace is optimistic: a stale `expected` is refused and nothing is written.
    let rewrapped = created.with_wrapping(
        created.key_wrap_metadata().clone(),
        created.wrapped_data_encryption_key().to_vec(),
    );
    keys.replace(&created, rewrapped.clone()).await.unwrap();
    let stale = ClientEncryptionKeyResource::from_value({
        let mut v = created.to_value();
        v["wrappedDataEncryptionKey"] = json!("AAAA");
        v
    })
    .unwrap();
    assert!(matches!(
        keys.replace(&stale, rewrapped.clone()).await,
        Err(Error::KeyStoreConflict { .. })
    ));

    keys.delete("cek2").await.unwrap();
    assert!(matches!(
        keys.delete("cek2").await,
        Err(Error::KeyNotFound { .. })
    ));
    assert!(keys.read("cek2").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_client_encryption_headers() {
    let fx = Fixture::new().await;
    let (people, plain) = fx.container("people", "/tenant", &people_policy()).await;
    let rid = read_container_encryption_info(&plain).await.unwrap().rid;
    assert!(!rid.is_empty());

    let before = fx.server.requests().len();
    let doc = json!({"id": "1", "tenant": "t", "ssn": "x"});
    people.create_item(&doc).await.unwrap();
    people.upsert_item(&doc).await.unwrap();
    people.replace_item(&doc).await.unwrap();
    let _: Option<Value> = people.read_item(&json!("t"), "1").await.unwrap();
    let _: Vec<Value> = people
        .query_items(&EncryptedQuery::new("SELECT * FROM c"), Some(&json!("t")))
        .await
        .unwrap();
    people
        .patch_item(
            &json!("t"),
            "1",
            &[PatchOperation::Set {
                path: "/ssn".into(),
                value: json!("y"),
            }],
        )
        .await
        .unwrap();
    assert!(people.delete_item(&json!("t"), "1").await.unwrap());
    let encrypted: Vec<Value> = fx.server.requests()[before..]
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains("/colls/people/docs"))
        .cloned()
        .collect();
    let methods: Vec<&str> = encrypted
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    for m in ["POST", "PUT", "GET", "PATCH", "DELETE"] {
        assert!(methods.contains(&m), "no {m} in {methods:?}");
    }
    for r in &encrypted {
        assert_eq!(r["isClientEncrypted"], "true", "{r}");
        assert_eq!(r["intendedCollectionRid"], json!(rid), "{r}");
    }

    // The plain SDK client does not say it encrypts (it sends the collection rid itself).
    let before = fx.server.requests().len();
    stored(&plain).await;
    let plain_requests = &fx.server.requests()[before..];
    assert!(!plain_requests.is_empty());
    for r in plain_requests {
        assert_eq!(r["isClientEncrypted"], Value::Null, "{r}");
    }
}
