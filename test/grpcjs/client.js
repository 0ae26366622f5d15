#!/usr/bin/env node
'use strict';
/*
 * A proxyless grpc-js client (@grpc/grpc-js with @grpc/grpc-js-xds) for
 * Bulwark's end-to-end tests, speaking the same line protocol as
 * test/ccore/client.py.
 *
 * It reads its xDS bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG (grpc-js-xds
 * prefers GRPC_XDS_BOOTSTRAP, a file, when that is set), and is driven by one
 * JSON command per line on stdin. Each result is one JSON line on stdout.
 * Calls run concurrently: a "call" command returns at once and its result is
 * printed when the call ends, tagged with the command's id.
 *
 * Commands:
 *   {"op": "call", "id": 1, "target": "payments", "timeout": 3.0,
 *    "payload": "x", "metadata": {"x-chaos": "on"}}
 *       -> {"id": 1, "code": 0, "name": "OK", "hostname": "good1",
 *           "details": "", "latency": 0.0042}
 *   {"op": "ping", "id": 2}  -> {"id": 2, "pong": true}
 *   {"op": "quit"}           -> exits (so does EOF on stdin)
 *
 * It calls grpc.testing.TestService/UnaryCall with hand-encoded protobuf
 * (SimpleRequest.payload.body) and decodes SimpleResponse.hostname (field 6),
 * so it needs nothing but the two packages in package.json.
 */

const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');

const METHOD = '/grpc.testing.TestService/UnaryCall';

function emit(obj) {
  const sorted = {};
  for (const k of Object.keys(obj).sort()) sorted[k] = obj[k];
  process.stdout.write(JSON.stringify(sorted) + '\n');
}

function varint(n) {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) {
      out.push(b | 0x80);
    } else {
      out.push(b);
      return Buffer.from(out);
    }
  }
}

function fieldBytes(number, data) {
  return Buffer.concat([varint((number << 3) | 2), varint(data.length), data]);
}

// SimpleRequest{payload: Payload{body: body}}: field 3, inside it field 2.
function encodeSimpleRequest(body) {
  return fieldBytes(3, fieldBytes(2, body));
}

function readVarint(buf, i) {
  let n = 0;
  let mul = 1;
  for (;;) {
    if (i >= buf.length) throw new Error('truncated varint');
    const b = buf[i++];
    n += (b & 0x7f) * mul;
    if (!(b & 0x80)) return [n, i];
    mul *= 128;
  }
}

// SimpleResponse.hostname (field 6, a string), skipping the rest.
function decodeHostname(buf) {
  let i = 0;
  let hostname = '';
  while (i < buf.length) {
    let key;
    [key, i] = readVarint(buf, i);
    const number = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      [, i] = readVarint(buf, i);
    } else if (wire === 1) {
      i += 8;
    } else if (wire === 2) {
      let n;
      [n, i] = readVarint(buf, i);
      if (number === 6) hostname = buf.subarray(i, i + n).toString('utf8');
      i += n;
    } else if (wire === 5) {
      i += 4;
    } else {
      throw new Error('unsupported wire type ' + wire);
    }
  }
  return hostname;
}

const clients = new Map(); // target -> grpc.Client on xds:///target

function clientFor(target) {
  let c = clients.get(target);
  if (!c) {
    c = new grpc.Client('xds:///' + target, grpc.credentials.createInsecure());
    clients.set(target, c);
  }
  return c;
}

function call(cmd) {
  const id = cmd.id;
  let start;
  try {
    const client = clientFor(cmd.target);
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(cmd.metadata || {})) md.set(k, String(v));
    const timeout = Number(cmd.timeout ?? 3.0);
    const body = Buffer.from(cmd.payload ?? '', 'utf8');
    start = process.hrtime.bigint();
    client.makeUnaryRequest(
      METHOD,
      encodeSimpleRequest,
      decodeHostname,
      body,
      md,
      { deadline: new Date(Date.now() + timeout * 1000) },
      (err, host) => {
        const latency = Number(process.hrtime.bigint() - start) / 1e9;
        if (!err) {
          emit({ id, code: 0, name: 'OK', hostname: host, details: '', latency });
        } else if (typeof err.code === 'number') {
          emit({ id, code: err.code, name: grpc.status[err.code] || String(err.code),
            hostname: '', details: err.details || '', latency });
        } else {
          emit({ id, code: -1, name: 'CLIENT_ERROR', hostname: '', details: String(err), latency });
        }
      });
  } catch (e) { // a bad command is a result, not a crash
    emit({ id, code: -1, name: 'CLIENT_ERROR', details: String(e) });
  }
}

function main() {
  xds.register();
  const version = require('@grpc/grpc-js/package.json').version;
  const xdsVersion = require('@grpc/grpc-js-xds/package.json').version;
  emit({ ready: true, 'grpc-js': version, 'grpc-js-xds': xdsVersion });
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  let quitting = false;
  const quit = () => {
    if (quitting) return;
    quitting = true;
    rl.close();
    for (const c of clients.values()) c.close();
    // Channels close their xDS streams asynchronously; do not wait on them.
    process.stdout.write('', () => process.exit(0));
  };
  rl.on('line', (line) => {
    line = line.trim();
    if (!line || quitting) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      emit({ id: null, code: -1, name: 'CLIENT_ERROR', details: 'bad command: ' + e.message });
      return;
    }
    switch (cmd.op) {
      case 'call':
        call(cmd);
        break;
      case 'ping':
        emit({ id: cmd.id, pong: true });
        break;
      case 'quit':
        quit();
        break;
      default:
        emit({ id: cmd.id, code: -1, name: 'CLIENT_ERROR', details: 'unknown op ' + JSON.stringify(cmd.op) });
    }
  });
  rl.on('close', quit);
}

main();
