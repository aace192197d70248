//! An insecure fake key-encryption-key provider for tests (feature `test-util`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::{
    DataEncryptionKey, KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind,
    KeyWrapAlgorithm, WrappedKey,
};

const TAG_LEN: usize = 16;

/// A fake key-encryption-key provider for tests: counts calls, injects failures of any
/// kind and delays.
///
/// # Security
///
/// **Insecure, never for production.** Its "wrapping" is a keystream derived from the key
/// URL alone (anyone who knows the URL can unwrap), with a checksum so that a tampered or
/// misdirected wrapped key is reported as [`KeyProviderErrorKind::InvalidWrappedKey`].
/// It exists only behind the `test-util` feature.
///
/// Any key URL is accepted unless a failure is injected for it. Delays use
/// `tokio::time::sleep`, so they follow a paused test clock.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{
///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyProviderErrorKind,
///     KeyWrapAlgorithm,
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fake = FakeKeyProvider::new();
/// let (url, alg) = ("https://v.vault.azure.net/keys/kek1/1", KeyWrapAlgorithm::RsaOaep);
/// let dek = DataEncryptionKey::generate()?;
/// let wrapped = fake.wrap_key(url, alg, &dek).await?;
/// fake.fail_next(KeyProviderErrorKind::Transient);
/// let e = fake.unwrap_key(url, alg, &wrapped.bytes).await.err().map(|e| e.kind());
/// assert_eq!(e, Some(KeyProviderErrorKind::Transient));
/// let back = fake.unwrap_key(url, alg, &wrapped.bytes).await?; // the failure was one-off
/// assert_eq!(back.expose_secret(), dek.expose_secret());
/// assert_eq!((fake.wrap_calls(), fake.unwrap_calls()), (1, 2));
/// # Ok(()) }
/// ```
pub struct FakeKeyProvider {
    provider_type: String,
    version: Option<String>,
    state: Mutex<State>,
    wrap_calls: AtomicU64,
    unwrap_calls: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Default)]
struct State {
    delay: Duration,
    fail_always: Option<KeyProviderErrorKind>,
    fail_next: VecDeque<KeyProviderErrorKind>,
    fail_url: HashMap<String, KeyProviderErrorKind>,
}

impl Default for FakeKeyProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeKeyProvider {
    /// A fake of type `AZURE_KEY_VAULT` with no delay and no failures.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{FakeKeyProvider, KeyEncryptionKeyProvider};
    ///
    /// let fake = FakeKeyProvider::new();
    /// assert_eq!(fake.provider_type(), "AZURE_KEY_VAULT");
    /// assert_eq!(fake.wrap_calls(), 0);
    /// ```
    pub fn new() -> Self {
        Self::with_type(crate::keys::AZURE_KEY_VAULT)
    }

    /// A fake whose [`provider_type`](KeyEncryptionKeyProvider::provider_type) is
    /// `provider_type`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{FakeKeyProvider, KeyEncryptionKeyProvider};
    ///
    /// let fake = FakeKeyProvider::with_type("MY_HSM");
    /// assert_eq!(fake.provider_type(), "MY_HSM");
    /// ```
    pub fn with_type(provider_type: impl Into<String>) -> Self {
        FakeKeyProvider {
            provider_type: provider_type.into(),
            version: None,
            state: Mutex::new(State::default()),
            wrap_calls: AtomicU64::new(0),
            unwrap_calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// Makes wrap answer an unversioned key URL (`.../keys/<name>`) with the versioned URL
    /// `.../keys/<name>/<version>`, as Key Vault does.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new().with_version("v7");
    /// let url = "https://v.vault.azure.net/keys/kek1";
    /// let dek = DataEncryptionKey::generate()?;
    /// let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// assert_eq!(wrapped.kek_url, "https://v.vault.azure.net/keys/kek1/v7");
    /// fake.unwrap_key(&wrapped.kek_url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call waits this long before answering (zero: no wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // With a paused Tokio clock (`start_paused`, Tokio's `test-util`) no real time passes.
    /// let fake = FakeKeyProvider::new();
    /// fake.set_delay(Duration::from_secs(2));
    /// let start = tokio::time::Instant::now();
    /// let dek = DataEncryptionKey::generate()?;
    /// fake.wrap_key("https://v/keys/k/1", KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// assert!(start.elapsed() >= Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Every call fails with `kind` until set to `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyProviderErrorKind,
    ///     KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let dek = DataEncryptionKey::generate()?;
    /// let url = "https://v/keys/k/1";
    /// fake.fail_always(Some(KeyProviderErrorKind::AccessDenied));
    /// for _ in 0..2 {
    ///     let e = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await.err();
    ///     assert_eq!(e.map(|e| e.kind()), Some(KeyProviderErrorKind::AccessDenied));
    /// }
    /// fake.fail_always(None);
    /// fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// # Ok(()) }
    /// ```
    pub fn fail_always(&self, kind: Option<KeyProviderErrorKind>) {
        self.state().fail_always = kind;
    }

    /// The next call fails with `kind` (queued after earlier `fail_next`s).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyProviderErrorKind,
    ///     KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let dek = DataEncryptionKey::generate()?;
    /// let url = "https://v/keys/k/1";
    /// fake.fail_next(KeyProviderErrorKind::Transient);
    /// fake.fail_next(KeyProviderErrorKind::KeyDisabled);
    /// let first = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await.err();
    /// let second = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await.err();
    /// assert_eq!(first.map(|e| e.kind()), Some(KeyProviderErrorKind::Transient));
    /// assert_eq!(second.map(|e| e.kind()), Some(KeyProviderErrorKind::KeyDisabled));
    /// fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?; // the queue is empty
    /// # Ok(()) }
    /// ```
    pub fn fail_next(&self, kind: KeyProviderErrorKind) {
        self.state().fail_next.push_back(kind);
    }

    /// Calls for `url` fail with `kind` until set to `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyProviderErrorKind,
    ///     KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let dek = DataEncryptionKey::generate()?;
    /// let revoked = "https://v/keys/revoked/1";
    /// fake.fail_url(revoked, Some(KeyProviderErrorKind::KeyNotFound));
    /// let e = fake.wrap_key(revoked, KeyWrapAlgorithm::RsaOaep, &dek).await.err();
    /// assert_eq!(e.map(|e| e.kind()), Some(KeyProviderErrorKind::KeyNotFound));
    /// fake.wrap_key("https://v/keys/other/1", KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// # Ok(()) }
    /// ```
    pub fn fail_url(&self, url: &str, kind: Option<KeyProviderErrorKind>) {
        let mut s = self.state();
        match kind {
            Some(k) => {
                s.fail_url.insert(url.to_owned(), k);
            }
            None => {
                s.fail_url.remove(url);
            }
        }
    }

    /// Number of `wrap_key` calls so far (failed ones included).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyProviderErrorKind,
    ///     KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let dek = DataEncryptionKey::generate()?;
    /// fake.fail_next(KeyProviderErrorKind::Transient);
    /// let url = "https://v/keys/k/1";
    /// assert!(fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await.is_err());
    /// fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// assert_eq!(fake.wrap_calls(), 2);
    /// # Ok(()) }
    /// ```
    pub fn wrap_calls(&self) -> u64 {
        self.wrap_calls.load(SeqCst)
    }

    /// Number of `unwrap_key` calls so far (failed ones included).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let url = "https://v/keys/k/1";
    /// // Not made by the fake: fails, and counts.
    /// assert!(fake.unwrap_key(url, KeyWrapAlgorithm::RsaOaep, &[0; 48]).await.is_err());
    /// assert_eq!(fake.unwrap_calls(), 1);
    /// # Ok(()) }
    /// ```
    pub fn unwrap_calls(&self) -> u64 {
        self.unwrap_calls.load(SeqCst)
    }

    /// Sets the call counters (and the concurrency high-water mark) back to zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// let dek = DataEncryptionKey::generate()?;
    /// fake.wrap_key("https://v/keys/k/1", KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// fake.reset_counts();
    /// assert_eq!((fake.wrap_calls(), fake.max_concurrent_calls()), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn reset_counts(&self) {
        self.wrap_calls.store(0, SeqCst);
        self.unwrap_calls.store(0, SeqCst);
        self.max_in_flight.store(0, SeqCst);
    }

    /// The most calls that were running at the same time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, FakeKeyProvider, KeyEncryptionKeyProvider, KeyWrapAlgorithm,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fake = FakeKeyProvider::new();
    /// fake.set_delay(Duration::from_millis(10));
    /// let dek = DataEncryptionKey::generate()?;
    /// let wrap = || fake.wrap_key("https://v/keys/k/1", KeyWrapAlgorithm::RsaOaep, &dek);
    /// let (a, b) = tokio::join!(wrap(), wrap());
    /// assert!(a.is_ok() && b.is_ok());
    /// assert_eq!(fake.max_concurrent_calls(), 2);
    /// # Ok(()) }
    /// ```
    pub fn max_concurrent_calls(&self) -> usize {
        self.max_in_flight.load(SeqCst)
    }

    /// Waits for the delay, then applies injected failures.
    async fn enter(&self, url: &str) -> Result<InFlight<'_>, KeyProviderError> {
        let n = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(n, SeqCst);
        let guard = InFlight(self);
        let delay = self.state().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let fail = {
            let mut s = self.state();
            s.fail_url
                .get(url)
                .copied()
                .or_else(|| s.fail_next.pop_front())
                .or(s.fail_always)
        };
        match fail {
            Some(kind) => Err(KeyProviderError::new(
                kind,
                url,
                "injected failure (fake provider)",
            )),
            None => Ok(guard),
        }
    }

    /// The URL the keystream is derived from: without the version this fake added.
    fn base_url<'a>(&self, url: &'a str) -> &'a str {
        match &self.version {
            Some(v) => url
                .strip_suffix(v.as_str())
                .and_then(|u| u.strip_suffix('/'))
                .unwrap_or(url),
            None => url,
        }
    }
}

struct InFlight<'a>(&'a FakeKeyProvider);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

fn stream(url: &str, algorithm: KeyWrapAlgorithm, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"always-encrypted insecure fake KEK\0");
    h.update(label);
    h.update(algorithm.as_str().as_bytes());
    h.update([0]);
    h.update(url.as_bytes());
    Zeroizing::new(h.finalize().into())
}

fn tag(url: &str, algorithm: KeyWrapAlgorithm, dek: &[u8]) -> [u8; TAG_LEN] {
    let key = stream(url, algorithm, b"tag");
    let mut h = Sha256::new();
    h.update(&key[..]);
    h.update(dek);
    let full: [u8; 32] = h.finalize().into();
    let mut t = [0; TAG_LEN];
    t.copy_from_slice(&full[..TAG_LEN]);
    t
}

impl fmt::Debug for FakeKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKeyProvider")
            .field("provider_type", &self.provider_type)
            .field("wrap_calls", &self.wrap_calls())
            .field("unwrap_calls", &self.unwrap_calls())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKeyProvider for FakeKeyProvider {
    fn provider_type(&self) -> &str {
        &self.provider_type
    }

    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> Result<WrappedKey, KeyProviderError> {
        self.wrap_calls.fetch_add(1, SeqCst);
        let _in = self.enter(kek_url).await?;
        let versioned = match &self.version {
            // Not yet versioned: `base_url` strips nothing (it needs `/<version>` at the end;
            // a name that merely ends like the version, `kek1` for `1`, is no version).
            Some(v) if self.base_url(kek_url).len() == kek_url.len() => format!("{kek_url}/{v}"),
            _ => kek_url.to_owned(),
        };
        let base = self.base_url(&versioned);
        let pad = stream(base, algorithm, b"pad");
        let mut bytes: Vec<u8> = dek
            .expose_secret()
            .iter()
            .zip(pad.iter())
            .map(|(d, p)| d ^ p)
            .collect();
        bytes.extend_from_slice(&tag(base, algorithm, dek.expose_secret()));
        Ok(WrappedKey {
            kek_url: versioned,
            bytes,
        })
    }

    async fn unwrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<DataEncryptionKey, KeyProviderError> {
        self.unwrap_calls.fetch_add(1, SeqCst);
        let _in = self.enter(kek_url).await?;
        let invalid = || {
            KeyProviderError::new(
                KeyProviderErrorKind::InvalidWrappedKey,
                kek_url,
                "the wrapped key was not made by this fake key",
            )
        };
        if wrapped.len() != DataEncryptionKey::LEN + TAG_LEN {
            return Err(invalid());
        }
        let base = self.base_url(kek_url);
        let pad = stream(base, algorithm, b"pad");
        let dek: Zeroizing<Vec<u8>> = Zeroizing::new(
            wrapped[..DataEncryptionKey::LEN]
                .iter()
                .zip(pad.iter())
                .map(|(w, p)| w ^ p)
                .collect(),
        );
        let expect = tag(base, algorithm, &dek);
        if !bool::from(expect.ct_eq(&wrapped[DataEncryptionKey::LEN..])) {
            return Err(invalid());
        }
        DataEncryptionKey::from_bytes(&dek).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn with_version_appends_the_version_unless_the_url_already_has_it() {
        let fake = FakeKeyProvider::new().with_version("1");
        let dek = DataEncryptionKey::generate().unwrap();
        for (url, want) in [
            // The key name ends like the version: still unversioned.
            ("https://v/keys/kek1", "https://v/keys/kek1/1"),
            ("https://v/keys/kek1/1", "https://v/keys/kek1/1"),
        ] {
            let wrapped = fake
                .wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek)
                .await
                .unwrap();
            assert_eq!(wrapped.kek_url, want);
            let back = fake
                .unwrap_key(&wrapped.kek_url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes)
                .await
                .unwrap();
            assert_eq!(back.expose_secret(), dek.expose_secret());
        }
    }
}
