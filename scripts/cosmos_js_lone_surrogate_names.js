#!/usr/bin/env node
// Known-answer vectors from the official Cosmos DB JavaScript SDK (@azure/cosmos 4.10.1):
// documents whose property names hold lone UTF-16 surrogate escapes (issue 23, item 1),
// encrypted and decrypted by the SDK's own EncryptionProcessor, offline.
//
//   mkdir /tmp/sdk && (cd /tmp/sdk && npm install @azure/cosmos@4.10.1)
//   NODE_PATH=/tmp/sdk/node_modules node scripts/cosmos_js_lone_surrogate_names.js \
//       > tests/vectors/cosmos-js-4.10.1-lone-surrogate-names.json
//
// Keys, policy and key-encryption key are those of ../shared/testvectors/cosmos-js-4.10.1
// (policy.json: /s /n /d /b /o /a, all Deterministic under cek1). Key Vault is replaced by
// kek.pem (RSA-OAEP with SHA-1, as Key Vault's RSA-OAEP); the caches are filled directly
// instead of read from a Cosmos account; everything that encrypts is the SDK's code.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const VECTORS = path.join(__dirname, "..", "..", "shared", "testvectors", "cosmos-js-4.10.1");
// The package's "exports" hide its internals; load them by file.
const sdkDir = path.dirname(require.resolve("@azure/cosmos"));
const sdk = (rel) => require(path.join(sdkDir, rel));
const { EncryptionManager } = sdk("encryption/EncryptionManager.js");
const { EncryptionProcessor } = sdk("encryption/EncryptionProcessor.js");
const version = require(path.join(sdkDir, "..", "..", "package.json")).version;
if (version !== "4.10.1") {
  throw new Error(`expected @azure/cosmos 4.10.1, found ${version}`);
}

const kek = crypto.createPrivateKey(fs.readFileSync(path.join(VECTORS, "kek.pem")));
const resolver = {
  encryptionKeyResolverName: "AZURE_KEY_VAULT",
  async wrapKey() {
    throw new Error("not used");
  },
  async unwrapKey(_url, algorithm, wrapped) {
    if (algorithm !== "RSA-OAEP") throw new Error(`unexpected ${algorithm}`);
    return crypto.privateDecrypt(
      { key: kek, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" },
      Buffer.from(wrapped),
    );
  },
};

async function main() {
  const policy = JSON.parse(fs.readFileSync(path.join(VECTORS, "policy.json"), "utf8"));
  const cek = JSON.parse(fs.readFileSync(path.join(VECTORS, "cek1.json"), "utf8"));
  const manager = new EncryptionManager(resolver, 0);
  const database = { id: "db", _rid: "dbRid" };
  await manager.encryptionSettingsCache.create("dbRid/collRid", "collRid", ["/pk"], policy);
  manager.clientEncryptionKeyPropertiesCache.set("dbRid/cek1", {
    id: cek.id,
    encryptionAlgorithm: cek.encryptionAlgorithm,
    wrappedDataEncryptionKey: new Uint8Array(Buffer.from(cek.wrappedDataEncryptionKey, "base64")),
    encryptionKeyWrapMetadata: cek.keyWrapMetadata,
    etag: "etag",
  });
  const processor = new EncryptionProcessor("coll", "collRid", database, {}, manager);

  // Written as JSON text: JSON.parse keeps a lone surrogate in a JavaScript string and
  // JSON.stringify writes it back as a lowercase \u escape.
  const docs = [
    String.raw`{"id":"1","a":"x","k\udb5e":"value"}`,
    String.raw`{"id":"2","\ud800":1,"s":"plain","a":{"k\udc00":"y","n\udfff":[1,true,null]},"x\udbff\udbff":{"a":"kept","\ude00":"\udead"}}`,
    String.raw`{"pk":"p","\udb5e":{"s":"not selected"},"b":false,"o":{"\ud83d\ude00\ud800":2.5}}`,
  ];
  const cases = [];
  for (const text of docs) {
    const plain = JSON.stringify(JSON.parse(text));
    const { body: encBody } = await processor.encrypt(JSON.parse(plain));
    const enc = JSON.stringify(encBody);
    const { body: decBody } = await processor.decrypt(JSON.parse(enc));
    cases.push({ plain, enc, dec: JSON.stringify(decBody) });
  }
  const out = {
    description:
      "Documents with lone UTF-16 surrogate escapes in property names, encrypted and " +
      "decrypted by @azure/cosmos 4.10.1 (scripts/cosmos_js_lone_surrogate_names.js); " +
      "keys and policy of ../shared/testvectors/cosmos-js-4.10.1.",
    sdk: `@azure/cosmos ${version}`,
    node: process.version,
    policy: "policy.json",
    ceks: ["cek1.json"],
    cases,
  };
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
