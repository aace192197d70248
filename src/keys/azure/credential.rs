//! The default credential chain: service principal from the environment, workload identity,
//! managed identity, then the developer tools (Azure CLI, Azure Developer CLI).

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureDeveloperCliCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

use super::errors::{error_text, is_transient};

/// Which steps of the default credential chain run (all by default), in this fixed order:
///
/// 1. **service principal** from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`
///    (`AZURE_AUTHORITY_HOST` picks another cloud's login endpoint);
/// 2. **workload identity** (Kubernetes) from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
///    `AZURE_FEDERATED_TOKEN_FILE`;
/// 3. **managed identity** (App Service, Functions, Container Apps, or a VM's IMDS endpoint,
///    which is first probed with a short timeout so the chain moves on quickly off Azure);
///    user-assigned when `managed_identity_client_id` or `AZURE_CLIENT_ID` is set;
/// 4. **Azure CLI** (`az account get-access-token`), then **Azure Developer CLI**
///    (`azd auth token`).
///
/// The first step that returns a token is used from then on.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{AzureKeyVaultProvider, DefaultCredentialOptions};
///
/// // On a build agent: the service principal only, no IMDS probe, no `az`.
/// let mut chain = DefaultCredentialOptions::default();
/// chain.workload_identity = false;
/// chain.managed_identity = false;
/// chain.developer_tools = false;
/// let kv = AzureKeyVaultProvider::with_credential_chain(&chain, None)?; // no request yet
/// assert_eq!(kv.client_count(), 0);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct DefaultCredentialOptions {
    /// Try the service principal from the environment.
    pub service_principal: bool,
    /// Try workload identity.
    pub workload_identity: bool,
    /// Try managed identity.
    pub managed_identity: bool,
    /// Client id of a user-assigned managed identity (default: `AZURE_CLIENT_ID`, if set).
    pub managed_identity_client_id: Option<String>,
    /// Try the Azure CLI and the Azure Developer CLI.
    pub developer_tools: bool,
    /// How long the IMDS probe waits for an answer (default 1 s).
    pub imds_probe_timeout: Duration,
}

impl Default for DefaultCredentialOptions {
    fn default() -> Self {
        DefaultCredentialOptions {
            service_principal: true,
            workload_identity: true,
            managed_identity: true,
            managed_identity_client_id: None,
            developer_tools: true,
            imds_probe_timeout: Duration::from_secs(1),
        }
    }
}

/// A `TokenCredential` that tries its sources in order and keeps the first that works.
///
/// When none works, the error names every source it tried and why each failed (without
/// tokens or secrets). Build the default chain with
/// [`AzureKeyVaultProvider::with_default_credential`](super::AzureKeyVaultProvider::with_default_credential)
/// or [`CredentialChain::from_environment`], or any chain with [`CredentialChain::new`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use always_encrypted::azure_core::credentials::TokenCredential;
/// use always_encrypted::keys::CredentialChain;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pipeline_token: Arc<dyn TokenCredential> = fake_key_vault::FakeCredential::new();
/// let empty = CredentialChain::new([]);
/// let e = empty.get_token(&["https://vault.azure.net/.default"], None).await.unwrap_err();
/// assert!(e.to_string().contains("the credential chain is empty"));
///
/// let chain = CredentialChain::new([("pipeline".to_owned(), pipeline_token)]);
/// chain.get_token(&["https://vault.azure.net/.default"], None).await?;
/// assert_eq!(chain.selected_source(), Some("pipeline"));
/// # Ok(()) }
/// ```
pub struct CredentialChain {
    sources: Vec<(String, Arc<dyn TokenCredential>)>,
    selected: AtomicUsize,
}

const NONE_SELECTED: usize = usize::MAX;

impl CredentialChain {
    /// A chain of named sources, tried in the order given.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::azure_core::credentials::TokenCredential;
    /// use always_encrypted::keys::{AzureKeyVaultProvider, CredentialChain};
    /// # let mine: Arc<dyn TokenCredential> = fake_key_vault::FakeCredential::new();
    /// # let fallback: Arc<dyn TokenCredential> = fake_key_vault::FakeCredential::new();
    /// let chain = CredentialChain::new([
    ///     ("my credential".to_owned(), mine),
    ///     ("fallback".to_owned(), fallback),
    /// ]);
    /// assert_eq!(chain.source_names(), ["my credential", "fallback"]);
    /// let kv = AzureKeyVaultProvider::new(Arc::new(chain), None)?;
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(
        sources: impl IntoIterator<Item = (String, Arc<dyn TokenCredential>)>,
    ) -> CredentialChain {
        CredentialChain {
            sources: sources.into_iter().collect(),
            selected: AtomicUsize::new(NONE_SELECTED),
        }
    }

    /// The default chain (see [`DefaultCredentialOptions`]) from this process's environment,
    /// its HTTP requests made with `transport` (see
    /// [`AzureKeyVaultOptions::transport`](super::AzureKeyVaultOptions::transport); `None`
    /// builds one from the default options).
    ///
    /// Steps that are not configured (say, no `AZURE_CLIENT_SECRET`) stay in the chain as
    /// sources that fail with the reason, so the final error lists them.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`](crate::Error::KeyProviderConfig) when the HTTP client
    /// cannot be built (for example an unreadable `SSL_CERT_FILE`).
    ///
    /// # Examples
    ///
    /// Building the chain reads the environment but sends nothing; the first token request
    /// does.
    ///
    /// ```
    /// use always_encrypted::keys::{AzureKeyVaultOptions, CredentialChain};
    /// use always_encrypted::keys::DefaultCredentialOptions;
    ///
    /// let transport = AzureKeyVaultOptions::default().transport()?;
    /// let options = DefaultCredentialOptions::default();
    /// let chain = CredentialChain::from_environment(&options, Some(transport))?;
    /// assert_eq!(
    ///     chain.source_names(),
    ///     [
    ///         "service principal (environment)",
    ///         "workload identity",
    ///         "managed identity",
    ///         "Azure CLI",
    ///         "Azure Developer CLI",
    ///     ]
    /// );
    /// assert_eq!(chain.selected_source(), None);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_environment(
        options: &DefaultCredentialOptions,
        transport: Option<Transport>,
    ) -> crate::Result<CredentialChain> {
        let transport = match transport {
            Some(t) => t,
            None => super::AzureKeyVaultOptions::default().transport()?,
        };
        let probe = Some(ImdsProbe {
            transport: transport.clone(),
            url: IMDS_PROBE_URL.to_owned(),
        });
        Ok(build_chain(
            options,
            &transport,
            &|name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()),
            probe,
        ))
    }

    /// The names of the sources, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{CredentialChain, DefaultCredentialOptions};
    ///
    /// let chain = CredentialChain::from_environment(&DefaultCredentialOptions::default(), None)?;
    /// assert_eq!(chain.source_names().first(), Some(&"service principal (environment)"));
    /// assert_eq!(CredentialChain::new([]).source_names(), Vec::<&str>::new());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The name of the source in use, once one has returned a token.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::azure_core::credentials::TokenCredential;
    /// use always_encrypted::keys::CredentialChain;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ci: Arc<dyn TokenCredential> = fake_key_vault::FakeCredential::new();
    /// let chain = CredentialChain::new([("ci".to_owned(), ci)]);
    /// assert_eq!(chain.selected_source(), None); // nothing asked yet
    /// chain.get_token(&["https://vault.azure.net/.default"], None).await?;
    /// assert_eq!(chain.selected_source(), Some("ci"));
    /// # Ok(()) }
    /// ```
    pub fn selected_source(&self) -> Option<&str> {
        let i = self.selected.load(Ordering::Acquire);
        self.sources.get(i).map(|(n, _)| n.as_str())
    }
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChain")
            .field("sources", &self.source_names())
            .field("selected", &self.selected_source())
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for CredentialChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let selected = self.selected.load(Ordering::Acquire);
        if let Some((_, source)) = self.sources.get(selected) {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::with_capacity(self.sources.len());
        let mut transient = false;
        for (i, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.selected.store(i, Ordering::Release);
                    return Ok(token);
                }
                Err(e) => {
                    transient |= is_transient(&e);
                    failures.push(format!("{name}: {}", error_text(&e)));
                }
            }
        }
        let message = if failures.is_empty() {
            "no credential could get a token: the credential chain is empty".to_owned()
        } else {
            format!(
                "no credential could get a token; tried, in order: {}",
                failures.join("; ")
            )
        };
        // A source that met a passing fault (network, 5xx) makes the whole failure passing:
        // the SDK's retry policy retries Io errors, and the provider reports it as transient.
        let kind = if transient {
            ErrorKind::Io
        } else {
            ErrorKind::Credential
        };
        Err(azure_core::Error::with_message(kind, message))
    }
}

/// A source that is not configured: it always fails with the reason.
#[derive(Debug)]
struct Unavailable(String);

#[async_trait::async_trait]
impl TokenCredential for Unavailable {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            self.0.clone(),
        ))
    }
}

fn unavailable(reason: impl Into<String>) -> Arc<dyn TokenCredential> {
    Arc::new(Unavailable(reason.into()))
}

pub(crate) const SERVICE_PRINCIPAL: &str = "service principal (environment)";
pub(crate) const WORKLOAD_IDENTITY: &str = "workload identity";
pub(crate) const MANAGED_IDENTITY: &str = "managed identity";
pub(crate) const AZURE_CLI: &str = "Azure CLI";
pub(crate) const AZURE_DEVELOPER_CLI: &str = "Azure Developer CLI";

const IMDS_PROBE_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Where and how to probe the IMDS endpoint before trying a VM's managed identity.
#[derive(Clone)]
pub(crate) struct ImdsProbe {
    pub(crate) transport: Transport,
    pub(crate) url: String,
}

/// Builds the default chain with `env` as the environment (tests pass a map).
pub(crate) fn build_chain(
    options: &DefaultCredentialOptions,
    transport: &Transport,
    env: &dyn Fn(&str) -> Option<String>,
    imds_probe: Option<ImdsProbe>,
) -> CredentialChain {
    let client_options = || ClientOptions {
        transport: Some(transport.clone()),
        ..Default::default()
    };
    let missing = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| env(n).is_none())
            .map(|n| (*n).to_owned())
            .collect()
    };
    let off = || unavailable("switched off in DefaultCredentialOptions");
    let mut sources: Vec<(String, Arc<dyn TokenCredential>)> = Vec::with_capacity(5);

    // 1. Service principal with a client secret.
    let sp: Arc<dyn TokenCredential> = if !options.service_principal {
        off()
    } else {
        let vars = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];
        match (env(vars[0]), env(vars[1]), env(vars[2])) {
            (Some(tenant), Some(client), Some(secret)) => {
                match ClientSecretCredential::new(
                    &tenant,
                    client,
                    Secret::new(secret),
                    Some(ClientSecretCredentialOptions {
                        client_options: client_options(),
                    }),
                ) {
                    Ok(c) => c,
                    Err(e) => unavailable(format!("misconfigured: {}", error_text(&e))),
                }
            }
            _ => unavailable(format!(
                "not configured ({} not set)",
                missing(&vars).join(", ")
            )),
        }
    };
    sources.push((SERVICE_PRINCIPAL.to_owned(), sp));

    // 2. Workload identity.
    let wi: Arc<dyn TokenCredential> = if !options.workload_identity {
        off()
    } else {
        let vars = [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
        ];
        match (env(vars[0]), env(vars[1]), env(vars[2])) {
            (Some(tenant), Some(client), Some(file)) => {
                match WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    client_id: Some(client),
                    tenant_id: Some(tenant),
                    token_file_path: Some(file.into()),
                })) {
                    Ok(c) => c,
                    Err(e) => unavailable(format!("misconfigured: {}", error_text(&e))),
                }
            }
            _ => unavailable(format!(
                "not configured ({} not set)",
                missing(&vars).join(", ")
            )),
        }
    };
    sources.push((WORKLOAD_IDENTITY.to_owned(), wi));

    // 3. Managed identity.
    let mi: Arc<dyn TokenCredential> = if !options.managed_identity {
        off()
    } else {
        let client_id = options
            .managed_identity_client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"));
        match ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(UserAssignedId::ClientId),
            client_options: client_options(),
        })) {
            Ok(c) => {
                // App Service, Functions, Container Apps, Arc, ... set these: the endpoint is
                // local and answers at once. Without them it is a VM's IMDS, probed first.
                let local_endpoint =
                    env("IDENTITY_ENDPOINT").is_some() || env("MSI_ENDPOINT").is_some();
                match imds_probe {
                    Some(probe) if !local_endpoint => Arc::new(ImdsProbed {
                        inner: c,
                        probe,
                        timeout: options.imds_probe_timeout,
                        reachable: Mutex::new(false),
                    }),
                    _ => c,
                }
            }
            Err(e) => unavailable(format!("unavailable: {}", error_text(&e))),
        }
    };
    sources.push((MANAGED_IDENTITY.to_owned(), mi));

    // 4. Developer tools.
    let (cli, azd): (Arc<dyn TokenCredential>, Arc<dyn TokenCredential>) =
        if options.developer_tools {
            (
                AzureCliCredential::new(None)
                    .map(|c| c as Arc<dyn TokenCredential>)
                    .unwrap_or_else(|e| unavailable(error_text(&e))),
                AzureDeveloperCliCredential::new(None)
                    .map(|c| c as Arc<dyn TokenCredential>)
                    .unwrap_or_else(|e| unavailable(error_text(&e))),
            )
        } else {
            (off(), off())
        };
    sources.push((AZURE_CLI.to_owned(), cli));
    sources.push((AZURE_DEVELOPER_CLI.to_owned(), azd));

    CredentialChain::new(sources)
}

/// A VM managed identity behind a quick reachability probe of the IMDS endpoint: off Azure,
/// the SDK's own retries of an unreachable IMDS take over a minute.
struct ImdsProbed {
    inner: Arc<ManagedIdentityCredential>,
    probe: ImdsProbe,
    timeout: Duration,
    reachable: Mutex<bool>,
}

impl fmt::Debug for ImdsProbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsProbed")
            .field("url", &self.probe.url)
            .finish_non_exhaustive()
    }
}

impl ImdsProbed {
    /// Probes until the endpoint has answered once; a failed probe is tried again on the
    /// next token request (a VM's IMDS can be briefly unreachable at boot).
    async fn probe(&self) -> bool {
        if self.reachable.lock().is_ok_and(|g| *g) {
            return true;
        }
        let reachable = probe_once(&self.probe, self.timeout).await;
        if reachable && let Ok(mut guard) = self.reachable.lock() {
            *guard = true;
        }
        reachable
    }
}

/// True when anything answers HTTP at the probe URL within `timeout`.
pub(crate) async fn probe_once(probe: &ImdsProbe, timeout: Duration) -> bool {
    use azure_core::http::{Context, Method, Request, Url};
    let Ok(url) = Url::parse(&probe.url) else {
        return false;
    };
    let mut request = Request::new(url, Method::Get);
    request.insert_header("metadata", "true");
    let ctx = Context::new();
    let send = probe.transport.send(&ctx, &mut request);
    let timer = azure_core::sleep::sleep(time_duration(timeout));
    futures_select(send, timer).await.is_some_and(|r| r.is_ok())
}

fn time_duration(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::seconds(1))
}

/// The first of `work` and `timer` to finish: `Some(output)` for `work`, `None` for `timer`.
async fn futures_select<F, T>(work: F, timer: T) -> Option<F::Output>
where
    F: Future,
    T: Future<Output = ()>,
{
    let mut work = std::pin::pin!(work);
    let mut timer = std::pin::pin!(timer);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await
}

#[async_trait::async_trait]
impl TokenCredential for ImdsProbed {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if !self.probe().await {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "no managed identity endpoint: nothing answered at {} within {} ms",
                    self.probe.url,
                    self.timeout.as_millis()
                ),
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct Fixed {
        token: Option<&'static str>,
        calls: AtomicUsize,
    }

    impl Fixed {
        fn new(token: Option<&'static str>) -> Arc<Fixed> {
            Arc::new(Fixed {
                token,
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl TokenCredential for Fixed {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.token {
                Some(t) => Ok(AccessToken::new(
                    Secret::new(t),
                    azure_core::time::OffsetDateTime::now_utc()
                        + azure_core::time::Duration::hours(1),
                )),
                None => Err(azure_core::Error::with_message(
                    ErrorKind::Credential,
                    "fixed failure",
                )),
            }
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn first_working_source_wins_and_sticks() {
        let a = Fixed::new(None);
        let b = Fixed::new(Some("tok-b"));
        let c = Fixed::new(Some("tok-c"));
        let chain = CredentialChain::new([
            ("a".to_owned(), a.clone() as Arc<dyn TokenCredential>),
            ("b".to_owned(), b.clone() as Arc<dyn TokenCredential>),
            ("c".to_owned(), c.clone() as Arc<dyn TokenCredential>),
        ]);
        let t = block_on(chain.get_token(&["s"], None)).unwrap();
        assert_eq!(t.token.secret(), "tok-b");
        let t = block_on(chain.get_token(&["s"], None)).unwrap();
        assert_eq!(t.token.secret(), "tok-b");
        assert_eq!(chain.selected_source(), Some("b"));
        assert_eq!(
            a.calls.load(Ordering::SeqCst),
            1,
            "a is not retried once b works"
        );
        assert_eq!(b.calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.calls.load(Ordering::SeqCst), 0);
        let dbg = format!("{chain:?}");
        assert!(dbg.contains("\"b\"") && !dbg.contains("tok-b"), "{dbg}");
    }

    #[test]
    fn default_chain_order_and_error_lists_every_source() {
        let env: HashMap<&str, &str> = HashMap::from([("AZURE_TENANT_ID", "t")]);
        let options = DefaultCredentialOptions {
            managed_identity: false, // never probe 169.254.169.254 from a test
            developer_tools: false,  // never run `az` from a test
            ..Default::default()
        };
        let transport = crate::keys::AzureKeyVaultOptions::default()
            .transport()
            .unwrap();
        let chain = build_chain(
            &options,
            &transport,
            &|n: &str| env.get(n).map(|v| (*v).to_owned()),
            None,
        );
        assert_eq!(
            chain.source_names(),
            [
                SERVICE_PRINCIPAL,
                WORKLOAD_IDENTITY,
                MANAGED_IDENTITY,
                AZURE_CLI,
                AZURE_DEVELOPER_CLI
            ]
        );
        let e = block_on(chain.get_token(&["https://vault.azure.net/.default"], None)).unwrap_err();
        let msg = e.to_string();
        for expected in [
            "service principal (environment): not configured (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set)",
            "workload identity: not configured (AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE not set)",
            "managed identity: switched off",
            "Azure CLI: switched off",
            "Azure Developer CLI: switched off",
        ] {
            assert!(msg.contains(expected), "missing {expected:?} in {msg}");
        }
        assert!(matches!(e.kind(), ErrorKind::Credential));
    }

    #[test]
    fn workload_identity_with_a_missing_token_file_says_so() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token"),
        ]);
        let options = DefaultCredentialOptions {
            service_principal: false,
            managed_identity: false,
            developer_tools: false,
            ..Default::default()
        };
        let transport = crate::keys::AzureKeyVaultOptions::default()
            .transport()
            .unwrap();
        let chain = build_chain(
            &options,
            &transport,
            &|n: &str| env.get(n).map(|v| (*v).to_owned()),
            None,
        );
        let msg = block_on(chain.get_token(&["s"], None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("workload identity: misconfigured"), "{msg}");
        assert!(
            msg.contains("service principal (environment): switched off"),
            "{msg}"
        );
    }

    #[test]
    fn imds_probe_times_out_quickly_on_a_silent_endpoint_and_succeeds_on_an_answer() {
        use std::io::{Read, Write};
        let transport = crate::keys::AzureKeyVaultOptions::default()
            .transport()
            .unwrap();

        // A listener that accepts and never answers: the probe gives up at its timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let probe = ImdsProbe {
            transport: transport.clone(),
            url: format!(
                "http://{}/metadata/identity/oauth2/token",
                silent.local_addr().unwrap()
            ),
        };
        let start = std::time::Instant::now();
        assert!(!block_on(probe_once(&probe, Duration::from_millis(200))));
        assert!(start.elapsed() < Duration::from_secs(5));

        // A listener that answers anything (even 400) counts as a managed identity endpoint.
        let answering = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = answering.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = answering.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
        });
        let probe = ImdsProbe {
            transport,
            url: format!("http://{addr}/metadata/identity/oauth2/token"),
        };
        assert!(block_on(probe_once(&probe, Duration::from_secs(5))));
        server.join().unwrap();
        drop(silent);
    }

    #[test]
    fn an_unreachable_imds_fails_fast_with_the_reason_and_is_probed_again() {
        let transport = crate::keys::AzureKeyVaultOptions::default()
            .transport()
            .unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/metadata/identity/oauth2/token",
            silent.local_addr().unwrap()
        );
        let inner = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            client_options: ClientOptions {
                transport: Some(transport.clone()),
                ..Default::default()
            },
            ..Default::default()
        }))
        .unwrap();
        let probed = ImdsProbed {
            inner,
            probe: ImdsProbe {
                transport,
                url: url.clone(),
            },
            timeout: Duration::from_millis(100),
            reachable: Mutex::new(false),
        };
        for _ in 0..2 {
            let start = std::time::Instant::now();
            let e = block_on(probed.get_token(&["https://vault.azure.net/.default"], None))
                .unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(5));
            assert!(
                e.to_string().contains("no managed identity endpoint"),
                "{e}"
            );
            assert!(e.to_string().contains(&url), "{e}");
        }
        assert!(
            !*probed.reachable.lock().unwrap(),
            "a failed probe is not remembered"
        );
    }
}
