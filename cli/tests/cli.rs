//! Runs the real `ae` binary for every command and every error path, with files in a
//! temporary directory. Key-encryption keys are always local (`--local-kek`): no test
//! reaches Azure or any network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testvectors/cosmos-js-4.10.1"
);

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!("ae-cli-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vector(name: &str) -> String {
    std::fs::read_to_string(Path::new(VECTORS).join(name)).unwrap()
}

fn cek1_url() -> String {
    let cek: serde_json::Value = serde_json::from_str(&vector("cek1.json")).unwrap();
    cek["keyWrapMetadata"]["value"].as_str().unwrap().to_owned()
}

fn kek_pem() -> PathBuf {
    Path::new(VECTORS).join("kek.pem")
}

/// Runs `ae` with `args`, feeding `stdin`.
fn ae(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ae"));
    cmd.args(args)
        .arg("--no-progress")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Feed stdin from a thread, so a child that fills its stdout pipe before reading all
    // of its input cannot deadlock the test. A child that exits early on an error closes
    // its stdin, so a broken pipe here is expected, not a failure.
    let feeder = stdin.map(|text| {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let text = text.to_owned();
        std::thread::spawn(move || match input.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        })
    });
    let output = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A directory with the SDK's `cek1.json` as the key store, its policy and documents.
fn sdk_setup(tag: &str) -> (Dir, String) {
    let d = Dir::new(tag);
    d.write("keys.json", &format!("[{}]", vector("cek1.json")));
    d.write("policy.json", &vector("policy.json"));
    d.write("plain.ndjson", &vector("plain.ndjson"));
    d.write("enc.ndjson", &vector("enc.ndjson"));
    let local = format!("{}={}", cek1_url(), kek_pem().display());
    (d, local)
}

/// A path as an argument. Leaked on purpose: a few bytes per test keep the argument
/// arrays simple.
fn s(p: &Path) -> &'static str {
    Box::leak(p.to_str().unwrap().to_owned().into_boxed_str())
}

#[test]
fn encrypt_gives_the_official_sdk_bytes_and_decrypt_inverts_it() {
    let (d, local) = sdk_setup("sdk");
    let base = [
        "--store",
        s(&d.path("keys.json")),
        "--policy",
        s(&d.path("policy.json")),
        "--partition-key-path",
        "/pk",
        "--local-kek",
        &local,
    ];
    for threads in ["1", "2"] {
        let mut args = vec!["encrypt"];
        args.extend(base);
        args.extend([
            "-i",
            s(&d.path("plain.ndjson")),
            "-o",
            s(&d.path("out.ndjson")),
            "--threads",
            threads,
        ]);
        let o = ae(&args, None);
        assert_exit(&o, 0);
        assert_eq!(
            d.read("out.ndjson"),
            vector("enc.ndjson"),
            "threads {threads}"
        );
        assert!(stderr(&o).contains("6 documents"), "{}", stderr(&o));
    }
    // decrypt through stdin/stdout
    let mut args = vec!["decrypt"];
    args.extend(base);
    let o = ae(&args, Some(&vector("enc.ndjson")));
    assert_exit(&o, 0);
    let got: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> = vector("plain.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn blank_lines_and_bom_are_tolerated_and_order_is_kept() {
    let (d, local) = sdk_setup("blank");
    let mut input = String::from("\u{feff}");
    for line in vector("plain.ndjson").lines() {
        input.push_str(line);
        input.push_str("\n\n");
    }
    let o = ae(
        &[
            "encrypt",
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            &local,
        ],
        Some(&input),
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), vector("enc.ndjson"));
}

#[test]
fn keys_create_list_export_import_rewrap() {
    let d = Dir::new("keys");
    let url1 = "https://test-vault.vault.azure.net/keys/kek1/00000000000000000000000000000001";
    let url2 = "https://test-vault.vault.azure.net/keys/kek2/00000000000000000000000000000002";
    // A second RSA key: the PKCS#1 form of another test key would do; reuse kek.pem under a
    // second URL, which is enough to exercise the rewrap path.
    let l1 = format!("{url1}={}", kek_pem().display());
    let l2 = format!("{url2}={}", kek_pem().display());
    let store = d.path("keys.json");
    let o = ae(
        &[
            "keys",
            "create",
            "--store",
            s(&store),
            "--id",
            "cek1",
            "--kek-url",
            url1,
            "--local-kek",
            &l1,
        ],
        None,
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("created key cek1"));
    let o = ae(
        &[
            "keys",
            "create",
            "--store",
            s(&store),
            "--id",
            "cek2",
            "--kek-url",
            url1,
            "--wrap-algorithm",
            "RSA-OAEP-256",
            "--local-kek",
            &l1,
        ],
        None,
    );
    assert_exit(&o, 0);
    // Same id again: refused, store unchanged.
    let before = std::fs::read(&store).unwrap();
    let o = ae(
        &[
            "keys",
            "create",
            "--store",
            s(&store),
            "--id",
            "cek1",
            "--kek-url",
            url1,
            "--local-kek",
            &l1,
        ],
        None,
    );
    assert_exit(&o, 3);
    assert_eq!(std::fs::read(&store).unwrap(), before);

    let o = ae(&["keys", "list", "--store", s(&store)], None);
    assert_exit(&o, 0);
    let list = stdout(&o);
    assert!(
        list.contains("cek1")
            && list.contains("cek2")
            && list.contains("RSA-OAEP-256")
            && list.contains(url1)
    );
    // Never key bytes: the wrapped key is not even printed.
    let stored: serde_json::Value = serde_json::from_slice(&before).unwrap();
    let wrapped = stored[0]["wrappedDataEncryptionKey"].as_str().unwrap();
    assert!(!list.contains(&wrapped[..16]));

    let o = ae(
        &[
            "keys",
            "export",
            "--store",
            s(&store),
            "--id",
            "cek1",
            "-o",
            s(&d.path("export.json")),
        ],
        None,
    );
    assert_exit(&o, 0);
    let exported: serde_json::Value = serde_json::from_str(&d.read("export.json")).unwrap();
    assert_eq!(exported.as_array().unwrap().len(), 1);
    assert_eq!(exported[0]["id"], "cek1");

    let other = d.path("other.json");
    let o = ae(
        &[
            "keys",
            "import",
            "--store",
            s(&other),
            s(&d.path("export.json")),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("imported 1 key"));
    let o = ae(
        &[
            "keys",
            "import",
            "--store",
            s(&other),
            s(&d.path("export.json")),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("1 already there"));

    // Encrypt with cek1, rewrap cek1 under kek2, and the documents still decrypt.
    d.write("policy.json", r#"{"includedPaths":[{"path":"/ssn","clientEncryptionKeyId":"cek1","encryptionType":"Deterministic","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"}],"policyFormatVersion":2}"#);
    let doc = "{\"id\":\"1\",\"ssn\":\"123-45-6789\"}\n";
    let o = ae(
        &[
            "encrypt",
            "--store",
            s(&store),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            &l1,
        ],
        Some(doc),
    );
    assert_exit(&o, 0);
    let encrypted = stdout(&o);
    let o = ae(
        &[
            "keys",
            "rewrap",
            "--store",
            s(&store),
            "--id",
            "cek1",
            "--kek-url",
            url2,
            "--local-kek",
            &l1,
            "--local-kek",
            &l2,
        ],
        None,
    );
    assert_exit(&o, 0);
    let o = ae(&["keys", "list", "--store", s(&store)], None);
    assert!(stdout(&o).contains(url2));
    let o = ae(
        &[
            "decrypt",
            "--store",
            s(&store),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            &l2,
        ],
        Some(&encrypted),
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), doc);
}

#[test]
fn param_encrypts_like_the_stored_value() {
    let (d, local) = sdk_setup("param");
    let enc: serde_json::Value =
        serde_json::from_str(vector("enc.ndjson").lines().next().unwrap()).unwrap();
    let base = [
        "param",
        "--store",
        s(&d.path("keys.json")),
        "--policy",
        s(&d.path("policy.json")),
        "--local-kek",
        &local,
    ];
    let mut args = base.to_vec();
    args.extend(["--path", "/s", "--value", "\"123-45-6789\""]);
    let o = ae(&args, None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), enc["s"].to_string());
    // Numbers: the stored Long 42 matches only with the Long type.
    let enc_n: serde_json::Value =
        serde_json::from_str(vector("enc.ndjson").lines().nth(1).unwrap()).unwrap();
    let mut args = base.to_vec();
    args.extend(["--path", "/n", "--value", "42", "--number-type", "long"]);
    let o = ae(&args, None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), enc_n["n"].to_string());
    let mut args = base.to_vec();
    args.extend(["--path", "/n", "--value", "42", "--number-type", "double"]);
    let o = ae(&args, None);
    assert_exit(&o, 0);
    assert_ne!(stdout(&o).trim(), enc_n["n"].to_string());
    // Not JSON: usage.
    let mut args = base.to_vec();
    args.extend(["--path", "/s", "--value", "not json"]);
    assert_exit(&ae(&args, None), 2);
}

#[test]
fn data_errors_name_the_line_and_path_and_leave_nothing_at_the_output() {
    let (d, local) = sdk_setup("errors");
    let out = d.path("out.ndjson");
    std::fs::write(&out, "previous contents\n").unwrap();
    let run = |cmd: &str, input: &str| {
        ae(
            &[
                cmd,
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                &local,
                "-o",
                s(&out),
            ],
            Some(input),
        )
    };
    let plain = vector("plain.ndjson");
    // Bad JSON on line 3.
    let mut lines: Vec<&str> = plain.lines().collect();
    lines.insert(2, "{\"id\": \"broken\",");
    let o = run("encrypt", &(lines.join("\n") + "\n"));
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("line 3:"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "previous contents\n"
    );

    // A value that cannot be stored at an encrypted path (an integer beyond int64 with no
    // exact double), line 2.
    let o = run(
        "encrypt",
        "{\"id\":\"a\",\"s\":\"x\"}\n{\"id\":\"b\",\"n\":9223372036854775809}\n",
    );
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("line 2:") && err.contains("/n"), "{err}");
    assert!(
        !err.contains("9223372036854775809"),
        "the value must not be echoed: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "previous contents\n"
    );

    // Tampered ciphertext on line 4.
    let enc = vector("enc.ndjson");
    let mut lines: Vec<String> = enc.lines().map(str::to_owned).collect();
    let mut doc: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    let b = doc["b"].as_str().unwrap().to_owned();
    let flipped = if b.as_bytes()[20] == b'A' { "B" } else { "A" };
    doc["b"] = serde_json::Value::String(format!("{}{}{}", &b[..20], flipped, &b[21..]));
    lines[3] = doc.to_string();
    let o = run("decrypt", &(lines.join("\n") + "\n"));
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("line 4:") && err.contains("/b") && err.contains("cek1"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "previous contents\n"
    );
    // No temporary file is left behind.
    assert_eq!(
        d.names(),
        [
            "enc.ndjson",
            "keys.json",
            "out.ndjson",
            "plain.ndjson",
            "policy.json"
        ]
    );
}

#[test]
fn wrong_key_fails_to_decrypt() {
    let (d, _) = sdk_setup("wrongkey");
    // A different cek1 under a local KEK: documents from the SDK do not authenticate.
    let url = "https://other.vault.azure.net/keys/k/00000000000000000000000000000009";
    let l = format!("{url}={}", kek_pem().display());
    let store = d.path("mine.json");
    assert_exit(
        &ae(
            &[
                "keys",
                "create",
                "--store",
                s(&store),
                "--id",
                "cek1",
                "--kek-url",
                url,
                "--local-kek",
                &l,
            ],
            None,
        ),
        0,
    );
    let o = ae(
        &[
            "decrypt",
            "--store",
            s(&store),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            &l,
        ],
        Some(&vector("enc.ndjson")),
    );
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("line 1:") && stderr(&o).contains("authentication failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn key_store_and_policy_errors() {
    let (d, local) = sdk_setup("config");
    let run = |store: &Path, policy: &Path| {
        ae(
            &[
                "encrypt",
                "--store",
                s(store),
                "--policy",
                s(policy),
                "--local-kek",
                &local,
            ],
            Some(&vector("plain.ndjson")),
        )
    };
    // Missing key: the policy names cek2, the store has only cek1.
    let p2 = d.write(
        "policy2.json",
        &vector("policy.json").replacen("cek1", "cek2", 1),
    );
    let o = run(&d.path("keys.json"), &p2);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("cek2"), "{}", stderr(&o));
    // Unreadable policy.
    let o = run(&d.path("keys.json"), &d.path("no-such-policy.json"));
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("no-such-policy.json"));
    // Invalid policy.
    let bad = d.write(
        "bad-policy.json",
        &vector("policy.json").replace("Deterministic", "deterministic"),
    );
    let o = run(&d.path("keys.json"), &bad);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("/s"), "{}", stderr(&o));
    // Missing store.
    let o = run(&d.path("no-such-store.json"), &d.path("policy.json"));
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("no-such-store.json"), "{}", stderr(&o));
    // Corrupt store, left untouched.
    let corrupt = d.write("corrupt.json", "[{\"id\": \"cek1\", ");
    let o = run(&corrupt, &d.path("policy.json"));
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("corrupt.json"), "{}", stderr(&o));
    assert_eq!(d.read("corrupt.json"), "[{\"id\": \"cek1\", ");
    // Bad flags.
    assert_exit(&ae(&["encrypt", "--policy", "x"], None), 2);
    assert_exit(&ae(&["frobnicate"], None), 2);
}

#[test]
fn lenient_decrypt_leaves_inaccessible_properties_and_lists_them() {
    let (d, local) = sdk_setup("lenient");
    // cek2 is wrapped by a key-encryption key this reader has no provider for.
    let mut cek2: serde_json::Value = serde_json::from_str(&vector("cek1.json")).unwrap();
    cek2["id"] = "cek2".into();
    cek2["keyWrapMetadata"]["type"] = "SOME_OTHER_KMS".into();
    cek2["keyWrapMetadata"]["value"] = "https://elsewhere.example/keys/hr".into();
    let keys = format!("[{}, {}]", vector("cek1.json"), cek2);
    d.write("keys.json", &keys);
    let policy = vector("policy.json").replacen("\"cek1\"", "\"cek2\"", 1); // /s uses cek2
    d.write("policy.json", &policy);
    let doc = "{\"id\":\"x\",\"s\":\"BQECxIJdsePGHEmnzmJIgy5iD0yI3JU3V6144282MtOny6krQNe62qz+BlGjunYOCJM5V23NLf/Wmd4Z+aLd9wlP\",\"n\":\"BAGrrVRJzN1mkHUcGvOC9NydJfUc+csvcRTH+o99sCzaBwr6RIyz8MpL3T+z8a01ZaIjbNvi3kKsY73YdTRVa9gC\"}\n";
    let base = [
        "decrypt",
        "--store",
        s(&d.path("keys.json")),
        "--policy",
        s(&d.path("policy.json")),
        "--local-kek",
        &local,
    ];
    // Strict: fails at prepare time with a key-access error.
    let o = ae(&base, Some(doc));
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("cek2"), "{}", stderr(&o));
    // Lenient: /n decrypted, /s left as stored and reported with its line.
    let mut args = base.to_vec();
    args.push("--lenient");
    let o = ae(&args, Some(doc));
    assert_exit(&o, 0);
    let out: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(out["n"], 42);
    assert!(out["s"].as_str().unwrap().starts_with("BQEC"));
    let err = stderr(&o);
    assert!(
        err.contains("line 1: left /s encrypted") && err.contains("cek2"),
        "{err}"
    );
}

#[test]
fn demo_runs_without_arguments_or_network() {
    let o = ae(&["demo"], None);
    assert_exit(&o, 0);
    let out = stdout(&o);
    for want in [
        "123-45-6789",
        "Query parameter",
        "BQ",
        "decrypted.ndjson",
        "It equals the stored /ssn of 2 of the 3 documents",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The demo's files are where it says.
    let dir_line = out.lines().find(|l| l.contains("Files are in ")).unwrap();
    let dir = dir_line.split("Files are in ").nth(1).unwrap().trim();
    assert!(Path::new(dir).join("encrypted.ndjson").is_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_run_killed_midway_leaves_nothing_at_the_output() {
    use std::io::Write;
    let (d, local) = sdk_setup("killed");
    let out = d.path("out.ndjson");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ae"))
        .args([
            "encrypt",
            "--no-progress",
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            &local,
            "-o",
            s(&out),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let plain = vector("plain.ndjson");
    // Feed some documents, leave the input open, then kill the process mid-stream.
    for _ in 0..200 {
        input.write_all(plain.as_bytes()).unwrap();
    }
    input.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run must not leave an output file");
}

#[test]
fn reencrypt_rotates_to_a_new_key_once_and_restarts_cleanly() {
    let (d, local) = sdk_setup("rotate");
    let url2 = "https://test-vault.vault.azure.net/keys/kek2/00000000000000000000000000000002";
    let l2 = format!("{url2}={}", kek_pem().display());
    let store = d.path("keys.json");
    assert_exit(
        &ae(
            &[
                "keys",
                "create",
                "--store",
                s(&store),
                "--id",
                "cek2",
                "--kek-url",
                url2,
                "--local-kek",
                &l2,
            ],
            None,
        ),
        0,
    );
    // New policy: every path under cek2, /s now Randomized.
    let new_policy = vector("policy.json")
        .replace("\"cek1\"", "\"cek2\"")
        .replacen("Deterministic", "Randomized", 1);
    d.write("new-policy.json", &new_policy);
    let o = ae(
        &[
            "keys",
            "list",
            "--store",
            s(&store),
            "--policy",
            s(&d.path("new-policy.json")),
        ],
        None,
    );
    assert_exit(&o, 0);
    let list = stdout(&o);
    assert!(list.contains("IN POLICY"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("cek2") && l.contains("yes")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("cek1") && l.contains("no")),
        "{list}"
    );

    let base = |input: &Path, output: &Path| -> Output {
        ae(
            &[
                "reencrypt",
                "--store",
                s(&store),
                "--from-policy",
                s(&d.path("policy.json")),
                "--to-policy",
                s(&d.path("new-policy.json")),
                "--partition-key-path",
                "/pk",
                "--local-kek",
                &local,
                "--local-kek",
                &l2,
                "-i",
                s(input),
                "-o",
                s(output),
            ],
            None,
        )
    };
    let o = base(&d.path("enc.ndjson"), &d.path("rotated.ndjson"));
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("converted 6, already converted 0, failed 0"),
        "{}",
        stderr(&o)
    );
    let rotated = d.read("rotated.ndjson");
    // Decrypts under the new policy to the original documents; no longer under the old one.
    let dec = ae(
        &[
            "decrypt",
            "--store",
            s(&store),
            "--policy",
            s(&d.path("new-policy.json")),
            "--local-kek",
            &l2,
            "-i",
            s(&d.path("rotated.ndjson")),
        ],
        None,
    );
    assert_exit(&dec, 0);
    let got: Vec<serde_json::Value> = stdout(&dec)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> = vector("plain.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want);

    // A run stopped halfway: the first three documents converted, the rest not yet.
    let mixed: String = rotated
        .lines()
        .take(3)
        .chain(vector("enc.ndjson").lines().skip(3))
        .map(|l| format!("{l}\n"))
        .collect();
    d.write("mixed.ndjson", &mixed);
    let o = base(&d.path("mixed.ndjson"), &d.path("restarted.ndjson"));
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("converted 3, already converted 3, failed 0"),
        "{}",
        stderr(&o)
    );
    let restarted = d.read("restarted.ndjson");
    // The converted half passed through byte for byte.
    assert_eq!(
        restarted.lines().take(3).collect::<Vec<_>>(),
        rotated.lines().take(3).collect::<Vec<_>>()
    );

    // The wrong old key: a different cek1 fails on line 1 and leaves nothing at -o.
    let other = d.path("other-keys.json");
    assert_exit(
        &ae(
            &[
                "keys",
                "create",
                "--store",
                s(&other),
                "--id",
                "cek1",
                "--kek-url",
                url2,
                "--local-kek",
                &l2,
            ],
            None,
        ),
        0,
    );
    assert_exit(
        &ae(
            &[
                "keys",
                "create",
                "--store",
                s(&other),
                "--id",
                "cek2",
                "--kek-url",
                url2,
                "--local-kek",
                &l2,
            ],
            None,
        ),
        0,
    );
    let o = ae(
        &[
            "reencrypt",
            "--store",
            s(&other),
            "--from-policy",
            s(&d.path("policy.json")),
            "--to-policy",
            s(&d.path("new-policy.json")),
            "--local-kek",
            &l2,
            "-i",
            s(&d.path("enc.ndjson")),
            "-o",
            s(&d.path("never.ndjson")),
        ],
        None,
    );
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("line 1:"), "{}", stderr(&o));
    assert!(!d.path("never.ndjson").exists());
}

#[test]
fn extended_policies_need_the_flag_and_round_trip_with_ae1() {
    let (d, local) = sdk_setup("extended");
    let policy = d.write("ae1.json", r#"{"includedPaths":[
        {"path":"/ssn","clientEncryptionKeyId":"cek1","encryptionType":"Deterministic","encryptionAlgorithm":"AE1_AES_256_GCM_HKDF_SHA256"},
        {"path":"/cards/[]/number","clientEncryptionKeyId":"cek1","encryptionType":"Randomized","encryptionAlgorithm":"AE1_AES_256_GCM_HKDF_SHA256"}],
        "policyFormatVersion":2}"#);
    let doc = "{\"id\":\"1\",\"ssn\":\"123-45-6789\",\"cards\":[{\"number\":\"4111\",\"brand\":\"visa\"}]}\n";
    let run = |cmd: &str, extended: bool, input: &str| {
        let mut args = vec![
            cmd,
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&policy),
            "--local-kek",
            &local,
        ];
        if extended {
            args.push("--extended");
        }
        ae(&args, Some(input))
    };
    let o = run("encrypt", false, doc);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("/ssn"), "{}", stderr(&o));
    let o = run("encrypt", true, doc);
    assert_exit(&o, 0);
    let enc = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(enc.trim()).unwrap();
    assert!(
        v["ssn"].as_str().unwrap().starts_with("oQ"),
        "AE1 values start with 0xA1: {enc}"
    );
    assert_eq!(v["cards"][0]["brand"], "visa");
    assert_ne!(v["cards"][0]["number"], "4111");
    let o = run("decrypt", true, &enc);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), doc);
}

/// Issue 23, item 1: a property name with a lone UTF-16 surrogate escape (valid JSON, which
/// the official JavaScript SDK encrypts and writes back unchanged) no longer makes the
/// document unreadable; messages escape control characters in the names they print.
mod lone_surrogate_names {
    use super::*;

    const POLICY: &str = r#"{"includedPaths":[{"path":"/a","clientEncryptionKeyId":"cek1","encryptionType":"Deterministic","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"}],"policyFormatVersion":2}"#;

    fn run(d: &Dir, local: &str, args: &[&str], input: &str) -> Output {
        let mut all = vec![args[0]];
        all.extend([
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("surr-policy.json")),
            "--local-kek",
            local,
        ]);
        all.extend(&args[1..]);
        ae(&all, Some(input))
    }

    #[test]
    fn the_reproducer_encrypts_and_decrypts_strict_and_lenient() {
        let (d, local) = sdk_setup("surr");
        d.write("surr-policy.json", POLICY);
        let doc = "{\"id\":\"1\",\"a\":\"x\",\"k\\udb5e\":\"value\"}\n";
        let o = run(&d, &local, &["encrypt"], doc);
        assert_exit(&o, 0);
        let enc = stdout(&o);
        assert!(enc.ends_with(",\"k\\udb5e\":\"value\"}\n"), "{enc}");
        assert!(!enc.contains("\"a\":\"x\""), "{enc}");
        for args in [&["decrypt"][..], &["decrypt", "--lenient"]] {
            let o = run(&d, &local, args, &enc);
            assert_exit(&o, 0);
            assert_eq!(stdout(&o), doc, "{args:?}");
        }
    }

    #[test]
    fn errors_print_such_names_escaped() {
        let (d, local) = sdk_setup("surr-err");
        d.write("surr-policy.json", POLICY);
        let o = run(
            &d,
            &local,
            &["decrypt"],
            "{\"a\":{\"k\\udb5e\\u001b[2J\":\"bad!\"}}\n",
        );
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(
            err.contains(r"malformed ciphertext at /a/k\udb5e\u001b[2J (key 'cek1')"),
            "{err}"
        );
        assert!(!err.contains('\u{1b}'), "{err:?}");
    }
}

/// Issue 19, item 3: `-o` files hold plaintext, so a new one is readable by its owner
/// only from its first byte, whatever the umask, and an existing one keeps its mode.
#[cfg(unix)]
mod private_output {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The permission bits, in octal.
    fn mode(p: &Path) -> String {
        format!(
            "{:o}",
            std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
        )
    }

    /// `ae decrypt` of the SDK's documents to `out`, run under umask 022 (the usual one,
    /// which leaves a plain new file readable by everyone).
    fn decrypt_to(d: &Dir, local: &str, out: &Path) -> Output {
        let o = Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_ae"))
            .args([
                "decrypt",
                "--no-progress",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                local,
                "-i",
                s(&d.path("enc.ndjson")),
                "-o",
                s(out),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_exit(&o, 0);
        o
    }

    #[test]
    fn a_new_output_file_is_private_under_umask_022() {
        let (d, local) = sdk_setup("private-new");
        let out = d.path("new-plain.ndjson");
        decrypt_to(&d, &local, &out);
        assert_eq!(mode(&out), "600");
        assert_eq!(
            d.read("new-plain.ndjson").lines().count(),
            vector("plain.ndjson").lines().count()
        );
    }

    #[test]
    fn an_existing_output_file_keeps_its_mode() {
        let (d, local) = sdk_setup("private-existing");
        let out = d.path("plain.ndjson");
        for m in [0o600, 0o640] {
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(m)).unwrap();
            decrypt_to(&d, &local, &out);
            assert_eq!(mode(&out), format!("{m:o}"));
        }
        // Through a symbolic link: the file it points to keeps its mode, the link stays.
        let link = d.path("link.ndjson");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        decrypt_to(&d, &local, &link);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode(&out), "640");
    }

    /// While `ae` is still writing, the temporary file already has the final mode: 0600
    /// for a new output, the target's mode for an existing one.
    #[test]
    fn the_temporary_file_is_private_while_it_is_written() {
        use std::io::Write;
        let (d, local) = sdk_setup("private-temp");
        let existing = d.write("existing.ndjson", "old\n");
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        for (name, want) in [("new.ndjson", "600"), ("existing.ndjson", "640")] {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg("umask 022 && exec \"$0\" \"$@\"")
                .arg(env!("CARGO_BIN_EXE_ae"))
                .args([
                    "encrypt",
                    "--no-progress",
                    "--store",
                    s(&d.path("keys.json")),
                    "--policy",
                    s(&d.path("policy.json")),
                    "--local-kek",
                    &local,
                    "-o",
                    s(&d.path(name)),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            let plain = vector("plain.ndjson");
            // Enough documents to fill the output buffer; the input stays open.
            for _ in 0..400 {
                input.write_all(plain.as_bytes()).unwrap();
            }
            input.flush().unwrap();
            let prefix = format!(".{name}.tmp-");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let temp = loop {
                let written = std::fs::read_dir(&d.0).unwrap().find_map(|e| {
                    let e = e.unwrap();
                    let started = e.file_name().to_string_lossy().starts_with(&prefix);
                    (started && e.metadata().unwrap().len() > 0).then(|| e.path())
                });
                if let Some(t) = written {
                    break t;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no temporary file written"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let got = mode(&temp);
            child.kill().unwrap();
            child.wait().unwrap();
            assert_eq!(got, want, "{name}: the mode while it is written");
        }
        assert_eq!(d.read("existing.ndjson"), "old\n");
    }

    /// `ae keys export -o` (wrapped keys) gets a private new file too.
    #[test]
    fn keys_export_writes_a_private_file() {
        let (d, _) = sdk_setup("private-export");
        let out = d.path("export.json");
        let o = Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_ae"))
            .args([
                "keys",
                "export",
                "--store",
                s(&d.path("keys.json")),
                "-o",
                s(&out),
            ])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        assert_eq!(mode(&out), "600");
        assert!(d.read("export.json").contains("cek1"));
    }

    /// `-o /dev/stdout` with stdout a pipe streams to the pipe.
    #[test]
    fn dev_stdout_streams_to_the_pipe() {
        let (d, local) = sdk_setup("private-devstdout");
        let o = ae(
            &[
                "decrypt",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                &local,
                "-i",
                s(&d.path("enc.ndjson")),
                "-o",
                "/dev/stdout",
            ],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(
            stdout(&o).lines().count(),
            vector("plain.ndjson").lines().count()
        );
    }

    /// An existing output keeps its group (root may set it). A user who may not keep the
    /// group (not a member) writes the file with the group bits cleared, so the group it
    /// now belongs to cannot read what only the old group could. Needs root and
    /// `setpriv`; skipped otherwise.
    #[test]
    fn the_group_is_kept_or_loses_its_access() {
        use std::os::unix::fs::MetadataExt;
        let (d, local) = sdk_setup("private-group");
        let out = d.path("shared.ndjson");
        std::fs::write(&out, "old\n").unwrap();
        if std::os::unix::fs::chown(&out, None, Some(4242)).is_err() {
            eprintln!("skipped: needs root to set the group of a file");
            return;
        }
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
        decrypt_to(&d, &local, &out);
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!((meta.gid(), mode(&out)), (4242, "640".to_owned()));

        // As user and group 65534 (nobody), not a member of group 4242, in a directory
        // it may write.
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o660)).unwrap();
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_ae"))
            .args([
                "decrypt",
                "--no-progress",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                &local,
                "-i",
                s(&d.path("enc.ndjson")),
                "-o",
                s(&out),
            ])
            .output();
        let Ok(o) = o else {
            eprintln!("skipped: no setpriv");
            return;
        };
        assert_exit(&o, 0);
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), mode(&out)),
            (65534, 65534, "600".to_owned())
        );
    }

    /// A device is still written directly (not replaced by a regular file).
    #[test]
    fn dev_null_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        let (d, local) = sdk_setup("private-devnull");
        decrypt_to(&d, &local, Path::new("/dev/null"));
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

mod param_numbers {
    use super::*;

    /// `ae param` on the SDK vectors' policy (every path Deterministic), with `extra` args.
    fn param(d: &Dir, local: &str, extra: &[&str], stdin: Option<&str>) -> Output {
        let mut args = vec![
            "param",
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("policy.json")),
            "--local-kek",
            local,
        ];
        args.extend_from_slice(extra);
        ae(&args, stdin)
    }

    /// What `ae encrypt` stores for `{"n": <literal>}`: `Ok(stored value)` or the exit code.
    #[allow(clippy::unwrap_in_result)]
    fn stored(d: &Dir, local: &str, literal: &str) -> Result<String, i32> {
        let o = ae(
            &[
                "encrypt",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                local,
            ],
            Some(&format!("{{\"n\":{literal}}}\n")),
        );
        if o.status.code() != Some(0) {
            return Err(o.status.code().unwrap());
        }
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        Ok(v["n"].to_string())
    }

    #[test]
    fn integers_documents_refuse_are_refused_not_rounded() {
        let (d, local) = sdk_setup("param-big");
        for lit in [
            "100000000000000000000000",
            "12345678901234567890123",
            "-9223372036854775809",
            "47151877824217080000",
        ] {
            assert_eq!(stored(&d, &local, lit), Err(1), "{lit}");
            let o = param(
                &d,
                &local,
                &["--path", "/n", &format!("--value={lit}")],
                None,
            );
            assert_exit(&o, 1);
            assert!(stdout(&o).is_empty());
            assert!(stderr(&o).contains("/n"), "{}", stderr(&o));
            assert!(
                !stderr(&o).contains(lit),
                "the value is echoed: {}",
                stderr(&o)
            );
        }
    }

    #[test]
    fn negative_zero_matches_the_stored_long_zero() {
        let (d, local) = sdk_setup("param-neg-zero");
        let long_zero = stored(&d, &local, "0").unwrap();
        assert_eq!(stored(&d, &local, "-0").unwrap(), long_zero);
        let o = param(&d, &local, &["--path", "/n", "--value=-0"], None);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), long_zero);
        // -0.0 is a Double in documents, and as a parameter.
        let o = param(&d, &local, &["--path", "/n", "--value=-0.0"], None);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), stored(&d, &local, "-0.0").unwrap());
        assert_ne!(stdout(&o).trim(), long_zero);
    }

    #[test]
    fn parameters_are_typed_from_their_literal_like_documents() {
        let (d, local) = sdk_setup("param-literals");
        for lit in ["42", "1.0", "1e2", "-5", "9223372036854775808", "-1.5e-3"] {
            let o = param(&d, &local, &["--path", "/n", "--value", lit], None);
            assert_exit(&o, 0);
            assert_eq!(stdout(&o).trim(), stored(&d, &local, lit).unwrap(), "{lit}");
        }
    }

    #[test]
    fn number_type_long_accepts_integral_literals_that_are_exact() {
        let (d, local) = sdk_setup("param-long");
        for (lit, long) in [
            ("1.0", "1"),
            ("0.0", "0"),
            ("1E3", "1000"),
            ("9.2e18", "9200000000000000000"),
            ("-0", "0"),
            ("42", "42"),
        ] {
            let o = param(
                &d,
                &local,
                &["--path", "/n", "--number-type", "long", "--value", lit],
                None,
            );
            assert_exit(&o, 0);
            assert_eq!(
                stdout(&o).trim(),
                stored(&d, &local, long).unwrap(),
                "{lit}"
            );
        }
        for lit in ["1.5", "1e19", "9223372036854775808", "1e-400"] {
            let o = param(
                &d,
                &local,
                &["--path", "/n", "--number-type", "long", "--value", lit],
                None,
            );
            assert_exit(&o, 1);
            assert!(
                !stderr(&o).contains(lit),
                "the value is echoed: {}",
                stderr(&o)
            );
        }
        // And Double: an integer literal must have an exact double.
        let o = param(
            &d,
            &local,
            &["--path", "/n", "--number-type", "double", "--value", "42"],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), stored(&d, &local, "42.0").unwrap());
        let o = param(
            &d,
            &local,
            &[
                "--path",
                "/n",
                "--number-type",
                "double",
                "--value",
                "9007199254740993",
            ],
            None,
        );
        assert_exit(&o, 1);
    }

    #[test]
    fn negative_numbers_after_value_are_values_not_flags() {
        let (d, local) = sdk_setup("param-negative");
        for lit in ["-5", "-1e-5", "-0.25"] {
            let o = param(&d, &local, &["--path", "/n", "--value", lit], None);
            assert_exit(&o, 0);
            assert_eq!(stdout(&o).trim(), stored(&d, &local, lit).unwrap(), "{lit}");
        }
        let help = ae(&["param", "--help"], None);
        assert_exit(&help, 0);
        let help = stdout(&help);
        assert!(help.contains("--value-file"), "{help}");
        assert!(help.contains("-5"), "{help}");
    }

    #[test]
    fn the_value_can_come_from_a_file_or_stdin() {
        let (d, local) = sdk_setup("param-file");
        let enc: serde_json::Value =
            serde_json::from_str(vector("enc.ndjson").lines().next().unwrap()).unwrap();
        let want = enc["s"].to_string();
        // A file, with its final newline.
        let file = d.write("ssn.json", "\"123-45-6789\"\n");
        let o = param(
            &d,
            &local,
            &["--path", "/s", "--value-file", s(&file)],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), want);
        // Stdin.
        let o = param(
            &d,
            &local,
            &["--path", "/s", "--value-file", "-"],
            Some("\"123-45-6789\"\r\n"),
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), want);
        // A number from a file is typed from its literal too.
        let file = d.write("n.json", "-0\n");
        let o = param(
            &d,
            &local,
            &["--path", "/n", "--value-file", s(&file)],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), stored(&d, &local, "0").unwrap());
    }

    #[test]
    fn exactly_one_of_value_and_value_file() {
        let (d, local) = sdk_setup("param-one-source");
        let file = d.write("v.json", "\"x\"");
        let o = param(
            &d,
            &local,
            &["--path", "/s", "--value", "\"x\"", "--value-file", s(&file)],
            None,
        );
        assert_exit(&o, 2);
        let o = param(&d, &local, &["--path", "/s"], None);
        assert_exit(&o, 2);
        // A missing file: usage, naming the file.
        let missing = d.path("missing.json");
        let o = param(
            &d,
            &local,
            &["--path", "/s", "--value-file", s(&missing)],
            None,
        );
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("missing.json"), "{}", stderr(&o));
    }

    #[test]
    fn errors_never_echo_the_value() {
        let (d, local) = sdk_setup("param-no-echo");
        for (value, code) in [
            ("\"secret-123\" trailing", 2),
            ("{\"a\": \"secret-123\"", 2),
            ("secret-123", 2),
            ("\"secret-123\", \"n\": 1", 2),
        ] {
            let file = d.write("v.json", value);
            for args in [
                vec!["--path", "/s", "--value", value],
                vec!["--path", "/s", "--value-file", s(&file)],
            ] {
                let o = param(&d, &local, &args, None);
                assert_exit(&o, code);
                assert!(stdout(&o).is_empty());
                assert!(!stderr(&o).contains("secret-123"), "{}", stderr(&o));
            }
        }
    }
}

mod reencrypt_leaves_no_old_key {
    use super::*;

    const URL2: &str =
        "https://test-vault.vault.azure.net/keys/kek2/00000000000000000000000000000002";

    /// cek1 (the SDK's) is the old key; creates cek2 as the new one in `store`. Returns the
    /// `--local-kek` mapping for cek2's KEK.
    fn create_cek2(store: &Path) -> String {
        let l2 = format!("{URL2}={}", kek_pem().display());
        let o = ae(
            &[
                "keys",
                "create",
                "--store",
                s(store),
                "--id",
                "cek2",
                "--kek-url",
                URL2,
                "--local-kek",
                &l2,
            ],
            None,
        );
        assert_exit(&o, 0);
        l2
    }

    fn policy(paths: &[(&str, &str)]) -> String {
        let paths: Vec<serde_json::Value> = paths
            .iter()
            .map(|(path, key)| {
                serde_json::json!({"path": path, "clientEncryptionKeyId": key,
                    "encryptionType": "Randomized",
                    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
            })
            .collect();
        serde_json::json!({"includedPaths": paths, "policyFormatVersion": 2}).to_string()
    }

    /// Issue 19, item 2: old policy /ssn and /card under the old key, new policy /ssn
    /// under the new key. A document holding only /card under the old key was counted
    /// "already converted" and passed through with /card still under the old key.
    #[test]
    fn a_property_the_new_policy_drops_is_decrypted_and_counted_as_converted() {
        let (d, local) = sdk_setup("rot-drop");
        let store = d.path("keys.json");
        let l2 = create_cek2(&store);
        let old = d.write("old.json", &policy(&[("/ssn", "cek1"), ("/card", "cek1")]));
        let new = d.write("new.json", &policy(&[("/ssn", "cek2")]));
        let plain = "{\"id\":\"1\",\"card\":\"4111 1111 1111 1111\"}\n\
                     {\"id\":\"2\",\"ssn\":\"123-45-6789\",\"card\":\"5500\"}\n\
                     {\"id\":\"3\",\"other\":true}\n";
        let o = ae(
            &[
                "encrypt",
                "--store",
                s(&store),
                "--policy",
                s(&old),
                "--local-kek",
                &local,
            ],
            Some(plain),
        );
        assert_exit(&o, 0);
        let enc = d.write("enc.ndjson", &stdout(&o));
        assert!(!d.read("enc.ndjson").contains("4111"));
        let run = |input: &Path, output: &Path| {
            ae(
                &[
                    "reencrypt",
                    "--store",
                    s(&store),
                    "--from-policy",
                    s(&old),
                    "--to-policy",
                    s(&new),
                    "--local-kek",
                    &local,
                    "--local-kek",
                    &l2,
                    "-i",
                    s(input),
                    "-o",
                    s(output),
                ],
                None,
            )
        };
        let o = run(&enc, &d.path("rotated.ndjson"));
        assert_exit(&o, 0);
        assert!(
            stderr(&o).contains("converted 2, already converted 1, failed 0"),
            "{}",
            stderr(&o)
        );
        let rotated = d.read("rotated.ndjson");
        let lines: Vec<serde_json::Value> = rotated
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"id": "1", "card": "4111 1111 1111 1111"})
        );
        assert_eq!(lines[1]["card"], "5500");
        assert_ne!(lines[1]["ssn"], "123-45-6789");
        // Readable under the new policy alone.
        let o = ae(
            &[
                "decrypt",
                "--store",
                s(&store),
                "--policy",
                s(&new),
                "--local-kek",
                &l2,
                "-i",
                s(&d.path("rotated.ndjson")),
            ],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), plain);
        // A second run converts nothing and changes nothing.
        let o = run(&d.path("rotated.ndjson"), &d.path("again.ndjson"));
        assert_exit(&o, 0);
        assert!(
            stderr(&o).contains("converted 0, already converted 3, failed 0"),
            "{}",
            stderr(&o)
        );
        assert_eq!(d.read("again.ndjson"), rotated);
    }

    /// With the wrong old key (another cek1), a property only the old policy encrypts does
    /// not authenticate: the run fails on that line and writes nothing, instead of passing
    /// the value through as "already converted".
    #[test]
    fn the_wrong_old_key_fails_instead_of_passing_values_through() {
        let (d, local) = sdk_setup("rot-wrong");
        let store = d.path("keys.json");
        let old = d.write("old.json", &policy(&[("/ssn", "cek1"), ("/card", "cek1")]));
        let new = d.write("new.json", &policy(&[("/ssn", "cek2")]));
        let o = ae(
            &[
                "encrypt",
                "--store",
                s(&store),
                "--policy",
                s(&old),
                "--local-kek",
                &local,
            ],
            Some("{\"id\":\"1\",\"card\":\"4111\"}\n"),
        );
        assert_exit(&o, 0);
        let enc = d.write("enc.ndjson", &stdout(&o));
        // Another store: a different cek1 under the same id, and a cek2.
        let other = d.path("other-keys.json");
        let l2 = format!("{URL2}={}", kek_pem().display());
        for id in ["cek1", "cek2"] {
            let o = ae(
                &[
                    "keys",
                    "create",
                    "--store",
                    s(&other),
                    "--id",
                    id,
                    "--kek-url",
                    URL2,
                    "--local-kek",
                    &l2,
                ],
                None,
            );
            assert_exit(&o, 0);
        }
        let out = d.path("never.ndjson");
        let o = ae(
            &[
                "reencrypt",
                "--store",
                s(&other),
                "--from-policy",
                s(&old),
                "--to-policy",
                s(&new),
                "--local-kek",
                &l2,
                "-i",
                s(&enc),
                "-o",
                s(&out),
            ],
            None,
        );
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(err.contains("line 1:") && err.contains("/card"), "{err}");
        assert!(err.contains("cek1"), "{err}");
        assert!(!out.exists());
    }

    /// Review H1 (issue 23): a document with a property name holding a lone UTF-16
    /// surrogate escape (valid JSON, which JavaScript writes) is rotated, the name copied
    /// as written, instead of failing the line as invalid JSON.
    #[test]
    fn a_lone_surrogate_property_name_does_not_stop_the_run() {
        let (d, local) = sdk_setup("rot-surr");
        let store = d.path("keys.json");
        let l2 = create_cek2(&store);
        let old = d.write("old.json", &policy(&[("/ssn", "cek1")]));
        let new = d.write("new.json", &policy(&[("/ssn", "cek2")]));
        let plain = "{\"id\":\"1\",\"ssn\":\"x\",\"k\\udb5e\":\"value\"}\n";
        let o = ae(
            &[
                "encrypt",
                "--store",
                s(&store),
                "--policy",
                s(&old),
                "--local-kek",
                &local,
            ],
            Some(plain),
        );
        assert_exit(&o, 0);
        let enc = d.write("enc.ndjson", &stdout(&o));
        let out = d.path("rotated.ndjson");
        let o = ae(
            &[
                "reencrypt",
                "--store",
                s(&store),
                "--from-policy",
                s(&old),
                "--to-policy",
                s(&new),
                "--local-kek",
                &local,
                "--local-kek",
                &l2,
                "-i",
                s(&enc),
                "-o",
                s(&out),
            ],
            None,
        );
        assert_exit(&o, 0);
        assert!(
            stderr(&o).contains("converted 1, already converted 0, failed 0"),
            "{}",
            stderr(&o)
        );
        let rotated = d.read("rotated.ndjson");
        assert!(rotated.ends_with(",\"k\\udb5e\":\"value\"}\n"), "{rotated}");
        assert_ne!(rotated, d.read("enc.ndjson"));
        let o = ae(
            &[
                "decrypt",
                "--store",
                s(&store),
                "--policy",
                s(&new),
                "--local-kek",
                &l2,
                "-i",
                s(&out),
            ],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), plain);
    }
}

mod trusted_keys {
    use super::*;

    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// `ae` with `args` and exactly the trust variables in `env` (none from the caller's
    /// environment).
    fn ae_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        spawn(args, env, stdin.is_some())
            .pipe(stdin)
            .wait_with_output()
            .unwrap()
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], piped: bool) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ae"));
        cmd.args(args)
            .arg("--no-progress")
            .env_remove("AE_TRUSTED_KEKS")
            .env_remove("AE_TRUSTED_KEY_VAULT_HOSTS")
            .envs(env.iter().copied())
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    trait Pipe {
        fn pipe(self, stdin: Option<&str>) -> Self;
    }

    impl Pipe for std::process::Child {
        fn pipe(mut self, stdin: Option<&str>) -> Self {
            if let Some(text) = stdin {
                use std::io::Write;
                self.stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
            }
            self
        }
    }

    /// A listener on 127.0.0.1 that answers nothing.
    fn listener() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    fn connected(l: &TcpListener) -> bool {
        match l.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }

    /// The SDK's `cek1`, pointed at `kek_url` (as anyone who can write the store could).
    fn store_with_kek(d: &Dir, kek_url: &str) {
        let mut cek: serde_json::Value = serde_json::from_str(&vector("cek1.json")).unwrap();
        cek["keyWrapMetadata"]["value"] = kek_url.into();
        d.write("keys.json", &format!("[{cek}]"));
    }

    #[test]
    fn a_key_vault_url_on_an_untrusted_host_is_refused_before_any_connection() {
        let d = Dir::new("trust-host");
        d.write("policy.json", &vector("policy.json"));
        let (l, port) = listener();
        let url = format!("https://127.0.0.1:{port}/keys/k/00000000000000000000000000000001");
        store_with_kek(&d, &url);
        let args = [
            "encrypt",
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("policy.json")),
        ];
        let o = ae_env(&args, &[], Some("{\"id\":\"1\",\"s\":\"x\"}\n"));
        assert_exit(&o, 3);
        let err = stderr(&o);
        assert!(err.contains("'cek1'"), "{err}");
        assert!(
            err.contains(&format!("host 127.0.0.1 (port {port})")),
            "{err}"
        );
        assert!(
            !err.contains("/keys/k/"),
            "names the host, not the URL: {err}"
        );
        assert!(err.contains("--trusted-key-vault-host"), "the hint: {err}");
        assert!(stdout(&o).is_empty());
        // Allowing another port of the same host does not allow this one.
        let other = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
        let o = ae_env(
            &args,
            &[("AE_TRUSTED_KEY_VAULT_HOSTS", other.as_str())],
            Some("{\"id\":\"1\"}\n"),
        );
        assert_exit(&o, 3);
        assert!(!connected(&l), "a connection was made");
    }

    /// Runs `ae encrypt` against the listener and waits for its first connection; true
    /// when one came (then `ae` is stopped: nothing there speaks TLS).
    fn reaches_listener(d: &Dir, l: &TcpListener, extra: &[&str], env: &[(&str, &str)]) -> bool {
        let mut args = vec![
            "encrypt",
            "--store",
            s(&d.path("keys.json")),
            "--policy",
            s(&d.path("policy.json")),
            "-i",
            s(&d.path("one.ndjson")),
        ];
        args.extend(extra);
        let mut child = spawn(&args, env, false);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reached = false;
        while Instant::now() < deadline {
            if connected(l) {
                reached = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert!(
            reached,
            "no connection; ae said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reached
    }

    #[test]
    fn a_trusted_host_flag_or_variable_lets_requests_go_to_that_host_and_port() {
        let d = Dir::new("trust-host-ok");
        d.write("policy.json", &vector("policy.json"));
        d.write("one.ndjson", "{\"id\":\"1\",\"s\":\"x\"}\n");
        let (l, port) = listener();
        store_with_kek(
            &d,
            &format!("https://127.0.0.1:{port}/keys/k/00000000000000000000000000000001"),
        );
        let entry = format!("127.0.0.1:{port}");
        assert!(reaches_listener(
            &d,
            &l,
            &["--trusted-key-vault-host", &entry],
            &[]
        ));
        let list = format!("kv.example.net, {entry}");
        assert!(reaches_listener(
            &d,
            &l,
            &[],
            &[("AE_TRUSTED_KEY_VAULT_HOSTS", list.as_str())]
        ));
    }

    #[test]
    fn a_bad_trusted_host_is_a_usage_error() {
        let (d, _) = sdk_setup("trust-host-bad");
        for bad in [
            "https://kv.example.net",
            "*.example.net",
            "kv.example.net:0",
        ] {
            let o = ae_env(
                &[
                    "encrypt",
                    "--store",
                    s(&d.path("keys.json")),
                    "--policy",
                    s(&d.path("policy.json")),
                    "--trusted-key-vault-host",
                    bad,
                ],
                &[],
                Some(""),
            );
            assert_exit(&o, 2);
            assert!(stderr(&o).contains(bad), "{}", stderr(&o));
        }
    }

    #[test]
    fn trusted_keks_refuse_keys_under_any_other_kek_local_ones_too() {
        let (d, local) = sdk_setup("trust-kek");
        let url = cek1_url(); // https://anchor-public.vault.azure.net/keys/kek1/<version>
        let key = url.rsplit_once('/').unwrap().0.to_owned();
        let vault = key.split_once("/keys/").unwrap().0.to_owned();
        let other = "https://other.vault.azure.net/keys/kek1";
        let enc = |extra: &[&str], env: &[(&str, &str)]| {
            let mut args = vec![
                "encrypt",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--partition-key-path",
                "/pk",
                "--local-kek",
                &local,
                "-i",
                s(&d.path("plain.ndjson")),
            ];
            args.extend(extra);
            ae_env(&args, env, None)
        };
        for trusted in [url.as_str(), key.as_str(), vault.as_str()] {
            let o = enc(&["--trusted-kek", other, "--trusted-kek", trusted], &[]);
            assert_exit(&o, 0);
            assert_eq!(stdout(&o), vector("enc.ndjson"), "{trusted}");
        }
        let o = enc(&["--trusted-kek", other], &[]);
        assert_exit(&o, 3);
        let err = stderr(&o);
        assert!(err.contains("'cek1'") && err.contains(&url), "{err}");
        assert!(err.contains("--trusted-kek"), "the hint: {err}");
        assert!(stdout(&o).is_empty());

        // The variable, when the flag is not given; the flag wins over it.
        let list = format!("{other},{key}");
        assert_exit(&enc(&[], &[("AE_TRUSTED_KEKS", list.as_str())]), 0);
        assert_exit(&enc(&[], &[("AE_TRUSTED_KEKS", other)]), 3);
        assert_exit(
            &enc(&["--trusted-kek", &key], &[("AE_TRUSTED_KEKS", other)]),
            0,
        );
        // Set but naming no key (a template variable that did not expand) is a usage
        // error, never "trust every key"; the flag still wins over it.
        for empty in ["", " ,, "] {
            let o = enc(&[], &[("AE_TRUSTED_KEKS", empty)]);
            assert_exit(&o, 2);
            assert!(stderr(&o).contains("AE_TRUSTED_KEKS"), "{}", stderr(&o));
            assert!(stdout(&o).is_empty());
        }
        assert_exit(
            &enc(&["--trusted-kek", &key], &[("AE_TRUSTED_KEKS", "")]),
            0,
        );

        // Creating a key under an untrusted KEK stores nothing.
        let before = d.read("keys.json");
        let o = ae_env(
            &[
                "keys",
                "create",
                "--store",
                s(&d.path("keys.json")),
                "--id",
                "cek2",
                "--kek-url",
                &key,
                "--local-kek",
                &local,
                "--trusted-kek",
                other,
            ],
            &[],
            None,
        );
        assert_exit(&o, 3);
        assert_eq!(d.read("keys.json"), before);

        // Lenient decryption leaves what the untrusted key encrypted as stored.
        let o = ae_env(
            &[
                "decrypt",
                "--store",
                s(&d.path("keys.json")),
                "--policy",
                s(&d.path("policy.json")),
                "--local-kek",
                &local,
                "--trusted-kek",
                other,
                "--lenient",
            ],
            &[],
            Some(&vector("enc.ndjson")),
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), vector("enc.ndjson"));
        assert!(stderr(&o).contains("cek1"), "{}", stderr(&o));
    }
}
