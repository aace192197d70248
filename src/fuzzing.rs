//! Fuzz targets, shared by the cargo-fuzz crate in `fuzz/` and by `tests/corpus_replay.rs`,
//! which replays every committed corpus and regression file through them on stable.
//!
//! Each target takes arbitrary bytes, must never panic on its own, and panics (the fuzzer's
//! crash signal) only when an invariant breaks: a round trip that does not give back its
//! input, two APIs that disagree, deterministic encryption that is not stable.
//!
//! Not part of the public API: compiled with the `test-util` feature or under
//! `cfg(fuzzing)`, and may change at any time.
#![allow(
    missing_docs,
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use serde_json::{Map, Value};

use crate::cipher::{CbcHmacKey, EncryptionType, ModernKey};
use crate::document::{hex4, scan};
use crate::keys::{ClientEncryptionKeyResource, DataEncryptionKey, ResolvedKey, parse_key_array};
use crate::policy::{ClientEncryptionPolicy, EncryptionPath, PolicyFormatVersion, PolicyMode};
use crate::prepared::{PrepareOptions, PreparedPolicy};
use crate::value::{Alphabet, Plaintext, TypeMarker, decrypt_stored};
use crate::{Error, Result};

/// A fuzz target: arbitrary bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("cell_decrypt", cell_decrypt),
    ("value_decode", value_decode),
    ("policy_parse", policy_parse),
    ("key_file_parse", key_file_parse),
    ("document_decrypt", document_decrypt),
    ("document_encrypt", document_encrypt),
    ("ndjson", ndjson),
    ("roundtrip", roundtrip),
];

/// The fixed data-encryption key of key id `id` (a byte derived from the id).
fn dek_for(id: &str) -> DataEncryptionKey {
    let b = id
        .bytes()
        .fold(7u8, |a, c| a.wrapping_mul(31).wrapping_add(c));
    DataEncryptionKey::from_bytes(&[b; 32]).expect("32 bytes")
}

fn lookup(id: &str) -> Result<ResolvedKey> {
    Ok(ResolvedKey::new(id, dek_for(id)))
}

/// The fixed policy of the document targets (Extended mode, so nested and array paths
/// are covered; `cek3` is the key lenient decryption lacks).
pub const FIXED_POLICY: &str = r#"{"policyFormatVersion": 2, "includedPaths": [
  {"path": "/id", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/card", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/o/x", "clientEncryptionKeyId": "cek2", "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/list/[]/n", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/secret", "clientEncryptionKeyId": "cek3", "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
]}"#;

/// The fixed policy prepared with every key (`lenient == false`) or without `cek3`.
pub fn fixed_prepared(lenient: bool) -> PreparedPolicy {
    let policy = ClientEncryptionPolicy::from_json_with(FIXED_POLICY, PolicyMode::Extended)
        .expect("the fixed policy is valid");
    let options = PrepareOptions::new().allow_unavailable_keys(true);
    PreparedPolicy::new(&policy, options, |id| {
        if lenient && id == "cek3" {
            Err(Error::KeyNotFound {
                key_id: id.to_owned(),
            })
        } else {
            lookup(id)
        }
    })
    .expect("the fixed policy prepares")
}

fn prepared() -> &'static (PreparedPolicy, PreparedPolicy) {
    static P: std::sync::OnceLock<(PreparedPolicy, PreparedPolicy)> = std::sync::OnceLock::new();
    P.get_or_init(|| (fixed_prepared(false), fixed_prepared(true)))
}

/// Arbitrary bytes as a stored cell: raw ciphertext for both algorithms, and text in both
/// base64 alphabets. Also: the bytes as plaintext round-trip through both algorithms.
pub fn cell_decrypt(data: &[u8]) {
    let dek = dek_for("cek1");
    let cbc = CbcHmacKey::new("cek1", &dek);
    let _ = cbc.decrypt(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decrypt_stored(&cbc, text, Alphabet::Standard);
        let _ = decrypt_stored(&cbc, text, Alphabet::UrlSafe);
    }
    for mode in [EncryptionType::Deterministic, EncryptionType::Randomized] {
        let modern = ModernKey::new(&dek, "cek1", "/ssn", mode);
        let _ = modern.decrypt(data);
        // Round trips of the bytes as a plaintext.
        let ct = cbc.encrypt(data, mode).expect("encrypts");
        assert_eq!(&cbc.decrypt(&ct).expect("decrypts")[..], data);
        let marker = data.first().copied().unwrap_or(5);
        let ct = modern.encrypt(marker, data).expect("encrypts");
        let (m, pt) = modern.decrypt(&ct).expect("decrypts");
        assert_eq!((m, &pt[..]), (marker, data));
        if mode == EncryptionType::Deterministic {
            assert_eq!(modern.encrypt(marker, data).expect("encrypts"), ct);
        }
    }
}

/// A type marker and payload decoded as a JSON value; a number literal typed.
pub fn value_decode(data: &[u8]) {
    if let Some((&m, payload)) = data.split_first()
        && let Ok(marker) = TypeMarker::try_from(m)
        && let Ok(v) = Plaintext::to_json(marker, payload)
    {
        // Whatever decodes re-encodes to a plaintext that decodes to the same value, but a
        // Double -0.0, which the Value API refuses as ambiguous (`-0` or `-0.0`?).
        match Plaintext::from_json(&v) {
            Ok(pt) => {
                let again = Plaintext::to_json(pt.marker(), pt.as_bytes()).expect("decodes");
                assert!(same(&again, &v), "{again} != {v}");
            }
            Err(_) => assert!(
                marker == TypeMarker::Double && v.as_f64().is_some_and(|x| x == 0.0),
                "a decoded value does not encode: {v}"
            ),
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(pt) = Plaintext::from_number_literal(text)
    {
        let v = Plaintext::to_json(pt.marker(), pt.as_bytes()).expect("a typed number decodes");
        assert!(v.is_number());
    }
}

/// A policy as JSON text, in both modes; a policy that parses serializes and parses back
/// to itself, and prepares.
pub fn policy_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [PolicyMode::CosmosCompatible, PolicyMode::Extended] {
        let Ok(policy) = ClientEncryptionPolicy::from_json_with(text, mode) else {
            continue;
        };
        let back = ClientEncryptionPolicy::from_value_with(&policy.to_value(), mode)
            .expect("a policy's own JSON parses");
        assert_eq!(back, policy);
        let _ = policy.validate_partition_key_paths(&["/id", "/pk", "/a/b"]);
        if let Ok(p) = PreparedPolicy::new(&policy, PrepareOptions::new(), lookup) {
            let doc = r#"{"id":"1","a":{"b":[1,"x",true,null]},"pk":2.5}"#;
            if let Ok(enc) = p.encrypt_str(doc) {
                assert_eq!(p.decrypt_str(&enc).expect("decrypts"), doc);
            }
        }
    }
}

/// A key-store file (JSON array of CEK resources) and a single CEK resource; whatever
/// parses serializes and parses back to itself.
pub fn key_file_parse(data: &[u8]) {
    if let Ok(keys) = parse_key_array(data) {
        let values: Vec<Value> = keys
            .iter()
            .map(ClientEncryptionKeyResource::to_value)
            .collect();
        let text = serde_json::to_vec(&values).expect("serializes");
        let back = parse_key_array(&text).expect("a key file's own JSON parses");
        assert!(back.len() == keys.len() && back.iter().zip(&keys).all(|(a, b)| a == b));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(key) = ClientEncryptionKeyResource::from_json(text)
    {
        let back = ClientEncryptionKeyResource::from_json(&key.to_json_pretty())
            .expect("a key's own JSON parses");
        assert!(back == key && back.same_key(&key));
    }
}

/// Arbitrary JSON text decrypted under the fixed policy: strict, lenient (one key
/// missing), text and Value APIs.
pub fn document_decrypt(data: &[u8]) {
    let (full, partial) = prepared();
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(full.decrypt_slice(data).is_err());
        return;
    };
    let strict = full.decrypt_str(text);
    if let Ok(out) = &strict {
        // With every key, lenient decryption is strict decryption.
        let (lenient, report) = full.decrypt_str_lenient(text).expect("lenient decrypts");
        assert!(report.is_complete());
        assert_eq!(&lenient, out);
        assert_eq!(full.decrypt_slice(data).expect("decrypts"), out.as_bytes());
    }
    if let Ok((_, report)) = partial.decrypt_str_lenient(text) {
        assert!(report.skipped().iter().all(|s| s.key_id() == "cek3"));
    }
    let _ = partial.decrypt_str(text);
    if let Some(mut v) = faithful_value(text) {
        let original = v.clone();
        match full.decrypt_document(&mut v) {
            Ok(()) => {
                if let Ok(out) = &strict {
                    let from_text: Value = serde_json::from_str(out).expect("output is JSON");
                    assert!(same(&from_text, &v), "text and Value decryption disagree");
                }
            }
            Err(_) => assert_eq!(v, original, "a failed decryption changed the document"),
        }
        let mut w = original.clone();
        if partial.decrypt_document_lenient(&mut w).is_err() {
            assert_eq!(w, original, "a failed decryption changed the document");
        }
    }
}

/// `text` parsed by `serde_json` as a `Value`, when that `Value` has the structure of the
/// text. Not when the text holds serde_json's private token key: with serde_json's
/// `raw_value` feature on (the Azure Cosmos SDK turns it on for the whole build), an object
/// whose key is `"$serde_json::private::RawValue"` is read as the JSON inside its string
/// value, so `{"$serde_json::private::RawValue": " 0"}` becomes the number 0. The text API
/// reads the text as written; the two are compared only where serde_json does too. Nor
/// when serde_json refuses the text: a lone UTF-16 surrogate escape (`"k\udb5e"`) is valid
/// JSON that the text API reads (never selecting such a name) and no `Value` can hold.
fn faithful_value(text: &str) -> Option<Value> {
    if mentions_serde_json_token(text) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Whether `text` holds `$serde_json::private::`, also spelled with `\uXXXX` escapes
/// (serde_json compares keys after unescaping them). Over-approximates: an escaped
/// backslash before `u0024` counts too, which only skips a comparison.
fn mentions_serde_json_token(text: &str) -> bool {
    const TOKEN: &[u8] = b"$serde_json::private::";
    let b = text.as_bytes();
    let mut plain = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'u')
            && let Some(c) = hex4(text.get(i + 2..i + 6))
                .and_then(|c| u8::try_from(c).ok())
                .filter(u8::is_ascii)
        {
            plain.push(c);
            i += 6;
            continue;
        }
        plain.push(b[i]);
        i += 1;
    }
    plain.windows(TOKEN.len()).any(|w| w == TOKEN)
}

/// `text` as the text API reads it, as a `Value`: [`faithful_value`], but a number
/// literal `-0` is the integer 0 (the .NET rule makes it a Long 0; serde_json reads it as
/// the double -0.0). Every other literal reads as serde_json reads it.
fn text_value(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => i = scan::string(b, i).ok()?.0,
            b'-' | b'0'..=b'9' => {
                let end = scan::number(b, i).ok()?;
                if text.get(i..end) == Some("-0") {
                    out.push_str(text.get(copied..i)?);
                    out.push('0');
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(copied..)?);
    faithful_value(&out)
}

/// Arbitrary JSON text encrypted under the fixed policy, then decrypted.
pub fn document_encrypt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(prepared().0.encrypt_slice(data).is_err());
        return;
    };
    encrypt_line(text);
}

/// The deterministic paths of the fixed policy.
const DETERMINISTIC: [&str; 4] = ["/id", "/ssn", "/o/x", "/secret"];

/// One document through the text and Value APIs: decrypt(encrypt(doc)) == doc,
/// deterministic paths stable, the APIs agree (where both encrypt a value, they store
/// the same bytes).
fn encrypt_line(text: &str) {
    let (full, partial) = prepared();
    // What a user of the Value API has: the text parsed by serde_json.
    let parsed = faithful_value(text);
    let mut text_enc = None;
    if let Ok(enc) = full.encrypt_str(text) {
        let dec = full.decrypt_str(&enc).expect("what was encrypted decrypts");
        // The text API copies what is outside the policy byte for byte, so it passes
        // through what serde_json refuses there (a number literal beyond the double
        // range, nesting beyond 128 levels): only a document serde_json reads is
        // compared as values, each read as the text API reads it (`-0` is 0).
        if let Some(orig) = &text_value(text) {
            let enc_v = text_value(&enc).expect("encrypted output is JSON");
            let dec_v = text_value(&dec).expect("decrypted output is JSON");
            assert!(same(&dec_v, orig), "text round trip changed the document");
            // The Value API decrypts what the text API wrote.
            let mut v = enc_v.clone();
            full.decrypt_document(&mut v)
                .expect("Value API decrypts text output");
            assert!(same(&v, orig), "Value API disagrees with the text API");
            // Deterministic paths are stable.
            let again: Value =
                serde_json::from_str(&full.encrypt_str(text).expect("encrypts twice"))
                    .expect("JSON");
            for p in DETERMINISTIC {
                assert_eq!(
                    enc_v.pointer(p),
                    again.pointer(p),
                    "deterministic {p} not stable"
                );
            }
            text_enc = Some(enc_v);
        }
        // A reader without cek3 reads everything else.
        let (_, report) = partial
            .decrypt_str_lenient(&enc)
            .expect("lenient decrypts what was encrypted");
        assert!(report.skipped().iter().all(|s| s.key_id() == "cek3"));
    }
    if let Some(orig) = parsed {
        let mut v = orig.clone();
        match full.encrypt_document(&mut v) {
            Ok(()) => {
                let mut d = v.clone();
                full.decrypt_document(&mut d).expect("decrypts");
                assert!(same(&d, &orig), "Value round trip changed the document");
                let t = full
                    .decrypt_str(&serde_json::to_string(&v).expect("serializes"))
                    .expect("text API decrypts Value output");
                let t: Value = serde_json::from_str(&t).expect("JSON");
                assert!(same(&t, &orig), "text API disagrees with the Value API");
                // Both APIs encrypted the document: a deterministic value is stored with
                // the same bytes (else an equality query written with one API misses
                // what the other stored). A property serde_json dropped (a duplicate key)
                // leaves the Value without it, so only what the Value has is compared.
                if let Some(enc_v) = &text_enc {
                    for p in DETERMINISTIC {
                        if let Some(x) = v.pointer(p) {
                            assert_eq!(
                                Some(x),
                                enc_v.pointer(p),
                                "the text and Value APIs store {p} differently"
                            );
                        }
                    }
                }
            }
            Err(_) => assert_eq!(v, orig, "a failed encryption changed the document"),
        }
    }
}

/// An NDJSON stream handled as the CLI's pipeline cuts it (a leading BOM dropped, `\n`
/// or `\r\n` line ends, blank lines skipped, the first non-UTF-8 line stops the stream),
/// each line through the library's encrypt and decrypt. The pipeline itself is in the
/// binary crate; its threading is tested there.
pub fn ndjson(data: &[u8]) {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    for line in data.split(|&b| b == b'\n').take(64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        if !text.trim().is_empty() {
            encrypt_line(text);
            let _ = prepared().0.decrypt_str(text);
        }
    }
}

/// Compares JSON values, numbers by the stored value they stand for: an int64 is a Long,
/// any other number a Double (an integer beyond int64 is stored as its exact double), and
/// Doubles are compared bit for bit. So a Long `0`, a Double `0.0` and a Double `-0.0`
/// all differ; `9223372036854775808` and `9.223372036854776e18` do not.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => stored_number(x) == stored_number(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}

/// A number as the stored value it stands for: `Ok(Long)` or `Err(Double bits)`.
fn stored_number(n: &serde_json::Number) -> std::result::Result<i64, u64> {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Ok(i),
        #[allow(clippy::cast_precision_loss)] // the walker stores only exact ones
        (None, Some(u)) => Err((u as f64).to_bits()),
        (None, None) => Err(n.as_f64().map_or(u64::MAX, f64::to_bits)),
    }
}

/// Reads choices from fuzzer bytes (zeros when they run out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    fn u64(&mut self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&{
            let b = self.bytes(8);
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            w
        });
        u64::from_le_bytes(w)
    }
}

const NAMES: &[&str] = &["a", "b", "id", "s p", "ké", "x/y~", "[]", ""];
const PATH_NAMES: &[&str] = &["a", "b", "id", "s p", "ké"];

fn gen_value(u: &mut Bytes<'_>, depth: usize) -> Value {
    let choice = if depth >= 5 { u.below(6) } else { u.below(8) };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(u.byte() & 1 == 1),
        #[allow(clippy::cast_possible_wrap)]
        2 => Value::from(u.u64() as i64),
        3 => {
            let x = f64::from_bits(u.u64());
            if x.is_finite() {
                Value::from(x)
            } else {
                Value::from(f64::from(u.byte()) / 4.0)
            }
        }
        4 | 5 => {
            let n = u.below(12);
            Value::String(String::from_utf8_lossy(u.bytes(n)).into_owned())
        }
        6 => {
            let n = u.below(5);
            Value::Array((0..n).map(|_| gen_value(u, depth + 1)).collect())
        }
        _ => Value::Object(gen_object(u, depth + 1)),
    }
}

fn gen_object(u: &mut Bytes<'_>, depth: usize) -> Map<String, Value> {
    let n = u.below(6);
    let mut m = Map::new();
    for _ in 0..n {
        let k = NAMES[u.below(NAMES.len())].to_owned();
        let v = gen_value(u, depth);
        m.insert(k, v);
    }
    m
}

fn gen_policy(u: &mut Bytes<'_>) -> (ClientEncryptionPolicy, bool) {
    let mut paths: Vec<EncryptionPath> = Vec::new();
    let mut all_det = true;
    for _ in 0..u.below(6) {
        let depth = 1 + u.below(3);
        let mut segs = Vec::new();
        for i in 0..depth {
            if i > 0 && u.below(4) == 0 {
                segs.push("[]");
            } else {
                segs.push(PATH_NAMES[u.below(PATH_NAMES.len())]);
            }
        }
        let path = format!("/{}", segs.join("/"));
        let det = path == "/id" || u.byte() & 1 == 1;
        let ty = if det {
            EncryptionType::Deterministic
        } else {
            EncryptionType::Randomized
        };
        let key = if u.byte() & 1 == 1 { "k1" } else { "k2" };
        let Ok(p) = EncryptionPath::new(&path, key, ty) else {
            continue;
        };
        let mut trial = paths.clone();
        trial.push(p);
        if ClientEncryptionPolicy::new(trial.clone(), PolicyFormatVersion::V2, PolicyMode::Extended)
            .is_ok()
        {
            paths = trial;
            all_det &= det;
        }
    }
    let policy = ClientEncryptionPolicy::new(paths, PolicyFormatVersion::V2, PolicyMode::Extended)
        .expect("built from valid paths");
    (policy, all_det)
}

/// A policy and a document built from the bytes: encrypt then decrypt gives the document
/// back through the Value and text APIs; deterministic encryption is stable; the text
/// and Value APIs write the same bytes when every path is deterministic.
pub fn roundtrip(data: &[u8]) {
    let mut u = Bytes(data);
    let (policy, all_det) = gen_policy(&mut u);
    let mut doc = gen_object(&mut u, 0);
    if let Some(id) = doc.get_mut("id")
        && !id.is_string()
    {
        *id = Value::from("doc-1");
    }
    let doc = Value::Object(doc);
    let p = PreparedPolicy::new(&policy, PrepareOptions::new(), lookup).expect("prepares");

    let mut enc = doc.clone();
    match p.encrypt_document(&mut enc) {
        Ok(()) => {}
        Err(Error::UnsupportedValue { .. }) => {
            assert_eq!(enc, doc);
            return;
        }
        Err(e) => panic!("encrypting a generated document failed: {e}"),
    }
    let mut dec = enc.clone();
    p.decrypt_document(&mut dec).expect("decrypts");
    assert!(same(&dec, &doc), "Value round trip");

    let mut again = doc.clone();
    p.encrypt_document(&mut again).expect("encrypts twice");
    if all_det {
        assert_eq!(again, enc, "deterministic encryption is not stable");
    }

    let text = serde_json::to_string(&doc).expect("serializes");
    let enc_text = p.encrypt_str(&text).expect("text API encrypts");
    assert_eq!(
        p.decrypt_str(&enc_text).expect("decrypts"),
        text,
        "text round trip"
    );
    if all_det {
        assert_eq!(
            enc_text,
            serde_json::to_string(&enc).expect("serializes"),
            "text and Value APIs disagree"
        );
    }
    let pretty = serde_json::to_string_pretty(&doc).expect("serializes");
    let enc_pretty = p.encrypt_str(&pretty).expect("text API encrypts");
    assert_eq!(p.decrypt_str(&enc_pretty).expect("decrypts"), pretty);
}

/// Small real seeds for every target, as (target, file name, bytes): real ciphertexts
/// under the fixed keys, documents encrypted under the fixed policy, policies and key
/// files. Written to `fuzz/corpus/<target>/` by an ignored test of
/// `tests/corpus_replay.rs`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |t: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((t, name.to_owned(), bytes));
    };
    let dek = dek_for("cek1");
    let cbc = CbcHmacKey::new("cek1", &dek);
    for (i, v) in [
        Value::from("123-45-6789"),
        Value::from(42),
        Value::from(2.5),
        Value::from(true),
        Value::from(""),
    ]
    .iter()
    .enumerate()
    {
        let pt = Plaintext::from_json(v).expect("encodes");
        let stored = crate::value::encrypt_to_stored(
            &cbc,
            EncryptionType::Deterministic,
            &pt,
            Alphabet::Standard,
        )
        .expect("encrypts");
        add("cell_decrypt", &format!("stored-{i}"), stored.into_bytes());
        let raw = cbc
            .encrypt(pt.as_bytes(), EncryptionType::Randomized)
            .expect("encrypts");
        add("cell_decrypt", &format!("raw-cbc-{i}"), raw);
        let modern = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
        let raw = modern
            .encrypt(pt.marker() as u8, pt.as_bytes())
            .expect("encrypts");
        add("cell_decrypt", &format!("raw-modern-{i}"), raw);
        let mut typed = vec![pt.marker() as u8];
        typed.extend_from_slice(pt.as_bytes());
        add("value_decode", &format!("typed-{i}"), typed);
    }
    for (i, lit) in ["0", "-12", "1.5e300", "9223372036854775808", "1e400"]
        .iter()
        .enumerate()
    {
        add(
            "value_decode",
            &format!("literal-{i}"),
            lit.as_bytes().to_vec(),
        );
    }

    add("policy_parse", "fixed", FIXED_POLICY.as_bytes().to_vec());
    add(
        "policy_parse",
        "v1-top-level",
        br#"{"includedPaths":[{"path":"/ssn","clientEncryptionKeyId":"cek1","encryptionType":"Randomized","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"}],"policyFormatVersion":1}"#.to_vec(),
    );
    add("policy_parse", "empty", br#"{"includedPaths":[]}"#.to_vec());

    let wrapped = crate::keys::KeyWrapMetadata::azure_key_vault(
        "kek1",
        "https://myvault.vault.azure.net/keys/kek1/0123456789abcdef",
        crate::keys::KeyWrapAlgorithm::RsaOaep,
    );
    let res = ClientEncryptionKeyResource::new(
        "cek1",
        crate::cipher::Algorithm::AeadAes256CbcHmacSha256,
        wrapped,
        vec![1u8; 256],
    )
    .expect("a valid resource");
    add(
        "key_file_parse",
        "resource",
        res.to_json_pretty().into_bytes(),
    );
    add(
        "key_file_parse",
        "store",
        serde_json::to_vec_pretty(&vec![res.to_value()]).expect("serializes"),
    );
    add("key_file_parse", "empty-store", b"[]".to_vec());

    let (full, _) = prepared();
    let docs = [
        r#"{"id":"1","ssn":"123-45-6789","card":{"n":4111,"exp":"12/29","ok":true},"o":{"x":[1,2.5,null],"y":"plain"},"list":[{"n":"a"},{"m":1},{"n":[true,false]}],"secret":"s","other":1}"#,
        r#"{"id": "a\"b\u00e9", "ssn": null, "card": [], "o": {}, "list": []}"#,
        "{\n  \"ssn\": -0.0,\n  \"secret\": 9007199254740993\n}",
        r#"{}"#,
        r#"{"id": "z", "ssn": -0, "o": {"x": [-0, -0.0, 0]}, "n": -0}"#,
    ];
    for (i, d) in docs.iter().enumerate() {
        add(
            "document_encrypt",
            &format!("doc-{i}"),
            d.as_bytes().to_vec(),
        );
        let enc = full.encrypt_str(d).expect("the seed documents encrypt");
        add(
            "document_decrypt",
            &format!("doc-{i}"),
            enc.clone().into_bytes(),
        );
        add(
            "document_decrypt",
            &format!("plain-{i}"),
            d.as_bytes().to_vec(),
        );
        add(
            "ndjson",
            &format!("lines-{i}"),
            format!("{d}\n\r\n{enc}\r\n").into_bytes(),
        );
    }
    add(
        "ndjson",
        "bom",
        format!("\u{feff}{}\n{}\n", docs[0], docs[1]).into_bytes(),
    );

    for i in 0..8u8 {
        let bytes: Vec<u8> = (0..64u8)
            .map(|j| j.wrapping_mul(37).wrapping_add(i.wrapping_mul(11)))
            .collect();
        add("roundtrip", &format!("gen-{i}"), bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_its_seeds() {
        for (target, name, bytes) in seeds() {
            let f = TARGETS
                .iter()
                .find(|(t, _)| *t == target)
                .expect("a target")
                .1;
            f(&bytes);
            let _ = name;
        }
    }

    #[test]
    fn roundtrip_generator_selects_something() {
        let hits = (0..64u8)
            .filter(|i| {
                let data: Vec<u8> = (0..64u8)
                    .map(|j| j.wrapping_mul(37).wrapping_add(i.wrapping_mul(11)))
                    .collect();
                let mut u = Bytes(&data);
                let (policy, _) = gen_policy(&mut u);
                !policy.included_paths().is_empty()
            })
            .count();
        assert!(hits > 16, "{hits}");
    }

    #[test]
    fn numbers_compare_as_the_values_they_are_stored_as() {
        let v = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert!(same(&v("0"), &v("0")));
        assert!(!same(&v("0"), &v("-0.0")), "Long 0 and Double -0.0");
        assert!(!same(&v("0.0"), &v("-0.0")));
        assert!(!same(&v("1"), &v("1.0")), "Long 1 and Double 1.0");
        assert!(same(&v("1.50"), &v("1.5")));
        assert!(same(&v("9223372036854775808"), &v("9.223372036854776e18")));
        assert!(!same(&v("[0]"), &v("[-0]")), "serde_json reads -0 as -0.0");
        // The text API's reading: the literal -0 is the Long 0, -0.0 stays a Double.
        assert!(same(&text_value("[-0]").unwrap(), &v("[0]")));
        assert!(same(
            &text_value(r#"{"-0": "-0", "a": [-0.0, -0e0, -0]}"#).unwrap(),
            &v(r#"{"-0": "-0", "a": [-0.0, -0e0, 0]}"#)
        ));
    }

    #[test]
    fn a_negative_zero_literal_is_stored_alike_or_refused() {
        // The text API stores -0 as a Long 0; the Value API, given serde_json's -0.0,
        // must not store a Double there (it refuses).
        for doc in [
            r#"{"ssn": -0}"#,
            r#"{"ssn": -0, "o": {"x": -0}, "id": "1"}"#,
            r#"{"ssn": -0.0}"#,
        ] {
            encrypt_line(doc);
        }
    }

    #[test]
    fn the_serde_json_token_is_seen_plain_and_escaped() {
        assert!(mentions_serde_json_token(
            r#"{"$serde_json::private::RawValue": " 0"}"#
        ));
        assert!(mentions_serde_json_token(
            r#"{"\u0024serde_json::private::RawValue": " 0"}"#
        ));
        assert!(mentions_serde_json_token(
            r#"{"\u0024\u0073erde_json::\u0070rivate::Number": "1"}"#
        ));
        assert!(!mentions_serde_json_token(
            r#"{"$serde": "json::private::"}"#
        ));
        assert!(!mentions_serde_json_token(r#"{"a": "\u00e9"}"#));
        assert!(faithful_value(r#"{"a": 1}"#).is_some());
        // With the `cosmos` feature the Azure SDK turns serde_json's `raw_value` on, and
        // serde_json matches the key after unescaping it.
        #[cfg(feature = "cosmos")]
        assert_eq!(
            serde_json::from_str::<Value>(r#"{"\u0024serde_json::private::RawValue": " 0"}"#)
                .unwrap(),
            serde_json::json!(0)
        );
    }
}
