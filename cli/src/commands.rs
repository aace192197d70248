//! The commands: keys, encrypt, decrypt, param.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use always_encrypted::atomic_file::WipingBufWriter;
use always_encrypted::cipher::{Algorithm, ReserveWiping};
use always_encrypted::keys::{
    JsonFileKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::rotation::{Reencryption, reencrypt_str};
use always_encrypted::{
    ClientEncryptionPolicy, NumberType, PolicyMode, PrepareOptions, PreparedPolicy,
};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::{Zeroize, Zeroizing};

use crate::error::CliError;
use crate::output;
use crate::pipeline::{self, PipelineError, Summary, WipingBufReader};
use crate::progress::Bar;
use crate::{
    CryptArgs, DecryptArgs, GlobalArgs, IoArgs, KeysCommand, NumberTypeArg, ParamArgs, PolicyArgs,
    ReencryptArgs, WrapAlgorithm,
};

impl From<WrapAlgorithm> for KeyWrapAlgorithm {
    fn from(a: WrapAlgorithm) -> Self {
        match a {
            WrapAlgorithm::RsaOaep => KeyWrapAlgorithm::RsaOaep,
            WrapAlgorithm::RsaOaep256 => KeyWrapAlgorithm::RsaOaep256,
        }
    }
}

/// Opens the key store; `create` makes an empty one when the file does not exist.
pub(crate) fn open_store(path: &Path, create: bool) -> Result<Arc<JsonFileKeyStore>, CliError> {
    let store = if create {
        JsonFileKeyStore::open_or_create(path)
    } else {
        JsonFileKeyStore::open(path)
    };
    store
        .map(Arc::new)
        .map_err(|e| CliError::library("opening the key store", e))
}

/// A resolver over `store` with the `--local-kek` keys and, with the `azure-key-vault`
/// feature, Azure Key Vault (trusting the default hosts and `--trusted-key-vault-host`) for
/// every other key URL; with `--trusted-kek`, only those key-encryption keys.
pub(crate) fn resolver(
    g: &GlobalArgs,
    store: Arc<JsonFileKeyStore>,
) -> Result<KeyResolver, CliError> {
    let mut builder = KeyResolver::builder(store);
    let (trusted_keks, _) = g.trusted_keks()?;
    for url in trusted_keks {
        builder = builder.trusted_kek(url);
    }
    for (url, pem) in &g.local_kek {
        let provider = LocalRsaKeyProvider::from_pem_files([(url.as_str(), pem.as_path())])
            .map_err(|e| CliError::library(format!("loading --local-kek {url}"), e))?;
        builder = builder.provider_for_url(url.clone(), Arc::new(provider));
    }
    let (hosts, hosts_from) = g.trusted_key_vault_hosts()?;
    #[cfg(feature = "azure-key-vault")]
    {
        let mut options = always_encrypted::keys::AzureKeyVaultOptions::default();
        for host in &hosts {
            options.trusted_hosts.allow(host).map_err(|e| match e {
                always_encrypted::Error::KeyProviderConfig { reason, .. } => {
                    CliError::Usage(format!("{hosts_from}: {reason}"))
                }
                other => CliError::library(format!("{hosts_from} {host}"), other),
            })?;
        }
        let kv =
            always_encrypted::keys::AzureKeyVaultProvider::with_default_credential(Some(options))
                .map_err(|e| CliError::library("setting up Azure Key Vault", e))?;
        builder = builder.provider(Arc::new(kv));
    }
    #[cfg(not(feature = "azure-key-vault"))]
    if !hosts.is_empty() {
        return Err(CliError::Usage(format!(
            "{hosts_from}: this ae was built without Azure Key Vault"
        )));
    }
    Ok(builder.build())
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads and parses a policy file (Cosmos-compatible unless `--extended`).
fn read_policy(g: &GlobalArgs, path: &Path) -> Result<ClientEncryptionPolicy, CliError> {
    let text = read_text(path)?;
    let mode = if g.extended {
        PolicyMode::Extended
    } else {
        PolicyMode::CosmosCompatible
    };
    ClientEncryptionPolicy::from_json_with(&text, mode)
        .map_err(|e| CliError::library(format!("invalid policy {}", path.display()), e))
}

/// Parses `policy_path` and resolves every key it needs through `resolver`.
async fn prepare_with(
    g: &GlobalArgs,
    resolver: &KeyResolver,
    policy_path: &Path,
    partition_key_paths: &[String],
    lenient: bool,
) -> Result<PreparedPolicy, CliError> {
    let policy = read_policy(g, policy_path)?;
    let mut options = PrepareOptions::new().allow_unavailable_keys(lenient);
    for pk in partition_key_paths {
        options = options.partition_key_path(pk.clone());
    }
    resolver.prepare(&policy, options).await.map_err(|e| {
        CliError::library(format!("preparing the policy {}", policy_path.display()), e)
    })
}

/// Reads and parses the policy, and resolves every key it needs.
pub(crate) async fn prepare(
    g: &GlobalArgs,
    p: &PolicyArgs,
    lenient: bool,
) -> Result<PreparedPolicy, CliError> {
    // Parse the policy before touching the store, so a bad policy is a usage error.
    read_policy(g, &p.policy)?;
    let resolver = resolver(g, open_store(&p.store.store, false)?)?;
    prepare_with(g, &resolver, &p.policy, &p.partition_key_paths, lenient).await
}

fn kek_metadata(url: &str, algorithm: WrapAlgorithm) -> KeyWrapMetadata {
    // The label Cosmos shows: the Key Vault key name.
    let name = url
        .split_once("/keys/")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or(url);
    KeyWrapMetadata::azure_key_vault(name, url, algorithm.into())
}

/// `ae keys ...`
pub(crate) async fn keys(g: &GlobalArgs, cmd: KeysCommand) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    let out_err = |source| CliError::Output { path: None, source };
    match cmd {
        KeysCommand::Create {
            store,
            id,
            kek_url,
            wrap_algorithm,
        } => {
            let resolver = resolver(g, open_store(&store.store, true)?)?;
            let cek = resolver
                .create_key(
                    &id,
                    Algorithm::AeadAes256CbcHmacSha256,
                    kek_metadata(&kek_url, wrap_algorithm),
                )
                .await
                .map_err(|e| CliError::library(format!("creating key '{id}'"), e))?;
            let m = cek.key_wrap_metadata();
            writeln!(
                stdout,
                "created key {} ({}), wrapped by {} with {}, in {}",
                cek.id(),
                cek.encryption_algorithm(),
                m.kek_url(),
                m.algorithm(),
                store.store.display()
            )
            .map_err(out_err)
        }
        KeysCommand::Rewrap {
            store,
            id,
            kek_url,
            wrap_algorithm,
        } => {
            let resolver = resolver(g, open_store(&store.store, false)?)?;
            let cek = resolver
                .rewrap_key(&id, kek_metadata(&kek_url, wrap_algorithm))
                .await
                .map_err(|e| CliError::library(format!("rewrapping key '{id}'"), e))?;
            let m = cek.key_wrap_metadata();
            writeln!(
                stdout,
                "rewrapped key {} under {} with {} (documents are unchanged)",
                cek.id(),
                m.kek_url(),
                m.algorithm()
            )
            .map_err(out_err)
        }
        KeysCommand::List { store, policy } => {
            let used: Option<Vec<String>> = match &policy {
                Some(p) => Some(
                    read_policy(g, p)?
                        .key_ids()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                ),
                None => None,
            };
            let s = open_store(&store.store, false)?;
            let keys = always_encrypted::keys::export_keys(s.as_ref(), None)
                .await
                .map_err(|e| CliError::library("listing keys", e))?;
            let id_w = keys.iter().map(|k| k.id().len()).max().unwrap_or(2).max(2);
            let policy_col = if used.is_some() { "  IN POLICY" } else { "" };
            writeln!(
                stdout,
                "{:id_w$}  {:28}  {:12}{policy_col}  KEK URL",
                "ID", "ALGORITHM", "WRAP"
            )
            .map_err(out_err)?;
            for k in &keys {
                let m = k.key_wrap_metadata();
                let in_policy = match &used {
                    Some(ids) if ids.iter().any(|i| i == k.id()) => "  yes      ",
                    Some(_) => "  no       ",
                    None => "",
                };
                writeln!(
                    stdout,
                    "{:id_w$}  {:28}  {:12}{in_policy}  {}",
                    k.id(),
                    k.encryption_algorithm().as_str(),
                    m.algorithm().as_str(),
                    m.kek_url()
                )
                .map_err(out_err)?;
            }
            if let Some(ids) = &used {
                for missing in ids
                    .iter()
                    .filter(|i| !keys.iter().any(|k| k.id() == i.as_str()))
                {
                    writeln!(stdout, "{missing}: used by the policy but not in the store")
                        .map_err(out_err)?;
                }
            }
            Ok(())
        }
        KeysCommand::Export { store, id, output } => {
            let s = open_store(&store.store, false)?;
            let ids: Vec<&str> = id.iter().map(String::as_str).collect();
            let json = always_encrypted::keys::export_json(
                s.as_ref(),
                if ids.is_empty() { None } else { Some(&ids) },
            )
            .await
            .map_err(|e| CliError::library("exporting keys", e))?;
            match output {
                Some(path) => {
                    let mut f = output::create(&path)?;
                    f.write_all(json.as_bytes())
                        .map_err(|source| CliError::Output {
                            path: Some(path.clone()),
                            source,
                        })?;
                    output::commit(f, &path)
                }
                None => stdout.write_all(json.as_bytes()).map_err(out_err),
            }
        }
        KeysCommand::Import { store, input } => {
            let text = std::fs::read(&input).map_err(|source| CliError::Read {
                path: input.clone(),
                source,
            })?;
            let keys = always_encrypted::keys::parse_key_array(&text).map_err(|e| {
                CliError::library(format!("reading keys from {}", input.display()), e)
            })?;
            let s = open_store(&store.store, true)?;
            let report = always_encrypted::keys::import_keys(s.as_ref(), keys)
                .await
                .map_err(|e| CliError::library("importing keys", e))?;
            writeln!(
                stdout,
                "imported {} key(s) into {}; {} already there",
                report.created.len(),
                store.store.display(),
                report.unchanged.len()
            )
            .map_err(out_err)
        }
    }
}

/// Where documents come from, with its size when known (for the progress bar).
fn open_input(io_args: &IoArgs) -> Result<(Box<dyn BufRead + Send>, Option<u64>), CliError> {
    match &io_args.input {
        Some(path) => {
            let f = File::open(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            let len = f.metadata().ok().map(|m| m.len());
            Ok((Box::new(WipingBufReader::with_capacity(1 << 20, f)), len))
        }
        None => Ok((
            Box::new(WipingBufReader::with_capacity(1 << 20, io::stdin())),
            None,
        )),
    }
}

/// The buffer of standard output.
const STDOUT_BUFFER: usize = 1 << 20;

/// Runs `transform` over the input and writes the output (atomically with `-o`).
fn stream<F>(
    g: &GlobalArgs,
    verb: &str,
    io_args: &IoArgs,
    transform: F,
) -> Result<Summary, CliError>
where
    F: Fn(&str, &mut String, &mut Vec<String>) -> Result<(), always_encrypted::Error> + Sync,
{
    let (input, total) = open_input(io_args)?;
    let bar = Bar::new(g.progress_mode(), verb, total);
    let threads = g.threads();
    let map_err = |e: PipelineError<always_encrypted::Error>, out: &Option<PathBuf>| match e {
        PipelineError::Line(l) => CliError::Line {
            line: l.line,
            source: l.error,
        },
        PipelineError::NotUtf8 { line } => CliError::NotUtf8 { line },
        PipelineError::Read(source) => CliError::Input { source },
        PipelineError::Write(source) => CliError::Output {
            path: out.clone(),
            source,
        },
    };
    let result = match &io_args.output {
        Some(path) => {
            let mut file = output::create(path)?;
            let summary = pipeline::run(input, &mut file, threads, &bar, transform)
                .map_err(|e| map_err(e, &io_args.output))?;
            output::commit(file, path)?;
            Ok(summary)
        }
        None => {
            let mut out = WipingBufWriter::with_capacity(STDOUT_BUFFER, io::stdout().lock());
            let result = pipeline::run(input, &mut out, threads, &bar, transform);
            if result.is_err() {
                // The documents before the failing one are out, as `BufWriter` would have
                // written them when dropped.
                let _ = out.flush();
            }
            result.map_err(|e| map_err(e, &None))
        }
    };
    bar.finish();
    let summary = result?;
    let secs = summary.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = if secs > 0.0 {
        summary.documents as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "ae {verb}: {} documents in {secs:.3} s ({rate:.0} documents/s, {threads} thread{}){}",
        summary.documents,
        if threads == 1 { "" } else { "s" },
        io_args
            .output
            .as_ref()
            .map(|p| format!(" -> {}", p.display()))
            .unwrap_or_default()
    );
    Ok(summary)
}

/// `ae encrypt`
pub(crate) async fn encrypt(g: &GlobalArgs, a: CryptArgs) -> Result<(), CliError> {
    let prepared = prepare(g, &a.policy, false).await?;
    stream(g, "encrypt", &a.io, |line, out, _| {
        encrypt_line(&prepared, line, out)
    })
    .map(drop)
}

/// One document of `ae encrypt`: `line` encrypted, appended to `out` in one piece. (The
/// encrypted document holds ciphertext and the properties outside the policy: not wiped.)
fn encrypt_line(
    prepared: &PreparedPolicy,
    line: &str,
    out: &mut String,
) -> Result<(), always_encrypted::Error> {
    out.push_str(&prepared.encrypt_str(line)?);
    Ok(())
}

/// One document of `ae decrypt`: `line` decrypted, appended to `out` in one piece.
fn decrypt_line(
    prepared: &PreparedPolicy,
    line: &str,
    out: &mut String,
) -> Result<(), always_encrypted::Error> {
    out.push_str(&Zeroizing::new(prepared.decrypt_str(line)?));
    Ok(())
}

/// One document of `ae decrypt --lenient`: as [`decrypt_line`], and a note for each
/// property left encrypted.
fn decrypt_line_lenient(
    prepared: &PreparedPolicy,
    line: &str,
    out: &mut String,
    notes: &mut Vec<String>,
) -> Result<(), always_encrypted::Error> {
    let (text, report) = prepared.decrypt_str_lenient(line)?;
    out.push_str(&Zeroizing::new(text));
    for s in report.skipped() {
        notes.push(format!(
            "left {} encrypted (key '{}': {})",
            s.path(),
            s.key_id(),
            s.reason()
        ));
    }
    Ok(())
}

/// `ae decrypt`
pub(crate) async fn decrypt(g: &GlobalArgs, a: DecryptArgs) -> Result<(), CliError> {
    let prepared = prepare(g, &a.policy, a.lenient).await?;
    let unavailable: Vec<String> = prepared
        .unavailable_keys()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !unavailable.is_empty() {
        eprintln!(
            "ae decrypt: key(s) not accessible, their properties stay encrypted: {}",
            unavailable.join(", ")
        );
    }
    let summary = if a.lenient {
        stream(g, "decrypt", &a.io, |line, out, notes| {
            decrypt_line_lenient(&prepared, line, out, notes)
        })?
    } else {
        stream(g, "decrypt", &a.io, |line, out, _| {
            decrypt_line(&prepared, line, out)
        })?
    };
    for (line, note) in &summary.notes {
        eprintln!("line {line}: {note}");
    }
    Ok(())
}

/// `ae reencrypt`
pub(crate) async fn reencrypt(g: &GlobalArgs, a: ReencryptArgs) -> Result<(), CliError> {
    read_policy(g, &a.from_policy)?;
    read_policy(g, &a.to_policy)?;
    let resolver = resolver(g, open_store(&a.store.store, false)?)?;
    let from = prepare_with(g, &resolver, &a.from_policy, &a.partition_key_paths, false).await?;
    let to = prepare_with(g, &resolver, &a.to_policy, &a.partition_key_paths, false).await?;
    let converted = AtomicU64::new(0);
    let already = AtomicU64::new(0);
    let result = stream(g, "reencrypt", &a.io, |line, out, _| {
        match reencrypt_line(&from, &to, line, out)? {
            Reencryption::AlreadyConverted => already.fetch_add(1, Ordering::Relaxed),
            _ => converted.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    });
    let failed = u64::from(result.is_err());
    eprintln!(
        "ae reencrypt: converted {}, already converted {}, failed {failed}",
        converted.load(Ordering::Relaxed),
        already.load(Ordering::Relaxed)
    );
    result.map(drop)
}

/// One document of `ae reencrypt`: `line` re-encrypted from `from` to `to`, appended to
/// `out` in one piece.
fn reencrypt_line(
    from: &PreparedPolicy,
    to: &PreparedPolicy,
    line: &str,
    out: &mut String,
) -> Result<Reencryption, always_encrypted::Error> {
    // It may hold a property the new policy no longer covers, decrypted.
    let (text, what) = reencrypt_str(from, to, line)?;
    out.push_str(&Zeroizing::new(text));
    Ok(what)
}

/// `ae param`
pub(crate) async fn param(g: &GlobalArgs, mut a: ParamArgs) -> Result<(), CliError> {
    // Read first, so that a bad value or file fails before any key is unwrapped.
    let (value, source) = param_value(&mut a)?;
    let prepared = prepare(g, &a.policy, false).await?;
    let number_type = a.number_type.map(|n| match n {
        NumberTypeArg::Long => NumberType::Long,
        NumberTypeArg::Double => NumberType::Double,
    });
    let encrypted = prepared
        .encrypt_query_parameter_str(&a.path, &value, number_type)
        .map_err(|e| match e {
            // The reason never quotes the value.
            always_encrypted::Error::InvalidDocument { reason, .. } => {
                CliError::Usage(format!("{source}: {reason}"))
            }
            e => CliError::library(format!("encrypting the parameter for {}", a.path), e),
        })?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{encrypted}").map_err(|source| CliError::Output { path: None, source })
}

/// The parameter's JSON text, from `--value` or `--value-file` (`-`: stdin), and how to
/// name where it came from in an error (never the value itself). The text is wiped when
/// dropped, and so is every buffer it was read into.
fn param_value(a: &mut ParamArgs) -> Result<(Zeroizing<String>, String), CliError> {
    let not_utf8 = |source: &str| CliError::Usage(format!("{source} is not UTF-8 text"));
    if let Some(v) = a.value.take() {
        return Ok((Zeroizing::new(v), "--value".into()));
    }
    // clap requires one of --value and --value-file: without --value, there is a file.
    let path = a.value_file.as_deref().unwrap_or(Path::new("-"));
    let mut bytes = Zeroizing::new(Vec::new());
    let source = if path.as_os_str() == "-" {
        read_all_wiping(&mut io::stdin().lock(), &mut bytes)
            .map_err(|source| CliError::Input { source })?;
        "the value on stdin".to_owned()
    } else {
        let read = File::open(path).and_then(|mut f| {
            let len = f.metadata().map_or(0, |m| m.len());
            bytes.reserve_exact(usize::try_from(len).unwrap_or(0));
            read_all_wiping(&mut f, &mut bytes)
        });
        read.map_err(|source| CliError::Read {
            path: path.to_owned(),
            source,
        })?;
        format!("--value-file {}", path.display())
    };
    let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
        e.into_bytes().zeroize();
        not_utf8(&source)
    })?;
    Ok((Zeroizing::new(text), source))
}

/// Appends everything `r` gives to `buf`, wiping `buf` whenever it grows.
fn read_all_wiping(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.reserve_wiping(n);
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    // The unit tests of `ae` run on `test_probes::FreedMemoryProbe` (installed in
    // `pipeline.rs`): while armed with a needle, it checks every block freed.
    use super::*;
    use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    use test_probes::FreedMemoryProbe;
    use zeroize::{Zeroize, Zeroizing};

    fn prepared() -> PreparedPolicy {
        let policy = ClientEncryptionPolicy::from_json(
            r#"{"includedPaths": [
              {"path": "/a", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
               "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
              {"path": "/b", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
               "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
             "policyFormatVersion": 2}"#,
        )
        .unwrap();
        let key = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[7; 32]).unwrap());
        PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone())).unwrap()
    }

    fn globals() -> GlobalArgs {
        GlobalArgs {
            local_kek: Vec::new(),
            trusted_kek: Vec::new(),
            trusted_key_vault_host: Vec::new(),
            threads: Some(2),
            progress: false,
            no_progress: true,
            extended: false,
        }
    }

    use crate::test_dir::TempDir;

    /// Lines of `{"id", "a": <needle>, "b": <a value whose JSON text is 6 times its
    /// `b_len`>}`. With a long `b`, a decrypted document is far longer than its input, so
    /// that every buffer on the way grows past its first capacity; with a short one, the
    /// output stays in the output writer's buffer until the end.
    fn plain_lines(needle: &str, lines: usize, b_len: usize) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for i in 0..lines {
            let mut doc =
                serde_json::json!({"id": i.to_string(), "a": needle, "b": "\u{1}".repeat(b_len)})
                    .to_string();
            text.push_str(&doc);
            text.push('\n');
            doc.zeroize();
        }
        text
    }

    /// Runs `ae <verb> -i <input> -o <output>` with `transform`, armed with `needle`;
    /// returns the freed blocks that held it and the output.
    fn run_armed<F>(
        verb: &str,
        needle: &str,
        input: &str,
        transform: F,
    ) -> (usize, Zeroizing<String>)
    where
        F: Fn(&str, &mut String, &mut Vec<String>) -> Result<(), always_encrypted::Error> + Sync,
    {
        let d = TempDir::new(verb);
        let io_args = IoArgs {
            input: Some(d.join("in.ndjson")),
            output: Some(d.join("out.ndjson")),
        };
        std::fs::write(d.join("in.ndjson"), input).unwrap();
        let armed = FreedMemoryProbe::arm(needle.as_bytes());
        let summary = stream(&globals(), verb, &io_args, transform).unwrap();
        let hits = armed.hits();
        assert!(
            armed.checked() > 0,
            "the probe saw no frees: is it installed?"
        );
        drop(armed);
        assert!(summary.documents > 0);
        let out = Zeroizing::new(std::fs::read_to_string(d.join("out.ndjson")).unwrap());
        (hits, out)
    }

    #[test]
    fn decrypt_leaves_no_plaintext_in_freed_memory() {
        const NEEDLE: &str = "cli-decrypt-needle-3f8a";
        let p = prepared();
        for (lines, b_len) in [(40, 3000), (3, 10)] {
            let plain = plain_lines(NEEDLE, lines, b_len);
            let stored: String = plain
                .lines()
                .map(|l| p.encrypt_str(l).unwrap() + "\n")
                .collect();
            let (hits, out) = run_armed("decrypt", NEEDLE, &stored, |line, out, _| {
                decrypt_line(&p, line, out)
            });
            assert_eq!(*out, *plain);
            assert_eq!(hits, 0, "strict, {lines} lines");
            let (hits, out) = run_armed("decrypt", NEEDLE, &stored, |line, out, notes| {
                decrypt_line_lenient(&p, line, out, notes)
            });
            assert_eq!(*out, *plain);
            assert_eq!(hits, 0, "lenient, {lines} lines");
        }
    }

    #[test]
    fn the_stdout_writer_leaves_no_plaintext_in_freed_memory() {
        // What `stream` writes to standard output through, over a sink that cannot grow.
        const NEEDLE: &str = "cli-stdout-needle-7d02";
        let p = prepared();
        let plain = plain_lines(NEEDLE, 3, 10);
        let stored: String = plain
            .lines()
            .map(|l| p.encrypt_str(l).unwrap() + "\n")
            .collect();
        let mut sink = Zeroizing::new(Vec::with_capacity(1 << 20));
        let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
        let mut out = WipingBufWriter::with_capacity(STDOUT_BUFFER, &mut *sink);
        let summary = pipeline::run(stored.as_bytes(), &mut out, 2, &(), |line, out, _| {
            decrypt_line(&p, line, out)
        })
        .unwrap();
        drop(out);
        assert_eq!(summary.documents, 3);
        let hits = armed.hits();
        drop(armed);
        assert_eq!(&sink[..], plain.as_bytes());
        assert_eq!(hits, 0);
    }

    #[test]
    fn encrypt_leaves_no_plaintext_in_freed_memory() {
        const NEEDLE: &str = "cli-encrypt-needle-91c4";
        let p = prepared();
        let plain = plain_lines(NEEDLE, 40, 3000);
        let (hits, out) = run_armed("encrypt", NEEDLE, &plain, |line, out, _| {
            encrypt_line(&p, line, out)
        });
        assert!(!out.contains(NEEDLE));
        assert_eq!(out.lines().count(), 40);
        assert_eq!(hits, 0);
    }

    #[test]
    fn the_param_value_is_wiped_when_dropped() {
        const NEEDLE: &str = "cli-param-needle-24b9";
        let d = TempDir::new("param");
        let file = d.join("value.json");
        std::fs::write(&file, format!("\"{NEEDLE}\"\n")).unwrap();
        let args = |value: Option<String>, value_file: Option<PathBuf>| ParamArgs {
            policy: PolicyArgs {
                store: crate::StoreArg {
                    store: d.join("keys.json"),
                },
                policy: d.join("policy.json"),
                partition_key_paths: Vec::new(),
            },
            path: "/a".into(),
            value,
            value_file,
            number_type: None,
        };
        for (mut a, from) in [
            (args(None, Some(file.clone())), "--value-file"),
            (args(Some(format!("\"{NEEDLE}\"")), None), "--value"),
        ] {
            let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
            let (value, source) = param_value(&mut a).unwrap();
            assert!(value.contains(NEEDLE) && source.starts_with(from));
            drop(value);
            assert_eq!(armed.hits(), 0, "{from}");
        }
    }
}
