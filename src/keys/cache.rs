//! The cache of unwrapped data-encryption keys.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::keys::{
    ClientEncryptionKeyResource, KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind,
    KeyWrapAlgorithm, ResolvedKey,
};

/// How the [`DekCache`] behaves. `Default` gives the documented defaults.
///
/// ```
/// use std::time::Duration;
/// use always_encrypted::keys::CacheOptions;
///
/// let opts = CacheOptions { ttl: Duration::from_secs(600), ..CacheOptions::default() };
/// assert_eq!(opts.max_entries, 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long an unwrapped key is used before it must be unwrapped again (default one
    /// hour). `Duration::ZERO` disables caching: every use unwraps (concurrent uses of one
    /// key still share one unwrap).
    pub ttl: Duration,
    /// Most keys held at once (default 1024); beyond it, the least recently used key is
    /// evicted. `0` disables caching.
    pub max_entries: usize,
    /// How long before expiry a use of the key starts a background re-unwrap, so that a
    /// busy key never stalls on an unwrap (default five minutes; at most half the TTL).
    /// `Duration::ZERO` turns refresh-ahead off.
    pub refresh_ahead: Duration,
    /// When a refresh ahead of expiry fails for a transient reason (throttling, 5xx,
    /// timeout, network), keep serving the key for at most this long past its expiry,
    /// retrying in the background at most every five seconds (default five minutes).
    /// `Duration::ZERO` turns it off. Failures because access was denied or the key was
    /// disabled or deleted never get a grace: the key is evicted at once.
    pub stale_grace: Duration,
    /// Where the cache reads the time (default [`CacheClock::Coarse`]).
    pub clock: CacheClock,
}

/// Where a [`DekCache`] reads the time for its TTL, refresh-ahead and grace decisions.
///
/// ```
/// use always_encrypted::keys::{CacheClock, CacheOptions};
///
/// // Tests that drive time with `tokio::time::pause` and `advance` use the Tokio clock.
/// let opts = CacheOptions { clock: CacheClock::Tokio, ..CacheOptions::default() };
/// assert_ne!(opts, CacheOptions::default());
/// assert_eq!(CacheOptions::default().clock, CacheClock::Coarse);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CacheClock {
    /// The operating system's coarse monotonic clock: on Linux `CLOCK_MONOTONIC_COARSE`
    /// (a resolution of a few milliseconds, so a key may be served a few milliseconds past
    /// its TTL), elsewhere the precise monotonic clock. A read costs a few nanoseconds and
    /// scales across cores, where a precise read costs 30–50 ns on a virtual machine and
    /// does not scale on some (on the 2-core machine of `BENCHMARKS.md`, two threads
    /// reading it at once each took twice as long): every cache hit reads the clock.
    #[default]
    Coarse,
    /// Tokio's clock (`tokio::time::Instant`): follows `tokio::time::pause` and
    /// `tokio::time::advance`, for tests that control time. A precise read per lookup.
    Tokio,
}

/// The coarse monotonic clock, in nanoseconds.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nsec = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The monotonic clock, in nanoseconds (no coarse clock on this platform).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_nanos() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    nanos(std::time::Instant::now().saturating_duration_since(epoch))
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            ttl: Duration::from_secs(3600),
            max_entries: 1024,
            refresh_ahead: Duration::from_secs(300),
            stale_grace: Duration::from_secs(300),
            clock: CacheClock::Coarse,
        }
    }
}

/// After a failed refresh, the next one starts no sooner than this.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// The number of replicas of the map: one per CPU, at most [`STRIPES`]. Readers use the
/// replica of their thread's stripe, so threads looking up the same key share neither a
/// lock word nor a reference count (each replica holds its own copy of the key, see
/// [`ResolvedKey::replicate`]); writers (rare: an unwrap, an eviction) update every
/// replica under all the locks.
fn replica_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(STRIPES))
}

/// This thread's stripe, assigned round-robin on first use.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// What identifies one unwrapped key in the cache: the client encryption key id, a
/// SHA-256 digest of its wrapped bytes, the key-encryption key URL and the wrap algorithm.
/// Never the key-encryption key alone: two client encryption keys under one key-encryption
/// key are two keys, and a rewrapped key (new wrapped bytes) is a new entry.
///
/// It also carries the wrapped bytes, for the unwrap. Build it once per resource
/// ([`CacheKey::for_resource`]); it is cheap to clone and to hash.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{CacheKey, KeyWrapAlgorithm};
///
/// let url = "https://v.vault.azure.net/keys/kek/1";
/// let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, b"wrapped");
/// assert_eq!(key, CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, b"wrapped"));
/// // Rewrapped (new wrapped bytes) or another client encryption key: another entry.
/// assert_ne!(key, CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, b"rewrapped"));
/// assert_ne!(key, CacheKey::new("cek2", url, KeyWrapAlgorithm::RsaOaep, b"wrapped"));
/// ```
#[derive(Clone)]
pub struct CacheKey(Arc<KeyParts>);

struct KeyParts {
    hash: u64,
    digest: [u8; 32],
    cek_id: String,
    kek_url: String,
    algorithm: KeyWrapAlgorithm,
    wrapped: Box<[u8]>,
}

impl CacheKey {
    /// The key for client encryption key `cek_id`, whose data-encryption key is `wrapped`
    /// under the key-encryption key `kek_url` with `algorithm`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{CacheKey, KeyWrapAlgorithm};
    ///
    /// let url = "https://v.vault.azure.net/keys/kek/1";
    /// let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep256, &[7; 256]);
    /// assert_eq!(key.cek_id(), "cek1");
    /// // Debug shows the ids, never the wrapped bytes.
    /// assert!(!format!("{key:?}").contains("7, 7"));
    /// ```
    pub fn new(cek_id: &str, kek_url: &str, algorithm: KeyWrapAlgorithm, wrapped: &[u8]) -> Self {
        let digest: [u8; 32] = Sha256::digest(wrapped).into();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (cek_id, kek_url, algorithm, digest).hash(&mut h);
        CacheKey(Arc::new(KeyParts {
            hash: h.finish(),
            digest,
            cek_id: cek_id.to_owned(),
            kek_url: kek_url.to_owned(),
            algorithm,
            wrapped: wrapped.into(),
        }))
    }

    /// The key for a client encryption key resource.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     CacheKey, ClientEncryptionKeyResource, KeyWrapAlgorithm, KeyWrapMetadata,
    /// };
    ///
    /// let url = "https://v.vault.azure.net/keys/kek/1";
    /// let metadata = KeyWrapMetadata::azure_key_vault("kek", url, KeyWrapAlgorithm::RsaOaep);
    /// let algorithm = Algorithm::AeadAes256CbcHmacSha256;
    /// let cek = ClientEncryptionKeyResource::new("cek1", algorithm, metadata, vec![7; 256])?;
    /// let key = CacheKey::for_resource(&cek);
    /// assert_eq!(key, CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &[7; 256]));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn for_resource(cek: &ClientEncryptionKeyResource) -> Self {
        let m = cek.key_wrap_metadata();
        Self::new(
            cek.id(),
            m.kek_url(),
            m.algorithm(),
            cek.wrapped_data_encryption_key(),
        )
    }

    /// The client encryption key id.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{CacheKey, KeyWrapAlgorithm};
    /// let key = CacheKey::new("cek1", "https://v.vault.azure.net/keys/k/1", KeyWrapAlgorithm::RsaOaep, b"w");
    /// assert_eq!(key.cek_id(), "cek1");
    /// ```
    pub fn cek_id(&self) -> &str {
        &self.0.cek_id
    }

    /// The key-encryption key URL.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{CacheKey, KeyWrapAlgorithm};
    /// let url = "https://v.vault.azure.net/keys/kek/1";
    /// let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, b"w");
    /// assert_eq!(key.kek_url(), url);
    /// ```
    pub fn kek_url(&self) -> &str {
        &self.0.kek_url
    }

    /// The wrap algorithm.
    ///
    /// # Examples
    ///
    /// ```
    /// # use always_encrypted::keys::{CacheKey, KeyWrapAlgorithm};
    /// let key = CacheKey::new("cek1", "https://v.vault.azure.net/keys/k/1", KeyWrapAlgorithm::RsaOaep256, b"w");
    /// assert_eq!(key.algorithm(), KeyWrapAlgorithm::RsaOaep256);
    /// ```
    pub fn algorithm(&self) -> KeyWrapAlgorithm {
        self.0.algorithm
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash
                && self.0.digest == other.0.digest
                && self.0.algorithm == other.0.algorithm
                && self.0.cek_id == other.0.cek_id
                && self.0.kek_url == other.0.kek_url)
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("cek_id", &self.0.cek_id)
            .field("kek_url", &self.0.kek_url)
            .field("algorithm", &self.0.algorithm)
            .finish_non_exhaustive()
    }
}

/// Passes the precomputed hash of a [`CacheKey`] through.
#[derive(Default, Clone, Copy)]
struct PassThrough;

struct PassThroughHasher(u64);

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `CacheKey`; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A counter that threads bump without sharing a cache line (hits happen on every use).
struct StripedCounter([PaddedU64; STRIPES]);

const STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct PaddedU64(AtomicU64);

impl Default for StripedCounter {
    fn default() -> Self {
        StripedCounter(std::array::from_fn(|_| PaddedU64::default()))
    }
}

impl StripedCounter {
    fn inc(&self) {
        self.0[stripe()].0.fetch_add(1, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Relaxed)).sum()
    }
}

/// What the cache has done so far. Read with [`DekCache::stats`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// # use std::sync::Arc;
/// # use always_encrypted::keys::*;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// # let fake = Arc::new(FakeKeyProvider::new());
/// # let url = "https://v.vault.azure.net/keys/kek/1";
/// # let dek = DataEncryptionKey::generate()?;
/// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
/// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
/// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
/// # let cache = DekCache::new(CacheOptions::default());
/// let first = cache.get_or_unwrap(&key, &provider).await?; // a miss: one unwrap
/// let again = cache.get_or_unwrap(&key, &provider).await?; // a hit
/// assert!(again.ptr_eq(&first));
/// let stats = cache.stats();
/// assert_eq!((stats.misses, stats.hits, stats.unwrap_calls, stats.entries), (1, 1, 1, 1));
/// assert_eq!(stats.evictions, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Uses served from the cache with a key within its TTL.
    pub hits: u64,
    /// Uses served with a key past its TTL, inside the stale grace, after a transient
    /// refresh failure.
    pub stale_hits: u64,
    /// Uses that found no usable key and waited for an unwrap (their own or a shared one).
    pub misses: u64,
    /// Calls to a provider's `unwrap_key`.
    pub unwrap_calls: u64,
    /// `unwrap_key` calls that failed.
    pub failures: u64,
    /// Background refreshes started (ahead of expiry, or retries inside the grace).
    pub refreshes: u64,
    /// Keys removed for any reason (the sum of the four below).
    pub evictions: u64,
    /// Keys evicted at once because an unwrap said access denied, not found or disabled.
    pub revocations: u64,
    /// Keys evicted because an unwrap failed otherwise and they could not be served.
    pub failed_evictions: u64,
    /// Keys evicted to keep within `max_entries` (least recently used first).
    pub lru_evictions: u64,
    /// Keys dropped because they expired (and their grace, if any, ran out).
    pub expirations: u64,
    /// Keys held now.
    pub entries: u64,
}

#[derive(Default)]
struct Counters {
    hits: StripedCounter,
    stale_hits: StripedCounter,
    misses: AtomicU64,
    unwrap_calls: AtomicU64,
    failures: AtomicU64,
    refreshes: AtomicU64,
    revocations: AtomicU64,
    failed_evictions: AtomicU64,
    lru_evictions: AtomicU64,
    expirations: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// One cached key. Times are nanoseconds since the cache's epoch.
struct Entry {
    value: ResolvedKey,
    provider: Arc<dyn KeyEncryptionKeyProvider>,
    /// A use from here on starts a background refresh.
    refresh_at: u64,
    /// Past this the key is not served, unless a transient refresh failure allowed a grace.
    expires_at: u64,
    /// Set when a refresh failed transiently: the key may be served until then.
    stale_until: AtomicU64,
    /// When a refresh last failed (0: never).
    failed_at: AtomicU64,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// Last use, for LRU (updated at most once a millisecond, to keep the line quiet).
    last_used: AtomicU64,
    /// Insertion order, to break LRU ties.
    seq: u64,
}

impl Entry {
    fn touch(&self, now: u64) {
        if now > self.last_used.load(Relaxed).saturating_add(1_000_000) {
            self.last_used.store(now, Relaxed);
        }
    }

    /// May this key be served at `now`?
    fn alive(&self, now: u64) -> bool {
        now < self.expires_at || now < self.stale_until.load(Relaxed)
    }
}

/// What a replica holds for a key: the shared entry and the replica's copy of the key.
struct Slot {
    entry: Arc<Entry>,
    value: ResolvedKey,
}

type Map = HashMap<CacheKey, Slot, PassThrough>;
/// One replica of the map, alone on its cache lines (128 bytes: a line and the one the
/// prefetcher pairs with it), so readers of different replicas never share a line.
#[repr(align(128))]
#[derive(Default)]
struct Replica(RwLock<Map>);
type Flight = Arc<OnceCell<Result<ResolvedKey, KeyProviderError>>>;

struct Inner {
    options: CacheOptions,
    /// The coarse clock's reading when the cache was made (for [`CacheClock::Coarse`]).
    coarse_epoch: u64,
    /// Tokio's clock when the cache was made (for [`CacheClock::Tokio`]).
    tokio_epoch: Instant,
    replicas: Box<[Replica]>,
    len: AtomicUsize,
    seq: AtomicU64,
    /// Bumped by `invalidate`/`clear`: an unwrap that started before does not store.
    generation: AtomicU64,
    flights: Mutex<HashMap<CacheKey, Flight, PassThrough>>,
    counters: Counters,
    sweeper: OnceLock<tokio::task::AbortHandle>,
}

/// The cache of unwrapped data-encryption keys: a security boundary as much as a speed-up.
///
/// - Values are [`ResolvedKey`]s, zeroized when the last clone is dropped: when evicted,
///   expired or when the cache is dropped (unless a caller still holds a clone).
/// - Keyed by [`CacheKey`]: client encryption key id, digest of the wrapped bytes,
///   key-encryption key URL and wrap algorithm, never the key-encryption key alone.
/// - Time to live ([`CacheOptions::ttl`], default one hour, zero = no caching) and a bound
///   on entries with least-recently-used eviction.
/// - Single flight: concurrent misses of one key share one unwrap call.
/// - Refresh ahead of expiry in a background task, so a busy key never waits on an unwrap.
/// - Stale grace for transient failures only; access denied, key not found and key
///   disabled evict at once, so revocation works.
/// - Expired keys are dropped by a background sweep even when nobody uses them.
/// - Counters: [`stats`](Self::stats).
///
/// Background work (refresh, sweep) runs on the Tokio runtime the cache is created or used
/// in, which needs its time driver (`enable_all` or `enable_time`); without a runtime, keys
/// are still cached and expire, but are only unwrapped on use and dropped on use or
/// eviction.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use std::sync::Arc;
/// use always_encrypted::keys::{
///     CacheKey, CacheOptions, DataEncryptionKey, DekCache, FakeKeyProvider,
///     KeyEncryptionKeyProvider, KeyWrapAlgorithm,
/// };
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let provider = Arc::new(FakeKeyProvider::new());
/// let url = "https://v.vault.azure.net/keys/kek/1";
/// let wrapped = provider.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &DataEncryptionKey::generate()?).await?;
/// let cache = DekCache::new(CacheOptions::default());
/// let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes);
/// let dyn_provider: Arc<dyn KeyEncryptionKeyProvider> = provider.clone();
/// let a = cache.get_or_unwrap(&key, &dyn_provider).await?;
/// let b = cache.get_or_unwrap(&key, &dyn_provider).await?;
/// assert!(a.ptr_eq(&b));
/// assert_eq!(provider.unwrap_calls(), 1);
/// assert_eq!(cache.stats().hits, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # }
/// ```
pub struct DekCache {
    inner: Arc<Inner>,
}

impl DekCache {
    /// A new, empty cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use always_encrypted::keys::{CacheOptions, DekCache};
    ///
    /// let cache = DekCache::new(CacheOptions { ttl: Duration::from_secs(600), ..CacheOptions::default() });
    /// assert_eq!(cache.stats().entries, 0);
    /// assert!(cache.cached_ids().is_empty());
    /// ```
    pub fn new(options: CacheOptions) -> Self {
        let mut options = options;
        options.refresh_ahead = options.refresh_ahead.min(options.ttl / 2);
        let cache = DekCache {
            inner: Arc::new(Inner {
                options,
                coarse_epoch: coarse_nanos(),
                tokio_epoch: Instant::now(),
                replicas: (0..replica_count()).map(|_| Replica::default()).collect(),
                len: AtomicUsize::new(0),
                seq: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                flights: Mutex::new(HashMap::default()),
                counters: Counters::default(),
                sweeper: OnceLock::new(),
            }),
        };
        cache.inner.ensure_sweeper();
        cache
    }

    /// The options in force (`refresh_ahead` clamped to half the TTL).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use always_encrypted::keys::{CacheOptions, DekCache};
    ///
    /// let ttl = Duration::from_secs(60);
    /// let cache = DekCache::new(CacheOptions { ttl, ..CacheOptions::default() });
    /// // The default five-minute refresh-ahead does not fit a one-minute TTL.
    /// assert_eq!(cache.options().refresh_ahead, Duration::from_secs(30));
    /// ```
    pub fn options(&self) -> &CacheOptions {
        &self.inner.options
    }

    /// The hot-path lookup: the key if it is cached and may be served now, else `None`.
    /// Never unwraps and never waits; a use near expiry starts a background refresh.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let dek = DataEncryptionKey::generate()?;
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// # let cache = DekCache::new(CacheOptions::default());
    /// assert!(cache.get(&key).is_none()); // not unwrapped yet
    /// let unwrapped = cache.get_or_unwrap(&key, &provider).await?;
    /// assert!(cache.get(&key).is_some_and(|k| k.ptr_eq(&unwrapped)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn get(&self, key: &CacheKey) -> Option<ResolvedKey> {
        self.inner.get(key)
    }

    /// The key from the cache, or unwrapped by `provider` (one unwrap for all concurrent
    /// callers of the same key) and cached.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProvider`] naming the client encryption key when the unwrap fails and
    /// there is no key that may still be served.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let dek = DataEncryptionKey::generate()?;
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// # let cache = DekCache::new(CacheOptions::default());
    /// use always_encrypted::Error;
    /// fake.fail_next(KeyProviderErrorKind::AccessDenied);
    /// let e = cache.get_or_unwrap(&key, &provider).await.unwrap_err();
    /// assert!(matches!(&e, Error::KeyProvider { key_id, .. } if key_id == "cek1"));
    /// assert!(e.is_key_unavailable());
    /// // The next use tries again, and the key is then cached.
    /// let k = cache.get_or_unwrap(&key, &provider).await?;
    /// assert!(cache.get_or_unwrap(&key, &provider).await?.ptr_eq(&k));
    /// assert_eq!(fake.unwrap_calls(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub async fn get_or_unwrap(
        &self,
        key: &CacheKey,
        provider: &Arc<dyn KeyEncryptionKeyProvider>,
    ) -> Result<ResolvedKey> {
        if let Some(v) = self.inner.get(key) {
            tracing::trace!(
                key_id = key.cek_id(),
                kek_url = key.kek_url(),
                "DEK cache hit"
            );
            return Ok(v);
        }
        bump(&self.inner.counters.misses);
        tracing::debug!(
            key_id = key.cek_id(),
            kek_url = key.kek_url(),
            "DEK cache miss"
        );
        self.inner
            .unwrap_shared(key, provider)
            .await
            .map_err(|source| Error::KeyProvider {
                key_id: key.cek_id().to_owned(),
                source,
            })
    }

    /// Drops every cached key of client encryption key `cek_id` (all wrappings); returns
    /// how many. Unwraps in flight for it do not store their result.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let dek = DataEncryptionKey::generate()?;
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// # let cache = DekCache::new(CacheOptions::default());
    /// let k = cache.get_or_unwrap(&key, &provider).await?;
    /// let released = k.downgrade();
    /// drop(k);
    /// assert_eq!(cache.invalidate("cek1"), 1);
    /// assert!(cache.get(&key).is_none());
    /// assert!(released.is_released()); // the key material was zeroized
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn invalidate(&self, cek_id: &str) -> usize {
        self.inner.generation.fetch_add(1, Relaxed);
        let n = self.inner.remove_where(|k, _| k.cek_id() == cek_id);
        tracing::debug!(key_id = cek_id, removed = n, "DEK cache: key invalidated");
        n
    }

    /// Drops every cached key; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let dek = DataEncryptionKey::generate()?;
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// # let cache = DekCache::new(CacheOptions::default());
    /// cache.get_or_unwrap(&key, &provider).await?;
    /// assert_eq!(cache.clear(), 1);
    /// assert_eq!(cache.stats().entries, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn clear(&self) -> usize {
        self.inner.generation.fetch_add(1, Relaxed);
        let n = self.inner.remove_where(|_, _| true);
        tracing::debug!(removed = n, "DEK cache cleared");
        n
    }

    /// Drops the keys that expired (and whose grace ran out) now, rather than at the next
    /// background sweep; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// use std::time::Duration;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &DataEncryptionKey::generate()?).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// // Tokio's clock, so that the example can move time forward.
    /// let options = CacheOptions { ttl: Duration::from_secs(60), clock: CacheClock::Tokio, ..CacheOptions::default() };
    /// let cache = DekCache::new(options);
    /// cache.get_or_unwrap(&key, &provider).await?;
    /// assert_eq!(cache.purge_expired(), 0);
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// assert_eq!(cache.purge_expired(), 1);
    /// assert_eq!(cache.stats().expirations, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn purge_expired(&self) -> usize {
        self.inner.sweep()
    }

    /// The counters, and the number of keys held.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{CacheOptions, CacheStats, DekCache};
    ///
    /// let cache = DekCache::new(CacheOptions::default());
    /// assert_eq!(cache.stats(), CacheStats::default());
    /// ```
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let revocations = c.revocations.load(Relaxed);
        let failed_evictions = c.failed_evictions.load(Relaxed);
        let lru_evictions = c.lru_evictions.load(Relaxed);
        let expirations = c.expirations.load(Relaxed);
        CacheStats {
            hits: c.hits.get(),
            stale_hits: c.stale_hits.get(),
            misses: c.misses.load(Relaxed),
            unwrap_calls: c.unwrap_calls.load(Relaxed),
            failures: c.failures.load(Relaxed),
            refreshes: c.refreshes.load(Relaxed),
            evictions: revocations + failed_evictions + lru_evictions + expirations,
            revocations,
            failed_evictions,
            lru_evictions,
            expirations,
            entries: self.inner.len.load(Relaxed) as u64,
        }
    }

    /// The client encryption key ids of the keys held now (sorted, with repeats when one
    /// id is cached under several wrappings).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use std::sync::Arc;
    /// # use always_encrypted::keys::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let fake = Arc::new(FakeKeyProvider::new());
    /// # let url = "https://v.vault.azure.net/keys/kek/1";
    /// # let dek = DataEncryptionKey::generate()?;
    /// # let wrapped = fake.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?.bytes;
    /// # let key = CacheKey::new("cek1", url, KeyWrapAlgorithm::RsaOaep, &wrapped);
    /// # let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    /// # let cache = DekCache::new(CacheOptions::default());
    /// cache.get_or_unwrap(&key, &provider).await?;
    /// assert_eq!(cache.cached_ids(), ["cek1"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn cached_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = read(self.inner.local())
            .keys()
            .map(|k| k.cek_id().to_owned())
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl Drop for DekCache {
    fn drop(&mut self) {
        if let Some(h) = self.inner.sweeper.get() {
            h.abort();
        }
    }
}

impl fmt::Debug for DekCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DekCache")
            .field("options", &self.inner.options)
            .field("ids", &self.cached_ids())
            .field("stats", &self.stats())
            .finish()
    }
}

fn read(s: &Replica) -> std::sync::RwLockReadGuard<'_, Map> {
    // The map is valid after a panic elsewhere: each change is a single insert or remove.
    s.0.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(s: &Replica) -> std::sync::RwLockWriteGuard<'_, Map> {
    s.0.write().unwrap_or_else(PoisonError::into_inner)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Inner {
    fn caching(&self) -> bool {
        !self.options.ttl.is_zero() && self.options.max_entries > 0
    }

    /// Nanoseconds since the cache was made.
    fn now(&self) -> u64 {
        match self.options.clock {
            CacheClock::Coarse => coarse_nanos().saturating_sub(self.coarse_epoch),
            CacheClock::Tokio => nanos(Instant::now().saturating_duration_since(self.tokio_epoch)),
        }
    }

    /// The replica this thread reads.
    fn local(&self) -> &Replica {
        &self.replicas[stripe() % self.replicas.len()]
    }

    /// Every replica, write-locked (always in the same order, so writers cannot deadlock).
    fn write_all(&self) -> Vec<std::sync::RwLockWriteGuard<'_, Map>> {
        self.replicas.iter().map(write).collect()
    }

    fn get(self: &Arc<Self>, key: &CacheKey) -> Option<ResolvedKey> {
        if !self.caching() {
            return None;
        }
        let now = self.now();
        let refresh = {
            let map = read(self.local());
            let slot = map.get(key)?;
            let e = &slot.entry;
            if now < e.refresh_at {
                e.touch(now);
                self.counters.hits.inc();
                return Some(slot.value.clone());
            }
            let value = if now < e.expires_at {
                self.counters.hits.inc();
                slot.value.clone()
            } else if now < e.stale_until.load(Relaxed) {
                self.counters.stale_hits.inc();
                tracing::debug!(
                    key_id = key.cek_id(),
                    kek_url = key.kek_url(),
                    "DEK cache: serving an expired key within its stale grace"
                );
                slot.value.clone()
            } else {
                // Expired: the caller unwraps; the entry goes at once.
                drop(map);
                self.remove_if_dead(key, now);
                return None;
            };
            e.touch(now);
            let failed_at = e.failed_at.load(Relaxed);
            let may_retry = failed_at == 0 || now >= failed_at.saturating_add(nanos(REFRESH_RETRY));
            let start = may_retry && !e.refreshing.swap(true, Relaxed);
            (value, start.then(|| (Arc::clone(e), e.provider.clone())))
        };
        let (value, start) = refresh;
        if let Some((entry, provider)) = start {
            self.spawn_refresh(key.clone(), entry, provider);
        }
        Some(value)
    }

    fn spawn_refresh(
        self: &Arc<Self>,
        key: CacheKey,
        entry: Arc<Entry>,
        provider: Arc<dyn KeyEncryptionKeyProvider>,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to refresh on: the key is unwrapped on use after it expires.
            entry.refreshing.store(false, Relaxed);
            return;
        };
        bump(&self.counters.refreshes);
        tracing::debug!(
            key_id = key.cek_id(),
            kek_url = key.kek_url(),
            "DEK cache: refreshing a key ahead of expiry"
        );
        let inner = Arc::clone(self);
        handle.spawn(async move {
            // The outcome is recorded in the cache (new entry, failure, or eviction).
            let _ = inner.unwrap_shared(&key, &provider).await;
            entry.refreshing.store(false, Relaxed);
        });
    }

    /// One unwrap per key at a time: callers arriving while it runs share its result.
    async fn unwrap_shared(
        self: &Arc<Self>,
        key: &CacheKey,
        provider: &Arc<dyn KeyEncryptionKeyProvider>,
    ) -> Result<ResolvedKey, KeyProviderError> {
        let flight: Flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(flights.entry(key.clone()).or_default())
        };
        let result = flight
            .get_or_init(|| self.unwrap_and_store(key, provider))
            .await
            .clone();
        {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(key);
            }
        }
        result
    }

    async fn unwrap_and_store(
        self: &Arc<Self>,
        key: &CacheKey,
        provider: &Arc<dyn KeyEncryptionKeyProvider>,
    ) -> Result<ResolvedKey, KeyProviderError> {
        // Another flight may have stored a fresh key since this caller looked.
        if let Some(e) = self.entry(key)
            && self.now() < e.refresh_at
        {
            return Ok(e.value.clone());
        }
        let generation = self.generation.load(Relaxed);
        bump(&self.counters.unwrap_calls);
        tracing::debug!(
            key_id = key.cek_id(),
            kek_url = key.kek_url(),
            algorithm = key.algorithm().as_str(),
            provider = provider.provider_type(),
            "unwrapping data-encryption key"
        );
        let result = provider
            .unwrap_key(key.kek_url(), key.algorithm(), &key.0.wrapped)
            .await;
        let now = self.now();
        match result {
            Ok(dek) => {
                let value = ResolvedKey::new(key.cek_id(), dek);
                if self.caching() && self.generation.load(Relaxed) == generation {
                    self.insert(key, value.clone(), provider, now);
                    tracing::debug!(
                        key_id = key.cek_id(),
                        kek_url = key.kek_url(),
                        ttl_secs = self.options.ttl.as_secs(),
                        "data-encryption key unwrapped and cached"
                    );
                } else {
                    tracing::debug!(
                        key_id = key.cek_id(),
                        kek_url = key.kek_url(),
                        "data-encryption key unwrapped (not cached)"
                    );
                }
                Ok(value)
            }
            Err(e) => {
                bump(&self.counters.failures);
                let kind = e.kind();
                tracing::warn!(
                    key_id = key.cek_id(),
                    kek_url = key.kek_url(),
                    kind = %kind,
                    error = %e,
                    "unwrap of data-encryption key failed"
                );
                if !kind.is_revocation()
                    && let Some(entry) = self.entry(key)
                {
                    entry.failed_at.store(now.max(1), Relaxed);
                    if kind == KeyProviderErrorKind::Transient {
                        let until = entry
                            .expires_at
                            .saturating_add(nanos(self.options.stale_grace));
                        entry.stale_until.fetch_max(until, Relaxed);
                    }
                    if entry.alive(now) {
                        // Still within its TTL (or, after a transient failure, its grace).
                        tracing::warn!(
                            key_id = key.cek_id(),
                            kek_url = key.kek_url(),
                            "DEK cache: refresh failed; still serving the cached key"
                        );
                        return Ok(entry.value.clone());
                    }
                }
                let removed = self.remove_where(|k, _| k == key);
                if removed > 0 {
                    let c = if kind.is_revocation() {
                        &self.counters.revocations
                    } else {
                        &self.counters.failed_evictions
                    };
                    // remove_where counted them as generic removals; classify.
                    c.fetch_add(removed as u64, Relaxed);
                    tracing::warn!(
                        key_id = key.cek_id(),
                        kek_url = key.kek_url(),
                        revoked = kind.is_revocation(),
                        "DEK cache: key evicted after a failed unwrap"
                    );
                }
                Err(e)
            }
        }
    }

    fn entry(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        read(self.local()).get(key).map(|s| Arc::clone(&s.entry))
    }

    fn insert(
        self: &Arc<Self>,
        key: &CacheKey,
        value: ResolvedKey,
        provider: &Arc<dyn KeyEncryptionKeyProvider>,
        now: u64,
    ) {
        self.ensure_sweeper();
        let ttl = nanos(self.options.ttl);
        let expires_at = now.saturating_add(ttl);
        let refresh_at = if self.options.refresh_ahead.is_zero() {
            expires_at
        } else {
            expires_at.saturating_sub(nanos(self.options.refresh_ahead))
        };
        let entry = Arc::new(Entry {
            value,
            provider: Arc::clone(provider),
            refresh_at,
            expires_at,
            stale_until: AtomicU64::new(0),
            failed_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            last_used: AtomicU64::new(now),
            seq: self.seq.fetch_add(1, Relaxed),
        });
        let mut replaced = false;
        let mut old = Vec::new();
        // The copies are made (their cell keys derived) before the locks are taken.
        let values: Vec<ResolvedKey> = (0..self.replicas.len())
            .map(|i| {
                if i == 0 {
                    entry.value.clone()
                } else {
                    entry.value.replicate()
                }
            })
            .collect();
        for (mut map, value) in self.write_all().into_iter().zip(values) {
            let slot = Slot {
                entry: Arc::clone(&entry),
                value,
            };
            if let Some(prev) = map.insert(key.clone(), slot) {
                replaced = true;
                old.push(prev);
            }
        }
        // Replaced keys drop (and zeroize) here, outside the locks.
        drop(old);
        if !replaced {
            self.len.fetch_add(1, Relaxed);
        }
        while self.len.load(Relaxed) > self.options.max_entries {
            if !self.evict_lru(key) {
                break;
            }
        }
    }

    /// Evicts the least recently used key other than `keep`.
    fn evict_lru(&self, keep: &CacheKey) -> bool {
        let mut victim: Option<(u64, u64, CacheKey)> = None;
        for (k, slot) in read(self.local()).iter() {
            if k == keep {
                continue;
            }
            let rank = (slot.entry.last_used.load(Relaxed), slot.entry.seq);
            if victim.as_ref().is_none_or(|(u, q, _)| rank < (*u, *q)) {
                victim = Some((rank.0, rank.1, k.clone()));
            }
        }
        let Some((_, _, k)) = victim else {
            return false;
        };
        let mut removed = Vec::new();
        for mut map in self.write_all() {
            removed.extend(map.remove(&k));
        }
        let found = !removed.is_empty();
        drop(removed);
        if found {
            self.len.fetch_sub(1, Relaxed);
            bump(&self.counters.lru_evictions);
            tracing::debug!(
                key_id = k.cek_id(),
                kek_url = k.kek_url(),
                "DEK cache: least recently used key evicted"
            );
        }
        true
    }

    /// Removes `key` if it may no longer be served.
    fn remove_if_dead(&self, key: &CacheKey, now: u64) {
        let mut maps = self.write_all();
        if maps[0].get(key).is_some_and(|s| !s.entry.alive(now)) {
            let removed: Vec<Slot> = maps.iter_mut().filter_map(|m| m.remove(key)).collect();
            drop(maps);
            drop(removed);
            self.len.fetch_sub(1, Relaxed);
            bump(&self.counters.expirations);
            tracing::debug!(
                key_id = key.cek_id(),
                kek_url = key.kek_url(),
                "DEK cache: expired key dropped"
            );
        }
    }

    /// Removes the entries matching `pred` (not counted as evictions); returns how many.
    fn remove_where(&self, pred: impl Fn(&CacheKey, &Entry) -> bool) -> usize {
        let mut removed = Vec::new();
        let mut maps = self.write_all();
        let doomed: Vec<CacheKey> = maps[0]
            .iter()
            .filter(|(k, s)| pred(k, &s.entry))
            .map(|(k, _)| k.clone())
            .collect();
        for map in &mut maps {
            for k in &doomed {
                if let Some(e) = map.remove(k) {
                    removed.push(e);
                }
            }
        }
        drop(maps);
        self.len.fetch_sub(doomed.len(), Relaxed);
        // The values drop (and zeroize, if no one else holds them) here, outside the locks.
        drop(removed);
        doomed.len()
    }

    /// Drops every entry that may no longer be served.
    fn sweep(&self) -> usize {
        let now = self.now();
        let n = self.remove_where(|_, e| !e.alive(now));
        self.counters.expirations.fetch_add(n as u64, Relaxed);
        if n > 0 {
            tracing::debug!(removed = n, "DEK cache: expired keys swept");
        }
        n
    }

    /// Starts the background sweep on the current Tokio runtime, once.
    fn ensure_sweeper(self: &Arc<Self>) {
        if !self.caching() || self.sweeper.get().is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(self);
        let every = (self.options.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let _ = self.sweeper.get_or_init(|| {
            handle
                .spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        match weak.upgrade() {
                            Some(inner) => {
                                inner.sweep();
                            }
                            None => break,
                        }
                    }
                })
                .abort_handle()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_identity() {
        let a = CacheKey::new(
            "cek1",
            "https://v/keys/k/1",
            KeyWrapAlgorithm::RsaOaep,
            b"w1",
        );
        let same = CacheKey::new(
            "cek1",
            "https://v/keys/k/1",
            KeyWrapAlgorithm::RsaOaep,
            b"w1",
        );
        assert_eq!(a, same);
        for other in [
            CacheKey::new(
                "cek2",
                "https://v/keys/k/1",
                KeyWrapAlgorithm::RsaOaep,
                b"w1",
            ),
            CacheKey::new(
                "cek1",
                "https://v/keys/k/2",
                KeyWrapAlgorithm::RsaOaep,
                b"w1",
            ),
            CacheKey::new(
                "cek1",
                "https://v/keys/k/1",
                KeyWrapAlgorithm::RsaOaep256,
                b"w1",
            ),
            CacheKey::new(
                "cek1",
                "https://v/keys/k/1",
                KeyWrapAlgorithm::RsaOaep,
                b"w2",
            ),
        ] {
            assert_ne!(a, other);
        }
        let s = format!("{a:?}");
        assert!(s.contains("cek1") && !s.contains("w1"), "{s}");
    }

    #[test]
    fn without_a_runtime_the_cache_still_works_synchronously() {
        let c = DekCache::new(CacheOptions::default());
        let k = CacheKey::new("cek1", "u", KeyWrapAlgorithm::RsaOaep, b"w");
        assert!(c.get(&k).is_none());
        assert_eq!(c.stats().entries, 0);
        assert!(c.inner.sweeper.get().is_none());
    }

    #[test]
    fn refresh_ahead_is_clamped_to_half_the_ttl() {
        let c = DekCache::new(CacheOptions {
            ttl: Duration::from_secs(60),
            ..CacheOptions::default()
        });
        assert_eq!(c.options().refresh_ahead, Duration::from_secs(30));
    }

    #[test]
    fn striped_counter_sums() {
        let c = Arc::new(StripedCounter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.get(), 4000);
    }
}
