#!/usr/bin/env python3
"""An independent implementation of the AE1 format (src/cipher/modern.rs), written from
its specification with the Python `cryptography` package, that produces the known-answer
vectors in tests/vectors/ae1.json.

Usage: python3 scripts/ae1_reference.py > tests/vectors/ae1.json

Randomized vectors use a fixed nonce here so the file is reproducible; the Rust test only
decrypts them.

"lengthBoundary" holds vectors for key ids and paths of 65,535 bytes, the longest the
16-bit length field of the binding holds, and cases of 65,536 bytes marked "refused" (the
binding would not be injective, so neither implementation encrypts or decrypts them). The
long fields are written as {"prefix", "fill", "bytes"}: prefix, then fill up to bytes.

It also writes whole-document vectors ("documents"): an extended-mode policy whose paths use
AE1_AES_256_GCM_HKDF_SHA256, a plaintext document and its encrypted form, produced by the
document rules of the crate (every primitive leaf under a selected path is encrypted with
the subkeys of the *policy* path; objects and arrays keep their shape; null stays null;
/id uses the URL-safe base64 alphabet; numbers: an int64 is a Long, anything else a Double;
booleans are 8-byte little-endian 1 or 0).
"""
import base64
import hashlib
import hmac
import json
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

VERSION = 0xA1
ALG_GCM = 0x01
ALG_GCM_SIV = 0x02
SALT = b"always-encrypted/AE1"


def lp(b: bytes) -> bytes:
    # A 16-bit length: a key id or path of 65536 bytes or more cannot be bound (struct.error).
    return struct.pack(">H", len(b)) + b


def binding(key_id: str, path: str) -> bytes:
    return lp(key_id.encode()) + lp(path.encode())


def subkey(dek: bytes, label: bytes, key_id: str, path: str) -> bytes:
    prk = hmac.new(SALT, dek, hashlib.sha256).digest()  # HKDF-Extract
    info = label + b"\x00" + binding(key_id, path)
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def encrypt(dek, key_id, path, mode, marker, pt, nonce=None):
    if mode == "Deterministic":
        alg = ALG_GCM_SIV
        k = subkey(dek, b"AE1 AES-256-GCM-SIV key", key_id, path)
        nk = subkey(dek, b"AE1 synthetic nonce key", key_id, path)
        nonce = hmac.new(nk, bytes([marker]) + pt, hashlib.sha256).digest()[:12]
        aead = AESGCMSIV(k)
    else:
        alg = ALG_GCM
        k = subkey(dek, b"AE1 AES-256-GCM key", key_id, path)
        aead = AESGCM(k)
    header = bytes([VERSION, alg, marker])
    aad = b"AE1" + header + binding(key_id, path)
    ct_and_tag = aead.encrypt(nonce, pt, aad)
    return header + nonce + ct_and_tag


def b64(stored: bytes, url_safe: bool) -> str:
    return (base64.urlsafe_b64encode if url_safe else base64.b64encode)(stored).decode()


class Nonces:
    """Fixed nonces for randomized leaves, so the file is reproducible."""

    def __init__(self, seed: int):
        self.n = seed

    def next(self) -> bytes:
        self.n += 1
        return hashlib.sha256(b"ae1 vector nonce" + bytes([self.n & 0xFF, self.n >> 8])).digest()[:12]


def leaf_plaintext(v):
    if isinstance(v, bool):
        return 2, struct.pack("<q", 1 if v else 0)
    if isinstance(v, int):
        return 4, struct.pack("<q", v)  # the vectors only hold int64s
    if isinstance(v, float):
        return 3, struct.pack("<d", v)
    if isinstance(v, str):
        return 5, v.encode()
    raise TypeError(type(v))


def encrypt_leaves(v, dek, key_id, path, mode, url_safe, nonces):
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: encrypt_leaves(x, dek, key_id, path, mode, url_safe, nonces) for k, x in v.items()}
    if isinstance(v, list):
        return [encrypt_leaves(x, dek, key_id, path, mode, url_safe, nonces) for x in v]
    marker, pt = leaf_plaintext(v)
    nonce = nonces.next() if mode == "Randomized" else None
    return b64(encrypt(dek, key_id, path, mode, marker, pt, nonce), url_safe)


def select(v, segments, entry, deks, nonces):
    if not segments:
        return encrypt_leaves(v, deks[entry["clientEncryptionKeyId"]], entry["clientEncryptionKeyId"],
                              entry["path"], entry["encryptionType"], entry["path"] == "/id", nonces)
    seg, rest = segments[0], segments[1:]
    if seg == "[]":
        return [select(x, rest, entry, deks, nonces) for x in v] if isinstance(v, list) else v
    if isinstance(v, dict) and seg in v:
        v = dict(v)
        v[seg] = select(v[seg], rest, entry, deks, nonces)
    return v


def encrypt_document(doc, policy, deks, nonces):
    for entry in policy["includedPaths"]:
        doc = select(doc, entry["path"].split("/")[1:], entry, deks, nonces)
    return doc


def ae1_entry(path, key_id, mode):
    return {"path": path, "clientEncryptionKeyId": key_id, "encryptionType": mode,
            "encryptionAlgorithm": "AE1_AES_256_GCM_HKDF_SHA256"}


def document_vectors():
    deks = {
        "cek1": bytes.fromhex("4d7dd4e7867e93b767ace005a2af32a2fc5dc4bd669a117beca2778a15ee8a45"),
        "cek2": bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"),
    }
    cases = [
        ("top-level, deterministic, every type",
         [ae1_entry("/id", "cek1", "Deterministic"), ae1_entry("/ssn", "cek1", "Deterministic"),
          ae1_entry("/age", "cek2", "Deterministic"), ae1_entry("/score", "cek2", "Deterministic"),
          ae1_entry("/active", "cek1", "Deterministic"), ae1_entry("/nothing", "cek1", "Deterministic")],
         {"id": "doc-1", "ssn": "123-45-6789", "age": 42, "score": 3.25, "active": True,
          "nothing": None, "name": "Ada", "absent-from-policy": [1, 2]}),
        ("an encrypted object and array: leaves bound to the policy path",
         [ae1_entry("/address", "cek1", "Deterministic"), ae1_entry("/tags", "cek2", "Deterministic")],
         {"id": "doc-2", "address": {"street": "1 Main St", "zip": 98052, "geo": [47.6, -122.3],
                                     "unit": None, "empty": {}},
          "tags": ["a", "b", "a", True, -7], "plain": {"x": 1}}),
        ("extended paths: nested and array elements",
         [ae1_entry("/patient/ssn", "cek1", "Deterministic"),
          ae1_entry("/cards/[]/number", "cek2", "Deterministic"),
          ae1_entry("/cards/[]/cvv", "cek2", "Deterministic")],
         {"id": "doc-3", "patient": {"ssn": "987-65-4321", "name": "Bob"},
          "cards": [{"number": "4111111111111111", "cvv": 123, "brand": "visa"},
                    {"number": "5500000000000004", "cvv": 456}, {"brand": "none"}]}),
        ("randomized paths (fixed nonces here; the Rust test only decrypts)",
         [ae1_entry("/notes", "cek1", "Randomized"), ae1_entry("/history", "cek2", "Randomized"),
          ae1_entry("/ssn", "cek1", "Deterministic")],
         {"id": "doc-4", "notes": "zoë wrote this ☕", "history": [{"at": 1700000000, "ok": False}],
          "ssn": "123-45-6789"}),
    ]
    out = []
    nonces = Nonces(0)
    for name, paths, doc in cases:
        policy = {"includedPaths": paths, "policyFormatVersion": 2}
        out.append({
            "name": name,
            "policy": policy,
            "plaintext": doc,
            "encrypted": encrypt_document(doc, policy, deks, nonces),
        })
    return {k: v.hex() for k, v in deks.items()}, out


def field(spec) -> str:
    """A long key id or path, written compactly in the file: prefix, then fill to `bytes`."""
    return spec["prefix"] + spec["fill"] * (spec["bytes"] - len(spec["prefix"]))


def length_boundary_vectors():
    """Key ids and paths of 65,535 bytes (the longest the 16-bit length field holds) and
    of 65,536 bytes (refused: the binding would not be injective)."""
    dek = bytes.fromhex("4d7dd4e7867e93b767ace005a2af32a2fc5dc4bd669a117beca2778a15ee8a45")
    short_id = {"prefix": "cek1", "fill": "", "bytes": 4}
    short_path = {"prefix": "/ssn", "fill": "", "bytes": 4}
    cases = [
        ({"prefix": "", "fill": "k", "bytes": 65535}, short_path, "Deterministic"),
        (short_id, {"prefix": "/", "fill": "p", "bytes": 65535}, "Deterministic"),
        ({"prefix": "", "fill": "k", "bytes": 65535}, {"prefix": "/", "fill": "p", "bytes": 65535},
         "Randomized"),
        ({"prefix": "", "fill": "k", "bytes": 65536}, short_path, "Deterministic"),
        (short_id, {"prefix": "/", "fill": "p", "bytes": 65536}, "Randomized"),
    ]
    out = []
    for i, (key_id, path, mode) in enumerate(cases):
        v = {"keyId": key_id, "path": path, "encryptionType": mode, "typeMarker": 5,
             "plaintextHex": b"v".hex()}
        try:
            nonce = bytes([0xB0 + i]) * 12 if mode == "Randomized" else None
            v["stored"] = base64.b64encode(
                encrypt(dek, field(key_id), field(path), mode, 5, b"v", nonce)).decode()
        except struct.error:
            v["refused"] = True
        out.append(v)
    return out


def main():
    dek = bytes.fromhex("4d7dd4e7867e93b767ace005a2af32a2fc5dc4bd669a117beca2778a15ee8a45")
    cases = [
        ("cek1", "/ssn", "Deterministic", 5, b"123-45-6789"),
        ("cek1", "/ssn", "Deterministic", 5, b""),
        ("cek1", "/email", "Deterministic", 5, "zoë@example.com".encode()),
        ("cek1", "/n", "Deterministic", 4, struct.pack("<q", 42)),
        ("cek1", "/n", "Deterministic", 3, struct.pack("<d", 3.25)),
        ("cek1", "/b", "Deterministic", 2, struct.pack("<q", 1)),
        ("cek2", "/ssn", "Deterministic", 5, b"123-45-6789"),
        ("cek1", "/notes", "Randomized", 5, b"a longer note that spans more than one AES block ...."),
        ("cek1", "/address/zip", "Randomized", 4, struct.pack("<q", 98052)),
        ("cek1", "/flag", "Randomized", 2, struct.pack("<q", 0)),
    ]
    vectors = []
    for i, (key_id, path, mode, marker, pt) in enumerate(cases):
        nonce = bytes([i]) * 12 if mode == "Randomized" else None
        stored = encrypt(dek, key_id, path, mode, marker, pt, nonce)
        vectors.append({
            "keyId": key_id,
            "path": path,
            "encryptionType": mode,
            "typeMarker": marker,
            "plaintextHex": pt.hex(),
            "stored": base64.b64encode(stored).decode(),
        })
    document_keys, documents = document_vectors()
    print(json.dumps({
        "_comment": "AE1 known-answer vectors from scripts/ae1_reference.py (Python cryptography, independent of the Rust code)",
        "dekHex": dek.hex(),
        "vectors": vectors,
        "documentKeys": document_keys,
        "documents": documents,
        "lengthBoundary": length_boundary_vectors(),
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
