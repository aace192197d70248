//! Key stores: the JSON file store's atomic writes, conflict detection and corruption
//! handling; export and import.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use always_encrypted::Error;
use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    ClientEncryptionKeyResource, InMemoryKeyStore, JsonFileKeyStore, KeyStore, KeyWrapAlgorithm,
    KeyWrapMetadata, export_json, export_keys, import_keys, parse_key_array,
};
use common::TempDir;
use serde_json::json;

fn cek(id: &str, wrapped: u8) -> ClientEncryptionKeyResource {
    ClientEncryptionKeyResource::new(
        id,
        Algorithm::AeadAes256CbcHmacSha256,
        KeyWrapMetadata::azure_key_vault(
            "kek1",
            "https://v.vault.azure.net/keys/kek1/1",
            KeyWrapAlgorithm::RsaOaep,
        ),
        vec![wrapped; 256],
    )
    .unwrap()
}

fn ids(keys: &[ClientEncryptionKeyResource]) -> Vec<&str> {
    keys.iter().map(ClientEncryptionKeyResource::id).collect()
}

#[tokio::test]
async fn file_store_round_trips_and_keeps_system_properties() {
    let dir = TempDir::new("store-roundtrip");
    let path = dir.join("keys.json");
    let store = JsonFileKeyStore::create(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\n");
    let mut v = common::read_json("cek1.json");
    v["_rid"] = json!("AAAAAA==");
    v["_etag"] = json!("\"0000-1\"");
    v["_ts"] = json!(1_700_000_000);
    let sdk = ClientEncryptionKeyResource::from_value(v.clone()).unwrap();
    store.create(sdk.clone()).await.unwrap();
    store.create(cek("a-key", 1)).await.unwrap();
    let reopened = JsonFileKeyStore::open(&path).unwrap();
    let keys = reopened.list().await.unwrap();
    assert_eq!(ids(&keys), ["a-key", "cek1"]);
    assert_eq!(keys[1], sdk);
    // The file is a plain JSON array of resources, exactly as Cosmos writes them.
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk[1], v);
    assert_eq!(
        on_disk[1].as_object().unwrap().keys().collect::<Vec<_>>(),
        v.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // Only the store file and its lock file are left.
    assert_eq!(dir.names(), ["keys.json", "keys.json.lock"]);
    // Debug names the file and the ids, not the wrapped keys.
    let dbg = format!("{reopened:?} {sdk:?}");
    assert!(dbg.contains("keys.json") && dbg.contains("a-key"), "{dbg}");
    let wrapped = v["wrappedDataEncryptionKey"].as_str().unwrap();
    assert!(!dbg.contains(&wrapped[..16]), "{dbg}");
}

#[tokio::test]
async fn open_create_and_open_or_create() {
    let dir = TempDir::new("store-open");
    let path = dir.join("keys.json");
    let e = JsonFileKeyStore::open(&path).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("keys.json"), "{e}");
    let s = JsonFileKeyStore::open_or_create(&path).unwrap();
    s.create(cek("a", 1)).await.unwrap();
    let e = JsonFileKeyStore::create(&path).unwrap_err();
    assert!(e.to_string().contains("keys.json"), "{e}");
    let again = JsonFileKeyStore::open_or_create(&path).unwrap();
    assert_eq!(ids(&again.list().await.unwrap()), ["a"]);
}

#[cfg(unix)]
#[tokio::test]
async fn new_files_are_private_and_existing_permissions_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("store-perms");
    let path = dir.join("keys.json");
    let s = JsonFileKeyStore::create(&path).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    s.create(cek("a", 1)).await.unwrap();
    assert_eq!(mode(&path), 0o640);
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn a_failed_write_leaves_the_previous_file_intact() {
    use always_encrypted::keys::WriteFailPoint;
    let dir = TempDir::new("store-failed-write");
    let path = dir.join("keys.json");
    let store = JsonFileKeyStore::create(&path).unwrap();
    store.create(cek("a", 1)).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    for point in [WriteFailPoint::MidWrite, WriteFailPoint::BeforeRename] {
        store.fail_next_write(point);
        let e = store.create(cek("b", 2)).await.unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{point:?}");
        assert_eq!(
            dir.names(),
            ["keys.json", "keys.json.lock"],
            "{point:?}: the temporary file was removed"
        );
        // The handle did not take the failed change as done.
        assert_eq!(ids(&store.list().await.unwrap()), ["a"]);
        assert_eq!(
            ids(&JsonFileKeyStore::open(&path).unwrap().list().await.unwrap()),
            ["a"]
        );
    }
    // And it can still write.
    store.create(cek("b", 2)).await.unwrap();
    assert_eq!(
        ids(&JsonFileKeyStore::open(&path).unwrap().list().await.unwrap()),
        ["a", "b"]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_write_into_a_read_only_directory_fails_and_keeps_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("store-readonly");
    let path = dir.join("keys.json");
    let store = JsonFileKeyStore::create(&path).unwrap();
    store.create(cek("a", 1)).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(dir.join("probe"), b"x").is_ok() {
        // Running as root: directory permissions do not bind. The injected failures in
        // `a_failed_write_leaves_the_previous_file_intact` cover this path there.
        eprintln!("skipped: permissions are not enforced for this user");
        return;
    }
    let e = store.create(cek("b", 2)).await.unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("ae-test-store-readonly"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir.names(), ["keys.json", "keys.json.lock"]);
}

#[tokio::test]
async fn a_temp_file_left_by_an_interrupted_write_is_ignored() {
    let dir = TempDir::new("store-interrupted");
    let path = dir.join("keys.json");
    let store = JsonFileKeyStore::create(&path).unwrap();
    store.create(cek("a", 1)).await.unwrap();
    drop(store);
    // What a crash in the middle of a write leaves: a partial temporary file beside the
    // untouched store file.
    let full = std::fs::read(&path).unwrap();
    let stray = dir.join(".keys.json.tmp-00000000deadbeef");
    std::fs::write(&stray, &full[..full.len() / 2]).unwrap();
    let store = JsonFileKeyStore::open(&path).unwrap();
    assert_eq!(ids(&store.list().await.unwrap()), ["a"]);
    store.create(cek("b", 2)).await.unwrap();
    assert_eq!(
        ids(&JsonFileKeyStore::open(&path).unwrap().list().await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(std::fs::read(&stray).unwrap(), &full[..full.len() / 2]);
}

#[tokio::test]
async fn two_writers_cannot_silently_overwrite_each_other() {
    let dir = TempDir::new("store-two-writers");
    let path = dir.join("keys.json");
    JsonFileKeyStore::create(&path).unwrap();
    let a = JsonFileKeyStore::open(&path).unwrap();
    let b = JsonFileKeyStore::open(&path).unwrap();
    a.create(cek("from-a", 1)).await.unwrap();
    let from_a = a.read("from-a").await.unwrap().unwrap();
    // B loaded the file before A's write: its write would drop A's key, so it is refused.
    let e = b.create(cek("from-b", 2)).await.unwrap_err();
    assert!(matches!(e, Error::KeyStoreConflict { .. }), "{e}");
    assert!(e.to_string().contains("keys.json"), "{e}");
    assert_eq!(
        ids(&JsonFileKeyStore::open(&path).unwrap().list().await.unwrap()),
        ["from-a"]
    );
    b.reload().unwrap();
    b.create(cek("from-b", 2)).await.unwrap();
    // A has not looked at the file since B's write: a replace or delete from it is refused
    // too.
    assert!(matches!(
        a.replace(&from_a, cek("from-a", 3)).await,
        Err(Error::KeyStoreConflict { .. })
    ));
    assert!(matches!(
        a.delete("from-a").await,
        Err(Error::KeyStoreConflict { .. })
    ));
    // A read of a key A has not seen looks at the file again.
    assert!(a.read("from-b").await.unwrap().is_some());
    a.delete("from-a").await.unwrap();
    assert_eq!(
        ids(&JsonFileKeyStore::open(&path).unwrap().list().await.unwrap()),
        ["from-b"]
    );
}

/// A writer on its own thread that opens the store at `path` and creates keys `w{w}-00`,
/// `w{w}-01`, …, `n` of them, reloading and retrying on every conflict (at most 10,000 in
/// all); returns how many conflicts it met.
fn retrying_writer(path: PathBuf, w: usize, n: usize) -> tokio::task::JoinHandle<usize> {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = JsonFileKeyStore::open(&path).unwrap();
        let mut conflicts = 0;
        for i in 0..n {
            let key = cek(&format!("w{w}-{i:02}"), 1);
            loop {
                match rt.block_on(store.create(key.clone())) {
                    Ok(()) => break,
                    Err(Error::KeyStoreConflict { .. }) => {
                        conflicts += 1;
                        assert!(conflicts < 10_000);
                        store.reload().unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        conflicts
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_that_retry_lose_nothing() {
    let dir = TempDir::new("store-many-writers");
    let path = dir.join("keys.json");
    JsonFileKeyStore::create(&path).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| retrying_writer(path.clone(), w, 10))
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let keys = JsonFileKeyStore::open(&path).unwrap().list().await.unwrap();
    assert_eq!(keys.len(), 40, "every writer's keys are there");
}

#[tokio::test]
async fn a_corrupt_or_partial_file_is_an_error_and_never_overwritten() {
    let dir = TempDir::new("store-corrupt");
    let path = dir.join("keys.json");
    let good = {
        let s = JsonFileKeyStore::create(&path).unwrap();
        s.create(cek("a", 1)).await.unwrap();
        s.create(cek("b", 2)).await.unwrap();
        std::fs::read(&path).unwrap()
    };
    let cases: [(&str, &[u8]); 4] = [
        ("truncated", &good[..good.len() - 10]),
        ("empty", b""),
        ("not an array", b"{\"id\":\"a\"}"),
        (
            "bad element",
            b"[{\"id\":\"a\",\"encryptionAlgorithm\":\"x\"}]",
        ),
    ];
    for (name, bytes) in cases {
        std::fs::write(&path, bytes).unwrap();
        for e in [
            JsonFileKeyStore::open(&path).unwrap_err(),
            JsonFileKeyStore::open_or_create(&path).unwrap_err(),
        ] {
            assert!(matches!(e, Error::CorruptKeyStore { .. }), "{name}: {e}");
            assert!(e.to_string().contains("keys.json"), "{name}: {e}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: untouched");
    }
    // A file corrupted under an open store: its next write fails and leaves it alone.
    std::fs::write(&path, &good).unwrap();
    let store = JsonFileKeyStore::open(&path).unwrap();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let e = store.create(cek("c", 3)).await.unwrap_err();
    assert!(matches!(e, Error::CorruptKeyStore { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), &good[..good.len() / 2]);
    // A file removed under an open store is not silently recreated.
    std::fs::remove_file(&path).unwrap();
    assert!(store.create(cek("c", 3)).await.is_err());
    assert!(!path.exists());
}

#[tokio::test]
async fn replace_is_optimistic_on_the_file_store_too() {
    let dir = TempDir::new("store-replace");
    let store = JsonFileKeyStore::create(dir.join("keys.json")).unwrap();
    store.create(cek("a", 1)).await.unwrap();
    let read = store.read("a").await.unwrap().unwrap();
    store.replace(&read, cek("a", 2)).await.unwrap();
    let e = store.replace(&read, cek("a", 3)).await.unwrap_err();
    assert!(matches!(e, Error::KeyStoreConflict { .. }), "{e}");
    assert_eq!(
        store
            .read("a")
            .await
            .unwrap()
            .unwrap()
            .wrapped_data_encryption_key(),
        &[2; 256]
    );
}

#[tokio::test]
async fn export_then_import_into_a_new_store() {
    let dir = TempDir::new("store-export");
    let source = JsonFileKeyStore::create(dir.join("old.json")).unwrap();
    let mut v = common::read_json("cek1.json");
    v["_rid"] = json!("old-account-rid");
    source
        .create(ClientEncryptionKeyResource::from_value(v).unwrap())
        .await
        .unwrap();
    source.create(cek("a", 1)).await.unwrap();
    source.create(cek("b", 2)).await.unwrap();

    let all = export_json(&source, None).await.unwrap();
    let some = export_keys(&source, Some(&["b", "cek1"])).await.unwrap();
    assert_eq!(ids(&some), ["b", "cek1"]);
    assert!(matches!(
        export_keys(&source, Some(&["nope"])).await,
        Err(Error::KeyNotFound { .. })
    ));

    // Restore into a new account: a new, empty store.
    let target = JsonFileKeyStore::create(dir.join("new.json")).unwrap();
    let report = import_keys(&target, parse_key_array(all.as_bytes()).unwrap())
        .await
        .unwrap();
    assert_eq!(report.created, ["a", "b", "cek1"]);
    assert_eq!(target.list().await.unwrap(), source.list().await.unwrap());

    // Importing again is a no-op, also when system properties differ (another account).
    let mut again = parse_key_array(all.as_bytes()).unwrap();
    let mut v = again[2].to_value();
    v["_rid"] = json!("new-account-rid");
    again[2] = ClientEncryptionKeyResource::from_value(v).unwrap();
    let before = std::fs::read(dir.join("new.json")).unwrap();
    let report = import_keys(&target, again).await.unwrap();
    assert!(report.created.is_empty());
    assert_eq!(report.unchanged, ["a", "b", "cek1"]);
    assert_eq!(std::fs::read(dir.join("new.json")).unwrap(), before);

    // A different key under an existing id is refused, and nothing else is imported.
    let e = import_keys(&target, vec![cek("c", 3), cek("a", 9)])
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::KeyAlreadyExists { ref key_id } if key_id == "a"),
        "{e}"
    );
    assert!(target.read("c").await.unwrap().is_none());
    assert_eq!(std::fs::read(dir.join("new.json")).unwrap(), before);
    // So is an import that holds two different keys with one id.
    let mem = InMemoryKeyStore::new();
    assert!(
        import_keys(&mem, vec![cek("x", 1), cek("x", 2)])
            .await
            .is_err()
    );
    assert!(mem.list().await.unwrap().is_empty());
}

#[test]
fn parse_key_array_names_the_bad_element() {
    let text = format!(
        "[{}, {{\"id\":\"broken\",\"encryptionAlgorithm\":\"AEAD_AES_256_CBC_HMAC_SHA256\"}}]",
        cek("a", 1).to_json_pretty()
    );
    let e = parse_key_array(text.as_bytes()).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("'broken'") && s.contains("element 1"), "{s}");
}

/// A store opened by one process sees keys another process added since: `read` and
/// `list` both look at the file as it is now.
#[tokio::test]
async fn a_file_store_lists_keys_another_writer_added() {
    let dir = TempDir::new("store-other-writer");
    let path = dir.join("keys.json");
    let mine = JsonFileKeyStore::create(&path).unwrap();
    mine.create(cek("a", 1)).await.unwrap();
    let other = JsonFileKeyStore::open(&path).unwrap();
    other.create(cek("b", 2)).await.unwrap();
    assert_eq!(ids(&mine.list().await.unwrap()), ["a", "b"]);
    assert_eq!(mine.read("b").await.unwrap(), Some(cek("b", 2)));
    // And a change of mine after that is still checked against the file.
    mine.create(cek("c", 3)).await.unwrap();
    assert_eq!(ids(&other.list().await.unwrap()), ["a", "b", "c"]);
}

/// `atomic_write` follows a symbolic link (the link stays) and refuses to replace a
/// device: renaming over `/dev/null` would make it a regular file.
#[cfg(unix)]
#[test]
fn atomic_write_follows_links_and_refuses_devices() {
    use std::os::unix::fs::FileTypeExt;
    let dir = TempDir::new("store-atomic-links");
    let real = dir.join("real.json");
    let link = dir.join("link.json");
    std::fs::write(&real, "[]\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    always_encrypted::keys::atomic_write(&link, b"[1]\n").unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "[1]\n");

    let null = std::path::Path::new("/dev/null");
    let e = always_encrypted::keys::atomic_write(null, b"x").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

/// Issue 19, item 8: two writers reaching one store through a symbolic link and through
/// its target take the same lock, so neither rename drops the other's key.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_through_a_link_and_its_target_share_one_lock() {
    let dir = TempDir::new("store-link-lock");
    let real = dir.join("keys.json");
    let link = dir.join("link.json");
    JsonFileKeyStore::create(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let writers: Vec<_> = [real.clone(), link.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, path)| retrying_writer(path, w, 25))
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let keys = JsonFileKeyStore::open(&real).unwrap().list().await.unwrap();
    assert_eq!(
        keys.len(),
        50,
        "every writer's keys are there: {:?}",
        ids(&keys)
    );
    // One lock file, beside the file the link points to; the link is still a link.
    assert_eq!(dir.names(), ["keys.json", "keys.json.lock", "link.json"]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Issue 19, item 8: `read` of a key it has loaded still looks at the file, as `list`
/// does, so a key another process rewrapped (or deleted) is not served stale.
#[tokio::test]
async fn read_sees_a_key_another_writer_rewrapped_or_deleted() {
    let dir = TempDir::new("store-read-fresh");
    let path = dir.join("keys.json");
    let mine = JsonFileKeyStore::create(&path).unwrap();
    mine.create(cek("a", 1)).await.unwrap();
    mine.create(cek("b", 1)).await.unwrap();
    assert_eq!(mine.read("a").await.unwrap(), Some(cek("a", 1)));

    let other = JsonFileKeyStore::open(&path).unwrap();
    let a = other.read("a").await.unwrap().unwrap();
    let rewrapped = a.with_wrapping(a.key_wrap_metadata().clone(), vec![2; 256]);
    other.replace(&a, rewrapped.clone()).await.unwrap();
    assert_eq!(mine.read("a").await.unwrap(), Some(rewrapped));

    other.delete("b").await.unwrap();
    assert_eq!(mine.read("b").await.unwrap(), None);
    // And a change of mine after that is checked against the file as it is now.
    mine.create(cek("c", 3)).await.unwrap();
    assert_eq!(ids(&other.list().await.unwrap()), ["a", "c"]);
}

/// `read` names a file that became corrupt instead of serving what it loaded before.
#[tokio::test]
async fn read_reports_a_file_that_became_corrupt() {
    let dir = TempDir::new("store-read-corrupt");
    let path = dir.join("keys.json");
    let store = JsonFileKeyStore::create(&path).unwrap();
    store.create(cek("a", 1)).await.unwrap();
    std::fs::write(&path, "[{\"id\":").unwrap();
    let e = store.read("a").await.unwrap_err();
    assert!(
        matches!(&e, Error::CorruptKeyStore { path: p, .. } if *p == path),
        "{e}"
    );
}
