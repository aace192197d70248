//! Key Vault key URLs: `https://<vault>.vault.azure.net/keys/<name>[/<version>]`.

use std::fmt;

use azure_core::http::Url;
use azure_security_keyvault_keys::ResourceId;

use crate::keys::{KeyProviderError, KeyProviderErrorKind};

/// A parsed, validated Key Vault (or Managed HSM) key URL:
/// `https://<host>[:<port>]/keys/<name>[/<version>]`.
///
/// The checks are stricter than the SDK's own parser: `https` only, no user name or
/// password, no query or fragment, nothing after the version, a key name of letters, digits
/// and `-` (1 to 127 characters, as Key Vault allows) and a version of letters and digits.
/// So a key URL can never inject a path or query into the requests built from it.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::KeyVaultKeyUrl;
///
/// let url: KeyVaultKeyUrl = "https://MyVault.vault.azure.net/keys/kek1/0123abcd".parse()?;
/// assert_eq!(url.vault_url(), "https://myvault.vault.azure.net");
/// assert_eq!((url.name(), url.version()), ("kek1", Some("0123abcd")));
/// assert_eq!(url.to_string(), "https://myvault.vault.azure.net/keys/kek1/0123abcd");
/// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyVaultKeyUrl {
    vault_url: String,
    host: String,
    port: u16,
    name: String,
    version: Option<String>,
}

impl KeyVaultKeyUrl {
    /// Parses and validates `url`.
    ///
    /// # Errors
    ///
    /// A [`KeyProviderError`] of kind [`KeyProviderErrorKind::InvalidInput`] that says what is
    /// wrong (the URL in it has any user name or password removed).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyProviderErrorKind, KeyVaultKeyUrl};
    ///
    /// let url = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/kek1")?;
    /// assert_eq!(url.version(), None);
    /// for bad in [
    ///     "http://myvault.vault.azure.net/keys/kek1",        // not https
    ///     "https://myvault.vault.azure.net/secrets/kek1",    // not a key
    ///     "https://myvault.vault.azure.net/keys/kek1?x=1",   // a query
    ///     "https://me:pw@myvault.vault.azure.net/keys/kek1", // credentials
    /// ] {
    ///     let e = KeyVaultKeyUrl::parse(bad).unwrap_err();
    ///     assert_eq!(e.kind(), KeyProviderErrorKind::InvalidInput);
    ///     assert!(!e.to_string().contains("pw@"));
    /// }
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn parse(url: &str) -> Result<KeyVaultKeyUrl, KeyProviderError> {
        let invalid = |why: &str| {
            KeyProviderError::new(
                KeyProviderErrorKind::InvalidInput,
                redact_url(url),
                format!(
                    "not a Key Vault key URL ({why}); expected \
                     https://<vault>.vault.azure.net/keys/<name>/<version>"
                ),
            )
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(invalid("the scheme must be https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("it must not contain a user name or password"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return Err(invalid("it has no host"));
        };
        let host = host.to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.collect())
            .unwrap_or_default();
        let segments: &[&str] = match segments.as_slice() {
            [rest @ .., ""] => rest, // one trailing slash is fine
            all => all,
        };
        let (name, version) = match segments {
            ["keys", name] => (*name, None),
            ["keys", name, version] => (*name, Some(*version)),
            _ => {
                return Err(invalid(
                    "the path must be /keys/<name> or /keys/<name>/<version>",
                ));
            }
        };
        if name.is_empty()
            || name.len() > 127
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "the key name must be 1 to 127 letters, digits or dashes",
            ));
        }
        if let Some(v) = version
            && (v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(invalid("the key version must be letters and digits"));
        }
        // The SDK's own parser agrees on vault, name and version (it gives the vault URL
        // in the form the client wants: scheme and authority, no default port).
        let id = ResourceId::try_from(&parsed).map_err(|_| invalid("rejected by the SDK"))?;
        if id.name != name || id.version.as_deref() != version {
            return Err(invalid("ambiguous path"));
        }
        Ok(KeyVaultKeyUrl {
            vault_url: id.vault_url,
            host,
            port,
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    /// The vault: `https://<host>[:<port>]` (default port left out, host in lower case).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let url = KeyVaultKeyUrl::parse("https://MYVAULT.vault.azure.net:443/keys/kek1")?;
    /// assert_eq!(url.vault_url(), "https://myvault.vault.azure.net");
    /// let hsm = KeyVaultKeyUrl::parse("https://myhsm.managedhsm.azure.net:8443/keys/k")?;
    /// assert_eq!(hsm.vault_url(), "https://myhsm.managedhsm.azure.net:8443");
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn vault_url(&self) -> &str {
        &self.vault_url
    }

    /// The host, as the client connects to it: lower case, international names in their
    /// ASCII (`xn--`) form, an IPv6 address in brackets.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let url = KeyVaultKeyUrl::parse("https://MyVault.vault.azure.net/keys/kek1")?;
    /// assert_eq!(url.host(), "myvault.vault.azure.net");
    /// let ip = KeyVaultKeyUrl::parse("https://[::1]:8443/keys/kek1")?;
    /// assert_eq!((ip.host(), ip.port()), ("[::1]", 8443));
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 unless the URL names another).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let url = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/kek1")?;
    /// assert_eq!(url.port(), 443);
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key name.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let url = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/cosmos-kek/1")?;
    /// assert_eq!(url.name(), "cosmos-kek");
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key version, if the URL names one.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let versioned = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/kek1/abc123")?;
    /// assert_eq!(versioned.version(), Some("abc123"));
    /// let current = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/kek1/")?;
    /// assert_eq!(current.version(), None);
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The same key at `version`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyVaultKeyUrl;
    ///
    /// let url = KeyVaultKeyUrl::parse("https://myvault.vault.azure.net/keys/kek1")?;
    /// let v2 = url.with_version("0002");
    /// assert_eq!(v2.to_string(), "https://myvault.vault.azure.net/keys/kek1/0002");
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    #[must_use]
    pub fn with_version(&self, version: &str) -> KeyVaultKeyUrl {
        KeyVaultKeyUrl {
            vault_url: self.vault_url.clone(),
            host: self.host.clone(),
            port: self.port,
            name: self.name.clone(),
            version: Some(version.to_owned()),
        }
    }
}

impl fmt::Display for KeyVaultKeyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keys/{}", self.vault_url, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyVaultKeyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyVaultKeyUrl({self})")
    }
}

impl std::str::FromStr for KeyVaultKeyUrl {
    type Err = KeyProviderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyVaultKeyUrl::parse(s)
    }
}

/// The hosts (and ports) an [`AzureKeyVaultProvider`](super::AzureKeyVaultProvider) may send
/// requests to: a key URL whose host is not under one of them is refused before any request
/// (no connection, no token), with a [`KeyProviderErrorKind::Untrusted`] error.
///
/// A key URL comes from a client encryption key resource, and key stores (a JSON file, a
/// Cosmos DB container) are often writable by more people than Key Vault is; without this
/// check such a resource could send the client to any server, which would then choose the
/// data-encryption key.
///
/// Each entry is a host name suffix and a port (443 unless given). A host is under a suffix
/// when it is the suffix or ends with `.` and the suffix: `myvault.vault.azure.net` is under
/// `vault.azure.net`, `vault.azure.net.example.com` and `evilvault.azure.net` are not.
/// Hosts are compared as the client connects to them (lower case, international names in
/// their ASCII form, percent-escapes decoded); a host with a trailing dot is never trusted.
/// An IP address entry matches that address only, and an IP address host matches nothing
/// else. The default entries are the domains Microsoft's own Always Encrypted providers
/// trust ([`Self::AZURE_SUFFIXES`]), port 443.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{KeyVaultKeyUrl, TrustedKeyVaultHosts};
///
/// let mut hosts = TrustedKeyVaultHosts::default();
/// let url = |u: &str| KeyVaultKeyUrl::parse(u).unwrap();
/// assert!(hosts.allows(&url("https://myvault.vault.azure.net/keys/kek1/1")));
/// assert!(hosts.allows(&url("https://myhsm.managedhsm.azure.net:443/keys/kek1/1")));
/// assert!(!hosts.allows(&url("https://kv.attacker.example/keys/kek1/1")));
/// assert!(!hosts.allows(&url("https://myvault.vault.azure.net:8443/keys/kek1/1")));
/// assert!(!hosts.allows(&url("https://127.0.0.1/keys/kek1/1")));
///
/// // A private endpoint name, and a port.
/// hosts.allow("kv.corp.example")?;
/// hosts.allow("vault.azure.net:8443")?;
/// assert!(hosts.allows(&url("https://kv.corp.example/keys/kek1/1")));
/// assert!(hosts.allows(&url("https://myvault.vault.azure.net:8443/keys/kek1/1")));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKeyVaultHosts {
    rules: Vec<HostRule>,
}

#[derive(Clone, PartialEq, Eq)]
struct HostRule {
    /// A lower-case ASCII domain, or an IP address as the URL parser writes it.
    host: String,
    ip: bool,
    port: u16,
}

impl HostRule {
    fn matches(&self, host: &str, port: u16) -> bool {
        if port != self.port || self.ip != is_ip(host) {
            return false;
        }
        if self.ip {
            return host == self.host;
        }
        if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
            return false;
        }
        host == self.host
            || host
                .strip_suffix(self.host.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if self.port != 443 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// True for an IP address host as the URL parser writes it (`127.0.0.1`, `[::1]`).
fn is_ip(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
}

impl TrustedKeyVaultHosts {
    /// The Key Vault and Managed HSM domains of Azure's public and sovereign clouds, as
    /// Microsoft's own Always Encrypted providers trust them. The default entries, port 443.
    ///
    /// ```
    /// use always_encrypted::keys::TrustedKeyVaultHosts;
    ///
    /// assert!(TrustedKeyVaultHosts::AZURE_SUFFIXES.contains(&"vault.azure.net"));
    /// ```
    pub const AZURE_SUFFIXES: [&'static str; 8] = [
        "vault.azure.net",
        "vault.azure.cn",
        "vault.usgovcloudapi.net",
        "vault.microsoftazure.de",
        "managedhsm.azure.net",
        "managedhsm.azure.cn",
        "managedhsm.usgovcloudapi.net",
        "managedhsm.microsoftazure.de",
    ];

    /// No trusted host at all: only those you then [`allow`](Self::allow).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyVaultKeyUrl, TrustedKeyVaultHosts};
    ///
    /// let mut hosts = TrustedKeyVaultHosts::none();
    /// hosts.allow("myvault.vault.azure.net")?; // this vault and nothing else
    /// let other = KeyVaultKeyUrl::parse("https://other.vault.azure.net/keys/k/1")?;
    /// assert!(!hosts.allows(&other));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn none() -> TrustedKeyVaultHosts {
        TrustedKeyVaultHosts { rules: Vec::new() }
    }

    /// Also trusts `entry`: `SUFFIX` or `SUFFIX:PORT`, where `SUFFIX` is a host name (every
    /// host under it is trusted) or an IP address (that address only; IPv6 in brackets),
    /// and `PORT` the one port trusted for it (default 443). No scheme, path, user name,
    /// wildcard, leading or trailing dot.
    ///
    /// # Errors
    ///
    /// [`Error::KeyProviderConfig`](crate::Error::KeyProviderConfig) naming the entry and
    /// what is wrong with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::TrustedKeyVaultHosts;
    ///
    /// let mut hosts = TrustedKeyVaultHosts::default();
    /// hosts.allow("vault.example.sovcloud")?;
    /// hosts.allow("127.0.0.1:8443")?;
    /// hosts.allow("[::1]:8443")?;
    /// for bad in ["https://vault.example", "*.vault.example", ".vault.example", "a/b", "x:0", ""] {
    ///     assert!(hosts.allow(bad).is_err(), "{bad}");
    /// }
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn allow(&mut self, entry: &str) -> crate::Result<()> {
        let rule = parse_host_rule(entry).map_err(|why| crate::Error::KeyProviderConfig {
            provider: crate::keys::AZURE_KEY_VAULT,
            reason: format!(
                "invalid trusted Key Vault host '{}': {why}",
                entry.chars().take(100).collect::<String>()
            ),
        })?;
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
        Ok(())
    }

    /// True when requests for `url` may be sent: its host is under a trusted entry with
    /// its port.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyVaultKeyUrl, TrustedKeyVaultHosts};
    ///
    /// let hosts = TrustedKeyVaultHosts::default();
    /// let lookalike = KeyVaultKeyUrl::parse("https://vault.azure.net.example.com/keys/k/1")?;
    /// assert!(!hosts.allows(&lookalike));
    /// # Ok::<(), always_encrypted::keys::KeyProviderError>(())
    /// ```
    pub fn allows(&self, url: &KeyVaultKeyUrl) -> bool {
        self.rules.iter().any(|r| r.matches(url.host(), url.port()))
    }

    /// The entries, as [`allow`](Self::allow) takes them (`:PORT` only when not 443).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::TrustedKeyVaultHosts;
    ///
    /// let mut hosts = TrustedKeyVaultHosts::none();
    /// hosts.allow("KV.Corp.Example:443")?;
    /// hosts.allow("127.0.0.1:8443")?;
    /// assert_eq!(hosts.entries(), ["kv.corp.example", "127.0.0.1:8443"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn entries(&self) -> Vec<String> {
        self.rules.iter().map(ToString::to_string).collect()
    }

    /// `Ok` when [`allows`](Self::allows) `url`; otherwise the error that names its host
    /// and port (and, as its URL, the vault's, not the key's).
    pub(crate) fn check(&self, url: &KeyVaultKeyUrl) -> Result<(), KeyProviderError> {
        if self.allows(url) {
            return Ok(());
        }
        tracing::warn!(
            host = url.host(),
            port = url.port(),
            "Key Vault host not trusted; nothing sent"
        );
        Err(KeyProviderError::new(
            KeyProviderErrorKind::Untrusted,
            url.vault_url(),
            format!(
                "the host {} (port {}) is not a trusted Key Vault host, so nothing was sent \
                 to it; if it is a Key Vault you use, add it to the trusted hosts \
                 (AzureKeyVaultOptions::trusted_hosts)",
                url.host(),
                url.port()
            ),
        ))
    }
}

impl Default for TrustedKeyVaultHosts {
    /// [`Self::AZURE_SUFFIXES`], port 443.
    fn default() -> Self {
        TrustedKeyVaultHosts {
            rules: Self::AZURE_SUFFIXES
                .iter()
                .map(|s| HostRule {
                    host: (*s).to_owned(),
                    ip: false,
                    port: 443,
                })
                .collect(),
        }
    }
}

impl fmt::Debug for TrustedKeyVaultHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustedKeyVaultHosts")
            .field(&self.entries())
            .finish()
    }
}

fn parse_host_rule(entry: &str) -> Result<HostRule, String> {
    if entry.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = entry
        .chars()
        .find(|c| c.is_whitespace() || "/\\@?#%*".contains(*c))
    {
        return Err(format!(
            "'{c}' is not allowed: write a host name or suffix, optionally with :PORT \
             (e.g. vault.example.net or 127.0.0.1:8443), without a scheme, path or wildcard"
        ));
    }
    if entry.starts_with('.') {
        return Err("write the suffix without a leading dot".into());
    }
    let url = Url::parse(&format!("https://{entry}/")).map_err(|e| e.to_string())?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
    if host.ends_with('.') || host.contains("..") {
        return Err("a host name has no trailing dot or empty label".into());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if port == 0 {
        return Err("port 0 is not a port".into());
    }
    Ok(HostRule {
        host: host.to_owned(),
        ip: is_ip(host),
        port,
    })
}

/// `url` for an error message: any user name or password removed, at most 300 characters.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut u) = Url::parse(url)
        && (!u.username().is_empty() || u.password().is_some())
    {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return u.as_str().chars().take(300).collect();
    }
    if url.contains('@') {
        // Not parseable but possibly holding credentials: say nothing of it.
        return "<unparseable URL>".to_owned();
    }
    url.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versioned_and_unversioned() {
        let u = KeyVaultKeyUrl::parse("https://v1.vault.azure.net/keys/kek-1/0123abcd").unwrap();
        assert_eq!(u.vault_url(), "https://v1.vault.azure.net");
        assert_eq!(u.name(), "kek-1");
        assert_eq!(u.version(), Some("0123abcd"));
        assert_eq!(
            u.to_string(),
            "https://v1.vault.azure.net/keys/kek-1/0123abcd"
        );

        let u = KeyVaultKeyUrl::parse("https://V1.vault.azure.net:443/keys/kek/").unwrap();
        assert_eq!(u.vault_url(), "https://v1.vault.azure.net");
        assert_eq!(u.version(), None);
        assert_eq!(
            u.with_version("ff").to_string(),
            "https://v1.vault.azure.net/keys/kek/ff"
        );

        let u = KeyVaultKeyUrl::parse("https://fake.vault.azure.net:8443/keys/k/1").unwrap();
        assert_eq!(u.vault_url(), "https://fake.vault.azure.net:8443");
    }

    #[test]
    fn rejects_what_could_inject_or_mislead() {
        for bad in [
            "http://v.vault.azure.net/keys/k/1",
            "https://v.vault.azure.net/secrets/k/1",
            "https://v.vault.azure.net/keys/k/1/wrapkey",
            "https://v.vault.azure.net/keys/k/1?api-version=1",
            "https://v.vault.azure.net/keys/k/1#x",
            "https://v.vault.azure.net/keys/",
            "https://v.vault.azure.net/keys/k%2F1",
            "https://v.vault.azure.net/keys/k_1",
            "https://v.vault.azure.net/keys/k/1-2",
            "https://v.vault.azure.net//keys/k/1",
            "https://user:pw@v.vault.azure.net/keys/k/1",
            "not a url",
            "",
        ] {
            let e = KeyVaultKeyUrl::parse(bad).unwrap_err();
            assert_eq!(e.kind(), KeyProviderErrorKind::InvalidInput, "{bad}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
        let long = format!("https://v.vault.azure.net/keys/{}", "a".repeat(128));
        assert!(KeyVaultKeyUrl::parse(&long).is_err());
    }

    fn url(u: &str) -> KeyVaultKeyUrl {
        KeyVaultKeyUrl::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"))
    }

    #[test]
    fn default_hosts_are_azure_key_vault_and_managed_hsm_on_443() {
        let hosts = TrustedKeyVaultHosts::default();
        for suffix in TrustedKeyVaultHosts::AZURE_SUFFIXES {
            assert!(
                hosts.allows(&url(&format!("https://x.{suffix}/keys/k/1"))),
                "{suffix}"
            );
            assert!(hosts.allows(&url(&format!("https://a.b.{suffix}:443/keys/k"))));
            assert!(!hosts.allows(&url(&format!("https://x.{suffix}:8443/keys/k/1"))));
        }
        assert_eq!(hosts.entries(), TrustedKeyVaultHosts::AZURE_SUFFIXES);
        assert!(TrustedKeyVaultHosts::none().entries().is_empty());
    }

    #[test]
    fn a_host_is_trusted_only_under_a_label_boundary() {
        let hosts = TrustedKeyVaultHosts::default();
        let allowed = [
            "https://x.vault.azure.net/keys/k/1",
            "https://X.VAULT.Azure.Net/keys/k/1",     // case
            "https://x.vault.azure.net:443/keys/k/1", // explicit default port
            "https://x%2Evault.azure.net/keys/k/1",   // percent-escape: decoded by the parser
            "https://x.vault.azure.ｎｅｔ/keys/k/1",  // full-width: IDNA maps it to ASCII
        ];
        for u in allowed {
            let parsed = url(u);
            assert!(hosts.allows(&parsed), "{u} -> {}", parsed.host());
            assert_eq!(parsed.host(), "x.vault.azure.net", "{u}");
        }
        let refused = [
            "https://vault.azure.net.evil.com/keys/k/1",
            "https://evilvault.azure.net/keys/k/1",
            "https://x.vault.azure.net.:443/keys/k/1", // trailing dot
            "https://x.vault.azure.net./keys/k/1",
            "https://x.vault.azure.network/keys/k/1",
            "https://x.vault.azure.net:8443/keys/k/1",
            "https://x.vault.azure.net:80/keys/k/1",
            "https://x.vаult.azure.net/keys/k/1", // Cyrillic а: an xn-- name, not ours
            "https://azure.net/keys/k/1",
            "https://127.0.0.1/keys/k/1",
            "https://127.0.0.1:9443/keys/k/1",
            "https://2130706433/keys/k/1", // 127.0.0.1 written as a number
            "https://0x7f.1/keys/k/1",
            "https://[::1]/keys/k/1",
            "https://169.254.169.254/keys/k/1",
            "https://kv.attacker.example/keys/k/1",
            "https://localhost/keys/k/1",
        ];
        for u in refused {
            let parsed = url(u);
            assert!(!hosts.allows(&parsed), "{u} -> {}", parsed.host());
            let e = hosts.check(&parsed).unwrap_err();
            assert_eq!(e.kind(), KeyProviderErrorKind::Untrusted, "{u}");
            // Names the host and port; its URL is the vault's, not the key's.
            assert!(e.message().contains(parsed.host()), "{e}");
            assert_eq!(e.kek_url(), parsed.vault_url());
            assert!(!e.to_string().contains("/keys/"), "{e}");
        }
        // A user name cannot smuggle a trusted name in front of another host.
        for u in [
            "https://x.vault.azure.net@evil.example/keys/k/1",
            "https://x.vault.azure.net:443@evil.example/keys/k/1",
        ] {
            assert!(KeyVaultKeyUrl::parse(u).is_err(), "{u}");
        }
        // Nor can a percent-escaped separator.
        assert!(KeyVaultKeyUrl::parse("https://evil.example%2F.vault.azure.net/keys/k/1").is_err());
    }

    #[test]
    fn added_entries_trust_a_suffix_an_address_and_a_port() {
        let mut hosts = TrustedKeyVaultHosts::default();
        hosts.allow("Vault.Sovereign.Example").unwrap();
        hosts.allow("127.0.0.1:9443").unwrap();
        hosts.allow("[::1]:9443").unwrap();
        hosts.allow("kv.corp.example:443").unwrap();
        hosts.allow("kv.corp.example").unwrap(); // a duplicate, kept once
        assert_eq!(
            hosts.entries()[8..],
            [
                "vault.sovereign.example",
                "127.0.0.1:9443",
                "[::1]:9443",
                "kv.corp.example"
            ]
        );
        for u in [
            "https://x.vault.sovereign.example/keys/k/1",
            "https://vault.sovereign.example/keys/k/1",
            "https://127.0.0.1:9443/keys/k/1",
            "https://[::1]:9443/keys/k/1",
            "https://[0:0:0:0:0:0:0:1]:9443/keys/k/1",
            "https://kv.corp.example/keys/k/1",
        ] {
            assert!(hosts.allows(&url(u)), "{u}");
        }
        for u in [
            "https://127.0.0.1/keys/k/1", // the port is part of the entry
            "https://127.0.0.1:9444/keys/k/1",
            "https://127.0.0.2:9443/keys/k/1",
            "https://kv.corp.example:9443/keys/k/1",
            "https://x.sovereign.example/keys/k/1",
            "https://evilvault.sovereign.example/keys/k/1",
        ] {
            assert!(!hosts.allows(&url(u)), "{u}");
        }
        // An address entry is not a suffix: 0.1 is the address 0.0.0.1, not "*.0.1".
        let mut ip = TrustedKeyVaultHosts::none();
        ip.allow("0.1").unwrap();
        assert_eq!(ip.entries(), ["0.0.0.1"]);
        assert!(!ip.allows(&url("https://127.0.0.1/keys/k/1")));
        // A domain entry never matches an address host that ends like it.
        let mut dom = TrustedKeyVaultHosts::none();
        dom.allow("localhost").unwrap();
        assert!(dom.allows(&url("https://localhost/keys/k/1")));
        assert!(!dom.allows(&url("https://127.0.0.1/keys/k/1")));
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let mut hosts = TrustedKeyVaultHosts::none();
        for bad in [
            "",
            " ",
            "https://vault.example",
            "vault.example/",
            "*.vault.example",
            ".vault.example",
            "vault.example.",
            "a..example",
            "me@vault.example",
            "vault.example:0",
            "vault.example:99999",
            "vault.example:x",
            "vault%2Eexample",
            "::1",
            "vault example",
        ] {
            let e = hosts.allow(bad).unwrap_err();
            assert!(
                matches!(&e, crate::Error::KeyProviderConfig { reason, .. } if reason.contains(&format!("'{bad}'"))),
                "{bad}: {e}"
            );
        }
        assert!(hosts.entries().is_empty());
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("https://user:secret@v.vault.azure.net/keys/k"),
            "https://v.vault.azure.net/keys/k"
        );
        assert_eq!(redact_url("ht!tp://a:secret@x"), "<unparseable URL>");
        assert_eq!(redact_url("https://v/keys/k"), "https://v/keys/k");
        // Capped at 300 characters, with or without credentials to remove.
        let long = format!("https://v.vault.azure.net/keys/{}", "k".repeat(400));
        assert_eq!(redact_url(&long).chars().count(), 300);
        let long = format!(
            "https://u:secret@v.vault.azure.net/keys/{}",
            "k".repeat(400)
        );
        let shown = redact_url(&long);
        assert_eq!(shown.chars().count(), 300);
        assert!(!shown.contains("secret") && shown.starts_with("https://v.vault"));
    }
}
