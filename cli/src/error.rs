//! The CLI's error type: what went wrong, a hint, and a documented exit code.

use std::fmt;
use std::path::PathBuf;

/// Exit code for a document that cannot be processed.
pub(crate) const EXIT_DATA: u8 = 1;
/// Exit code for bad usage: flags, an unreadable or invalid policy or input.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code for key access: store, key, key-encryption key.
pub(crate) const EXIT_KEYS: u8 = 3;
/// Exit code for failing to write the output.
pub(crate) const EXIT_OUTPUT: u8 = 4;

/// Everything `ae` can fail with.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A library error outside any one document (policy, keys, store).
    Library {
        what: String,
        source: always_encrypted::Error,
    },
    /// A document failed.
    Line {
        line: u64,
        source: always_encrypted::Error,
    },
    /// A line is not JSON text the tool can read (not UTF-8).
    NotUtf8 { line: u64 },
    /// A file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The input stream could not be read.
    Input { source: std::io::Error },
    /// The output could not be written.
    Output {
        path: Option<PathBuf>,
        source: std::io::Error,
    },
    /// Other I/O.
    Io {
        what: String,
        source: std::io::Error,
    },
    /// Bad usage the argument parser could not catch.
    Usage(String),
}

impl CliError {
    pub(crate) fn library(what: impl Into<String>, source: always_encrypted::Error) -> Self {
        CliError::Library {
            what: what.into(),
            source,
        }
    }

    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Library { source, .. } => library_exit_code(source),
            CliError::Line { source, .. } => {
                if source.is_key_unavailable() {
                    EXIT_KEYS
                } else {
                    EXIT_DATA
                }
            }
            CliError::NotUtf8 { .. } => EXIT_DATA,
            CliError::Read { .. } | CliError::Input { .. } | CliError::Usage(_) => EXIT_USAGE,
            CliError::Output { .. } | CliError::Io { .. } => EXIT_OUTPUT,
        }
    }

    /// A line of advice for the user, where one helps.
    pub(crate) fn hint(&self) -> Option<String> {
        use always_encrypted::Error as E;
        let source = match self {
            CliError::Library { source, .. } | CliError::Line { source, .. } => source,
            CliError::NotUtf8 { .. } => {
                return Some("the input must be UTF-8 NDJSON: one JSON document per line".into());
            }
            _ => return None,
        };
        match source {
            E::KeyNotFound { .. } => Some(
                "list the keys with `ae keys list --store FILE`, or create one with `ae keys create`".into(),
            ),
            E::KeyProvider { source, .. } => Some(match source.kind() {
                always_encrypted::keys::KeyProviderErrorKind::AccessDenied => "check that your identity may use this key (Key Vault role \"Key Vault Crypto User\", or get/wrapKey/unwrapKey permissions)".into(),
                always_encrypted::keys::KeyProviderErrorKind::KeyNotFound => "no such key-encryption key: check the URL, or pass --local-kek URL=PEM for a local key".into(),
                always_encrypted::keys::KeyProviderErrorKind::InvalidWrappedKey => "the key-encryption key cannot unwrap this key: is it the key that wrapped it (same URL, same PEM)?".into(),
                always_encrypted::keys::KeyProviderErrorKind::Transient => "a passing failure (throttling, timeout, network): try again".into(),
                always_encrypted::keys::KeyProviderErrorKind::Untrusted => "the key resource names a key-encryption key this run does not trust: if it is your Key Vault on a host outside Azure's Key Vault domains or port 443, add --trusted-key-vault-host HOST[:PORT]; if --trusted-kek or AE_TRUSTED_KEKS is set, it must list the key (see `ae keys list`)".into(),
                _ => return None,
            }),
            E::DecryptionFailed { .. } => Some(
                "the value was tampered with, or encrypted under another key".into(),
            ),
            E::InvalidPolicy { .. } => Some(
                "see the ClientEncryptionPolicy format in the README".into(),
            ),
            _ => None,
        }
    }
}

/// Exit code of a library error that is not about one document.
pub(crate) fn library_exit_code(e: &always_encrypted::Error) -> u8 {
    use always_encrypted::Error as E;
    match e {
        E::InvalidPolicy { .. } | E::UnsupportedOperation { .. } => EXIT_USAGE,
        E::DecryptionFailed { .. }
        | E::MalformedCiphertext { .. }
        | E::UnsupportedValue { .. }
        | E::InvalidDocument { .. } => EXIT_DATA,
        _ => EXIT_KEYS,
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Library { what, source } => write!(f, "{what}: {source}"),
            CliError::Line { line, source } => write!(f, "line {line}: {source}"),
            CliError::NotUtf8 { line } => write!(f, "line {line}: not valid UTF-8"),
            CliError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CliError::Input { source } => write!(f, "reading the input failed: {source}"),
            CliError::Output { path, source } => match path {
                Some(p) => write!(f, "writing {} failed: {source}", p.display()),
                None => write!(f, "writing the output failed: {source}"),
            },
            CliError::Io { what, source } => write!(f, "{what}: {source}"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}
