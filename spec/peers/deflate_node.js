// Node `ws` peer for the permessage-deflate tests (spec/deflate_spec.lua).
//
//   node spec/peers/deflate_node.js client URL CONFIG_JSON
//     CONFIG_JSON: { "pmd": <perMessageDeflate options>, "sizes": [N, ...],
//                    "fragmented": true|false }
//     Connects with perMessageDeflate, then prints one JSON line per check:
//       {"test":"open","header":<Sec-WebSocket-Extensions answer>,"extensions":...,"params":{...}}
//       {"test":"echo","kind":"text"|"binary","data":"compressible"|"random","size":N,
//        "got_kind":...,"got_size":N,"same":true|false,"compressed_frames":N,"wire":N}
//         compressed_frames: frames with RSV1 the echo arrived in;
//         wire: bytes the socket read for the echo (headers included)
//       {"test":"fragmented","kind":...,"got_kind":...,"same":...,"compressed_frames":N}
//       {"test":"close","code":N}
//       {"test":"error","error":"..."} if anything failed
//
//   node spec/peers/deflate_node.js server PORT CONFIG_JSON
//     CONFIG_JSON: { "pmd": <perMessageDeflate options> }
//     An echo server with perMessageDeflate; every message is echoed with
//     compress: true. The text message "__stats__" is answered with
//       {"compressed_frames":N,"messages":N,"bytes_read":N,"header":"..."}
//     (frames that arrived with RSV1, messages, bytes read on this socket,
//     the Sec-WebSocket-Extensions this server answered). Prints
//     {"event":"listening","port":P} once it listens.
'use strict';
const path = require('path');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '../interop/node_modules/ws'));
const { emit, sha, utf8Text } = require('./peer_util');

// Compressible: a short phrase repeated, cut to n bytes.
function compressible(n, kind) {
  const b = Buffer.alloc(n);
  const phrase = Buffer.from('the quick brown fox jumps over the lazy dog; ');
  for (let i = 0; i < n; i += phrase.length) phrase.copy(b, i, 0, Math.min(phrase.length, n - i));
  return kind === 'text' ? b.toString('utf8') : b;
}

// Count frames that arrive compressed: wrap the instance's decompress.
function countCompressed(ws) {
  ws.compressedFrames = 0;
  const pmd = ws._extensions['permessage-deflate'];
  if (!pmd) return;
  const orig = pmd.decompress.bind(pmd);
  pmd.decompress = (data, fin, cb) => { ws.compressedFrames++; orig(data, fin, cb); };
}

const withTimeout = (p, ms, what) => Promise.race([p,
  new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms).unref())]);

async function client(url, cfg) {
  const ws = new WebSocket(url, { perMessageDeflate: cfg.pmd === undefined ? true : cfg.pmd,
    maxPayload: 64 * 1024 * 1024, handshakeTimeout: 10000 });
  let header = null;
  ws.on('upgrade', (res) => { header = res.headers['sec-websocket-extensions'] || null; });
  const inbox = [];
  let waiting = null;
  ws.on('message', (data, isBinary) => {
    inbox.push({ data, isBinary });
    if (waiting) { const w = waiting; waiting = null; w(); }
  });
  const closed = new Promise((res) => ws.on('close', (code) => res(code)));
  const next = () => withTimeout(new Promise((res) => {
    const take = () => res(inbox.shift());
    if (inbox.length) take(); else waiting = take;
  }), 30000, 'message');
  await withTimeout(new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); }), 10000, 'open');
  countCompressed(ws);
  const pmd = ws._extensions['permessage-deflate'];
  emit({ test: 'open', header, extensions: ws.extensions, params: pmd ? pmd.params : null });

  for (const kind of ['text', 'binary']) {
    for (const what of ['compressible', 'random']) {
      for (const n of cfg.sizes) {
        const data = what === 'compressible' ? compressible(n, kind)
          : (kind === 'text' ? utf8Text(n) : crypto.randomBytes(n));
        const before = ws.compressedFrames, read0 = ws._socket.bytesRead;
        ws.send(data, { binary: kind === 'binary', compress: true });
        const got = await next();
        emit({ test: 'echo', kind, data: what, size: n, got_kind: got.isBinary ? 'binary' : 'text',
          got_size: got.data.length, same: sha(Buffer.from(data)) === sha(got.data),
          compressed_frames: ws.compressedFrames - before, wire: ws._socket.bytesRead - read0 });
      }
    }
  }

  if (cfg.fragmented) {
    // compressed fragments; the text one splits a 3-byte character across frames
    const euro = Buffer.from('€');
    const frags = {
      text: [Buffer.from('fragmented '.repeat(50)), euro.subarray(0, 1), euro.subarray(1),
        Buffer.alloc(0), Buffer.from(' wörld 😀'.repeat(100))],
      binary: [crypto.randomBytes(1000), compressible(70000, 'binary'), Buffer.alloc(0), crypto.randomBytes(5)],
    };
    for (const kind of ['text', 'binary']) {
      const chunks = frags[kind];
      const before = ws.compressedFrames;
      chunks.forEach((c, i) => ws.send(c, { binary: kind === 'binary', fin: i === chunks.length - 1, compress: true }));
      const got = await next();
      emit({ test: 'fragmented', kind, got_kind: got.isBinary ? 'binary' : 'text',
        same: sha(Buffer.concat(chunks)) === sha(got.data), compressed_frames: ws.compressedFrames - before });
    }
  }
  ws.close(1000);
  emit({ test: 'close', code: await withTimeout(closed, 10000, 'close') });
}

function server(port, cfg) {
  const wss = new WebSocket.Server({ port, host: '127.0.0.1', maxPayload: 64 * 1024 * 1024,
    perMessageDeflate: cfg.pmd === undefined ? { threshold: 0 } : cfg.pmd });
  wss.on('headers', (headers, req) => { req.answered = headers.find((h) => /^sec-websocket-extensions:/i.test(h)) || ''; });
  wss.on('connection', (ws, req) => {
    countCompressed(ws);
    let messages = 0;
    ws.on('message', (data, isBinary) => {
      messages++;
      if (!isBinary && data.toString() === '__stats__') {
        ws.send(JSON.stringify({ compressed_frames: ws.compressedFrames, messages,
          bytes_read: ws._socket.bytesRead, header: req.answered.replace(/^[^:]*:\s*/, '') }));
        return;
      }
      ws.send(data, { binary: isBinary, compress: true });
    });
    ws.on('error', (err) => emit({ event: 'error', error: String(err && err.message) }));
  });
  wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
}

const [mode, where, json] = process.argv.slice(2);
const cfg = JSON.parse(json || '{}');
if (mode === 'client') {
  client(where, cfg).then(() => process.exit(0),
    (err) => { emit({ test: 'error', error: String(err && err.stack) }); process.exit(1); });
} else if (mode === 'server') {
  server(Number(where), cfg);
} else {
  process.stderr.write('usage: deflate_node.js client URL CONFIG | server PORT CONFIG\n');
  process.exit(2);
}
