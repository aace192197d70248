#!/usr/bin/env python3
"""An independent implementation of the AE1 format (src/cipher/modern.rs), written from
its specification with the Python `cryptography` package, that produces the known-answer
vectors in tests/vectors/ae1.json.

Usage: python3 scripts/ae1_reference.py > tests/vectors/ae1.json

Randomized vectors use a fixed nonce here so the file is reproducible; the Rust test only
decrypts them.
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
    print(json.dumps({
        "_comment": "AE1 known-answer vectors from scripts/ae1_reference.py (Python cryptography, independent of the Rust code)",
        "dekHex": dek.hex(),
        "vectors": vectors,
    }, indent=2))


if __name__ == "__main__":
    main()
