//! Test support: a fake Azure Key Vault that speaks the keys subset of the REST API the
//! Azure SDK's `KeyClient` calls (get key, `wrapkey`, `unwrapkey`), over real HTTPS on
//! 127.0.0.1, with a real RSA key and fault injection.
//!
//! **Insecure, for tests only.** The TLS certificate is made at start-up by a throw-away CA
//! whose certificate [`FakeKeyVault::ca_certificate_der`] hands out; the bearer token is the
//! fixed [`FakeCredential::TOKEN`].
//!
//! What it does, as Key Vault does:
//! - a request without `Authorization: Bearer <token>` (the SDK's first, bodiless request)
//!   gets `401` with `WWW-Authenticate: Bearer authorization="…", resource="https://vault.azure.net"`
//!   (another resource with [`FakeKeyVault::set_challenge_resource`]);
//! - `GET /keys/{name}[/{version}]` returns the public JWK (`kid` always versioned) and the
//!   key's attributes (`enabled`);
//! - `POST /keys/{name}/{version}/wrapkey|unwrapkey` with `{"alg","value"}` does RSA-OAEP
//!   (SHA-1) or RSA-OAEP-256 with the key and returns `{"kid","value"}`;
//! - `unwrapkey` on a disabled key answers `403` with code `Forbidden` and inner code
//!   `KeyDisabled`; a wrap is allowed (the real service allows public-key operations on a
//!   disabled key); an unknown key or version answers `404 KeyNotFound`.
//!
//! Faults ([`Fault`]) apply to authorized requests: queued ones to the next requests in order,
//! a persistent one to every request until cleared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, PrivateKey};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A fault the fake injects instead of (or before) its normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `403 Forbidden` (inner code `ForbiddenByRbac`): the caller may not use the key.
    Forbidden,
    /// `404 KeyNotFound`.
    NotFound,
    /// `429 Throttled` with `Retry-After: {retry_after_secs}`.
    Throttled {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// `500 InternalServerError`.
    ServerError,
    /// `503 ServiceUnavailable`.
    Unavailable,
    /// Answers normally, after this delay.
    Slow(Duration),
    /// Closes the connection without answering.
    DropConnection,
}

/// Counts of requests the fake received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered with the `401` bearer challenge (no or a wrong token).
    pub challenges: usize,
    /// Authorized `GET /keys/...` requests (faulted ones included).
    pub get_key: usize,
    /// Authorized `wrapkey` requests (faulted ones included).
    pub wrap: usize,
    /// Authorized `unwrapkey` requests (faulted ones included).
    pub unwrap: usize,
    /// Faults injected.
    pub faults: usize,
}

struct Version {
    version: String,
    key: PrivateKey,
    enabled: bool,
}

#[derive(Default)]
struct State {
    /// The `resource` of the 401 challenge; `None` for `https://vault.azure.net`.
    challenge_resource: Option<String>,
    keys: HashMap<String, Vec<Version>>,
    queued: VecDeque<Fault>,
    persistent: Option<Fault>,
    counts: Counts,
    log: Vec<String>,
}

/// The fake Key Vault. Serves until dropped.
pub struct FakeKeyVault {
    host: String,
    addr: SocketAddr,
    ca_der: Vec<u8>,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FakeKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKeyVault")
            .field("host", &self.host)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeKeyVault {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKeyVault {
    /// Starts a fake vault for `host` (e.g. `fake.vault.azure.net`: the SDK checks that the
    /// challenge's resource `vault.azure.net` is a suffix of the host) on 127.0.0.1 and a free
    /// port. Needs a Tokio runtime with the `net` and `time` drivers.
    pub async fn start(host: &str) -> FakeKeyVault {
        let (tls, ca_der) = tls_config(host);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let origin = format!("https://{host}:{}", addr.port());
        let server = tokio::spawn(serve(listener, acceptor, state.clone(), origin));
        FakeKeyVault {
            host: host.to_owned(),
            addr,
            ca_der,
            state,
            server,
        }
    }

    /// The host name the certificate is for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The socket address it listens on (127.0.0.1 and a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{host}:{port}`: what a client must trust to talk to the fake (its port is not 443),
    /// e.g. with `AzureKeyVaultOptions::trusted_hosts`.
    pub fn host_and_port(&self) -> String {
        format!("{}:{}", self.host, self.addr.port())
    }

    /// `https://{host}:{port}`: resolve `host` to [`Self::addr`] to reach it.
    pub fn vault_url(&self) -> String {
        format!("https://{}:{}", self.host, self.addr.port())
    }

    /// `{vault_url}/keys/{name}[/{version}]`.
    pub fn key_url(&self, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/keys/{name}/{v}", self.vault_url()),
            None => format!("{}/keys/{name}", self.vault_url()),
        }
    }

    /// DER of the throw-away CA that issued the server certificate: trust it in the client.
    pub fn ca_certificate_der(&self) -> Vec<u8> {
        self.ca_der.clone()
    }

    /// Adds `version` of key `name`; it becomes the current version.
    pub fn add_key(&self, name: &str, version: &str, key: PrivateKey) {
        self.state
            .lock()
            .unwrap()
            .keys
            .entry(name.to_owned())
            .or_default()
            .push(Version {
                version: version.to_owned(),
                key,
                enabled: true,
            });
    }

    /// Enables or disables one version of a key.
    pub fn set_enabled(&self, name: &str, version: &str, enabled: bool) {
        let mut st = self.state.lock().unwrap();
        let v = st
            .keys
            .get_mut(name)
            .and_then(|vs| vs.iter_mut().find(|v| v.version == version))
            .expect("no such key version in the fake");
        v.enabled = enabled;
    }

    /// Deletes key `name` (all versions).
    pub fn delete_key(&self, name: &str) {
        self.state.lock().unwrap().keys.remove(name);
    }

    /// Makes the 401 bearer challenge name `resource` (e.g. `https://attacker.example`)
    /// instead of `https://vault.azure.net`: a client that checks the challenge must then
    /// not ask for, or send, a token.
    pub fn set_challenge_resource(&self, resource: &str) {
        self.state.lock().unwrap().challenge_resource = Some(resource.to_owned());
    }

    /// Queues a fault for the next authorized request (after those already queued).
    pub fn push_fault(&self, fault: Fault) {
        self.state.lock().unwrap().queued.push_back(fault);
    }

    /// Sets (or clears) a fault for every authorized request; queued faults go first.
    pub fn set_persistent_fault(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().persistent = fault;
    }

    /// The request counts so far.
    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }

    /// Every request so far as `METHOD /path` (without the query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

/// A `TokenCredential` that hands out the fake's fixed token and counts its calls.
pub struct FakeCredential {
    token: String,
    calls: AtomicUsize,
}

impl FakeCredential {
    /// The token the fake vault accepts. Tests check it never shows in errors or `Debug`.
    pub const TOKEN: &'static str = "fake-bearer-token-7f3a9c";

    /// A credential that returns [`Self::TOKEN`].
    pub fn new() -> Arc<FakeCredential> {
        Self::with_token(Self::TOKEN)
    }

    /// A credential that returns another token (which the fake rejects with `401`).
    pub fn with_token(token: &str) -> Arc<FakeCredential> {
        Arc::new(FakeCredential {
            token: token.to_owned(),
            calls: AtomicUsize::new(0),
        })
    }

    /// How many tokens it handed out.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for FakeCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeCredential").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(AccessToken::new(
            Secret::new(self.token.clone()),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// The RSA-2048 key of the known-answer vectors (`shared/testvectors/.../kek.pem`, PKCS#8 PEM).
pub fn rsa_key_from_pkcs8_pem(pem: &str) -> PrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    PrivateKey::from_pkcs8_pem(pem).unwrap()
}

/// A fresh RSA-2048 key.
pub fn generate_rsa_key() -> PrivateKey {
    PrivateKey::new(&mut rand::rng(), 2048).unwrap()
}

fn tls_config(host: &str) -> (rustls::ServerConfig, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fake-key-vault test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let ca_der = ca.der().to_vec();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (config, ca_der)
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<State>>,
    origin: String,
) {
    let origin: Arc<str> = origin.into();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let origin = origin.clone();
                async move { handle(&state, &origin, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The service's error closes the connection without an answer: that is how
/// [`Fault::DropConnection`] works.
type Reply = Result<Response<Full<Bytes>>, std::io::Error>;

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ms-keyvault-service-version", "fake")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error_reply(
    status: StatusCode,
    code: &str,
    inner: Option<&str>,
    message: &str,
) -> Response<Full<Bytes>> {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = serde_json::json!({ "code": inner });
    }
    json_reply(status, serde_json::json!({ "error": error }))
}

fn challenge(resource: Option<&str>) -> Response<Full<Bytes>> {
    let resource = resource.unwrap_or("https://vault.azure.net");
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(
            "www-authenticate",
            format!(
                r#"Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="{resource}""#
            ),
        )
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from_static(
            br#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#,
        )))
        .unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Wrap,
    Unwrap,
}

async fn handle(state: &Mutex<State>, origin: &str, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", FakeCredential::TOKEN));
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();

    // Route: /keys/{name}[/{version}[/{op}]]
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route = match (method.as_str(), segs.as_slice()) {
        ("GET", ["keys", name]) | ("GET", ["keys", name, ""]) => Some((Op::Get, *name, None)),
        ("GET", ["keys", name, version]) => Some((Op::Get, *name, Some(*version))),
        ("POST", ["keys", name, version, "wrapkey"]) => Some((Op::Wrap, *name, Some(*version))),
        ("POST", ["keys", name, version, "unwrapkey"]) => Some((Op::Unwrap, *name, Some(*version))),
        _ => None,
    };

    let fault = {
        let mut st = state.lock().unwrap();
        st.log.push(format!("{method} {path}"));
        if !authorized {
            st.counts.challenges += 1;
            return Ok(challenge(st.challenge_resource.as_deref()));
        }
        match route {
            Some((Op::Get, ..)) => st.counts.get_key += 1,
            Some((Op::Wrap, ..)) => st.counts.wrap += 1,
            Some((Op::Unwrap, ..)) => st.counts.unwrap += 1,
            None => {}
        }
        let fault = st.queued.pop_front().or_else(|| st.persistent.clone());
        if fault.is_some() {
            st.counts.faults += 1;
        }
        fault
    };

    match fault {
        None => {}
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::DropConnection) => {
            return Err(std::io::Error::other("fault: dropping the connection"));
        }
        Some(Fault::Forbidden) => {
            return Ok(error_reply(
                StatusCode::FORBIDDEN,
                "Forbidden",
                Some("ForbiddenByRbac"),
                "Caller is not authorized to perform action on resource.",
            ));
        }
        Some(Fault::NotFound) => {
            return Ok(error_reply(
                StatusCode::NOT_FOUND,
                "KeyNotFound",
                None,
                "A key with (name/id) was not found in this key vault.",
            ));
        }
        Some(Fault::Throttled { retry_after_secs }) => {
            let mut r = error_reply(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                None,
                "Request was not processed because too many requests were received.",
            );
            r.headers_mut()
                .insert("retry-after", retry_after_secs.to_string().parse().unwrap());
            return Ok(r);
        }
        Some(Fault::ServerError) => {
            return Ok(error_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                None,
                "An unexpected error occurred.",
            ));
        }
        Some(Fault::Unavailable) => {
            return Ok(error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                None,
                "The service is unavailable.",
            ));
        }
    }

    if !query.split('&').any(|p| p.starts_with("api-version=")) {
        return Ok(error_reply(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            "The api-version query parameter is missing.",
        ));
    }
    let Some((op, name, version)) = route else {
        return Ok(error_reply(
            StatusCode::NOT_FOUND,
            "NotFound",
            None,
            "No such operation.",
        ));
    };

    let st = state.lock().unwrap();
    let Some(versions) = st.keys.get(name) else {
        return Ok(error_reply(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            None,
            &format!("A key with (name/id) {name} was not found in this key vault."),
        ));
    };
    let entry = match version {
        None | Some("") => versions.last(),
        Some(v) => versions.iter().find(|e| e.version.eq_ignore_ascii_case(v)),
    };
    let Some(entry) = entry else {
        return Ok(error_reply(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            None,
            &format!(
                "A key with (name/id) {name}/{} was not found in this key vault.",
                version.unwrap_or("")
            ),
        ));
    };
    let kid = format!("{origin}/keys/{name}/{}", entry.version);

    match op {
        Op::Get => {
            let public = entry.key.to_public_key();
            Ok(json_reply(
                StatusCode::OK,
                serde_json::json!({
                    "key": {
                        "kid": kid,
                        "kty": "RSA",
                        "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
                        "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
                        "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
                    },
                    "attributes": {
                        "enabled": entry.enabled,
                        "created": 1_700_000_000,
                        "updated": 1_700_000_000,
                        "recoveryLevel": "Recoverable+Purgeable",
                    }
                }),
            ))
        }
        Op::Wrap | Op::Unwrap => {
            if op == Op::Unwrap && !entry.enabled {
                return Ok(error_reply(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    Some("KeyDisabled"),
                    "Operation unwrapKey is not allowed on a disabled key.",
                ));
            }
            let Ok(params) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return Ok(bad_parameter("The request body is not JSON."));
            };
            let alg = params["alg"].as_str().unwrap_or("");
            let Some(value) = params["value"].as_str().and_then(decode_b64) else {
                return Ok(bad_parameter("The value is missing or not base64url."));
            };
            let result = match (op, alg) {
                (Op::Wrap, "RSA-OAEP") => entry.key.to_public_key().encrypt(
                    &mut rand::rng(),
                    Oaep::<sha1::Sha1>::new(),
                    &value,
                ),
                (Op::Wrap, "RSA-OAEP-256") => entry.key.to_public_key().encrypt(
                    &mut rand::rng(),
                    Oaep::<sha2::Sha256>::new(),
                    &value,
                ),
                (Op::Unwrap, "RSA-OAEP") => entry.key.decrypt(Oaep::<sha1::Sha1>::new(), &value),
                (Op::Unwrap, "RSA-OAEP-256") => {
                    entry.key.decrypt(Oaep::<sha2::Sha256>::new(), &value)
                }
                _ => return Ok(bad_parameter("Unsupported algorithm.")),
            };
            match result {
                Ok(out) => Ok(json_reply(
                    StatusCode::OK,
                    serde_json::json!({ "kid": kid, "value": URL_SAFE_NO_PAD.encode(out) }),
                )),
                Err(_) => Ok(bad_parameter("Error while processing the key operation.")),
            }
        }
    }
}

fn bad_parameter(message: &str) -> Response<Full<Bytes>> {
    error_reply(StatusCode::BAD_REQUEST, "BadParameter", None, message)
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
        .or_else(|| STANDARD.decode(s).ok())
}
