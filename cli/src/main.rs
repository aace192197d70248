//! `ae`, the always-encrypted command-line tool: make and rewrap keys, encrypt and decrypt
//! NDJSON documents in bulk, encrypt query parameters, and a no-cloud demo.
//!
//! Exit codes: 0 success; 1 a data error (a document that cannot be encrypted or
//! decrypted: bad JSON, wrong type, tampered ciphertext); 2 usage (bad flags, an
//! unreadable or invalid policy or input file); 3 key access (store missing or corrupt,
//! key not found, key-encryption key access denied or failed, or refused: on an untrusted
//! Key Vault host, or not among the trusted KEKs); 4 writing the output failed.

// A command-line tool prints: its results on stdout, progress and errors on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod demo;
mod error;
mod output;
mod pipeline;
mod progress;
#[cfg(test)]
mod test_dir;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::CliError;
use crate::progress::ProgressMode;

/// always-encrypted: client-side, property-level encryption of JSON documents,
/// byte-compatible with Azure Cosmos DB Always Encrypted.
#[derive(Debug, Parser)]
#[command(name = "ae", version, about, long_about = None, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Use the RSA private key in the PEM file for the Key Vault key at URL, wrapping and
    /// unwrapping locally exactly as Key Vault's RSA-OAEP would (no cloud). Repeatable.
    #[arg(long = "local-kek", value_name = "URL=PEM", global = true, value_parser = parse_local_kek)]
    pub(crate) local_kek: Vec<(String, PathBuf)>,
    /// Accept only keys wrapped by this key-encryption key: a versioned Key Vault key URL
    /// (that version), a key URL without version (all its versions) or a vault URL, the
    /// part before /keys/ (all its keys), each as `ae keys list` shows it; any other
    /// key is refused, local ones too. Repeatable. Without the flag: the URLs in
    /// AE_TRUSTED_KEKS (comma- or space-separated; set but empty is an error); without
    /// both, every key-encryption key is accepted.
    #[arg(long = "trusted-kek", value_name = "URL", global = true)]
    pub(crate) trusted_kek: Vec<String>,
    /// Also send Key Vault requests to hosts under SUFFIX (a sovereign cloud, a private
    /// endpoint name), on port 443, or on PORT only. By default only Azure's Key Vault and
    /// Managed HSM domains (*.vault.azure.net, *.managedhsm.azure.net, their sovereign-cloud
    /// twins) on port 443 are trusted; a key URL elsewhere is refused before any request.
    /// Repeatable. Without the flag: the entries in AE_TRUSTED_KEY_VAULT_HOSTS (comma- or
    /// space-separated).
    #[arg(
        long = "trusted-key-vault-host",
        value_name = "SUFFIX[:PORT]",
        global = true
    )]
    pub(crate) trusted_key_vault_host: Vec<String>,
    /// Worker threads for encrypt and decrypt (default: all cores).
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
    /// Always show a progress bar on stderr.
    #[arg(long, global = true, conflicts_with = "no_progress")]
    pub(crate) progress: bool,
    /// Never show a progress bar (the final summary line is still printed on stderr).
    #[arg(long = "no-progress", global = true)]
    pub(crate) no_progress: bool,
    /// Accept extended policies: nested paths (/a/b), array elements (/cards/[]/number)
    /// and the AE1 algorithm. The Microsoft SDKs cannot read what they produce.
    #[arg(long, global = true)]
    pub(crate) extended: bool,
}

impl GlobalArgs {
    pub(crate) fn progress_mode(&self) -> ProgressMode {
        if self.progress {
            ProgressMode::Always
        } else if self.no_progress {
            ProgressMode::Never
        } else {
            ProgressMode::Auto
        }
    }

    /// The `--trusted-kek` URLs, else those in `AE_TRUSTED_KEKS`, with where they came from.
    ///
    /// An `AE_TRUSTED_KEKS` that is set but names no key (empty, or only separators) is a
    /// usage error, not "trust every key": a deployment whose variable failed to expand
    /// must not lose its restriction silently.
    pub(crate) fn trusted_keks(&self) -> Result<(Vec<String>, &'static str), CliError> {
        let (keks, from) = flag_or_env(&self.trusted_kek, "--trusted-kek", TRUSTED_KEKS_ENV)?;
        if keks.is_empty() && std::env::var_os(TRUSTED_KEKS_ENV).is_some() {
            return Err(CliError::Usage(format!(
                "{TRUSTED_KEKS_ENV} is set but names no key-encryption key; unset it to accept \
                 every key, or list the trusted key URLs"
            )));
        }
        Ok((keks, from))
    }

    /// The `--trusted-key-vault-host` entries, else those in `AE_TRUSTED_KEY_VAULT_HOSTS`,
    /// with where they came from.
    pub(crate) fn trusted_key_vault_hosts(&self) -> Result<(Vec<String>, &'static str), CliError> {
        flag_or_env(
            &self.trusted_key_vault_host,
            "--trusted-key-vault-host",
            TRUSTED_HOSTS_ENV,
        )
    }

    pub(crate) fn threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Trusted key-encryption keys when `--trusted-kek` is not given.
const TRUSTED_KEKS_ENV: &str = "AE_TRUSTED_KEKS";
/// Trusted Key Vault hosts when `--trusted-key-vault-host` is not given.
const TRUSTED_HOSTS_ENV: &str = "AE_TRUSTED_KEY_VAULT_HOSTS";

/// `values` if any, else the comma- or whitespace-separated entries of the variable `var`.
fn flag_or_env(
    values: &[String],
    flag: &'static str,
    var: &'static str,
) -> Result<(Vec<String>, &'static str), CliError> {
    if !values.is_empty() {
        return Ok((values.to_vec(), flag));
    }
    match std::env::var(var) {
        Ok(v) => Ok((
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            var,
        )),
        Err(std::env::VarError::NotPresent) => Ok((Vec::new(), var)),
        // Never ignored: an unreadable trust list must not mean "trust everything".
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(CliError::Usage(format!("{var} is not valid UTF-8")))
        }
    }
}

fn parse_local_kek(s: &str) -> Result<(String, PathBuf), String> {
    // Key Vault key URLs have no query string, so the first '=' ends the URL and the PEM
    // path may itself contain '='.
    match s.split_once('=') {
        Some((url, pem)) if !url.is_empty() && !pem.is_empty() => {
            Ok((url.to_owned(), PathBuf::from(pem)))
        }
        _ => Err("expected URL=PEM, e.g. https://myvault.vault.azure.net/keys/kek1=kek.pem".into()),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, rewrap, list, export and import client encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypt NDJSON documents (one per line) as the policy says.
    Encrypt(CryptArgs),
    /// Decrypt NDJSON documents (one per line) as the policy says.
    Decrypt(DecryptArgs),
    /// Encrypt a query parameter for an equality comparison on a Deterministic path.
    Param(ParamArgs),
    /// Re-encrypt NDJSON documents from one policy (old keys) to another (new keys, paths,
    /// types), value by value; documents already converted pass through unchanged.
    ///
    /// Every value the new policy encrypts ends under its key and type; a value only the
    /// old policy encrypted comes out as plaintext. The summary counts a document as
    /// "already converted" when nothing in it changed: every value the old policy
    /// encrypted is absent, null, already encrypted the new policy's way (same key, type
    /// and algorithm) or plaintext where the new policy no longer encrypts, and every
    /// value the new policy encrypts already decrypts under it. Such a document passes
    /// through byte for byte; every other document is "converted". A run can be started
    /// again on its own output, or on a mix of converted and unconverted documents. A
    /// value that looks like a ciphertext but does not authenticate under the key its path
    /// needs (tampered, or the wrong key) fails the run; with -o nothing is written then.
    Reencrypt(ReencryptArgs),
    /// Show the library on sample documents, with a local key and no cloud.
    Demo,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a data-encryption key, wrapped by the key-encryption key at --kek-url.
    Create {
        #[command(flatten)]
        store: StoreArg,
        /// The client encryption key id, e.g. cek1.
        #[arg(long)]
        id: String,
        /// The Key Vault key URL: `https://<vault>.vault.azure.net/keys/<name>[/<version>]`.
        #[arg(long = "kek-url", value_name = "URL")]
        kek_url: String,
        /// How the data-encryption key is wrapped (the Microsoft SDKs read only RSA-OAEP).
        #[arg(long = "wrap-algorithm", value_enum, default_value_t = WrapAlgorithm::RsaOaep)]
        wrap_algorithm: WrapAlgorithm,
    },
    /// Rewrap a key under another key-encryption key; documents are untouched.
    Rewrap {
        #[command(flatten)]
        store: StoreArg,
        /// The client encryption key id.
        #[arg(long)]
        id: String,
        /// The new Key Vault key URL.
        #[arg(long = "kek-url", value_name = "NEW_URL")]
        kek_url: String,
        /// How the data-encryption key is wrapped.
        #[arg(long = "wrap-algorithm", value_enum, default_value_t = WrapAlgorithm::RsaOaep)]
        wrap_algorithm: WrapAlgorithm,
    },
    /// List the keys: ids, key-encryption key URLs and algorithms (never key bytes).
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Also show which keys this policy uses (and any it needs that the store lacks).
        #[arg(long, value_name = "POLICY")]
        policy: Option<PathBuf>,
    },
    /// Export keys (all, or the --id ones) as a JSON array of key resources.
    Export {
        #[command(flatten)]
        store: StoreArg,
        /// Export only these keys. Repeatable.
        #[arg(long)]
        id: Vec<String>,
        /// Write to this file (atomically) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Import keys from a JSON array of key resources (all or nothing).
    Import {
        #[command(flatten)]
        store: StoreArg,
        /// The exported keys.
        #[arg(value_name = "IN")]
        input: PathBuf,
    },
}

/// `--store FILE`.
#[derive(Debug, Args)]
pub(crate) struct StoreArg {
    /// The key store: a JSON file holding an array of client encryption key resources.
    #[arg(long, value_name = "FILE")]
    pub(crate) store: PathBuf,
}

/// Key wrap algorithms.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum WrapAlgorithm {
    /// RSA-OAEP with SHA-1 (Key Vault's RSA-OAEP; what the Microsoft SDKs use).
    #[value(name = "RSA-OAEP")]
    RsaOaep,
    /// RSA-OAEP with SHA-256 (not readable by the Microsoft SDKs).
    #[value(name = "RSA-OAEP-256")]
    RsaOaep256,
}

/// Store, policy and partition keys: what encrypt, decrypt and param share.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(flatten)]
    pub(crate) store: StoreArg,
    /// The Cosmos ClientEncryptionPolicy JSON file.
    #[arg(long, value_name = "POLICY")]
    pub(crate) policy: PathBuf,
    /// The container's partition-key path (e.g. /pk). Repeatable for hierarchical keys.
    #[arg(long = "partition-key-path", value_name = "/pk")]
    pub(crate) partition_key_paths: Vec<String>,
}

/// Input and output files.
#[derive(Debug, Args)]
pub(crate) struct IoArgs {
    /// Read NDJSON from this file instead of stdin.
    #[arg(short = 'i', long = "input", value_name = "IN")]
    pub(crate) input: Option<PathBuf>,
    /// Write NDJSON to this file, atomically, instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CryptArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) io: IoArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) io: IoArgs,
    /// Leave properties whose key is not accessible (missing, access denied, disabled)
    /// as ciphertext, and list them on stderr, instead of failing.
    #[arg(long)]
    pub(crate) lenient: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("param_value").required(true).args(["value", "value_file"])))]
pub(crate) struct ParamArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// The encrypted path the parameter is compared with, e.g. /ssn.
    #[arg(long, value_name = "/PATH")]
    pub(crate) path: String,
    /// The parameter value as JSON text, typed exactly as the same text in a document:
    /// '"123-45-6789"' (a string; the quotes are JSON's), 42 or -5 (Longs), 42.0 or 1e3
    /// (Doubles), true. A value starting with '-' is a value, not a flag. It shows in
    /// the process list and shell history: for a secret, use --value-file.
    #[arg(long, value_name = "JSON", allow_hyphen_values = true)]
    pub(crate) value: Option<String>,
    /// Read the parameter value (JSON text, as for --value) from FILE; '-' reads stdin.
    /// Whitespace around it, such as the final newline, is ignored.
    #[arg(long = "value-file", value_name = "FILE")]
    pub(crate) value_file: Option<PathBuf>,
    /// Type every number as a Long or a Double instead of from its literal, to match
    /// values another writer typed differently (the JavaScript SDK stores 1.0 as a Long).
    /// long accepts any integer value that fits int64 exactly (1.0, 1e3); double, any
    /// number with an exact double.
    #[arg(long = "number-type", value_enum)]
    pub(crate) number_type: Option<NumberTypeArg>,
}

#[derive(Debug, Args)]
pub(crate) struct ReencryptArgs {
    #[command(flatten)]
    pub(crate) store: StoreArg,
    /// The policy the documents are encrypted under now.
    #[arg(long = "from-policy", value_name = "OLD")]
    pub(crate) from_policy: PathBuf,
    /// The policy to encrypt them under.
    #[arg(long = "to-policy", value_name = "NEW")]
    pub(crate) to_policy: PathBuf,
    /// The container's partition-key path (e.g. /pk). Repeatable.
    #[arg(long = "partition-key-path", value_name = "/pk")]
    pub(crate) partition_key_paths: Vec<String>,
    #[command(flatten)]
    pub(crate) io: IoArgs,
}

/// `--number-type`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum NumberTypeArg {
    /// A 64-bit integer.
    Long,
    /// A double.
    Double,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(CliError::Io {
            what: "starting the async runtime".into(),
            source: e,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Keys(k) => commands::keys(g, k).await,
        Command::Encrypt(a) => commands::encrypt(g, a).await,
        Command::Decrypt(a) => commands::decrypt(g, a).await,
        Command::Param(a) => commands::param(g, a).await,
        Command::Reencrypt(a) => commands::reencrypt(g, a).await,
        Command::Demo => demo::run(g).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_kek_parses() {
        assert_eq!(
            parse_local_kek("https://v.vault.azure.net/keys/k=kek.pem").unwrap(),
            (
                "https://v.vault.azure.net/keys/k".to_owned(),
                PathBuf::from("kek.pem")
            )
        );
        assert!(parse_local_kek("no-equals").is_err());
        assert!(parse_local_kek("=x.pem").is_err());
        assert!(parse_local_kek("https://x=").is_err());
    }
}
