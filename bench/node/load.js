// One load process for bench/nodeload.py: unary gRPC calls over mTLS with @grpc/grpc-js.
//
// Why Node: a Python generator spends about 190-250 us of CPU per call here, which on a
// two-core machine takes the core the server needs; grpc-js costs a fraction of that
// (bench/nodeload.py measures it in every run). Requests and responses are raw bytes
// (identity serialisers), as in bench/load.py, so every server costs the client the same.
//
// usage: node load.js CONFIG.json     (written by bench/nodeload.py)
// Prints "ready" once every connection is up, reads "T_START T_MEAS T_END" (CLOCK_MONOTONIC
// nanoseconds, the clock Python's time.monotonic reads) from stdin, runs, prints one JSON line.
'use strict';

const fs = require('fs');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');

const CALL_TIMEOUT_MS = 10000;
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function readRequests(path) {
  const raw = fs.readFileSync(path);
  const out = [];
  for (let at = 0; at < raw.length;) {
    const n = raw.readUInt32BE(at);
    out.push(raw.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

const requests = readRequests(cfg.requests);
const creds = grpc.credentials.createSsl(
  fs.readFileSync(cfg.ca), fs.readFileSync(cfg.key), fs.readFileSync(cfg.cert));
// A local subchannel pool per client: each client is a connection of its own, so the
// kernel can spread them over the processes sharing the port (SO_REUSEPORT).
const clients = [];
for (let i = 0; i < cfg.connections; i++) {
  clients.push(new grpc.Client(cfg.target, creds, {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  }));
}
const identity = (b) => b;

function now() { return process.hrtime.bigint(); }

function ready() {
  let pending = clients.length;
  const deadline = new Date(Date.now() + 30000);
  for (const c of clients) {
    c.waitForReady(deadline, (err) => {
      if (err) { console.log(JSON.stringify({ failed: String(err.message || err) })); process.exit(1); }
      if (--pending === 0) { console.log('ready'); }
    });
  }
}

function run(tStart, tMeas, tEnd) {
  const lat = [];
  const errors = {};
  let errSample = '';
  let sample = null;
  let next = cfg.offset;
  let outstanding = 0;
  let issued = 0;

  function launch() {
    const i = next++;
    const client = clients[i % clients.length];
    const t0 = now();
    issued++;
    outstanding++;
    client.makeUnaryRequest(cfg.method, identity, identity, requests[i % requests.length], new grpc.Metadata(),
      { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (err, value) => {
        const t1 = now();
        outstanding--;
        if (t1 >= tMeas && t1 < tEnd) {
          if (err) {
            const code = grpc.status[err.code] || String(err.code);
            errors[code] = (errors[code] || 0) + 1;
          } else {
            lat.push(Number(t1 - t0) / 1e9);
          }
        }
        if (err && !errSample) { errSample = `${grpc.status[err.code]}: ${err.details}`; }
        if (!err && sample === null) { sample = value; }
        if (t1 < tEnd && issued < cfg.max_calls) {
          launch();
        } else if (outstanding === 0) {
          finish();
        }
      });
  }

  function finish() {
    process.stdout.write(JSON.stringify({
      lat, errors, err_sample: errSample, sample: sample ? Buffer.from(sample).toString('base64') : '',
      capped: issued >= cfg.max_calls,
    }) + '\n', () => process.exit(0));
  }

  const wait = Number(tStart - now()) / 1e6;
  setTimeout(() => { for (let k = 0; k < cfg.inflight; k++) launch(); }, Math.max(0, wait));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [a, b, c] = line.trim().split(/\s+/).map((x) => BigInt(x));
  rl.close();
  run(a, b, c);
});
ready();
