// Node `ws` client peer for the lua-ws interop tests.
//   node spec/peers/node_client.js ws://127.0.0.1:PORT/ws [LIMIT]
// Talks to an echo server (max message LIMIT bytes, default 16 MiB) and
// prints one JSON line per check:
//   {"test":"echo","kind":"text"|"binary","size":N,"got_kind":...,"got_size":N,"sent_sha":...,"got_sha":...}
//   {"test":"fragmented","kind":...,"got_kind":...,"sent_sha":...,"got_sha":...}
//   {"test":"ping","sent":"...","pong":"..."}
//   {"test":"close","sent_code":C,"sent_reason":R,"code":N,"reason":"..."}
//   {"test":"too_big","size":N,"code":N,"reason":"..."}
//   {"test":"error","error":"..."} if anything failed
'use strict';
const path = require('path');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '../interop/node_modules/ws'));
const { emit, sha, utf8Text } = require('./peer_util');

const url = process.argv[2];
const LIMIT = Number(process.argv[3] || 16 * 1024 * 1024);
const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

// A connection with a queue of incoming messages and events.
function open(u) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { maxPayload: 64 * 1024 * 1024, perMessageDeflate: false, handshakeTimeout: 10000 });
    const inbox = [];
    let waiting = null;
    ws.on('message', (data, isBinary) => {
      inbox.push({ data, isBinary });
      if (waiting) { const w = waiting; waiting = null; w(); }
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.next = () => new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('timeout waiting for a message')), 60000);
      const take = () => { clearTimeout(t); res(inbox.shift()); };
      if (inbox.length) take(); else waiting = take;
    });
    ws.on('open', () => resolve(ws));
    ws.on('error', (err) => { if (ws.readyState === WebSocket.CONNECTING) reject(err); });
  });
}

const withTimeout = (p, ms, what) => Promise.race([p,
  new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms).unref())]);

async function main() {
  let ws = await open(url);
  for (const kind of ['text', 'binary']) {
    for (const n of SIZES) {
      const data = kind === 'text' ? utf8Text(n) : crypto.randomBytes(n);
      ws.send(data, { binary: kind === 'binary' });
      const got = await ws.next();
      emit({ test: 'echo', kind, size: n, got_kind: got.isBinary ? 'binary' : 'text', got_size: got.data.length,
        sent_sha: sha(kind === 'text' ? Buffer.from(data) : data), got_sha: sha(got.data) });
    }
  }

  // fragmented: the text one splits a 3-byte character across two frames
  const frags = {
    text: [Buffer.from('fragmented '), Buffer.from('€').subarray(0, 1), Buffer.from('€').subarray(1),
      Buffer.alloc(0), Buffer.from(' wörld 😀')],
    binary: [crypto.randomBytes(1000), crypto.randomBytes(70000), Buffer.alloc(0), crypto.randomBytes(5)],
  };
  for (const kind of ['text', 'binary']) {
    const chunks = frags[kind];
    chunks.forEach((c, i) => ws.send(c, { binary: kind === 'binary', fin: i === chunks.length - 1 }));
    const got = await ws.next();
    emit({ test: 'fragmented', kind, got_kind: got.isBinary ? 'binary' : 'text',
      sent_sha: sha(Buffer.concat(chunks)), got_sha: sha(got.data) });
  }

  const pong = withTimeout(new Promise((res) => ws.once('pong', (d) => res(d.toString()))), 10000, 'pong');
  ws.ping('node-ping ✓');
  emit({ test: 'ping', sent: 'node-ping ✓', pong: await pong });

  ws.close(4001, 'bye from node');
  const c = await withTimeout(ws.closed, 10000, 'close');
  emit({ test: 'close', sent_code: 4001, sent_reason: 'bye from node', code: c.code, reason: c.reason });

  // one byte above the server's limit: the server must close with 1009
  ws = await open(url);
  ws.on('error', () => {});   // a reset after the close frame is not our concern here
  ws.send(crypto.randomBytes(LIMIT + 1));
  const t = await withTimeout(ws.closed, 20000, 'close after too big');
  emit({ test: 'too_big', size: LIMIT + 1, code: t.code, reason: t.reason });
}

main().then(() => process.exit(0), (err) => { emit({ test: 'error', error: String(err && err.stack) }); process.exit(1); });
