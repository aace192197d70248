//! Azure Key Vault key-encryption keys through the official Azure SDK for Rust
//! (`azure_security_keyvault_keys` 1.x).
//!
//! A client encryption key's `keyWrapMetadata.value` is the key URL
//! `https://<vault>.vault.azure.net/keys/<name>/<version>`; wrapping and unwrapping are
//! Key Vault's `wrapKey` / `unwrapKey` with `RSA-OAEP` (what the Microsoft SDKs write) or
//! `RSA-OAEP-256`, always against an explicit key version.

mod credential;
mod errors;
mod transport;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Transport};
use azure_security_keyvault_keys::models::{
    Key, KeyClientGetKeyOptions, KeyClientWrapKeyOptions, KeyOperationParameters, KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{
    DataEncryptionKey, KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind,
    KeyWrapAlgorithm, WrappedKey,
};
pub use credential::{CredentialChain, DefaultCredentialOptions};
use errors::{Operation, map_error};
pub use url::{KeyVaultKeyUrl, TrustedKeyVaultHosts};

/// Settings of the HTTP pipeline behind [`AzureKeyVaultProvider`] (and behind the default
/// credential chain it builds). `Default` gives production settings.
///
/// TLS trusts the platform's root certificates, every certificate in the PEM file named by
/// `SSL_CERT_FILE` (a corporate TLS-inspecting proxy, a test CA), and
/// [`extra_root_certificates`](Self::extra_root_certificates). On Linux the platform's roots
/// are found the way OpenSSL finds them, so there, as with OpenSSL, a set `SSL_CERT_FILE` or
/// `SSL_CERT_DIR` replaces the default bundle.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use always_encrypted::keys::{AzureKeyVaultOptions, AzureKeyVaultProvider, CredentialChain};
///
/// let mut options = AzureKeyVaultOptions::default();
/// options.request_timeout = Duration::from_secs(10);
/// options.api_version = Some("7.5".into());
/// # let credential = Arc::new(CredentialChain::new([]));
/// let kv = AzureKeyVaultProvider::new(credential, Some(options))?;
/// assert_eq!(kv.client_count(), 0);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Clone)]
pub struct AzureKeyVaultOptions {
    /// Retries of throttling (429, honouring `Retry-After`), 5xx, timeouts and network
    /// errors. Default: the SDK's exponential policy (8 retries, 200 ms doubling, at most
    /// 60 s in all). A failure still left after them is reported as
    /// [`KeyProviderErrorKind::Transient`].
    pub retry: RetryOptions,
    /// Time limit of one HTTP attempt, from connect to the end of the body. Default 30 s.
    pub request_timeout: Duration,
    /// Time limit of connecting (TCP and TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// More trusted root certificates (DER), besides the platform's and `SSL_CERT_FILE`'s.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Host names pinned to addresses, bypassing DNS (a private endpoint without private DNS,
    /// tests). The URL's port is used, not the address's.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Replaces the HTTP client built from the settings above (which are then ignored).
    pub custom_transport: Option<Transport>,
    /// The Key Vault REST API version; `None` for the SDK's default.
    pub api_version: Option<String>,
    /// The hosts and ports requests may go to. Default: Azure's Key Vault and Managed HSM
    /// domains ([`TrustedKeyVaultHosts::AZURE_SUFFIXES`]), port 443. A key URL elsewhere is
    /// refused before any request. Add a sovereign cloud's domain, or a private endpoint
    /// name that is not under those, with [`TrustedKeyVaultHosts::allow`].
    pub trusted_hosts: TrustedKeyVaultHosts,
}

impl Default for AzureKeyVaultOptions {
    fn default() -> Self {
        AzureKeyVaultOptions {
            retry: RetryOptions::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            extra_root_certificates: Vec::new(),
            resolve: Vec::new(),
            custom_transport: None,
            api_version: None,
            trusted_hosts: TrustedKeyVaultHosts::default(),
        }
    }
}

impl fmt::Debug for AzureKeyVaultOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultOptions")
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .field("resolve", &self.resolve)
            .field("custom_transport", &self.custom_transport.is_some())
            .field("api_version", &self.api_version)
            .field("trusted_hosts", &self.trusted_hosts)
            .finish()
    }
}

impl AzureKeyVaultOptions {
    /// The HTTP transport these options describe: [`Self::custom_transport`] if set,
    /// otherwise a new client with these timeouts, host pins and trusted roots (reading
    /// `SSL_CERT_FILE` now). Share one transport between several clients to share its
    /// connection pool.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`] when `SSL_CERT_FILE` is set but cannot be read or holds
    /// no certificate, or when no trusted root can be loaded.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{AzureKeyVaultOptions, AzureKeyVaultProvider};
    /// use always_encrypted::keys::{CredentialChain, DefaultCredentialOptions};
    ///
    /// // One connection pool for the credential chain and the vault clients.
    /// let mut options = AzureKeyVaultOptions::default();
    /// options.custom_transport = Some(options.transport()?);
    /// let transport = options.transport()?; // the custom one, shared
    /// let chain = DefaultCredentialOptions::default();
    /// let chain = CredentialChain::from_environment(&chain, Some(transport))?;
    /// let kv = AzureKeyVaultProvider::new(Arc::new(chain), Some(options))?;
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn transport(&self) -> Result<Transport> {
        if let Some(t) = &self.custom_transport {
            return Ok(t.clone());
        }
        let ssl_cert_file = std::env::var_os(transport::SSL_CERT_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let client =
            transport::build_http_client(self, ssl_cert_file.as_deref()).map_err(config_error)?;
        Ok(Transport::new(Arc::new(client)))
    }
}

fn config_error(reason: String) -> Error {
    Error::KeyProviderConfig {
        provider: AzureKeyVaultProvider::PROVIDER_TYPE,
        reason,
    }
}

/// Key-encryption keys in Azure Key Vault (or Managed HSM): RSA keys addressed by URL.
///
/// - [`wrap_key`](KeyEncryptionKeyProvider::wrap_key) first reads the key (`get key`): it
///   resolves an unversioned URL to the current version, and refuses a disabled key, a
///   non-RSA key, or one whose permitted operations lack `unwrapKey` (a key wrapped under it
///   could never be read back). Then it wraps with that explicit version and returns the
///   versioned URL in [`WrappedKey::kek_url`].
/// - [`unwrap_key`](KeyEncryptionKeyProvider::unwrap_key) needs a versioned URL, so key
///   rotation in Key Vault never strands a wrapped key.
/// - One SDK `KeyClient` per vault, made on first use and reused.
/// - A key URL whose host and port are not trusted
///   ([`AzureKeyVaultOptions::trusted_hosts`]) is refused before any request: no
///   connection, no token. The SDK's check that a token only goes to a host under the
///   resource the vault's 401 challenge names is on.
///
/// Errors carry a [`KeyProviderErrorKind`]: an untrusted host is `Untrusted` (its error
/// names the vault, not the key); 401/403 are `AccessDenied`; 404 `KeyNotFound`;
/// a disabled key (403, inner code `KeyDisabled`) `KeyDisabled`; 408/429/5xx, timeouts and
/// network errors, once the SDK's retries are spent, `Transient`; a 400 on unwrap
/// `InvalidWrappedKey`. Every message names the key URL; none holds a token or key bytes.
///
/// The caller's identity needs, on the key: `get`, `wrapKey`, `unwrapKey` (the built-in
/// RBAC role *Key Vault Crypto User* has them; with access policies, grant those three key
/// permissions).
///
/// # Examples
///
/// ```rust,no_run
/// use always_encrypted::keys::{
///     AzureKeyVaultProvider, DataEncryptionKey, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
/// };
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// // Service principal from AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, workload
/// // identity, managed identity, then `az` / `azd`, whichever works first.
/// let kv = AzureKeyVaultProvider::with_default_credential(None)?;
/// let dek = DataEncryptionKey::generate()?;
/// let wrapped = kv
///     .wrap_key("https://my-vault.vault.azure.net/keys/cosmos-kek", KeyWrapAlgorithm::RsaOaep, &dek)
///     .await?;
/// // wrapped.kek_url is versioned: https://my-vault.vault.azure.net/keys/cosmos-kek/<version>
/// let again = kv.unwrap_key(&wrapped.kek_url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes).await?;
/// assert_eq!(again.expose_secret(), dek.expose_secret());
/// # Ok(()) }
/// ```
pub struct AzureKeyVaultProvider {
    credential: Arc<dyn TokenCredential>,
    client_options: KeyClientOptions,
    trusted_hosts: TrustedKeyVaultHosts,
    clients: RwLock<HashMap<String, Arc<KeyClient>>>,
}

impl fmt::Debug for AzureKeyVaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vaults: Vec<String> = self
            .clients
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("AzureKeyVaultProvider")
            .field("credential", &self.credential)
            .field("trusted_hosts", &self.trusted_hosts)
            .field("vaults", &vaults)
            .finish_non_exhaustive()
    }
}

impl AzureKeyVaultProvider {
    /// The provider type written to `keyWrapMetadata.type`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{AZURE_KEY_VAULT, AzureKeyVaultProvider};
    ///
    /// assert_eq!(AzureKeyVaultProvider::PROVIDER_TYPE, AZURE_KEY_VAULT);
    /// ```
    pub const PROVIDER_TYPE: &'static str = "AZURE_KEY_VAULT";

    /// A provider that authenticates with `credential` (any `TokenCredential`: one from
    /// `azure_identity`, a [`CredentialChain`], your own).
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`] when the HTTP client cannot be built (see
    /// [`AzureKeyVaultOptions::transport`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::azure_core::credentials::TokenCredential;
    /// use always_encrypted::keys::{AzureKeyVaultProvider, KeyEncryptionKeyProvider};
    /// # let credential: Arc<dyn TokenCredential> = fake_key_vault::FakeCredential::new();
    /// // `credential`: e.g. an `azure_identity` credential of your choice.
    /// let kv = AzureKeyVaultProvider::new(credential, None)?;
    /// assert_eq!(kv.provider_type(), "AZURE_KEY_VAULT");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        options: Option<AzureKeyVaultOptions>,
    ) -> Result<AzureKeyVaultProvider> {
        let options = options.unwrap_or_default();
        let transport = options.transport()?;
        Ok(Self::with_transport(credential, &options, transport))
    }

    /// A provider that authenticates with the default credential chain (see
    /// [`DefaultCredentialOptions`]): service principal from `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`; workload identity; managed identity; the
    /// Azure CLI; the Azure Developer CLI. When none works, the error of the first Key Vault
    /// call lists each and why it failed.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`] when the HTTP client cannot be built.
    ///
    /// # Examples
    ///
    /// Making the provider sends nothing (the chain's sources are only set up); the first
    /// wrap or unwrap asks them for a token.
    ///
    /// ```
    /// use always_encrypted::keys::AzureKeyVaultProvider;
    ///
    /// let kv = AzureKeyVaultProvider::with_default_credential(None)?;
    /// assert_eq!(kv.client_count(), 0);
    /// assert!(format!("{kv:?}").contains(r#""managed identity", "Azure CLI""#));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn with_default_credential(
        options: Option<AzureKeyVaultOptions>,
    ) -> Result<AzureKeyVaultProvider> {
        Self::with_credential_chain(&DefaultCredentialOptions::default(), options)
    }

    /// Like [`Self::with_default_credential`], with some steps of the chain switched off.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`] when the HTTP client cannot be built.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{AzureKeyVaultProvider, DefaultCredentialOptions};
    ///
    /// // A workstation: skip managed identity (and its IMDS probe).
    /// let mut chain = DefaultCredentialOptions::default();
    /// chain.managed_identity = false;
    /// let kv = AzureKeyVaultProvider::with_credential_chain(&chain, None)?;
    /// assert_eq!(kv.client_count(), 0); // no vault contacted yet
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn with_credential_chain(
        chain: &DefaultCredentialOptions,
        options: Option<AzureKeyVaultOptions>,
    ) -> Result<AzureKeyVaultProvider> {
        let options = options.unwrap_or_default();
        let transport = options.transport()?;
        let credential = CredentialChain::from_environment(chain, Some(transport.clone()))?;
        Ok(Self::with_transport(
            Arc::new(credential),
            &options,
            transport,
        ))
    }

    fn with_transport(
        credential: Arc<dyn TokenCredential>,
        options: &AzureKeyVaultOptions,
        transport: Transport,
    ) -> AzureKeyVaultProvider {
        let mut client_options = KeyClientOptions {
            client_options: ClientOptions {
                transport: Some(transport),
                retry: options.retry.clone(),
                ..Default::default()
            },
            // The SDK's default too, set here on purpose: a bearer token only goes to a
            // host under the domain the vault's 401 challenge names as its resource.
            verify_challenge_resource: Some(true),
            ..Default::default()
        };
        if let Some(v) = &options.api_version {
            client_options.api_version.clone_from(v);
        }
        AzureKeyVaultProvider {
            credential,
            client_options,
            trusted_hosts: options.trusted_hosts.clone(),
            clients: RwLock::new(HashMap::new()),
        }
    }

    /// How many vault clients the provider holds (one per vault it has talked to).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{AzureKeyVaultOptions, AzureKeyVaultProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let vault = fake_key_vault::FakeKeyVault::start("myvault.vault.azure.net").await;
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # vault.add_key("kek1", "0123456789abcdef", fake_key_vault::rsa_key_from_pkcs8_pem(pem));
    /// # let mut options = AzureKeyVaultOptions::default();
    /// # options.extra_root_certificates = vec![vault.ca_certificate_der()];
    /// # options.resolve = vec![(vault.host().to_owned(), vault.addr())];
    /// # options.trusted_hosts.allow(&vault.host_and_port())?; // not 443: opt in
    /// # let credential = fake_key_vault::FakeCredential::new();
    /// # let kv = AzureKeyVaultProvider::new(credential, Some(options))?;
    /// // Here the vault is a local fake: https://myvault.vault.azure.net:<port>/keys/kek1
    /// # let url = vault.key_url("kek1", None);
    /// assert_eq!(kv.client_count(), 0);
    /// kv.resolve_key(&url).await?;
    /// kv.resolve_key(&url).await?;
    /// assert_eq!(kv.client_count(), 1); // one per vault, reused
    /// # Ok(()) }
    /// ```
    pub fn client_count(&self) -> usize {
        self.clients.read().map(|m| m.len()).unwrap_or(0)
    }

    /// The `KeyClient` for the vault of `url`, made once; refused for an untrusted host.
    /// Every request (get key, wrap, unwrap, and so the token request) goes through here.
    fn client(
        &self,
        url: &KeyVaultKeyUrl,
    ) -> std::result::Result<Arc<KeyClient>, KeyProviderError> {
        self.trusted_hosts.check(url)?;
        let vault = url.vault_url();
        if let Ok(map) = self.clients.read()
            && let Some(c) = map.get(vault)
        {
            return Ok(c.clone());
        }
        let mut map = self.clients.write().map_err(|_| {
            KeyProviderError::new(
                KeyProviderErrorKind::Other,
                url.to_string(),
                "the provider's client map is poisoned",
            )
        })?;
        if let Some(c) = map.get(vault) {
            return Ok(c.clone());
        }
        let client = KeyClient::new(
            vault,
            self.credential.clone(),
            Some(self.client_options.clone()),
        )
        .map_err(|e| {
            KeyProviderError::new(
                KeyProviderErrorKind::InvalidInput,
                url.to_string(),
                format!("cannot make a Key Vault client: {}", errors::error_text(&e)),
            )
        })?;
        let client = Arc::new(client);
        map.insert(vault.to_owned(), client.clone());
        Ok(client)
    }

    /// Reads the key (`get key`) at `kek_url`, versioned or not, and returns its versioned URL
    /// after checking it can wrap and unwrap: enabled, RSA, and (if the key restricts its
    /// operations) allowing `wrapKey` and `unwrapKey`.
    ///
    /// # Errors
    ///
    /// A [`KeyProviderError`]: `InvalidInput` for a bad URL or an unsuitable key,
    /// `KeyDisabled`, and the kinds of any Key Vault failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{AzureKeyVaultOptions, AzureKeyVaultProvider};
    /// use always_encrypted::keys::KeyProviderErrorKind;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let vault = fake_key_vault::FakeKeyVault::start("myvault.vault.azure.net").await;
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # vault.add_key("kek1", "0123456789abcdef", fake_key_vault::rsa_key_from_pkcs8_pem(pem));
    /// # let mut options = AzureKeyVaultOptions::default();
    /// # options.extra_root_certificates = vec![vault.ca_certificate_der()];
    /// # options.resolve = vec![(vault.host().to_owned(), vault.addr())];
    /// # options.trusted_hosts.allow(&vault.host_and_port())?; // not 443: opt in
    /// # let credential = fake_key_vault::FakeCredential::new();
    /// # let kv = AzureKeyVaultProvider::new(credential, Some(options))?;
    /// // Here the vault is a local fake: https://myvault.vault.azure.net:<port>/keys/kek1
    /// # let url = vault.key_url("kek1", None);
    /// let current = kv.resolve_key(&url).await?;
    /// assert_eq!(current.name(), "kek1");
    /// assert_eq!(current.version(), Some("0123456789abcdef"));
    /// let missing = kv.resolve_key(&vault.key_url("nope", None)).await.unwrap_err();
    /// assert_eq!(missing.kind(), KeyProviderErrorKind::KeyNotFound);
    /// # Ok(()) }
    /// ```
    pub async fn resolve_key(
        &self,
        kek_url: &str,
    ) -> std::result::Result<KeyVaultKeyUrl, KeyProviderError> {
        let url = KeyVaultKeyUrl::parse(kek_url)?;
        let client = self.client(&url)?;
        let shown = url.to_string();
        let options = KeyClientGetKeyOptions {
            key_version: url.version().map(str::to_owned),
            ..Default::default()
        };
        tracing::debug!(kek_url = shown.as_str(), "Key Vault: get key");
        let key: Key = client
            .get_key(url.name(), Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(&e, &shown, Operation::GetKey))
            .inspect_err(|e| log_failure(e, "get key"))?;
        let unsuitable = |why: String| {
            KeyProviderError::new(KeyProviderErrorKind::InvalidInput, shown.clone(), why)
        };
        if key.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
            return Err(KeyProviderError::new(
                KeyProviderErrorKind::KeyDisabled,
                shown.clone(),
                "the key is disabled in Key Vault",
            ));
        }
        let jwk = key
            .key
            .as_ref()
            .ok_or_else(|| unsuitable("Key Vault returned no key".into()))?;
        match &jwk.kty {
            Some(KeyType::Rsa | KeyType::RsaHsm) => {}
            other => {
                return Err(unsuitable(format!(
                    "not an RSA key (kty {other:?}); RSA-OAEP wrapping needs RSA or RSA-HSM"
                )));
            }
        }
        if let Some(ops) = &jwk.key_ops {
            for needed in ["wrapKey", "unwrapKey"] {
                if !ops.iter().any(|o| o == needed) {
                    return Err(unsuitable(format!(
                        "the key does not permit {needed} (its key_ops are {ops:?})"
                    )));
                }
            }
        }
        let kid = jwk
            .kid
            .as_deref()
            .ok_or_else(|| unsuitable("Key Vault returned no key id".into()))?;
        let kid = KeyVaultKeyUrl::parse(kid)
            .map_err(|e| unsuitable(format!("Key Vault returned a bad key id: {}", e.message())))?;
        let Some(version) = kid.version() else {
            return Err(unsuitable(
                "Key Vault returned an unversioned key id".into(),
            ));
        };
        if !kid.name().eq_ignore_ascii_case(url.name())
            || url
                .version()
                .is_some_and(|v| !v.eq_ignore_ascii_case(version))
        {
            return Err(unsuitable(format!(
                "Key Vault returned another key ({kid})"
            )));
        }
        // Keep the vault as the caller wrote it (the kid may use another host form).
        Ok(url.with_version(version))
    }
}

/// A failed Key Vault request, as a `tracing` event: the key URL, the error kind and the
/// message (never a token or key bytes).
fn log_failure(e: &KeyProviderError, operation: &'static str) {
    tracing::warn!(
        kek_url = e.kek_url(),
        kind = %e.kind(),
        operation,
        error = %e,
        "Key Vault request failed"
    );
}

fn request_body(algorithm: KeyWrapAlgorithm, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut encoded = Zeroizing::new(String::with_capacity(value.len() * 4 / 3 + 4));
    URL_SAFE_NO_PAD.encode_string(value, &mut encoded);
    let mut body = Zeroizing::new(Vec::with_capacity(encoded.len() + 40));
    body.extend_from_slice(br#"{"alg":""#);
    body.extend_from_slice(algorithm.as_str().as_bytes());
    body.extend_from_slice(br#"","value":""#);
    body.extend_from_slice(encoded.as_bytes());
    body.extend_from_slice(br#""}"#);
    body
}

fn check_algorithm(
    algorithm: KeyWrapAlgorithm,
    url: &str,
) -> std::result::Result<(), KeyProviderError> {
    match algorithm {
        KeyWrapAlgorithm::RsaOaep | KeyWrapAlgorithm::RsaOaep256 => Ok(()),
        #[allow(unreachable_patterns)] // KeyWrapAlgorithm is non_exhaustive
        other => Err(KeyProviderError::new(
            KeyProviderErrorKind::InvalidInput,
            url,
            format!("Key Vault wrapping does not support {other}"),
        )),
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKeyProvider for AzureKeyVaultProvider {
    fn provider_type(&self) -> &str {
        Self::PROVIDER_TYPE
    }

    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> std::result::Result<WrappedKey, KeyProviderError> {
        check_algorithm(algorithm, &url::redact_url(kek_url))?;
        let url = self.resolve_key(kek_url).await?;
        let shown = url.to_string();
        let client = self.client(&url)?;
        tracing::debug!(
            kek_url = shown.as_str(),
            algorithm = algorithm.as_str(),
            "Key Vault: wrapKey"
        );
        let body = request_body(algorithm, dek.expose_secret());
        let options = KeyClientWrapKeyOptions {
            key_version: url.version().map(str::to_owned),
            ..Default::default()
        };
        let result = client
            .wrap_key(
                url.name(),
                RequestContent::<KeyOperationParameters>::from_slice(&body),
                Some(options),
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(&e, &shown, Operation::WrapKey))
            .inspect_err(|e| log_failure(e, "wrapKey"))?;
        let bytes = result.result.filter(|b| !b.is_empty()).ok_or_else(|| {
            KeyProviderError::new(
                KeyProviderErrorKind::Other,
                shown.clone(),
                "Key Vault returned no wrapped key",
            )
        })?;
        if let Some(kid) = result.kid.as_deref()
            && let Ok(kid) = KeyVaultKeyUrl::parse(kid)
            && kid.version().is_some_and(|v| Some(v) != url.version())
        {
            return Err(KeyProviderError::new(
                KeyProviderErrorKind::Other,
                shown,
                format!("Key Vault wrapped with another key version ({kid})"),
            ));
        }
        Ok(WrappedKey {
            kek_url: shown,
            bytes,
        })
    }

    async fn unwrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> std::result::Result<DataEncryptionKey, KeyProviderError> {
        let url = KeyVaultKeyUrl::parse(kek_url)?;
        let shown = url.to_string();
        check_algorithm(algorithm, &shown)?;
        let Some(version) = url.version() else {
            return Err(KeyProviderError::new(
                KeyProviderErrorKind::InvalidInput,
                shown,
                "unwrapping needs a versioned key URL (…/keys/<name>/<version>): \
                 the current version may not be the one that wrapped the key",
            ));
        };
        if wrapped.is_empty() {
            return Err(KeyProviderError::new(
                KeyProviderErrorKind::InvalidWrappedKey,
                shown,
                "the wrapped key is empty",
            ));
        }
        let client = self.client(&url)?;
        tracing::debug!(
            kek_url = shown.as_str(),
            algorithm = algorithm.as_str(),
            "Key Vault: unwrapKey"
        );
        let body = request_body(algorithm, wrapped);
        let result = client
            .unwrap_key(
                url.name(),
                version,
                RequestContent::<KeyOperationParameters>::from_slice(&body),
                None,
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(&e, &shown, Operation::UnwrapKey))
            .inspect_err(|e| log_failure(e, "unwrapKey"))?;
        let bytes = Zeroizing::new(result.result.unwrap_or_default());
        DataEncryptionKey::from_bytes(&bytes).map_err(|_| {
            KeyProviderError::new(
                KeyProviderErrorKind::InvalidWrappedKey,
                shown,
                format!(
                    "the key unwrapped to {} bytes, not the {} of a data-encryption key",
                    bytes.len(),
                    DataEncryptionKey::LEN
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests;
