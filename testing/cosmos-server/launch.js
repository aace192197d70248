#!/usr/bin/env node
// Loopback launcher for @vercel/cosmosdb-server, used by the `cosmos` integration tests of
// always-encrypted. TEST ONLY: it has no authentication and keeps everything in memory.
//
// It listens on 127.0.0.1 (port from argv[2], default 0 = a free port) over HTTPS and
// prints one line `READY <port>` on stdout once it accepts connections. It exits when its
// stdin closes, so a test that dies never leaves a server behind.
//
// The Rust SDK (azure_data_cosmos 1.0) needs three fixes to server 1.0.1, applied by
// wrapping the server's handlers before its router loads them:
//   1. partition-key-range ids are strings (the server sends numbers);
//   2. reading a missing document answers 404 NotFound (the server throws, i.e. 500);
//   3. queries: a container-wide query (the SDK sends it per partition-key range, without
//      the cross-partition flag) runs over every document, and a single-partition query
//      (x-ms-documentdb-partitionkey header) is scoped to that partition; the server
//      instead demands the partition key in the WHERE clause. Partition filtering is done
//      on the returned documents, so it only applies to queries returning whole documents
//      (`SELECT * ...`).
"use strict";

const lib = "@vercel/cosmosdb-server/lib";
const pkranges = require(`${lib}/handler/read-partition-key-ranges`);
const readDocument = require(`${lib}/handler/read-document`);
const queryDocuments = require(`${lib}/handler/query-documents`);
const partitionHeader = require(`${lib}/utils/get-partition-from-header`);

const origPkranges = pkranges.default;
pkranges.default = async (account, req, res, params) => {
  const body = await origPkranges(account, req, res, params);
  if (body && Array.isArray(body.PartitionKeyRanges)) {
    body.PartitionKeyRanges = body.PartitionKeyRanges.map(r => ({
      ...r,
      id: String(r.id),
      parents: (r.parents || []).map(String)
    }));
  }
  return body;
};

function notFound(res) {
  res.statusCode = 404;
  return {
    code: "NotFound",
    message: "Entity with the specified id does not exist in the system."
  };
}

function headerPartitionValues(req) {
  const raw = partitionHeader.default(req);
  if (!raw || raw === "[{}]") return undefined;
  try {
    const parsed = JSON.parse(raw);
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch (err) {
    return undefined;
  }
}

function valueAt(doc, path) {
  let cur = doc;
  for (const seg of path.split("/").filter(s => s.length)) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = cur[seg];
  }
  return cur;
}

const origRead = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const props = collection.read();
  if (!props) return notFound(res);
  const values = headerPartitionValues(req);
  const paths = ((props.partitionKey || {}).paths || []).filter(p => p !== "/_partitionKey");
  const found = collection.documents
    .read({})
    .result.filter(d => d.id === params.docId)
    .some(d => !values || paths.every((p, i) => JSON.stringify(valueAt(d, p)) === JSON.stringify(values[i])));
  if (!found) return notFound(res);
  return origRead(account, req, res, params);
};

const origQuery = queryDocuments.default;
queryDocuments.default = async (account, req, res, params) => {
  const values = headerPartitionValues(req);
  const cross = String(req.headers["x-ms-documentdb-query-enablecrosspartition"]).toLowerCase() === "true";
  // Every query runs on the server's single partition; the SDK fans a container-wide
  // query out by partition-key range without the cross-partition flag.
  req.headers["x-ms-documentdb-query-enablecrosspartition"] = "true";
  if (!values || cross) return origQuery(account, req, res, params);
  const body = await origQuery(account, req, res, params);
  const props = account.database(params.dbId).collection(params.collId).read() || {};
  const paths = ((props.partitionKey || {}).paths || []).filter(p => p !== "/_partitionKey");
  if (body && Array.isArray(body.Documents) && paths.length) {
    body.Documents = body.Documents.filter(d =>
      paths.every((p, i) => JSON.stringify(valueAt(d, p)) === JSON.stringify(values[i]))
    );
    body._count = body.Documents.length;
    res.setHeader("x-ms-item-count", String(body._count));
  }
  return body;
};

const { createHttpsServer } = require(lib);
const port = parseInt(process.argv[2] || "0", 10);
const server = createHttpsServer();
// With COSMOS_SERVER_HEADER_LOG set, appends one JSON line per request: method, path and
// the client-encryption headers (so tests can check what the client sent).
const headerLog = process.env.COSMOS_SERVER_HEADER_LOG;
if (headerLog) {
  const fs = require("fs");
  server.prependListener("request", req => {
    const line = JSON.stringify({
      method: req.method,
      path: req.url,
      isClientEncrypted: req.headers["x-ms-cosmos-is-client-encrypted"] || null,
      intendedCollectionRid: req.headers["x-ms-cosmos-intended-collection-rid"] || null
    });
    fs.appendFileSync(headerLog, `${line}\n`);
  });
}
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
