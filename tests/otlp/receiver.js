// SPDX-License-Identifier: MIT
// receiver.js -- an OTLP/HTTP receiver for tests/otel.py: every body is
// decoded with the ExportTraceServiceRequest type that the OpenTelemetry
// JavaScript project generates from opentelemetry-proto (protobufjs), not
// with this suite's own idea of the format.
//
// Usage: node receiver.js NODE_MODULES_DIR
// Prints "listening PORT" once it listens on 127.0.0.1 (port 0).
//   POST /v1/traces (any path but /control and /received): one export.
//   POST /control {"mode": "ok"|"sink"|"status"|"slow"|"never", "status": 503,
//     "retry_after": "1", "times": N, "delay_ms": N}: how the next
//     exports are answered ("status" for N of them, then ok again).
//     ("sink": 200 at once, nothing decoded or kept: for the bench)
//   GET /received: every export so far, decoded, as a JSON array.
'use strict';

const http = require('http');
const path = require('path');

const modules = path.resolve(process.argv[2]);
const root = require(path.join(modules, '@opentelemetry/otlp-transformer/' +
                                        'build/src/generated/root.js'));
const Request =
    root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

let mode = {mode: 'ok'};
const received = [];
const held = []; // "never": answers never sent, closed at exit

const hexToB64 = (h) => Buffer.from(h, 'hex').toString('base64');
const b64ToHex = (b) => Buffer.from(b, 'base64').toString('hex');
const ID = /^[0-9a-f]*$/;

// The OTLP JSON mapping's differences from proto3 JSON: trace and span ids
// are hex, not base64. Anything else goes to protobufjs as it came.
function toProto3(doc) {
  for (const rs of doc.resourceSpans || [])
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || [])
        for (const k of ['traceId', 'spanId', 'parentSpanId'])
          if (k in s) {
            if (typeof s[k] !== 'string' || !ID.test(s[k]) ||
                s[k].length % 2)
              throw new Error(`${k} is not hex: ${s[k]}`);
            s[k] = hexToB64(s[k]);
          }
  return doc;
}

function fromProto3(doc) {
  for (const rs of doc.resourceSpans || [])
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || [])
        for (const k of ['traceId', 'spanId', 'parentSpanId'])
          if (k in s) s[k] = b64ToHex(s[k]);
  return doc;
}

// Keys in a that b lacks or holds another value for: a field protobufjs
// did not take (a misspelt name, a wrong type) is lost in its round trip.
function differences(a, b, where, out) {
  if (a !== null && typeof a === 'object') {
    if (b === null || typeof b !== 'object') {
      out.push(`${where}: ${JSON.stringify(a)} became ${JSON.stringify(b)}`);
      return out;
    }
    for (const k of Object.keys(a))
      differences(a[k], b[k], `${where}.${k}`, out);
    return out;
  }
  if (String(a) !== String(b))
    out.push(`${where}: ${JSON.stringify(a)} became ${JSON.stringify(b)}`);
  return out;
}

// The body through protobufjs: JSON -> message -> protobuf bytes ->
// message -> JSON. Throws with why when it does not survive whole.
function decode(text) {
  const sent = JSON.parse(text);
  const msg = Request.fromObject(toProto3(JSON.parse(text)));
  const bytes = Request.encode(msg).finish();
  const back = fromProto3(Request.toObject(
      Request.decode(bytes),
      {longs: String, enums: Number, bytes: String, defaults: false}));
  const diff = differences(sent, back, 'body', []);
  if (diff.length > 0) throw new Error(diff.slice(0, 5).join('; '));
  return back;
}

function answer(res, status, body, headers) {
  res.writeHead(status, Object.assign(
      {'Content-Type': 'application/json'}, headers || {}));
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    if (req.url === '/control') {
      mode = JSON.parse(text);
      answer(res, 200, '{}');
      return;
    }
    if (req.url === '/received') {
      answer(res, 200, JSON.stringify(received));
      return;
    }
    if (mode.mode === 'sink') {
      answer(res, 200, '{}');
      return;
    }
    const entry = {
      at_ms: Date.now(),
      path: req.url,
      method: req.method,
      content_type: req.headers['content-type'] || null,
      headers: req.headers,
      status: 200,
      error: null,
      body: null,
    };
    try {
      entry.body = decode(text);
    } catch (e) {
      entry.error = String(e.message || e);
      entry.status = 400;
    }
    received.push(entry);
    if (entry.error !== null) {
      answer(res, 400, JSON.stringify({message: entry.error}));
      return;
    }
    const m = mode;
    if (m.mode === 'status' && (m.times === undefined || m.times > 0)) {
      if (m.times !== undefined) m.times--;
      entry.status = m.status;
      answer(res, m.status, '{}',
             m.retry_after !== undefined ? {'Retry-After': m.retry_after}
                                         : {});
      return;
    }
    if (m.mode === 'never') {
      entry.status = 0;
      held.push(res);
      return;
    }
    if (m.mode === 'slow') {
      setTimeout(() => answer(res, 200, '{}'), m.delay_ms || 1000);
      return;
    }
    answer(res, 200, '{}');
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
