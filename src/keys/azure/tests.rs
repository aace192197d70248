//! Fast tests of the provider through the real `KeyClient` on an in-process fake transport
//! (no sockets). The toy "wrap" reverses the bytes: RSA is covered by the HTTPS tests in
//! `tests/azure_key_vault.rs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use azure_core::credentials::{AccessToken, Secret, TokenRequestOptions};
use azure_core::http::headers::{AUTHORIZATION, Headers};
use azure_core::http::{AsyncRawResponse, Body, HttpClient, Method, Request, StatusCode};

use super::*;

const TOKEN: &str = "unit-test-token-5b1e";
const VAULT: &str = "https://unit.vault.azure.net";

#[derive(Debug)]
struct StaticCredential;

#[async_trait::async_trait]
impl TokenCredential for StaticCredential {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(TOKEN),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

#[derive(Debug, Default)]
struct InProcessVault {
    /// (status, body) to answer the next authorized requests with, before the normal answer.
    scripted: Mutex<VecDeque<(u16, String)>>,
    /// Every request as (method, path, body).
    log: Mutex<Vec<(String, String, String)>>,
    /// Requests answered with the bearer challenge.
    challenges: Mutex<usize>,
    enabled: Mutex<bool>,
}

impl InProcessVault {
    fn new() -> Arc<InProcessVault> {
        Arc::new(InProcessVault {
            enabled: Mutex::new(true),
            ..Default::default()
        })
    }

    fn script(&self, status: u16, body: &str) {
        self.scripted
            .lock()
            .unwrap()
            .push_back((status, body.to_owned()));
    }

    fn log(&self) -> Vec<(String, String, String)> {
        self.log.lock().unwrap().clone()
    }
}

fn reply(status: u16, body: String) -> AsyncRawResponse {
    AsyncRawResponse::from_bytes(StatusCode::from(status), Headers::new(), body)
}

#[async_trait::async_trait]
impl HttpClient for InProcessVault {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let body = match request.body() {
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let path = request.url().path().to_owned();
        let method = match request.method() {
            Method::Get => "GET",
            Method::Post => "POST",
            _ => "OTHER",
        };
        self.log
            .lock()
            .unwrap()
            .push((method.to_owned(), path.clone(), body.clone()));
        let auth = request.headers().get_optional_str(&AUTHORIZATION);
        if auth != Some(&format!("Bearer {TOKEN}")) {
            *self.challenges.lock().unwrap() += 1;
            let mut h = Headers::new();
            h.insert(
                "www-authenticate",
                r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net""#,
            );
            return Ok(AsyncRawResponse::from_bytes(
                StatusCode::Unauthorized,
                h,
                "",
            ));
        }
        if let Some((status, body)) = self.scripted.lock().unwrap().pop_front() {
            return Ok(reply(status, body));
        }
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("GET", ["keys", name, version]) => {
                let version = if version.is_empty() { "v2" } else { version };
                let enabled = *self.enabled.lock().unwrap();
                Ok(reply(
                    200,
                    format!(
                        r#"{{"key":{{"kid":"{VAULT}/keys/{name}/{version}","kty":"RSA","key_ops":["wrapKey","unwrapKey"]}},"attributes":{{"enabled":{enabled}}}}}"#
                    ),
                ))
            }
            ("POST", ["keys", name, version, op @ ("wrapkey" | "unwrapkey")]) => {
                let params: serde_json::Value = serde_json::from_str(&body).unwrap();
                let mut value = URL_SAFE_NO_PAD
                    .decode(params["value"].as_str().unwrap())
                    .unwrap();
                value.reverse();
                let _ = op;
                Ok(reply(
                    200,
                    format!(
                        r#"{{"kid":"{VAULT}/keys/{name}/{version}","value":"{}"}}"#,
                        URL_SAFE_NO_PAD.encode(value)
                    ),
                ))
            }
            _ => Ok(reply(404, r#"{"error":{"code":"NotFound"}}"#.to_owned())),
        }
    }
}

fn provider(vault: &Arc<InProcessVault>) -> AzureKeyVaultProvider {
    let options = AzureKeyVaultOptions {
        custom_transport: Some(Transport::new(vault.clone())),
        retry: RetryOptions::none(),
        ..Default::default()
    };
    AzureKeyVaultProvider::new(Arc::new(StaticCredential), Some(options)).unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn dek(b: u8) -> DataEncryptionKey {
    DataEncryptionKey::from_bytes(&[b; 32]).unwrap()
}

#[test]
fn wrap_resolves_the_current_version_and_unwrap_uses_it() {
    let vault = InProcessVault::new();
    let kv = provider(&vault);
    assert_eq!(kv.provider_type(), "AZURE_KEY_VAULT");
    let key = DataEncryptionKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    let wrapped = block_on(kv.wrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &key,
    ))
    .unwrap();
    assert_eq!(wrapped.kek_url, format!("{VAULT}/keys/kek/v2"));
    let mut expected: Vec<u8> = (0u8..32).collect();
    expected.reverse();
    assert_eq!(wrapped.bytes, expected);

    let back = block_on(kv.unwrap_key(
        &wrapped.kek_url,
        KeyWrapAlgorithm::RsaOaep256,
        &wrapped.bytes,
    ))
    .unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());

    let log = vault.log();
    let authorized: Vec<_> = log
        .iter()
        .filter(|(_, _, _)| true)
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    // Challenge (bodiless GET), then GET, wrapkey with the explicit version, unwrapkey.
    assert_eq!(
        authorized,
        [
            "GET /keys/kek/",
            "GET /keys/kek/",
            "POST /keys/kek/v2/wrapkey",
            "POST /keys/kek/v2/unwrapkey"
        ]
    );
    let wrap_body: serde_json::Value = serde_json::from_str(&log[2].2).unwrap();
    assert_eq!(wrap_body["alg"], "RSA-OAEP");
    let unwrap_body: serde_json::Value = serde_json::from_str(&log[3].2).unwrap();
    assert_eq!(unwrap_body["alg"], "RSA-OAEP-256");
    assert_eq!(kv.client_count(), 1);
}

#[test]
fn one_client_per_vault() {
    let vault = InProcessVault::new();
    let kv = provider(&vault);
    for _ in 0..3 {
        block_on(kv.wrap_key(
            &format!("{VAULT}/keys/kek/v1"),
            KeyWrapAlgorithm::RsaOaep,
            &dek(1),
        ))
        .unwrap();
    }
    // Same vault written differently (upper-case host, explicit default port): same client.
    block_on(kv.wrap_key(
        "https://UNIT.vault.azure.net:443/keys/kek/v1",
        KeyWrapAlgorithm::RsaOaep,
        &dek(1),
    ))
    .unwrap();
    assert_eq!(kv.client_count(), 1);
    let _ = block_on(kv.wrap_key(
        "https://other.vault.azure.net/keys/kek/v1",
        KeyWrapAlgorithm::RsaOaep,
        &dek(1),
    ));
    assert_eq!(kv.client_count(), 2);
    // One challenge per vault: each client (and its token cache) was made once, reused.
    assert_eq!(*vault.challenges.lock().unwrap(), 2);
    let dbg = format!("{kv:?}");
    assert!(
        dbg.contains("unit.vault.azure.net") && !dbg.contains(TOKEN),
        "{dbg}"
    );
}

#[test]
fn unwrap_needs_a_version_and_a_valid_url() {
    let vault = InProcessVault::new();
    let kv = provider(&vault);
    let e = block_on(kv.unwrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &[1; 256],
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::InvalidInput);
    assert!(e.to_string().contains("versioned"), "{e}");
    let e = block_on(kv.unwrap_key(
        "https://unit.vault.azure.net/keys/k/1?x=y",
        KeyWrapAlgorithm::RsaOaep,
        &[1; 256],
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::InvalidInput);
    let e = block_on(kv.unwrap_key(
        &format!("{VAULT}/keys/kek/v1"),
        KeyWrapAlgorithm::RsaOaep,
        &[],
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::InvalidWrappedKey);
    assert!(vault.log().is_empty(), "nothing was sent for bad input");
}

#[test]
fn disabled_key_is_refused_before_wrapping() {
    let vault = InProcessVault::new();
    *vault.enabled.lock().unwrap() = false;
    let kv = provider(&vault);
    let e = block_on(kv.wrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &dek(2),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::KeyDisabled);
    assert!(!vault.log().iter().any(|(_, p, _)| p.ends_with("wrapkey")));
}

#[test]
fn unsuitable_keys_are_refused() {
    let vault = InProcessVault::new();
    let kv = provider(&vault);
    vault.script(200, r#"{"key":{"kid":"https://unit.vault.azure.net/keys/kek/v1","kty":"EC"},"attributes":{"enabled":true}}"#);
    let e = block_on(kv.wrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &dek(3),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::InvalidInput);
    assert!(e.to_string().contains("not an RSA key"), "{e}");

    vault.script(200, r#"{"key":{"kid":"https://unit.vault.azure.net/keys/kek/v1","kty":"RSA","key_ops":["wrapKey"]},"attributes":{"enabled":true}}"#);
    let e = block_on(kv.wrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &dek(3),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("does not permit unwrapKey"), "{e}");

    vault.script(200, r#"{"key":{"kid":"https://unit.vault.azure.net/keys/other/v1","kty":"RSA"},"attributes":{"enabled":true}}"#);
    let e = block_on(kv.wrap_key(
        &format!("{VAULT}/keys/kek"),
        KeyWrapAlgorithm::RsaOaep,
        &dek(3),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("another key"), "{e}");
}

#[test]
fn service_errors_map_to_kinds_with_the_url_and_no_token() {
    use KeyProviderErrorKind as K;
    let cases = [
        (
            403,
            r#"{"error":{"code":"Forbidden","message":"denied","innererror":{"code":"ForbiddenByRbac"}}}"#,
            K::AccessDenied,
        ),
        (
            403,
            r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
            K::KeyDisabled,
        ),
        (
            404,
            r#"{"error":{"code":"KeyNotFound","message":"gone"}}"#,
            K::KeyNotFound,
        ),
        (429, r#"{"error":{"code":"Throttled"}}"#, K::Transient),
        (500, "", K::Transient),
        (
            400,
            r#"{"error":{"code":"BadParameter"}}"#,
            K::InvalidWrappedKey,
        ),
    ];
    let url = format!("{VAULT}/keys/kek/v7");
    for (status, body, kind) in cases {
        let vault = InProcessVault::new();
        let kv = provider(&vault);
        vault.script(status, body);
        let e = block_on(kv.unwrap_key(&url, KeyWrapAlgorithm::RsaOaep, &[9; 256])).unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(&url), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }
}

#[test]
fn a_short_unwrap_result_is_an_invalid_wrapped_key() {
    let vault = InProcessVault::new();
    let kv = provider(&vault);
    // The toy unwrap reverses: 16 bytes in, 16 bytes out, not a 32-byte key.
    let e = block_on(kv.unwrap_key(
        &format!("{VAULT}/keys/kek/v1"),
        KeyWrapAlgorithm::RsaOaep,
        &[5; 16],
    ))
    .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::InvalidWrappedKey);
    assert!(e.to_string().contains("16 bytes"), "{e}");
}

#[test]
fn request_body_is_what_key_vault_expects() {
    let body = request_body(KeyWrapAlgorithm::RsaOaep256, &[0xfb, 0xff]);
    assert_eq!(&body[..], br#"{"alg":"RSA-OAEP-256","value":"-_8"}"#);
}

#[test]
fn options_debug_hides_nothing_secret_and_builds() {
    let mut o = AzureKeyVaultOptions::default();
    o.extra_root_certificates.push(vec![1, 2, 3]);
    let s = format!("{o:?}");
    assert!(s.contains("extra_root_certificates: 1"), "{s}");
}
