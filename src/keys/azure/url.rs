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
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
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
